"""One run per phone: a lock file on this machine for each device an :class:`AndroidEnv` drives.

Two runs tapping the same phone interleave their taps and typing and each sees the other's screens, so the
second run on a device stops at once with :class:`DeviceBusyError` naming the first. The lock is an
``flock`` on a file in the temp folder, held from the environment's creation to its ``close()``; the
operating system drops it when the process ends, however it ends, so a crashed run never leaves the
phone locked. Environments of one process share their process's claim (a script that opens a second one
on purpose, e.g. to compare capture modes, is its own business). It covers the processes of this machine
only: another computer using the same ADB server is not seen.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from screenpilot.errors import SetupError


class DeviceBusyError(SetupError):
    """Another environment (in this or another process of this machine) is driving the device."""


def claim_path(host: str, port: int, serial: str) -> Path:
    """The lock file for ``serial`` behind the ADB server at ``host:port``."""
    name = re.sub(r"[^\w.-]", "_", f"{host}-{port}-{serial}")
    return Path(tempfile.gettempdir()) / f"screenpilot-android-{name}.lock"


_held: dict[Path, tuple[IO[str], int]] = {}  # this process's locked files and how many claims share each
_held_lock = threading.Lock()


class DeviceClaim:
    """This process's claim on one device, until :meth:`release` (safe twice) or the process ends."""

    def __init__(self, host: str, port: int, serial: str) -> None:
        self.path = claim_path(host, port, serial)
        with _held_lock:
            handle, count = _held.get(self.path) or (_lock(self.path, serial), 0)
            _held[self.path] = (handle, count + 1)
        self._held = True

    @property
    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        with _held_lock:
            if not self._held:
                return
            self._held = False
            handle, count = _held.pop(self.path)
            if count > 1:
                _held[self.path] = (handle, count - 1)
            else:
                with contextlib.suppress(OSError):  # another user's file in a sticky temp folder stays
                    self.path.unlink(missing_ok=True)
                handle.close()  # closing the file drops the flock


def _lock(path: Path, serial: str) -> IO[str]:
    """The lock file, locked and naming this process; DeviceBusyError naming the holder when another has it.

    The last release removes the file, so a claim taken on a file that was just removed is taken again on
    the file now at ``path``."""
    for _ in range(3):
        try:
            handle = _open_shared(path)
        except OSError as exc:
            raise SetupError(
                f"cannot claim Android device {serial!r}: {path}: {exc.strerror or exc}; remove that file, or "
                "pass exclusive=False to share the device"
            ) from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DeviceBusyError(
                f"Android device {serial!r} is in use by another screenpilot run ({holder}); wait for it to "
                "end or choose another device with --serial"
            ) from None
        if _is_at(handle, path):
            handle.truncate()
            handle.write(f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}")
            handle.flush()
            return handle
        handle.close()
    raise DeviceBusyError(f"Android device {serial!r} is changing hands between screenpilot runs; try again")


def _is_at(handle: IO[str], path: Path) -> bool:
    try:
        at = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (at.st_dev, at.st_ino) == (held.st_dev, held.st_ino)


def _open_shared(path: Path) -> IO[str]:
    """The lock file, made writable by every user (another user's run on this machine must be able to
    take the claim after ours; the temp folder's umask would otherwise leave it read-only to them)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o666)
        return os.fdopen(fd, "r+", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise
