"""A fake ADB server: the real ADB host protocol on loopback, with phones whose screen the caller controls.

adbutils (and the stock ``adb`` client) talk to it unchanged, so tests exercise the same bytes a real
server sees: ``host:`` services, transports, ``shell:`` with raw output until close, and ``sync:``. Each
:class:`FakePhone` interprets the handful of shell commands screenpilot sends (``input``, ``screencap``,
``wm``, ``dumpsys``, ``pm``/``cmd package``, ``am``, ``monkey``, ``ime``, ``uiautomator``...) and records
every command it ran, so tests assert what reached the "device".

Only the ``cmd`` feature is advertised: with ``shell_v2`` clients would switch protocols.
"""

from __future__ import annotations

import base64
import contextlib
import io
import shlex
import socket
import socketserver
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

SERVER_VERSION = 41
ADB_KEYBOARD_IME = "com.android.adbkeyboard/.AdbIME"
LATIN_IME = "com.android.inputmethod.latin/.LatinIME"

#: Default launcher apps: package -> (label, activity). A label of None mimics a label held in a resource.
DEFAULT_APPS: dict[str, tuple[str | None, str]] = {
    "com.android.settings": ("Settings", ".Settings"),
    "com.android.chrome": (None, "com.google.android.apps.chrome.Main"),
    "com.google.android.documentsui": (None, "com.android.documentsui.LauncherActivity"),
    "com.google.android.deskclock": ("Clock", "com.android.deskclock.DeskClock"),
    "com.simplemobiletools.calendar.pro": ("Simple Calendar Pro", ".activities.SplashActivity"),
    "net.gsantner.markor": ("Markor", ".activity.MainActivity"),
}

#: The ADB server's answer to a transport request for a device in another state than ``device``.
TRANSPORT_FAILURES = {
    "unauthorized": (
        "device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
        "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation dialog on your device."
    ),
    "offline": "device offline",
    "connecting": "device still connecting",
    "authorizing": "device still authorizing",
}

Handler = Callable[["FakePhone", list[str]], "tuple[bytes, int]"]


