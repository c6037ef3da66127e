"""What the server path sends is what the local path renders: the chat completions body the OpenAI-compatible
backend builds, put through the model's own chat template (as vLLM or SGLang does it), gives the same bytes as
:func:`~screenpilot.model.base.render_chatml` (what the transformers backend tokenizes), for every dialect's
reference prompt, history included; and the PNG it sends holds exactly the pixels of the local image.

The template is the Qwen2-VL one the Qwen2.5-VL checkpoints and UI-TARS-1.5 ship. Qwen3-VL's Instruct template
renders system, user and assistant text the same way and differs only in adding no default system message,
which no dialect relies on: every prompt starts with its own system message (asserted below)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Callable

import jinja2
import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.model.base import ImagePart, Message, render_chatml
from screenpilot.model.dialect import PastStep
from screenpilot.model.openai_backend import OpenAIBackend
from screenpilot.model.qwen3vl import Qwen3VLDialect
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.uitars15 import UITars15Dialect
from tests.model.tiny_qwen import CHAT_TEMPLATE

pytest.importorskip("httpx")


def sha(text: str) -> tuple[int, str]:
    return len(text), hashlib.sha256(text.encode("utf-8")).hexdigest()


def noise(size: tuple[int, int]) -> Image.Image:
    return Image.frombytes("RGB", size, bytes((i * 7919) % 251 for i in range(size[0] * size[1] * 3)))


def server_render(body: dict[str, object]) -> str:
    template = jinja2.Environment().from_string(CHAT_TEMPLATE)
    return template.render(messages=body["messages"], add_generation_prompt=True, add_vision_id=False)


def qwen25_reference() -> list[Message]:
    dialect = Qwen25VLDialect("mobile_use")
    call = json.dumps({"name": "mobile_use", "arguments": {"action": "open", "text": "File Manager"}})
    goal = "Open the file manager app and view the au_uu_SzH3yR2.mp3 file in MUSIC Folder"
    space = dialect.coordinate_space(Size(1080, 2400))
    return dialect.messages(goal, noise((1080, 2400)), space, [PastStep(call=call)])


def qwen3_mobile_reference() -> list[Message]:
    dialect = Qwen3VLDialect("mobile_use")
    step = PastStep(call='{"name": "mobile_use"}', summary="I opened the X app from the home screen.")
    goal = "Search for Musk in X and go to his homepage to open the first post."
    return dialect.messages(goal, noise((1080, 2400)), dialect.coordinate_space(Size(1080, 2400)), [step])


def qwen3_computer_reference() -> list[Message]:
    dialect = Qwen3VLDialect("computer_use")
    space = dialect.coordinate_space(Size(1920, 1080))
    return dialect.messages("open the third issue", noise((1920, 1080)), space, [])


def uitars_reference() -> list[Message]:
    dialect = UITars15Dialect("desktop", keep_images=1)
    space = dialect.coordinate_space(Size(1920, 1080))
    answer = (
        "Thought: The Settings icon is on the desktop. I'll double-click it to open Settings.\n"
        "Action: left_double(start_box='(960,540)')"
    )
    (parsed,) = dialect.parse(answer, space)
    history = [PastStep(parsed.call, dialect.summary(answer), noise((1920, 1080)))]
    return dialect.messages("Open the Settings app and turn on Wi-Fi.", noise((1920, 1080)), space, history)


@pytest.mark.parametrize(
    ("build", "vector"),
    [
        (qwen25_reference, (3610, "20285d0ed6996f0553f67b914c4342fb864eb0cfdafaa445ab6dd4e193d3b33f")),
        (qwen3_mobile_reference, (3805, "30cedd7d9d8018af0ae93bdebeef5d3ab1311a5b5f42599aa1305667cb892e39")),
        (
            qwen3_computer_reference,
            (4029, "b38b8d1a8cee5c43fdd221bf2b70bc27a113a6a9a7a9b5aea8fc17099026160e"),
        ),
        (uitars_reference, (1661, "50457cf944b1de94a8ee39ca9b2fd5186334d73bcebb8b7cc3dff06ac65c4cf6")),
    ],
    ids=["qwen2.5-vl", "qwen3-vl-mobile", "qwen3-vl-computer", "ui-tars-1.5-step2"],
)
def test_server_body_renders_to_the_local_prompt_and_the_reference_vector(
    build: Callable[[], list[Message]], vector: tuple[int, str]
) -> None:
    messages = build()
    assert messages[0].role == "system"
    backend = OpenAIBackend("http://127.0.0.1:9/v1", served_model="m")
    try:
        body = backend.request_body(messages)
    finally:
        backend.close()
    assert "tools" not in body
    assert server_render(body) == render_chatml(messages)
    assert sha(server_render(body)) == vector

    local = [p.image for m in messages for p in m.content if isinstance(p, ImagePart)]
    sent = [
        part["image_url"]["url"]
        for message in body["messages"]  # type: ignore[union-attr]
        if isinstance(message["content"], list)
        for part in message["content"]
        if part["type"] == "image_url"
    ]
    assert len(sent) == len(local) >= 1
    for url, image in zip(sent, local, strict=True):
        png = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert png.size == image.size and png.convert("RGB").tobytes() == image.tobytes()
