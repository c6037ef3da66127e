"""Nothing outlives a sandbox: Ctrl-C, SIGTERM or a plain exit of the program that started it, nor what its
``shell()`` started in the background."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from screenpilot.envs.desktop import SandboxEnv
from screenpilot.errors import DeviceError

REPO = Path(__file__).resolve().parents[3]
DEMO = f"{sys.executable} -m screenpilot.envs.desktop.demo_app"
#: Sleep lengths (seconds) no other test process uses: a run of these tests beside another one on the same
#: machine must neither count nor kill the other's sleeps.
SLEEPS = [f"{300_000 + os.getpid()}.{n}" for n in (25, 5, 75, 125, 15)]


def descendants(pid: int) -> dict[int, str]:
    """Live (non-zombie) descendants of ``pid``: pid -> command name."""
    parents: dict[int, tuple[int, str, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        parents[int(entry)] = (int(ppid), comm, state)
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, comm, state) in parents.items():
            if ppid == parent and child not in found and state not in ("Z", "X"):
                found[child] = comm
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def running(*argv: str) -> list[int]:
    """Live processes whose command line is exactly ``argv``."""
    want = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline == want and alive(int(entry)):
            found.append(int(entry))
    return found


def started(*sleeps: str, timeout: float = 5.0) -> list[int]:
    """The pids of ``sleep SECONDS`` for each of ``sleeps``, waiting until each has one: a background command's
    shell may return before its child has turned from a copy of the shell into ``sleep``."""
    deadline = time.monotonic() + timeout
    while True:
        found = [running("sleep", seconds) for seconds in sleeps]
        if all(found) or time.monotonic() > deadline:
            return [pid for pids in found for pid in pids]
        time.sleep(0.02)


def reap(pids: dict[int, str]) -> list[int]:
    """The pids still alive; they are killed (with their groups) so a failing test leaves nothing behind."""
    time.sleep(0.1)
    left = [pid for pid in pids if alive(pid)]
    for pid in left:
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    return left


def wait_ready(log: Path, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and '"ready"' in log.read_text():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the demo app never became ready")


def start_cli(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    replay = tmp_path / "wait.jsonl"
    call = {"name": "computer_use", "arguments": {"action": "wait", "time": 60}}
    replay.write_text(json.dumps({"output": f"<tool_call>\n{json.dumps(call)}\n</tool_call>"}) + "\n")
    log = tmp_path / "events.jsonl"
    argv = ["run", "wait", "--env", "sandbox", "--app", f"{DEMO} --log {log}", "--model", f"replay:{replay}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "screenpilot", *argv, "--out", str(tmp_path / "run"), "--quiet"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, log


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_cli_stops_the_display_and_the_app(tmp_path: Path, sig: int, code: int) -> None:
    proc, log = start_cli(tmp_path)
    try:
        wait_ready(log, proc)
        children = descendants(proc.pid)
        assert "Xvfb" in children.values()
        assert any(name.startswith("python") for name in children.values())  # the demo app
        time.sleep(0.2)  # into the 60 s wait
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = reap(children)
    assert proc.returncode == code, out
    assert left == []


def test_a_program_that_forgets_to_close_leaves_nothing_behind() -> None:
    code = (
        "from screenpilot.envs.desktop import SandboxEnv\n"
        f"env = SandboxEnv(app={DEMO!r})\n"
        "env.reset()\n"
        "env.clipboard().set_text('ü')\n"
        "import os; print(os.getpid(), flush=True)\n"
        "input()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        children = descendants(proc.pid)
        assert "Xvfb" in children.values()
        proc.communicate("\n", timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = reap(children)
    assert proc.returncode == 0
    assert left == []


def test_shell_returns_when_the_command_has_only_started_something_in_the_background() -> None:
    env = SandboxEnv()
    try:
        t0 = time.monotonic()
        plain = env.shell(f"sleep {SLEEPS[0]} &", timeout=10)
        quiet = env.shell(f"sleep {SLEEPS[1]} >/dev/null 2>&1 & echo started; exit 3", timeout=10)
        elapsed = time.monotonic() - t0
        # Both still run, each in a process group the environment remembers.
        pids = started(SLEEPS[0], SLEEPS[1])
        groups = {os.getpgid(pid) for pid in pids}
    finally:
        env.close()
    left = reap(dict.fromkeys(pids, "sleep"))
    assert elapsed < 2.0
    assert plain.exit_code == 0
    assert (quiet.output, quiet.exit_code) == ("started\n", 3)
    assert len(pids) == 2 and len(groups) == 2
    assert left == []  # close() stopped them


def test_a_sandbox_dropped_unclosed_stops_what_shell_left_running() -> None:
    code = (
        "from screenpilot.envs.desktop import SandboxEnv\n"
        "env = SandboxEnv()\n"
        f"print(env.shell('sleep {SLEEPS[2]} &').exit_code, flush=True)\n"
        "input()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "0\n"
        pids = started(SLEEPS[2])
        proc.communicate("\n", timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = reap(dict.fromkeys(pids, "sleep"))
    assert proc.returncode == 0
    assert len(pids) == 1
    assert left == []


def test_a_foreground_command_past_its_timeout_is_killed_with_its_background_ones() -> None:
    env = SandboxEnv()
    try:
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match=r"timed out after 0\.5 s"):
            env.shell(f"sleep {SLEEPS[3]} & sleep {SLEEPS[4]}", timeout=0.5)
        elapsed = time.monotonic() - t0
        time.sleep(0.1)
        left = running("sleep", SLEEPS[3]) + running("sleep", SLEEPS[4])
        assert env.shell("echo still usable", timeout=5).output == "still usable\n"
    finally:
        env.close()
    reap(dict.fromkeys(left, "sleep"))
    assert elapsed < 3.0
    assert left == []
