"""Ends what a process started when that process dies without closing it.

A bench worker or a desktop sandbox normally closes what it started (quits its browser, stops its X server and
apps) before it ends. When it is killed instead (``kill -9`` of the bench, of a driver that started a local
Ray, a node's Ray going down), those processes would be orphaned and run for ever, one set per worker, sandbox
and run. So they are marked with a token in their environment (inherited by everything they start in turn),
and a watchdog process waits: when the process that started it is gone (the watchdog's parent changes), it
sends SIGTERM to every process that carries the token, then SIGKILL to those still there 2 s later. A process
that closes normally ends its watchdog first (:meth:`Reaper.close`).

Two ways to mark: a Ray worker or driver marks its own environment (everything it starts after that inherits
the token); a browser or a sandbox puts the token only in the environment it starts its processes with
(:attr:`Reaper.token`, :meth:`Reaper.environ`).

Linux only (it reads ``/proc``); elsewhere nothing is started. Run as
``python -m screenpilot.reaper PARENT_PID TOKEN``. This module imports only the standard library, so the
environments and the bench can both use it, and a watchdog starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
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
        sys.exit(0)  # else the worker (or its process group) ending us while alive

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the run's to handle
    while os.getppid() == parent:
        time.sleep(_POLL_S)
    reap(token)


class Reaper:
    """A watchdog for this process: a fresh token, with which this process's environment is marked when
    ``mark`` (else the caller puts ``{TOKEN_VAR: token}`` in the environment of what it starts), and the
    watchdog process (nothing where ``/proc`` is missing)."""

    def __init__(self, *, mark: bool = True) -> None:
        self.token = uuid.uuid4().hex
        self._proc: subprocess.Popen[bytes] | None = None
        if not Path("/proc/self/environ").exists():
            return
        if mark:
            os.environ[TOKEN_VAR] = self.token
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "screenpilot.reaper", str(os.getpid()), self.token],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # out of the worker's process group, so a kill of the group spares it
        )

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` marked with this watchdog's token: the environment of a process it should end."""
        return {**base, TOKEN_VAR: self.token}

    def close(self) -> None:
        """The worker closed its device: end the watchdog without reaping, and unmark this process."""
        if os.environ.get(TOKEN_VAR) == self.token:
            del os.environ[TOKEN_VAR]
        proc, self._proc = self._proc, None
        if proc is not None:  # SIGKILL: the watchdog has nothing to tidy, and no interpreter exit to wait for
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
