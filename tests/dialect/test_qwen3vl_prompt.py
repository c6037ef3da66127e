"""Qwen3-VL prompts must be byte-identical to the cookbooks': sha256 vectors computed with the reference code."""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.model.base import render_chatml
from screenpilot.model.dialect import PastStep, SupportsGrounding
from screenpilot.model.dialects import dialect_for_model_type, make_dialect
from screenpilot.model.qwen3vl import (
    COMPUTER_USE_TOOL,
    MOBILE_USE_TOOL,
    RESPONSE_FORMAT,
    Qwen3VLDialect,
    mobile_user_text,
)
from screenpilot.model.tool_arguments import tool_line, tools_block

MUSK = "Search for Musk in X and go to his homepage to open the first post."
OPENED_X = "I opened the X app from the home screen."


def sha(text: str) -> tuple[int, str]:
    return len(text), hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_tool_lines_and_response_format() -> None:
    assert sha(tool_line(MOBILE_USE_TOOL)) == (
        2528,
        "fd7388ac4a2cd6ea347af75409836044f9acc03e785fb057467a0ccf6393d4ea",
    )
    assert sha(tool_line(COMPUTER_USE_TOOL)) == (
        3484,
        "27eb70d6464ac4fff7e6fd3da11f748f5dae9e0a49f36359fd4281c4d107a6db",
    )
    assert sha(RESPONSE_FORMAT) == (566, "75fdd0f8e0dbb53b059ded9e4797ab38df2fd134cd16d0ff932156757b6d708a")
    assert sha("\n\n" + tools_block([COMPUTER_USE_TOOL])) == (
        3858,
        "4f9e55f404f74f68908148a805201dfde7d93d47bbb69412c27af036317cab27",
    )


@pytest.mark.parametrize("screen", [Size(1080, 2400), Size(720, 1280), Size(2400, 1080)])
def test_mobile_system_text_does_not_depend_on_the_device(screen: Size) -> None:
    dialect = Qwen3VLDialect("mobile_use")
    assert sha(dialect.system_prompt(dialect.coordinate_space(screen))) == (
        3468,
        "9d060af15f62acb31b9fb197649ec001d4096491d7fb102de929316944b3e26d",
    )


@pytest.mark.parametrize("screen", [Size(1920, 1080), Size(2560, 1440), Size(1080, 1920)])
def test_computer_system_text_does_not_depend_on_the_device(screen: Size) -> None:
    dialect = Qwen3VLDialect("computer_use")
    assert sha(dialect.system_prompt(dialect.coordinate_space(screen))) == (
        3886,
        "6084d16a025c374a9523958d4438e1f068c73da969aa3002415da011ff85b37c",
    )


def test_mobile_user_texts() -> None:
    assert sha(mobile_user_text(MUSK, [OPENED_X])) == (
        214,
        "d009a0800c5d90116d2903265f9159daacfde7dffd5d25c72251099c375a4f93",
    )
    assert sha(mobile_user_text("Open the Settings app and turn on Wi-Fi.", [])) == (
        137,
        "b551d47235593f5b56f9a42c75c6b42b5e6736c81012044beea9f9777c9e2ab2",
    )
    # newlines and double quotes of history items are removed, as the cookbook does
    assert "Step 1: I tapped Search.; Step 2: no action; ." in mobile_user_text(
        "g", ['I tapped "Search".\n', "no action"]
    )


def test_full_mobile_prompt_uses_the_models_action_line_as_history() -> None:
    dialect = Qwen3VLDialect("mobile_use")
    space = dialect.coordinate_space(Size(1080, 2400))
    step = PastStep(call='{"name": "mobile_use"}', summary=OPENED_X)
    messages = dialect.messages(MUSK, Image.new("RGB", (1080, 2400), "white"), space, [step])
    prompt = render_chatml(messages)
    assert sha(prompt) == (3805, "30cedd7d9d8018af0ae93bdebeef5d3ab1311a5b5f42599aa1305667cb892e39")
    assert messages[1].images[0].size == (1088, 2400)
    assert dialect.image_tokens(Size(1080, 2400)) == 2550
    expanded = prompt.replace("<|image_pad|>", "<|image_pad|>" * 2550)
    assert sha(expanded) == (36942, "540b927a66e1a71f00f608b4d3321b85490db2f54b89a41e9ac8323d5d93a3a0")


