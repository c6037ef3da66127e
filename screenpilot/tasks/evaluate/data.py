"""Reading evaluation examples: boxes, images and text fields checked before the model is asked anything,
and where an action lands.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from screenpilot.actions.coords import Size, action_points
from screenpilot.actions.types import Action
from screenpilot.errors import SetupError
from screenpilot.jsonl import read_prepared

Box = tuple[float, float, float, float]


T = TypeVar("T")


def read_box(value: Any, where: str, box_format: str = "xyxy") -> Box:
    shape = "[x1, y1, x2, y2]" if box_format == "xyxy" else "[x, y, width, height]"
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise SetupError(f"{where}: bbox must be {shape} in image pixels, got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    if box_format == "xywh":
        x2, y2 = x1 + x2, y1 + y2
    if x2 < x1 or y2 < y1:
        raise SetupError(f"{where}: bbox {value!r} has x2 < x1 or y2 < y1")
    return x1, y1, x2, y2


def image_size(base: Path, value: Any, where: str) -> tuple[Path, Size]:
    """The image's path and size, read from its header only (the pixels are loaded when the line is asked)."""
    if not isinstance(value, str) or not value:
        raise SetupError(f"{where}: expected an image path")
    path = base / value
    try:
        with Image.open(path) as img:
            return path, Size(*img.size)
    except (OSError, Image.DecompressionBombError) as exc:
        raise SetupError(f"{where}: cannot open image {path}: {exc}") from exc


def load_image(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def text_field(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SetupError(f"{where}: {key!r} must be a non-empty string")
    return value


def read_cases(
    path: Path, prepare: Callable[[dict[str, Any], str], T], limit: int | None
) -> list[tuple[int, T]]:
    """``(line, case)`` for every line, all checked before the model is asked anything: every bad line is
    reported in one error."""
    cases = read_prepared(path, prepare, limit=limit)
    if not cases:
        raise SetupError(f"{path} has no data lines")
    return cases


def inside(box: Box, x: float, y: float) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def action_point(action: Action) -> tuple[int, int] | None:
    """Where an action lands, for grounding: the point of a click/press/move, the start of a swipe/drag, the
    end of a drag from the pointer (the only point the model named). See
    :func:`~screenpilot.actions.coords.action_points`."""
    return action_points(action).first
