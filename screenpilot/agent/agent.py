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
from screenpilot.model.base import Message, ModelBackend, ModelBackendError, TextPart, Usage
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

    @property
    def ok(self) -> bool:
        return bool(self.actions)

    @property
    def output(self) -> str:
        """The last raw model output."""
        return self.attempts[-1].output if self.attempts else ""

    @property
    def model_s(self) -> float:
        return sum(a.model_s for a in self.attempts)

    @property
    def parse_s(self) -> float:
        return sum(a.parse_s for a in self.attempts)


@dataclass
class Agent:
    """A model plus the dialect it speaks.

    ``max_retries`` is how many times an unusable answer is sent back to the model with its error before
    the decision gives up.
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
    ) -> Decision:
        space = self.dialect.coordinate_space(observation.size)
        messages = self.dialect.messages(goal, observation.screenshot, space, history, feedback)
        attempts: list[Attempt] = []
        for attempt in range(self.max_retries + 1):
            t0 = time.perf_counter()
            try:
                completion = self.model.complete(messages)
            except ModelBackendError as exc:  # keep what the model already answered in this step
                return Decision(space, (), tuple(attempts), error=str(exc), backend_error=str(exc))
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
