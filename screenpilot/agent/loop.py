"""The observe -> decide -> act loop, as a generator of typed steps.

``run_episode`` returns an :class:`Episode`; iterating it runs the episode one step at a time, and its
``result`` is set once iteration ends. Recording, progress display and the like consume the steps; limits,
policies and settle-waiting are passed in, not baked into a class.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from screenpilot.actions.types import Action, Answer, Terminate, action_to_dict
from screenpilot.agent.agent import Agent, Decision
from screenpilot.agent.policy import ApproveAll, Policy
from screenpilot.envs.base import Environment, Observation
from screenpilot.envs.settle import SettleResult, screen_digest
from screenpilot.errors import DeviceError, ModelOutputError, ScreenpilotError
from screenpilot.model.base import Usage
from screenpilot.model.dialect import ParsedAction, PastStep

#: Why an episode ended. ``terminated``: the agent said it was done; ``task_ended``: the environment's own task
#: ended it (a MiniWoB++ page gave its verdict or ran out of time), so the check, not the agent, tells success.
EndReason = Literal[
    "terminated",
    "task_ended",
    "answered",
    "max_steps",
    "time_budget",
    "too_many_errors",
    "stuck",
    "device_error",
    "model_error",
    "aborted",
    "interrupted",
    "crashed",
]

#: The most characters of one raw model output a step record keeps (head and tail; the middle is cut).
MAX_RECORDED_OUTPUT = 20_000
#: The most characters of one error message a step record keeps.
MAX_RECORDED_ERROR = 2_000


@dataclass(frozen=True)
class Limits:
    """Budgets that end an episode.

    ``max_failed_steps`` counts consecutive steps whose answer stayed unusable after retries (or whose action
    the environment refused). ``warn_repeats`` identical actions on an unchanged screen earn the model a
    warning; ``stop_repeats`` end the episode as stuck. ``max_seconds`` is checked before each step and after
    it (model calls are cut at that deadline); used up after a step that did not end the episode by itself, it
    ends it as ``time_budget``, before failed steps, repeats or ``max_steps`` are counted.
    """

    max_steps: int = 30
    max_seconds: float | None = None
    max_failed_steps: int = 3
    warn_repeats: int = 3
    stop_repeats: int = 5
    stop_on_answer: bool = True

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if self.max_failed_steps < 1:
            raise ValueError("max_failed_steps must be at least 1")
        if not 1 < self.warn_repeats <= self.stop_repeats:
            raise ValueError("need 1 < warn_repeats <= stop_repeats")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Timings(_Record):
    observe_s: float = 0.0
    model_s: float = 0.0
    parse_s: float = 0.0
    execute_s: float = 0.0
    settle_s: float = 0.0

    def __add__(self, other: Timings) -> Timings:
        return Timings(**{k: getattr(self, k) + getattr(other, k) for k in Timings.model_fields})


class ActionRecord(_Record):
    """One action of a step, in both frames, and what happened to it."""

    model: dict[str, Any]
    device: dict[str, Any]
    call: str
    verdict: Literal["approve", "skip", "refuse", "abort", "final"] = "approve"
    executed: bool = False
    error: str | None = None


class StepRecord(_Record):
    """Everything known about one step; one line of ``trajectory.jsonl``."""

    index: int
    started: float
    screen: tuple[int, int]
    model_screen: tuple[int, int]
    screen_digest: str
    outputs: list[str] = Field(description="Raw model output of every attempt, in order")
    errors: list[str] = Field(default_factory=list, description="What went wrong, in order")
    actions: list[ActionRecord] = Field(default_factory=list)
    summary: str | None = None
    feedback: str | None = Field(default=None, description="Extra text the model was shown at this step")
    failed: bool = False
    timings: Timings = Field(default_factory=Timings)
    usage: list[Usage] = Field(default_factory=list)
    screenshot: str | None = Field(default=None, description="Screenshot file, relative to the run folder")


@dataclass(frozen=True)
class Step:
    """A step as it happens: the record plus the screenshot it acted on."""

    record: StepRecord
    screenshot: Image.Image


class EpisodeResult(_Record):
    goal: str
    status: Literal["success", "failure"]
    reason: EndReason
    steps: int
    answer: str | None = None
    error: str | None = None
    duration_s: float = 0.0
    timings: Timings = Field(default_factory=Timings)
    counts: dict[str, int] | None = Field(
        default=None, description="A scripted session's counters: locator hits, misses, stores, model calls"
    )


@dataclass
class Episode:
    """Iterate to run; ``result`` is set when iteration stops (also after an exception).

    A consumer that stops iterating early (an error while recording a step, Ctrl-C between steps) calls
    :meth:`stop`, so the result says why and counts the steps already taken.
    """

    _steps: Generator[Step, None, None]
    result: EpisodeResult | None = None
    steps: int = field(default=0)
    _stop: tuple[EndReason, str] | None = None
    before_acting: Callable[[], None] | None = None
    """Called before each step's actions run; a recorder waits there until every earlier step is on disk, so
    nothing is done that could not be recorded. What it raises ends the episode."""

    def __iter__(self) -> Iterator[Step]:
        return self._steps

    def stop(self, reason: EndReason, error: str) -> None:
        """End a paused episode with ``reason``; a no-op once it has ended. A step that ended the episode by
        itself (the agent finished, the device or the backend failed) keeps that end."""
        self._stop = (reason, error)
        self._steps.close()


Settle = Callable[[Environment], SettleResult | None]
"""Waits after a step's actions until the screen stops changing. A result whose ``observation`` is set (the
screen was stable) becomes the next step's observation: nothing touches the screen between the settle and the
next step's look, so capturing it again would only repeat that frame."""


