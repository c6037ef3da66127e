"""Scripts: :func:`connect` opens a :class:`Session` whose verbs act on a phone or a desktop.

Plain device-pixel verbs (``tap``, ``key``, ``type_text``) need no model. Verbs that name a target in words
(``click("the Send button")``) ask the model where it is, in the dialect's native grounding prompt, unless the
locator cache already knows it. Every verb that acts or asks the model is one step of one run folder, in the
format of ``screenpilot run``, written as it happens; ``result.json`` is written on :meth:`Session.close`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

from PIL import Image
from pydantic import ValidationError

from screenpilot.actions.coords import Point, Size
from screenpilot.actions.keys import KeyComboError, split_keys
from screenpilot.actions.types import (
    MAX_SCROLL_PIXELS,
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
    TypeText,
    action_to_dict,
)
from screenpilot.agent.loop import ActionRecord, Episode, EpisodeResult, Limits, Step, run_episode
from screenpilot.agent.policy import Policy
from screenpilot.agent.record import RecordingError, RunRecorder
from screenpilot.envs.base import Environment, Observation
from screenpilot.errors import (
    ActionRefused,
    ExpectationFailed,
    NoAnswer,
    ScreenpilotError,
    SetupError,
    TargetNotFound,
)
from screenpilot.model.base import ModelBackend
from screenpilot.session.grounding import Grounded, Grounder
from screenpilot.session.steps import Draft, StepWriter
from screenpilot.settings import Settings

if TYPE_CHECKING:
    from screenpilot.model.dialect import PastStep
    from screenpilot.session.anchors import Anchor
    from screenpilot.session.locators import LocatorCache

T = TypeVar("T")

#: A target: words for the model to find (``"the Send button"``) or a point in device pixels.
Target: TypeAlias = str | Point | tuple[int, int]
Direction = Literal["up", "down", "left", "right"]
PolicyName = Literal["approve", "dry_run", "confirm"]

#: How far ``scroll`` turns the wheel by default, in the model's pixels (its examples use 500).
DEFAULT_SCROLL = 500


class Session:
    """An open connection to one screen, a model, a policy and one run folder. Use :func:`connect`.

    Use it as a context manager (``with screenpilot.connect(...) as s:``) or call :meth:`close`: either way
    ``result.json`` is written and what the session opened is closed.
    """

    def __init__(
        self,
        env: Environment,
        model: ModelBackend,
        settings: Settings,
        recorder: RunRecorder,
        *,
        policy: Policy,
        cache: LocatorCache | None = None,
        name: str = "python session",
        owns: tuple[bool, bool] = (True, True),
        quiet: bool = False,
    ) -> None:
        from screenpilot.cli import wiring

        self.env, self.model, self.settings, self.policy = env, model, settings, policy
        self.cache = cache
        self.name = name
        self.dialect = wiring.make_dialect(settings, env.platform, model=model)
        asker = wiring.make_dialect(settings.replace(answer_action=True), env.platform, model=model)
        self.grounder = Grounder(model, self.dialect, asker, max_retries=settings.max_retries)
        self._settle = wiring.make_settle(settings)
        self._writer = StepWriter(recorder)
        self._owns_env, self._owns_model = owns
        self._quiet = quiet
        self._agent_calls = 0
        self._aborted = False
        self._closed = False
        self._started = time.monotonic()

    # -- where things are -----------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The run folder this session records into."""
        return self._writer.folder

    def locate(self, target: str) -> Point:
        """Where ``target`` is on the screen now, in device pixels: from the locator cache when its anchor is
        found, else from the model. Raises :class:`~screenpilot.errors.TargetNotFound`."""
        return self._step(f"locate({target!r})", lambda d: self._resolve(target, d))

    def screenshot(self) -> Image.Image:
        """The screen now, in device pixels (not recorded as a step)."""
        return self._observe().screenshot

    def wait_until_stable(self) -> None:
        """Wait until the screen stops changing (at most ``settle_timeout`` seconds); not a step."""
        self._check_open()
        if self._settle is not None:
            self._settle(self.env)

    # -- pointer verbs --------------------------------------------------------------------------------------
    def click(self, target: Target, *, button: Literal["left", "right", "middle"] = "left") -> Point:
        """Click ``target`` (words or a point); returns the point clicked."""
        return self._on(
            "click", target, lambda p: [Click(x=p.x, y=p.y, button=button)], button=_non_default(button)
        )

    def double_click(self, target: Target) -> Point:
        """Double-click ``target``; returns the point."""
        return self._on("double_click", target, lambda p: [Click(x=p.x, y=p.y, count=2)])

    def long_press(self, target: Target, *, seconds: float = 1.0) -> Point:
        """Touch and hold ``target`` for ``seconds``; returns the point."""
        return self._on("long_press", target, lambda p: [LongPress(x=p.x, y=p.y, seconds=seconds)])

    def hover(self, target: Target) -> Point:
        """Move the pointer onto ``target`` (desktop); returns the point."""
        return self._on("hover", target, lambda p: [MouseMove(x=p.x, y=p.y)])

    def tap(self, x: int, y: int) -> None:
        """Click or touch the device pixel (``x``, ``y``); never asks the model."""
        self._on("tap", Point(x, y), lambda p: [Click(x=p.x, y=p.y)])

    def swipe(self, start: Direction | Target, end: Target | None = None, *, seconds: float = 0.3) -> None:
        """Swipe a finger: ``swipe("up")`` across the middle of the screen, or ``swipe(start, end)`` between
        two targets (words or points), which on a desktop drags the mouse from one to the other."""
        _checked("swipe", lambda: Swipe(x=0, y=0, x2=0, y2=0, seconds=seconds))
        self._step(f"swipe({start!r}, {end!r})", lambda d: self._swipe(d, start, end, seconds))

    def scroll(
        self, direction: Direction = "down", *, at: Target | None = None, amount: int = DEFAULT_SCROLL
    ) -> None:
        """Scroll to reveal what is ``direction`` of the view: the wheel on a desktop (the sideways wheel for
        left and right), a swipe on a phone. ``at`` is where (words or a point; default: where the pointer is,
        or the screen's middle)."""
        if not isinstance(amount, int) or isinstance(amount, bool) or not 0 < amount <= MAX_SCROLL_PIXELS:
            raise SetupError(
                f"scroll() amount is a whole number of pixels, 1 to {MAX_SCROLL_PIXELS}, not {amount!r}"
            )
        self._step(f"scroll({direction!r}, at={at!r})", lambda d: self._scroll(d, direction, at, amount))

    # -- keyboard and buttons -------------------------------------------------------------------------------
    def type_text(self, text: str, *, into: Target | None = None) -> None:
        """Type ``text``; with ``into``, click that field first."""
        _checked("type_text", lambda: TypeText(text=text))

        def work(draft: Draft) -> None:
            before: list[Action] = []
            if into is not None:
                p = self._resolve(into, draft)
                before = [Click(x=p.x, y=p.y)]
            self._act(draft, [*before, TypeText(text=text)])

        self._step(f"type_text({text!r}" + (f", into={into!r})" if into is not None else ")"), work)

    def key(self, *keys: str) -> None:
        """Press keys together: ``key("ctrl+s")`` or ``key("ctrl", "s")``; one key name on a phone."""
        if not keys or not all(isinstance(k, str) and k.strip() for k in keys):
            raise SetupError(f"key() needs key names, like key('ctrl+s'), not {keys!r}")
        try:
            names = split_keys(keys)
        except KeyComboError as error:
            raise SetupError(str(error)) from None
        self._step(f"key({'+'.join(names)!r})", lambda d: self._act(d, [Key(keys=names)]))

    def back(self) -> None:
        """Press the phone's Back button."""
        self._step("back()", lambda d: self._act(d, [SystemButton(button="back")]))

    def home(self) -> None:
        """Press the phone's Home button."""
        self._step("home()", lambda d: self._act(d, [SystemButton(button="home")]))

    def open_app(self, name: str) -> None:
        """Open the app called ``name`` (a phone)."""
        self._step(f"open_app({name!r})", lambda d: self._act(d, [OpenApp(app=name)]))

    # -- asking the model -----------------------------------------------------------------------------------
    def ask(self, question: str) -> str:
        """The model's answer to ``question`` about the screen now; raises
        :class:`~screenpilot.errors.NoAnswer` when it gives none."""
        return self._step(f"ask({question!r})", lambda d: self._ask(d, question))

    def expect(self, condition: str, *, timeout: float = 10.0, interval: float = 1.0) -> str:
        """Wait until the model says ``condition`` holds on the screen, asking every ``interval`` seconds (each
        question a step) for at most ``timeout`` seconds; returns its last answer. Raises
        :class:`~screenpilot.errors.ExpectationFailed`."""
        deadline = time.monotonic() + timeout
        question = f"Is this true of the screen: {condition}? Answer yes or no."
        while True:
            answer, path = self._step(f"expect({condition!r})", lambda d: self._poll(d, question))
            if answer is not None and _is_yes(answer):
                return answer
            if time.monotonic() + interval > deadline:
                said = f"; the model said {answer!r}" if answer is not None else ""
                self._writer.flush()  # the screenshot the error names is on disk
                raise ExpectationFailed(
                    f"{condition!r} did not come true within {timeout:g} s{said}",
                    condition=condition,
                    answer=answer,
                    screenshot=path,
                )
            time.sleep(interval)

    # -- the agent ------------------------------------------------------------------------------------------
    def run(
        self, goal: str, *, max_steps: int | None = None, history: Sequence[PastStep] = ()
    ) -> EpisodeResult:
        """Let the agent do ``goal`` from the screen as it is (the loop of ``screenpilot run``); its steps
        join this session's run folder. ``history``: what the agent is told was already done (a replay it
        takes over)."""
        episode = self.steps(goal, max_steps=max_steps, history=history)
        for _ in episode:
            pass
        assert episode.result is not None
        return episode.result

    def steps(self, goal: str, *, max_steps: int | None = None, history: Sequence[PastStep] = ()) -> Episode:
        """The agent's episode for ``goal`` as a generator of :class:`~screenpilot.agent.loop.Step`, each
        recorded before it is yielded; ``result`` is set when it ends. ``history`` as for :meth:`run`."""
        from screenpilot.session.replay import ResumingAgent

        self._check_open()
        agent = ResumingAgent(
            self.model, self.dialect, max_retries=self.settings.max_retries, before=tuple(history)
        )
        limits = Limits(
            max_steps=max_steps or self.settings.max_steps,
            max_seconds=self.settings.max_seconds,
            max_failed_steps=self.settings.max_failed_steps,
        )
        settle = self._settle
        inner = run_episode(
            _Continuing(self.env),
            agent,
            goal,
            limits=limits,
            policy=self.policy,
            settle=None if settle is None else (lambda _env: settle(self.env)),
            keep_screenshots=self.settings.keep_images > 0,
        )
        outer = Episode(_nothing())
        outer._steps = self._recorded(inner, outer)
        return outer

    def _recorded(self, inner: Episode, outer: Episode) -> Generator[Step, None, None]:
        try:
            for step in inner:
                written = self._writer.write_step(step)
                self._agent_calls += len(written.usage)
                outer.steps += 1
                yield Step(written, step.screenshot)
        except GeneratorExit:
            inner.stop(*(outer._stop or ("interrupted", "the episode was stopped")))
            raise
        except BaseException as exc:
            inner.stop("crashed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            outer.result = inner.result

    # -- replaying a recorded run ---------------------------------------------------------------------------
    def replay(self, action: Action, *, anchor: Anchor | None = None, call: str | None = None) -> Action:
        """Do one recorded ``action`` (device pixels) as one step, through the policy; never asks the model.

        With ``anchor`` (cut by :func:`~screenpilot.session.anchors.make_anchor` from the recorded screenshot
        at the action's point), the anchor is first looked for on the screen now, near that point: found, the
        action moves with it (a moved button is still hit); not found, nothing is done and
        :class:`~screenpilot.errors.TargetNotFound` is raised, the step recorded with its screenshot. Returns
        the action as done. ``call`` names the step in the run folder."""
        from screenpilot.session.replay import action_source, follow

        shown = call or f"replay({action_source(action)})"

        def work(draft: Draft) -> Action:
            done = action
            if anchor is not None:
                found = follow(action, anchor, draft.screenshot)
                if found is None:
                    raise TargetNotFound(
                        f"{shown}: its anchor is not on the screen",
                        target=shown,
                        screenshot=self._writer.screenshot_path(draft.index),
                    )
                done, score = found
                draft.summary = f"anchor found (score {score:.2f}): {action_source(done)}"
            self._act(draft, [done])
            return done

        return self._step(shown, work)

    # -- life cycle -----------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Steps, model calls and locator cache hits, misses, stores and refused stores so far."""
        stats = self.cache.stats if self.cache is not None else None
        return {
            "steps": self._writer.steps,
            "model_calls": self.grounder.calls + self._agent_calls,
            "locator_hits": stats.hits if stats else 0,
            "locator_misses": stats.misses if stats else 0,
            "locator_stores": stats.stores if stats else 0,
            "locator_refused": stats.refused if stats else 0,
        }

    def close(self, error: BaseException | None = None) -> None:
        """Write ``result.json`` (``error``: what ended the script, if anything), close what the session
        opened and print its counts. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.recorder.finish(self._result(error))
        finally:
            try:
                if self._owns_env:
                    self.env.close()
            finally:
                if self._owns_model:
                    self.model.close()
                self._say_counts()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(exc)

    def _result(self, error: BaseException | None) -> EpisodeResult:
        reason: Any = "terminated"
        if isinstance(error, KeyboardInterrupt):
            reason = "interrupted"
        elif error is not None:
            reason = "aborted" if isinstance(error, ActionRefused) and self._aborted else "crashed"
        elif self._aborted:
            reason = "aborted"
        message = None if error is None else (str(error) or type(error).__name__)
        if error is not None and not isinstance(error, ScreenpilotError | KeyboardInterrupt):
            message = f"{type(error).__name__}: {error}"
        return EpisodeResult(
            goal=self.name,
            status="success" if reason == "terminated" else "failure",
            reason=reason,
            steps=self._writer.steps,
            error=message,
            duration_s=time.monotonic() - self._started,
            timings=self._writer.timings,
            counts=self.counts(),
        )

    def _say_counts(self) -> None:
        if self._quiet:
            return
        c = self.counts()
        print(
            f"screenpilot: {c['steps']} steps, {c['model_calls']} model calls; locators: "
            f"{c['locator_hits']} hits, {c['locator_misses']} misses, {c['locator_stores']} stores, "
            f"{c['locator_refused']} refused (run folder: {self.folder})",
            file=sys.stderr,
        )

    # -- inside a step --------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise SetupError("this session is closed")

    def _observe(self) -> Observation:
        self._check_open()
        return self.env.observe()

    def _step(self, call: str, work: Callable[[Draft], T]) -> T:
        """Run ``work`` as one recorded step; whatever it raises is recorded with the step, then raised."""
        self._writer.flush()  # no action is taken while an earlier step could still fail to be recorded
        t0 = time.perf_counter()
        observation = self._observe()
        draft = self._writer.draft(call, observation.screenshot)
        draft.time(observe_s=time.perf_counter() - t0)
        try:
            value = work(draft)
        except BaseException as exc:
            if not draft.written:
                draft.fail(exc)
                with contextlib.suppress(RecordingError):  # the first error is the one to raise
                    self._writer.write(draft)
            with contextlib.suppress(RecordingError):  # the screenshot an error names is on disk when raised
                self._writer.flush()
            raise
        self._writer.write(draft)
        return value

    def _on(self, verb: str, target: Target, actions: Callable[[Point], list[Action]], **extra: str) -> Point:
        shown = "".join(f", {k}={v}" for k, v in extra.items() if v)
        _checked(verb, lambda: actions(Point(0, 0)))  # the other arguments, before anything is asked or done

        def work(draft: Draft) -> Point:
            point = self._resolve(target, draft)
            self._act(draft, actions(point))
            return point

        return self._step(f"{verb}({target!r}{shown})", work)

    def _resolve(self, target: Target, draft: Draft) -> Point:
        """The device point of ``target`` on the draft's screenshot (cache, then model)."""
        if not isinstance(target, str):
            return _as_point(target)
        if not target.strip():
            raise SetupError("a target needs words, like 'the Send button'")
        if self.cache is not None:
            hit = self.cache.lookup(target, draft.screenshot)
            if hit is not None:
                draft.summary = (
                    f"{target!r} at {tuple(hit.point)} from the locator cache (score {hit.score:.2f})"
                )
                return Point(*hit.point)
        grounded = self.grounder.locate(target, draft.screenshot)
        draft.add_model(grounded)
        if grounded.point is None:
            raise TargetNotFound(
                f"{target!r} not found: {grounded.reason}",
                target=target,
                screenshot=self._writer.screenshot_path(draft.index),
            )
        draft.summary = f"{target!r} at {tuple(grounded.point)} from the model"
        if self.cache is not None:
            self.cache.store(target, draft.screenshot, grounded.point)
        return grounded.point

    def _act(self, draft: Draft, actions: list[Action]) -> None:
        """Pass each action through the policy, execute the approved ones, then wait for the screen."""
        executed = False
        for action in actions:
            if self._aborted:
                raise ActionRefused("the policy stopped this session; it takes no more actions", kind="abort")
            verdict = self.policy.review(action, step=draft.index)
            record = ActionRecord(
                model=action_to_dict(action), device=action_to_dict(verdict.action), call=draft.call
            )
            if verdict.kind in ("refuse", "abort"):
                self._aborted = self._aborted or verdict.kind == "abort"
                draft.actions.append(
                    record.model_copy(update={"verdict": verdict.kind, "error": verdict.reason})
                )
                raise ActionRefused(f"{draft.call} was refused: {verdict.reason}", kind=verdict.kind)
            if verdict.kind == "skip":
                draft.actions.append(record.model_copy(update={"verdict": "skip"}))
                continue
            draft.actions.append(record)
            t0 = time.perf_counter()
            try:
                self.env.execute(verdict.action)
            except BaseException as exc:
                draft.actions[-1] = record.model_copy(update={"error": _one_line(exc)})
                raise
            finally:
                draft.time(execute_s=time.perf_counter() - t0)
            draft.actions[-1] = record.model_copy(update={"executed": True})
            executed = True
        if executed and self._settle is not None:
            t0 = time.perf_counter()
            try:
                self._settle(self.env)
            finally:
                draft.time(settle_s=time.perf_counter() - t0)

    def _ask(self, draft: Draft, question: str) -> str:
        grounded = self._question(draft, question)
        if grounded.answer is None:
            raise NoAnswer(
                f"no answer to {question!r}: {grounded.reason}",
                screenshot=self._writer.screenshot_path(draft.index),
            )
        return grounded.answer

    def _poll(self, draft: Draft, question: str) -> tuple[str | None, str]:
        grounded = self._question(draft, question)
        if grounded.answer is None and grounded.reason:
            draft.errors.append(grounded.reason)
        return grounded.answer, self._writer.screenshot_path(draft.index)

    def _question(self, draft: Draft, question: str) -> Grounded:
        grounded = self.grounder.ask(question, draft.screenshot)
        draft.add_model(grounded)
        if grounded.answer is not None:
            answer = Answer(text=grounded.answer)
            data = action_to_dict(answer)
            draft.actions.append(ActionRecord(model=data, device=data, call=draft.call, verdict="final"))
            draft.summary = grounded.answer
        return grounded

    def _swipe(self, draft: Draft, start: Direction | Target, end: Target | None, seconds: float) -> None:
        if end is None:
            if not isinstance(start, str) or start not in ("up", "down", "left", "right"):
                raise SetupError(
                    f"swipe() takes a direction (up, down, left, right) or two targets, not {start!r}"
                )
            a, b = _across(Size(*draft.screenshot.size), start)  # type: ignore[arg-type]
        else:
            a, b = self._resolve(start, draft), self._resolve(end, draft)
            if self.env.platform != "mobile":  # a mouse drags with its left button held
                self._act(draft, [Drag(x=a.x, y=a.y, x2=b.x, y2=b.y, seconds=seconds)])
                return
        self._act(draft, [Swipe(x=a.x, y=a.y, x2=b.x, y2=b.y, seconds=seconds)])

    def _scroll(self, draft: Draft, direction: Direction, at: Target | None, amount: int) -> None:
        if direction not in ("up", "down", "left", "right"):
            raise SetupError(f"scroll() takes up, down, left or right, not {direction!r}")
        point = None if at is None else self._resolve(at, draft)
        if self.env.platform == "mobile":  # the finger moves against the direction to reveal
            opposite = {"up": "down", "down": "up", "left": "right", "right": "left"}[direction]
            a, b = _across(Size(*draft.screenshot.size), opposite, around=point)  # type: ignore[arg-type]
            self._act(draft, [Swipe(x=a.x, y=a.y, x2=b.x, y2=b.y)])
            return
        pixels = amount if direction in ("up", "left") else -amount  # positive reveals what is above or left
        axis: Literal["vertical", "horizontal"] = "vertical" if direction in ("up", "down") else "horizontal"
        where = {} if point is None else {"x": point.x, "y": point.y}
        self._act(draft, [Scroll(pixels=pixels, axis=axis, **where)])


class _Continuing(Environment):
    """The session's environment as the agent loop sees it: ``reset`` only looks, so the agent carries on
    from the screen the script left (a sandbox's app is not restarted). Only reset, observe and execute are
    used by the loop."""

    platform = "desktop"
    name = "session"

    def __init__(self, inner: Environment) -> None:
        self.inner = inner

    def _reset(self) -> None:
        pass

    def _observe(self) -> Observation:
        return self.inner.observe()

    def _execute(self, action: Action) -> None:
        self.inner.execute(action)


def _nothing() -> Generator[Step, None, None]:
    yield from ()


def _non_default(button: str) -> str:
    return "" if button == "left" else repr(button)


def _as_point(target: Point | tuple[int, int]) -> Point:
    try:
        x, y = target
        if isinstance(x, bool) or isinstance(y, bool) or not isinstance(x, int) or not isinstance(y, int):
            raise TypeError
    except (TypeError, ValueError):
        raise SetupError(f"a target is words or a point (x, y) in whole pixels, not {target!r}") from None
    return Point(x, y)


def _checked(verb: str, make: Callable[[], T]) -> T:
    """``make()``, the action a verb's arguments describe; a bad argument is a one-line :class:`SetupError`."""
    try:
        return make()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SetupError(f"{verb}(): {where}: {first['msg']}, not {first.get('input')!r}") from None


def _across(screen: Size, direction: str, *, around: Point | None = None) -> tuple[Point, Point]:
    """A swipe of a third of the screen in ``direction`` through ``around`` (default: the middle)."""
    cx, cy = around if around is not None else (screen.width // 2, screen.height // 2)
    dx, dy = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}[direction]
    half_w, half_h = screen.width // 6, screen.height // 6

    def clamp(x: int, y: int) -> Point:
        return Point(min(max(x, 0), screen.width - 1), min(max(y, 0), screen.height - 1))

    return clamp(cx - dx * half_w, cy - dy * half_h), clamp(cx + dx * half_w, cy + dy * half_h)


def _is_yes(answer: str) -> bool:
    return answer.strip().lower().lstrip("\"'").startswith(("yes", "true"))


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, ScreenpilotError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())
