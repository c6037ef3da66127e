"""The watchdog of a Ray worker: what the worker started is ended when the worker dies unclosed, and left alone
when the worker closes normally. Real processes, no Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from screenpilot.reaper import TOKEN_VAR, Reaper

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="the watchdog reads /proc")

REPO = Path(__file__).resolve().parents[1]
# A stand-in for a worker: starts its watchdog, then a long-lived process of its own (in a session of its own,
# as an X server or a browser driver may be), says its pid, and waits (closing its watchdog first if told to).
WORKER = """
import subprocess, sys, time
from screenpilot.reaper import Reaper
reaper = Reaper()
child = subprocess.Popen(["sleep", "60"], start_new_session=True)
print(child.pid, flush=True)
if sys.argv[1] == "close":
    reaper.close()
    print("closed", flush=True)
time.sleep(60)
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _worker(mode: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", WORKER, mode], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    if mode == "close":
        assert proc.stdout.readline().strip() == "closed"
    return proc, child


def test_a_worker_killed_unclosed_has_what_it_started_ended() -> None:
    worker, child = _worker("keep")
    try:
        assert _running(child)
        worker.kill()  # kill -9: the worker closes nothing
        worker.wait(10)
        deadline = time.monotonic() + 10
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(child)
    finally:
        if _running(child):
            os.kill(child, signal.SIGKILL)


def test_a_worker_that_closed_leaves_the_rest_alone() -> None:
    worker, child = _worker("close")
    try:
        worker.kill()
        worker.wait(10)
        time.sleep(1.5)  # three polls of a watchdog, were one still there
        assert _running(child)
    finally:
        os.kill(child, signal.SIGKILL)


def test_closing_unmarks_this_process() -> None:
    reaper = Reaper()
    try:
        assert os.environ[TOKEN_VAR] == reaper.token
    finally:
        reaper.close()
    assert TOKEN_VAR not in os.environ
