"""A session's steps, written into its run folder the moment each one ends (the format of ``screenpilot run``).

A :class:`Draft` collects what one scripted call did (the model's answers, the actions and their verdicts, what
went wrong); :class:`StepWriter` numbers it and records it, screenshot and all, fsynced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from screenpilot.agent.loop import (
    MAX_RECORDED_ERROR,
    MAX_RECORDED_OUTPUT,
    ActionRecord,
    Step,
    StepRecord,
    Timings,
    clip_text,
)
from screenpilot.agent.record import SCREENS, RunRecorder
from screenpilot.envs.settle import screen_digest
from screenpilot.errors import ScreenpilotError
from screenpilot.model.base import Usage
from screenpilot.session.grounding import Grounded


@dataclass
class Draft:
    """One scripted call as it happens; becomes one line of ``trajectory.jsonl``."""

    index: int
    call: str
    screenshot: Image.Image
    started: float = field(default_factory=time.time)
    model_screen: tuple[int, int] | None = None
    outputs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    summary: str | None = None
    failed: bool = False
    timings: Timings = field(default_factory=Timings)
    written: bool = False

    def add_model(self, grounded: Grounded) -> None:
        """Keep the model's answers (and their errors and costs) for this step."""
        self.model_screen = tuple(grounded.space.model)  # type: ignore[assignment]
        self.outputs += [clip_text(c.output, MAX_RECORDED_OUTPUT) for c in grounded.calls]
        self.errors += [c.error for c in grounded.calls if c.error]
        self.usage += [c.usage for c in grounded.calls]
        self.time(model_s=grounded.model_s)

    def time(self, **seconds: float) -> None:
        """Add ``seconds`` to the step's timings (``model_s=``, ``execute_s=``...)."""
        self.timings = self.timings + Timings(**seconds)

    def fail(self, error: BaseException | str) -> None:
        """Mark the step failed with ``error`` (an exception is shown as its message)."""
        if isinstance(error, BaseException):
            plain = isinstance(error, ScreenpilotError | KeyboardInterrupt)
            error = str(error) if plain and str(error) else f"{type(error).__name__}: {error}"
        self.errors.append(error)
        self.failed = True

    def record(self) -> StepRecord:
        screen = self.screenshot.size
        return StepRecord(
            index=self.index,
            started=self.started,
            screen=screen,
            model_screen=self.model_screen or screen,
            screen_digest=screen_digest(self.screenshot),
            outputs=self.outputs,
            errors=[clip_text(e, MAX_RECORDED_ERROR) for e in self.errors],
            actions=self.actions,
            summary=self.summary,
            failed=self.failed,
            timings=self.timings,
            usage=self.usage,
        )


class StepWriter:
    """Numbers a session's steps and writes each one into the run folder."""

    def __init__(self, recorder: RunRecorder) -> None:
        self.recorder = recorder
        self.steps = 0
        self.timings = Timings()

    @property
    def folder(self) -> Path:
        return self.recorder.folder

    def draft(self, call: str, screenshot: Image.Image) -> Draft:
        """A draft for the next step."""
        return Draft(self.steps + 1, call, screenshot)

    def screenshot_path(self, index: int) -> str:
        """Where step ``index``'s screenshot is (or will be) saved."""
        return str(self.folder / SCREENS / f"step-{index:04d}.png")

    def write(self, draft: Draft) -> StepRecord:
        """Record ``draft`` (once); raises :class:`~screenpilot.agent.record.RecordingError` if the disk
        refuses it."""
        draft.written = True
        return self.write_step(Step(draft.record(), draft.screenshot))

    def flush(self) -> None:
        """Wait until every step written so far is on disk (the recorder writes in the background); raises
        :class:`~screenpilot.agent.record.RecordingError` if one could not be."""
        self.recorder.drain()

    def write_step(self, step: Step) -> StepRecord:
        """Record a step made elsewhere (the agent loop's), renumbered as the session's next one."""
        record = step.record.model_copy(update={"index": self.steps + 1})
        written = self.recorder.record(Step(record, step.screenshot))
        self.steps += 1
        self.timings = self.timings + record.timings
        return written
