"""Bytes that are not UTF-8 in a run's own files are one line naming the file and line, never a traceback; a
last line torn in the middle of a character (the writer died) is ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from screenpilot.agent.record import load_run
from screenpilot.cli.main import main
from screenpilot.errors import SetupError
from screenpilot.tasks.runner import read_results

LINE = {"task": "a", "trial": 1, "success": True}


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_bad_byte_in_results_names_the_line(tmp_path: Path) -> None:
    good = json.dumps(LINE).encode()
    _write(tmp_path / "results.jsonl", good + b"\n" + b'{"task": "b\xff", "trial": 1}\n')
    with pytest.raises(SetupError, match=r"results\.jsonl:2: not UTF-8"):
        read_results(tmp_path)


def test_a_result_line_torn_inside_a_character_is_ignored(tmp_path: Path) -> None:
    good = json.dumps(LINE).encode()
    torn = json.dumps({"task": "b", "trial": 1, "answer": "世界"}, ensure_ascii=False).encode()[:-5]
    _write(tmp_path / "results.jsonl", good + b"\n" + torn)
    assert [r["task"] for r in read_results(tmp_path)] == ["a"]


def test_bench_resume_over_bad_bytes_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("tasks:\n  - {id: a, goal: g, env: android, success: {answer: {exact: x}}}\n")
    out = tmp_path / "out"
    _write(out / "results.jsonl", b'{"task": "a\xfe", "trial": 1}\n')
    replay = _write(tmp_path / "r.jsonl", b'{"output": "x"}\n')
    code = main(["bench", str(suite), "--env", "fake", "--model", f"replay:{replay}", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "results.jsonl:1: not UTF-8" in err and "Traceback" not in err


def test_replaying_a_run_folder_with_bad_bytes_is_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write(run / "trajectory.jsonl", b'{"index": 1, "raw\xff": 2}\n')
    with pytest.raises(SetupError, match=r"trajectory\.jsonl:1: not UTF-8"):
        load_run(run)
    _write(run / "trajectory.jsonl", b"")
    _write(run / "run.json", b'{"goal": "\xff"}')
    with pytest.raises(SetupError, match=r"run\.json: not UTF-8"):
        load_run(run)
