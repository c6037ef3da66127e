"""Ends what a Ray episode worker started when the worker dies without closing it.

A worker normally closes its device (quits its browser, stops its X server and apps) before it ends. When it is
killed instead (the driver that started a local Ray was killed with ``kill -9``, its node's Ray went down), those
processes would be orphaned and run for ever, one set per worker and run. So each worker marks its own
environment with a token that every process it starts inherits, and starts this watchdog: when the worker is
gone (the watchdog's parent changes), it sends SIGTERM to every process that carries the token, then SIGKILL to
those still there 2 s later. A worker that closes normally ends its watchdog first (:meth:`Reaper.close`).

Linux only (it reads ``/proc``); elsewhere nothing is started. Run as
``python -m screenpilot.tasks.ray_reaper PARENT_PID TOKEN``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

#: The variable a worker sets in its own environment, inherited by everything it starts.
TOKEN_VAR = "SCREENPILOT_WORKER_TOKEN"
_POLL_S = 0.5
_GRACE_S = 2.0


def marked(token: str, proc: Path = Path("/proc")) -> list[int]:
    """Processes (other than this one) whose environment carries ``token``."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def reap(token: str) -> list[int]:
    """SIGTERM to every process carrying ``token``, SIGKILL to those still there after the grace; the pids hit."""
    hit = marked(token)
    for pid in hit:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_S
    while time.monotonic() < deadline and marked(token):
        time.sleep(0.1)
    for pid in marked(token):
        _signal(pid, signal.SIGKILL)
    return hit


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(OSError):  # already gone
        os.kill(pid, sig)


def watch(parent: int, token: str) -> None:
    """Wait until ``parent`` is no longer this process's parent (it died), then reap."""

    def on_term(signum: int, frame: object) -> None:
        if os.getppid() != parent:  # ended by whoever cleans up after the dead worker: do our part first
            reap(token)
        sys.exit(0)  # else the worker ending us normally

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the run's to handle
    while os.getppid() == parent:
        time.sleep(_POLL_S)
    reap(token)


class Reaper:
    """A worker's watchdog: marks this process's environment with a fresh token and starts the watchdog process
    (nothing where ``/proc`` is missing)."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self._proc: subprocess.Popen[bytes] | None = None
        if not Path("/proc/self/environ").exists():
            return
        os.environ[TOKEN_VAR] = self.token
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "screenpilot.tasks.ray_reaper", str(os.getpid()), self.token],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # out of the worker's process group, so a kill of the group spares it
        )

    def close(self) -> None:
        """The worker closed its device: end the watchdog without reaping, and unmark this process."""
        if os.environ.get(TOKEN_VAR) == self.token:
            del os.environ[TOKEN_VAR]
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
