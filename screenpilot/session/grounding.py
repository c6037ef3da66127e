"""Asking the model where one named thing is, or a question about the screen, in the dialect's native format.

The dialect's :class:`~screenpilot.model.dialect.SupportsGrounding` prompts are used, so the model a script
talks to is shown exactly what the agent loop shows it. An unusable answer goes back to the model with its
error, as in the agent, a bounded number of times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from screenpilot.actions.coords import CoordinateSpace, Point, Size, action_points
from screenpilot.actions.types import Action, Answer, Terminate
from screenpilot.agent.agent import Attempt
from screenpilot.errors import ModelOutputError, SetupError
from screenpilot.model.base import Message, ModelBackend, TextPart
from screenpilot.model.dialect import Dialect, ParsedAction, SupportsGrounding


@dataclass(frozen=True)
class Grounded:
    """What the model said: a ``point`` (grounding) or an ``answer`` (question), else ``reason`` says why not."""

    space: CoordinateSpace
    calls: tuple[Attempt, ...]
    point: Point | None = None
    answer: str | None = None
    reason: str | None = None

    @property
    def model_s(self) -> float:
        return sum(c.model_s for c in self.calls)


# What one usable answer means: (point, answer, reason-when-neither).
_Reading = tuple[Point | None, str | None, str | None]


class Grounder:
    """Grounds targets and answers questions with ``model``. ``dialect`` is the agent's; ``asker`` is the same
    dialect built with the ``answer`` action allowed, to read answers to questions."""

    def __init__(
        self, model: ModelBackend, dialect: Dialect, asker: Dialect, *, max_retries: int = 2
    ) -> None:
        self.model = model
        self.dialect = dialect
        self.asker = asker
        self.max_retries = max_retries
        self.calls = 0
        """Model calls made so far."""

    def _prompts(self, dialect: Dialect) -> SupportsGrounding:
        if not isinstance(dialect, SupportsGrounding):
            raise SetupError(f"the {dialect.name} dialect cannot ground targets or answer questions")
        return dialect

    def locate(self, target: str, screenshot: Image.Image) -> Grounded:
        """Where the model says ``target`` is, in device pixels (``point``), or why it is not found."""
        space = self.dialect.coordinate_space(_size(screenshot))
        messages = self._prompts(self.dialect).grounding_messages(target, screenshot, space)
        return self._ask(messages, space, self.dialect, _point_of)

    def ask(self, question: str, screenshot: Image.Image) -> Grounded:
        """The model's answer to ``question`` about ``screenshot`` (``answer``), or why there is none."""
        space = self.asker.coordinate_space(_size(screenshot))
        messages = self._prompts(self.asker).question_messages(question, screenshot, space)
        return self._ask(messages, space, self.asker, _answer_of)

    def _ask(
        self,
        messages: list[Message],
        space: CoordinateSpace,
        dialect: Dialect,
        read: Callable[[list[ParsedAction]], _Reading],
    ) -> Grounded:
        calls: list[Attempt] = []
        error = "no answer"
        for _ in range(self.max_retries + 1):
            t0 = time.perf_counter()
            self.calls += 1
            completion = self.model.complete(messages)
            model_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            try:
                point, answer, reason = read(dialect.parse(completion.text, space))
            except ModelOutputError as exc:
                error = str(exc)
                parse_s = time.perf_counter() - t0
                calls.append(Attempt(completion.text, completion.usage, model_s, parse_s, error))
                messages = [
                    *messages,
                    Message.text("assistant", completion.text),
                    Message("user", (TextPart(f"Your answer could not be used: {error} Answer again."),)),
                ]
                continue
            calls.append(Attempt(completion.text, completion.usage, model_s, time.perf_counter() - t0))
            return Grounded(space, tuple(calls), point, answer, reason)
        return Grounded(space, tuple(calls), reason=f"no usable answer: {error}")


def _size(screenshot: Image.Image) -> Size:
    return Size(*screenshot.size)


def _point_of(actions: list[ParsedAction]) -> _Reading:
    """The first point the model gave; a ``terminate`` or an answer means it did not find the target."""
    for parsed in actions:
        action = parsed.device
        if isinstance(action, Terminate):
            return None, None, "the model says it is not on the screen"
        if isinstance(action, Answer):
            return None, None, f"the model answered instead of pointing: {action.text[:200]!r}"
        point = action_point(action)
        if point is not None:
            return point, None, None
    calls = "; ".join(p.call for p in actions)
    return None, None, f"the model gave no point: {calls[:300]}"


def _answer_of(actions: list[ParsedAction]) -> _Reading:
    """The text of the first ``answer`` action."""
    for parsed in actions:
        if isinstance(parsed.device, Answer):
            return None, parsed.device.text, None
    calls = "; ".join(p.call for p in actions)
    return None, None, f"the model did not answer: {calls[:300]}"


def action_point(action: Action) -> Point | None:
    """The device point an action acts at (a gesture's start), or None for one without a point or acting at
    the pointer (a drag with no start: moving or anchoring it must not invent one). See
    :func:`~screenpilot.actions.coords.action_points`."""
    return action_points(action).start
