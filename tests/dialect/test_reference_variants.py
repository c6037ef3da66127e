"""The reference documents' remaining vectors and tables: the prompt variants screenpilot does not send (UI-TARS's
Doubao templates, Qwen3-VL's release-version phone prompt), rebuilt from screenpilot's own templates by the
differences the references describe, so every shared line of those templates is checked a second time; and the
image-size tables of each family (resized sizes, image tokens, UI-TARS's higher pixel floor)."""

from __future__ import annotations

import hashlib

import pytest

from screenpilot.actions.coords import Size
from screenpilot.model.qwen3vl import RESPONSE_FORMAT, mobile_system_text
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.uitars15 import COMPUTER_USE, GROUNDING, MOBILE_USE, UITars15Dialect

INSTRUCTION = "Open the Settings app and turn on Wi-Fi."
BOX = "'<|box_start|>(x1,y1)<|box_end|>'"
POINT = "'<point>x1 y1</point>'"


def sha(text: str) -> tuple[int, str]:
    return len(text), hashlib.sha256(text.encode("utf-8")).hexdigest()


def doubao(template: str, *, desktop: bool) -> str:
    """A UI-TARS template in its ``*_DOUBAO`` form: points instead of boxes, the hotkey and scroll notes."""
    template = template.replace(
        f"drag(start_box={BOX}, end_box='<|box_start|>(x3,y3)<|box_end|>')",
        "drag(start_point='<point>x1 y1</point>', end_point='<point>x2 y2</point>')",
    )
    template = template.replace(
        "hotkey(key='')",
        "hotkey(key='ctrl c') # Split keys with a space and use lowercase. "
        "Also, do not use more than 3 keys in one hotkey action.",
    )
    if desktop:
        template = template.replace(
            f"scroll(start_box={BOX}, direction='down or up or right or left')",
            f"scroll(point={POINT}, direction='down or up or right or left') "
            "# Show more information on the `direction` side.",
        )
    return template.replace(f"start_box={BOX}", f"point={POINT}")


@pytest.mark.parametrize(
    ("template", "desktop", "vector"),
    [
        (COMPUTER_USE, True, (1305, "03fc7d4792e0ab62a2f33fe88c3cb501d3a594ff1cb1c455eac4ac2fcba1a7bc")),
        (MOBILE_USE, False, (947, "79125fb6d11ca8b1455a14594fb325e2afc744a30427788676ae1cf68673a563")),
    ],
)
def test_uitars_doubao_templates_differ_only_where_the_reference_says(
    template: str, desktop: bool, vector: tuple[int, str]
) -> None:
    filled = doubao(template, desktop=desktop).format(language="English", instruction=INSTRUCTION)
    assert sha(filled) == vector


def test_uitars_doubao_grounding_keeps_its_stray_quote() -> None:
    filled = GROUNDING.replace(f"click(start_box={BOX})", f"click(point={POINT}')").format(
        instruction=INSTRUCTION
    )
    assert sha(filled) == (291, "f325b45b855fb6bfcd18814e3ded556f0f9c1e3d503c3a0ddd1c3d12afd1d554")


def test_qwen3vl_release_phone_prompt_is_the_tools_block_and_the_old_rules() -> None:
    """The release notebook's text: no leading newlines, only the Rules list, then one more rule without a
    separator (kept here so old logs can be recognised; screenpilot sends the current text)."""
    current = mobile_system_text()
    tools = current[2 : len(current) - len(RESPONSE_FORMAT)]
    rules = RESPONSE_FORMAT[RESPONSE_FORMAT.index("Rules:") :]
    old = (
        tools
        + "\n\n"
        + rules
        + 'For each function call, there must be an "action" key in the "arguments" which denote the type of '
        "the action."
    )
    assert sha(old) == (3244, "335f34cb9d1167a04a66595c3f34d040d4d46651befff15edc0a56f6efb5488e")


@pytest.mark.parametrize(
    ("screen", "resized", "tokens"),
    [
        (Size(1080, 2400), (1092, 2408), 3354),
        (Size(720, 1280), (728, 1288), 1196),
        (Size(2560, 1440), (2548, 1428), 4641),
        (Size(1920, 1080), (1932, 1092), 2691),
        (Size(1280, 800), (1288, 812), 1334),
        (Size(3840, 2160), (3836, 2156), 10549),
        (Size(393, 852), (392, 840), 420),
        (Size(1440, 3120), (1428, 3108), 5661),
    ],
)
def test_factor_28_sizes_and_tokens_of_qwen25vl_and_uitars(
    screen: Size, resized: tuple[int, int], tokens: int
) -> None:
    for dialect in (Qwen25VLDialect("computer_use"), UITars15Dialect("desktop")):
        assert dialect.coordinate_space(screen).model == resized
        assert dialect.image_tokens(screen) == tokens


@pytest.mark.parametrize(
    ("screen", "qwen25", "uitars"),
    [
        # 196x196 = 38416 px: above Qwen2.5-VL's floor (3136), below UI-TARS's parser floor (78400)
        (Size(200, 200), (196, 196), (280, 280)),
        (Size(120, 300), (112, 308), (196, 448)),
    ],
)
def test_uitars_pixel_floor_is_its_parsers_not_qwen25vls(
    screen: Size, qwen25: tuple[int, int], uitars: tuple[int, int]
) -> None:
    assert Qwen25VLDialect("computer_use").coordinate_space(screen).model == qwen25
    assert UITars15Dialect("desktop").coordinate_space(screen).model == uitars
