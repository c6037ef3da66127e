"""A private desktop: its own Xvfb display, optionally one app on it, all of it gone after ``close()``.

Nothing here reads or changes the caller's screen: the display is started by us, input goes to a pyautogui
platform module bound to it (see :mod:`screenpilot.envs.desktop.env`), screenshots and the clipboard name it
explicitly, and child processes get it in their own environment. pyautogui's fail-safe is off (nobody's hand
is on this mouse); points outside the screen are refused instead.

Cleanup is layered so nothing outlives the sandbox: ``close()`` (also from ``with`` and the CLI's
``finally``, so Ctrl-C included), a ``weakref.finalize`` that runs at interpreter exit or when the object is
dropped unclosed, SIGTERM turned into ``SystemExit`` (when the program has no handler of its own) so those
run on ``kill`` too, and process groups, so helpers forked by the app or by ``xclip``, and whatever a
``shell()`` command left running in the background, are stopped as well. Against ``kill -9``, which runs none
of that, the display's watchdog (:mod:`screenpilot.reaper`, one per sandbox) ends the X server, the app and the
shell commands, all started with its token in their environment, once this process is gone.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
import weakref
from typing import Any, ClassVar

from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.envs.base import Observation, ShellResult
from screenpilot.envs.desktop.env import DesktopBase
from screenpilot.envs.desktop.processes import ShellRunner, new_group_kwargs, stop_group, tail
from screenpilot.envs.desktop.xvfb import DEFAULT_SIZE, XvfbDisplay
from screenpilot.errors import DeviceError, MissingExtraError, SetupError


class AppStartError(SetupError):
    """The sandbox's app command exited before it opened a window (a wrong command, a missing module)."""


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _make_sigterm_unwind() -> None:
    """Turn SIGTERM into ``SystemExit`` so ``finally`` blocks and exit hooks run and stop the sandbox.

    Only where nobody chose a SIGTERM handler (the default action kills without any cleanup, leaving the
    X server behind) and only from the main thread, where Python allows installing handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _shutdown(xvfb: XvfbDisplay, apps: list[subprocess.Popen[bytes]], shells: ShellRunner) -> None:
    try:
        while apps:
            app = apps.pop()
            stop_group(app.pid, app, grace_s=1.0)
        shells.close()
    finally:
        xvfb.stop()


class SandboxEnv(DesktopBase):
    """A virtual ``size`` screen on a new Xvfb display; ``app`` (a shell command) is started on it at each
    ``reset()`` (a fresh instance per episode), and the first observation waits for its window."""

    name: ClassVar[str] = "sandbox"

    def __init__(
        self,
        size: Size = DEFAULT_SIZE,
        app: str | None = None,
        *,
        app_timeout_s: float = 20.0,
        background: tuple[int, int, int] = (46, 84, 122),
        **options: Any,
    ) -> None:
        options.pop("failsafe", None)
        super().__init__(monitor=1, failsafe=False, **options)
        self.size = Size(*size)
        self.app = app
        self.app_timeout_s = app_timeout_s
        self.background = background
        self._xvfb = XvfbDisplay(self.size)
        self._app: subprocess.Popen[bytes] | None = None
        self._apps: list[subprocess.Popen[bytes]] = []  # each the leader of its process group
        self._xconn: Any = None
        self._app_windows: set[int] = set()
        self._finalizer = weakref.finalize(self, _shutdown, self._xvfb, self._apps, self._shells)

    # -- display ----------------------------------------------------------------------------------------------
    @property
    def display(self) -> str:
        """The sandbox's display string (``:N``), starting the display if needed."""
        return self.start()

    def start(self) -> str:
        """Start the virtual display (done by ``reset()``; needed before ``shell()`` only)."""
        self._check_open()
        if self._xvfb.running:
            return self._xvfb.name
        if self._mss is not None or self._xconn is not None:  # the display died under us: start afresh
            self._disconnect()
            with contextlib.suppress(Exception):
                self._xconn.close()
            self._xconn = None
            self._stop_app()
            self._xvfb.stop()
        _make_sigterm_unwind()
        name = self._xvfb.start()
        try:
            from Xlib import display as xdisplay
        except ImportError as exc:
            self._xvfb.stop()
            raise MissingExtraError("desktop", "python-xlib", "the sandbox") from exc
        try:
            self._xconn = xdisplay.Display(name)
            r, g, b = self.background
            root = self._xconn.screen().root
            # A bare X root is black, and a black screenshot means a failed capture everywhere else.
            root.change_attributes(background_pixel=(r << 16) | (g << 8) | b)
            root.clear_area(0, 0, 0, 0)
            self._xconn.sync()
        except Exception as exc:
            self._xvfb.stop()
            raise DeviceError(f"cannot set up the virtual display: {exc}", device=name) from exc
        return name

    def _display_name(self) -> str | None:
        return self.start()

    def _owns_display(self) -> bool:
        return True

    def _shell_environ(self) -> dict[str, str] | None:
        return self._xvfb.environ()

    def shell(self, command: str, *, timeout: float = 30.0) -> ShellResult:
        """Run a command here with ``DISPLAY`` set to the sandbox (so GUI programs open inside it).

        ``shell("app &")`` returns at once; whatever a command leaves running is stopped by ``close()``.
        """
        self.start()
        return super().shell(command, timeout=timeout)

    # -- app --------------------------------------------------------------------------------------------------
    def _top_windows(self) -> set[int]:
        from Xlib import X

        windows = set()
        for child in self._xconn.screen().root.query_tree().children:
            try:
                if child.get_attributes().map_state == X.IsViewable:
                    windows.add(child.id)
            except Exception:  # the window went away meanwhile
                continue
        return windows

    def _stop_app(self) -> None:
        self._app = None
        while self._apps:
            app = self._apps.pop()
            stop_group(app.pid, app, grace_s=1.0)
        # X reuses a departed client's resource ids, so the next app's window may get an old window's id:
        # wait until the server has destroyed the old windows, or the next start could not tell them apart.
        deadline = time.monotonic() + 2.0
        while self._app_windows and self._xconn is not None and time.monotonic() < deadline:
            self._app_windows &= self._top_windows()
            if self._app_windows:
                time.sleep(0.01)
        self._app_windows = set()

    def _start_app(self, command: str) -> None:
        before = self._top_windows()
        log_path = self._xvfb.workdir / "app.log"
        with open(log_path, "ab") as log:
            self._app = subprocess.Popen(
                ["/bin/sh", "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._xvfb.environ(),
                **new_group_kwargs(),
            )
        self._apps.append(self._app)
        deadline = time.monotonic() + self.app_timeout_s
        while not (new := self._top_windows() - before):
            code = self._app.poll()
            if code is not None:
                raise AppStartError(
                    f"the app {command!r} exited with status {code} before opening a window; "
                    f"its output: {' '.join(tail(str(log_path)).split()) or '(none)'}"
                )
            if time.monotonic() >= deadline:
                raise DeviceError(
                    f"the app opened no window within {self.app_timeout_s:g} s: {tail(str(log_path))}",
                    device=self._xvfb.name,
                    command=command,
                )
            time.sleep(0.02)
        self._app_windows = new
        self._wait_stable(self.settle_timeout_s, interval_s=0.05)  # the first draws may come late too

    @property
    def app_running(self) -> bool:
        return self._app is not None and self._app.poll() is None

    # -- life cycle -------------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.start()
        self._connect()
        if self.app:
            self._stop_app()
            self._start_app(self.app)

    def _observation_of(self, image: Image.Image) -> Observation:
        """A frame as an observation, saying whether the app still runs (also for a frame settle hands over)."""
        observation = super()._observation_of(image)
        if self.app:
            info = dict(observation.info)
            info["app_running"] = self.app_running
            return Observation(observation.screenshot, observation.time, info)
        return observation

    def _close(self) -> None:
        try:
            self._disconnect()
            self._stop_app()
            self._shells.close()
            if self._xconn is not None:
                with contextlib.suppress(Exception):
                    self._xconn.close()
                self._xconn = None
        finally:
            self._xvfb.stop()
            self._finalizer.detach()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update({"size": str(self.size), "app": self.app})
        return info
