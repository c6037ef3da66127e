"""Key names as models write them, mapped to Android key codes.

Models write ``"enter"``, ``"volume_up"``, ``"KEYCODE_BACK"`` or ``"66"``; ``input keyevent`` wants a code
it knows. Unknown names are the model's mistake and come back to it as an UnsupportedActionError.
"""

from __future__ import annotations

import difflib
import re

from screenpilot.errors import UnsupportedActionError

_RANGES: list[tuple[int, list[str]]] = [
    (0, ["UNKNOWN", "SOFT_LEFT", "SOFT_RIGHT", "HOME", "BACK", "CALL", "ENDCALL"]),
    (7, [str(d) for d in range(10)]),
    (17, ["STAR", "POUND", "DPAD_UP", "DPAD_DOWN", "DPAD_LEFT", "DPAD_RIGHT", "DPAD_CENTER"]),
    (24, ["VOLUME_UP", "VOLUME_DOWN", "POWER", "CAMERA", "CLEAR"]),
    (29, [chr(c) for c in range(ord("A"), ord("Z") + 1)]),
    (55, ["COMMA", "PERIOD", "ALT_LEFT", "ALT_RIGHT", "SHIFT_LEFT", "SHIFT_RIGHT", "TAB", "SPACE", "SYM"]),
    (
        64,
        ["EXPLORER", "ENVELOPE", "ENTER", "DEL", "GRAVE", "MINUS", "EQUALS", "LEFT_BRACKET", "RIGHT_BRACKET"],
    ),
    (73, ["BACKSLASH", "SEMICOLON", "APOSTROPHE", "SLASH", "AT", "NUM", "HEADSETHOOK", "FOCUS", "PLUS"]),
    (
        82,
        ["MENU", "NOTIFICATION", "SEARCH", "MEDIA_PLAY_PAUSE", "MEDIA_STOP", "MEDIA_NEXT", "MEDIA_PREVIOUS"],
    ),
    (89, ["MEDIA_REWIND", "MEDIA_FAST_FORWARD", "MUTE", "PAGE_UP", "PAGE_DOWN", "PICTSYMBOLS"]),
    (95, ["SWITCH_CHARSET", "BUTTON_A", "BUTTON_B", "BUTTON_C", "BUTTON_X", "BUTTON_Y", "BUTTON_Z"]),
    (102, ["BUTTON_L1", "BUTTON_R1", "BUTTON_L2", "BUTTON_R2", "BUTTON_THUMBL", "BUTTON_THUMBR"]),
    (
        108,
        ["BUTTON_START", "BUTTON_SELECT", "BUTTON_MODE", "ESCAPE", "FORWARD_DEL", "CTRL_LEFT", "CTRL_RIGHT"],
    ),
    (115, ["CAPS_LOCK", "SCROLL_LOCK", "META_LEFT", "META_RIGHT", "FUNCTION", "SYSRQ", "BREAK", "MOVE_HOME"]),
    (123, ["MOVE_END", "INSERT", "FORWARD", "MEDIA_PLAY", "MEDIA_PAUSE", "MEDIA_CLOSE", "MEDIA_EJECT"]),
    (130, ["MEDIA_RECORD"] + [f"F{n}" for n in range(1, 13)] + ["NUM_LOCK"]),
    (144, [f"NUMPAD_{d}" for d in range(10)]),
    (
        154,
        ["NUMPAD_DIVIDE", "NUMPAD_MULTIPLY", "NUMPAD_SUBTRACT", "NUMPAD_ADD", "NUMPAD_DOT", "NUMPAD_COMMA"],
    ),
    (
        160,
        ["NUMPAD_ENTER", "NUMPAD_EQUALS", "NUMPAD_LEFT_PAREN", "NUMPAD_RIGHT_PAREN", "VOLUME_MUTE", "INFO"],
    ),
    (166, ["CHANNEL_UP", "CHANNEL_DOWN", "ZOOM_IN", "ZOOM_OUT", "TV", "WINDOW", "GUIDE", "DVR", "BOOKMARK"]),
    (
        175,
        ["CAPTIONS", "SETTINGS", "TV_POWER", "TV_INPUT", "STB_POWER", "STB_INPUT", "AVR_POWER", "AVR_INPUT"],
    ),
    (183, ["PROG_RED", "PROG_GREEN", "PROG_YELLOW", "PROG_BLUE", "APP_SWITCH"]),
    (188, [f"BUTTON_{n}" for n in range(1, 17)]),
    (204, ["LANGUAGE_SWITCH", "MANNER_MODE", "3D_MODE", "CONTACTS", "CALENDAR", "MUSIC", "CALCULATOR"]),
    (211, ["ZENKAKU_HANKAKU", "EISU", "MUHENKAN", "HENKAN", "KATAKANA_HIRAGANA", "YEN", "RO", "KANA"]),
    (219, ["ASSIST", "BRIGHTNESS_DOWN", "BRIGHTNESS_UP", "MEDIA_AUDIO_TRACK", "SLEEP", "WAKEUP", "PAIRING"]),
    (226, ["MEDIA_TOP_MENU", "11", "12", "LAST_CHANNEL", "TV_DATA_SERVICE", "VOICE_ASSIST"]),
    (260, ["NAVIGATE_PREVIOUS", "NAVIGATE_NEXT", "NAVIGATE_IN", "NAVIGATE_OUT"]),
    (264, ["STEM_PRIMARY", "STEM_1", "STEM_2", "STEM_3"]),
    (268, ["DPAD_UP_LEFT", "DPAD_DOWN_LEFT", "DPAD_UP_RIGHT", "DPAD_DOWN_RIGHT"]),
    (272, ["MEDIA_SKIP_FORWARD", "MEDIA_SKIP_BACKWARD", "MEDIA_STEP_FORWARD", "MEDIA_STEP_BACKWARD"]),
    (276, ["SOFT_SLEEP", "CUT", "COPY", "PASTE", "SYSTEM_NAVIGATION_UP", "SYSTEM_NAVIGATION_DOWN"]),
    (282, ["SYSTEM_NAVIGATION_LEFT", "SYSTEM_NAVIGATION_RIGHT", "ALL_APPS", "REFRESH", "THUMBS_UP"]),
    (287, ["THUMBS_DOWN", "PROFILE_SWITCH"]),
]

