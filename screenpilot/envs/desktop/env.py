"""The desktop environment: screenshots with mss, mouse and keyboard with pyautogui.

Device pixels are the screenshot's pixels. pyautogui works in the desktop's logical coordinates (points on
a HiDPI Mac, offset by the monitor's position on a multi-monitor desktop), so every point is converted with
the monitor's origin and the ratio between its logical size and the screenshot's size.

**Binding pyautogui to a display.** On X11 pyautogui connects to ``$DISPLAY`` once, at import, and keeps the
connection in its platform module. Instead of making the whole process follow one display, each environment
loads its *own copy* of that platform module, bound to its display, and points ``pyautogui.platformModule``
at it (under a lock) for the duration of each action. So a sandbox never sends input to the caller's
screen, several sandboxes can live in one process, and the import-time ``$DISPLAY`` is set only for the
instant of the import (then put back).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, assert_never

from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.actions.types import (
    Action,
    Answer,
    Click,
    Drag,
    Key,
    LongPress,
    MouseMove,
    OpenApp,
    Scroll,
    Swipe,
    SystemButton,
    Terminate,
    TypeText,
    Wait,
)
from screenpilot.envs.base import Environment, Observation, Platform, ShellResult
from screenpilot.envs.desktop.clipboard import Clipboard, PyperclipClipboard, XClipboard
from screenpilot.envs.desktop.keys import UnknownKeyError, normalize_combo
from screenpilot.envs.desktop.processes import ShellRunner
from screenpilot.envs.settle import SettleResult, wait_until_stable
from screenpilot.errors import (
    DeviceError,
    MissingExtraError,
    ModelOutputError,
    SetupError,
    UnsupportedActionError,
)

#: Serialises every use of pyautogui: its platform module and fail-safe switch are process-wide.
_PYAUTOGUI_LOCK = threading.RLock()
_X11 = sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd"))


class PointOutsideScreenError(ModelOutputError, ValueError):
    """A point lies outside the screen the model was shown."""


class FailSafeError(DeviceError):
    """pyautogui's fail-safe fired: someone moved the mouse into a screen corner to stop the agent."""


@dataclass(frozen=True)
class MonitorFrame:
    """Where one monitor's screenshot lies on the desktop pyautogui moves in.

    ``device`` is the screenshot's size in pixels; ``logical`` the monitor's size in the desktop's points
    (half of it on a 2x Retina screen), placed at ``left, top`` (negative left of or above the primary).
    """

    left: int
    top: int
    device: Size
    logical: Size

    def to_logical(self, x: int, y: int) -> tuple[int, int]:
        """The desktop point showing device pixel ``(x, y)``; points off this monitor are refused."""
        w, h = self.device
        if not (0 <= x < w and 0 <= y < h):
            raise PointOutsideScreenError(f"The point ({x}, {y}) is outside the screen ({w}x{h}).")
        # Floor, not round: the last pixel of a 2x screen must stay on this monitor.
        return self.left + x * self.logical.width // w, self.top + y * self.logical.height // h

    @property
    def scale(self) -> tuple[float, float]:
        """Device pixels per logical point."""
        return self.device.width / self.logical.width, self.device.height / self.logical.height


@contextmanager
def _display_variable(display: str | None) -> Iterator[None]:
    """``$DISPLAY`` set to ``display`` for the duration of an import that reads it, then put back."""
    if display is None:
        yield
        return
    missing = object()
    before: Any = os.environ.get("DISPLAY", missing)
    os.environ["DISPLAY"] = display
    try:
        yield
    finally:
        if before is missing:
            del os.environ["DISPLAY"]
        else:
            os.environ["DISPLAY"] = before


def _import_pyautogui(display: str | None) -> Any:
    with _PYAUTOGUI_LOCK, _display_variable(display if "pyautogui" not in sys.modules else None):
        try:
            module: Any = importlib.import_module("pyautogui")
        except ImportError as exc:
            raise MissingExtraError(
                "desktop", getattr(exc, "name", None) or "pyautogui", "the desktop"
            ) from exc
        except Exception as exc:  # pyautogui connects to the display while importing
            raise DeviceError(f"cannot start pyautogui: {type(exc).__name__}: {exc}", device=display) from exc
    module.PAUSE = 0
    return module


def _x11_platform_module(pyautogui: Any, display: str) -> ModuleType:
    """A private copy of pyautogui's X11 platform module, connected to ``display``."""
    origin = sys.modules["pyautogui._pyautogui_x11"].__file__
    spec = importlib.util.spec_from_file_location(f"screenpilot._pyautogui_x11_{display}", origin)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with _PYAUTOGUI_LOCK, _display_variable(display):
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise DeviceError(
                f"cannot connect to the X display: {type(exc).__name__}: {exc}", device=display
            ) from exc
    return module


