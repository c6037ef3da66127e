"""UI-TARS-1.5's prompt must be byte-identical to the reference: sha256 vectors computed with its code."""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.errors import SetupError
from screenpilot.model.base import ImagePart, TextPart, render_chatml
from screenpilot.model.dialect import PastStep, SupportsGrounding
from screenpilot.model.dialects import DIALECTS, dialect_for_model_type, make_dialect
from screenpilot.model.uitars15 import (
    COMPUTER_USE,
    GROUNDING,
    MOBILE_USE,
    UITars15Dialect,
    add_box_tokens,
)

GOAL = "Open the Settings app and turn on Wi-Fi."
STEP1 = (
    "Thought: The Settings icon is on the desktop. I'll double-click it to open Settings.\n"
    "Action: left_double(start_box='(960,540)')"
)


def sha(text: str) -> tuple[int, str]:
    return len(text), hashlib.sha256(text.encode("utf-8")).hexdigest()


def screen(size: tuple[int, int]) -> Image.Image:
    return Image.new("RGB", size, "white")


@pytest.mark.parametrize(
    ("template", "vector"),
    [
        (COMPUTER_USE, (1203, "5363caa4e115ab3da862dd7a0cf8bf2859c7611ac8551e0336901bb0776ddd34")),
        (MOBILE_USE, (986, "2367ade469667c65cc6c7f2a85cab969a2a6192ccc0bd5bda24a88253832c6e7")),
        (GROUNDING, (278, "8c33053b0412737fc719205977789cde88e323655c2844b19103c9a4904467b5")),
    ],
)
def test_unfilled_templates(template, vector):
    assert sha(template) == vector


@pytest.mark.parametrize(
    ("platform", "size", "vector"),
    [
        ("desktop", (1920, 1080), (1227, "48950d4a96408049f6b9c2badb38f5304dcc4badf7f6ab1d08632decb3ceae87")),
        ("desktop", (2560, 1440), (1227, "48950d4a96408049f6b9c2badb38f5304dcc4badf7f6ab1d08632decb3ceae87")),
        ("mobile", (1080, 2400), (1010, "3da60407e54cbdaf5a24a90f110526d008a3c42fc4ac3e4f21e23aa8c097ce7b")),
    ],
)
def test_filled_template_is_the_first_user_turn(platform, size, vector):
    dialect = UITars15Dialect(platform)
    messages = dialect.messages(GOAL, screen(size), dialect.coordinate_space(Size(*size)), [])
    assert [m.role for m in messages] == ["system", "user", "user"]
    assert messages[0].content == (TextPart("You are a helpful assistant."),)
    assert messages[1].content == (TextPart(dialect.instruction(GOAL)),)
    assert sha(dialect.instruction(GOAL)) == vector
    assert isinstance(messages[2].content[0], ImagePart) and len(messages[2].content) == 1


def test_grounding_prompt():
    dialect = UITars15Dialect("desktop")
    space = dialect.coordinate_space(Size(1920, 1080))
    messages = dialect.grounding_messages(GOAL, screen((1920, 1080)), space)
    assert sha(messages[1].content[0].text) == (  # type: ignore[union-attr]
        305,
        "746220994e9b0585599fb2374434cbfe45b83090de0309cb5b8b90c423da44f5",
    )
    assert messages[2].images[0].size == (1932, 1092)
    assert isinstance(dialect, SupportsGrounding)


def test_full_prompt_step_one_and_expanded_image_tokens():
    dialect = UITars15Dialect("desktop")
    for size, tokens, vector in [
        ((1920, 1080), 2691, (36376, "3a2d00de21f4f66f8a574a0ed75febf8795b91da033a1c174c959b9926ced0e5")),
        ((2560, 1440), 4641, (61726, "5ed42227fa9be0ad279fd0be6c1a6ff36ca7925ed3398af8c2254a9f563dce82")),
    ]:
        space = dialect.coordinate_space(Size(*size))
        assert space.model.width * space.model.height // (28 * 28) == tokens
        rendered = render_chatml(dialect.messages(GOAL, screen(size), space, []))
        if size == (1920, 1080):
            assert sha(rendered) == (
                1406,
                "9d64590d88c6b9851c429f5cd3fc1585b9350cf85a204635c7d0bf07c36386bf",
            )
        assert sha(rendered.replace("<|image_pad|>", "<|image_pad|>" * tokens)) == vector


def test_full_prompt_step_two_puts_the_answer_back_with_box_tokens():
    dialect = UITars15Dialect("desktop", keep_images=1)
    space = dialect.coordinate_space(Size(1920, 1080))
    parsed = dialect.parse(STEP1, space)
    history = [PastStep(p.call, dialect.summary(STEP1), screen((1920, 1080))) for p in parsed]
    rendered = render_chatml(dialect.messages(GOAL, screen((1920, 1080)), space, history))
    assert sha(rendered) == (1661, "50457cf944b1de94a8ee39ca9b2fd5186334d73bcebb8b7cc3dff06ac65c4cf6")
    assert "Action: left_double(start_box='<|box_start|>(960,540)<|box_end|>')<|im_end|>" in rendered


