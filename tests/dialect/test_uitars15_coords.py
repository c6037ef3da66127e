"""UI-TARS-1.5 coordinates: absolute pixels of the factor-28 resized screenshot, back to the device through the
coordinate space, on portrait and landscape screens (a width/height swap fails here), and through the loop."""

from __future__ import annotations

import pytest

from screenpilot.actions.coords import Size
from screenpilot.actions.types import Click, Scroll, Swipe, TypeText
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import run_episode
from screenpilot.envs.fake import FakeEnv
from screenpilot.model.replay import ReplayModel
from screenpilot.model.uitars15 import UITars15Dialect

# device (W x H) -> resized (W x H), from the reference (ui_tars.action_parser.smart_resize)
RESIZED = {
    (1080, 2400): (1092, 2408),
    (1920, 1080): (1932, 1092),
    (2560, 1440): (2548, 1428),
    (1280, 800): (1288, 812),
    (720, 1280): (728, 1288),
    (3840, 2160): (3836, 2156),
    (393, 852): (392, 840),
}


@pytest.mark.parametrize("device", list(RESIZED))
def test_resized_sizes_match_the_reference(device):
    space = UITars15Dialect("desktop").coordinate_space(Size(*device))
    assert space.model == RESIZED[device]


SCREENS = [
    (1080, 2400),
    (2400, 1080),
    (1920, 1080),
    (1080, 1920),
    (393, 852),
    (852, 393),
    (3840, 2160),
    (800, 1280),
    (1000, 1000),
]


@pytest.mark.parametrize("size", SCREENS)
@pytest.mark.parametrize("platform", ["mobile", "desktop"])
def test_a_point_the_model_names_lands_where_it_was_drawn(size, platform):
    """A target at a known device point, a model that writes it the way UI-TARS does (absolute pixels of the
    image it saw), and the executed click within 1 px of the target."""
    dialect = UITars15Dialect(platform)
    space = dialect.coordinate_space(Size(*size))
    w, h = size
    for tx, ty in [(w // 7, h - h // 9), (w - 3, 2), (w // 2, h // 3), (0, h - 1)]:
        mx, my = round(tx * space.model.width / w), round(ty * space.model.height / h)
        (parsed,) = dialect.parse(f"Thought: there.\nAction: click(start_box='({mx},{my})')", space)
        assert isinstance(parsed.device, Click)
        assert abs(parsed.device.x - tx) <= 1 and abs(parsed.device.y - ty) <= 1, (size, tx, ty)  # type: ignore[operator]
        assert parsed.model == Click(x=mx, y=my)


def test_bottom_left_of_a_portrait_screen_is_not_read_transposed():
    dialect = UITars15Dialect("mobile")
    space = dialect.coordinate_space(Size(1080, 2400))
    (parsed,) = dialect.parse("Action: click(start_box='(10,2400)')", space)
    assert parsed.device == Click(x=10, y=2392)
    landscape = dialect.coordinate_space(Size(2400, 1080))
    assert landscape.model == (2408, 1092)
    (parsed,) = dialect.parse("Action: click(start_box='(2400,10)')", landscape)
    assert parsed.device == Click(x=2392, y=10)


def run(size, platform, *answers, goal="do it"):
    model = ReplayModel([(None, a) for a in answers])
    env = FakeEnv(Size(*size), platform=platform)
    episode = run_episode(env, Agent(model, UITars15Dialect(platform)), goal)
    list(episode)
    return env, model, episode.result


def test_the_loop_executes_in_device_pixels_and_finished_gives_the_answer():
    env, model, result = run(
        (1920, 1080),
        "desktop",
        "Thought: Search box.\nAction: click(start_box='<|box_start|>(100,200)<|box_end|>')",
        "Thought: Type.\nAction: type(content='wifi\\n')",
        "Thought: Scroll.\nAction: scroll(start_box='(966,546)', direction='down')",
        "Thought: Done.\nAction: finished(content='Wi-Fi is on.')",
    )
    assert env.executed == [
        Click(x=99, y=198),
        TypeText(text="wifi\n"),
        Scroll(pixels=-500, x=960, y=540),
    ]
    assert (result.status, result.answer) == ("success", "Wi-Fi is on.")
    history = [m for m in model.calls[-1] if m.role == "assistant"]
    assert history[0].content[0].text == (  # type: ignore[union-attr]
        "Thought: Search box.\nAction: click(start_box='<|box_start|>(100,200)<|box_end|>')"
    )
    assert len(history) == 3


def test_call_user_ends_the_episode_as_a_failure():
    env, _, result = run(
        (1080, 2400), "mobile", "Thought: I need a password.\nAction: call_user()", goal="log in"
    )
    assert env.executed == []
    assert (result.status, result.reason) == ("failure", "terminated")
    assert result.error == "the agent reported failure: call_user()"


def test_a_phone_scroll_is_a_swipe_on_the_device():
    env, _, result = run(
        (1080, 2400),
        "mobile",
        "Thought: More below.\nAction: scroll(start_box='(546,1806)', direction='down')",
        "Thought: Done.\nAction: finished()",
    )
    assert env.executed == [Swipe(x=540, y=1800, x2=540, y2=600)]
    assert (result.status, result.answer) == ("success", None)
