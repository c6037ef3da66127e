"""Fonts for the labels the report draws on screenshots, so typed text such as "Grüße, 世界" reads as written.

Pillow's built-in font covers basic Latin only and draws every other letter as a box. The report therefore uses
the system's TrueType fonts, found through fontconfig (``fc-match``) or at Debian's paths: DejaVu Sans (Debian
package ``fonts-dejavu-core``) for Latin, Greek and Cyrillic, Noto Sans CJK (``fonts-noto-cjk``) for Chinese,
Japanese and Korean. Each character is drawn with the first font that has a glyph for it. Without any TrueType
font the built-in one is used and the report says so (:data:`FONT_HINT`).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from PIL import ImageFont

FONT_PATTERNS = (
    "DejaVu Sans",
    "sans-serif",
    "sans-serif:lang=zh-cn",
    "sans-serif:lang=ja",
    "sans-serif:lang=ko",
)
"""fontconfig patterns asked for, in order of preference."""

FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
)
"""Known places of the fonts, used as well when ``fc-match`` is missing."""

FONT_HINT = (
    "no TrueType font was found, so labels on screenshots use Pillow's built-in font, which draws letters "
    "outside basic Latin as boxes; on Debian or Ubuntu: apt-get install fonts-dejavu-core fonts-noto-cjk"
)

_MISSING = "\U0010fffd"  # a private-use code point no font covers: its mask is the font's "missing" box
_TRUETYPE = (".ttf", ".ttc", ".otf", ".otc")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _fc_match(pattern: str) -> str | None:
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return None
    try:
        done = subprocess.run(
            [fc_match, "--format=%{file}", pattern], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


@functools.cache
def font_files() -> tuple[str, ...]:
    """The TrueType files to draw labels with, most preferred first; empty when the system has none."""
    found = [_fc_match(p) for p in FONT_PATTERNS] + list(FONT_PATHS)
    files: list[str] = []
    for name in found:
        if name and name.lower().endswith(_TRUETYPE) and Path(name).is_file() and name not in files:
            files.append(name)
    return tuple(files)


@functools.cache
def _truetype(path: str, size: int) -> ImageFont.FreeTypeFont | None:
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        return None


@functools.cache
def _covers(path: str, char: str) -> bool:
    font = _truetype(path, 24)
    if font is None:
        return False
    mask, missing = font.getmask(char), font.getmask(_MISSING)
    return mask.size != missing.size or bytes(mask) != bytes(missing)


def _builtin(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def font_runs(text: str, size: int) -> list[tuple[Font, str]]:
    """``text`` cut into runs that one font draws each: every character goes to the first font with a glyph for
    it (the first font when none has one, which draws its box)."""
    paths = [p for p in font_files() if _truetype(p, size) is not None]
    if not paths:
        return [(_builtin(size), text)] if text else []
    runs: list[tuple[str, str]] = []
    for char in text:
        path = next((p for p in paths if _covers(p, char)), paths[0])
        if runs and runs[-1][0] == path:
            runs[-1] = (path, runs[-1][1] + char)
        else:
            runs.append((path, char))
    return [(font, part) for path, part in runs if (font := _truetype(path, size)) is not None]


__all__ = ["FONT_HINT", "FONT_PATHS", "FONT_PATTERNS", "font_files", "font_runs"]
