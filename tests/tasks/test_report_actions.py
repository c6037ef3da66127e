"""Screenshots in the report show the new action forms for what they are: a horizontal scroll's arrow is
horizontal, a triple click is labelled as one."""

from __future__ import annotations

from PIL import Image

from screenpilot.actions.types import Click, Scroll
from screenpilot.tasks.report import draw_action

WHITE = (255, 255, 255)


def _marked(image: Image.Image, box: tuple[int, int, int, int]) -> bool:
    crop = image.crop(box)
    return crop.getextrema() != ((255, 255), (255, 255), (255, 255))


def test_a_horizontal_scroll_draws_a_horizontal_arrow() -> None:
    blank = Image.new("RGB", (300, 300), WHITE)
    left = draw_action(blank, Scroll(pixels=300, axis="horizontal", x=150, y=150))  # reveals the left
    assert _marked(left, (40, 145, 100, 155)) and not _marked(left, (145, 40, 155, 100))
    right = draw_action(blank, Scroll(pixels=-300, axis="horizontal", x=150, y=150))
    assert _marked(right, (200, 145, 260, 155)) and not _marked(right, (40, 145, 100, 155))
    up = draw_action(blank, Scroll(pixels=300, x=150, y=150))
    assert _marked(up, (145, 40, 155, 100)) and not _marked(up, (40, 145, 100, 155))


def test_a_triple_click_is_labelled_apart_from_a_click() -> None:
    blank = Image.new("RGB", (300, 300), WHITE)
    one = draw_action(blank, Click(x=50, y=150))
    three = draw_action(blank, Click(x=50, y=150, count=3))
    assert one.tobytes() != three.tobytes()
