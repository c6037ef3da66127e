"""Child processes that must not outlive their owner: each in its own process group, stopped as a group.

A GUI app started by a sandbox forks helpers of its own (browsers do, ``xclip`` does); killing just the pid
we started would leave those behind, so everything is started as the leader of a new process group and
stopped with ``killpg``. A new group (not a new session) also keeps the terminal's Ctrl-C away from
children, so the owner can shut them down in order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from screenpilot.envs.base import ShellResult
from screenpilot.errors import DeviceError


def new_group_kwargs() -> dict[str, Any]:
    """Popen keyword arguments that make the child the leader of a new process group."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    return {"process_group": 0}


def _group_members_linux(pgid: int) -> bool | None:
    """Whether a live (non-zombie) process is in the group, from /proc; None where /proc is unusable.

    ``killpg(pgid, 0)`` also succeeds for zombies, which linger where PID 1 is slow to reap orphans.
    """
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count)."""
    if sys.platform == "win32":
        return False
    if sys.platform.startswith("linux"):
        members = _group_members_linux(pgid)
        if members is not None:
            return members
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, proc: subprocess.Popen[Any] | None = None, *, grace_s: float = 2.0) -> None:
    """SIGTERM the whole group, then SIGKILL what is left after ``grace_s``. Reaps ``proc`` if given."""
    if sys.platform == "win32":  # pragma: no cover - no process groups to signal
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        if not group_alive(pgid):
            break
        time.sleep(0.01)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)


_CAN_PEEK = all(hasattr(os, name) for name in ("waitid", "WNOWAIT", "WNOHANG", "P_PID", "CLD_EXITED"))


def _wait_exit(proc: subprocess.Popen[Any], timeout: float) -> int | None:
    """Wait up to ``timeout`` for ``proc`` to exit; its exit status (negative for a signal), or None.

    Where the platform allows (``waitid`` with ``WNOWAIT``), the process is left unreaped: while it is a
    zombie its pid, which is also the id of its process group, cannot be given to another process, so the
    group can still be signalled safely later.
    """
    if not _CAN_PEEK:
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped by someone else (e.g. SIGCHLD ignored): no status to peek at
            return proc.wait()
        if info is not None and info.si_pid == proc.pid:
            return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.01)


def _read_all(file: IO[bytes]) -> bytes:
    """A file's content, read without moving its offset where possible: a background process may still be
    writing through it, at that same offset."""
    if not hasattr(os, "pread"):  # Windows
        file.seek(0)
        return file.read()
    chunks: list[bytes] = []
    offset = 0
    while chunk := os.pread(file.fileno(), 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


class ShellRunner:
    """Runs shell commands for an environment; :meth:`close` stops what they left running in the background.

    A command returns when its shell exits, not when every process holding its output does: output goes to a
    temporary file, so ``app &`` returns at once with the app still running (a pipe would stay open in the
    app and make the caller wait for it). The command's process group, with any background process in it,
    is remembered until it is empty, and ``close()`` stops what is left.
    """

    def __init__(self) -> None:
        self._background: list[subprocess.Popen[bytes]] = []  # shells whose groups still have live members

    def run(
        self,
        command: str,
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        device: str,
    ) -> ShellResult:
        """Run ``command`` with ``/bin/sh -c`` (``cmd /c`` on Windows); stdout and stderr together.

        ``timeout`` applies to the shell itself: when it is still running then, its whole process group is
        killed (whatever it started in the background included) and :class:`DeviceError` says so.
        """
        self._forget_finished()
        argv: Sequence[str] = (
            ["cmd", "/c", command] if sys.platform == "win32" else ["/bin/sh", "-c", command]
        )
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                **new_group_kwargs(),
            )
            try:
                code = _wait_exit(proc, timeout)
            except BaseException:
                stop_group(proc.pid, proc, grace_s=0.5)
                raise
            if code is None:
                stop_group(proc.pid, proc, grace_s=0.5)
                raise DeviceError(
                    f"shell command timed out after {timeout:g} s", device=device, command=command
                )
            if sys.platform != "win32" and group_alive(proc.pid):
                self._background.append(proc)  # reaped by close(), after the group is stopped
            else:
                proc.wait()
            output = _read_all(out)
        return ShellResult(output.decode("utf-8", errors="replace"), code)

    def _forget_finished(self) -> None:
        for proc in list(self._background):
            if not group_alive(proc.pid):
                proc.wait()
                self._background.remove(proc)

    def close(self) -> None:
        """Stop every process the commands left running (each group: SIGTERM, then SIGKILL)."""
        while self._background:
            proc = self._background.pop()
            stop_group(proc.pid, proc, grace_s=1.0)


def tail(path: str | None, limit: int = 2000) -> str:
    """The last ``limit`` characters of a log file, for error messages."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""
