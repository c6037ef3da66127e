"""Key strings read alike by every dialect that reads them (the rule is ``screenpilot.actions.keys``): only
what a family is taught differs (UI-TARS writes names in lowercase and separates them with spaces)."""

from __future__ import annotations

import json

import pytest

from screenpilot.actions.coords import Size
from screenpilot.actions.types import Key
from screenpilot.errors import ModelOutputError
from screenpilot.model.qwen3vl import Qwen3VLDialect
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.uitars15 import UITars15Dialect

SCREEN = Size(1920, 1080)
TOOL_DIALECTS = [Qwen25VLDialect("computer_use"), Qwen3VLDialect("computer_use")]


def tool_keys(dialect: Qwen25VLDialect | Qwen3VLDialect, keys: str) -> object:
    args = json.dumps({"action": "key", "keys": keys})
    text = f'<tool_call>\n{{"name": "computer_use", "arguments": {args}}}\n</tool_call>'
    (parsed,) = dialect.parse(text, dialect.coordinate_space(SCREEN))
    return parsed.device


def uitars_keys(keys: str) -> object:
    dialect = UITars15Dialect("desktop")
    (parsed,) = dialect.parse(f"Thought: t\nAction: hotkey(key='{keys}')", dialect.coordinate_space(SCREEN))
    return parsed.device


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("ctrl+c", ("ctrl", "c")),
        ("ctrl c", ("ctrl", "c")),
        ("ctrl + shift + t", ("ctrl", "shift", "t")),
        ("ctrl shift+t", ("ctrl", "shift", "t")),  # mixed: no key is called "ctrl shift"
        ("ctrl++", ("ctrl", "+")),
        ("ctrl plus", ("ctrl", "plus")),
        ("+", ("+",)),
    ],
)
def test_every_dialect_splits_a_key_string_the_same_way(keys: str, expected: tuple[str, ...]) -> None:
    for dialect in TOOL_DIALECTS:
        assert tool_keys(dialect, keys) == Key(keys=expected), dialect.name
    assert uitars_keys(keys) == Key(keys=expected)


def test_uitars_names_are_lowercased_as_taught_and_tool_names_are_kept() -> None:
    assert uitars_keys("Ctrl Shift T") == Key(keys=("ctrl", "shift", "t"))
    for dialect in TOOL_DIALECTS:
        assert tool_keys(dialect, "Ctrl Shift T") == Key(keys=("Ctrl", "Shift", "T"))


@pytest.mark.parametrize("keys", ["ctrl+", "ctrl +", "ctrl + shift +"])
def test_uitars_refuses_a_hotkey_ending_in_plus_rather_than_pressing_the_modifiers_alone(keys: str) -> None:
    dialect = UITars15Dialect("desktop")
    with pytest.raises(ModelOutputError) as info:
        dialect.parse(f"Thought: t\nAction: hotkey(key='{keys}')", dialect.coordinate_space(SCREEN))
    head = keys.strip()[:-1].rstrip()
    assert str(info.value) == (
        f"hotkey key={keys!r} ends with '+' and no key after it; write key='{head} plus' for the plus key."
    )


@pytest.mark.parametrize("keys", ["ctrl+", "ctrl + shift +"])
def test_tool_dialects_keep_their_message_for_a_string_ending_in_plus(keys: str) -> None:
    for dialect in TOOL_DIALECTS:
        with pytest.raises(ModelOutputError) as info:
            tool_keys(dialect, keys)
        assert str(info.value).endswith(
            f"`keys` {keys!r} ends with '+' and no key after it; write 'ctrl++' for the plus key."
        )
