"""Coordinate frames: the model's resized image and the device screen.

A point crosses between them in exactly one place, :class:`CoordinateSpace`, built from both sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, assert_never

from screenpilot.actions.types import (
    Action,
    Answer,
    Click,
    Drag,
    Key,
    LongPress,
    MouseMove,
    OpenApp,
    Scroll,
    Swipe,
    SystemButton,
    Terminate,
    TypeText,
    Wait,
)
from screenpilot.errors import ScreenpilotError


class Size(NamedTuple):
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"

    @classmethod
    def parse(cls, text: str) -> Size:
        """Parse ``"1080x2400"`` (also ``×`` or ``X``)."""
        parts = text.lower().replace("×", "x").split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"expected a size like 1080x2400, got {text!r}")
        width, height = (int(p) for p in parts)
        if width <= 0 or height <= 0:
            raise ValueError(f"size must be positive, got {text!r}")
        return cls(width, height)


class Point(NamedTuple):
    """A point in device pixels (what scripts pass to ``tap`` and what ``locate`` returns)."""

    x: int
    y: int


class ImageSizeError(ScreenpilotError, ValueError):
    """The image cannot be resized for the model (degenerate or extreme aspect ratio)."""


# Qwen2.5-VL processor defaults: patch 14 x merge 2.
QWEN_FACTOR = 28
QWEN_MIN_PIXELS = 4 * 28 * 28
QWEN_MAX_PIXELS = 16384 * 28 * 28
QWEN_MAX_RATIO = 200


def smart_resize(
    height: int,
    width: int,
    factor: int = QWEN_FACTOR,
    min_pixels: int = QWEN_MIN_PIXELS,
    max_pixels: int = QWEN_MAX_PIXELS,
) -> tuple[int, int]:
    """Return the ``(height, width)`` the Qwen2-VL family's processor resizes an image to.

    Both sides become multiples of ``factor`` with the area kept within ``[min_pixels, max_pixels]``.
    Python's ``round`` (half to even) is deliberate: it is what the processor uses.
    """
    if height <= 0 or width <= 0:
        raise ImageSizeError(f"image size must be positive, got {width}x{height}")
    if min_pixels > max_pixels:
        raise ImageSizeError(f"min_pixels ({min_pixels}) is larger than max_pixels ({max_pixels})")
    if max(height, width) / min(height, width) > QWEN_MAX_RATIO:
        raise ImageSizeError(
            f"absolute aspect ratio must be smaller than {QWEN_MAX_RATIO}, "
            f"got {max(height, width) / min(height, width)} for {width}x{height}"
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def patch_tokens(image: Size, factor: int) -> int:
    """How many merged patches (image tokens) a Qwen-family vision tower makes of an ``image`` whose sides are
    multiples of ``factor`` (patch size times the merge size: 28 for Qwen2.5-VL, 32 for Qwen3-VL)."""
    return (image.width // factor) * (image.height // factor)


class CoordinateError(ScreenpilotError, ValueError):
    """A point is unusable in its frame (missing, or outside the image the model was shown)."""


@dataclass(frozen=True)
class CoordinateSpace:
    """Converts points between the model's image frame and the device's screen frame.

    ``model`` is the size of the image the model saw (what the prompt states); ``device`` is the size of the
    screen actions are executed on. Conversion rounds to the nearest pixel and clamps to the target frame.
    """

    model: Size
    device: Size

    def __post_init__(self) -> None:
        for name in ("model", "device"):
            value = getattr(self, name)
            if value is None:
                raise CoordinateError(f"a coordinate space needs the {name} size")
            if not isinstance(value, tuple) or len(value) != 2:
                raise CoordinateError(f"{name} size must be (width, height), got {value!r}")
            if value[0] <= 0 or value[1] <= 0:
                raise CoordinateError(f"{name} size must be positive, got {value[0]}x{value[1]}")
            object.__setattr__(self, name, Size(int(value[0]), int(value[1])))

    @classmethod
    def for_screen(
        cls,
        device: Size,
        *,
        min_pixels: int = QWEN_MIN_PIXELS,
        max_pixels: int = QWEN_MAX_PIXELS,
        factor: int = QWEN_FACTOR,
    ) -> CoordinateSpace:
        """The space for a device screen shown to the model after smart_resize with these limits."""
        h, w = smart_resize(device.height, device.width, factor, min_pixels, max_pixels)
        return cls(model=Size(w, h), device=Size(*device))

    # -- points -----------------------------------------------------------------------------------------------
    @staticmethod
    def _convert(x: float, y: float, src: Size, dst: Size) -> tuple[int, int]:
        dx = round(x * dst.width / src.width)
        dy = round(y * dst.height / src.height)
        return min(max(dx, 0), dst.width - 1), min(max(dy, 0), dst.height - 1)

    def to_device(self, x: float, y: float) -> tuple[int, int]:
        """A model-frame point (fractions allowed, as the model wrote it) as a device pixel."""
        return self._convert(x, y, self.model, self.device)

    def to_model(self, x: float, y: float) -> tuple[int, int]:
        """A device-frame point as a pixel of the model's image."""
        return self._convert(x, y, self.device, self.model)

    def model_pixel(self, x: float, y: float) -> tuple[int, int]:
        """A model-frame point as a pixel of the model's image: rounded to the nearest and clamped.

        Points the model writes with fractions go through here or :meth:`to_device`, each straight from the
        written value, so no point is ever rounded twice.
        """
        return min(max(round(x), 0), self.model.width - 1), min(max(round(y), 0), self.model.height - 1)

    def contains_model_point(self, x: float, y: float) -> bool:
        """Whether a model-frame point lies on the image (edges included, one pixel of tolerance)."""
        return -1 <= x <= self.model.width and -1 <= y <= self.model.height

    # -- actions ----------------------------------------------------------------------------------------------
    def action_to_device(self, action: Action) -> Action:
        return _map_action(action, self.to_device)

    def action_to_model(self, action: Action) -> Action:
        return _map_action(action, self.to_model)