#: ``KEYCODE_<NAME>`` -> code, for the names this table knows.
KEYCODES: dict[str, int] = {
    f"KEYCODE_{name}": start + i for start, names in _RANGES for i, name in enumerate(names)
}
MAX_KEYCODE = 320

#: Everyday names -> key code names.
ALIASES: dict[str, str] = {
    "return": "ENTER",
    "newline": "ENTER",
    "backspace": "DEL",
    "delete": "DEL",
    "forward_delete": "FORWARD_DEL",
    "esc": "ESCAPE",
    "volumeup": "VOLUME_UP",
    "vol_up": "VOLUME_UP",
    "volumedown": "VOLUME_DOWN",
    "vol_down": "VOLUME_DOWN",
    "up": "DPAD_UP",
    "down": "DPAD_DOWN",
    "left": "DPAD_LEFT",
    "right": "DPAD_RIGHT",
    "center": "DPAD_CENTER",
    "ok": "DPAD_CENTER",
    "select": "DPAD_CENTER",
    "recent": "APP_SWITCH",
    "recents": "APP_SWITCH",
    "recent_apps": "APP_SWITCH",
    "overview": "APP_SWITCH",
    "pageup": "PAGE_UP",
    "pagedown": "PAGE_DOWN",
    "end": "MOVE_END",
    "ctrl": "CTRL_LEFT",
    "control": "CTRL_LEFT",
    "shift": "SHIFT_LEFT",
    "alt": "ALT_LEFT",
    "meta": "META_LEFT",
    "win": "META_LEFT",
    "super": "META_LEFT",
    "cmd": "META_LEFT",
    "play": "MEDIA_PLAY",
    "pause": "MEDIA_PAUSE",
    "play_pause": "MEDIA_PLAY_PAUSE",
    "next": "MEDIA_NEXT",
    "previous": "MEDIA_PREVIOUS",
    "lock": "POWER",
    "screen_off": "SLEEP",
    "screen_on": "WAKEUP",
    "notifications": "NOTIFICATION",
    "apps": "ALL_APPS",
    "capslock": "CAPS_LOCK",
    " ": "SPACE",
    ",": "COMMA",
    ".": "PERIOD",
    "`": "GRAVE",
    "-": "MINUS",
    "=": "EQUALS",
    "[": "LEFT_BRACKET",
    "]": "RIGHT_BRACKET",
    "\\": "BACKSLASH",
    ";": "SEMICOLON",
    "'": "APOSTROPHE",
    "/": "SLASH",
    "@": "AT",
    "+": "PLUS",
    "*": "STAR",
    "#": "POUND",
}


class UnknownKeyError(UnsupportedActionError):
    """The model named a key Android does not have."""


def _normalise(name: str) -> str:
    text = name.strip()
    if len(text) == 1:
        return text
    return re.sub(r"[\s\-]+", "_", text).upper()


def keycode(name: str) -> int:
    """The Android key code for ``name`` (a key name, an alias, ``KEYCODE_X`` or a number)."""
    if name in ALIASES:  # single characters such as " " or ","
        return KEYCODES["KEYCODE_" + ALIASES[name]]
    text = name.strip()
    if text.isdigit():
        code = int(text)
        if 0 <= code <= MAX_KEYCODE:
            return code
        raise UnknownKeyError(
            f"Key code {code} does not exist on Android (codes go from 0 to {MAX_KEYCODE})."
        )
    if not text:
        raise UnknownKeyError("The key name is empty; give a key such as 'enter', 'back' or 'KEYCODE_DEL'.")
    if text.lower() in ALIASES:
        return KEYCODES["KEYCODE_" + ALIASES[text.lower()]]
    upper = _normalise(text)
    if len(upper) == 1 and upper.isascii() and upper.isalpha():
        return KEYCODES["KEYCODE_" + upper.upper()]
    for candidate in (upper, "KEYCODE_" + upper.removeprefix("KEYCODE_")):
        if candidate in KEYCODES:
            return KEYCODES[candidate]
    choices = list(KEYCODES) + list(ALIASES)
    close = difflib.get_close_matches("KEYCODE_" + upper.removeprefix("KEYCODE_"), KEYCODES, n=3, cutoff=0.7)
    close += difflib.get_close_matches(text.lower(), [c for c in choices if c.islower()], n=2, cutoff=0.7)
    hint = f" Did you mean {', '.join(dict.fromkeys(close))}?" if close else ""
    raise UnknownKeyError(
        f"Unknown key {name!r}. Use an Android key such as 'enter', 'back', 'home', 'del', 'volume_up' "
        f"or a KEYCODE_ name.{hint}"
    )


def keycode_name(code: int) -> str:
    """``KEYCODE_X`` for a known code, else the number as text (``input keyevent`` takes both)."""
    for name, value in KEYCODES.items():
        if value == code:
            return name
    return str(code)
