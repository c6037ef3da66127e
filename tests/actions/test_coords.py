from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from screenpilot.actions.coords import (
    QWEN_MAX_PIXELS,
    CoordinateError,
    CoordinateSpace,
    ImageSizeError,
    Size,
    smart_resize,
)
from screenpilot.actions.types import Click, Drag, Key, Scroll, Swipe, Wait


@pytest.mark.parametrize(
    ("device", "default", "capped"),
    [
        ((1080, 2400), (1092, 2408), (672, 1484)),
        ((720, 1280), (728, 1288), (728, 1288)),
        ((2560, 1440), (2548, 1428), (1316, 728)),
        ((1920, 1080), (1932, 1092), (1316, 728)),
    ],
)
def test_smart_resize_matches_reference_table(device, default, capped):
    w, h = device
    assert smart_resize(h, w)[::-1] == default
    assert smart_resize(h, w, max_pixels=1280 * 28 * 28)[::-1] == capped


def test_smart_resize_rounds_half_to_even():
    # 1078 / 28 = 38.5 rounds to 38 (banker's rounding), as the processor does.
    assert smart_resize(1078, 280) == (38 * 28, 280)


def test_smart_resize_min_pixels_and_tiny_images():
    h, w = smart_resize(10, 10)
    assert h * w >= 3136 and h % 28 == 0 and w % 28 == 0
    assert smart_resize(56, 56, min_pixels=200 * 28 * 28) == (420, 420)  # ceil(56 * sqrt(50) / 28) = 15


def test_smart_resize_rejects_extreme_aspect_ratio_and_bad_sizes():
    with pytest.raises(ImageSizeError, match="aspect ratio"):
        smart_resize(10, 2100)
    with pytest.raises(ImageSizeError):
        smart_resize(0, 100)
    with pytest.raises(ImageSizeError, match="min_pixels"):
        smart_resize(100, 100, min_pixels=10_000, max_pixels=100)


@settings(max_examples=300, deadline=None)
@given(
    w=st.integers(min_value=28, max_value=4000),
    h=st.integers(min_value=28, max_value=4000),
    limit=st.sampled_from([QWEN_MAX_PIXELS, 1280 * 28 * 28, 256 * 28 * 28]),
)
def test_resized_size_is_valid(w, h, limit):
    rh, rw = smart_resize(h, w, max_pixels=limit)
    assert rh % 28 == 0 and rw % 28 == 0
    assert rh * rw <= limit
    assert smart_resize(rh, rw, max_pixels=limit) == (rh, rw), "resizing twice must be a no-op"


@settings(max_examples=400, deadline=None)
@given(
    w=st.integers(min_value=100, max_value=4000),
    h=st.integers(min_value=100, max_value=4000),
    fx=st.floats(min_value=0, max_value=1),
    fy=st.floats(min_value=0, max_value=1),
)
def test_device_model_device_round_trip_is_within_one_model_pixel(w, h, fx, fy):
    space = CoordinateSpace.for_screen(Size(w, h), max_pixels=1280 * 28 * 28)
    x, y = int(fx * (w - 1)), int(fy * (h - 1))
    mx, my = space.to_model(x, y)
    dx, dy = space.to_device(mx, my)
    assert 0 <= dx < w and 0 <= dy < h
    # One model pixel spans device/model device pixels; the round trip may move that far plus rounding.
    assert abs(dx - x) <= w / space.model.width + 1
    assert abs(dy - y) <= h / space.model.height + 1


def test_conversion_rounds_and_clamps():
    space = CoordinateSpace(model=Size(1092, 2408), device=Size(1080, 2400))
    assert space.to_device(935, 406) == (925, 405)
    assert space.to_device(1092, 2408) == (1079, 2399)
    assert space.to_device(-5, -5) == (0, 0)


def test_space_refuses_missing_or_bad_sizes():
    with pytest.raises(CoordinateError, match="model size"):
        CoordinateSpace(model=None, device=Size(1, 1))  # type: ignore[arg-type]
    with pytest.raises(CoordinateError, match="device"):
        CoordinateSpace(model=Size(1, 1), device=Size(0, 10))


def test_actions_map_points_but_not_amounts():
    space = CoordinateSpace(model=Size(1000, 1000), device=Size(2000, 500))
    assert space.action_to_device(Click(x=500, y=500)) == Click(x=1000, y=250)
    assert space.action_to_device(Click()) == Click()
    swipe = space.action_to_device(Swipe(x=0, y=0, x2=1000, y2=1000, seconds=0.5))
    assert (swipe.x, swipe.y, swipe.x2, swipe.y2, swipe.seconds) == (0, 0, 1999, 499, 0.5)
    assert space.action_to_device(Drag(x2=100, y2=100)) == Drag(x2=200, y2=50)
    assert space.action_to_device(Scroll(pixels=-500, x=10, y=10)) == Scroll(pixels=-500, x=20, y=5)
    assert space.action_to_device(Scroll(pixels=300)) == Scroll(pixels=300)
    assert space.action_to_device(Wait(seconds=2)) == Wait(seconds=2)
    assert space.action_to_device(Key(keys=("ctrl", "c"))) == Key(keys=("ctrl", "c"))


def test_size_parse():
    assert Size.parse("1080x2400") == Size(1080, 2400)
    assert Size.parse("1280×800") == (1280, 800)
    for bad in ("1080", "axb", "0x10", "-1x5"):
        with pytest.raises(ValueError):
            Size.parse(bad)
