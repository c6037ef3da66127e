"""Replaying a recorded run: the same actions at the same device points, checked by anchors, with the agent as
the fallback.

:func:`read_run` turns a run folder (from ``screenpilot run`` or a script's session) into the actions it
executed and a :class:`Recording`: an anchor for each action that has a point (a patch of the step's recorded
screenshot around it, see :mod:`screenpilot.session.anchors`), and each step's recorded call, summary and
screenshot. :class:`Replay` does those actions on a :class:`~screenpilot.session.session.Session`, one
:meth:`~screenpilot.session.session.Session.replay` step each; none of them asks the model.

When an action's anchor is not found on the screen, the replay hands over: the agent
(:meth:`~screenpilot.session.session.Session.run`) gets the recorded goal and, as its history, the steps
replayed so far; it works until its episode ends, and the replay ends with it: the recorded actions after the
mismatch are not done. Without a fallback the mismatch raises :class:`ReplayMismatch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, ValidationError

from screenpilot.actions.types import Action, Drag, Swipe, action_from_dict
from screenpilot.agent.agent import Agent, Decision
from screenpilot.agent.loop import EpisodeResult, StepRecord
from screenpilot.agent.record import load_run
from screenpilot.envs.base import Observation
from screenpilot.errors import ScreenpilotError, SetupError, TargetNotFound
from screenpilot.model.base import Completion, Message, ModelBackendError
from screenpilot.model.dialect import PastStep
from screenpilot.session.anchors import Anchor, AnchorError, find_anchor, make_anchor
from screenpilot.session.grounding import action_point

if TYPE_CHECKING:
    from screenpilot.session.session import Session

#: What the first line of an anchors file says it is.
FORMAT = "screenpilot-anchors"
VERSION = 1
#: The end of an anchors file's name, next to its script: ``flow.py`` -> ``flow.anchors.json``.
ANCHORS_SUFFIX = ".anchors.json"


class ReplayMismatch(TargetNotFound):
    """A replayed action's anchor is not on the screen and there is no model to take over. The message names
    the recorded step, its recorded screenshot and the screenshot of the screen now."""


class ReplayFailed(ScreenpilotError):
    """The agent took over a replay and its episode did not succeed (``result`` says how it ended)."""

    def __init__(self, message: str, *, result: EpisodeResult) -> None:
        super().__init__(message)
        self.result = result


class RecordedStep(BaseModel):
    """What a replay needs to know about one recorded step besides its actions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The calls of the step's executed actions as recorded (the model's tool calls, or the script's verbs).
    calls: list[str]
    #: The step's summary (the model's conclusion, or where a script found its target).
    summary: str | None = None
    #: The recorded screenshot of the step.
    screenshot: str | None = None


class Recording(BaseModel):
    """A recorded run, ready to replay: its goal, its steps and the anchors of its actions (the JSON of an
    anchors file: ``model_dump(mode="json")``; read one back with :func:`load_recording`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["screenpilot-anchors"] = "screenpilot-anchors"
    version: Literal[1] = 1
    #: The run folder it was read from.
    run: str
    #: What the agent is asked to do if it takes over.
    goal: str
    #: Recorded step number -> the step.
    steps: dict[int, RecordedStep]
    #: Anchor name (``"3"``: the first action with a point of step 3; ``"3.2"``: its second) -> anchor.
    anchors: dict[str, Anchor]


@dataclass(frozen=True)
class RecordedAction:
    """One executed action of a recorded run, in device pixels."""

    step: int
    action: Action
    #: The name of its anchor in the recording, if it has a point and an anchor could be made there.
    anchor: str | None = None
    #: Why an action with a point has no anchor (a flat or repeating region), else None.
    unanchored: str | None = None


def read_run(folder: str | Path, *, goal: str | None = None) -> tuple[Recording, list[RecordedAction]]:
    """The recording of a run folder and its executed actions, in order; anchors are cut from each step's
    recorded screenshot at its actions' points. ``goal`` overrides the recorded goal (a script's run is
    named after the script). Raises :class:`~screenpilot.errors.SetupError` for a folder that is no run, or
    a run with nothing to replay."""
    run = load_run(Path(folder).resolve())
    actions: list[RecordedAction] = []
    steps: dict[int, RecordedStep] = {}
    anchors: dict[str, Anchor] = {}
    for record in run.steps:
        done = [a for a in record.actions if a.executed]
        if not done:
            continue
        steps[record.index] = RecordedStep(
            calls=list(dict.fromkeys(a.call for a in done)),
            summary=record.summary,
            screenshot=None if record.screenshot is None else str(run.folder / record.screenshot),
        )
        actions += _anchored(run.folder, record, [action_from_dict(a.device) for a in done], anchors)
    if not actions:
        raise SetupError(f"{run.folder} has no executed action to replay")
    chosen = goal or str(run.meta.get("goal") or "").strip()
    if not chosen:
        raise SetupError(f"{run.folder}/run.json names no goal; give one with --goal")
    recording = Recording(run=str(run.folder), goal=chosen, steps=steps, anchors=anchors)
    return recording, actions


def _anchored(
    folder: Path, record: StepRecord, actions: list[Action], anchors: dict[str, Anchor]
) -> list[RecordedAction]:
    """The step's actions, with an anchor (added to ``anchors``) for each one that has a point."""
    screenshot = _screenshot(folder, record)
    out = []
    for action in actions:
        point = action_point(action)
        if point is None:
            out.append(RecordedAction(record.index, action))
            continue
        try:
            anchor = make_anchor(screenshot, point)
        except AnchorError as exc:
            out.append(RecordedAction(record.index, action, unanchored=str(exc)))
            continue
        name = str(record.index) if str(record.index) not in anchors else f"{record.index}.{len(out) + 1}"
        anchors[name] = anchor
        out.append(RecordedAction(record.index, action, anchor=name))
    return out


