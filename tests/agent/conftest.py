from __future__ import annotations

import pytest

from screenpilot.agent.agent import Agent
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.replay import ReplayModel


@pytest.fixture
def make_agent():
    def make(*outputs: str, max_retries: int = 0, **dialect_options: object) -> tuple[Agent, ReplayModel]:
        model = ReplayModel([(None, o) for o in outputs])
        return Agent(model, Qwen25VLDialect("mobile_use", **dialect_options), max_retries=max_retries), model

    return make
