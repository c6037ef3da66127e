"""Typing text on Android: the shell route for ASCII, an IME or the clipboard for everything else.

``input text`` takes one argument that passes through the device's ``sh`` and then through ``input``,
which turns ``%s`` into a space and types everything else literally. So: every argument is shell-quoted,
spaces become ``%s``, and a literal ``%`` followed by ``s`` is split across two commands so it is not
read as an escape. Newlines and tabs are sent as key events. ``input text`` cannot type anything outside
printable ASCII; that goes through ADBKeyboard's base64 broadcast or the clipboard, or is refused.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

from screenpilot.errors import UnsupportedActionError

ADB_KEYBOARD_PACKAGE = "com.android.adbkeyboard"
ADB_KEYBOARD = f"{ADB_KEYBOARD_PACKAGE}/.AdbIME"
#: Longest text per ``input text`` call; long ones are split so no single command runs for too long.
CHUNK = 200

Argv = list[str]


class TextInputError(UnsupportedActionError):
    """This device has no way to type the given text; the message says why and what would help."""


def typable_by_input(text: str) -> bool:
    """Whether ``input text`` (plus Enter/Tab key events) can type ``text`` exactly."""
    return all(" " <= ch <= "~" or ch in "\n\t" for ch in text)


def escape_input_text(text: str) -> str:
    """The ``input text`` argument (before shell quoting) for printable ASCII without ``%s``."""
    if "%s" in text:
        raise ValueError("a literal '%s' must be split across commands; use input_text_commands")
    return text.replace(" ", "%s")


def _pieces(line: str) -> Iterator[str]:
    """Split a line so that no piece contains a literal ``%s`` and none is longer than CHUNK."""
    start = 0
    for i in range(1, len(line)):
        if (line[i - 1] == "%" and line[i] == "s") or i - start >= CHUNK:
            yield line[start:i]
            start = i
    if start < len(line):
        yield line[start:]


def input_text_commands(text: str) -> list[Argv]:
    """The ``input`` commands that type ``text`` (printable ASCII, newlines, tabs)."""
    if not typable_by_input(text):
        bad = sorted({ch for ch in text if not typable_by_input(ch)})
        raise ValueError(f"input text cannot type {''.join(bad)!r}")
    commands: list[Argv] = []
    lines = text.split("\n")
    for n, line in enumerate(lines):
        cells = line.split("\t")
        for m, cell in enumerate(cells):
            commands.extend(["input", "text", escape_input_text(piece)] for piece in _pieces(cell))
            if m < len(cells) - 1:
                commands.append(["input", "keyevent", "KEYCODE_TAB"])
        if n < len(lines) - 1:
            commands.append(["input", "keyevent", "KEYCODE_ENTER"])
    return commands


def ime_broadcast(text: str) -> Argv:
    """ADBKeyboard's broadcast that commits ``text`` (any Unicode) to the focused field."""
    message = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return ["am", "broadcast", "-a", "ADB_INPUT_B64", "--es", "msg", message]


def clipboard_setter(help_text: str) -> str | None:
    """The ``cmd clipboard`` verb that sets text, read from its help; None when the service has none.

    Stock Android has no clipboard shell command (``No shell command implementation``); some builds and
    container images do, under differing verbs.
    """
    lowered = help_text.lower()
    if "no shell command implementation" in lowered or "can't find service" in lowered:
        return None
    words = {w.strip(" :,[]") for line in help_text.splitlines() for w in line.split()[:1]}
    for verb in ("set-primary-clip-text", "set-text", "set-primary-clip", "set", "put"):
        if verb in words:
            return verb
    return None


def clipboard_getter(help_text: str) -> str | None:
    words = {w.strip(" :,[]") for line in help_text.splitlines() for w in line.split()[:1]}
    for verb in ("get-primary-clip-text", "get-text", "get-primary-clip", "get"):
        if verb in words:
            return verb
    return None
