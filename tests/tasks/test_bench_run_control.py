"""bench's run control: the run folder (one process at a time, a bad --out), stopping early (a repeated
infrastructure error, signals) with honest accounting, exit statuses, secrets and the per-episode lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from screenpilot.cli.main import main
from screenpilot.tasks.manifest import FolderLock, redact_argv
from screenpilot.tasks.runner import read_results, run_suite
from screenpilot.tasks.suite import load_suite
from tests.model.openai_server import Reply, ScriptedServer
from tests.tasks.fakes import FakeSource
from tests.tasks.test_runner import replay_source, settings

REPO = Path(__file__).resolve().parents[2]


def call(tool: str = "mobile_use", **arguments: Any) -> str:
    return "<tool_call>\n" + json.dumps({"name": tool, "arguments": arguments}) + "\n</tool_call>"


def write_suite(tmp_path: Path, n: int, extra: str = "", env: str = "android") -> Path:
    path = tmp_path / "s.yaml"
    tasks = "".join(
        f"  - {{id: t{i}, goal: g, env: {env}, success: {{answer: {{exact: ok}}}}{extra}}}\n"
        for i in range(n)
    )
    path.write_text("tasks:\n" + tasks, encoding="utf-8")
    return path


def bench_cmd(suite: Path, out: Path, replay: Path, *more: str) -> list[str]:
    return [
        *("bench", str(suite), "--env", "fake", "--screen-size", "360x640", "--answer-action"),
        *("--model", f"replay:{replay}", "--out", str(out), "--no-report", *more),
    ]


def answering_replay(tmp_path: Path, text: str = "ok") -> Path:
    replay = tmp_path / "r.jsonl"
    replay.write_text(json.dumps({"output": call(action="answer", text=text)}) + "\n", encoding="utf-8")
    return replay


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- the run folder -------------------------------------------------------------------------------------------


def test_an_out_that_is_a_file_or_cannot_be_made_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path, 1)
    replay = answering_replay(tmp_path)
    afile = tmp_path / "results.txt"
    afile.write_text("keep me")
    assert main(bench_cmd(suite, afile, replay)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("screenpilot: error: ") and f"--out {afile} is a file" in line
    assert afile.read_text() == "keep me"
    under_a_file = afile / "run"
    assert main(bench_cmd(suite, under_a_file, replay)) == 2
    assert f"cannot create the run folder {under_a_file}" in one_error_line(capsys.readouterr().err)
    assert main(bench_cmd(suite, Path("/proc/screenpilot-run"), replay)) == 2
    assert "cannot create the run folder /proc/screenpilot-run" in one_error_line(capsys.readouterr().err)


def test_a_folder_in_use_is_refused_naming_the_other_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path, 2)
    replay = answering_replay(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with FolderLock(out):
        assert main(bench_cmd(suite, out, replay)) == 2
        line = one_error_line(capsys.readouterr().err)
    assert f"{out} is in use by another screenpilot bench (pid {os.getpid()})" in line
    assert not (out / "manifest.json").exists() and read_results(out) == []
    assert main(bench_cmd(suite, out, replay, "--no-progress")) == 0  # released: the folder is usable


def test_two_bench_processes_on_one_folder_run_each_episode_once(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, 3, extra=", setup: [{sleep: 0.4}]")
    replay = answering_replay(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "screenpilot", *bench_cmd(suite, out, replay)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not (out / "manifest.json").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        second = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)
        _, first_err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 2, second.stderr
    line = one_error_line(second.stderr)
    assert f"{out} is in use by another screenpilot bench (pid {first.pid})" in line
    assert first.returncode == 0, first_err
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


def test_a_killed_bench_leaves_the_folder_usable(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, 3, extra=", setup: [{sleep: 5}]")
    replay = answering_replay(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "screenpilot", *bench_cmd(suite, out, replay)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.monotonic() + 30
    while not (out / "manifest.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait(timeout=10)
    with FolderLock(out):  # the kernel released the dead process's lock
        pass


# -- a run-wide failure ---------------------------------------------------------------------------------------


def test_a_model_failing_for_the_whole_run_stops_it_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path, 8)
    out = tmp_path / "out"
    refused = Reply(status=404, body='{"error": {"message": "no such route"}}')
    with ScriptedServer() as server:
        server.script.extend([refused] * 50)
        args = ["bench", str(suite), "--env", "fake", "--screen-size", "360x640", "--answer-action"]
        args += ["--model", server.url, "--served-model", server.models[0], "--max-retries", "0"]
        args += ["--out", str(out), "--no-report", "--no-progress"]
        assert main(args) == 1
        captured = capsys.readouterr()
        lines = read_results(out)
        assert len(lines) == 3 and all(r["infra_error"] for r in lines)
        assert "the run stopped early: the last 3 episodes all ended on the same infrastructure error" in (
            captured.err
        )
        assert "--rerun-errors" in captured.err
        summary = json.loads((out / "summary.json").read_text())
        assert (summary["planned"], summary["finished"], summary["complete"]) == (8, 3, False)
        assert summary["not_started"] == 5
        assert summary["stopped"].startswith("the last 3 episodes all ended on the same")
        assert "INCOMPLETE: 3 of 8 planned episodes finished, 0 interrupted, 5 not started" in captured.out

        # The server is fixed: the same command with --rerun-errors finishes the run.
        server.script.clear()
        server.default_text = call(action="answer", text="ok")
        assert main([*args, "--rerun-errors"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["planned"], summary["finished"], summary["complete"]) == (8, 8, True)
    assert summary["overall"]["successes"] == 8


def test_different_errors_never_stop_the_run(tmp_path: Path, fake_source: FakeSource) -> None:
    suite = load_suite(write_suite(tmp_path, 5))
    # Each episode fails on its own error (the replay has no answer for that task): not a run-wide failure.
    outcome = run_suite(suite, tmp_path / "out", fake_source, replay_source([]), settings())
    assert len(read_results(tmp_path / "out")) == 5
    assert (outcome.complete, outcome.stopped, outcome.exit_status) == (True, None, 0)


class DeadServerModel:
    """A model server that refuses every request the same way."""

    name = "dead"

    def complete(self, messages: Any, *, deadline: float | None = None) -> Any:
        from screenpilot.model.base import ModelBackendError

        raise ModelBackendError("cannot reach http://127.0.0.1:9/v1: connection refused")

    def begin_episode(self, task_id: str | None) -> None:
        pass

    def describe(self) -> dict[str, object]:
        return {"backend": "test", "model": self.name}

    def close(self) -> None:
        pass


def test_a_run_wide_failure_is_reported_even_when_a_worker_retired(tmp_path: Path) -> None:
    import io

    from screenpilot.tasks.runner import SharedModel
    from tests.tasks.test_runner import UnpluggedSource

    suite = load_suite(write_suite(tmp_path, 8))
    outcome = run_suite(
        suite,
        tmp_path / "out",
        UnpluggedSource(tmp_path / "d", {1}),  # worker 1 has no phone; worker 0 has a dead model
        SharedModel(DeadServerModel(), serialize=False),  # type: ignore[arg-type]
        settings(jobs=2, max_retries=0),
        stream=io.StringIO(),
    )
    assert outcome.stopped is not None and outcome.stopped.startswith("the last 3 episodes all ended")
    assert "connection refused" in outcome.stopped
    assert (outcome.ran, outcome.complete, outcome.exit_status) == (3, False, 1)


# -- honest accounting ----------------------------------------------------------------------------------------


def test_ctrl_c_marks_the_run_incomplete_and_the_running_episode_interrupted(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, 6, extra=", setup: [{sleep: 0.3}]")
    replay = answering_replay(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "screenpilot", *bench_cmd(suite, out, replay, "--trials", "2")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 30
    while not (results.exists() and results.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    done = len(read_results(out))
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["planned"], summary["finished"], summary["complete"]) == (12, done, False)
    assert summary["trials"] == 2
    assert summary["stopped"] == "Ctrl-C"
    interrupted = len(summary["interrupted"])  # the episode running when the signal came (if any)
    assert interrupted <= 1 and summary["not_started"] == 12 - done - interrupted
    assert f"INCOMPLETE: {done} of 12 planned episodes finished, {interrupted} interrupted" in stdout
    assert f"{done}/12" in stdout  # the overall row says finished/planned
    assert "1/2" in stdout  # and each task row its finished/planned trials


def test_an_episode_stopped_between_steps_says_interrupted_and_reruns(
    tmp_path: Path, fake_source: FakeSource
) -> None:
    import io

    from screenpilot.tasks.runner import ModelPerEpisode, SuiteRunner
    from tests.tasks.test_runner import StoppingModel

    path = tmp_path / "s.yaml"
    path.write_text(
        "tasks:\n"
        "  - {id: answer, goal: g, env: android, success: {answer: {normalized: '42'}}}\n"
        "  - {id: note, goal: g, env: android, success: {shell: 'true'}}\n"
    )
    suite = load_suite(path)
    holder: list[SuiteRunner] = []
    model = StoppingModel(holder)  # asks the run to stop during the second answer (note's first step)
    models = ModelPerEpisode(lambda: model)  # type: ignore[arg-type, return-value]
    runner = SuiteRunner(suite, tmp_path / "out", fake_source, models, settings(), stream=io.StringIO())
    holder.append(runner)
    outcome = runner.run()
    result = json.loads((tmp_path / "out" / "episodes" / "note" / "trial-1" / "result.json").read_text())
    assert (result["reason"], result["steps"]) == ("interrupted", 1)
    assert "the run was stopped" in result["error"]
    assert outcome.summary["interrupted"] == [{"task": "note", "trial": 1}]
    assert (outcome.summary["finished"], outcome.summary["complete"]) == (1, False)
    resumed = run_suite(suite, tmp_path / "out", fake_source, replay_source(), settings(force=True))
    assert (resumed.ran, resumed.skipped, resumed.complete) == (1, 1, True)
    assert resumed.summary["interrupted"] == []


# -- signals and the sandbox ----------------------------------------------------------------------------------


def _descendants(pid: int) -> dict[int, str]:
    from tests.envs.desktop.test_sandbox_shutdown import descendants

    return descendants(pid)


@pytest.mark.skipif(
    not (Path("/usr/bin/Xvfb").exists() or os.path.exists("/usr/local/bin/Xvfb")), reason="needs Xvfb"
)
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_stopping_signal_closes_the_sandboxes_and_leaves_a_truthful_summary(
    tmp_path: Path, sig: int, code: int
) -> None:
    from tests.envs.desktop.test_sandbox_shutdown import reap

    demo = f"{sys.executable} -m screenpilot.envs.desktop.demo_app"
    suite = write_suite(tmp_path, 3, env="sandbox", extra=f", app: '{demo}'")
    replay = tmp_path / "wait.jsonl"
    replay.write_text(json.dumps({"output": call("computer_use", action="wait", time=60)}) + "\n")
    out = tmp_path / "out"
    args = ["bench", str(suite), "--env", "sandbox", "--jobs", "2", "--model", f"replay:{replay}"]
    cmd = [sys.executable, "-m", "screenpilot", *args, "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    children: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 60
        while len(list(out.glob("episodes/*/trial-1/run.json"))) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.5)  # both workers are in their first step, a 60 s wait
        children = _descendants(proc.pid)
        assert list(children.values()).count("Xvfb") == 2, children
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = reap(children)
    assert proc.returncode == code, output
    assert left == [], (children, output)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["finished"] == 0, (summary, output)
    assert (summary["planned"], summary["finished"], summary["complete"]) == (3, 0, False)
    assert summary["stopped"] == signal.Signals(sig).name
    assert sorted(e["task"] for e in summary["interrupted"]) == ["t0", "t1"]
    assert summary["not_started"] == 1
    assert read_results(out) == []


# -- secrets, columns, lines, help ----------------------------------------------------------------------------


def test_the_recorded_command_line_never_holds_the_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path, 1)
    replay = answering_replay(tmp_path)
    out = tmp_path / "out"
    argv = bench_cmd(suite, out, replay, "--api-key", "sk-first-secret", "--api-key=sk-second-secret")
    argv = [a for a in argv if a != "--no-report"]
    monkeypatch.setattr(sys, "argv", ["screenpilot", *argv])
    assert main(argv) == 0
    manifest = (out / "manifest.json").read_text()
    assert "sk-first-secret" not in manifest and "sk-second-secret" not in manifest
    command = json.loads(manifest)["command"]
    assert command[command.index("--api-key") + 1] == "REDACTED"
    assert "--api-key=REDACTED" in command
    assert "sk-first-secret" not in (out / "report.html").read_text()
    assert redact_argv(["x", "--api-k", "a", "--api=b", "--app", "xterm", "--api-key"]) == [
        "x",
        "--api-k",
        "REDACTED",
        "--api=REDACTED",
        "--app",
        "xterm",
        "--api-key",
    ]


def test_without_a_progress_bar_each_finished_episode_prints_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path, 3)
    replay = tmp_path / "r.jsonl"
    replay.write_text(
        json.dumps({"task": "t0", "output": call(action="answer", text="ok")})
        + "\n"
        + json.dumps({"task": "t1", "output": call(action="terminate", status="failure")})
        + "\n"
    )
    out = tmp_path / "out"
    assert main(bench_cmd(suite, out, replay)) == 0  # stderr is not a terminal here: no bar
    err = capsys.readouterr().err
    assert "[1/3] t0 trial 1: success (1 steps" in err
    assert "[2/3] t1 trial 1: failure (terminated)" in err
    assert "[3/3] t2 trial 1: failure, infrastructure error: model_error: " in err
    assert "success so far 1/3" in err


def test_bench_help_states_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 every planned episode finished" in text
    assert "1 the run stopped early" in text and "2 usage or setup error" in text
    assert "130 Ctrl-C, 143 SIGTERM" in text
