"""A dialect is how one model family is prompted and what its answers mean.

It owns three things that must agree with each other: the image size the model is shown (and so the
coordinate space), the prompt text, and the parser of the model's answers. Swapping a dialect (Qwen2-VL's
0-1000 boxes, Qwen3-VL's relative coordinates) never touches the agent loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from PIL import Image

from screenpilot.actions.coords import CoordinateSpace, Size
from screenpilot.actions.types import Action
from screenpilot.errors import ScreenpilotError
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


@runtime_checkable
class SupportsGrounding(Protocol):
    """A dialect that can ask its model, in the model's own native format, where one named thing is on the
    screen, and to answer a question about the screen. Scripts (``Session.locate``, ``ask``, ``expect``) use it,
    so one model serves both the agent loop and the script."""

    def grounding_messages(
        self, target: str, screenshot: Image.Image, space: CoordinateSpace
    ) -> list[Message]:
        """A prompt asking for exactly one action on ``target`` (a click on it). ``screenshot`` is in device
        pixels; the answer is read with :meth:`Dialect.parse`."""
        ...

    def question_messages(
        self, question: str, screenshot: Image.Image, space: CoordinateSpace
    ) -> list[Message]:
        """A prompt asking the model to answer ``question`` about the screen through its ``answer`` action
        (read with :meth:`Dialect.parse`)."""
        ...


class NoCallForm(ScreenpilotError, ValueError):
    """The dialect's model has no way to write this action (a phone tool has no right click, say)."""


@runtime_checkable
class SupportsCallText(Protocol):
    """A dialect that can write an action the way its model writes it: the inverse of :meth:`Dialect.parse`.

    The dialect conformance checks (:mod:`screenpilot.model.conformance`) use it to write points in the
    dialect's own form, and history for step evaluation can be rendered from recorded actions with it."""

    def action_names(self) -> frozenset[str]:
        """Every action name this dialect's model may write (its tool's action list, or its action space)."""
        ...

    def call_text(self, action: Action, space: CoordinateSpace) -> str:
        """``action`` (device pixels) as this model writes it in an answer: text that :meth:`Dialect.parse`
        reads back, points written in the model's own convention and rounded as the model writes them.
        Fields the model's form fixes (a wait's length, a scroll's amount) take the form's value. Raises
        :class:`NoCallForm` when the model cannot write the action at all."""
        ...


@runtime_checkable
class SupportsInstructionGrounding(Protocol):
    """A dialect whose grounding benchmarks (ScreenSpot and kin) are asked with the agent's own prompt and the
    benchmark's instruction alone as the user's text, as the model family's own evaluations do. Dialects without
    it are evaluated through :meth:`SupportsGrounding.grounding_messages`."""

    def instruction_messages(
        self, instruction: str, screenshot: Image.Image, space: CoordinateSpace
    ) -> list[Message]:
        """The system prompt at ``space`` and one user turn: ``instruction``, then the screenshot."""
        ...


@runtime_checkable
class SupportsImageTokens(Protocol):
    """A dialect that knows how many image tokens its model's processor makes of the screenshot it sends, so a
    server that resized the image again (narrower pixel limits, its own preprocessing) can be caught by its
    token count. ``min_pixels`` and ``max_pixels`` are the limits the server must be given."""

    min_pixels: int
    max_pixels: int

    def image_tokens(self, screen: Size) -> int:
        """How many ``<|image_pad|>`` tokens a screenshot of ``screen`` becomes (after this dialect's resize).
        For an image already at the size the dialect sends, that is its own count: the resize is a no-op."""
        ...
