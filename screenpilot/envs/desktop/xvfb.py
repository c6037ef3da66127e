"""A private X display: one Xvfb server, started on a free display number and stopped with everything on it."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from screenpilot.actions.coords import Size
from screenpilot.envs.desktop.processes import new_group_kwargs, stop_group, tail
from screenpilot.errors import DeviceError, SetupError
from screenpilot.reaper import Reaper

#: The sandbox's screen unless told otherwise: a common laptop size.
DEFAULT_SIZE = Size(1280, 800)


class XvfbDisplay:
    """An Xvfb server with one ``WxHx24`` screen.

    Xvfb picks the display number itself (``-displayfd``) and writes it once it accepts connections, so two
    sandboxes never race for a number and nobody polls a socket. ``-noreset`` keeps the server (and the
    app's windows) alive when the last client disconnects.

    The server, and every process started with :meth:`environ`, carries the token of one watchdog
    (:class:`~screenpilot.reaper.Reaper`) that ends them all should this process be killed before
    :meth:`stop`; ``stop()`` ends the watchdog too.
    """

    def __init__(self, size: Size = DEFAULT_SIZE, *, start_timeout_s: float = 10.0) -> None:
        self.size = Size(*size)
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._number: int | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._reaper: Reaper | None = None

    @property
    def name(self) -> str:
        """The display string, e.g. ``:7``."""
        if self._number is None:
            raise DeviceError("the virtual display is not running")
        return f":{self._number}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def workdir(self) -> Path:
        """A private folder for logs of this display's processes, removed on stop."""
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="screenpilot-xvfb-")
        return Path(self._workdir.name)

    def start(self) -> str:
        if self.running:
            return self.name
        binary = shutil.which("Xvfb")
        if binary is None:
            raise SetupError("the sandbox needs Xvfb: install it (Debian/Ubuntu: apt install xvfb)")
        if self.size.width < 1 or self.size.height < 1:
            raise SetupError(f"invalid sandbox screen size {self.size}")
        log_path = self.workdir / "xvfb.log"
        if self._reaper is None:  # else kept from a server that died: the same watchdog serves the next
            self._reaper = Reaper(mark=False)
        read_fd, write_fd = os.pipe()
        try:
            with open(log_path, "wb") as log:
                self._proc = subprocess.Popen(
                    [
                        binary,
                        "-displayfd",
                        str(write_fd),
                        "-screen",
                        "0",
                        f"{self.size.width}x{self.size.height}x24",
                        "-nolisten",
                        "tcp",
                        "-noreset",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(write_fd,),
                    env=self._reaper.environ(os.environ),
                    **new_group_kwargs(),
                )
            os.close(write_fd)
            write_fd = -1
            self._number = self._read_number(read_fd, str(log_path))
        except BaseException:
            self.stop()
            raise
        finally:
            if write_fd >= 0:
                os.close(write_fd)
            os.close(read_fd)
        return self.name

    def _read_number(self, fd: int, log_path: str) -> int:
        deadline = time.monotonic() + self.start_timeout_s
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceError(f"Xvfb did not start within {self.start_timeout_s:g} s: {tail(log_path)}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = os.read(fd, 64)
            if not chunk:  # the server exited before it was ready
                assert self._proc is not None
                code = self._proc.wait()
                raise DeviceError(f"Xvfb exited with status {code} before it was ready: {tail(log_path)}")
            data += chunk
        return int(data.strip())

    def stop(self) -> None:
        """Stop the server and every process in its group. Safe to call more than once."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_group(proc.pid, proc)
        reaper, self._reaper = self._reaper, None
        if reaper is not None:  # after the server: what it still had running was stopped above
            reaper.close()
        self._number = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment for child processes that puts them on this display (and on no other), marked so
        that the display's watchdog ends them if this process dies without stopping the display."""
        env: dict[str, Any] = dict(os.environ if base is None else base)
        env["DISPLAY"] = self.name
        if self._reaper is not None:
            env = self._reaper.environ(env)
        # ``python3 -m …`` in an app or a shell step means the interpreter running screenpilot (its virtual
        # environment), not whichever python3 comes first on the user's PATH.
        interpreter_dir = os.path.dirname(sys.executable)
        path = env.get("PATH", os.defpath)
        if interpreter_dir and path.split(os.pathsep)[0] != interpreter_dir:
            env["PATH"] = os.pathsep.join([interpreter_dir, path])
        env.pop("WAYLAND_DISPLAY", None)
        env.pop("XAUTHORITY", None)
        return env

    def __enter__(self) -> XvfbDisplay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
