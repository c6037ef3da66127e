"""A model family with another coordinate convention plugs in as a dialect; the loop is untouched."""

from __future__ import annotations

import re
from collections.abc import Sequence

from PIL import Image

from screenpilot.actions.coords import CoordinateSpace, Size
from screenpilot.actions.parse import ToolCallParseError
from screenpilot.actions.types import Click, Terminate
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import run_episode
from screenpilot.envs.fake import FakeEnv
from screenpilot.model.base import ImagePart, Message, TextPart
from screenpilot.model.dialect import ParsedAction, PastStep
from screenpilot.model.replay import ReplayModel


class Relative1000Dialect:
    """Answers like ``tap(500, 250)`` in 0-1000 relative coordinates (as Qwen2-VL and Qwen3-VL use)."""

    name = "relative1000"
    platform = "mobile"

    def coordinate_space(self, screen: Size) -> CoordinateSpace:
        return CoordinateSpace(model=Size(1000, 1000), device=screen)

    def system_prompt(self, space: CoordinateSpace) -> str:
        return "Answer tap(x, y) with x, y in 0..1000, or done()."

    def messages(self, goal, screenshot, space, history: Sequence[PastStep], feedback=None) -> list[Message]:
        image = screenshot.resize((448, 896), Image.Resampling.BICUBIC)
        return [
            Message.text("system", self.system_prompt(space)),
            Message("user", (TextPart(goal), ImagePart(image))),
        ]

    def parse(self, text: str, space: CoordinateSpace) -> list[ParsedAction]:
        if text.strip() == "done()":
            return [ParsedAction(Terminate(status="success"), Terminate(status="success"), text)]
        m = re.fullmatch(r"tap\((\d+), (\d+)\)", text.strip())
        if not m:
            raise ToolCallParseError("Answer tap(x, y) or done().")
        model = Click(x=int(m[1]), y=int(m[2]))
        return [ParsedAction(model, space.action_to_device(model), text)]

    def summary(self, text: str) -> str | None:
        return None

    def describe(self) -> dict[str, object]:
        return {"dialect": self.name}


def test_relative_coordinates_map_through_the_same_boundary():
    env = FakeEnv(Size(1080, 2400))
    agent = Agent(ReplayModel([(None, "tap(500, 250)"), (None, "done()")]), Relative1000Dialect())
    episode = run_episode(env, agent, "tap the middle of the upper half")
    steps = list(episode)
    assert env.executed == [Click(x=540, y=600)]
    assert episode.result is not None and episode.result.status == "success"
    assert steps[0].record.model_screen == (1000, 1000)