class ActionPoints(NamedTuple):
    """Where an action acts on the screen, in the frame of its coordinates.

    ``start`` is where it presses, moves to or begins its gesture; None when it acts wherever the pointer
    already is (a click or scroll with no point, a drag with no start) or has no point at all. ``end`` is where
    a swipe or drag ends; None for every other action.
    """

    start: Point | None
    end: Point | None

    @property
    def first(self) -> Point | None:
        """The first point the action names: ``start``, or for a drag from the pointer its ``end``."""
        return self.start if self.start is not None else self.end


def action_points(action: Action) -> ActionPoints:
    """Where ``action`` lands (:class:`ActionPoints`).

    A drag with no start point begins at the pointer, wherever that is, so its ``start`` is None rather than
    a guess: a caller that moves or anchors the action's start (a recording replayed) must not invent one.
    A caller that asks where the model pointed (a grounding score) takes :attr:`ActionPoints.first`, which is
    that drag's end.
    """
    match action:
        case Click() | LongPress() | MouseMove() | Scroll():
            return ActionPoints(_point(action.x, action.y), None)
        case Swipe() | Drag():
            return ActionPoints(_point(action.x, action.y), Point(action.x2, action.y2))
        case TypeText() | Key() | SystemButton() | OpenApp() | Wait() | Answer() | Terminate():
            return ActionPoints(None, None)
        case _:
            assert_never(action)


def _point(x: int | None, y: int | None) -> Point | None:
    return None if x is None or y is None else Point(x, y)


def _map_action(action: Action, convert: Callable[[float, float], tuple[int, int]]) -> Action:
    """Map every point of an action through ``convert``; amounts (scroll pixels, times) are left alone."""
    start, end = action_points(action)
    update: dict[str, int] = {}
    if start is not None:
        update["x"], update["y"] = convert(*start)
    if end is not None:
        update["x2"], update["y2"] = convert(*end)
    return action.model_copy(update=update) if update else action