def _dark_screen(size: tuple[int, int], clock: bool) -> Image.Image:
    """What screencap gives while the screen is off: black, or an always-on display's clock."""
    image = Image.new("RGB", size)
    if clock:
        width, height = size
        ImageDraw.Draw(image).rectangle(
            (width * 3 // 8, height // 3, width * 5 // 8, height // 3 + height // 16), fill=(200, 200, 200)
        )
    return image


def default_screen(size: tuple[int, int] = (1080, 2400)) -> Image.Image:
    """A recognisable, non-black screen: a status bar, a title bar and a few list rows."""
    width, height = size
    image = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, height // 30), fill=(30, 30, 30))
    draw.rectangle((0, height // 30, width, height // 10), fill=(25, 118, 210))
    for row in range(6):
        top = height // 8 + row * height // 10
        draw.rectangle((width // 20, top, width - width // 20, top + height // 14), fill=(225, 230, 235))
    return image


@dataclass
class FakePhone:
    """One fake device: its screen, apps, IMEs, files, and a log of what it was asked to do."""

    serial: str = "emulator-5554"
    screen: Image.Image = field(default_factory=default_screen)
    physical_size: tuple[int, int] = (1080, 2400)
    override_size: tuple[int, int] | None = None
    rotation: int = 0
    sdk: int = 34
    model: str = "Pixel_7"
    apps: dict[str, tuple[str | None, str]] = field(default_factory=lambda: dict(DEFAULT_APPS))
    adb_keyboard: bool = False
    """ADBKeyboard is installed."""
    adb_keyboard_enabled: bool = True
    """...and enabled (``ime list -s`` shows only enabled keyboards, ``ime list -a -s`` all installed)."""
    adb_keyboard_selectable: bool = True
    """False: ``ime set`` refuses ADBKeyboard with AOSP's failure text, and still exits 0."""
    clipboard: bool = False
    clipboard_getter: bool = True
    """The clipboard command can read the clip back (``get-primary-clip-text``)."""
    clipboard_refuses: bool = False
    """Setting the clip fails (an exception, exit 255) and the old clip stays."""
    draganddrop: bool = True
    screencap_header: int = 16
    screencap_format: int = 1
    screencap_delay_s: float = 0.0
    """How long each screencap takes before it writes anything (an old phone, a 4K tablet, a busy device)."""
    broken_screencap: bool = False
    broken_png: bool = False
    capture_follows_rotation: bool = True
    several_displays: bool = False
    """screencap then warns (on stderr, mixed into the output) unless stderr is redirected."""
    """False mimics older builds whose screencap is in the panel's natural orientation."""
    awake: bool = True
    """False: the screen is off. screencap then gives a black frame of the screen's size, as a phone does,
    touches do nothing, and ``input keyevent KEYCODE_WAKEUP`` (or ``KEYCODE_POWER``) turns it on."""
    stays_dark: bool = False
    """The screen does not turn on, whatever key is pressed."""
    always_on_display: bool = False
    """While the screen is off it shows a clock on black (``mWakefulness=Dozing``) instead of nothing."""
    state: str = "device"
    """What ``adb devices`` lists (``device``, ``unauthorized``, ``offline``, ...); in any other state than
    ``device`` the server refuses a transport to it with adb's own words (:data:`TRANSPORT_FAILURES`)."""
    present: bool = True
    hang: bool = False
    ui_xml: str | None = None
    ui_idle: bool = True
    """False mimics a screen that never goes idle: ``uiautomator dump`` prints an error, writes no file and
    still exits 0, as the real one does."""
    files: dict[str, bytes] = field(default_factory=dict)
    handlers: dict[str, Handler] = field(default_factory=dict)
    on_input: Callable[[FakePhone, list[str]], None] | None = None

    # what happened
    shell_log: list[str] = field(default_factory=list)
    """Every ``shell:`` request as received, one string each."""
    commands: list[str] = field(default_factory=list)
    """Every simple command the fake shell ran, as ``shlex.join`` of its arguments (``input tap 1 2``)."""
    text: str = ""
    """What has been typed into the focused field, by any route."""
    ime: str = LATIN_IME
    clip: str = ""
    foreground: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stderr_to_null: bool = field(default=False, repr=False)

    # -- views for tests -------------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[str]:
        """The ``input ...`` commands, in order."""
        return [c for c in self.commands if c.startswith("input ")]

    @property
    def ran(self) -> list[str]:
        """The commands other than ``echo`` (which clients use for bookkeeping such as exit codes)."""
        return [c for c in self.commands if not c.startswith("echo ")]

    def set_screen(self, image: Image.Image) -> None:
        with self.lock:
            self.screen = image.convert("RGB")

    @property
    def logical_size(self) -> tuple[int, int]:
        width, height = self.override_size or self.physical_size
        return (height, width) if self.rotation % 2 else (width, height)

    # -- the shell -------------------------------------------------------------------------------------------
    def run_shell(self, line: str) -> bytes:
        """Run one ``shell:`` request: ``;``, newlines, ``&&``, ``||``, ``$?``, ``( ... )``, ``exit`` and
        output redirects."""
        with self.lock:
            self.shell_log.append(line)
        out = io.BytesIO()
        with contextlib.suppress(_ShellExit):  # `exit` at the top level ends the request
            self._run_list(_parse_commands(line), out)
        return out.getvalue()

    def _run_list(self, commands: list[tuple[_Command, str]], out: io.BytesIO) -> int:
        """Run a command list and return the status of the last command run."""
        status = 0
        skip = False
        for command, joiner in commands:
            if not skip:
                if isinstance(command, _Subshell):
                    try:
                        status = self._run_list(command.commands, out)
                    except _ShellExit as leaving:  # `exit` leaves the subshell only
                        status = leaving.status
                else:
                    argv, silent, self._stderr_to_null = _strip_redirects(command)
                    argv = [a.replace(_STATUS, str(status)) for a in argv]
                    if argv and argv[0] == "exit":
                        raise _ShellExit(int(argv[1]) if argv[1:] and argv[1].isdigit() else status)
                    if argv:
                        data, status = self._run(argv)
                        if not silent:
                            out.write(data)
            skip = (joiner == "&&" and status != 0) or (joiner == "||" and status == 0)
        return status

    def _run(self, argv: list[str]) -> tuple[bytes, int]:
        with self.lock:
            self.commands.append(shlex.join(argv))
        name = argv[0]
        custom = self.handlers.get(name)
        if custom is not None:
            return custom(self, argv)
        method = getattr(self, "_cmd_" + name.replace("-", "_"), None)
        if method is None:
            return f"/system/bin/sh: {name}: inaccessible or not found\n".encode(), 127
        result: tuple[bytes, int] = method(argv)
        return result

    @staticmethod
    def _ok(text: str = "") -> tuple[bytes, int]:
        return text.encode(), 0

    def _cmd_echo(self, argv: list[str]) -> tuple[bytes, int]:
        return self._ok(" ".join(argv[1:]) + "\n")

    def _cmd_true(self, argv: list[str]) -> tuple[bytes, int]:
        return self._ok()

    def _cmd_false(self, argv: list[str]) -> tuple[bytes, int]:
        return b"", 1

    def _cmd_sleep(self, argv: list[str]) -> tuple[bytes, int]:
        time.sleep(min(float(argv[1]), 5.0) if len(argv) > 1 else 0)
        return self._ok()

    def _cmd_cat(self, argv: list[str]) -> tuple[bytes, int]:
        out = b""
        for path in argv[1:]:
            if path not in self.files:
                return out + f"cat: {path}: No such file or directory\n".encode(), 1
            out += self.files[path]
        return out, 0

    def _cmd_rm(self, argv: list[str]) -> tuple[bytes, int]:
        for path in argv[1:]:
            if not path.startswith("-"):
                self.files.pop(path, None)
        return self._ok()

    def _cmd_getprop(self, argv: list[str]) -> tuple[bytes, int]:
        props = {
            "ro.build.version.sdk": str(self.sdk),
            "ro.build.version.release": str(max(self.sdk - 20, 4)),
            "ro.product.model": self.model,
        }
        if len(argv) > 1:
            return self._ok(props.get(argv[1], "") + "\n")
        return self._ok("".join(f"[{k}]: [{v}]\n" for k, v in props.items()))

    def _cmd_wm(self, argv: list[str]) -> tuple[bytes, int]:
        if argv[1:2] == ["size"]:
            text = "Physical size: {}x{}\n".format(*self.physical_size)
            if self.override_size:
                text += "Override size: {}x{}\n".format(*self.override_size)
            return self._ok(text)
        return b"Unknown command\n", 1

    def _cmd_dumpsys(self, argv: list[str]) -> tuple[bytes, int]:
        service = argv[1] if len(argv) > 1 else ""
        width, height = self.logical_size
        if service == "input":
            return self._ok(
                "INPUT MANAGER (dumpsys input)\n\nInput Reader State:\n  Device 3: touchscreen\n"
                f"    Viewport INTERNAL: displayId=0, uniqueId=local:0, port=0, orientation={self.rotation}, "
                f"logicalFrame=[0, 0, {width}, {height}], deviceWidth={width}, deviceHeight={height}\n"
                f"      SurfaceOrientation: {self.rotation}\n"
            )
        if service == "window":
            return self._ok(
                "WINDOW MANAGER DISPLAY CONTENTS (dumpsys window displays)\n  Display: mDisplayId=0\n"
                f"    mRotation={self.rotation} mCurrentRotation=ROTATION_{self.rotation * 90}\n"
            )
        if service == "package":
            return self._cmd_dumpsys_package(argv[2:])
        if service == "power":
            wakefulness = "Awake" if self.awake else "Dozing" if self.always_on_display else "Asleep"
            return self._ok(
                f"POWER MANAGER (dumpsys power)\n\nPower Manager State:\n  mDirty=0x0\n  mWakefulness={wakefulness}\n"
                f"  mWakefulnessChanging=false\n  mIsPowered=true\n"
            )
        return self._ok("")

    def _cmd_dumpsys_package(self, args: list[str]) -> tuple[bytes, int]:
        packages = [p for p in args if not p.startswith("-")] or list(self.apps)
        lines = []
        for package in packages:
            if package not in self.apps:
                continue
            lines.append(f"  Package [{package}] (1a2b3c):\n    userId=10123\n    versionName=1.0\n")
        return self._ok("Packages:\n" + "".join(lines))

    def _cmd_pm(self, argv: list[str]) -> tuple[bytes, int]:
        if argv[1:3] == ["list", "packages"]:
            return self._ok("".join(f"package:{p}\n" for p in sorted(self.apps)))
        if argv[1:2] == ["path"] and len(argv) > 2:
            if argv[2] in self.apps:
                return self._ok(f"package:/data/app/{argv[2]}/base.apk\n")
            return b"", 1
        return b"Unknown command\n", 1

    def _cmd_cmd(self, argv: list[str]) -> tuple[bytes, int]:
        service = argv[1] if len(argv) > 1 else ""
        if service == "package" and len(argv) > 2 and argv[2] == "query-activities":
            return self._query_activities(brief="--brief" in argv)
        if service == "package" and len(argv) > 2 and argv[2] == "resolve-activity":
            package = argv[-1]
            if package not in self.apps:
                return self._ok("No activity found\n")
            return self._ok(f"{package}/{self._activity(package)}\n")
        if service == "clipboard":
            if not self.clipboard:
                return b"No shell command implementation.\n", 255
            verb = argv[2] if len(argv) > 2 else "help"
            if verb == "set-primary-clip-text" and len(argv) > 3:
                if self.clipboard_refuses:
                    return (
                        b"Exception occurred while executing 'set-primary-clip-text':\njava.lang.SecurityException\n",
                        255,
                    )
                self.clip = argv[3]
                return self._ok()
            if verb == "get-primary-clip-text" and self.clipboard_getter:
                return self._ok(self.clip + "\n")
            getter = "  get-primary-clip-text\n" if self.clipboard_getter else ""
            return self._ok("Clipboard service commands:\n  help\n  set-primary-clip-text TEXT\n" + getter)
        return b"cmd: Can't find service: " + service.encode() + b"\n", 20

    def _activity(self, package: str) -> str:
        activity = self.apps[package][1]
        return package + activity if activity.startswith(".") else activity

    def _query_activities(self, *, brief: bool) -> tuple[bytes, int]:
        parts = []
        for package in sorted(self.apps):
            label = self.apps[package][0]
            activity = self._activity(package)
            if brief:
                parts.append(f"{package}/{activity}\n")
                continue
            label_line = (
                f"    labelRes=0x0 nonLocalizedLabel={label} icon=0x7f080001 banner=0x0\n"
                if label is not None
                else "    labelRes=0x7f130001 nonLocalizedLabel=null icon=0x7f080001 banner=0x0\n"
            )
            parts.append(
                "  priority=0 preferredOrder=0 match=0x108000 specificIndex=-1 isDefault=false\n"
                "  ActivityInfo:\n"
                f"    name={activity}\n    packageName={package}\n"
                + label_line
                + "    enabled=true exported=true\n"
            )
        header = "" if brief else f"{len(self.apps)} activities found:\n"
        return self._ok(header + "".join(parts))

    def _cmd_monkey(self, argv: list[str]) -> tuple[bytes, int]:
        package = argv[argv.index("-p") + 1] if "-p" in argv else None
        if package is None or package not in self.apps:
            return b"** No activities found to run, monkey aborted.\n", 252
        self.foreground = package
        return self._ok("  bash arg: -p\nEvents injected: 1\n")

    def _cmd_am(self, argv: list[str]) -> tuple[bytes, int]:
        verb = argv[1] if len(argv) > 1 else ""
        if verb == "start" and "-n" in argv:
            component = argv[argv.index("-n") + 1]
            package = component.split("/", 1)[0]
            if package not in self.apps:
                return self._ok(
                    f"Error: Activity not started, unable to resolve Intent {{ cmp={component} }}\n"
                )
            self.foreground = package
            return self._ok(f"Starting: Intent {{ cmp={component} }}\n")
        if verb == "broadcast" and "-a" in argv:
            action = argv[argv.index("-a") + 1]
            if self.adb_keyboard and self.ime == ADB_KEYBOARD_IME and action == "ADB_INPUT_B64":
                message = argv[argv.index("msg") + 1]
                self.text += base64.b64decode(message).decode("utf-8")
                return self._ok(
                    "Broadcasting: Intent { act=ADB_INPUT_B64 }\nBroadcast completed: result=-1\n"
                )
            return self._ok(f"Broadcasting: Intent {{ act={action} }}\nBroadcast completed: result=0\n")
        if verb == "force-stop":
            return self._ok()
        return b"Error: unknown command\n", 255

    def _cmd_ime(self, argv: list[str]) -> tuple[bytes, int]:
        installed = [LATIN_IME] + ([ADB_KEYBOARD_IME] if self.adb_keyboard else [])
        enabled = [LATIN_IME] + (
            [ADB_KEYBOARD_IME] if self.adb_keyboard and self.adb_keyboard_enabled else []
        )
        verb = argv[1] if len(argv) > 1 else ""
        if verb == "list":
            return self._ok("".join(i + "\n" for i in (installed if "-a" in argv else enabled)))
        ime = argv[-1]
        if verb == "enable":
            if ime not in installed:
                return self._ok(f"Unknown input method {ime} cannot be enabled for user #0\n")
            already = ime in enabled
            if ime == ADB_KEYBOARD_IME:
                self.adb_keyboard_enabled = True
            return self._ok(f"Input method {ime}: {'already' if already else 'now'} enabled for user #0\n")
        if verb == "set":
            if ime not in enabled or (ime == ADB_KEYBOARD_IME and not self.adb_keyboard_selectable):
                return self._ok(f"Unknown input method {ime} cannot be selected for user #0\n")
            self.ime = ime
            return self._ok(f"Input method {ime} selected for user #0\n")
        return b"Unknown command\n", 255

    def _cmd_settings(self, argv: list[str]) -> tuple[bytes, int]:
        if argv[1:4] == ["get", "secure", "default_input_method"]:
            return self._ok(self.ime + "\n")
        if argv[1:2] == ["get"]:
            return self._ok("null\n")
        return self._ok()

    def _cmd_uiautomator(self, argv: list[str]) -> tuple[bytes, int]:
        if argv[1:2] != ["dump"]:
            return b"Unknown command\n", 1
        if not self.ui_idle:
            return b"ERROR: could not get idle state.\n", 0
        if self.ui_xml is None:
            return b"ERROR: null root node returned by UiTestAutomationBridge.\n", 1
        path = argv[2] if len(argv) > 2 else "/sdcard/window_dump.xml"
        self.files[path] = self.ui_xml.encode("utf-8")
        return self._ok(f"UI hierchary dumped to: {path}\n")

    def _cmd_screencap(self, argv: list[str]) -> tuple[bytes, int]:
        time.sleep(self.screencap_delay_s)
        with self.lock:
            image = (
                self.screen.copy() if self.awake else _dark_screen(self.screen.size, self.always_on_display)
            )
        if not self.capture_follows_rotation and self.rotation in (1, 3):
            # the content is drawn a quarter turn clockwise on the panel for rotation 1
            image = image.transpose(
                Image.Transpose.ROTATE_270 if self.rotation == 1 else Image.Transpose.ROTATE_90
            )
        if self.several_displays and not self._stderr_to_null:
            # the warning goes to stderr, which the plain shell protocol mixes into stdout
            warning = (
                b"[Warning] Multiple displays were found, but no display id was specified! Defaulting to the "
                b"first display found, however this default is not guaranteed to be consistent across "
                b"captures. A display id should be specified.\n"
            )
            return warning + self._cmd_screencap_body(image, argv), 0
        return self._cmd_screencap_body(image, argv), 0

    def _cmd_screencap_body(self, image: Image.Image, argv: list[str]) -> bytes:
        if "-p" in argv:
            if self.broken_png:
                return b"not a png"
            buffer = io.BytesIO()
            image.save(buffer, "PNG", compress_level=1)
            return buffer.getvalue()
        if self.broken_screencap:
            return b"\x00" * 40
        return encode_raw_screencap(image, self.screencap_format, self.screencap_header)

    def _power_key(self, key: str) -> bool:
        """Apply a key that turns the screen on or off; whether ``key`` was one."""
        if key in ("KEYCODE_POWER", "26"):
            self.awake = not self.awake and not self.stays_dark
        elif key in _POWER_KEYS:
            self.awake = _POWER_KEYS[key] and not self.stays_dark
        else:
            return False
        return True

    def _cmd_input(self, argv: list[str]) -> tuple[bytes, int]:
        args = argv[1:]
        if args and args[0] in ("touchscreen", "keyboard", "dpad", "mouse"):
            args = args[1:]
        if not args:
            usage = "Usage: input [<source>] [-d DISPLAY_ID] <command> [<arg>...]\n\nThe commands are:\n"
            usage += (
                "      text <string>\n      keyevent [--longpress|--doubletap] <key code number or name>\n"
            )
            usage += "      tap <x> <y>\n      swipe <x1> <y1> <x2> <y2> [duration(ms)]\n"
            if self.draganddrop:
                usage += "      draganddrop <x1> <y1> <x2> <y2> [duration(ms)]\n"
            if self.sdk >= 33:
                usage += "      keycombination [-t duration(ms)] <key code 1> <key code 2> ...\n"
            return self._ok(usage)
        verb = args[0]
        if verb == "text" and len(args) >= 2:
            self.text += decode_input_text(" ".join(args[1:]))
        elif verb == "keyevent" and len(args) >= 2:
            for key in args[1:]:
                if key.startswith("--") or self._power_key(key) or not self.awake:
                    continue
                if key in ("KEYCODE_DEL", "67"):
                    self.text = self.text[:-1]
                elif key in ("KEYCODE_ENTER", "66"):
                    self.text += "\n"
                elif key in ("KEYCODE_TAB", "61"):
                    self.text += "\t"
                elif key in ("KEYCODE_PASTE", "279"):
                    self.text += self.clip
        elif verb in ("tap", "swipe", "draganddrop") and all(_is_number(a) for a in args[1:]):
            if verb == "draganddrop" and not self.draganddrop:
                return b"Error: Unknown command: draganddrop\n", 1
            width, height = self.logical_size
            points = [float(a) for a in args[1:5]]
            if not self.awake:
                return b"", 0  # a touch on a dark screen does nothing
            if any(not (0 <= p < (width if i % 2 == 0 else height)) for i, p in enumerate(points)):
                return b"", 0  # a real device ignores touches off the screen, silently
        elif verb == "keycombination" and self.sdk >= 33:
            pass
        else:
            return f"Error: Unknown command: {verb}\n".encode(), 1
        if self.on_input is not None:
            self.on_input(self, args)
        return self._ok()


_POWER_KEYS = {"KEYCODE_WAKEUP": True, "224": True, "KEYCODE_SLEEP": False, "223": False}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def decode_input_text(arg: str) -> str:
    """What Android's ``input text`` types for ``arg``, ported from its ``sendText``: ``%s`` is a space."""
    text = list(arg)
    escape = False
    i = 0
    while i < len(text):
        if escape:
            escape = False
            if text[i] == "s":
                text[i] = " "
                i -= 1
                del text[i]
        if text[i] == "%":
            escape = True
        i += 1
    return "".join(text)


def encode_raw_screencap(image: Image.Image, pixel_format: int = 1, header: int = 16) -> bytes:
    """The bytes ``screencap`` (no ``-p``) writes: little-endian width, height, format[, colorspace], pixels."""
    width, height = image.size
    rgb = image.convert("RGB")
    match pixel_format:
        case 1 | 2:
            pixels = rgb.tobytes("raw", "RGBX")
        case 3:
            pixels = rgb.tobytes()
        case 4:
            data = rgb.tobytes()
            pixels = b"".join(
                struct.pack("<H", (data[i] >> 3) << 11 | (data[i + 1] >> 2) << 5 | data[i + 2] >> 3)
                for i in range(0, len(data), 3)
            )
        case 5:
            pixels = rgb.tobytes("raw", "BGRX")
        case _:
            raise ValueError(f"unknown pixel format {pixel_format}")
    head = struct.pack("<III", width, height, pixel_format)
    if header == 16:
        head += struct.pack("<I", 0)
    return head + pixels


_STATUS = "\x00status\x00"  # where an unquoted or double-quoted $? stood


def _tokens(line: str) -> Iterator[tuple[str, bool]]:
    """Split a shell line as ``sh`` does for the forms clients send: yields (text, is_operator).

    Single quotes keep everything, double quotes honour backslash before ``"\\$```, a backslash outside
    quotes escapes the next character; ``;``, ``&&``, ``||``, ``|``, ``&``, ``(``, ``)`` and newlines are
    operators unless quoted (``2>&1`` stays one word).
    """
    word: list[str] = []
    in_word = quoted = False
    i = 0
    while i < len(line):
        c = line[i]
        if c == "'":
            end = line.find("'", i + 1)
            end = len(line) if end < 0 else end
            word.append(line[i + 1 : end])
            in_word, quoted, i = True, True, end + 1
        elif c == '"':
            i = _double_quoted(line, i + 1, word)
            in_word, quoted = True, True
        elif c == "\\" and i + 1 < len(line):
            if line[i + 1] != "\n":  # a backslash before a newline joins the lines
                word.append(line[i + 1])
                in_word = quoted = True
            i += 2
        elif c in " \t\r":
            if in_word:
                yield _word(word, quoted), False
            word, in_word, quoted, i = [], False, False, i + 1
        elif c in ";&|\n()" and not (c == "&" and word and word[-1].endswith((">", "<"))):
            if in_word:
                yield _word(word, quoted), False
            word, in_word, quoted = [], False, False
            op = line[i : i + 2] if line[i : i + 2] in ("&&", "||") else c
            yield op, True
            i += len(op)
        elif line.startswith("$?", i):
            word.append(_STATUS)
            in_word, i = True, i + 2
        else:
            word.append(c)
            in_word, i = True, i + 1
    if in_word:
        yield _word(word, quoted), False


def _double_quoted(line: str, i: int, word: list[str]) -> int:
    """Append the text of a double-quoted string starting at ``line[i]`` to ``word``; return the index after
    its closing quote. A backslash escapes only ``"\\$`` and newline there, and ``$?`` is the last status."""
    while i < len(line) and line[i] != '"':
        if line[i] == "\\" and i + 1 < len(line) and line[i + 1] in '"\\$`\n':
            word.append(line[i + 1])
            i += 2
        elif line.startswith("$?", i):
            word.append(_STATUS)
            i += 2
        else:
            word.append(line[i])
            i += 1
    return i + 1


class _Quoted(str):
    """A word with quoted or escaped characters: never a redirect."""


def _word(parts: list[str], quoted: bool) -> str:
    text = "".join(parts)
    return _Quoted(text) if quoted else text


class _ShellExit(Exception):
    """``exit``: leaves the innermost subshell, or the whole request."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class _Subshell:
    commands: list[tuple[_Command, str]]


_Command = list[str] | _Subshell


def _parse_commands(line: str) -> list[tuple[_Command, str]]:
    """(command, operator after it) for a shell line; pipes and ``&`` run in sequence here."""
    tokens = list(_tokens(line))
    commands, _ = _parse_list(tokens, 0)
    return commands


def _parse_list(tokens: list[tuple[str, bool]], at: int) -> tuple[list[tuple[_Command, str]], int]:
    """Parse from ``tokens[at]`` up to an unmatched ``)`` (or the end); returns the list and where it stopped."""
    commands: list[tuple[_Command, str]] = []
    current: _Command | None = None
    while at < len(tokens):
        text, operator = tokens[at]
        at += 1
        if not operator:
            if isinstance(current, _Subshell):
                continue  # redirects after a subshell are not modelled
            current = [*(current or []), text]
        elif text == "(":
            inner, at = _parse_list(tokens, at)
            current = _Subshell(inner)
        elif text == ")":
            if current:
                commands.append((current, ";"))
            return commands, at
        else:
            if current:
                commands.append((current, text))
            current = None
    if current:
        commands.append((current, ";"))
    return commands, at


def _strip_redirects(argv: list[str]) -> tuple[list[str], bool, bool]:
    """Drop unquoted redirects; report whether stdout and whether stderr went to /dev/null."""
    kept: list[str] = []
    silent = stderr_to_null = False
    skip_next = False
    for i, arg in enumerate(argv):
        if skip_next:
            skip_next = False
            continue
        if isinstance(arg, _Quoted):
            kept.append(arg)
        elif arg == "2>&1":
            continue
        elif arg == "2>/dev/null":
            stderr_to_null = True
        elif arg in (">/dev/null", "1>/dev/null"):
            silent = True
        elif arg in (">", "2>") and i + 1 < len(argv):
            silent = silent or (arg == ">" and argv[i + 1] == "/dev/null")
            stderr_to_null = stderr_to_null or (arg == "2>" and argv[i + 1] == "/dev/null")
            skip_next = True
        else:
            kept.append(arg)
    return kept, silent, stderr_to_null


# -- the server ----------------------------------------------------------------------------------------------


class _Closed(Exception):
    pass


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fake = self.server.fake
        phone: FakePhone | None = None
        try:
            while True:
                request = _read_request(sock)
                fake.requests.append(request)
                if phone is None:
                    done, phone = fake.host_service(sock, request)
                    if done:
                        return
                    continue
                if not phone.present:
                    return
                if request.startswith("shell:"):
                    if phone.hang:  # accepted, then never answered
                        with phone.lock:
                            phone.shell_log.append(request[len("shell:") :])
                        sock.sendall(b"OKAY")
                        fake.stopping.wait(30)
                        return
                    sock.sendall(b"OKAY")  # the device opened the stream; the command runs after
                    output = phone.run_shell(request[len("shell:") :])
                    if not phone.present:  # vanished while running: the connection just drops
                        return
                    sock.sendall(output)
                    return
                if request == "sync:":
                    sock.sendall(b"OKAY")
                    _sync(sock, phone)
                    return
                _fail(sock, f"unsupported service: {request.split(':', 1)[0]}")
                return
        except (_Closed, ConnectionError, OSError):
            return


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeAdbServer


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise _Closed
        data += chunk
    return bytes(data)


def _read_request(sock: socket.socket) -> str:
    length = int(_recv_exact(sock, 4), 16)
    return _recv_exact(sock, length).decode("utf-8")


def _block(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"%04x" % len(data) + data


def _fail(sock: socket.socket, message: str) -> None:
    sock.sendall(b"FAIL" + _block(message))


def _sync(sock: socket.socket, phone: FakePhone) -> None:
    """The ``sync:`` service: STAT, SEND, LIST and RECV requests until QUIT."""
    verbs: dict[bytes, Callable[[socket.socket, FakePhone, str], None]] = {
        b"STAT": _sync_stat,
        b"SEND": _sync_send,
        b"LIST": _sync_list,
        b"RECV": _sync_recv,
    }
    while True:
        head = _recv_exact(sock, 8)
        verb, length = head[:4], struct.unpack("<I", head[4:])[0]
        if verb == b"QUIT":
            return
        path = _recv_exact(sock, length).decode("utf-8")
        answer = verbs.get(verb)
        if answer is None:
            _sync_fail(sock, "unknown sync request")
            return
        answer(sock, phone, path)


def _sync_fail(sock: socket.socket, message: str) -> None:
    data = message.encode("utf-8")
    sock.sendall(b"FAIL" + struct.pack("<I", len(data)) + data)


def _is_directory(phone: FakePhone, path: str) -> bool:
    return path in ("/sdcard", "/data/local/tmp") or any(
        p.startswith(path.rstrip("/") + "/") for p in phone.files
    )


def _sync_stat(sock: socket.socket, phone: FakePhone, path: str) -> None:
    if path in phone.files:
        sock.sendall(b"STAT" + struct.pack("<III", stat.S_IFREG | 0o644, len(phone.files[path]), 1))
    elif _is_directory(phone, path):
        sock.sendall(b"STAT" + struct.pack("<III", stat.S_IFDIR | 0o755, 4096, 1))
    else:
        sock.sendall(b"STAT" + struct.pack("<III", 0, 0, 0))


def _sync_send(sock: socket.socket, phone: FakePhone, path: str) -> None:
    target = path.rsplit(",", 1)[0]
    data = bytearray()
    while True:
        head = _recv_exact(sock, 8)
        kind, size = head[:4], struct.unpack("<I", head[4:])[0]
        if kind == b"DATA":
            data += _recv_exact(sock, size)
        elif kind == b"DONE":
            break
        else:
            raise _Closed
    phone.files[target] = bytes(data)
    sock.sendall(b"OKAY" + struct.pack("<I", 0))


def _sync_list(sock: socket.socket, phone: FakePhone, path: str) -> None:
    prefix = path.rstrip("/") + "/"
    names = sorted({p[len(prefix) :].split("/", 1)[0] for p in phone.files if p.startswith(prefix)})
    for name in names:
        full = prefix + name
        mode, size = (
            (stat.S_IFREG | 0o644, len(phone.files[full]))
            if full in phone.files
            else (stat.S_IFDIR | 0o755, 4096)
        )
        encoded = name.encode("utf-8")
        sock.sendall(b"DENT" + struct.pack("<IIII", mode, size, 1, len(encoded)) + encoded)
    sock.sendall(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))


def _sync_recv(sock: socket.socket, phone: FakePhone, path: str) -> None:
    if path not in phone.files:
        _sync_fail(sock, "open failed: No such file or directory")
        return
    content = phone.files[path]
    for start in range(0, len(content), 65536):
        chunk = content[start : start + 65536]
        sock.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
    sock.sendall(b"DONE" + struct.pack("<I", 0))


class FakeAdbServer:
    """Serves ``phones`` on ``127.0.0.1:<free port>`` from a background thread. Use as a context manager."""

    def __init__(self, phones: Iterable[FakePhone] = (), *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.phones: dict[str, FakePhone] = {p.serial: p for p in phones}
        self.requests: list[str] = []
        self.stopping = threading.Event()
        self._server = _TCPServer((host, port), _Handler)
        self._server.fake = self
        self._thread: threading.Thread | None = None
        self._next_transport = 1

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def environ(self) -> Mapping[str, str]:
        """Environment variables that point ADB clients at this server."""
        return {"ANDROID_ADB_SERVER_HOST": self.host, "ANDROID_ADB_SERVER_PORT": str(self.port)}

    def add(self, phone: FakePhone) -> FakePhone:
        self.phones[phone.serial] = phone
        return phone

    def start(self) -> FakeAdbServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-adb", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeAdbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- host services ---------------------------------------------------------------------------------------
    def _visible(self) -> list[FakePhone]:
        return [p for p in self.phones.values() if p.present]

    def _select(self, sock: socket.socket, selector: str) -> FakePhone | None:
        """Pick the phone for a transport request, or send FAIL and return None."""
        visible = self._visible()
        if selector in ("any", "local", "usb"):
            if not visible:
                _fail(sock, "no devices/emulators found")
                return None
            if len(visible) > 1:
                _fail(sock, "more than one device/emulator")
                return None
            phone = visible[0]
        else:
            found = self.phones.get(selector)
            if found is None or not found.present:
                _fail(sock, f"device '{selector}' not found")
                return None
            phone = found
        if phone.state != "device":
            _fail(sock, TRANSPORT_FAILURES.get(phone.state, f"device {phone.state}"))
            return None
        return phone

    def host_service(self, sock: socket.socket, request: str) -> tuple[bool, FakePhone | None]:
        """Answer a host request. Returns (connection finished, phone the connection now talks to)."""
        if request == "host:version":
            sock.sendall(b"OKAY" + _block(f"{SERVER_VERSION:04x}"))
            return True, None
        if request in ("host:devices", "host:devices-l"):
            sock.sendall(b"OKAY" + _block(self._device_list(long=request.endswith("-l"))))
            return True, None
        if request in ("host:features", "host:host-features"):
            sock.sendall(b"OKAY" + _block("cmd"))
            return True, None
        if request == "host:kill":
            sock.sendall(b"OKAY")
            return True, None
        for prefix in ("host:tport:serial:", "host:transport:"):
            if request.startswith(prefix):
                phone = self._select(sock, request[len(prefix) :])
                if phone is None:
                    return True, None
                sock.sendall(b"OKAY" + (struct.pack("<q", 1) if "tport" in prefix else b""))
                return False, phone
        if request in ("host:tport:any", "host:transport-any", "host:tport:usb", "host:tport:local"):
            phone = self._select(sock, "any")
            if phone is None:
                return True, None
            sock.sendall(b"OKAY" + (struct.pack("<q", 1) if "tport" in request else b""))
            return False, phone
        if request.startswith(("host-serial:", "host:")) and request.count(":") >= 2:
            return self._device_service(sock, request), None
        _fail(sock, f"unknown host service {request!r}")
        return True, None

    def _device_list(self, *, long: bool) -> str:
        """``adb devices`` (``-l``: with product, model and transport id) for the phones present."""
        lines = []
        for listed in self._visible():
            line = f"{listed.serial}\t{listed.state}"
            if long:
                # adb knows a device's product and model only once it may talk to it
                about = (
                    f"product:sdk_phone64 model:{listed.model} device:emu64a "
                    if listed.state == "device"
                    else ""
                )
                transport = list(self.phones).index(listed.serial) + 1
                line = f"{listed.serial:<22} {listed.state} {about}transport_id:{transport}"
            lines.append(line + "\n")
        return "".join(lines)

    def _device_service(self, sock: socket.socket, request: str) -> bool:
        """``host-serial:<serial>:<service>`` or ``host:<service>`` for one device (``get-state`` ...)."""
        head, _, service = request.rpartition(":")
        selector = head.split(":", 1)[1] if head.startswith("host-serial:") else "any"
        phone = self._select(sock, selector)
        if phone is None:
            return True
        answers: dict[str, str] = {
            "features": "cmd",
            "get-state": phone.state,
            "get-serialno": phone.serial,
            "get-devpath": "usb:1-1",
        }
        if service in answers:
            sock.sendall(b"OKAY" + _block(answers[service]))
        else:
            _fail(sock, f"unknown host service {request!r}")
        return True


def serve(phones: Iterable[FakePhone] = (), **kwargs: Any) -> FakeAdbServer:
    """Start a server for ``phones`` (one default phone when empty) and return it."""
    phones = list(phones) or [FakePhone()]
    return FakeAdbServer(phones, **kwargs).start()


def _phones_from(args: Any) -> list[FakePhone]:
    width, height = (int(v) for v in args.size.lower().split("x"))
    phones = []
    for given in args.serial or ["emulator-5554"]:
        serial, _, state = given.partition("=")
        phones.append(
            FakePhone(
                serial=serial,
                state=state or "device",
                screen=default_screen((width, height)),
                physical_size=(width, height),
                adb_keyboard=args.adb_keyboard,
                awake=not args.screen_off,
            )
        )
    return phones


def main(argv: list[str] | None = None) -> int:
    """Serve fake phones until Ctrl-C, for trying the CLI without a device."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(
        prog="python -m screenpilot.envs.android.fake_server",
        description="Run a fake ADB server with one phone (or several), printing what each was asked to do at the end.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument(
        "--serial",
        action="append",
        metavar="SERIAL[=STATE]",
        help="a phone; repeat for several; STATE as adb lists it, e.g. R58M123=unauthorized or =offline "
        "(default: one phone, emulator-5554)",
    )
    parser.add_argument("--size", default="1080x2400", help="screen size WxH (default: %(default)s)")
    parser.add_argument("--adb-keyboard", action="store_true", help="pretend ADBKeyboard is installed")
    parser.add_argument("--screen-off", action="store_true", help="start with the screens off")
    args = parser.parse_args(argv)
    phones = _phones_from(args)
    server = FakeAdbServer(phones, port=args.port).start()
    signal.signal(signal.SIGTERM, lambda *_: server.stopping.set())
    print(f"export ANDROID_ADB_SERVER_PORT={server.port}", flush=True)
    try:
        server.stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        for phone in phones:
            for command in phone.commands:
                print(f"{phone.serial}: {command}" if len(phones) > 1 else command, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
