"""Key names as models write them, turned into pyautogui's key names.

Models trained on different tool sets say ``Return``, ``enter``, ``KP_Enter``, ``ctrl``, ``Control_L``,
``cmd``, ``PgDn`` or ``arrowleft`` for the same keys. One table maps all of them (case, ``_``, ``-`` and
spaces ignored); anything else is refused with an error the model can act on, never dropped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from screenpilot.actions.keys import KeyComboError
from screenpilot.actions.keys import split_combo as split_combo
from screenpilot.errors import UnsupportedActionError


class UnknownKeyError(UnsupportedActionError):
    """The model named a key this desktop does not have."""


def _squash(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "").replace(" ", "")


# Squashed alias -> pyautogui name. "super" is resolved per platform (command on macOS, win elsewhere).
_ALIASES: dict[str, str] = {}


def _add(target: str, *aliases: str) -> None:
    for alias in (target, *aliases):
        _ALIASES[_squash(alias)] = target


_add("ctrl", "control", "ctl", "ctrl_l", "control_l", "lctrl", "leftctrl", "ctrlleft", "strg")
_add("ctrlright", "ctrl_r", "control_r", "rctrl", "rightctrl")
_add("alt", "alt_l", "lalt", "leftalt", "altleft", "option", "opt")
_add("altright", "alt_r", "ralt", "rightalt", "altgr", "iso_level3_shift")
_add("shift", "shift_l", "lshift", "leftshift", "shiftleft")
_add("shiftright", "shift_r", "rshift", "rightshift")
_add(
    "super",
    "win",
    "windows",
    "cmd",
    "command",
    "meta",
    "meta_l",
    "super_l",
    "win_l",
    "lwin",
    "os",
    "logo",
    "hyper",
)
_add("enter", "return", "kp_enter", "numpadenter", "ret", "cr", "linefeed", "newline")
_add("esc", "escape")
_add("backspace", "back_space", "bksp", "bs")
_add("delete", "del", "kp_delete")
_add("insert", "ins")
_add("tab", "iso_left_tab")
_add("space", "spacebar", "spc")
_add("pagedown", "page_down", "pgdn", "pgdown", "next", "kp_page_down", "kp_next")
_add("pageup", "page_up", "pgup", "prior", "kp_page_up", "kp_prior")
_add("home", "kp_home")
_add("end", "kp_end")
_add("left", "arrowleft", "leftarrow", "arrow_left", "left_arrow", "kp_left")
_add("right", "arrowright", "rightarrow", "arrow_right", "right_arrow", "kp_right")
_add("up", "arrowup", "uparrow", "arrow_up", "up_arrow", "kp_up")
_add("down", "arrowdown", "downarrow", "arrow_down", "down_arrow", "kp_down")
_add("capslock", "caps_lock", "caps")
_add("numlock", "num_lock")
_add("scrolllock", "scroll_lock")
_add("printscreen", "print", "prtsc", "prtscr", "prntscrn", "print_screen", "sysrq")
_add("pause", "break")
_add("apps", "menu", "contextmenu", "context_menu", "application")
_add("volumeup", "volume_up", "audioraisevolume", "xf86audioraisevolume")
_add("volumedown", "volume_down", "audiolowervolume", "xf86audiolowervolume")
_add("volumemute", "volume_mute", "mute", "audiomute", "xf86audiomute")
_add("playpause", "play_pause", "mediaplaypause", "audioplay", "xf86audioplay")
for _n in range(1, 25):
    _add(f"f{_n}")
for _n in range(10):
    _add(f"num{_n}", f"kp_{_n}", f"numpad{_n}")

# Punctuation by name (X keysym names and common words) -> the character.
_CHAR_NAMES = {
    "plus": "+",
    "minus": "-",
    "hyphen": "-",
    "dash": "-",
    "equal": "=",
    "equals": "=",
    "comma": ",",
    "period": ".",
    "dot": ".",
    "fullstop": ".",
    "slash": "/",
    "backslash": "\\",
    "semicolon": ";",
    "colon": ":",
    "apostrophe": "'",
    "quote": "'",
    "quotedbl": '"',
    "grave": "`",
    "backtick": "`",
    "asciitilde": "~",
    "tilde": "~",
    "bracketleft": "[",
    "bracketright": "]",
    "braceleft": "{",
    "braceright": "}",
    "parenleft": "(",
    "parenright": ")",
    "underscore": "_",
    "exclam": "!",
    "at": "@",
    "numbersign": "#",
    "hash": "#",
    "dollar": "$",
    "percent": "%",
    "asciicircum": "^",
    "ampersand": "&",
    "asterisk": "*",
    "star": "*",
    "less": "<",
    "greater": ">",
    "question": "?",
    "bar": "|",
    "pipe": "|",
}

MODIFIERS = frozenset({"ctrl", "ctrlright", "alt", "altright", "shift", "shiftright", "win", "command"})

_HINT = (
    'Use key names like "ctrl", "alt", "shift", "super", "enter", "esc", "tab", "backspace", "delete", '
    '"pagedown", "home", "left", "f5", or a single character such as "a".'
)


def normalize_key(name: str, *, platform: str | None = None) -> str:
    """The pyautogui name of one key. ``platform`` (``sys.platform`` by default) decides what super means."""
    if not isinstance(name, str) or not name:
        raise UnknownKeyError(f"Empty key name. {_HINT}")
    if len(name) == 1:
        if not name.isascii() or not name.isprintable():
            raise UnknownKeyError(
                f"The key {name!r} is not on the keyboard; use action=type to enter that character."
            )
        return name
    squashed = _squash(name)
    if squashed in _CHAR_NAMES:
        return _CHAR_NAMES[squashed]
    target = _ALIASES.get(squashed)
    if target is None:
        raise UnknownKeyError(f"Unknown key {name!r}. {_HINT}")
    if target == "super":
        return "command" if (platform or sys.platform) == "darwin" else "win"
    return target


def normalize_combo(keys: Iterable[str], *, platform: str | None = None) -> tuple[str, ...]:
    """Normalise a key combination: each name, ``"ctrl+c"`` written as one name split
    (:func:`screenpilot.actions.keys.split_combo`; a name with spaces, ``"Page Down"``, stays one key),
    letters lowercased when pressed with modifiers (``["ctrl", "A"]`` means ctrl+a, not ctrl+shift+a)."""
    names: list[str] = []
    try:
        for key in keys:
            names.extend(split_combo(key) if isinstance(key, str) and key else [key])
    except KeyComboError as error:
        raise UnknownKeyError(str(error)) from None
    if not names:
        raise UnknownKeyError(f"No key given. {_HINT}")
    combo = tuple(normalize_key(k, platform=platform) for k in names)
    if len(combo) > 1 and any(k in MODIFIERS for k in combo):
        combo = tuple(k.lower() if len(k) == 1 and k.isalpha() else k for k in combo)
    return combo
