"""The parts of ``screenpilot run`` around the episode: the run folder, signals, progress lines and the report.

Run folders are created atomically, before anything is loaded, so two runs never share one and a bad ``--out``
is a one-line usage error. SIGTERM and SIGHUP stop a run the way Ctrl-C does: the episode ends ``interrupted``,
``result.json`` is written, the environment and the model are closed, and the exit status is 128 + the signal.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from screenpilot import __version__
from screenpilot.agent.agent import Agent
from screenpilot.agent.folders import RunFolder
from screenpilot.agent.loop import EpisodeResult, Limits, StepRecord, run_episode
from screenpilot.agent.policy import Policy
from screenpilot.agent.record import TRAJECTORY, RunRecorder, record_episode
from screenpilot.cli import wiring
from screenpilot.errors import ScreenpilotError, SetupError
from screenpilot.model.dialects import describe_dialect
from screenpilot.model.spec import redact_url
from screenpilot.settings import Settings

#: The signals that stop a run cleanly besides SIGINT (which Python already turns into KeyboardInterrupt).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
#: The most characters of an error shown on a step line.
STEP_ERROR_CHARS = 200


class StopSignal(KeyboardInterrupt):
    """A signal asked the run to stop; it unwinds like Ctrl-C, so every ``finally`` and recorder runs."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`StopSignal` (once: later ones are ignored while the
    run cleans up). Signals someone chose to ignore (``nohup``) stay ignored; handlers are restored after."""
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    chosen = [s for s, handler in previous.items() if handler is signal.SIG_DFL]

    def stop(signum: int, frame: FrameType | None) -> None:
        for s in chosen:
            signal.signal(s, signal.SIG_IGN)
        raise StopSignal(signum)

    for s in chosen:
        signal.signal(s, stop)
    try:
        yield
    finally:
        for s in chosen:
            signal.signal(s, previous[s])


def say(text: str, *, quiet: bool) -> None:
    """A progress line on stderr, so the first seconds of a run are never silent (nothing with ``--quiet``)."""
    if not quiet:
        progress_line(text)


def progress_line(text: str) -> None:
    """Write a line to stderr. When its reader has gone (``2>&1 | head``), the run stops as a command does
    on SIGPIPE, but the way Ctrl-C stops it: the episode ends ``interrupted`` and everything is kept."""
    try:
        print(text, file=sys.stderr, flush=True)
    except BrokenPipeError:
        raise StopSignal(signal.SIGPIPE) from None


def starting_line(env: str | None) -> str:
    """What the user is told while an environment starts."""
    return {
        "sandbox": "starting the sandbox display…",
        "android": "connecting to the Android device…",
        "desktop": "opening this desktop…",
    }.get(env or "", f"starting the {env} environment…")


def opening_line(settings: Settings, *, with_model: bool = True) -> str:
    """What the user is told while a session opens: its model loads, then its environment starts (one line,
    since both happen inside one call), the model's address without a password."""
    starting = starting_line(settings.env)
    return f"loading model {redact_url(settings.model)}, then {starting}" if with_model else starting


def write_run_report(folder: Path, *, quiet: bool) -> None:
    """Write ``report.html`` into the run folder and say where; if that fails, say how to make it later."""
    from screenpilot.tasks.report import write_report

    try:
        path = write_report(folder)
    except Exception as exc:
        print(
            f"screenpilot: report not written ({type(exc).__name__}: {exc}); try: screenpilot report {folder}",
            file=sys.stderr,
        )
        return
    say(f"report: {path}", quiet=quiet)