def run_episode(
    env: Environment,
    agent: Agent,
    goal: str,
    *,
    limits: Limits | None = None,
    policy: Policy | None = None,
    settle: Settle | None = None,
    keep_screenshots: bool = False,
) -> Episode:
    """Run ``goal`` on ``env`` with ``agent``. ``keep_screenshots`` passes past screenshots to the dialect."""
    episode = Episode(_no_steps())
    loop = _Loop(
        episode, env, agent, goal, limits or Limits(), policy or ApproveAll(), settle, keep_screenshots
    )
    episode._steps = _steps(loop)
    return episode


def _no_steps() -> Generator[Step, None, None]:
    yield from ()


def _steps(loop: _Loop) -> Generator[Step, None, None]:
    """The episode, one step per ``yield``; whatever ends it, ``episode.result`` says why."""
    loop.start = time.monotonic()
    loop.finish(("failure", "crashed", "the episode did not finish"))
    try:
        if not loop.reset():
            return
        for index in range(1, loop.limits.max_steps + 1):
            if loop.out_of_time():
                return
            turn = loop.take_step(index)
            if turn is None:
                return
            yield turn.as_step()
            if turn.outcome.raised is not None:  # recorded above; now let it end the episode as it would have
                raise turn.outcome.raised
            if not loop.carry_on(turn):
                return
        loop.finish(("failure", "max_steps", f"no result within {loop.limits.max_steps} steps"))
    except GeneratorExit:
        reason, error = loop.episode._stop or ("interrupted", "the episode was stopped")
        loop.finish(loop.end or ("failure", reason, error))
        raise
    except KeyboardInterrupt as exc:
        loop.finish(("failure", "interrupted", str(exc) or "interrupted by the user"))
        raise
    except Exception as exc:
        loop.finish(("failure", "crashed", f"{type(exc).__name__}: {exc}"))
        raise


_End = tuple[Literal["success", "failure"], EndReason, str | None]


@dataclass
class _Repeats:
    """Counts the same actions done in a row on an unchanged screen."""

    last: tuple[str, str] | None = None
    count: int = 0

    def see(self, key: tuple[str, str]) -> int:
        self.count = self.count + 1 if key == self.last else 1
        self.last = key
        return self.count

    def forget(self) -> None:
        self.last, self.count = None, 0


@dataclass(frozen=True)
class _Seen:
    """What a step looked at."""

    index: int
    started: float
    observation: Observation
    observe_s: float
    digest: str


