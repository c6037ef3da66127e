from __future__ import annotations

import pytest

from screenpilot.envs.desktop.env import DesktopBase
from screenpilot.envs.desktop.keys import UnknownKeyError, normalize_combo, normalize_key
from screenpilot.errors import ModelOutputError, UnsupportedActionError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ctrl", "ctrl"),
        ("Control", "ctrl"),
        ("Control_L", "ctrl"),
        ("control_r", "ctrlright"),
        ("Return", "enter"),
        ("enter", "enter"),
        ("KP_Enter", "enter"),
        ("esc", "esc"),
        ("Escape", "esc"),
        ("page_down", "pagedown"),
        ("pagedown", "pagedown"),
        ("PgDn", "pagedown"),
        ("Next", "pagedown"),
        ("Page-Up", "pageup"),
        ("arrowleft", "left"),
        ("ArrowUp", "up"),
        ("BackSpace", "backspace"),
        ("Delete", "delete"),
        ("F5", "f5"),
        ("f12", "f12"),
        ("Tab", "tab"),
        ("space", "space"),
        ("Alt_L", "alt"),
        ("option", "alt"),
        ("Shift", "shift"),
        ("plus", "+"),
        ("minus", "-"),
        ("comma", ","),
        ("a", "a"),
        ("A", "A"),
        ("+", "+"),
        ("1", "1"),
    ],
)
def test_model_key_names_map_to_pyautogui_names(name: str, expected: str) -> None:
    assert normalize_key(name, platform="linux") == expected


@pytest.mark.parametrize("name", ["cmd", "super", "win", "meta", "Super_L", "command", "windows"])
def test_the_logo_key_depends_on_the_platform(name: str) -> None:
    assert normalize_key(name, platform="linux") == "win"
    assert normalize_key(name, platform="win32") == "win"
    assert normalize_key(name, platform="darwin") == "command"


def test_combinations_split_and_lowercase_letters_under_modifiers() -> None:
    assert normalize_combo(["ctrl", "A"], platform="linux") == ("ctrl", "a")
    assert normalize_combo(["ctrl+shift+t"], platform="linux") == ("ctrl", "shift", "t")
    assert normalize_combo(["Control", "Return"], platform="linux") == ("ctrl", "enter")
    assert normalize_combo(["A"], platform="linux") == ("A",)  # alone, a capital letter stays a capital
    assert normalize_combo(["ctrl", "+"], platform="linux") == ("ctrl", "+")


@pytest.mark.parametrize("name", ["hyperdrive", "ctrl-alt-del-now", "F25", "", "é", "\x07"])
def test_unknown_keys_are_refused_with_their_name_for_the_model(name: str) -> None:
    with pytest.raises(UnknownKeyError) as info:
        normalize_key(name, platform="linux")
    assert isinstance(info.value, UnsupportedActionError)
    assert isinstance(info.value, ModelOutputError)
    if name:
        assert repr(name) in str(info.value) or "type" in str(info.value)


def test_an_unknown_key_in_a_combination_names_that_key() -> None:
    with pytest.raises(UnknownKeyError, match="'bogus'"):
        normalize_combo(["ctrl", "bogus"], platform="linux")


@pytest.mark.parametrize(
    ("pixels", "clicks"),
    [(0, 0), (1, 1), (49, 1), (100, 1), (160, 2), (300, 3), (-1, -1), (-100, -1), (-300, -3), (1000, 10)],
)
def test_scroll_pixels_become_wheel_clicks_with_the_sign_kept(pixels: int, clicks: int) -> None:
    assert DesktopBase.wheel_clicks(pixels) == clicks
