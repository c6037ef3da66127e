from __future__ import annotations

import pytest
from pydantic import ValidationError

from screenpilot.actions.types import Click, Key, TypeText, action_from_dict, action_to_dict


def test_actions_are_frozen_and_strict():
    click = Click(x=1, y=2)
    with pytest.raises(ValidationError):
        click.x = 5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Click(x=1, y=2, extra=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Key(keys=())


def test_round_trip_through_dicts():
    for action in (
        Click(x=1, y=2, button="right", count=2),
        TypeText(text="héllo 世界"),
        Key(keys=("ctrl", "v")),
    ):
        assert action_from_dict(action_to_dict(action)) == action
    assert action_to_dict(Click()) == {"action": "click", "button": "left", "count": 1}
    with pytest.raises(ValidationError):
        action_from_dict({"action": "teleport"})
