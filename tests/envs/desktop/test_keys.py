from __future__ import annotations

import pytest

from screenpilot.envs.desktop.env import DesktopBase
from screenpilot.envs.desktop.keys import UnknownKeyError, normalize_combo, normalize_key, split_combo
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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ctrl+s", ("ctrl", "s")),
        ("ctrl + shift + t", ("ctrl", "shift", "t")),
        ("ctrl++", ("ctrl", "+")),
        ("ctrl+shift++", ("ctrl", "shift", "+")),
        ("ctrl+plus", ("ctrl", "plus")),
        ("+", ("+",)),
        (" + ", ("+",)),
        ("Return", ("Return",)),
    ],
)
def test_a_combination_written_as_one_name_splits_like_the_dialects_do(
    text: str, expected: tuple[str, ...]
) -> None:
    assert split_combo(text) == expected


@pytest.mark.parametrize("text", ["ctrl+", "ctrl +", "ctrl+shift+"])
def test_a_combination_ending_in_a_bare_separator_is_refused_not_pressed_short(text: str) -> None:
    with pytest.raises(UnknownKeyError, match=r"ends with '\+' and no key after it.*\+\+'") as info:
        normalize_combo([text], platform="linux")
    assert "\n" not in str(info.value)


def test_one_name_with_the_plus_key_normalises_to_ctrl_and_plus() -> None:
    assert normalize_combo(["ctrl++"], platform="linux") == ("ctrl", "+")
    assert normalize_combo(["ctrl+shift++"], platform="linux") == ("ctrl", "shift", "+")
