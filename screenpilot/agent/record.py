"""Run folders: every step is written the moment it happens, so a crash or Ctrl-C loses nothing recorded.

Layout of a run folder::

    run.json            what was run (goal, environment, model, dialect, prompt hash, versions)
    trajectory.jsonl    one StepRecord per line, appended and fsynced step by step
    screens/step-NNNN.png
    result.json         the EpisodeResult, written last (absent if the process died mid-episode)

Steps are written off the step's critical path, by one writer thread per recorder, in order: a step's
screenshot is saved before its trajectory line is written and fsynced, so no line ever names a screenshot that
is not on disk. :func:`record_episode` lets a step act only once every earlier step is on disk, so the
writing overlaps the next step's capture and model call but nothing is done on the device that could not be
recorded. The queue between the loop and the writer is bounded (:data:`WRITE_QUEUE` steps); it is drained
before ``result.json`` is written (also after an exception, Ctrl-C or a stop signal), and the writer
finishes what is queued when the interpreter exits without closing the recorder. Only a process killed
outright (SIGKILL, power loss) can lose queued steps, and never more than the queue holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from screenpilot.agent.loop import EndReason, Episode, EpisodeResult, Step, StepRecord
from screenpilot.errors import ScreenpilotError, SetupError
from screenpilot.jsonl import read_lines

TRAJECTORY = "trajectory.jsonl"
RESULT = "result.json"
META = "run.json"
SCREENS = "screens"
#: How many recorded steps may wait for the disk at once; the loop waits for the writer beyond that.
WRITE_QUEUE = 4


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class RecordingError(ScreenpilotError):
    """The run folder could not be written (disk full, folder gone or read-only); what was written is kept."""


@dataclass(frozen=True)
class _Pending:
    """A recorded step on its way to the disk."""

    index: int
    screenshot: Image.Image
    name: str
    line: str


class RunRecorder:
    """Writes one episode into ``folder`` as it runs.

    :meth:`record` hands a step to the recorder's writer thread and returns at once; the screenshot must not
    change afterwards (the loop never changes one). A write that fails (``ENOSPC`` and the like) raises
    :class:`RecordingError` naming the folder and the step from the next :meth:`record`, :meth:`drain` or
    :meth:`finish`; every step written before it stays readable and no later step is written.
    """

    def __init__(
        self, folder: str | Path, meta: dict[str, Any] | None = None, *, overwrite: bool = False
    ) -> None:
        self.folder = Path(folder)
        self.steps_written = 0
        self._queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=WRITE_QUEUE)
        self._writer: threading.Thread | None = None
        self._failure: RecordingError | None = None
        self._reported = False
        if (self.folder / TRAJECTORY).exists() and not overwrite:
            raise SetupError(f"{self.folder} already holds a recorded run; choose another --out folder")
        try:
            (self.folder / SCREENS).mkdir(parents=True, exist_ok=True)
            if overwrite:
                for name in (TRAJECTORY, RESULT):
                    (self.folder / name).unlink(missing_ok=True)
            write_json_atomic(self.folder / META, meta or {})
            self._fh = open(self.folder / TRAJECTORY, "a", encoding="utf-8")  # noqa: SIM115 - held for the run
        except OSError as exc:
            raise SetupError(f"cannot write the run folder {self.folder}: {exc.strerror or exc}") from exc

    def _failed(self, exc: Exception, what: str) -> RecordingError:
        kept = (
            f"the {self.steps_written} step(s) before it are kept"
            if self.steps_written
            else "no step was kept"
        )
        reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        return RecordingError(f"cannot write {what} in the run folder {self.folder}: {reason}; {kept}")

    def record(self, step: Step) -> StepRecord:
        """Queue the step's screenshot and trajectory line for the writer and return the record as it will be
        written; waits only while :data:`WRITE_QUEUE` steps are already queued."""
        self._raise_failure()
        if self._fh.closed:
            raise RecordingError(f"the run folder {self.folder} is closed; step {step.record.index} not kept")
        name = f"{SCREENS}/step-{step.record.index:04d}.png"
        record = step.record.model_copy(update={"screenshot": name})
        step.screenshot.load()  # a lazily decoded image is decoded here, not on two threads at once
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_queued, name="screenpilot-recorder")
            self._writer.start()
        self._queue.put(_Pending(step.record.index, step.screenshot, name, record.model_dump_json() + "\n"))
        return record

    def _write_queued(self) -> None:
        """The writer thread: write queued steps in order until told to stop, or until the program has ended
        (the main thread is gone) and nothing is left to write."""
        while True:
            try:
                pending = self._queue.get(timeout=0.2)
            except queue.Empty:
                if not threading.main_thread().is_alive():
                    return
                continue
            if pending is None:
                self._queue.task_done()
                return
            if self._failure is None:  # after a failed step nothing more is written: no gaps
                self._write(pending)
            self._queue.task_done()

    def _write(self, pending: _Pending) -> None:
        """Save the screenshot, then append the step's line and fsync it."""
        try:
            pending.screenshot.save(self.folder / pending.name, compress_level=1)
            self._fh.write(pending.line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except Exception as exc:
            with contextlib.suppress(OSError):  # a partial screenshot of an unrecorded step helps nobody
                (self.folder / pending.name).unlink(missing_ok=True)
            self._failure = self._failed(exc, f"step {pending.index}")
            return
        self.steps_written += 1

    def drain(self) -> None:
        """Wait until every recorded step is on disk; raises :class:`RecordingError` if one could not be.
        :func:`record_episode` calls it before each step acts, so no action is taken while an earlier step
        could still fail to be recorded (the step's work up to the model's answer overlaps the writing)."""
        if self._writer is not None:
            self._queue.join()
        self._raise_failure()

    def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join()

    def _raise_failure(self) -> None:
        if self._failure is not None and not self._reported:
            self._reported = True
            raise self._failure

    def finish(self, result: EpisodeResult | None) -> None:
        """Write what is queued, close the trajectory and then write ``result.json`` (when there is a result).
        A step that could not be written and was not reported yet is raised after ``result.json``."""
        self.close()
        if result is not None:
            try:
                write_json_atomic(self.folder / RESULT, result.model_dump(mode="json"))
            except OSError as exc:
                raise self._failed(exc, RESULT) from exc
        self._raise_failure()

    def close(self) -> None:
        """Write what is queued and close the trajectory file; a flush that fails now (the disk is full) loses
        only a torn last line."""
        self._stop_writer()
        if not self._fh.closed:
            with contextlib.suppress(OSError):
                self._fh.close()

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record_episode(
    episode: Episode,
    recorder: RunRecorder,
    on_step: Callable[[StepRecord], None] | None = None,
) -> EpisodeResult:
    """Drive ``episode`` to the end, recording each step; the result is written even on error or Ctrl-C, and
    only once every recorded step is on disk.

    When the run stops on an error, that error is raised once ``result.json`` is written (or could not be: then
    the first error is still the one raised). A step that could not be handed to the recorder is not on disk, so
    its failure is the episode's end (``crashed``, or ``interrupted`` on Ctrl-C), even for a step that ended
    the episode by itself.
    """
    episode.before_acting = recorder.drain
    recording = False  # True while a step is being handed to the recorder: what fails there loses that step
    try:
        for step in episode:
            recording = True
            record = recorder.record(step)
            recording = False
            if on_step is not None:
                on_step(record)
        recorder.drain()
    except KeyboardInterrupt as exc:
        error = str(exc) or "interrupted by the user"
        episode.stop("interrupted", error)
        if recording:
            _override_end(episode, "interrupted", error)
        _finish_after_error(recorder, episode)
        raise
    except BaseException as exc:
        error = str(exc) if isinstance(exc, RecordingError) else f"{type(exc).__name__}: {exc}"
        error = " ".join(error.split())
        episode.stop("crashed", error)
        if recording or isinstance(exc, RecordingError):
            _override_end(episode, "crashed", error)
        _finish_after_error(recorder, episode)
        raise
    recorder.finish(episode.result)
    assert episode.result is not None
    return episode.result


def _override_end(episode: Episode, reason: EndReason, error: str) -> None:
    """A step the episode ended with by itself (an answer, ``terminate``) may not be on disk: the run folder
    must not claim an end it does not hold, so the failure to record it is the end."""
    if episode.result is not None:
        episode.result = episode.result.model_copy(
            update={"status": "failure", "reason": reason, "error": error}
        )


def _finish_after_error(recorder: RunRecorder, episode: Episode) -> None:
    with contextlib.suppress(RecordingError):
        recorder.finish(episode.result)


@dataclass(frozen=True)
class RecordedRun:
    folder: Path
    meta: dict[str, Any]
    steps: list[StepRecord]
    result: EpisodeResult | None


def read_trajectory(path: Path) -> Iterable[StepRecord]:
    """Steps of a trajectory file; a torn last line (the process died while writing it, so no newline ends it)
    is skipped, and a line that is not UTF-8 or not a step record is a one-line SetupError naming it."""
    for number, line in read_lines(path, drop_torn_tail=True):
        if not line.strip():
            continue
        try:
            yield StepRecord.model_validate_json(line)
        except ValueError as exc:
            reason = " ".join(str(exc).split())[:200]
            raise SetupError(f"{path}:{number}: not a step record: {reason}") from None


def load_run(folder: str | Path) -> RecordedRun:
    folder = Path(folder)
    trajectory = folder / TRAJECTORY
    if not trajectory.exists():
        raise SetupError(f"{folder} is not a run folder (no {TRAJECTORY})")
    meta_path, result_path = folder / META, folder / RESULT
    meta = _read_json_file(meta_path) if meta_path.exists() else {}
    result = None
    if result_path.exists():
        try:
            result = EpisodeResult.model_validate(_read_json_file(result_path))
        except ValueError as exc:
            raise SetupError(f"{result_path}: not a run result: {' '.join(str(exc).split())[:200]}") from None
    return RecordedRun(folder, meta, list(read_trajectory(trajectory)), result)


def _read_json_file(path: Path) -> dict[str, Any]:
    """A JSON object file of a run folder; bad bytes or bad JSON are a one-line SetupError naming the file."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SetupError(f"{path}: not UTF-8 text (byte at offset {exc.start})") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SetupError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SetupError(f"{path}: expected a JSON object")
    return data
