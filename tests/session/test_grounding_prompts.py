"""The Qwen2.5-VL grounding and question prompts: the agent's own tool, at the same image size, with one
user turn; questions get the answer action, which only a dialect built with it reads."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.actions.types import Answer
from screenpilot.errors import ModelOutputError, SetupError
from screenpilot.model.base import ImagePart, TextPart
from screenpilot.model.qwen25vl import Qwen25VLDialect, computer_use_tool, mobile_use_tool, system_text
from screenpilot.model.replay import ReplayModel
from screenpilot.session.grounding import Grounder

SCREEN = Image.new("RGB", (1280, 800), "white")


def test_grounding_uses_the_agents_system_prompt_and_image() -> None:
    dialect = Qwen25VLDialect("computer_use")
    space = dialect.coordinate_space(Size(1280, 800))
    system, user = dialect.grounding_messages("the Send button", SCREEN, space)
    assert system.content == (TextPart(dialect.system_prompt(space)),)
    text, image = user.content
    assert isinstance(text, TextPart) and text.text.startswith("The user query:  Click the Send button.")
    assert isinstance(image, ImagePart) and image.image.size == tuple(space.model) == (1288, 812)


def test_questions_offer_the_answer_action_on_both_tools() -> None:
    desktop = Qwen25VLDialect("computer_use")
    space = desktop.coordinate_space(Size(1280, 800))
    tool = desktop.answer_tool_schema(space)
    action = tool["parameters"]["properties"]["action"]
    assert action["enum"][:3] == ["key", "type", "answer"]
    assert "* `answer`: Output the answer.\n* `mouse_move`" in action["description"]
    assert computer_use_tool(space.model) != tool  # the agent's own tool is untouched
    system, _ = desktop.question_messages("What is the total?", SCREEN, space)
    assert system.content == (TextPart(system_text([tool])),)

    phone = Qwen25VLDialect("mobile_use")
    mobile_space = phone.coordinate_space(Size(1080, 2400))
    assert phone.answer_tool_schema(mobile_space) == mobile_use_tool(mobile_space.model, answer_action=True)


def test_answers_are_read_only_by_a_dialect_built_with_the_answer_action() -> None:
    space = Qwen25VLDialect("computer_use").coordinate_space(Size(1280, 800))
    text = (
        "<tool_call>\n"
        + json.dumps({"name": "computer_use", "arguments": {"action": "answer", "text": "42"}})
        + "\n</tool_call>"
    )
    with pytest.raises(ModelOutputError):
        Qwen25VLDialect("computer_use").parse(text, space)
    assert Qwen25VLDialect("computer_use", answer_action=True).parse(text, space)[0].device == Answer(
        text="42"
    )


def test_a_dialect_without_grounding_prompts_is_a_setup_error() -> None:
    class Plain(Qwen25VLDialect):
        grounding_messages = None  # type: ignore[assignment]
        question_messages = None  # type: ignore[assignment]

    plain = Plain("computer_use")
    grounder = Grounder(ReplayModel([]), plain, plain)
    with pytest.raises(SetupError, match="cannot ground targets"):
        grounder.locate("the Send button", SCREEN)
