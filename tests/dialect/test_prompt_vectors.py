"""The prompt must be byte-identical to what Qwen2.5-VL was trained on: sha256 vectors of the reference."""

from __future__ import annotations

import hashlib
import json

from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.model.base import ImagePart, Message, TextPart, render_chatml
from screenpilot.model.dialect import PastStep
from screenpilot.model.qwen25vl import Qwen25VLDialect, tool_line


def sha(text: str) -> tuple[int, str]:
    return len(text), hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_mobile_system_text_and_tool_line():
    dialect = Qwen25VLDialect("mobile_use")
    space = dialect.coordinate_space(Size(1080, 2400))
    assert space.model == (1092, 2408)
    assert sha(dialect.system_prompt(space)) == (
        3226,
        "08758deb1261464319e7c8e0ad8413c64285da66736b560d809f3754271a15e2",
    )
    assert sha(tool_line(dialect.tool_schema(space))) == (
        2824,
        "b0e022bc13f5aa95d5452a5fa47227ac16d3a4d19a1e724a8e285926c26cb4a2",
    )


def test_computer_system_text_and_tool_line():
    dialect = Qwen25VLDialect("computer_use")
    space = dialect.coordinate_space(Size(2560, 1440))
    assert space.model == (2548, 1428)
    assert sha(dialect.system_prompt(space)) == (
        3498,
        "1ba53409c1dbd11419024a9ee6fbcb564eb3c67c93d2a75c50a3923a82bea15c",
    )
    assert sha(tool_line(dialect.tool_schema(space))) == (
        3096,
        "4df1a8530539617d390211236190b37fdb838b61e38da908964a020a31898312",
    )


def test_full_rendered_prompt_with_history():
    dialect = Qwen25VLDialect("mobile_use")
    space = dialect.coordinate_space(Size(1080, 2400))
    history = [
        PastStep(
            call=json.dumps({"name": "mobile_use", "arguments": {"action": "open", "text": "File Manager"}})
        )
    ]
    messages = dialect.messages(
        "Open the file manager app and view the au_uu_SzH3yR2.mp3 file in MUSIC Folder",
        Image.new("RGB", (1080, 2400), "white"),
        space,
        history,
    )
    assert sha(render_chatml(messages)) == (
        3610,
        "20285d0ed6996f0553f67b914c4342fb864eb0cfdafaa445ab6dd4e193d3b33f",
    )
    image = messages[1].images[0]
    assert image.size == (1092, 2408), "the image must be resized to exactly the size the prompt states"


def test_answer_variant_adds_the_action():
    dialect = Qwen25VLDialect("mobile_use", answer_action=True)
    space = dialect.coordinate_space(Size(1080, 2400))
    schema = dialect.tool_schema(space)
    action = schema["parameters"]["properties"]["action"]
    assert action["enum"][4:7] == ["type", "answer", "system_button"]
    assert (
        "* `type`: Input the specified text into the activated input box.\n* `answer`: Output the answer.\n"
        in (action["description"])
    )
    assert schema["parameters"]["properties"]["text"]["description"] == (
        "Required only by `action=key`, `action=type`, `action=answer`, and `action=open`."
    )


def test_pixel_limits_change_the_stated_resolution():
    dialect = Qwen25VLDialect("mobile_use", max_pixels=1280 * 28 * 28)
    space = dialect.coordinate_space(Size(1080, 2400))
    assert space.model == (672, 1484)
    assert "The screen's resolution is 672x1484." in dialect.system_prompt(space)


def test_reasoning_variant_and_summaries_in_history():
    dialect = Qwen25VLDialect("mobile_use", reasoning=True)
    text = dialect.user_text("Do it", [PastStep(call='{"x": 1}', summary="Opened the app.")])
    assert text.startswith("The user query:  Do it\nBefore answering, explain your reasoning step-by-step")
    assert text.endswith("current device): Step 1: Opened the app.; ")


def test_kept_images_are_added_before_the_current_one():
    dialect = Qwen25VLDialect("mobile_use", keep_images=1)
    space = dialect.coordinate_space(Size(720, 1280))
    old = [
        PastStep("a", screenshot=Image.new("RGB", (720, 1280))),
        PastStep("b", screenshot=Image.new("RGB", (720, 1280))),
    ]
    user = dialect.messages("g", Image.new("RGB", (720, 1280)), space, old)[1]
    assert len(user.images) == 2
    texts = [p.text for p in user.content if isinstance(p, TextPart)]
    assert "\nScreenshot before step 2:" in texts and "\nScreenshot before step 1:" not in texts
    assert isinstance(user.content[-1], ImagePart)


def test_chatml_adds_default_system_prompt_only_without_one():
    rendered = render_chatml([Message.text("user", "hi")])
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
