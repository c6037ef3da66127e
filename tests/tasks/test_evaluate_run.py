"""Offline evaluation runs: every bad data line at once, a run-wide model failure stops the run, an interrupted
run keeps what finished, and ``--out`` problems are one line."""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from screenpilot.cli.main import main
from screenpilot.cli.run_command import StopSignal
from screenpilot.cli.suite_commands import _finish_eval
from screenpilot.errors import SetupError
from screenpilot.model.base import Completion, Message, Usage
from screenpilot.model.replay import ReplayModel
from screenpilot.tasks.evaluate import (
    RUN_WIDE_FAILURES,
    evaluate_grounding,
    evaluate_steps,
    format_grounding,
    format_steps,
)
from tests.model.openai_server import Reply, ScriptedServer
from tests.tasks.test_evaluate import mobile, write_jsonl

CLICK = mobile(action="click", coordinate=[50, 50])


def grounding_rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"g{i}", "image": "a.png", "instruction": "tap", "bbox": [0, 0, 60, 60]} for i in range(n)]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    return write_jsonl(tmp_path / "g.jsonl", grounding_rows(6))


def test_every_bad_grounding_line_is_reported_before_the_model_is_asked(tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    good = grounding_rows(1)[0]
    rows = [
        json.dumps(good),
        json.dumps({**good, "bbox": [10, 10, 5, 20]}),
        "not json",
        json.dumps({**good, "image": "missing.png"}),
        json.dumps({**good, "instruction": ""}),
        json.dumps({**good, "image": "broken.png"}),
        json.dumps(good),
    ]
    path = tmp_path / "g.jsonl"
    path.write_text("\n".join(rows) + "\n")
    model = ReplayModel([])
    with pytest.raises(SetupError) as info:
        evaluate_grounding(path, model)
    lines = str(info.value).split("\n")
    assert lines[0] == f"5 problems in {path}:"
    assert [line.strip().split(": ", 1)[0] for line in lines[1:]] == [f"{path}:{n}" for n in (2, 3, 4, 5, 6)]
    assert "has x2 < x1" in lines[1] and "cannot open image" in lines[3] and "cannot open image" in lines[5]
    assert model.calls == []


def test_every_bad_steps_line_is_reported_history_included(tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "s.png")
    good = {"screenshot": "s.png", "goal": "g", "action": {"action": "click", "coordinate": [5, 5]}}
    rows: list[dict[str, Any]] = [
        good,
        {**good, "history": [42]},
        {**good, "action": {"action": "fly"}},
        {**good, "history": "open"},
        good,
    ]
    model = ReplayModel([])
    with pytest.raises(SetupError) as info:
        evaluate_steps(write_jsonl(tmp_path / "s.jsonl", rows), model)
    text = str(info.value)
    assert text.startswith("3 problems in") and ":2: history entries must be" in text
    assert ":3: the recorded action is not valid" in text and ":4: 'history' must be a list" in text
    assert model.calls == []


class FailingModel:
    """A backend that answers the first ``good`` calls, then fails every call with ``error``."""

    name = "failing"

    def __init__(self, error: BaseException, good: int = 0) -> None:
        self.error = error
        self.good = good
        self.calls = 0

    def complete(self, messages: Sequence[Message], *, deadline: float | None = None) -> Completion:
        self.calls += 1
        if self.calls > self.good:
            raise self.error
        return Completion(CLICK, Usage())

    def begin_episode(self, task_id: str | None) -> None:
        pass

    def describe(self) -> dict[str, object]:
        return {"backend": "failing"}

    def close(self) -> None:
        pass


def test_a_model_failing_from_the_start_stops_the_run(data: Path) -> None:
    from screenpilot.model.base import ModelBackendError

    model = FailingModel(ModelBackendError("connection refused"))
    report = evaluate_grounding(data, model)
    assert model.calls == RUN_WIDE_FAILURES
    assert (report["planned"], report["finished"], report["complete"]) == (6, RUN_WIDE_FAILURES, False)
    assert report["stopped"] == (
        f"the model failed on the first {RUN_WIDE_FAILURES} examples, each with: model error: connection refused"
    )
    assert f"incomplete: {RUN_WIDE_FAILURES} of 6 examples finished; the model failed" in format_grounding(
        report
    )


def test_model_errors_after_good_answers_do_not_stop_the_run(data: Path) -> None:
    from screenpilot.model.base import ModelBackendError

    model = FailingModel(ModelBackendError("overloaded"), good=1)
    report = evaluate_grounding(data, model)
    assert (report["finished"], report["complete"], report["model_errors"], report["hits"]) == (6, True, 5, 1)


def test_an_interrupted_run_keeps_what_finished(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"screenshot": "a.png", "goal": "g", "action": {"action": "click", "coordinate": [5, 5]}}] * 4
    steps = write_jsonl(tmp_path / "s.jsonl", rows)
    report = evaluate_steps(steps, FailingModel(StopSignal(signal.SIGTERM), good=2))
    assert (report["planned"], report["finished"], report["complete"]) == (4, 2, False)
    assert report["interrupted_by"] == "SIGTERM" and report["stopped"] is None
    assert "incomplete: 2 of 4 examples finished; interrupted (SIGTERM)" in format_steps(report)

    out = tmp_path / "out" / "steps.json"
    assert _finish_eval(report, format_steps(report), out) == 143
    assert json.loads(out.read_text())["finished"] == 2
    assert "overall" in capsys.readouterr().out

    report = evaluate_grounding(data, FailingModel(KeyboardInterrupt(), good=1))
    assert (report["finished"], report["interrupted_by"]) == (1, "SIGINT")
    assert _finish_eval(report, format_grounding(report), None) == 130


