"""The Android environment: screenshots and touch, key and text input over ADB.

Actions arrive in device pixels, i.e. the coordinates ``input tap`` takes: the natural screen size (with
any ``wm size`` override) turned by the current rotation. Screenshots are brought to that same frame, so
a point the model picks on the screenshot is the point that gets touched.
"""

from __future__ import annotations

import contextlib
import re
import time
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, assert_never

from PIL import Image

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
from screenpilot.envs.android import apps as app_index
from screenpilot.envs.android import text as typing_
from screenpilot.envs.android.claim import DeviceClaim
from screenpilot.envs.android.device import DEFAULT_RETRY, AndroidDevice, Command, RetryPolicy, command_line
from screenpilot.envs.android.keys import keycode, keycode_name
from screenpilot.envs.android.screen import (
    Display,
    ScreenDecodeError,
    decode_png,
    decode_raw,
    looks_dark,
    parse_rotation,
    parse_screen_awake,
    parse_wm_size,
)
from screenpilot.envs.base import Environment, Observation, Platform, ShellResult
from screenpilot.envs.settle import SettleResult, wait_until_stable
from screenpilot.errors import DeviceError, UnsupportedActionError

CaptureMode = Literal["auto", "raw", "png"]
TextRoute = Literal["auto", "input", "ime", "clipboard"]

_SYSTEM_BUTTONS = {
    "back": "KEYCODE_BACK",
    "home": "KEYCODE_HOME",
    "menu": "KEYCODE_MENU",
    "enter": "KEYCODE_ENTER",
}
UI_DUMP_PATH = "/data/local/tmp/screenpilot-ui.xml"
# The plain shell protocol mixes stderr into the output, and screencap warns there on multi-display devices.
RAW_CAPTURE = "screencap 2>/dev/null"
PNG_CAPTURE = "screencap -p 2>/dev/null"