def _screenshot(folder: Path, record: StepRecord) -> Image.Image:
    if record.screenshot is None:
        raise SetupError(f"{folder}: step {record.index} has no screenshot to cut anchors from")
    path = folder / record.screenshot
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise SetupError(f"{path}: cannot read the screenshot of step {record.index} ({exc})") from None


def load_recording(path: str | Path) -> Recording:
    """Read an anchors file written by ``screenpilot export``; a file that is not one is a one-line
    :class:`~screenpilot.errors.SetupError` naming it."""
    path = Path(path)
    try:
        return Recording.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise SetupError(f"cannot read the anchors file {path}: {exc.strerror or exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        why = f"{where}: {first['msg']}" if where else str(first["msg"])
        raise SetupError(f"{path} is not a screenpilot anchors file ({why})") from None


def moved(action: Action, dx: int, dy: int) -> Action:
    """``action`` with every point it has moved by (``dx``, ``dy``)."""
    update: dict[str, int] = {}
    start = action_point(action)
    if start is not None:
        update |= {"x": start.x + dx, "y": start.y + dy}
    if isinstance(action, Swipe | Drag):
        update |= {"x2": action.x2 + dx, "y2": action.y2 + dy}
    return action.model_copy(update=update)


def follow(action: Action, anchor: Anchor, screenshot: Image.Image) -> tuple[Action, float] | None:
    """``action`` moved to where its anchor is on ``screenshot`` (searched near the action's point first)
    and the match's score; None when the anchor is not found there strongly and uniquely."""
    point = action_point(action)
    match = find_anchor(anchor, screenshot, near=point)
    if match is None or point is None:
        return None
    return moved(action, match.point.x - point.x, match.point.y - point.y), match.score


def action_source(action: Action) -> str:
    """The action as Python source, its non-default fields only: ``Click(x=480, y=138)``."""
    fields = action.model_dump(exclude_defaults=True)
    fields.pop("action", None)
    return f"{type(action).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


@dataclass
class Replay:
    """Recorded actions done on ``session``, with the agent as the fallback (see the module's docstring).

    ``recording`` is a :class:`Recording` or the path of an anchors file. ``fallback=False``: a mismatch
    raises :class:`ReplayMismatch` instead of handing over. ``max_steps`` bounds the agent's episode
    (default: the session's ``max_steps``).
    """

    session: Session
    recording: Recording | str | Path
    fallback: bool = True
    max_steps: int | None = None
    #: The agent's result once it has taken over (then the replay is over), else None.
    result: EpisodeResult | None = None
    #: The recorded step where the agent took over, else None.
    handed_over_at: int | None = None
    #: What the agent would be told was done so far: one entry per replayed step.
    history: list[PastStep] = field(default_factory=list)
    _last_step: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.recording, Recording):
            self.recording = load_recording(self.recording)

    @property
    def _rec(self) -> Recording:
        assert isinstance(self.recording, Recording)
        return self.recording

    @property
    def over(self) -> bool:
        """True once the agent has taken over: later :meth:`do` calls do nothing."""
        return self.result is not None

    @property
    def succeeded(self) -> bool:
        """True when every action was replayed, or the agent took over and succeeded."""
        return self.result is None or self.result.status == "success"

    def do(self, step: int, action: Action, *, anchor: str | None = None) -> bool:
        """Do recorded step ``step``'s ``action`` (device pixels), where its anchor (a name in the recording)
        is found now; False when the replay is over (the agent took over, here or before) and nothing more
        of the recording is done."""
        if self.over:
            return False
        found = None
        if anchor is not None:
            found = self._rec.anchors.get(anchor)
            if found is None:
                raise SetupError(f"the recording {self._rec.run} has no anchor named {anchor!r}")
        try:
            self.session.replay(action, anchor=found, call=f"step {step}: {action_source(action)}")
        except TargetNotFound as missing:
            self._mismatch(step, action, missing)
            return False
        self._remember(step)
        return True

    def finish(self) -> EpisodeResult | None:
        """End the replay: the agent's result when it took over (None when every action was replayed);
        raises :class:`ReplayFailed` when the agent did not succeed."""
        if self.result is not None and self.result.status != "success":
            said = f" ({self.result.error})" if self.result.error else ""
            raise ReplayFailed(
                f"the agent took over at step {self.handed_over_at} and ended with {self.result.status}: "
                f"{self.result.reason} after {self.result.steps} steps{said}",
                result=self.result,
            )
        return self.result

    def _remember(self, step: int) -> None:
        if step == self._last_step:
            return
        self._last_step = step
        recorded = self._rec.steps.get(step)
        call = "; ".join(recorded.calls) if recorded else f"step {step}"
        self.history.append(PastStep(call, recorded.summary if recorded else None))

    def _mismatch(self, step: int, action: Action, missing: TargetNotFound) -> None:
        recorded = self._rec.steps.get(step)
        was = recorded.screenshot if recorded and recorded.screenshot else "none kept"
        what = f"step {step} ({action_source(action)})"
        if not self.fallback:
            raise ReplayMismatch(
                f"{what}: its anchor is not on the screen (recorded: {was}; now: {missing.screenshot})",
                target=what,
                screenshot=None,
            ) from None
        self.handed_over_at = step
        self.result = self.session.run(self._rec.goal, max_steps=self.max_steps, history=self.history)


