"""The grounding evaluation scores the first point an answer names: a drag from the pointer counts as
pointing at its end, the only point the model wrote."""

from __future__ import annotations

from screenpilot.actions.types import Click, Drag, Swipe, TypeText
from screenpilot.tasks.evaluate import action_point


def test_a_grounding_answer_lands_on_the_first_point_it_names() -> None:
    assert action_point(Click(x=3, y=4)) == (3, 4)
    assert action_point(Swipe(x=1, y=2, x2=30, y2=40)) == (1, 2)
    assert action_point(Drag(x=1, y=2, x2=30, y2=40)) == (1, 2)
    assert action_point(Drag(x2=30, y2=40)) == (30, 40)
    assert action_point(Click()) is None
    assert action_point(TypeText(text="x")) is None
