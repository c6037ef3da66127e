"""``screenpilot run`` as users call it: run folders, bad ``--out``, a full disk, signals, progress and report."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import run_episode
from screenpilot.agent.record import load_run
from screenpilot.cli.main import main
from screenpilot.cli.run_command import step_line
from screenpilot.envs.fake import FakeEnv
from screenpilot.errors import DeviceError
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.replay import ReplayModel
from tests.agent.replies import call
from tests.cli.test_cli import sp
from tests.envs.desktop.test_sandbox_shutdown import DEMO, descendants, reap

CLICKS = [call("click", coordinate=[x, 500]) for x in range(10, 1000, 10)]


def replay(tmp_path: Path, *outputs: str) -> str:
    f = tmp_path / "replay.jsonl"
    f.write_text("\n".join(json.dumps({"output": o}) for o in outputs), encoding="utf-8")
    return f"replay:{f}"


def _run_in(folder: Path, args: list[str]) -> None:
    os.chdir(folder)
    sys.exit(main(args))


def test_runs_started_in_the_same_second_get_a_folder_each(tmp_path):
    model = replay(tmp_path, CLICKS[0], CLICKS[1], call("terminate", status="success"))
    args = ["run", "tap twice", "--env", "fake", "--model", model, "--no-settle", "--quiet"]
    fork = multiprocessing.get_context("fork")
    time.sleep(1 - time.time() % 1)  # start together just after a second begins, as the collision needs
    runs = [fork.Process(target=_run_in, args=(tmp_path, args)) for _ in range(4)]
    for p in runs:
        p.start()
    for p in runs:
        p.join(60)
    assert [p.exitcode for p in runs] == [0, 0, 0, 0]
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 4
    for folder in folders:
        run = load_run(folder)
        assert [s.index for s in run.steps] == [1, 2, 3]
        assert run.result is not None and run.result.status == "success"


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("FILE", "is a file, not a folder"),
        ("/proc/x", "cannot create the run folder /proc/x"),
        ("FILE/run", "cannot create the run folder"),
        ("FULL", "already exists and is not empty"),
    ],
)
def test_a_bad_out_is_one_line_before_the_model_loads(tmp_path, out, message):
    (tmp_path / "FILE").write_text("x", encoding="utf-8")
    (tmp_path / "FULL").mkdir()
    (tmp_path / "FULL" / "notes.txt").write_text("mine", encoding="utf-8")
    target = out if out.startswith("/") else str(tmp_path / out)
    model = replay(tmp_path, call("terminate", status="success"))
    result = sp("run", "t", "--env", "fake", "--model", model, "--out", target)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "FULL" / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in (tmp_path / "FULL").iterdir()) == ["notes.txt"]


def test_an_existing_empty_folder_is_used_and_a_failed_setup_leaves_no_empty_run_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    model = replay(tmp_path, call("terminate", status="success"))
    ok = sp("run", "t", "--env", "fake", "--model", model, "--out", str(tmp_path / "empty"))
    assert ok.returncode == 0 and load_run(tmp_path / "empty").result is not None
    bad = sp("run", "t", "--env", "fake", "--model", "replay:/nonexistent.jsonl", cwd=tmp_path)
    assert bad.returncode == 2 and not (tmp_path / "runs").exists()
    nested = tmp_path / "a" / "b" / "run"
    bad = sp("run", "t", "--env", "fake", "--model", "replay:/nonexistent.jsonl", "--out", str(nested))
    assert bad.returncode == 2 and not (tmp_path / "a").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    bad = sp("run", "t", "--env", "fake", "--model", "replay:/nonexistent.jsonl", "--out", str(mine))
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    assert mine.is_dir() and not any(mine.iterdir())  # kept, and left as it was: not ours to remove


def test_run_says_what_it_is_doing_and_writes_a_report(tmp_path):
    model = replay(tmp_path, CLICKS[0], call("terminate", status="success"))
    out = sp("run", "t", "--env", "fake", "--model", model, "--out", str(tmp_path / "r"), "--no-settle")
    assert out.returncode == 0
    lines = out.stderr.splitlines()
    assert lines[0] == f"loading model {model}…" and lines[1] == "starting the fake environment…"
    report = tmp_path / "r" / "report.html"
    assert f"report: {report}" in lines and "step-0001" in report.read_text(encoding="utf-8")
    quiet = sp("run", "t", "--env", "fake", "--model", model, "--out", str(tmp_path / "q"), "--quiet")
    assert quiet.stderr == f"run folder: {tmp_path / 'q'}\n" and (tmp_path / "q" / "report.html").exists()


def make_agent(*outputs: str, max_retries: int = 0) -> Agent:
    model = ReplayModel([(None, o) for o in outputs])
    return Agent(model, Qwen25VLDialect("mobile_use"), max_retries=max_retries)


def test_a_failed_step_line_says_why_and_retried_calls_say_so():
    agent = make_agent(
        "I would open it", call("open", text="Settings"), call("terminate", status="failure"), max_retries=1
    )
    steps = list(run_episode(FakeEnv(unsupported={"open_app"}), agent, "g"))
    line = step_line(steps[0].record)
    assert "open_app app=Settings [failed: The fake environment cannot do action=open_app.]" in line
    assert "2 tries" in line
    assert "tries" not in step_line(steps[1].record)


def test_a_step_line_names_a_device_error_while_settling():
    def settle(env):
        raise DeviceError("screen capture failed")

    steps = list(run_episode(FakeEnv(), make_agent(CLICKS[0]), "g", settle=settle))
    assert "button=left count=1; then: screen capture failed  (model" in step_line(steps[0].record)


HAVE_UNSHARE = (
    shutil.which("unshare") is not None
    and subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0
)


@pytest.mark.skipif(not HAVE_UNSHARE, reason="needs unshare -rm to mount a private tmpfs")
def test_a_full_disk_ends_the_run_with_one_line_and_keeps_the_steps(tmp_path):
    """A real 160 KiB tmpfs fills up after a few screenshots."""
    model = replay(tmp_path, *CLICKS)
    script = (
        'mount -t tmpfs -o size=160k tmpfs "$1" || exit 99; cd "$3";'
        '"$2" -m screenpilot run tap --env fake --no-settle --model "$4" --out "$1/run" --quiet;'
        'echo $? > "$5/rc"; cp -r "$1/run" "$5/copy"'
    )
    (tmp_path / "mnt").mkdir()
    repo = Path(__file__).resolve().parents[2]
    argv = [str(tmp_path / "mnt"), sys.executable, str(repo), model, str(tmp_path)]
    out = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "_", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (tmp_path / "rc").read_text().strip() == "1", out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert "No space left on device" in lines[0] and f"{tmp_path / 'mnt' / 'run'}" in lines[0]
    run = load_run(tmp_path / "copy")
    kept = len(run.steps)
    assert kept >= 1 and [s.index for s in run.steps] == list(range(1, kept + 1))
    assert (
        f"cannot write step {kept + 1} " in lines[0] and f"the {kept} step(s) before it are kept" in lines[0]
    )
    assert run.result is None or (run.result.reason == "crashed" and run.result.steps == kept + 1)


def read_until(proc: subprocess.Popen[bytes], seen: bytes, marker: bytes, count: int = 1) -> bytes:
    """Read ``proc``'s stderr until ``marker`` has appeared ``count`` times (the run then waits for an answer)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while seen.count(marker) < count:
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the run never asked: {seen.decode(errors='replace')}")
        seen += chunk
    return seen


