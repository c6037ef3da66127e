"""--dialect is chosen in one place and reaches every command: prompt, parse, run (run.json), bench (the
manifest; a resume with another dialect is refused) and eval; a local checkpoint picks its own by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from screenpilot.cli.main import main
from screenpilot.model.dialects import DIALECT_NAMES, describe_dialect, make_dialect
from tests.model.tiny_qwen import build_tiny_qwen3vl

REPLAY = "examples/replay/sandbox-demo.jsonl"


def test_prompt_differs_by_dialect(capsys: pytest.CaptureFixture[str]) -> None:
    prompts = {}
    for name in DIALECT_NAMES:
        assert main(["prompt", "--tool", "mobile_use", "--screen", "1080x2400", "--dialect", name]) == 0
        prompts[name] = capsys.readouterr().out
    assert len(set(prompts.values())) == len(prompts)
    assert "1092x2408" in prompts["qwen2.5-vl"]  # Qwen2.5-VL states the resized image's size


def test_parse_reads_each_dialects_coordinates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    answer = tmp_path / "a.txt"
    call = {"name": "mobile_use", "arguments": {"action": "click", "coordinate": [500, 500]}}
    answer.write_text(f"<tool_call>\n{json.dumps(call)}\n</tool_call>")
    points = {}
    for name in ("qwen2.5-vl", "qwen3-vl"):
        argv = ["parse", "--tool", "mobile_use", "--screen", "1080x2400", "--dialect", name, str(answer)]
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        points[name] = (out["x"], out["y"])
    assert points["qwen2.5-vl"] == (495, 498)  # absolute pixels of the 1092x2408 image the model saw
    x, y = points["qwen3-vl"]  # relative: the middle of the screen
    assert abs(x - 540) <= 1 and abs(y - 1201) <= 2


def test_every_dialect_records_its_name_and_prompt_hash() -> None:
    hashes = set()
    for name in DIALECT_NAMES:
        for platform in ("mobile", "desktop"):
            info = describe_dialect(make_dialect(name, platform))
            assert info["dialect"] == name
            hashes.add(info["prompt_sha256"])
            assert describe_dialect(make_dialect(name, platform)) == info  # stable
    assert len(hashes) == 2 * len(DIALECT_NAMES)


def test_a_local_checkpoint_picks_its_own_dialect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = build_tiny_qwen3vl(tmp_path / "tiny-qwen3vl")
    out = tmp_path / "run"
    argv = ["run", "t", "--env", "fake", "--model", str(model), "--max-steps", "1", "--max-new-tokens", "4"]
    code = main([*argv, "--out", str(out), "--quiet"])
    assert code == 1  # a random model gives no usable call
    meta = json.loads((out / "run.json").read_text())
    assert meta["dialect"]["dialect"] == "qwen3-vl"
    assert meta["settings"]["dialect"] is None  # not given: taken from the checkpoint


def test_a_resumed_bench_with_another_dialect_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("tasks:\n  - {id: a, goal: g, env: android, success: {answer: {exact: x}}}\n")
    replay = tmp_path / "r.jsonl"
    replay.write_text(json.dumps({"output": "no call here"}) + "\n")
    base = ["bench", str(suite), "--env", "fake", "--model", f"replay:{replay}", "--out", str(tmp_path / "o")]
    assert main([*base, "--max-steps", "1", "--no-progress", "--no-report"]) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert "qwen2.5-vl" in json.dumps(manifest)
    capsys.readouterr()
    code = main([*base, "--max-steps", "1", "--no-progress", "--no-report", "--dialect", "ui-tars-1.5"])
    err = capsys.readouterr().err
    assert code == 2
    assert "dialect" in err and "--force" in err


def test_prompt_with_a_goal_prints_the_whole_first_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["prompt", "--tool", "mobile_use", "--screen", "1080x2400", "--dialect", "ui-tars-1.5"]
    assert main(argv) == 0
    system_only = capsys.readouterr().out
    assert main([*argv, "--goal", "Open Settings"]) == 0
    whole = capsys.readouterr().out
    assert "Open Settings" in whole and "Open Settings" not in system_only
    assert whole.startswith("<|im_start|>system\n") and "<|image_pad|>" in whole
