"""The one rule for splitting a key combination written as a string, as every reader of keys applies it."""

from __future__ import annotations

import pytest

from screenpilot.actions.keys import KeyComboError, split_combo, split_keys


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ctrl+c", ("ctrl", "c")),
        ("ctrl + shift + t", ("ctrl", "shift", "t")),
        ("ctrl++", ("ctrl", "+")),
        ("ctrl + +", ("ctrl", "+")),
        ("ctrl+shift++", ("ctrl", "shift", "+")),
        ("ctrl+plus", ("ctrl", "plus")),
        ("+", ("+",)),
        (" + ", ("+",)),
        ("Return", ("Return",)),
        ("  Return ", ("Return",)),
        ("a", ("a",)),
        # without spaces=True a space is part of a name: "Page Down" is one key
        ("Page Down", ("Page Down",)),
        ("ctrl c", ("ctrl c",)),
        ("ctrl + Page Down", ("ctrl", "Page Down")),
        # blank stays as written, for the caller to refuse in its own words
        ("", ("",)),
        ("   ", ("   ",)),
    ],
)
def test_plus_separates_keys_and_a_plus_after_a_separator_is_the_plus_key(
    text: str, expected: tuple[str, ...]
) -> None:
    assert split_combo(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ctrl c", ("ctrl", "c")),
        ("ctrl shift t", ("ctrl", "shift", "t")),
        ("  ctrl   c ", ("ctrl", "c")),
        ("ctrl shift+t", ("ctrl", "shift", "t")),
        ("ctrl + shift + t", ("ctrl", "shift", "t")),
        ("ctrl++", ("ctrl", "+")),
        ("+", ("+",)),
        ("+ a", ("+", "a")),
        ("Return", ("Return",)),
    ],
)
def test_with_spaces_a_space_separates_keys_too(text: str, expected: tuple[str, ...]) -> None:
    assert split_combo(text, spaces=True) == expected


@pytest.mark.parametrize(
    ("text", "head"),
    [
        ("ctrl+", "ctrl"),
        ("ctrl +", "ctrl"),
        ("ctrl+shift+", "ctrl+shift"),
        (" ctrl + shift + ", "ctrl + shift"),
    ],
)
@pytest.mark.parametrize("spaces", [False, True])
def test_a_string_ending_in_a_separator_is_refused_with_the_forms_that_press_plus(
    text: str, head: str, spaces: bool
) -> None:
    with pytest.raises(KeyComboError) as info:
        split_combo(text, spaces=spaces)
    error = info.value
    assert (error.text, error.head, error.plus_forms) == (text, head, (head + "++", head + "+plus"))
    assert str(error) == (
        f"The key combination {text!r} ends with '+' and no key after it; "
        f"write {head + '++'!r} or {head + '+plus'!r} for the plus key."
    )
    # each suggested form is read back as the keys before the separator plus the plus key
    assert split_combo(error.plus_forms[0], spaces=spaces)[-1] == "+"
    assert split_combo(error.plus_forms[1], spaces=spaces)[-1] == "plus"
    assert isinstance(error, ValueError)


def test_several_names_split_in_order_and_one_string_is_one_name() -> None:
    assert split_keys(["ctrl", "s"]) == split_keys(["ctrl+s"]) == split_keys("ctrl+s") == ("ctrl", "s")
    assert split_keys(("ctrl+shift", "t")) == ("ctrl", "shift", "t")
    assert split_keys(["ctrl shift t"], spaces=True) == ("ctrl", "shift", "t")
    with pytest.raises(KeyComboError):
        split_keys(["shift", "ctrl+"])
