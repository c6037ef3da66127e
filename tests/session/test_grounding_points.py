"""Session grounding and replay take an action's start: a drag from the pointer has none, so replay moves
only its end and never turns it into a drag from a made-up point."""

from __future__ import annotations

from screenpilot.actions.coords import Point
from screenpilot.actions.types import Click, Drag, Key, Swipe
from screenpilot.session.grounding import action_point
from screenpilot.session.replay import moved


def test_the_session_reads_a_gesture_at_its_start_and_a_drag_from_the_pointer_at_none() -> None:
    assert action_point(Click(x=3, y=4)) == Point(3, 4)
    assert action_point(Swipe(x=1, y=2, x2=30, y2=40)) == Point(1, 2)
    assert action_point(Drag(x=1, y=2, x2=30, y2=40)) == Point(1, 2)
    assert action_point(Drag(x2=30, y2=40)) is None
    assert action_point(Click()) is None
    assert action_point(Key(keys=("a",))) is None


def test_replay_moves_a_drag_from_the_pointer_without_giving_it_a_start() -> None:
    assert moved(Drag(x2=30, y2=40), 5, 6) == Drag(x2=35, y2=46)
    assert moved(Drag(x=1, y=2, x2=30, y2=40), 5, 6) == Drag(x=6, y=8, x2=35, y2=46)
    assert moved(Click(x=3, y=4), 1, 1) == Click(x=4, y=5)