def test_older_screenshots_are_dropped_but_every_answer_is_kept():
    dialect = UITars15Dialect("mobile", keep_images=1)
    space = dialect.coordinate_space(Size(720, 1280))
    history = [
        PastStep("press_home()", "Go home.", screen((720, 1280))),
        PastStep("open_app(app_name='Settings')", "Open Settings.", screen((720, 1280))),
    ]
    messages = dialect.messages("g", screen((720, 1280)), space, history)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[2].content == (TextPart("Thought: Go home.\nAction: press_home()"),)
    assert sum(len(m.images) for m in messages) == 2


def test_several_actions_of_one_answer_come_back_as_one_turn():
    dialect = UITars15Dialect("desktop")
    space = dialect.coordinate_space(Size(1920, 1080))
    text = "Thought: t\nAction: click(start_box='(100,200)')\n\ntype(content='hi')"
    history = [PastStep(p.call, dialect.summary(text)) for p in dialect.parse(text, space)]
    assistant = [
        m for m in dialect.messages("g", screen((1920, 1080)), space, history) if m.role == "assistant"
    ]
    assert assistant[0].content == (
        TextPart(
            "Thought: t\nAction: click(start_box='<|box_start|>(100,200)<|box_end|>')\n\ntype(content='hi')"
        ),
    )
    assert len(assistant) == 1


def test_a_step_without_an_action_keeps_only_its_thought():
    dialect = UITars15Dialect("desktop")
    space = dialect.coordinate_space(Size(1920, 1080))
    history = [PastStep(None, "Nothing to do yet."), PastStep("wait()")]
    turns = [m.content for m in dialect.messages("g", screen((1920, 1080)), space, history)[2:4]]
    assert turns == [(TextPart("Thought: Nothing to do yet."),), (TextPart("Action: wait()"),)]


def test_feedback_goes_with_the_current_screenshot():
    dialect = UITars15Dialect("desktop")
    space = dialect.coordinate_space(Size(1920, 1080))
    last = dialect.messages("g", screen((1920, 1080)), space, [], feedback="That did not work.")[-1]
    assert last.content[0] == TextPart("Note: That did not work.\n")
    assert isinstance(last.content[1], ImagePart)


def test_question_asks_for_the_answer_in_finished():
    dialect = UITars15Dialect("mobile")
    space = dialect.coordinate_space(Size(1080, 2400))
    messages = dialect.question_messages("How many unread mails?", screen((1080, 2400)), space)
    text = messages[1].content[0].text  # type: ignore[union-attr]
    assert text.startswith(MOBILE_USE.split("{language}")[0])
    assert "How many unread mails?\nReply with finished(content='your answer')." in text
    parsed = dialect.parse("Thought: I count 3.\nAction: finished(content='3')", space)
    assert [p.device.action for p in parsed] == ["answer", "terminate"]


def test_add_box_tokens_as_the_reference():
    assert add_box_tokens("drag(start_box='(1,2)', end_box='(3,4)')") == (
        "drag(start_box='<|box_start|>(1,2)<|box_end|>', end_box='<|box_start|>(3,4)<|box_end|>')"
    )
    assert add_box_tokens("click(start_box='(100, 200)')") == "click(start_box='(100, 200)')"


def test_registered_by_name_and_never_by_model_type():
    assert "ui-tars-1.5" in DIALECTS
    assert dialect_for_model_type("qwen2_5_vl") == "qwen2.5-vl"
    dialect = make_dialect(
        "ui-tars-1.5",
        "mobile",
        min_pixels=3136,
        max_pixels=16384 * 28 * 28,
        answer_action=False,
        reasoning=True,
        keep_images=2,
    )
    assert isinstance(dialect, UITars15Dialect)
    assert dialect.describe()["template"] == "mobile_use" and dialect.keep_images == 2


def test_options_it_cannot_honour_are_refused():
    with pytest.raises(SetupError, match=r"largest image UI-TARS-1\.5 was trained on"):
        make_dialect("ui-tars-1.5", "desktop", max_pixels=16385 * 28 * 28)
    with pytest.raises(SetupError, match="does not take that option"):
        make_dialect("ui-tars-1.5", "desktop", tools="x")


def test_describe_records_the_template_hash():
    described = UITars15Dialect("desktop").describe()
    assert described["template_sha256"] == "5363caa4e115ab3da862dd7a0cf8bf2859c7611ac8551e0336901bb0776ddd34"
    assert described["dialect"] == "ui-tars-1.5"