def _write(pg: Any, text: str) -> None:
    """Type printable ASCII key by key, as ``pyautogui.write`` does (the fail-safe checked before each key),
    but never leave a key down: an interrupt (Ctrl-C) or error between a key's press and its release
    releases it, and Shift, which pyautogui holds while it presses a shifted character. The X server ignores
    the release of a key that is already up."""
    keys = pg.platformModule
    for key in text:
        pg.failSafeCheck()
        try:
            keys._keyDown(key)
            keys._keyUp(key)
        except BaseException:
            keys._keyUp(key)
            if pg.isShiftCharacter(key):
                keys._keyUp("shift")
            raise


def _is_typable(text: str) -> bool:
    """Whether pyautogui can type ``text`` key by key: printable ASCII, newlines and tabs only."""
    return all((" " <= c <= "~") or c in "\n\t" for c in text)


#: What typed text splits at, and the key each separator presses (``\r\n`` is one newline).
_LINE_BREAKS = re.compile(r"(\r\n|\r|\n|\t)")
_BREAK_KEYS = {"\r\n": "enter", "\r": "enter", "\n": "enter", "\t": "tab"}


def _refusal(action: OpenApp | Swipe | Answer | Terminate) -> str:
    """Why a desktop does not do ``action``, and what the model can use instead."""
    match action:
        case OpenApp():
            return "open is not available on a desktop: click the app's icon or launcher instead."
        case Swipe():
            return "swipe is a touch gesture; on a desktop use left_click_drag to drag or scroll to scroll."
        case Answer() | Terminate():
            return f"{action.action} ends the episode; it is not done on the screen."
        case _:
            assert_never(action)


def _wheel(pg: Any, clicks: int, at: tuple[int, int] | None, *, horizontal: bool) -> None:
    """Turn the wheel ``clicks`` notches at ``at`` (or the cursor); positive is up, or left when horizontal.

    pyautogui's horizontal scroll counts positive as right (X buttons 7 right, 6 left), so the sign flips.
    Windows has no horizontal wheel event in pyautogui; there Shift with the vertical wheel scrolls sideways,
    as Windows applications expect.
    """
    where: dict[str, int] = {} if at is None else {"x": at[0], "y": at[1]}
    if not horizontal:
        pg.scroll(clicks, _pause=False, **where)
    elif sys.platform == "win32":
        with pg.hold("shift", _pause=False):
            pg.scroll(clicks, _pause=False, **where)
    else:
        pg.hscroll(-clicks, _pause=False, **where)