class NoModel:
    """The model of a replay that has none: any call fails, naming what to give instead."""

    name = "none"

    def complete(self, messages: Sequence[Message], *, deadline: float | None = None) -> Completion:
        raise ModelBackendError("this replay has no model; give one with --model to let the agent take over")

    def begin_episode(self, task_id: str | None) -> None:
        pass

    def describe(self) -> dict[str, object]:
        return {"name": self.name}

    def close(self) -> None:
        pass


@dataclass
class ResumingAgent(Agent):
    """An agent told that ``before`` was already done when its episode starts (a replay it takes over)."""

    before: tuple[PastStep, ...] = ()

    def decide(
        self,
        goal: str,
        observation: Observation,
        history: Sequence[PastStep],
        *,
        feedback: str | None = None,
        deadline: float | None = None,
    ) -> Decision:
        """The decision with ``before`` ahead of the episode's own history."""
        return super().decide(
            goal, observation, [*self.before, *history], feedback=feedback, deadline=deadline
        )


def write_recording(recording: Recording, path: Path) -> None:
    """Write ``recording`` as an anchors file (through a temporary file and a rename)."""
    from screenpilot.agent.record import write_json_atomic

    try:
        write_json_atomic(path, recording.model_dump(mode="json"))
    except OSError as exc:
        raise SetupError(f"cannot write {path}: {exc.strerror or exc}") from None


def recorded_options(meta: dict[str, Any]) -> dict[str, Any]:
    """The settings a run was recorded with that differ from the defaults (no secrets), by option name."""
    from screenpilot.settings import Settings

    recorded = meta.get("settings")
    if not isinstance(recorded, dict):
        return {}
    defaults = Settings().describe()
    return {
        k: v
        for k, v in recorded.items()
        if k in Settings.model_fields and k != "api_key" and v != defaults.get(k)
    }