@dataclass(frozen=True)
class _Turn:
    """One step as it was taken: what was seen, what the agent decided and what acting on it did."""

    seen: _Seen
    decision: Decision
    decide_s: float
    feedback: str | None
    """What the model was told besides the goal at this step."""
    outcome: _Outcome

    @property
    def timings(self) -> Timings:
        decision = self.decision
        return Timings(
            observe_s=self.seen.observe_s,
            # a call that ended in a backend error has no attempt: count the time it took all the same
            model_s=self.decide_s - decision.parse_s if decision.backend_error else decision.model_s,
            parse_s=decision.parse_s,
            execute_s=self.outcome.execute_s,
            settle_s=self.outcome.settle_s,
        )

    @property
    def errors(self) -> list[str]:
        return [a.error for a in self.decision.attempts if a.error] + self.outcome.errors

    def as_step(self) -> Step:
        """The step as it is recorded, with the screenshot it acted on."""
        seen, decision = self.seen, self.decision
        record = StepRecord(
            index=seen.index,
            started=seen.started,
            screen=tuple(seen.observation.size),  # type: ignore[arg-type]
            model_screen=tuple(decision.space.model),  # type: ignore[arg-type]
            screen_digest=seen.digest,
            outputs=[clip_text(a.output, MAX_RECORDED_OUTPUT) for a in decision.attempts],
            errors=[clip_text(e, MAX_RECORDED_ERROR) for e in self.errors],
            actions=self.outcome.records,
            summary=_clip_optional(decision.summary, MAX_RECORDED_OUTPUT),
            feedback=_clip_optional(self.feedback, MAX_RECORDED_OUTPUT),
            failed=self.outcome.failed,
            timings=self.timings,
            usage=[a.usage for a in decision.attempts],
        )
        return Step(record, seen.observation.screenshot)


@dataclass
class _Loop:
    """One episode as it runs: what it was given, what the agent has been told and has done, and how it ends."""

    episode: Episode
    env: Environment
    agent: Agent
    goal: str
    limits: Limits
    policy: Policy
    settle: Settle | None
    keep_screenshots: bool
    start: float = 0.0
    totals: Timings = field(default_factory=Timings)
    history: list[PastStep] = field(default_factory=list)
    answer: str | None = None
    first: tuple[Observation, float] | None = None
    """The observation ``reset`` gave, and the time it took: the first step's look."""
    settled: SettleResult | None = None
    feedback: str | None = None
    failed_streak: int = 0
    repeats: _Repeats = field(default_factory=_Repeats)
    end: _End | None = None
    """The end a step brought by what it did; it stands even when the episode is stopped right after it."""

    def finish(self, end: _End) -> None:
        status, reason, error = end
        self.episode.result = EpisodeResult(
            goal=self.goal,
            status=status,
            reason=reason,
            steps=self.episode.steps,
            answer=self.answer,
            error=error,
            duration_s=time.monotonic() - self.start,
            timings=self.totals,
        )

    def reset(self) -> bool:
        """Reset the environment; False when the episode ended there."""
        t0 = time.perf_counter()
        try:
            observation = self.env.reset()
        except DeviceError as exc:
            self.finish(("failure", "device_error", str(exc)))
            return False
        self.first = (observation, time.perf_counter() - t0)
        return True

    def out_of_time(self) -> bool:
        """Whether the time budget is used up (the episode then ends)."""
        budget = self.limits.max_seconds
        if budget is None or time.monotonic() - self.start < budget:
            return False
        self.finish(("failure", "time_budget", f"time budget of {budget:g} s used up"))
        return True

    # -- one step: observe, decide, act ------------------------------------------------------------------------
    def take_step(self, index: int) -> _Turn | None:
        """Observe, decide and act; None when the screen could not be seen (the episode then ends)."""
        seen = self._observe(index)
        if seen is None:
            return None
        t0 = time.perf_counter()
        deadline = None if self.limits.max_seconds is None else self.start + self.limits.max_seconds
        decision = self.agent.decide(
            self.goal, seen.observation, self.history, feedback=self.feedback, deadline=deadline
        )
        decide_s = time.perf_counter() - t0
        shown_feedback, self.feedback = self.feedback, None
        if self.episode.before_acting is not None:
            self.episode.before_acting()
        outcome = _act(decision, self.env, self.policy, index, self.settle, self.limits)
        self.settled = outcome.settled
        turn = _Turn(seen, decision, decide_s, shown_feedback, outcome)
        self.totals = self.totals + turn.timings
        self.episode.steps = index
        self._note_own_end(turn)
        return turn

    def _observe(self, index: int) -> _Seen | None:
        started = time.time()
        t0 = time.perf_counter()
        if self.first is not None:
            (observation, observe_s), self.first = self.first, None
        elif self.settled is not None and self.settled.observation is not None:
            observation = self.settled.observation  # the settled frame, taken after the last step's actions
            observe_s = 0.0
        else:
            try:
                observation = self.env.observe()
            except DeviceError as exc:
                self.finish(("failure", "device_error", str(exc)))
                return None
            observe_s = time.perf_counter() - t0
        seen = _Seen(index, started, observation, observe_s, _digest(observation, self.settled))
        self.settled = None
        return seen

    def _note_own_end(self, turn: _Turn) -> None:
        """Keep the step's answer, and the end it brought by itself: the agent finished, the backend or the
        device failed, the policy aborted, something crashed."""
        if turn.outcome.answer is not None:
            self.answer = turn.outcome.answer
        if turn.decision.backend_error is not None:
            self.end = ("failure", "model_error", turn.decision.backend_error)
        elif turn.outcome.end is not None:
            self.end = turn.outcome.end

    # -- after a step: go on or end ----------------------------------------------------------------------------
    def carry_on(self, turn: _Turn) -> bool:
        """Learn from the step just recorded; False when the episode ends with it."""
        self._remember(turn)
        if self.end is not None:
            self.finish(self.end)
            return False
        if self.out_of_time():
            return False
        outcome = turn.outcome
        self.feedback = outcome.feedback
        if outcome.failed:
            self.failed_streak += 1
            if self.failed_streak >= self.limits.max_failed_steps:
                errors = turn.errors
                self.finish(("failure", "too_many_errors", errors[-1] if errors else "too many failed steps"))
                return False
            self.repeats.forget()
            return True
        self.failed_streak = 0
        return self._not_stuck(turn)

    def _remember(self, turn: _Turn) -> None:
        """History lists what was done: executed actions (or, in a dry run, skipped ones), not refused or
        failed ones, which the model hears about through the feedback instead."""
        kept = turn.seen.observation.screenshot if self.keep_screenshots else None
        for record in turn.outcome.records:
            if record.executed or record.verdict == "skip":
                self.history.append(PastStep(record.call, turn.decision.summary, kept))
                kept = None

    def _not_stuck(self, turn: _Turn) -> bool:
        """Warn about, then end on, the same actions repeated on an unchanged screen."""
        key = (turn.seen.digest, json.dumps([r.device for r in turn.outcome.records], sort_keys=True))
        repeats = self.repeats.see(key)
        if repeats >= self.limits.stop_repeats:
            error = f"the same action was repeated {repeats} times on an unchanged screen"
            self.finish(("failure", "stuck", error))
            return False
        if repeats >= self.limits.warn_repeats:
            calls = "; ".join(p.call for p in turn.decision.actions)
            if self.feedback is None:
                self.feedback = (
                    f"You have done {calls} {repeats} times in a row and the screen did not change. "
                    "Do something different."
                )
            else:  # the policy refused the action: keep its reason, and say it was asked for, not done
                self.feedback += f" You have asked for {calls} {repeats} times in a row."
        return True


