"""Screenshot decoding and screen geometry parsing."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageDraw

from screenpilot.actions.coords import Size
from screenpilot.envs.android.fake_server import default_screen, encode_raw_screencap
from screenpilot.envs.android.screen import (
    Display,
    ScreenDecodeError,
    decode_png,
    decode_raw,
    looks_dark,
    parse_rotation,
    parse_screen_awake,
    parse_wm_size,
)


@pytest.mark.parametrize("header", [16, 12])
@pytest.mark.parametrize("pixel_format", [1, 2, 3, 5])
def test_raw_screencap_decodes_exactly(pixel_format: int, header: int) -> None:
    image = default_screen((90, 160))
    decoded = decode_raw(encode_raw_screencap(image, pixel_format, header))
    assert decoded.size == (90, 160)
    assert ImageChops.difference(decoded, image).getbbox() is None


def test_rgb565_decodes_within_its_precision() -> None:
    image = default_screen((40, 80))
    decoded = decode_raw(encode_raw_screencap(image, 4))
    worst = max(high for _, high in ImageChops.difference(decoded, image).getextrema())
    assert worst <= 7


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 40,
        encode_raw_screencap(default_screen((10, 10)))[:-5],
        b"\x0a\x00\x00\x00" * 2 + b"\x09" * 8,
    ],
)
def test_raw_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(ScreenDecodeError):
        decode_raw(data)


def test_png_decodes_and_old_crlf_output_is_repaired() -> None:
    buffer = io.BytesIO()
    default_screen((30, 50)).save(buffer, "PNG")
    png = buffer.getvalue()
    assert decode_png(png).size == (30, 50)
    assert decode_png(png.replace(b"\n", b"\r\n")).size == (30, 50)
    with pytest.raises(ScreenDecodeError, match="did not return a PNG"):
        decode_png(b"error: no display\n")
    with pytest.raises(ScreenDecodeError):
        decode_png(png[:40])


def test_wm_size_and_rotation_parsing() -> None:
    assert parse_wm_size("Physical size: 1080x2400\n") == (Size(1080, 2400), None)
    assert parse_wm_size("Physical size: 1440x3120\nOverride size: 1080x2340\n") == (
        Size(1440, 3120),
        Size(1080, 2340),
    )
    with pytest.raises(ScreenDecodeError):
        parse_wm_size("Error: no display")
    assert parse_rotation("      SurfaceOrientation: 1\n") == 1
    assert parse_rotation("Viewport INTERNAL: displayId=0, orientation=3, logicalFrame=[0, 0, 10, 10]") == 3
    assert parse_rotation("    mRotation=2 mCurrentRotation=ROTATION_180") == 2
    assert parse_rotation("nothing here") is None


def test_display_turns_with_rotation() -> None:
    display = Display(Size(1080, 2400), Size(720, 1600), rotation=1)
    assert display.size == Size(1600, 720)
    assert display.orientation == "landscape"
    assert display.with_rotation(2).size == Size(720, 1600)
    assert isinstance(Image.new("RGB", display.size), Image.Image)


@pytest.mark.parametrize(
    ("text", "awake"),
    [
        ("Power Manager State:\n  mWakefulness=Awake\n  mWakefulnessChanging=false\n", True),
        ("  mWakefulness=Asleep\n", False),
        ("  mWakefulness=Dozing\n", False),
        ("  mWakefulness=Dreaming\n", False),
        ("POWER MANAGER (dumpsys power)\n  Display Power: state=OFF\n", False),  # Android 4
        ("  Display Power: state=ON\n", True),
        ("Can't find service: power\n", None),
    ],
)
def test_screen_power_parsing(text: str, awake: bool | None) -> None:
    assert parse_screen_awake(text) is awake


def test_frames_of_a_screen_that_is_off_look_dark() -> None:
    assert looks_dark(Image.new("RGB", (1080, 2400)))
    clock = Image.new("RGB", (1080, 2400))
    ImageDraw.Draw(clock).rectangle((400, 800, 680, 950), fill=(200, 200, 200))  # an always-on display
    assert looks_dark(clock)
    assert not looks_dark(default_screen())
    assert not looks_dark(default_screen((2560, 1600)))
    assert not looks_dark(Image.new("RGB", (720, 1600), (90, 90, 90)))  # dim but lit