@pytest.mark.parametrize(
    ("screen", "image", "tokens", "expanded"),
    [
        (
            Size(1920, 1080),
            (1920, 1088),
            2040,
            (30536, "f1d39a82cccdc06f6279662d15a3f569500d98cdf09e24f965f9cfcc228dcd9f"),
        ),
        (
            Size(2560, 1440),
            (2560, 1440),
            3600,
            (50816, "a30303a3f023d27cd5c12ee8a00863fe87c385b4bc2aa8f9108043a22c79ae41"),
        ),
    ],
)
def test_full_computer_prompt_puts_the_image_before_the_query(
    screen: Size, image: tuple[int, int], tokens: int, expanded: tuple[int, str]
) -> None:
    dialect = Qwen3VLDialect("computer_use")
    space = dialect.coordinate_space(screen)
    messages = dialect.messages("open the third issue", Image.new("RGB", screen, "white"), space, [])
    prompt = render_chatml(messages)
    assert sha(prompt) == (4029, "b38b8d1a8cee5c43fdd221bf2b70bc27a113a6a9a7a9b5aea8fc17099026160e")
    assert messages[1].images[0].size == image
    assert dialect.image_tokens(screen) == tokens
    assert sha(prompt.replace("<|image_pad|>", "<|image_pad|>" * tokens)) == expanded


@pytest.mark.parametrize(
    ("screen", "image", "tokens"),
    [
        (Size(1080, 2400), (1088, 2400), 2550),
        (Size(1920, 1080), (1920, 1088), 2040),
        (Size(2560, 1440), (2560, 1440), 3600),
        (Size(1280, 800), (1280, 800), 1000),
        (Size(720, 1280), (704, 1280), 880),
        (Size(3840, 2160), (3840, 2176), 8160),
        (Size(393, 852), (384, 864), 324),
        (Size(1440, 3120), (1440, 3136), 4410),
    ],
)
def test_image_sizes_and_token_counts_of_the_reference_table(
    screen: Size, image: tuple[int, int], tokens: int
) -> None:
    dialect = Qwen3VLDialect("mobile_use")
    assert dialect.image_size(screen) == image
    assert dialect.image_tokens(screen) == tokens


def test_a_lower_pixel_budget_changes_the_image_not_the_grid() -> None:
    dialect = Qwen3VLDialect("computer_use", max_pixels=1280 * 32 * 32)
    assert dialect.image_size(Size(1920, 1080)) == (1504, 832)
    assert dialect.image_tokens(Size(3840, 2160)) == 1222
    assert dialect.coordinate_space(Size(1920, 1080)).model == (1000, 1000)


def test_later_desktop_steps_add_progress_after_the_query() -> None:
    dialect = Qwen3VLDialect("computer_use")
    step = PastStep(call='{"name": "computer_use", "arguments": {"action": "left_click"}}')
    text = dialect.user_text("open the third issue", [step])
    assert text == (
        "open the third issue\nTask progress (You have done the following operation on the current device): "
        "Step 1: {name: computer_use, arguments: {action: left_click}}; .\n"
    )


def test_feedback_and_kept_screenshots() -> None:
    dialect = Qwen3VLDialect("mobile_use", keep_images=1)
    space = dialect.coordinate_space(Size(1080, 2400))
    shot = Image.new("RGB", (1080, 2400), "white")
    history = [PastStep(call="a", screenshot=shot), PastStep(call="b", screenshot=shot)]
    messages = dialect.messages("g", shot, space, history, feedback="That did not parse.")
    user = messages[1]
    assert len(user.images) == 2
    texts = [p.text for p in user.content if hasattr(p, "text")]
    assert "\nNote: That did not parse.\n" in texts
    assert "Screenshot before step 2:" in texts and "Screenshot before step 1:" not in texts


def test_grounding_and_questions_in_the_native_form() -> None:
    dialect = Qwen3VLDialect("computer_use")
    assert isinstance(dialect, SupportsGrounding)
    space = dialect.coordinate_space(Size(1920, 1080))
    shot = Image.new("RGB", (1920, 1080), "white")
    ground = dialect.grounding_messages("the Save button", shot, space)
    assert ground[0].content[0].text == dialect.system_prompt(space)  # type: ignore[union-attr]
    assert render_chatml(ground).endswith(
        "<|vision_start|><|image_pad|><|vision_end|>Click the Save button. Answer with exactly one action: a "
        "click on it. If it is not on the screen, terminate with status failure<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    phone = Qwen3VLDialect("mobile_use")
    ask = phone.question_messages(
        "What is the battery level?", shot, phone.coordinate_space(Size(1920, 1080))
    )
    assert "The user query: Answer this question about the screen with the answer action and no other " in (
        render_chatml(ask)
    )


def test_the_registry_builds_it_and_knows_its_checkpoints() -> None:
    dialect = make_dialect("qwen3-vl", "desktop")
    assert isinstance(dialect, Qwen3VLDialect) and dialect.tool == "computer_use"
    assert make_dialect("qwen3-vl", "mobile").describe()["grid"] == "999x999"
    assert dialect_for_model_type("qwen3_vl") == "qwen3-vl"
    assert dialect_for_model_type("qwen3_vl_moe") == "qwen3-vl"