def test_nothing_finished_reads_as_no_accuracy(data: Path) -> None:
    report = evaluate_grounding(data, FailingModel(KeyboardInterrupt()))
    assert (report["finished"], report["accuracy"], report["mean_model_s"]) == (0, None, None)
    assert "overall  0     0         -" in format_grounding(report)


def test_dead_model_after_the_start_up_check_exits_1_with_results_kept(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    with ScriptedServer() as server:
        bad = Reply(status=400, body=json.dumps({"error": {"message": "the model crashed"}}))
        server.script.extend([bad] * 6)
        code = main(
            ["eval", "grounding", str(data), "--model", server.url, "--out", str(out), "--no-progress"]
        )
        asked = len(server.posts)
    assert code == 1 and asked == RUN_WIDE_FAILURES
    saved = json.loads(out.read_text())
    assert (saved["finished"], saved["planned"], saved["complete"]) == (RUN_WIDE_FAILURES, 6, False)
    captured = capsys.readouterr()
    assert "overall" in captured.out
    assert "screenpilot: error: the evaluation stopped early: the model failed on the first 3" in captured.err


def test_progress_lines_when_stderr_is_not_a_terminal(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evaluate_grounding(data, ReplayModel([(None, CLICK)] * 6), progress=True)
    err = capsys.readouterr().err.splitlines()
    assert (
        err[0] == "grounding: 1/6 done, 100.0% hits so far"
        and err[-1] == "grounding: 6/6 done, 100.0% hits so far"
    )


@pytest.mark.parametrize("where", ["dir", "/proc/x.json", "file/x.json"])
def test_unwritable_out_is_one_line_before_anything_runs(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    (tmp_path / "dir").mkdir()
    out = where if where.startswith("/") else str(tmp_path / where)
    replay = tmp_path / "never-read.jsonl"  # --out is checked before the model is built
    code = main(["eval", "grounding", str(data), "--model", f"replay:{replay}", "--out", out])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("screenpilot: error: ")
    assert out in err and "does not exist" not in err


def test_results_that_cannot_be_written_come_after_the_table(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = evaluate_grounding(data, ReplayModel([(None, CLICK)] * 6))
    (tmp_path / "gone").write_text("")
    with pytest.raises(SetupError, match="cannot write the results to"):
        _finish_eval(report, format_grounding(report), tmp_path / "gone" / "r.json")
    assert "overall" in capsys.readouterr().out
    assert list(tmp_path.glob("**/*.partial")) == []


def test_existing_results_are_replaced_whole(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    out.write_text("old")
    replay = write_jsonl(tmp_path / "r.jsonl", [{"output": CLICK}] * 6)
    assert main(["eval", "grounding", str(data), "--model", f"replay:{replay}", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["hits"] == 6 and [p.name for p in tmp_path.glob(".r.json*")] == []


def test_out_to_a_device_writes_through_it(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replay = write_jsonl(tmp_path / "r.jsonl", [{"output": CLICK}] * 6)
    assert main(["eval", "grounding", str(data), "--model", f"replay:{replay}", "--out", "/dev/null"]) == 0
    assert Path("/dev/null").is_char_device() and not Path("/dev/.null.partial").exists()
    assert "results: /dev/null" in capsys.readouterr().err
