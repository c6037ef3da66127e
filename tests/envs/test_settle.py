"""Settle detection on scripted frame sequences with a fake clock (no sleeping)."""

from __future__ import annotations

from PIL import Image

from screenpilot.envs.settle import screen_digest, wait_until_stable


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def frames(*colours: str):
    images = [Image.new("RGB", (64, 128), c) for c in colours]
    shown: list[int] = []

    def grab() -> Image.Image:
        shown.append(len(shown))
        return images[min(len(shown) - 1, len(images) - 1)]

    return grab, shown


def test_waits_first_then_stops_at_two_equal_frames():
    clock = Clock()
    grab, shown = frames("white", "red", "red", "blue")
    result = wait_until_stable(grab, timeout_s=3, interval_s=0.1, clock=clock, sleep=clock.sleep)
    assert clock.slept[0] == 0.3, "the minimum wait comes before the first frame"
    assert result.stable and result.frames == 3 and len(shown) == 3
    assert result.last is not None and result.last.getpixel((0, 0)) == (255, 0, 0)


def test_a_screen_that_never_settles_is_bounded_by_the_timeout():
    clock = Clock()
    colours = ["#000000", "#404040", "#808080", "#c0c0c0"] * 10  # every frame differs from the last
    grab, _ = frames(*colours)
    result = wait_until_stable(
        grab, timeout_s=1.0, interval_s=0.1, min_wait_s=0, clock=clock, sleep=clock.sleep
    )
    assert not result.stable
    assert 1.0 <= result.waited_s <= 1.1


def test_digest_ignores_tiny_changes_but_not_real_ones():
    base = Image.new("RGB", (1080, 2400), "white")
    cursor = base.copy()
    cursor.putpixel((500, 500), (0, 0, 0))
    changed = base.copy()
    changed.paste((0, 0, 0), (0, 0, 540, 1200))
    assert screen_digest(base) == screen_digest(cursor)
    assert screen_digest(base) != screen_digest(changed)