def counted(n: int, noun: str) -> str:
    """``1 step``, ``2 steps``: a count with its noun, for the lines people read."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def one_line(text: str, limit: int = STEP_ERROR_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def step_line(record: StepRecord) -> str:
    """The progress line of one step: its actions (with why one failed), model time and tries."""
    parts = []
    for a in record.actions:
        fields = " ".join(f"{k}={v}" for k, v in a.device.items() if k != "action")
        text = f"{a.device['action']} {fields}".strip()
        if not (a.executed or a.verdict == "final"):
            flag = "failed" if a.verdict == "approve" else a.verdict
            text += f" [{flag}: {one_line(a.error)}]" if a.error else f" [{flag}]"
        parts.append(text)
    if not parts:
        parts.append("no action: " + (one_line(record.errors[-1]) if record.errors else "unknown"))
    else:  # a usable answer came after len(outputs) - 1 unusable ones; later errors came from acting
        acting = record.errors[max(len(record.outputs) - 1, 0) :]
        if acting and not any(a.error for a in record.actions):
            parts.append(f"then: {one_line(acting[-1])}")  # e.g. the device failed while settling
    t = record.timings
    tries = sum(u.tries for u in record.usage)
    model = f"model {t.model_s:.2f}s" + (f", {tries} tries" if tries > 1 else "")
    return f"step {record.index}: {'; '.join(parts)}  ({model}, execute {t.execute_s:.2f}s)"


def run_task(settings: Settings, task: str, policy: Policy, folder: RunFolder, *, quiet: bool) -> int:
    """Run ``task`` once, recorded in ``folder``; the exit status of ``screenpilot run``.

    0 success, 1 the episode ended otherwise (or recording failed: what was written is kept), 2 setup error,
    130 Ctrl-C, 143 SIGTERM, 129 SIGHUP, 141 the progress lines' reader went away (each with ``result.json``
    saying ``interrupted``).
    """
    with stop_on_signals():
        try:
            result = _recorded_episode(settings, task, policy, folder.path, quiet=quiet)
        except StopSignal as exc:
            print(f"screenpilot: {exc} (run folder: {folder.path})", file=sys.stderr)
            return exc.exit_status
        except KeyboardInterrupt:
            print(f"screenpilot: interrupted (run folder: {folder.path})", file=sys.stderr)
            return 130
        except SetupError:
            raise  # exit status 2, like any other setup error
        except ScreenpilotError as exc:
            print(f"screenpilot: error: {exc} (recorded in {folder.path})", file=sys.stderr)
            return 1
        finally:
            if not (folder.path / TRAJECTORY).exists():
                folder.discard_if_unused()
    try:
        _print_result(result)
        print(f"run folder: {folder.path}", file=sys.stderr)
    except BrokenPipeError:  # the reader went away; the run is done and recorded, its report still due
        write_run_report(folder.path, quiet=True)
        raise
    write_run_report(folder.path, quiet=quiet)
    return 0 if result.status == "success" else 1


def _print_result(result: EpisodeResult) -> None:
    line = (
        f"{result.status}: {result.reason} after {counted(result.steps, 'step')} in {result.duration_s:.1f}s"
    )
    if result.answer is not None:
        line += f"; answer: {result.answer}"
    if result.error:
        line += f" ({result.error})"
    print(line)


def _recorded_episode(
    settings: Settings, task: str, policy: Policy, out: Path, *, quiet: bool
) -> EpisodeResult:
    """Build the model and the environment, run the episode into ``out``, close both whatever happens."""
    say(f"loading model {redact_url(settings.model)}…", quiet=quiet)
    model = wiring.build_model(settings)
    try:
        say(starting_line(settings.env), quiet=quiet)
        env = wiring.build_env(settings)
    except BaseException:
        model.close()
        raise
    try:
        dialect = wiring.make_dialect(settings, env.platform, model=model)
        agent = Agent(model, dialect, max_retries=settings.max_retries)
        limits = Limits(
            max_steps=settings.max_steps,
            max_seconds=settings.max_seconds,
            max_failed_steps=settings.max_failed_steps,
        )
        meta: dict[str, Any] = {
            "screenpilot": __version__,
            "goal": task,
            "started": time.time(),
            "env": env.describe(),
            "model": model.describe(),
            "dialect": describe_dialect(dialect),
            "limits": limits.__dict__,
            "policy": type(policy).__name__,
            "settings": settings.describe(),
        }
        recorder = RunRecorder(out, meta)
        model.begin_episode(None)
        episode = run_episode(
            env,
            agent,
            task,
            limits=limits,
            policy=policy,
            settle=wiring.make_settle(settings),
            keep_screenshots=settings.keep_images > 0,
        )
        return record_episode(episode, recorder, None if quiet else _print_step)
    finally:
        env.close()
        model.close()


def _print_step(record: StepRecord) -> None:
    progress_line(step_line(record))