def started(cmd: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


ASK = b"execute? [y]es"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_ends_a_run_with_a_truthful_result(tmp_path, signum):
    model = replay(tmp_path, CLICKS[0], CLICKS[1], CLICKS[2])
    cmd = [sys.executable, "-m", "screenpilot", "run", "t", "--env", "fake", "--model", model]
    proc = started([*cmd, "--out", str(tmp_path / "r"), "--confirm", "--no-settle"], tmp_path)
    seen = read_until(proc, b"", ASK)
    assert proc.stdin is not None
    proc.stdin.write(b"y\n")
    proc.stdin.flush()
    read_until(proc, seen, ASK, count=2)  # step 1 done and recorded; step 2 waits for an answer
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr.decode()
    run = load_run(tmp_path / "r")
    error = (
        f"stopped by {signal.Signals(signum).name}" if signum != signal.SIGINT else "interrupted by the user"
    )
    assert run.result is not None and (run.result.status, run.result.reason) == ("failure", "interrupted")
    assert run.result.error == error and run.result.steps == 2
    # step 2 was decided but never acted on: it is recorded, with why it stopped
    assert [s.index for s in run.steps] == [1, 2] and run.steps[0].actions[0].executed
    assert not run.steps[1].actions and run.steps[1].errors == [error]


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb")
def test_sigterm_on_a_sandbox_run_leaves_a_result_and_no_processes(tmp_path):
    click = {"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [50, 50]}}
    model = replay(tmp_path, f"<tool_call>\n{json.dumps(click)}\n</tool_call>")
    cmd = [sys.executable, "-m", "screenpilot", "run", "t", "--env", "sandbox", "--model", model]
    cmd += ["--out", str(tmp_path / "r"), "--confirm", "--app", DEMO]
    proc = started(cmd, tmp_path)
    read_until(proc, b"", ASK)
    children = descendants(proc.pid)
    assert "Xvfb" in children.values() and len(children) >= 2, children
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert reap(children) == []
    run = load_run(tmp_path / "r")
    assert (
        run.result is not None
        and run.result.reason == "interrupted"
        and run.result.error == "stopped by SIGTERM"
    )


def test_a_run_whose_progress_reader_goes_away_stops_as_on_sigpipe_and_keeps_its_steps(tmp_path):
    model = replay(tmp_path, CLICKS[0], CLICKS[1], CLICKS[2])
    cmd = [sys.executable, "-m", "screenpilot", "run", "t", "--env", "fake", "--model", model]
    proc = started([*cmd, "--out", str(tmp_path / "r"), "--confirm", "--no-settle"], tmp_path)
    read_until(proc, b"", ASK)
    assert proc.stdin is not None and proc.stderr is not None
    proc.stderr.close()  # as `2>&1 | head` does; step 1's line is the first write after this
    proc.stdin.write(b"y\n")
    proc.stdin.flush()
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGPIPE and stdout == b""
    run = load_run(tmp_path / "r")
    assert run.result is not None and (run.result.reason, run.result.error) == (
        "interrupted",
        "stopped by SIGPIPE",
    )
    assert [s.index for s in run.steps] == [1] and run.steps[0].actions[0].executed


def test_output_into_a_closed_pipe_ends_quietly_with_the_sigpipe_status(tmp_path):
    answer = tmp_path / "answer.txt"
    answer.write_text("\n".join(CLICKS[:16]), encoding="utf-8")
    read, write = os.pipe()
    os.close(read)  # nobody reads what parse prints
    cmd = [sys.executable, "-m", "screenpilot", "parse", "--tool", "mobile_use", "--screen", "1080x2400"]
    try:
        out = subprocess.run([*cmd, str(answer)], stdout=write, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(write)
    assert out.returncode == 128 + signal.SIGPIPE and out.stderr == b""


def test_the_loading_line_never_shows_a_password_in_the_server_address(tmp_path):
    model = "http://user:s3cret@127.0.0.1:9/v1"
    result = sp("run", "t", "--env", "fake", "--model", model, "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "loading model http://REDACTED@127.0.0.1:9/v1…"


def test_several_serials_are_refused_before_the_model_loads(tmp_path):
    model = replay(tmp_path, call("terminate", status="success"))
    args = [
        "--env",
        "android",
        "--serial",
        "a",
        "--serial",
        "b",
        "--model",
        model,
        "--out",
        str(tmp_path / "r"),
    ]
    result = sp("run", "t", *args)
    assert result.returncode == 2 and not (tmp_path / "r").exists()
    assert (
        result.stderr
        == "screenpilot: error: screenpilot run takes one --serial; several are for screenpilot bench\n"
    )
