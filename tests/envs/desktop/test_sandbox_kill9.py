"""A sandbox outlives no ``kill -9`` of the process that opened it: its X server, its app and what its shell
commands left running carry its watchdog's token and are ended; a normal close leaves no watchdog behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from screenpilot.envs.desktop import SandboxEnv
from screenpilot.reaper import TOKEN_VAR, marked

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="the watchdog reads /proc")

REPO = Path(__file__).resolve().parents[3]
DEMO = f"{sys.executable} -m screenpilot.envs.desktop.demo_app"
SLEEP = f"{400_000 + os.getpid()}.5"  # a sleep length no other process uses

OPENER = f"""
import sys, time
from screenpilot.envs.desktop import SandboxEnv
env = SandboxEnv(app={DEMO!r})
env.reset()
env.shell("sleep {SLEEP} &")
print(env._shell_environ()[{TOKEN_VAR!r}], flush=True)
time.sleep(120)
"""


def _watchdogs(token: str) -> list[int]:
    """Live watchdog processes started for ``token``, found by their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"screenpilot.reaper" in argv and token.encode() in argv:
                found.append(int(entry.name))
    return found


def _wait_until_none(token: str, timeout_s: float = 10.0) -> list[int]:
    """What still carries ``token``, or its watchdog, after at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (left := marked(token) + _watchdogs(token)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_kill_9_of_the_opener_ends_its_display_app_and_background_commands() -> None:
    opener = subprocess.Popen([sys.executable, "-c", OPENER], stdout=subprocess.PIPE, text=True, cwd=REPO)
    token = ""
    try:
        assert opener.stdout is not None
        token = opener.stdout.readline().strip()
        assert token, "the opener did not get its sandbox up"
        names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in marked(token)}
        assert {"Xvfb", "sleep"} <= names and any(n.startswith("python") for n in names), names
        opener.kill()  # kill -9: no close(), no finalizer, no exit hook
        opener.wait(10)
        assert _wait_until_none(token) == []
    finally:
        if opener.poll() is None:
            opener.kill()
        for pid in marked(token) if token else []:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def test_a_closed_sandbox_leaves_no_watchdog_and_nothing_marked() -> None:
    env = SandboxEnv()
    env.start()
    token = env._shell_environ()[TOKEN_VAR]  # type: ignore[index]
    assert len(_watchdogs(token)) == 1  # one per sandbox, however many processes it starts
    env.shell(f"sleep {SLEEP} &")
    assert len(_watchdogs(token)) == 1
    env.close()
    assert _watchdogs(token) == []
    assert marked(token) == []
