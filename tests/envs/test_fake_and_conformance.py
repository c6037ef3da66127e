"""The fake environment records the newer action forms, and the shared action check judges outcomes."""

from __future__ import annotations

import pytest

from screenpilot.actions.coords import Size
from screenpilot.actions.types import Action, Click, Scroll, Wait
from screenpilot.envs.base import Environment, Observation
from screenpilot.envs.conformance import check_actions
from screenpilot.envs.fake import FakeEnv
from screenpilot.errors import DeviceError, UnsupportedActionError

TRIPLE = Click(x=5, y=6, count=3)
SIDEWAYS = Scroll(pixels=-200, x=7, y=8, axis="horizontal")


def test_the_fake_records_triple_clicks_and_sideways_scrolls() -> None:
    env = FakeEnv(Size(64, 64))
    env.reset()
    assert check_actions(env, [TRIPLE, SIDEWAYS, Scroll(pixels=100)]) == {
        "triple_click": "done",
        "hscroll": "done",
        "scroll": "done",
    }
    assert env.executed == [TRIPLE, SIDEWAYS, Scroll(pixels=100)]
    assert env.executed[1] != Scroll(pixels=-200, x=7, y=8)  # the axis is part of the action


def test_the_fake_can_refuse_the_finer_kinds_like_a_phone() -> None:
    env = FakeEnv(Size(64, 64), unsupported={"triple_click", "hscroll"})
    env.reset()
    with pytest.raises(UnsupportedActionError, match="action=triple_click"):
        env.execute(TRIPLE)
    assert check_actions(env, [Click(x=1, y=1, count=2), SIDEWAYS, Scroll(pixels=3)]) == {
        "click": "done",
        "hscroll": "refused",
        "scroll": "done",
    }
    assert env.executed == [Click(x=1, y=1, count=2), Scroll(pixels=3)]


class _Broken(FakeEnv):
    def __init__(self, error: Exception) -> None:
        super().__init__(Size(32, 32))
        self.error = error

    def _execute(self, action: Action) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "rule"),
    [
        (UnsupportedActionError("no\nway"), "one-line message"),
        (UnsupportedActionError(""), "one-line message"),
        (DeviceError("gone"), "not raise DeviceError"),
    ],
)
def test_the_action_check_fails_on_bad_refusals(error: Exception, rule: str) -> None:
    env: Environment = _Broken(error)
    assert isinstance(env.reset(), Observation)
    with pytest.raises(AssertionError, match=rule):
        check_actions(env, [Wait(seconds=0)])
