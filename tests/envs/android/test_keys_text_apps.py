"""Key names, text escaping and app resolution, checked against the fake device's own interpretation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from screenpilot.envs.android.apps import (
    App,
    AppNotFoundError,
    parse_launcher_activities,
    parse_package_list,
    resolve_app,
)
from screenpilot.envs.android.fake_server import DEFAULT_APPS, FakePhone
from screenpilot.envs.android.keys import KEYCODES, UnknownKeyError, keycode, keycode_name
from screenpilot.envs.android.text import (
    clipboard_setter,
    escape_input_text,
    input_text_commands,
    typable_by_input,
)
from screenpilot.errors import ModelOutputError


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("enter", 66),
        ("Enter", 66),
        ("back", 4),
        ("home", 3),
        ("del", 67),
        ("backspace", 67),
        ("volume_up", 24),
        ("Volume Up", 24),
        ("volume-down", 25),
        ("power", 26),
        ("camera", 27),
        ("clear", 28),
        ("KEYCODE_APP_SWITCH", 187),
        ("keycode_paste", 279),
        ("66", 66),
        ("a", 29),
        ("Z", 54),
        (" ", 62),
        ("tab", 61),
    ],
)
def test_key_names(name: str, code: int) -> None:
    assert keycode(name) == code


def test_unknown_keys_are_model_errors_with_suggestions() -> None:
    with pytest.raises(UnknownKeyError, match="Did you mean KEYCODE_VOLUME_UP") as caught:
        keycode("KEYCODE_VOLUME_UPP")
    assert isinstance(caught.value, ModelOutputError)
    with pytest.raises(UnknownKeyError):
        keycode("9999")
    with pytest.raises(UnknownKeyError):
        keycode("hyperspace")


def test_keycode_table_is_consistent() -> None:
    assert len(set(KEYCODES.values())) == len(KEYCODES)
    assert keycode_name(66) == "KEYCODE_ENTER"
    assert keycode_name(250) == "250"


def _typed(text: str) -> str:
    """What the fake device types for the commands screenpilot sends (through a real sh-style parse)."""
    phone = FakePhone()
    for command in input_text_commands(text):
        import shlex

        phone.run_shell(shlex.join(command))
    return phone.text


@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        'it\'s "quoted"',
        "a & b; c | d",
        "100% sure, 50%s off",
        "(x) <y> *z* $HOME `id` \\n back\\slash",
        "~!@#^_+={}[]:?,./",
        "line one\nline two\tcell",
        "%s%s%%s",
        '$? $(id) ${HOME} "\\$x"',
        ">/dev/null 2>/dev/null 2>&1 > x",
        ">/dev/null",
        "2>&1",
    ],
)
def test_input_text_round_trip(text: str) -> None:
    assert _typed(text) == text


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60))
def test_input_text_round_trip_any_ascii(text: str) -> None:
    assert _typed(text) == text


def test_text_helpers() -> None:
    assert escape_input_text("a b") == "a%sb"
    assert typable_by_input("plain ASCII\n")
    assert not typable_by_input("café")
    assert not typable_by_input("你好")
    assert len(input_text_commands("x" * 450)) == 3
    assert clipboard_setter("No shell command implementation.") is None
    assert clipboard_setter("Clipboard commands:\n  set-primary-clip-text TEXT\n") == "set-primary-clip-text"


def test_launcher_query_parsing() -> None:
    phone = FakePhone()
    full, _ = phone._query_activities(brief=False)
    apps = {a.package: a for a in parse_launcher_activities(full.decode())}
    assert set(apps) == set(DEFAULT_APPS)
    assert apps["com.android.settings"] == App(
        "com.android.settings", "Settings", "com.android.settings.Settings"
    )
    assert apps["com.android.chrome"].label is None
    brief, _ = phone._query_activities(brief=True)
    assert {a.package for a in parse_launcher_activities(brief.decode())} == set(DEFAULT_APPS)
    assert parse_package_list("package:a.b\npackage:c.d\n") == [App("a.b"), App("c.d")]


def test_app_resolution() -> None:
    apps = [
        App("com.android.settings", "Settings", "com.android.settings.Settings"),
        App("com.android.chrome", None, "com.google.android.apps.chrome.Main"),
        App("com.google.android.documentsui", None, "com.android.documentsui.LauncherActivity"),
        App("com.simplemobiletools.calendar.pro", "Simple Calendar Pro", ".activities.SplashActivity"),
        App("net.gsantner.markor", "Markor"),
    ]
    assert resolve_app("Settings", apps).package == "com.android.settings"
    assert resolve_app("settings ", apps).package == "com.android.settings"
    assert resolve_app("Chrome", apps).package == "com.android.chrome"
    assert resolve_app("Files", apps).package == "com.google.android.documentsui"
    assert resolve_app("Simple Calendar", apps).package == "com.simplemobiletools.calendar.pro"
    assert resolve_app("net.gsantner.markor", apps).package == "net.gsantner.markor"
    assert resolve_app("Calendar", apps).package == "com.simplemobiletools.calendar.pro"
    with pytest.raises(AppNotFoundError, match=r"Close matches: .*Markor") as caught:
        resolve_app("Markr", apps)
    assert isinstance(caught.value, ModelOutputError)
    with pytest.raises(AppNotFoundError, match="No installed app is called 'Photoshop'"):
        resolve_app("Photoshop", apps)
