"""Triple clicks and horizontal scrolls, executed in a real Xvfb sandbox and checked against the Tk demo window.

Demo layout (window client area at 100,100): pad from (120, 180) to (680, 480).
"""

from __future__ import annotations

from typing import Any

import pytest

from screenpilot.actions.types import Click, Scroll
from screenpilot.envs.desktop import SandboxEnv

Env = tuple[SandboxEnv, Any]
PAD_AT = (400, 300)


def test_triple_click_is_one_triple_click_where_asked(sandbox_app: Env) -> None:
    env, log = sandbox_app
    env.execute(Click(x=PAD_AT[0], y=PAD_AT[1], count=3))
    triple = log.wait_event("triple")
    assert (triple["x"], triple["y"]) == PAD_AT
    presses = log.of("press")
    assert [(p["button"], p["x"], p["y"]) for p in presses] == [(1, *PAD_AT)] * 3


def test_a_double_click_is_not_a_triple_click(sandbox_app: Env, barrier: Any) -> None:
    env, log = sandbox_app
    start = len(log.all())
    env.execute(Click(x=PAD_AT[0] + 50, y=PAD_AT[1], count=2))
    barrier(env, log)  # everything the double click caused is logged before the barrier's middle click
    events = log.all()[start:]
    events = events[: next(i for i, e in enumerate(events) if e.get("button") == 2)]
    assert [e["event"] for e in events if e["event"] in ("double", "triple")] == ["double"]
    assert len([e for e in events if e["event"] == "press"]) == 2


@pytest.mark.parametrize(("pixels", "direction"), [(300, "left"), (-200, "right")])
def test_horizontal_scroll_turns_the_sideways_wheel_at_the_point(
    sandbox_app: Env, pixels: int, direction: str
) -> None:
    env, log = sandbox_app
    env.execute(Scroll(pixels=pixels, x=420, y=320, axis="horizontal"))
    steps = abs(pixels) // 100
    log.wait_for(lambda events: len([e for e in events if e["event"] == "hwheel"]) >= steps)
    sideways = log.of("hwheel")
    assert [w["direction"] for w in sideways] == [direction] * steps
    assert {(w["x"], w["y"]) for w in sideways} == {(420, 320)}
    assert log.of("wheel") == []  # not a vertical scroll


def test_horizontal_scroll_at_the_cursor(sandbox_app: Env) -> None:
    env, log = sandbox_app
    env.execute(Click(x=450, y=350))
    log.wait_event("release", button=1)
    log.mark()
    env.execute(Scroll(pixels=40, axis="horizontal"))  # less than one step still scrolls once
    wheel = log.wait_event("hwheel")
    assert (wheel["direction"], wheel["x"], wheel["y"]) == ("left", 450, 350)
