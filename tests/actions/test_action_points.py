"""Where an action lands: one table, read by the coordinate mapping, session grounding, replay and the
grounding evaluation."""

from __future__ import annotations

import pytest

from screenpilot.actions.coords import ActionPoints, CoordinateSpace, Point, Size, action_points
from screenpilot.actions.types import (
    Action,
    Answer,
    Click,
    Drag,
    Key,
    LongPress,
    MouseMove,
    OpenApp,
    Scroll,
    Swipe,
    SystemButton,
    Terminate,
    TypeText,
    Wait,
)

TABLE: list[tuple[Action, Point | None, Point | None]] = [
    (Click(x=3, y=4), Point(3, 4), None),
    (Click(), None, None),  # at the pointer
    (LongPress(x=5, y=6), Point(5, 6), None),
    (MouseMove(x=7, y=8), Point(7, 8), None),
    (Scroll(pixels=100, x=9, y=10), Point(9, 10), None),
    (Scroll(pixels=100), None, None),
    (Swipe(x=1, y=2, x2=30, y2=40), Point(1, 2), Point(30, 40)),
    (Drag(x=1, y=2, x2=30, y2=40), Point(1, 2), Point(30, 40)),
    (Drag(x2=30, y2=40), None, Point(30, 40)),  # from the pointer: no start is invented
    (TypeText(text="hi"), None, None),
    (Key(keys=("ctrl", "c")), None, None),
    (SystemButton(button="back"), None, None),
    (OpenApp(app="Clock"), None, None),
    (Wait(seconds=1), None, None),
    (Answer(text="yes"), None, None),
    (Terminate(status="success"), None, None),
]


@pytest.mark.parametrize(("action", "start", "end"), TABLE)
def test_every_action_says_where_it_starts_and_ends(
    action: Action, start: Point | None, end: Point | None
) -> None:
    points = action_points(action)
    assert points == ActionPoints(start, end)
    assert points.first == (start if start is not None else end)


def test_a_drag_from_the_pointer_names_its_end_first_and_no_start() -> None:
    points = action_points(Drag(x2=30, y2=40))
    assert points.start is None and points.first == Point(30, 40)


@pytest.mark.parametrize(("action", "start", "end"), TABLE)
def test_mapping_an_action_moves_exactly_its_points(
    action: Action, start: Point | None, end: Point | None
) -> None:
    space = CoordinateSpace(model=Size(100, 100), device=Size(200, 300))
    mapped = action_points(space.action_to_device(action))
    assert mapped.start == (None if start is None else Point(start.x * 2, start.y * 3))
    assert mapped.end == (None if end is None else Point(end.x * 2, end.y * 3))
    if start is None and end is None:
        assert space.action_to_device(action) is action