class AndroidEnv(Environment):
    """An Android phone or emulator reached through an ADB server.

    ``serial`` picks the device (else ``ANDROID_SERIAL``, else the only one connected); ``host``/``port``
    override ``ANDROID_ADB_SERVER_HOST``/``ANDROID_ADB_SERVER_PORT``. ``capture`` chooses raw ``screencap``
    (fast), PNG, or raw with PNG as the fallback. ``text_route`` chooses how non-ASCII text is typed.
    ``exclusive`` (the default) claims the device until ``close()``: an environment on it in another process
    of this machine raises :class:`~screenpilot.envs.android.claim.DeviceBusyError` (environments of one
    process share the claim).
    """

    name: ClassVar[str] = "android"
    platform: ClassVar[Platform] = "mobile"

    def __init__(
        self,
        serial: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        device: AndroidDevice | None = None,
        timeout_s: float = 20.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        capture: CaptureMode = "auto",
        text_route: TextRoute = "auto",
        restore_ime: bool = True,
        ime_switch_wait_s: float = 0.3,
        app_aliases: Mapping[str, Sequence[str]] | None = None,
        settle_timeout_s: float = 3.0,
        settle_interval_s: float = 0.05,
        scroll_step: float = 0.1,
        exclusive: bool = True,
        wake_timeout_s: float = 2.0,
    ) -> None:
        self.device = device or AndroidDevice.connect(
            serial, host=host, port=port, timeout_s=timeout_s, retry=retry
        )
        self.serial = self.device.serial
        self.capture: CaptureMode = capture
        self.text_route: TextRoute = text_route
        self.restore_ime = restore_ime
        self.ime_switch_wait_s = ime_switch_wait_s
        self.aliases: dict[str, tuple[str, ...]] = dict(app_index.DEFAULT_ALIASES)
        for alias, packages in (app_aliases or {}).items():
            self.aliases[alias.casefold()] = tuple(packages)
        self.settle_timeout_s = settle_timeout_s
        self.settle_interval_s = settle_interval_s
        self.scroll_step = scroll_step
        self.display: Display | None = None
        self.props: dict[str, str] = {}
        self._capture_used: Literal["raw", "png"] = "png" if capture == "png" else "raw"
        self._apps: list[app_index.App] | None = None
        self._input_usage: str | None = None
        self._ime_installed: bool | None = None
        self._ime_problem: str | None = None
        self._clipboard_help: str | None = None
        self.wake_timeout_s = wake_timeout_s
        self._woken = False
        self._seen_on_at: float | None = None
        # last: an __init__ that failed after claiming would hold the phone until the process ends
        claim = DeviceClaim(self.device.host, self.device.port, self.serial) if exclusive else None
        # released by close(), else when the environment is dropped or the process exits
        self._release = weakref.finalize(self, claim.release) if claim is not None else None

    # -- life cycle -------------------------------------------------------------------------------------------
    def _reset(self) -> None:
        """Read the device afresh: apps, keyboards and the screen may have changed between episodes."""
        self.props = self._read_props()
        self.display = self._query_display()
        self._apps = None
        self._input_usage = self._clipboard_help = None
        self._ime_installed = None
        self._ime_problem = None
        self._capture_used = "png" if self.capture == "png" else "raw"

    def _close(self) -> None:
        if self._release is not None:
            self._release()

    def _read_props(self) -> dict[str, str]:
        facts = self.device.text(
            "getprop ro.build.version.sdk; getprop ro.build.version.release; getprop ro.product.model"
        ).splitlines()
        facts += [""] * (3 - len(facts))
        return {"sdk": facts[0].strip(), "release": facts[1].strip(), "model": facts[2].strip()}

    def _observe(self) -> Observation:
        return self._observation_of(self._screenshot())

    def _observation_of(self, captured: Image.Image) -> Observation:
        """A capture (capture pixels) as an observation: in the frame ``input`` uses, with its facts."""
        display = self._display_for(captured.size)
        image = _to_input_frame(captured, display)
        info: dict[str, Any] = {
            "serial": self.serial,
            **display.info(),
            "capture": self._capture_used,
            "capture_size": f"{captured.size[0]}x{captured.size[1]}",
        }
        if self._woken:
            info["screen_woken"] = True
            self._woken = False
        return Observation(image, info=info)

    def describe(self) -> dict[str, Any]:
        """Serial, Android version, model and screen, for run manifests (read from the device if needed)."""
        if not self._closed:
            with contextlib.suppress(DeviceError):  # a manifest without the model is still a manifest
                self.props = self.props or self._read_props()
                self.display = self.display or self._query_display()
        info: dict[str, Any] = {"env": self.name, "serial": self.serial, **self.props}
        if self.display is not None:
            info.update(self.display.info())
        info["capture"] = self.capture
        return info

    # -- screen -----------------------------------------------------------------------------------------------
    def _query_display(self) -> Display:
        text = self.device.text("wm size")
        try:
            physical, override = parse_wm_size(text)
        except ScreenDecodeError as exc:
            raise DeviceError(str(exc), device=self.serial, command="wm size") from exc
        return Display(physical, override, self._query_rotation())

    def _query_rotation(self) -> int:
        rotation = parse_rotation(self.device.text("dumpsys input"))
        if rotation is None:
            rotation = parse_rotation(self.device.text("dumpsys window displays"))
        return rotation or 0

    def _display_for(self, captured: tuple[int, int]) -> Display:
        """The display matching a capture; a capture whose orientation disagrees means the screen turned."""
        display = self.display or self._query_display()
        landscape = captured[0] > captured[1]
        if landscape != (display.size.width > display.size.height) and captured[0] != captured[1]:
            display = display.with_rotation(self._query_rotation())
        self.display = display
        return display

    def _screenshot(self) -> Image.Image:
        """One screenshot in capture pixels. A dark one may be a screen that went off (its timeout ran
        out while the model thought): the screen is woken and captured again, once it shows something."""
        image = self._capture()
        if looks_dark(image) and not self._known_on() and self._wake_screen():
            image = self._capture_after_wake()
        return image

    def _known_on(self) -> bool:
        """Whether ``dumpsys power`` said the screen was on so recently that it cannot have timed out since
        (Android's shortest screen timeout is 15 s): a dark-themed app costs one query, not one a frame."""
        return self._seen_on_at is not None and time.monotonic() - self._seen_on_at < _SCREEN_ON_FOR_S

    def _wake_screen(self) -> bool:
        """Turn the screen on if ``dumpsys power`` says it is off; whether it was off."""
        if parse_screen_awake(self.device.text(["dumpsys", "power"])) is not False:
            self._seen_on_at = time.monotonic()
            return False
        self._seen_on_at = None
        self._input(["input", "keyevent", "KEYCODE_WAKEUP"])
        self._woken = True
        return True

    def _capture_after_wake(self) -> Image.Image:
        """The first frame that shows something after waking; a dark one once the screen has been on for
        half a second (a dark lock screen); DeviceError when it does not turn on within wake_timeout_s."""
        deadline = time.monotonic() + self.wake_timeout_s
        on_since: float | None = None
        while True:
            image = self._capture()
            now = time.monotonic()
            if not looks_dark(image):
                return image
            if on_since is None and parse_screen_awake(self.device.text(["dumpsys", "power"])) is not False:
                on_since = now
            if on_since is not None and (now - on_since >= 0.5 or now >= deadline):
                return image
            if now >= deadline:
                raise DeviceError(
                    f"the screen is off and did not turn on within {self.wake_timeout_s:g} s",
                    device=self.serial,
                    command="input keyevent KEYCODE_WAKEUP",
                )
            time.sleep(0.1)

    def _capture(self) -> Image.Image:
        """One capture: raw screencap, PNG as the fallback; never a blank stand-in."""
        if self._capture_used == "raw":
            data = self.device.raw(RAW_CAPTURE) or self.device.raw(RAW_CAPTURE)
            if not data:  # the stream closed before any byte: a lost device, not a format problem
                raise DeviceError(
                    "the device returned no screenshot", device=self.serial, command=RAW_CAPTURE
                )
            try:
                return decode_raw(data)
            except ScreenDecodeError as exc:
                if self.capture == "raw":
                    raise DeviceError(
                        f"unreadable screenshot: {exc}", device=self.serial, command=RAW_CAPTURE
                    ) from exc
                self._capture_used = "png"
        data = self.device.raw(PNG_CAPTURE)
        try:
            return decode_png(data)
        except ScreenDecodeError as exc:
            raise DeviceError(
                f"unreadable screenshot: {exc}", device=self.serial, command=PNG_CAPTURE
            ) from exc

    def screenshot(self) -> Image.Image:
        """The current screen in device pixels (what ``observe`` returns, without the bookkeeping)."""
        self._check_ready()
        return self._observe().screenshot

    def settle(self, timeout_s: float | None = None, interval_s: float | None = None) -> SettleResult:
        """Wait until two consecutive screenshots match (bounded by ``timeout_s``): use after an action
        instead of a fixed sleep, e.g. ``run_episode(..., settle=lambda env: env.settle())``. A stable last
        frame comes back as ``observation`` too, and the loop takes it as the next step's screen."""
        self._check_ready()
        result = wait_until_stable(
            self._screenshot,
            timeout_s=self.settle_timeout_s if timeout_s is None else timeout_s,
            interval_s=self.settle_interval_s if interval_s is None else interval_s,
        )
        return result.handed_over(self._observation_of)

    # -- actions ----------------------------------------------------------------------------------------------
    def _execute(self, action: Action) -> None:
        match action:
            case Click(count=3):
                raise UnsupportedActionError(
                    "A phone has no triple tap: to select text, long_press on it and drag the selection handles."
                )
            case Click(button="left", x=x, y=y, count=count):
                if x is None or y is None:
                    raise UnsupportedActionError("A phone has no cursor: click needs a coordinate.")
                tap = ["input", "tap", str(x), str(y)]
                self._input(tap if count == 1 else f"{command_line(tap)} && {command_line(tap)}")
            case Click(button=button):
                raise UnsupportedActionError(
                    f"A phone has no {button} mouse button; use click or long_press."
                )
            case LongPress(x=x, y=y, seconds=seconds):
                self._input(["input", "swipe", str(x), str(y), str(x), str(y), _ms(seconds)])
            case Swipe(x=x, y=y, x2=x2, y2=y2, seconds=seconds):
                self._input(["input", "swipe", str(x), str(y), str(x2), str(y2), _ms(seconds)])
            case Drag(x=x, y=y, x2=x2, y2=y2, seconds=seconds):
                if x is None or y is None:
                    raise UnsupportedActionError("A phone has no cursor: drag needs a start coordinate.")
                verb = "draganddrop" if "draganddrop" in self._input_help() else "swipe"
                self._input(["input", verb, str(x), str(y), str(x2), str(y2), _ms(max(seconds, 1.0))])
            case Scroll(axis="horizontal"):
                raise UnsupportedActionError(
                    "A phone has no sideways scroll wheel: swipe horizontally instead "
                    "(a swipe from right to left reveals content on the right)."
                )
            case Scroll():
                self._scroll(action)
            case MouseMove():
                raise UnsupportedActionError("A phone has no mouse pointer to move; use swipe or click.")
            case TypeText(text=text):
                self.type_text(text)
            case Key(keys=keys):
                self._key(keys)
            case SystemButton(button=button):
                self._input(["input", "keyevent", _SYSTEM_BUTTONS[button]])
            case OpenApp(app=name):
                self.open_app(name)
            case Wait(seconds=seconds):
                time.sleep(seconds)
            case Answer() | Terminate():
                pass  # the loop ends the episode; nothing happens on the device
            case _:
                assert_never(action)

    def _input(self, command: Command) -> None:
        """Run an ``input`` command; a refusal (non-zero exit or an error line) is a DeviceError."""
        result = self.device.run(command)
        output = result.output.strip()
        if result.exit_code is None:  # the exit marker never came: the connection dropped mid-command
            raise DeviceError(
                "the connection dropped before the input command finished",
                device=self.serial,
                command=command_line(command),
            )
        if result.exit_code != 0 or output.startswith("Error") or "Exception" in output:
            raise DeviceError(
                f"the device refused the input command: {output[:300] or f'exit {result.exit_code}'}",
                device=self.serial,
                command=command_line(command),
            )

    def _input_help(self) -> str:
        if self._input_usage is None:
            self._input_usage = self.device.text("input 2>&1")
        return self._input_usage

    def _scroll(self, action: Scroll) -> None:
        """A wheel scroll as a swipe: positive amounts reveal content above, so the finger moves down.

        Small amounts (|pixels| <= 20) count as wheel notches of ``scroll_step`` of the screen height;
        larger ones as pixels of finger travel. The gesture stays on the screen.
        """
        display = self.display or self._query_display()
        width, height = display.size
        x = action.x if action.x is not None else width // 2
        y = action.y if action.y is not None else height // 2
        amount = abs(action.pixels)
        if amount == 0:
            return
        travel = round(amount * self.scroll_step * height) if amount <= 20 else amount
        travel = min(travel, height - 2)
        direction = 1 if action.pixels > 0 else -1
        start = min(max(y - direction * travel // 2, 1), height - 2)
        end = min(max(start + direction * travel, 1), height - 2)
        self._input(["input", "swipe", str(x), str(start), str(x), str(end), "300"])

    def _key(self, keys: Sequence[str]) -> None:
        codes = [keycode(k) for k in keys]
        self._seen_on_at = None  # a power key may have turned the screen off
        if len(codes) == 1:
            self._input(["input", "keyevent", keycode_name(codes[0])])
            return
        if "keycombination" not in self._input_help():
            raise UnsupportedActionError(
                f"This phone cannot press keys together ({'+'.join(keys)}); press one key at a time."
            )
        self._input(["input", "keycombination", *(keycode_name(c) for c in codes)])

    # -- text -------------------------------------------------------------------------------------------------
    def type_text(self, text: str) -> None:
        """Type ``text`` into the focused field, by the first route that can type all of it.

        Newlines and tabs are Enter and Tab key presses on every route.
        """
        if not text:
            return
        route = self.text_route
        if route in ("auto", "input") and typing_.typable_by_input(text):
            for line in _batched(typing_.input_text_commands(text)):
                self._input(line)
            return
        if route == "input":
            raise typing_.TextInputError(
                "This device types through `input text`, which cannot type non-ASCII characters such as "
                f"{_non_ascii(text)!r}. Type ASCII text only."
            )
        problems: list[str] = []
        if route in ("auto", "ime"):
            if not self._has_adb_keyboard():
                problems.append(f"ADBKeyboard is not installed ({typing_.ADB_KEYBOARD_PACKAGE})")
            elif self._ime_problem is not None:
                problems.append(self._ime_problem)
            else:
                try:
                    self._type_with_ime(text)
                    return
                except _RouteUnavailable as exc:
                    self._ime_problem = str(exc)  # not tried again until the next reset
                    problems.append(str(exc))
        if route in ("auto", "clipboard"):
            setter = typing_.clipboard_setter(self._clipboard_usage())
            if setter is not None:
                self._type_with_clipboard(text, setter)
                return
            problems.append("there is no clipboard shell command")
        if route != "auto":  # a route the user chose cannot be used: a setup fault, not the model's
            raise DeviceError(
                f"text_route={route!r} cannot be used: {'; '.join(problems)}", device=self.serial
            )
        raise typing_.TextInputError(
            f"This device cannot type {_non_ascii(text)!r}: `input text` takes ASCII only, "
            f"{', '.join(problems)}. Type ASCII text instead."
        )

    def _has_adb_keyboard(self) -> bool:
        """Whether ADBKeyboard is installed, enabled or not (``ime list -s`` lists only enabled keyboards)."""
        if self._ime_installed is None:
            self._ime_installed = typing_.ADB_KEYBOARD in self.device.text("ime list -a -s").split()
        return self._ime_installed

    def _current_ime(self) -> str:
        return self.device.text(["settings", "get", "secure", "default_input_method"]).strip()

    def _select_ime(self, ime: str, *, enable: bool) -> None:
        """Make ``ime`` the keyboard and check that it is; _RouteUnavailable naming the refusal otherwise.

        ``ime set`` reports some failures ("Unknown input method ... cannot be selected") with exit
        status 0, so the setting is read back rather than trusting the output.
        """
        steps = (["ime", "enable", ime], ["ime", "set", ime]) if enable else (["ime", "set", ime],)
        for step in steps:
            result = self.device.run(step)
            if _refused(result):
                said = result.output.strip()[:200] or f"exit {result.exit_code}"
                raise _RouteUnavailable(f"`{command_line(step)}` failed: {said}")
        current = self._current_ime()
        if current != ime:
            raise _RouteUnavailable(f"`ime set {ime}` left {current or 'no keyboard'} selected")

    def _type_with_ime(self, text: str) -> None:
        """Type through ADBKeyboard; _RouteUnavailable (nothing typed) when it cannot be selected."""
        previous = self._current_ime()
        switched = previous != typing_.ADB_KEYBOARD
        if switched:
            try:
                self._select_ime(typing_.ADB_KEYBOARD, enable=True)
            except _RouteUnavailable as exc:
                raise _RouteUnavailable(f"ADBKeyboard could not be selected: {exc}") from exc
            time.sleep(self.ime_switch_wait_s)
        failure: BaseException | None = None
        try:
            for part in _text_parts(text):
                if part in _TEXT_KEYS:
                    self._input(["input", "keyevent", _TEXT_KEYS[part]])
                    continue
                result = self.device.run(typing_.ime_broadcast(part))
                if result.exit_code != 0 or "Broadcast completed" not in result.output:
                    raise DeviceError(
                        f"ADBKeyboard did not take the text: {result.output.strip()[:200]}",
                        device=self.serial,
                        command="am broadcast -a ADB_INPUT_B64",
                    )
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if switched and self.restore_ime and previous and previous != "null":
                self._restore_ime(previous, failure)

    def _restore_ime(self, previous: str, failure: BaseException | None) -> None:
        """Select the user's keyboard again. If that fails while another error is on its way, the other
        error is the one raised and the failed restore is noted on it."""
        try:
            self._select_ime(previous, enable=False)
        except (_RouteUnavailable, DeviceError) as exc:
            problem = DeviceError(
                f"could not select the previous keyboard again: {exc}",
                device=self.serial,
                command=f"ime set {previous}",
            )
            if failure is None:
                raise problem from exc
            failure.add_note(str(problem))

    def _clipboard_usage(self) -> str:
        if self._clipboard_help is None:
            self._clipboard_help = self.device.run(["cmd", "clipboard", "help"], idempotent=True).output
        return self._clipboard_help

    def _type_with_clipboard(self, text: str, setter: str) -> None:
        """Paste ``text`` part by part; a clip that was not set (or not kept) is never pasted."""
        getter = typing_.clipboard_getter(self._clipboard_usage())
        for part in _text_parts(text):
            if part in _TEXT_KEYS:
                self._input(["input", "keyevent", _TEXT_KEYS[part]])
                continue
            result = self.device.run(["cmd", "clipboard", setter, part])
            if _refused(result):
                raise DeviceError(
                    "the clipboard refused the text: "
                    f"{result.output.strip()[:200] or f'exit {result.exit_code}'}",
                    device=self.serial,
                    command=f"cmd clipboard {setter}",
                )
            if getter is not None:
                held = self.device.run(["cmd", "clipboard", getter], idempotent=True).output
                if held.rstrip("\n") != part:
                    raise DeviceError(
                        "the clipboard did not keep the text to paste",
                        device=self.serial,
                        command=f"cmd clipboard {setter}",
                    )
            self._input(["input", "keyevent", "KEYCODE_PASTE"])

    # -- apps -------------------------------------------------------------------------------------------------
    def installed_apps(self, *, refresh: bool = False) -> list[app_index.App]:
        """Launchable apps (with labels where the device reports them); cached until the next reset."""
        if self._apps is None or refresh:
            result = self.device.run(app_index.LAUNCHER_QUERY, idempotent=True)
            apps = app_index.parse_launcher_activities(result.output) if result.exit_code == 0 else []
            if not apps:
                apps = app_index.parse_package_list(self.device.text(["pm", "list", "packages"]))
            self._apps = apps
        return self._apps

    def open_app(self, name: str) -> app_index.App:
        """Launch the app the model called ``name``; AppNotFoundError (model-facing) names close matches."""
        try:
            app = app_index.resolve_app(name, self.installed_apps(), self.aliases)
        except app_index.AppNotFoundError:
            app = app_index.resolve_app(name, self.installed_apps(refresh=True), self.aliases)
        if app.component is not None:
            command: list[str] = ["am", "start", "-n", app.component]
        else:
            command = ["monkey", "-p", app.package, "-c", "android.intent.category.LAUNCHER", "1"]
        result = self.device.run(command)
        output = result.output
        if result.exit_code != 0 or "Error" in output or "aborted" in output or "No activities" in output:
            raise DeviceError(
                f"could not launch {app.package}: {output.strip()[:300]}",
                device=self.serial,
                command=command_line(command),
            )
        return app

    # -- capabilities for task setup and checks ----------------------------------------------------------------
    def shell(self, command: str, *, timeout: float = 30.0) -> ShellResult:
        """Run ``command`` with the device's ``sh``; the exit status comes back too."""
        return self.device.run(command, timeout_s=timeout)

    def push_file(self, local: Path, remote: str) -> None:
        self.device.push(Path(local), remote)

    def read_file(self, remote: str) -> bytes:
        """A file's bytes from the device; FileNotFoundError when it does not exist, DeviceError when it cannot
        be read (a folder, a device that does not answer)."""
        return self.device.pull(remote)

    def screen_text(self) -> str:
        """Visible text and content descriptions from ``uiautomator dump``, one per line, top to bottom."""
        # The old dump is removed first: uiautomator can fail (e.g. "could not get idle state") and still
        # exit 0, and reading the file it left last time would report a screen that is gone.
        line = f"rm -f {UI_DUMP_PATH}; uiautomator dump {UI_DUMP_PATH} && cat {UI_DUMP_PATH}"
        data = self.device.text(line, timeout_s=max(self.device.timeout_s, 30.0))
        start = data.find("<?xml")
        if start < 0:
            start = data.find("<hierarchy")
        said = data[:start] if start >= 0 else data
        if start < 0 or "dumped to" not in said.lower():
            raise DeviceError(
                f"uiautomator dump failed: {said.strip()[:300] or 'it wrote no file'}",
                device=self.serial,
                command=line,
            )
        try:
            root = ET.fromstring(data[start:].strip())
        except ET.ParseError as exc:
            raise DeviceError(
                f"uiautomator dump is not XML: {exc}", device=self.serial, command=line
            ) from exc
        texts: list[str] = []
        for node in root.iter("node"):
            for attribute in ("text", "content-desc"):
                value = (node.get(attribute) or "").strip()
                if value:
                    texts.append(value)
        return "\n".join(texts)


class _RouteUnavailable(Exception):
    """A text route cannot be used on this device (nothing was typed); the message says why."""


_TEXT_KEYS = {"\n": "KEYCODE_ENTER", "\t": "KEYCODE_TAB"}


def _text_parts(text: str) -> list[str]:
    """``text`` as runs of characters and single newlines/tabs, which are typed as key presses."""
    return [part for part in re.split(r"([\n\t])", text) if part]


def _refused(result: ShellResult) -> bool:
    """Whether a settings-style shell command failed, by exit status or by what it printed.

    AOSP's ``ime`` prints "Unknown input method ... cannot be selected" and still exits 0.
    """
    output = result.output
    return (
        result.exit_code != 0
        or "Unknown input method" in output
        or "cannot be" in output
        or "Exception" in output
        or output.lstrip().startswith("Error")
    )


def _batched(commands: Sequence[Sequence[str]], limit: int = 3000) -> list[str]:
    """Join commands with ``&&`` into as few shell lines as fit ``limit`` (old adbd takes ~4 KB per request),
    saving a round trip per command while stopping at the first failure."""
    lines: list[str] = []
    current = ""
    for command in commands:
        part = command_line(command)
        if current and len(current) + 4 + len(part) > limit:
            lines.append(current)
            current = ""
        current = f"{current} && {part}" if current else part
    if current:
        lines.append(current)
    return lines


#: How long a screen ``dumpsys power`` found on is taken to stay on (well under the shortest timeout, 15 s).
_SCREEN_ON_FOR_S = 5.0


def _ms(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


def _non_ascii(text: str) -> str:
    return "".join(dict.fromkeys(ch for ch in text if not typing_.typable_by_input(ch)))[:20]


def _to_input_frame(image: Image.Image, display: Display) -> Image.Image:
    """Bring a capture into the frame ``input`` uses.

    A capture in the panel's natural orientation while the display is turned (some older builds) is
    rotated back: with rotation 1 the content is drawn a quarter turn clockwise on the panel, so it is
    turned a quarter turn counter-clockwise. A capture at another resolution (a ``wm size`` override) is
    scaled.
    """
    width, height = display.size
    if (image.width > image.height) != (width > height) and image.width != image.height:
        if display.rotation == 1:
            image = image.transpose(Image.Transpose.ROTATE_90)
        elif display.rotation == 3:
            image = image.transpose(Image.Transpose.ROTATE_270)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return image
