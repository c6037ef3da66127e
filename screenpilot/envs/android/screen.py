"""Screenshots and screen geometry from the device's own tools.

``screencap`` without ``-p`` writes a small header and the raw pixels, skipping the on-device PNG encode
(the slow part on phones). Both forms are decoded here, and anything that does not decode raises: a
failed capture must never pass for a black screen.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from typing import Literal

from PIL import Image, UnidentifiedImageError

from screenpilot.actions.coords import Size

#: screencap pixel formats (android::PixelFormat): bytes per pixel and PIL raw mode into RGB.
RAW_FORMATS: dict[int, tuple[int, str]] = {
    1: (4, "RGBX"),  # RGBA_8888 (alpha is opaque on a screen)
    2: (4, "RGBX"),  # RGBX_8888
    3: (3, "RGB"),  # RGB_888
    4: (2, "BGR;16"),  # RGB_565, little-endian
    5: (4, "BGRX"),  # BGRA_8888
}


class ScreenDecodeError(ValueError):
    """The bytes are not a screenshot we can read."""


def decode_raw(data: bytes) -> Image.Image:
    """Decode raw ``screencap`` output: a 16-byte header (width, height, format, colour space) on recent
    Android, 12 bytes (no colour space) on older versions, then the pixels."""
    if len(data) < 12:
        raise ScreenDecodeError(f"raw screencap output is only {len(data)} bytes")
    width, height, pixel_format = struct.unpack_from("<III", data)
    if pixel_format not in RAW_FORMATS:
        raise ScreenDecodeError(f"raw screencap has an unknown pixel format {pixel_format}")
    bpp, mode = RAW_FORMATS[pixel_format]
    if not (0 < width <= 16384 and 0 < height <= 16384):
        raise ScreenDecodeError(f"raw screencap reports an impossible size {width}x{height}")
    pixels = width * height * bpp
    header = len(data) - pixels
    if header not in (12, 16):
        raise ScreenDecodeError(
            f"raw screencap of {width}x{height} format {pixel_format} should hold {pixels} pixel bytes "
            f"after its header, got {len(data) - 12}"
        )
    return Image.frombytes("RGB", (width, height), memoryview(data)[header:], "raw", mode)


def decode_png(data: bytes) -> Image.Image:
    """Decode ``screencap -p`` output."""
    if data.startswith(b"\x89PNG\r\r\n"):
        # Android before 7 turned "\n" into "\r\n" on the way out of a shell with a pty.
        data = data.replace(b"\r\n", b"\n")
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        head = data[:60].decode("utf-8", errors="replace").strip()
        raise ScreenDecodeError(f"screencap -p did not return a PNG: {head!r}")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ScreenDecodeError(f"screencap -p returned a broken PNG: {exc}") from exc
    return image.convert("RGB")


Orientation = Literal["portrait", "landscape"]


@dataclass(frozen=True)
class Display:
    """The screen as ``input`` sees it: natural size (override included) turned by the rotation."""

    physical: Size
    override: Size | None = None
    rotation: int = 0
    """Quarter turns from the natural orientation, 0-3."""

    @property
    def natural(self) -> Size:
        return self.override or self.physical

    @property
    def size(self) -> Size:
        """Size in the coordinates ``input tap`` takes."""
        width, height = self.natural
        return Size(height, width) if self.rotation % 2 else Size(width, height)

    @property
    def orientation(self) -> Orientation:
        return "landscape" if self.size.width > self.size.height else "portrait"

    def with_rotation(self, rotation: int) -> Display:
        return Display(self.physical, self.override, rotation % 4)

    def info(self) -> dict[str, object]:
        return {
            "rotation": self.rotation,
            "orientation": self.orientation,
            "physical_size": str(self.physical),
            "override_size": str(self.override) if self.override else None,
            "screen_size": str(self.size),
        }


def parse_wm_size(text: str) -> tuple[Size, Size | None]:
    """Physical and override size from ``wm size``."""
    physical = re.search(r"Physical size:\s*(\d+)x(\d+)", text)
    if physical is None:
        raise ScreenDecodeError(f"`wm size` printed no physical size: {text.strip()[:200]!r}")
    override = re.search(r"Override size:\s*(\d+)x(\d+)", text)
    return (
        Size(int(physical[1]), int(physical[2])),
        Size(int(override[1]), int(override[2])) if override else None,
    )


def parse_rotation(text: str) -> int | None:
    """Rotation (0-3) from ``dumpsys input`` or ``dumpsys window displays``, or None if not found."""
    for pattern in (
        r"SurfaceOrientation:\s*(\d)",
        r"Viewport INTERNAL:[^\n]*?orientation=(\d)",
        r"mCurrentRotation=(?:ROTATION_)?(\d+)",
        r"mRotation=(\d)",
    ):
        found = re.search(pattern, text)
        if found:
            value = int(found[1])
            return value // 90 % 4 if value >= 90 or pattern.startswith("mCurrent") else value % 4
    return None


def looks_dark(image: Image.Image, *, lit_share: float = 0.03) -> bool:
    """Whether a frame is what a screen that is off shows: black, or an always-on display's clock on black
    (fewer than ``lit_share`` of a sample grid of pixels brighter than dim). About 0.1 ms for a phone frame;
    a dark-themed app may pass too, and then only costs a ``dumpsys power``."""
    sample = image.resize((54, 120), Image.Resampling.NEAREST).convert("L")
    lit = sample.point(lambda v: 255 if v > 48 else 0).histogram()[255]
    return lit < lit_share * sample.width * sample.height


_WAKEFULNESS = re.compile(r"mWakefulness=(\w+)")
_DISPLAY_POWER = re.compile(r"Display Power: state=(\w+)")


def parse_screen_awake(text: str) -> bool | None:
    """Whether ``dumpsys power`` says the screen is on (``mWakefulness=Awake``; ``Asleep``, ``Dozing`` and
    ``Dreaming`` are off for the agent), else its older ``Display Power: state=ON``; None when neither shows."""
    found = _WAKEFULNESS.search(text)
    if found is not None:
        return found.group(1) == "Awake"
    found = _DISPLAY_POWER.search(text)
    return None if found is None else found.group(1) == "ON"
