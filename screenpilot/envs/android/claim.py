"""One agent per phone: a lock file on this machine for each device an :class:`AndroidEnv` drives.

Two runs tapping the same phone interleave their taps and typing and each sees the other's screens, so the
second run on a device stops at once with :class:`DeviceBusyError` naming the first. The lock is an
``flock`` on a file in the temp folder, held from the environment's creation to its ``close()``; the
operating system drops it when the process ends, however it ends, so a crashed run never leaves the
phone locked. It covers the runs of this machine only: another computer using the same ADB server is not
seen.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
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


class DeviceClaim:
    """An exclusive claim on one device, until :meth:`release` (safe twice) or the process ends."""

    def __init__(self, host: str, port: int, serial: str) -> None:
        self.path = claim_path(host, port, serial)
        self._file: IO[str] | None = None
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DeviceBusyError(
                f"Android device {serial!r} is in use by another screenpilot run ({holder}); wait for it to "
                "end or choose another device with --serial"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}")
        handle.flush()
        self._file = handle

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()  # closing the file drops the flock
