"""A dialect is how one model family is prompted and what its answers mean.

It owns three things that must agree with each other: the image size the model is shown (and so the
coordinate space), the prompt text, and the parser of the model's answers. Swapping a dialect (Qwen2-VL's
0-1000 boxes, Qwen3-VL's relative coordinates) never touches the agent loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from PIL import Image

from screenpilot.actions.coords import CoordinateSpace, Size
from screenpilot.actions.types import Action
from screenpilot.model.base import Message

Platform = Literal["mobile", "desktop"]


@dataclass(frozen=True)
class ParsedAction:
    """One action from the model's answer, in both frames, plus the call text used for history."""

    model: Action
    device: Action
    call: str


@dataclass(frozen=True)
class PastStep:
    """What the prompt needs to know about an earlier step."""

    call: str | None
    """The call as the model wrote it (JSON), or None when the step produced no action."""
    summary: str | None = None
    """The model's own summary of the step (``<conclusion>``), when it gave one."""
    screenshot: Image.Image | None = None
    """The screenshot the step acted on, in device pixels (kept only when images are kept in history)."""


class Dialect(Protocol):
    name: str
    platform: Platform

    def coordinate_space(self, screen: Size) -> CoordinateSpace:
        """The space between this screen and the image this model is shown."""
        ...

    def system_prompt(self, space: CoordinateSpace) -> str: ...

    def messages(
        self,
        goal: str,
        screenshot: Image.Image,
        space: CoordinateSpace,
        history: Sequence[PastStep],
        feedback: str | None = None,
    ) -> list[Message]:
        """The whole prompt for one decision. ``screenshot`` is in device pixels."""
        ...

    def parse(self, text: str, space: CoordinateSpace) -> list[ParsedAction]:
        """Actions in ``text``; raises :class:`~screenpilot.errors.ModelOutputError` with model-readable text."""
        ...

    def summary(self, text: str) -> str | None:
        """The step summary the model wrote, if the dialect asks for one."""
        ...

    def describe(self) -> dict[str, object]: ...
