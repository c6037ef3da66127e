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
    warning; ``stop_repeats`` end the episode as stuck.
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
        """End a paused episode with ``reason``; a no-op once it has ended."""
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
    episode._steps = _steps(
        episode, env, agent, goal, limits or Limits(), policy or ApproveAll(), settle, keep_screenshots
    )
    return episode


def _no_steps() -> Generator[Step, None, None]:
    yield from ()


def _steps(
    episode: Episode,
    env: Environment,
    agent: Agent,
    goal: str,
    limits: Limits,
    policy: Policy,
    settle: Settle | None,
    keep_screenshots: bool,
) -> Generator[Step, None, None]:
    start = time.monotonic()
    totals = Timings()
    history: list[PastStep] = []
    answer: str | None = None

    def finish(status: Literal["success", "failure"], reason: EndReason, error: str | None = None) -> None:
        episode.result = EpisodeResult(
            goal=goal,
            status=status,
            reason=reason,
            steps=episode.steps,
            answer=answer,
            error=error,
            duration_s=time.monotonic() - start,
            timings=totals,
        )

    finish("failure", "crashed", "the episode did not finish")
    try:
        t0 = time.perf_counter()
        try:
            observation: Observation = env.reset()
        except DeviceError as exc:
            finish("failure", "device_error", str(exc))
            return
        reset_s = time.perf_counter() - t0

        failed_streak = 0
        settled: SettleResult | None = None
        feedback: str | None = None
        last_key: tuple[str, str] | None = None
        repeats = 0
        for index in range(1, limits.max_steps + 1):
            if limits.max_seconds is not None and time.monotonic() - start >= limits.max_seconds:
                finish("failure", "time_budget", f"time budget of {limits.max_seconds:g} s used up")
                return
            started = time.time()
            t0 = time.perf_counter()
            if index == 1:
                observe_s = reset_s
            elif settled is not None and settled.observation is not None:
                observation = settled.observation  # the settled frame, taken after this step's actions
                observe_s = 0.0
            else:
                try:
                    observation = env.observe()
                except DeviceError as exc:
                    finish("failure", "device_error", str(exc))
                    return
                observe_s = time.perf_counter() - t0
            digest = _digest(observation, settled)
            settled = None
            t0 = time.perf_counter()
            deadline = None if limits.max_seconds is None else start + limits.max_seconds
            decision = agent.decide(goal, observation, history, feedback=feedback, deadline=deadline)
            decide_s = time.perf_counter() - t0
            shown_feedback, feedback = feedback, None

            if episode.before_acting is not None:
                episode.before_acting()
            outcome = _act(decision, env, policy, index, settle, limits)
            settled = outcome.settled
            timings = Timings(
                observe_s=observe_s,
                # a call that ended in a backend error has no attempt: count the time it took all the same
                model_s=decide_s - decision.parse_s if decision.backend_error else decision.model_s,
                parse_s=decision.parse_s,
                execute_s=outcome.execute_s,
                settle_s=outcome.settle_s,
            )
            totals = totals + timings
            errors = [a.error for a in decision.attempts if a.error] + outcome.errors
            record = StepRecord(
                index=index,
                started=started,
                screen=tuple(observation.size),  # type: ignore[arg-type]
                model_screen=tuple(decision.space.model),  # type: ignore[arg-type]
                screen_digest=digest,
                outputs=[clip_text(a.output, MAX_RECORDED_OUTPUT) for a in decision.attempts],
                errors=[clip_text(e, MAX_RECORDED_ERROR) for e in errors],
                actions=outcome.records,
                summary=_clip_optional(decision.summary, MAX_RECORDED_OUTPUT),
                feedback=_clip_optional(shown_feedback, MAX_RECORDED_OUTPUT),
                failed=outcome.failed,
                timings=timings,
                usage=[a.usage for a in decision.attempts],
            )
            episode.steps = index
            yield Step(record, observation.screenshot)
            if outcome.raised is not None:  # recorded above; now let it end the episode as it would have
                raise outcome.raised

            # History lists what was done: executed actions (or, in a dry run, skipped ones), not refused or
            # failed ones, which the model hears about through the feedback instead.
            kept = observation.screenshot if keep_screenshots else None
            for record_ in outcome.records:
                if record_.executed or record_.verdict == "skip":
                    history.append(PastStep(record_.call, decision.summary, kept))
                    kept = None

            if decision.backend_error is not None:
                finish("failure", "model_error", decision.backend_error)
                return

            if outcome.answer is not None:
                answer = outcome.answer
            if outcome.end is not None:
                finish(*outcome.end)
                return

            if outcome.failed:
                failed_streak += 1
                feedback = outcome.feedback
                if failed_streak >= limits.max_failed_steps:
                    finish("failure", "too_many_errors", errors[-1] if errors else "too many failed steps")
                    return
                last_key, repeats = None, 0
                continue
            failed_streak = 0
            feedback = outcome.feedback

            key = (digest, json.dumps([r.device for r in outcome.records], sort_keys=True))
            repeats = repeats + 1 if key == last_key else 1
            last_key = key
            if repeats >= limits.stop_repeats:
                finish(
                    "failure", "stuck", f"the same action was repeated {repeats} times on an unchanged screen"
                )
                return
            if repeats >= limits.warn_repeats:
                calls = "; ".join(p.call for p in decision.actions)
                feedback = (
                    f"You have done {calls} {repeats} times in a row and the screen did not change. "
                    "Do something different."
                )
        finish("failure", "max_steps", f"no result within {limits.max_steps} steps")
    except GeneratorExit:
        reason, error = episode._stop or ("interrupted", "the episode was stopped")
        finish("failure", reason, error)
        raise
    except KeyboardInterrupt as exc:
        finish("failure", "interrupted", str(exc) or "interrupted by the user")
        raise
    except Exception as exc:
        finish("failure", "crashed", f"{type(exc).__name__}: {exc}")
        raise


@dataclass
class _Outcome:
    records: list[ActionRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: bool = False
    feedback: str | None = None
    answer: str | None = None
    end: tuple[Literal["success", "failure"], EndReason, str | None] | None = None
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
    error = (str(exc) or "interrupted by the user") if interrupted else f"{type(exc).__name__}: {exc}"
    out.errors.append(error)
    out.end = ("failure", "interrupted" if interrupted else "crashed", error)
    out.raised = exc


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
        error = str(exc) if isinstance(exc, ScreenpilotError) else f"{type(exc).__name__}: {exc}"
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
