"""The agent decides; it never touches the device.

``decide`` builds the dialect's prompt, asks the model, parses the answer, and when the answer is unusable
sends the error back to the model, a bounded number of times.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from screenpilot.actions.coords import CoordinateSpace
from screenpilot.envs.base import Observation
from screenpilot.errors import ModelOutputError
from screenpilot.model.base import (
    Completion,
    DeadlineExceeded,
    Message,
    ModelBackend,
    ModelBackendError,
    TextPart,
    Usage,
)
from screenpilot.model.dialect import Dialect, ParsedAction, PastStep


@dataclass(frozen=True)
class Attempt:
    """One model call within a decision."""

    output: str
    usage: Usage
    model_s: float
    parse_s: float
    error: str | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome of one ``decide`` call: actions to take, or the reason there are none."""

    space: CoordinateSpace
    actions: tuple[ParsedAction, ...]
    attempts: tuple[Attempt, ...]
    summary: str | None = None
    error: str | None = None
    backend_error: str | None = None
    """Set when the model backend failed (server down, replay exhausted): the episode cannot go on."""
    failed_call_s: float = 0.0
    """Time spent in a model call that ended without an answer (its retries included)."""

    @property
    def ok(self) -> bool:
        return bool(self.actions)

    @property
    def output(self) -> str:
        """The last raw model output."""
        return self.attempts[-1].output if self.attempts else ""

    @property
    def model_s(self) -> float:
        """Time in model calls, a call that failed after retries included."""
        return sum(a.model_s for a in self.attempts) + self.failed_call_s

    @property
    def parse_s(self) -> float:
        return sum(a.parse_s for a in self.attempts)


@dataclass
class Agent:
    """A model plus the dialect it speaks.

    ``max_retries`` is how many times an unusable answer is sent back to the model with its error before
    the decision gives up. A ``deadline`` (``time.monotonic()``) bounds every model call of a decision; when
    it comes first the decision has no actions and an error, but no ``backend_error``: the time budget ended
    it, not the backend.
    """

    model: ModelBackend
    dialect: Dialect
    max_retries: int = 2
    _prompts: list[list[Message]] = field(default_factory=list, repr=False)

    def decide(
        self,
        goal: str,
        observation: Observation,
        history: Sequence[PastStep],
        *,
        feedback: str | None = None,
        deadline: float | None = None,
    ) -> Decision:
        space = self.dialect.coordinate_space(observation.size)
        messages = self.dialect.messages(goal, observation.screenshot, space, history, feedback)
        attempts: list[Attempt] = []
        for attempt in range(self.max_retries + 1):
            t0 = time.perf_counter()
            try:
                completion = self._ask(messages, deadline)
            except DeadlineExceeded as exc:  # keep what the model already answered in this step
                return Decision(
                    space, (), tuple(attempts), error=str(exc), failed_call_s=time.perf_counter() - t0
                )
            except ModelBackendError as exc:
                failed_s = time.perf_counter() - t0
                return Decision(
                    space, (), tuple(attempts), error=str(exc), backend_error=str(exc), failed_call_s=failed_s
                )
            t1 = time.perf_counter()
            try:
                actions = self.dialect.parse(completion.text, space)
            except ModelOutputError as exc:
                error = str(exc)
                t2 = time.perf_counter()
                attempts.append(Attempt(completion.text, completion.usage, t1 - t0, t2 - t1, error))
                if attempt == self.max_retries:
                    return Decision(space, (), tuple(attempts), error=error)
                messages = [
                    *messages,
                    Message.text("assistant", completion.text),
                    Message("user", (TextPart(f"Your answer could not be used: {error} Answer again."),)),
                ]
                continue
            t2 = time.perf_counter()
            attempts.append(Attempt(completion.text, completion.usage, t1 - t0, t2 - t1))
            return Decision(
                space, tuple(actions), tuple(attempts), summary=self.dialect.summary(completion.text)
            )
        raise AssertionError("unreachable")

    def _ask(self, messages: list[Message], deadline: float | None) -> Completion:
        if deadline is None:  # backends written before deadlines existed keep working without one
            return self.model.complete(messages)
        if time.monotonic() >= deadline:
            raise DeadlineExceeded("the time budget ran out before the model could be asked")
        return self.model.complete(messages, deadline=deadline)