class DesktopBase(Environment):
    """What the real desktop and the sandbox share: capture, input and local capabilities."""

    platform: ClassVar[Platform] = "desktop"
    #: One wheel click for this many model pixels of scrolling.
    scroll_step_px: ClassVar[int] = 100

    def __init__(
        self,
        *,
        monitor: int = 1,
        failsafe: bool = True,
        settle_timeout_s: float = 3.0,
        settle_min_wait_s: float | None = None,
        paste_keys: tuple[str, ...] | None = None,
        paste_wait_s: float = 1.0,
    ) -> None:
        self.monitor = monitor
        self.failsafe = failsafe
        self.settle_timeout_s = settle_timeout_s
        #: Settling waits this long before comparing frames (None: the shared default of
        #: :func:`~screenpilot.envs.settle.wait_until_stable`), so a late redraw is not missed.
        self.settle_min_wait_s = settle_min_wait_s
        self.paste_keys = paste_keys or (("command", "v") if sys.platform == "darwin" else ("ctrl", "v"))
        self.paste_wait_s = paste_wait_s
        self._display: str | None = None
        self._pyautogui: Any = None
        self._platform_module: ModuleType | None = None
        self._mss: Any = None
        self._region: dict[str, int] = {}
        self._frame = MonitorFrame(0, 0, Size(0, 0), Size(0, 0))
        self._logical = Size(0, 0)
        self._clipboard: Clipboard | None = None
        self._shells = ShellRunner()

    # -- connection -------------------------------------------------------------------------------------------
    def _display_name(self) -> str | None:
        """The X display to use (``None`` off X11)."""
        raise NotImplementedError

    def _connect(self) -> None:
        if self._mss is not None:
            return
        display = self._display_name()
        pyautogui = _import_pyautogui(display)
        if display is not None:
            self._platform_module = _x11_platform_module(pyautogui, display)
        self._pyautogui = pyautogui
        self._display = display
        with _PYAUTOGUI_LOCK:
            if self._platform_module is not None:
                pyautogui.platformModule = self._platform_module
            self._logical = Size(*pyautogui.size())
        try:
            import mss
        except ImportError as exc:
            raise MissingExtraError("desktop", "mss", "desktop screenshots") from exc
        factory = getattr(mss, "MSS", None) or mss.mss
        kwargs = {"display": display} if display is not None else {}
        try:
            self._mss = factory(**kwargs)
            monitors = self._mss.monitors
        except Exception as exc:
            self._mss = None
            raise DeviceError(
                f"cannot capture the screen: {type(exc).__name__}: {exc}", device=display
            ) from exc
        if not 0 <= self.monitor < len(monitors):
            self._disconnect()
            raise SetupError(
                f"monitor {self.monitor} does not exist; this desktop has monitors 1..{len(monitors) - 1} "
                "(0 is all of them together)"
            )
        mon = monitors[self.monitor]
        self._region = {k: int(mon[k]) for k in ("left", "top", "width", "height")}
        first = self._grab()
        self._frame = MonitorFrame(
            self._region["left"],
            self._region["top"],
            Size(*first.size),
            Size(self._region["width"], self._region["height"]),
        )

    def _disconnect(self) -> None:
        if self._clipboard is not None:
            self._clipboard.close(stop_daemons=self._owns_display())
            self._clipboard = None
        if self._mss is not None:
            with suppress(Exception):
                self._mss.close()
            self._mss = None
        module, self._platform_module = self._platform_module, None
        if module is not None:
            with suppress(Exception):
                module._display.close()

    def _owns_display(self) -> bool:
        """Whether this environment's display (and so every clipboard daemon on it) is private."""
        return False

    # -- capture ----------------------------------------------------------------------------------------------
    def _grab(self) -> Image.Image:
        try:
            shot = self._mss.grab(self._region)
        except Exception as exc:
            raise DeviceError(
                f"screenshot failed: {type(exc).__name__}: {exc}", device=self._display
            ) from exc
        # mss gives BGRA bytes; PIL's raw BGRX decoder turns them into RGB in one C pass.
        return Image.frombuffer("RGB", shot.size, shot.bgra, "raw", "BGRX", 0, 1)

    def _observe(self) -> Observation:
        return self._observation_of(self._grab())

    def _observation_of(self, image: Image.Image) -> Observation:
        """A frame of this monitor as an observation, with the facts that place it on the desktop."""
        return Observation(
            image,
            info={
                "display": self._display,
                "monitor": self.monitor,
                "origin": (self._frame.left, self._frame.top),
                "scale": self._frame.scale,
            },
        )

    def settle(self, timeout_s: float | None = None, min_wait_s: float | None = None) -> SettleResult:
        """Wait until the screen stops changing (bounded); the loop's settle hook can call this.

        ``min_wait_s`` (default ``settle_min_wait_s``) passes before frames are compared, so an app that
        redraws a little after the input is not judged settled on the frame from before the action. A
        stable last frame comes back as ``observation`` too, and the loop takes it as the next step's screen.
        """
        self._check_ready()
        result = self._wait_stable(
            self.settle_timeout_s if timeout_s is None else timeout_s, min_wait_s=min_wait_s
        )
        return result.handed_over(self._observation_of)

    def _wait_stable(
        self, timeout_s: float, *, min_wait_s: float | None = None, interval_s: float = 0.1
    ) -> SettleResult:
        min_wait = self.settle_min_wait_s if min_wait_s is None else min_wait_s
        if min_wait is None:
            return wait_until_stable(self._grab, timeout_s=timeout_s, interval_s=interval_s)
        return wait_until_stable(self._grab, timeout_s=timeout_s, interval_s=interval_s, min_wait_s=min_wait)

    # -- input ------------------------------------------------------------------------------------------------
    @contextmanager
    def _input(self) -> Iterator[Any]:
        """pyautogui, pointed at this environment's display, with this environment's fail-safe setting."""
        pg = self._pyautogui
        assert pg is not None
        with _PYAUTOGUI_LOCK:
            if self._platform_module is not None:
                pg.platformModule = self._platform_module
            pg.PAUSE = 0
            pg.FAILSAFE = self.failsafe
            if self.failsafe:
                pg.FAILSAFE_POINTS = self._corners()
            try:
                yield pg
            except pg.FailSafeException:
                raise FailSafeError(
                    "pyautogui's fail-safe stopped the agent: the mouse pointer is in a corner of the screen. "
                    "Move it away from the corners to let the agent act again.",
                    device=self._display,
                ) from None
            except (ModelOutputError, DeviceError):
                raise
            except Exception as exc:  # the X connection died, the OS refused the input, ...
                raise DeviceError(f"input failed: {type(exc).__name__}: {exc}", device=self._display) from exc

    def _point(self, x: int, y: int) -> tuple[int, int]:
        """Device pixel -> logical desktop point, refusing points off this monitor."""
        lx, ly = self._frame.to_logical(x, y)
        if self.failsafe and (lx, ly) in self._corners():
            # An action must not trip the user's emergency stop: stay one pixel off the corner.
            sw, sh = self._logical
            lx = 1 if lx == 0 else sw - 2 if lx == sw - 1 else lx
            ly = 1 if ly == 0 else sh - 2 if ly == sh - 1 else ly
        return lx, ly

    def _corners(self) -> list[tuple[int, int]]:
        """pyautogui's fail-safe points: the corners of the primary screen, in logical points."""
        w, h = self._logical
        return [(0, 0), (0, h - 1), (w - 1, 0), (w - 1, h - 1)]

    def _check_keys(self, pg: Any, combo: tuple[str, ...]) -> None:
        for key in combo:
            if self._platform_module is not None:
                ok = bool(self._platform_module.keyboardMapping.get(key))
            else:
                ok = bool(pg.isValidKey(key))
            if not ok:
                raise UnknownKeyError(f"The key {key!r} is not available on this desktop's keyboard.")

    def _execute(self, action: Action) -> None:
        match action:
            case Click():
                self._click(self._optional_point(action.x, action.y), action.button, action.count)
            case MouseMove():
                lx, ly = self._point(action.x, action.y)
                with self._input() as pg:
                    pg.moveTo(lx, ly, _pause=False)
            case Drag():
                start = self._optional_point(action.x, action.y)
                self._drag(start, self._point(action.x2, action.y2), action.seconds)
            case LongPress():
                self._hold(self._point(action.x, action.y), action.seconds)
            case Scroll():
                at, clicks = self._optional_point(action.x, action.y), self.wheel_clicks(action.pixels)
                if clicks:
                    with self._input() as pg:
                        _wheel(pg, clicks, at, horizontal=action.axis == "horizontal")
            case Key():
                self._press(normalize_combo(action.keys))
            case TypeText():
                self._type(action.text)
            case SystemButton():
                if action.button != "enter":
                    raise UnsupportedActionError(
                        f"system_button {action.button} is a phone button; on a desktop use action=key "
                        '(e.g. ["alt", "left"] to go back) or click on screen.'
                    )
                self._press(("enter",))
            case Wait():
                time.sleep(action.seconds)
            case OpenApp() | Swipe() | Answer() | Terminate():
                raise UnsupportedActionError(_refusal(action))
            case _:
                assert_never(action)

    def _optional_point(self, x: int | None, y: int | None) -> tuple[int, int] | None:
        """:meth:`_point` of an action's optional point; None (at the cursor) when it has none."""
        return self._point(x, y) if x is not None and y is not None else None

    def _click(self, at: tuple[int, int] | None, button: str, count: int) -> None:
        with self._input() as pg:
            if at is None:
                pg.click(button=button, clicks=count, interval=0.0, _pause=False)
            else:
                pg.click(at[0], at[1], button=button, clicks=count, interval=0.0, _pause=False)

    def _hold(self, at: tuple[int, int], seconds: float) -> None:
        """Press the left button at ``at`` for ``seconds``; released whatever happens."""
        with self._input() as pg:
            pg.moveTo(at[0], at[1], _pause=False)
            pg.mouseDown(button="left", _pause=False)
            try:
                time.sleep(seconds)
            finally:
                pg.mouseUp(button="left", _pause=False)

    @classmethod
    def wheel_clicks(cls, pixels: int) -> int:
        """Model pixels -> wheel clicks: one per ``scroll_step_px``, at least one, sign kept (positive = up)."""
        if pixels == 0:
            return 0
        clicks = max(1, round(abs(pixels) / cls.scroll_step_px))
        return clicks if pixels > 0 else -clicks

    def _drag(self, start: tuple[int, int] | None, end: tuple[int, int], seconds: float) -> None:
        with self._input() as pg:
            if start is not None:
                pg.moveTo(start[0], start[1], _pause=False)
            x0, y0 = pg.position()
            steps = max(2, min(100, int(seconds / 0.02)))
            pg.mouseDown(button="left", _pause=False)
            try:
                for i in range(1, steps + 1):
                    pg.moveTo(
                        round(x0 + (end[0] - x0) * i / steps),
                        round(y0 + (end[1] - y0) * i / steps),
                        _pause=False,
                    )
                    time.sleep(seconds / steps)
            finally:
                pg.mouseUp(button="left", _pause=False)

    def _press(self, combo: tuple[str, ...]) -> None:
        """Press keys in order, release in reverse; whatever happens, nothing is left held down."""
        with self._input() as pg:
            self._check_keys(pg, combo)
            pressed: list[str] = []
            try:
                for key in combo:
                    pg.keyDown(key, _pause=False)
                    pressed.append(key)
            finally:
                for key in reversed(pressed):
                    pg.keyUp(key, _pause=False)

    def _type(self, text: str) -> None:
        """ASCII key by key; other text pasted. Newlines press Return and tabs Tab either way (a pasted newline
        would be inserted literally, or dropped by a one-line field, instead of submitting)."""
        if not text:
            return
        if _is_typable(text):
            with self._input() as pg:
                _write(pg, text)
            return
        for part in _LINE_BREAKS.split(text):
            if part in _BREAK_KEYS:
                self._press((_BREAK_KEYS[part],))
            elif _is_typable(part):
                with self._input() as pg:
                    _write(pg, part)
            elif part:
                self._paste(part)

    def clipboard(self) -> Clipboard:
        """The clipboard of this environment's display."""
        if self._clipboard is None:
            self._clipboard = XClipboard(self._display) if self._display is not None else PyperclipClipboard()
        return self._clipboard

    def _paste(self, text: str) -> None:
        """Type any Unicode by pasting it, then put the previous clipboard back.

        The app fetches the text from the clipboard's owner some time after the paste keys. On X11 the
        offer reports that moment; elsewhere the screen settling stands in for it. Either way the wait is
        bounded by ``paste_wait_s``, and the old clipboard is restored only afterwards.
        """
        clip = self.clipboard()
        saved = clip.save()
        offer = clip.offer_text(text)
        try:
            self._press(self.paste_keys)
            if offer.wait(self.paste_wait_s) is None:
                self._wait_stable(self.paste_wait_s, interval_s=0.03)
        finally:
            try:
                clip.restore(saved)
            finally:
                offer.close()

    # -- capabilities -----------------------------------------------------------------------------------------
    def _shell_environ(self) -> dict[str, str] | None:
        return None

    def shell(self, command: str, *, timeout: float = 30.0) -> ShellResult:
        """Run a command on this machine (output and exit status), e.g. to set up or check a task.

        Returns when the shell exits: ``app &`` returns at once and leaves the app running until ``close()``.
        """
        return self._shells.run(
            command, timeout=timeout, env=self._shell_environ(), device=self._display or self.name
        )

    def push_file(self, local: Path, remote: str) -> None:
        target = Path(remote).expanduser()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, target)
        except OSError as exc:
            raise DeviceError(f"cannot copy {local} to {remote}: {exc.strerror}", device=self.name) from exc

    def read_file(self, remote: str) -> bytes:
        """The file's bytes; FileNotFoundError when nothing is there, DeviceError when it cannot be read."""
        try:
            return Path(remote).expanduser().read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:  # a folder, no permission, a path through a file, an I/O error
            raise DeviceError(f"cannot read {remote}: {exc.strerror or exc}", device=self.name) from exc

    # -- life cycle -------------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._connect()

    def _close(self) -> None:
        try:
            self._disconnect()
        finally:
            self._shells.close()

    def describe(self) -> dict[str, Any]:
        return {
            "env": self.name,
            "platform": self.platform,
            "display": self._display,
            "monitor": self.monitor,
            "size": str(self._frame.device) if self._frame.device.width else None,
            "scale": list(self._frame.scale) if self._frame.device.width else None,
        }


class DesktopEnv(DesktopBase):
    """The user's own desktop (monitor 1 = primary). pyautogui's fail-safe stays on: moving the mouse into a
    screen corner stops the agent with :class:`FailSafeError`."""

    name: ClassVar[str] = "desktop"

    def __init__(self, monitor: int = 1, **options: Any) -> None:
        super().__init__(monitor=monitor, failsafe=options.pop("failsafe", True), **options)

    def _display_name(self) -> str | None:
        if not _X11:
            return None
        display = os.environ.get("DISPLAY")
        if not display:
            raise SetupError(
                "the desktop environment needs an X11 session but DISPLAY is not set "
                "(use --env sandbox for a private virtual screen)"
            )
        return display
