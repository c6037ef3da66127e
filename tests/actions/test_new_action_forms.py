"""Triple clicks and horizontal scrolls in the action vocabulary, and how they are written down."""

from __future__ import annotations

import pydantic
import pytest

from screenpilot.actions.types import Click, Scroll, action_from_dict, action_kind, action_to_dict


def test_a_click_may_be_triple_but_not_more() -> None:
    assert Click(x=1, y=2, count=3).count == 3
    with pytest.raises(pydantic.ValidationError):
        Click(x=1, y=2, count=4)  # type: ignore[arg-type]


def test_a_scroll_is_vertical_unless_it_says_horizontal() -> None:
    assert Scroll(pixels=5).axis == "vertical"
    assert Scroll(pixels=5, axis="horizontal").axis == "horizontal"
    with pytest.raises(pydantic.ValidationError):
        Scroll(pixels=5, axis="diagonal")  # type: ignore[arg-type]


def test_vertical_scrolls_are_written_as_before_and_horizontal_ones_say_so() -> None:
    assert action_to_dict(Scroll(pixels=-300, x=1, y=2)) == {
        "action": "scroll",
        "pixels": -300,
        "x": 1,
        "y": 2,
    }
    sideways = Scroll(pixels=300, axis="horizontal")
    assert action_to_dict(sideways) == {"action": "scroll", "pixels": 300, "axis": "horizontal"}
    assert action_from_dict(action_to_dict(sideways)) == sideways
    assert action_from_dict({"action": "scroll", "pixels": 3}) == Scroll(pixels=3, axis="vertical")
    triple = Click(x=4, y=5, count=3)
    assert action_from_dict(action_to_dict(triple)) == triple


def test_action_kind_names_the_forms_environments_treat_apart() -> None:
    assert action_kind(Click(x=1, y=2, count=3)) == "triple_click"
    assert action_kind(Click(x=1, y=2, count=2)) == "click"
    assert action_kind(Scroll(pixels=1, axis="horizontal")) == "hscroll"
    assert action_kind(Scroll(pixels=1)) == "scroll"
