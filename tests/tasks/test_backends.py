"""bench and eval with the real model backends: the OpenAI-compatible client against a scripted server on
loopback (shared, unlocked), and a tiny random Qwen2.5-VL through transformers (shared behind a lock)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from screenpilot.cli.main import main
from screenpilot.tasks.runner import read_results
from tests.model.openai_server import ScriptedServer

ANSWER = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "answer", "text": "42"}}\n</tool_call>'


def suite_file(tmp_path: Path, n: int = 3) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(
        "tasks:\n"
        + "".join(
            f"  - {{id: t{i}, goal: 'What is 6*7?', env: android, max_steps: 2, "
            "success: {answer: {normalized: '42'}}}\n"
            for i in range(n)
        )
    )
    return path


def test_bench_with_a_server_model(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        server.default_text = ANSWER
        out = tmp_path / "out"
        args = ["bench", str(suite_file(tmp_path)), "--env", "fake", "--screen-size", "360x640"]
        args += ["--model", server.url, "--answer-action", "--jobs", "3", "--out", str(out), "--no-progress"]
        assert main(args) == 0
        posts = [r for r in server.requests if r.method == "POST"]
    assert len(posts) == 4  # one per episode, and one text-only count that checks the server's image size
    assert all(r["success"] for r in read_results(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert server.url in json.dumps(manifest["fingerprint"]["model"])
    assert manifest["fingerprint"]["dialect"]["mobile"]["answer_action"] is True


def test_eval_grounding_with_a_server_model(tmp_path: Path) -> None:
    Image.new("RGB", (1080, 2400), (200, 200, 200)).save(tmp_path / "a.png")
    data = tmp_path / "g.jsonl"
    data.write_text(
        json.dumps({"image": "a.png", "instruction": "tap OK", "bbox": [500, 1150, 600, 1250]}) + "\n"
    )
    with ScriptedServer() as server:
        server.default_text = (
            '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [546, 1204]}}\n'
            "</tool_call>"
        )
        out = tmp_path / "g.json"
        assert (
            main(["eval", "grounding", str(data), "--model", server.url, "--out", str(out), "--no-progress"])
            == 0
        )
        post, _text_only = [r for r in server.requests if r.method == "POST"]  # then the image size check
    assert json.loads(out.read_text())["hits"] == 1
    # The system prompt states the resized size and the image sent has exactly that size.
    assert "The screen's resolution is 1092x2408." in json.dumps(post.json)


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.model.tiny_qwen import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen"))


def test_bench_with_a_local_transformers_model(tmp_path: Path, tiny_qwen: Path) -> None:
    """Random weights answer nonsense: every episode ends on unusable answers, recorded, none crashing."""
    out = tmp_path / "out"
    args = ["bench", str(suite_file(tmp_path, 2)), "--env", "fake", "--screen-size", "360x640", "--jobs", "2"]
    args += ["--model", str(tiny_qwen), "--device", "cpu", "--max-new-tokens", "4", "--max-retries", "0"]
    args += [
        "--max-pixels",
        str(200 * 28 * 28),
        "--max-failed-steps",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    lines = read_results(out)
    assert len(lines) == 2
    assert all(r["agent_reason"] == "too_many_errors" and r["error"] is None for r in lines)
    model = json.loads((out / "manifest.json").read_text())["fingerprint"]["model"]
    assert model["backend"] == "transformers" and "decoding" in model