@dataclass
class _Outcome:
    records: list[ActionRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: bool = False
    feedback: str | None = None
    answer: str | None = None
    end: _End | None = None
    execute_s: float = 0.0
    settle_s: float = 0.0
    executed_any: bool = False
    settled: SettleResult | None = None
    raised: BaseException | None = None
    """An unexpected exception (or Ctrl-C) met while acting: raised again once the step is recorded."""


def _act(
    decision: Decision, env: Environment, policy: Policy, index: int, settle: Settle | None, limits: Limits
) -> _Outcome:
    """Review, execute and settle the decision's actions. Whatever goes wrong on the way ends up in the
    outcome (and so in the step's record), never lost with the step."""
    out = _Outcome()
    if decision.backend_error is not None:
        out.errors.append(decision.backend_error)
        return out
    if not decision.ok:
        out.failed = True
        if decision.error is not None and (
            not decision.attempts or decision.attempts[-1].error != decision.error
        ):
            out.errors.append(decision.error)  # no answer carries it: the deadline came before one
        out.feedback = f"Your previous answer could not be used: {decision.error}"
        return out
    try:
        for parsed in decision.actions:
            if not _act_one(parsed, env, policy, index, limits, out):
                break
        if out.executed_any and settle is not None and out.end is None:
            _settle(env, settle, out)
    except DeviceError as exc:  # from settle: the step's actions did reach the device
        out.errors.append(str(exc))
        out.end = ("failure", "device_error", str(exc))
    except BaseException as exc:  # recorded with the step, then raised again
        _unexpected(out, exc)
    return out


def _unexpected(out: _Outcome, exc: BaseException) -> None:
    """Note an exception nobody planned for; the loop raises it again after recording the step."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    error = _error_text(exc)
    out.errors.append(error)
    out.end = ("failure", "interrupted" if interrupted else "crashed", error)
    out.raised = exc


def _error_text(exc: BaseException) -> str:
    """One line for a failure met while acting: our own errors as they are, Ctrl-C as an interruption."""
    if isinstance(exc, KeyboardInterrupt):
        return str(exc) or "interrupted by the user"
    if isinstance(exc, ScreenpilotError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _settle(env: Environment, settle: Settle, out: _Outcome) -> None:
    t0 = time.perf_counter()
    try:
        out.settled = settle(env)
    finally:
        out.settle_s = time.perf_counter() - t0


def _digest(observation: Observation, settled: SettleResult | None) -> str:
    """The observation's screen digest; settle's own when it was computed on this very frame."""
    if settled is not None and settled.digest is not None and settled.last is observation.screenshot:
        return settled.digest
    return screen_digest(observation.screenshot)


def _act_one(
    parsed: ParsedAction, env: Environment, policy: Policy, index: int, limits: Limits, out: _Outcome
) -> bool:
    """Handle one action of a step; False when the step's remaining actions must not run."""
    model_dict, device_dict = action_to_dict(parsed.model), action_to_dict(parsed.device)
    action = parsed.device
    if isinstance(action, Terminate):
        out.records.append(
            ActionRecord(model=model_dict, device=device_dict, call=parsed.call, verdict="final")
        )
        ok = action.status == "success"
        # the call says how the model gave up (one call means "I need a human", e.g. call_user())
        error = None if ok else f"the agent reported failure: {parsed.call}"
        out.end = ("success" if ok else "failure", "terminated", error)
        return False
    if isinstance(action, Answer):
        out.records.append(
            ActionRecord(model=model_dict, device=device_dict, call=parsed.call, verdict="final")
        )
        out.answer = action.text
        if limits.stop_on_answer:
            out.end = ("success", "answered", None)
            return False
        return True
    verdict = policy.review(action, step=index)
    edited = action_to_dict(verdict.action)
    if verdict.kind == "abort":
        out.records.append(
            ActionRecord(
                model=model_dict, device=edited, call=parsed.call, verdict="abort", error=verdict.reason
            )
        )
        out.end = ("failure", "aborted", verdict.reason)
        return False
    if verdict.kind == "refuse":
        out.records.append(ActionRecord(model=model_dict, device=edited, call=parsed.call, verdict="refuse"))
        out.feedback = f"The action {parsed.call} was refused: {verdict.reason}. Choose another action."
        return False
    if verdict.kind == "skip":
        out.records.append(ActionRecord(model=model_dict, device=edited, call=parsed.call, verdict="skip"))
        return True
    return _execute(parsed, verdict.action, model_dict, edited, env, out)


def _execute(
    parsed: ParsedAction,
    action: Action,
    model_dict: dict[str, Any],
    edited: dict[str, Any],
    env: Environment,
    out: _Outcome,
) -> bool:
    """Execute one approved action and record what happened to it; False when the step must stop."""
    t0 = time.perf_counter()
    try:
        env.execute(action)
    except BaseException as exc:
        out.execute_s += time.perf_counter() - t0
        error = _error_text(exc)
        out.records.append(
            ActionRecord(model=model_dict, device=edited, call=parsed.call, executed=False, error=error)
        )
        if isinstance(
            exc, ModelOutputError
        ):  # e.g. an action this environment cannot do: the model's mistake
            out.errors.append(error)
            out.failed = True
            out.feedback = f"The action {parsed.call} could not be done: {exc}"
            return False
        if isinstance(exc, DeviceError):
            out.errors.append(error)
            out.end = ("failure", "device_error", error)
            return False
        raise
    out.execute_s += time.perf_counter() - t0
    out.executed_any = True
    out.records.append(ActionRecord(model=model_dict, device=edited, call=parsed.call, executed=True))
    return True


def clip_text(text: str, limit: int) -> str:
    """``text`` if it is at most ``limit`` characters, else its head and tail around a note saying how many
    characters were cut, so one huge model answer cannot blow up a run folder."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    cut = len(text) - 2 * keep
    return f"{text[:keep]}\n[... {cut} characters cut ...]\n{text[len(text) - keep :]}"


def _clip_optional(text: str | None, limit: int) -> str | None:
    return None if text is None else clip_text(text, limit)
