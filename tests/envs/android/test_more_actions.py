"""Triple clicks and horizontal scrolls on a phone: refused for the model, nothing sent to the device."""

from __future__ import annotations

import pytest

from screenpilot.actions.types import Action, Click, Scroll, Swipe
from screenpilot.envs.android import AndroidEnv
from screenpilot.envs.android.fake_server import FakePhone
from screenpilot.envs.conformance import check_actions
from screenpilot.errors import ModelOutputError, UnsupportedActionError


@pytest.mark.parametrize(
    ("action", "advice"),
    [
        (Click(x=10, y=20, count=3), "long_press"),
        (Click(count=3), "long_press"),
        (Scroll(pixels=300, x=500, y=900, axis="horizontal"), "swipe horizontally"),
        (Scroll(pixels=-5, axis="horizontal"), "swipe horizontally"),
    ],
)
def test_triple_click_and_sideways_scroll_are_refused_with_advice(
    env: AndroidEnv, phone: FakePhone, action: Action, advice: str
) -> None:
    with pytest.raises(UnsupportedActionError, match=advice) as caught:
        env.execute(action)
    assert isinstance(caught.value, ModelOutputError)  # the message goes back to the model
    assert phone.inputs == []


def test_the_phone_does_what_it_can_and_refuses_the_rest_in_one_line(
    env: AndroidEnv, phone: FakePhone
) -> None:
    outcomes = check_actions(
        env,
        [
            Click(x=10, y=20, count=2),
            Click(x=10, y=20, count=3),
            Scroll(pixels=-300, x=100, y=1000),
            Scroll(pixels=-300, x=100, y=1000, axis="horizontal"),
            Swipe(x=900, y=1000, x2=100, y2=1000),
        ],
    )
    assert outcomes == {
        "click": "done",
        "triple_click": "refused",
        "scroll": "done",
        "hscroll": "refused",
        "swipe": "done",
    }
    assert phone.inputs == [
        "input tap 10 20",
        "input tap 10 20",
        "input swipe 100 1150 100 850 300",
        "input swipe 900 1000 100 1000 300",
    ]
