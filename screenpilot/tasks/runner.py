"""The benchmark runner: every task of a suite, K trials each, N at a time, resumable.

Layout of a run folder::

    manifest.json                      what is needed to reproduce the run (see manifest.py)
    results.jsonl                      one line per finished episode, appended as episodes end
    summary.json                       per-task, per-tag and overall numbers, rewritten at the end
    .lock                              held (flock) by the process using the folder
    report.html                        the self-contained report (see report.py)
    episodes/<task>/trial-<k>/         each episode's trajectory (agent.record layout)

An episode is finished when its line is in ``results.jsonl``. A folder without a line (the process died or
was stopped mid-episode) is deleted and the episode run again from scratch. With ``rerun_errors``, an episode
whose line records an infrastructure error (``infra_error``) is run again as well; its new line supersedes the
old one.

One process at a time uses a run folder (:class:`~screenpilot.tasks.manifest.FolderLock`). A run stops early,
keeping what finished, when a signal asks it to (SIGINT, SIGTERM, SIGHUP: the running episodes end after their
current step, are recorded as ``interrupted`` in their folder and in ``summary.json``, and get no result line;
one whose current step ended it by itself, as an answer or ``terminate`` does, is finished and recorded as usual)
or when its episodes keep ending on the same infrastructure error (``BenchSettings.same_error_limit`` in a row),
which no further episode would escape. ``summary.json`` says how many episodes were planned and finished and
whether the run is complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TextIO, runtime_checkable

from screenpilot import __version__
from screenpilot.actions.types import Action
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import Episode, EpisodeResult, Limits, Settle, run_episode
from screenpilot.agent.record import RESULT, RunRecorder, record_episode, write_json_atomic
from screenpilot.envs.base import Environment, Observation, Platform
from screenpilot.envs.settle import SettleResult, SupportsSettle, wait_until_stable
from screenpilot.errors import MissingExtraError, ScreenpilotError, SetupError
from screenpilot.jsonl import read_lines
from screenpilot.model.base import Completion, Message, ModelBackend
from screenpilot.model.dialect import Dialect
from screenpilot.model.dialects import DEFAULT_DIALECT, describe_dialect, make_dialect
from screenpilot.model.spec import redact_url
from screenpilot.tasks.checks import CheckContext, CheckError, CheckOutcome, evaluate
from screenpilot.tasks.manifest import FolderLock, Manifest, redact_argv, sha256_text
from screenpilot.tasks.setup import TaskSetupError, launch_app, run_steps
from screenpilot.tasks.suite import Suite, Task
from screenpilot.tasks.summary import completion, format_table, is_infra_error, summarize

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
EPISODES = "episodes"

#: Episode end reasons that mean the run, not the agent, went wrong.
INFRA_REASONS = frozenset({"device_error", "model_error", "crashed"})

#: Signals that stop a run; the exit status is 128 + the signal's number.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# -- where environments and models come from ------------------------------------------------------------------


class EnvSource(Protocol):
    """Builds environments for workers. Tasks with equal ``key`` reuse a worker's environment."""

    def key(self, task: Task) -> Hashable: ...

    def build(self, task: Task, worker: int) -> Environment: ...


@runtime_checkable
class TaskHost(Protocol):
    """An environment that runs the task itself, as a MiniWoB++ page does: it is told each episode's task and
    seed before its reset, gives the goal it drew for that seed, may end the episode on its own (its own time
    limit, its own verdict: checked after each step), and reports what the result line records under
    ``task_result`` (its reward, the goal, the time it allowed)."""

    def begin_task(self, task: Task, seed: int) -> None: ...

    def task_goal(self) -> str: ...

    def task_ended(self) -> str | None:
        """Why the task ended by itself, or None while it runs."""
        ...

    def task_result(self) -> dict[str, Any]: ...


def episode_seed(base: int, trial: int) -> int:
    """The seed of trial ``trial`` (from 1) of every task: ``--seed`` for the first trial, then one more each."""
    return base + trial - 1


class ModelSource(Protocol):
    """Hands each episode a model. A stateful model (replay) needs one per episode; a big one is shared."""

    def describe(self) -> dict[str, Any]: ...

    def episode_model(self, worker: int) -> ModelBackend: ...

    def release(self, model: ModelBackend) -> None:
        """The episode that got ``model`` is over."""
        ...

    def close(self) -> None: ...


class _LockedModel:
    """A shared model whose calls are serialised (one GPU, one generate at a time)."""

    def __init__(self, model: ModelBackend, lock: threading.Lock | None) -> None:
        self._model = model
        self._lock = lock
        self.name = model.name

    def complete(self, messages: Sequence[Message], *, deadline: float | None = None) -> Completion:
        kwargs = {} if deadline is None else {"deadline": deadline}
        if self._lock is None:
            return self._model.complete(messages, **kwargs)
        with self._lock:
            return self._model.complete(messages, **kwargs)

    def begin_episode(self, task_id: str | None) -> None:
        """A shared model must be stateless across episodes; nothing to select."""

    def describe(self) -> dict[str, object]:
        return self._model.describe()

    def close(self) -> None:
        """Closed by the source, once, at the end."""


class SharedModel:
    """One model for every worker; ``serialize`` guards it with a lock (local GPU models). ``servers``: every
    server of this model when a run uses several (its workers each keep to one); :meth:`describe` lists them,
    so the manifest's fingerprint holds the whole set."""

    def __init__(self, model: ModelBackend, *, serialize: bool = True, servers: Sequence[str] = ()) -> None:
        self.model = model
        self.servers = tuple(servers)
        self._view = _LockedModel(model, threading.Lock() if serialize else None)

    def describe(self) -> dict[str, Any]:
        described = dict(self.model.describe())
        if self.servers:
            described["servers"] = [redact_url(server) for server in self.servers]
        return described

    def episode_model(self, worker: int) -> ModelBackend:
        return self._view

    def release(self, model: ModelBackend) -> None:
        """Shared: stays open until :meth:`close`."""

    def close(self) -> None:
        self.model.close()


class ModelPerEpisode:
    """A fresh model for every episode, from ``factory`` (replay models keep per-episode state)."""

    def __init__(self, factory: Callable[[], ModelBackend]) -> None:
        self.factory = factory
        self._first = factory()

    def describe(self) -> dict[str, Any]:
        return dict(self._first.describe())

    def episode_model(self, worker: int) -> ModelBackend:
        return self.factory()

    def release(self, model: ModelBackend) -> None:
        if model is not self._first:
            model.close()

    def close(self) -> None:
        self._first.close()


class Executor(Protocol):
    """Runs a run's planned episodes somewhere other than this process's threads (a Ray cluster).

    ``run`` takes episodes from the runner's queue, runs each with :meth:`SuiteRunner.run_episode` where
    its device is, and hands every finished line to the runner (:meth:`SuiteRunner.record`), which alone
    writes ``results.jsonl``; it returns when the queue is empty or ``runner.stop`` is set.
    """

    def run(self, runner: SuiteRunner, ran: list[int]) -> None: ...


# -- settings and results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSettings:
    trials: int = 1
    jobs: int = 1
    limits: Limits = field(default_factory=Limits)
    max_retries: int = 2
    #: The dialect's name in screenpilot.model.dialects, and the options every dialect takes.
    dialect: str = DEFAULT_DIALECT
    dialect_options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    force: bool = False
    progress: bool = True
    #: Resuming, also run again the episodes whose line records an infrastructure error.
    rerun_errors: bool = False
    #: Stop the run when this many episodes in a row end on the same infrastructure error (0: never).
    same_error_limit: int = 3
    #: After SIGTERM or SIGHUP, how long running episodes get to reach the end of a step before their
    #: environments are closed under them.
    stop_grace_s: float = 5.0

    def __post_init__(self) -> None:
        if self.trials < 1 or self.jobs < 1:
            raise SetupError("--trials and --jobs must be at least 1")
        if self.same_error_limit < 0 or self.stop_grace_s < 0:
            raise SetupError("same_error_limit and stop_grace_s must not be negative")


@dataclass(frozen=True)
class BenchOutcome:
    """What a run did: ``ran`` episodes finished now, ``skipped`` finished before. ``signal`` is the signal
    that stopped it (``interrupted``), ``stopped`` why it stopped early (a signal or a run-wide failure)."""

    out: Path
    summary: dict[str, Any]
    ran: int
    skipped: int
    interrupted: bool
    signal: int | None = None
    stopped: str | None = None

    @property
    def table(self) -> str:
        return format_table(self.summary)

    @property
    def complete(self) -> bool:
        """Every planned episode finished."""
        return bool(self.summary.get("complete", True))

    @property
    def exit_status(self) -> int:
        """128 + the signal when a signal stopped it; else 0 when complete, 1 when it stopped early."""
        if self.signal is not None:
            return 128 + self.signal
        return 0 if self.complete else 1


def prepare_out(out: Path) -> Path:
    """Create the run folder ``out`` (with its parents); a path that is not and cannot be a folder is a
    one-line :class:`SetupError`."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise SetupError(f"--out {out} is a file, not a run folder; choose a folder") from exc
    except OSError as exc:
        raise SetupError(f"cannot create the run folder {out}: {exc.strerror or exc}") from exc
    if not out.is_dir():
        raise SetupError(f"--out {out} is not a folder; choose a folder")
    return out


def episode_dir(out: Path, task_id: str, trial: int) -> Path:
    return out / EPISODES / task_id / f"trial-{trial}"


def read_results(out: Path) -> list[dict[str, Any]]:
    """Finished episodes of a run folder (the latest line of each task and trial).

    Only ``"\n"`` ends a line: the lines are written with ``ensure_ascii=False``, so a result field may hold
    U+2028, U+2029 or U+0085, which ``str.splitlines`` would also split at. A torn last line (the process died
    while writing it, so no newline ends it) is ignored; the file is never changed here (see
    :func:`repair_results`).
    """
    path = out / RESULTS
    if not path.exists():
        return []
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    # What follows the last newline is nothing, or a torn line (never decoded: it may end mid-character).
    for number, line in read_lines(path, drop_torn_tail=True):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            latest[(str(obj["task"]), int(obj["trial"]))] = obj
        except (ValueError, KeyError, TypeError) as exc:
            raise SetupError(f"{path}:{number}: not a result line ({exc})") from exc
    return list(latest.values())


def repair_results(out: Path) -> None:
    """Cut a torn last line off ``results.jsonl`` so the next append starts a clean line. Only the runner,
    which is about to append, calls this."""
    path = out / RESULTS
    if not path.exists():
        return
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(raw.rfind(b"\n") + 1)
            fh.flush()
            os.fsync(fh.fileno())


class _Stopped(Exception):
    """Raised between steps when the run is being stopped."""


def _failure_key(line: Mapping[str, Any]) -> str | None:
    """What an infrastructure error says with its standalone numbers masked (times, coordinates, counts; not
    the digits of a name such as ``t0``), so the same failure twice compares equal."""
    if not is_infra_error(line):
        return None
    return re.sub(r"\b\d+(\.\d+)?\b", "#", str(line.get("error") or ""))


class _SameErrorStreak:
    """Counts episodes in a row (in the order they end) that end on the same infrastructure error."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.count = 0
        self.error = ""

    def add(self, line: Mapping[str, Any]) -> int:
        key = _failure_key(line)
        self.count = self.count + 1 if key is not None and key == self.key else int(key is not None)
        self.key = key
        self.error = str(line.get("error") or "")
        return self.count


@contextmanager
def _signals_stop(handler: Callable[[int], None]) -> Iterator[None]:
    """While inside, SIGINT, SIGTERM and SIGHUP call ``handler`` (main thread only, where Python allows
    handlers; elsewhere nothing changes). The previous handlers are restored on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda signum, frame: handler(signum))
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _WorkerRetired(Exception):
    """The worker's environment cannot be built for a reason no retry fixes (a setup error such as a phone
    that is not connected): the worker stops and its episode goes back to the queue, unrecorded."""

    def __init__(self, error: SetupError) -> None:
        super().__init__(str(error))
        self.error = error


class PreparedEnv(Environment):
    """Wraps an environment that was already reset and set up, so ``run_episode``'s reset keeps that state.

    ``first`` is the observation taken after setup; it is the episode's first screen (no second capture).
    """

    name: ClassVar[str] = "prepared"
    platform: ClassVar[Platform] = "mobile"

    def __init__(self, inner: Environment, first: Observation | None = None) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.platform = inner.platform  # type: ignore[misc]
        self._first = first

    def _reset(self) -> None:
        pass

    def _observe(self) -> Observation:
        first, self._first = self._first, None
        return first if first is not None else self.inner.observe()

    def _execute(self, action: Action) -> None:
        self.inner.execute(action)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def settle(self, timeout_s: float | None = None) -> SettleResult:
        """Wait for the screen to stop changing: the inner environment's own ``settle`` (a faster capture
        path) where it has one, else polling its observations."""
        if isinstance(self.inner, SupportsSettle):
            return self.inner.settle(timeout_s=timeout_s)
        if timeout_s is None:
            return wait_until_stable(lambda: self.inner.observe().screenshot)
        return wait_until_stable(lambda: self.inner.observe().screenshot, timeout_s=timeout_s)


class _Slot:
    """A worker's environment, kept across episodes while tasks share its key."""

    def __init__(self, source: EnvSource, worker: int) -> None:
        self.source = source
        self.worker = worker
        self.env: Environment | None = None
        self.key: Hashable = None
        self.closed = False  # the run was aborted: no environment is built any more

    def get(self, task: Task) -> Environment:
        if self.closed:
            raise _Stopped()
        key = self.source.key(task)
        if self.env is not None and key != self.key:
            self.drop()
        if self.env is None:
            try:
                self.env = self.source.build(task, self.worker)
            except SetupError as exc:
                raise _WorkerRetired(exc) from exc
            except ScreenpilotError as exc:
                raise TaskSetupError(f"environment: {exc}") from exc
            self.key = key
            if self.closed:  # the run was aborted while this one was being built
                self.drop()
                raise _Stopped()
        return self.env

    def drop(self) -> None:
        env, self.env = self.env, None
        if env is not None:
            try:
                env.close()
            except Exception as exc:  # a dying device must not stop the run
                print(f"screenpilot: closing the environment failed: {exc}", file=sys.stderr)


@dataclass
class _EpisodeState:
    """What one episode of a run has come to so far; it ends as the episode's result line."""

    task: Task
    trial: int
    worker: int
    folder: Path
    started: float = field(default_factory=time.time)
    t_start: float = field(default_factory=time.perf_counter)
    phases: dict[str, float] = field(default_factory=dict)
    env: Environment | None = None
    model: ModelBackend | None = None
    result: EpisodeResult | None = None
    hosted: dict[str, Any] | None = None
    check: CheckOutcome | None = None
    error: str | None = None
    infra: bool = False
    """The run, not the agent, went wrong: device, model, crash or setup."""
    broken: bool = False
    """The environment is not to be trusted with another episode."""

    def fail(self, error: str) -> None:
        """The run broke the episode (and maybe the environment)."""
        self.error = error
        self.broken = self.infra = True

    def line(self, out: Path, teardown_error: str | None) -> dict[str, Any]:
        """The episode's line in ``results.jsonl``."""
        result, check = self.result, self.check
        if result is not None:
            self.phases.update({k: round(v, 4) for k, v in result.timings.model_dump().items()})
        line: dict[str, Any] = {
            "task": self.task.id,
            "trial": self.trial,
            "success": bool(check is not None and check.passed and self.error is None),
            "agent_status": result.status if result is not None else None,
            "agent_reason": result.reason if result is not None else None,
            "answer": result.answer if result is not None else None,
            "steps": result.steps if result is not None else 0,
            "duration_s": round(time.perf_counter() - self.t_start, 4),
            "error": self.error,
            "infra_error": self.infra,
            "teardown_error": teardown_error,
            "check": check.to_dict() if check is not None else None,
            "phases": {k: round(v, 4) for k, v in self.phases.items()},
            "worker": self.worker,
            "started": self.started,
            "folder": str(self.folder.relative_to(out)) if self.folder.exists() else None,
        }
        if self.hosted is not None:
            line["task_result"] = self.hosted
        return line


@dataclass(frozen=True)
class _Ready:
    """An environment set up for an episode: its first screen and the goal to give the agent."""

    env: Environment
    host: TaskHost | None
    observation: Observation
    goal: str
    setup_log: list[str]


# -- the runner -----------------------------------------------------------------------------------------------


class SuiteRunner:
    """Runs a suite into a run folder; see the module docstring. ``stop`` ends the run after the current
    step of each running episode."""

    def __init__(
        self,
        suite: Suite,
        out: Path,
        envs: EnvSource,
        models: ModelSource,
        settings: BenchSettings,
        *,
        settle: Settle | None = None,
        stream: TextIO | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.suite = suite
        self.out = Path(out)
        self.envs = envs
        self.models = models
        self.settings = settings
        self.settle = settle
        self.stream = stream or sys.stderr
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._bar: Any = None
        self._done = 0
        self._successes = 0
        self._planned = 0
        self.manifest: Manifest | None = None
        self._retired: list[SetupError] = []
        self._retired_workers: set[int] = set()
        self._pending: queue.Queue[tuple[Task, int]] = queue.Queue()
        self._running: dict[int, tuple[str, int]] = {}
        self._interrupted: dict[tuple[str, int], None] = {}
        self._slots: dict[int, _Slot] = {}
        self._streak = _SameErrorStreak()
        self.signal: int | None = None
        self.stopped: str | None = None
        self._deadline: float | None = None
        self._abort = False
        self._aborted = False
        self.executor = executor
        #: Further numbers for summary.json (an executor's own: workers lost, where episodes ran).
        self.summary_extra: dict[str, Any] = {}

    # -- manifest ---------------------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        limits = dataclasses.asdict(self.settings.limits)
        platforms: list[Platform] = sorted(
            {"mobile" if t.env == "android" else "desktop" for t in self.suite.tasks}
        )
        return {
            "suite_sha256": self.suite.sha256,
            "model": self.models.describe(),
            "dialect": {p: describe_dialect(self._dialect(p)) for p in platforms},
            "limits": limits,
            "max_retries": self.settings.max_retries,
            "seed": self.settings.seed,
        }

    def _dialect(self, platform: Platform) -> Dialect:
        return make_dialect(self.settings.dialect, platform, **dict(self.settings.dialect_options))

    def _open_manifest(self) -> Manifest:
        settings = self.settings
        suite = {
            "path": str(self.suite.path),
            "name": self.suite.name,
            "sha256": self.suite.sha256,
            "tasks": [t.id for t in self.suite.tasks],
            **self.suite.info,
        }
        extra = {
            "suite": suite,
            "trials": settings.trials,
            "jobs": settings.jobs,
            "seeds": {"base": settings.seed},
            "command": redact_argv(list(sys.argv)),
        }
        return Manifest.open(self.out, self.fingerprint(), extra, force=settings.force)

    # -- run --------------------------------------------------------------------------------------------------
    def run(self) -> BenchOutcome:
        """Run every planned episode not finished yet; returns what happened (see :class:`BenchOutcome`)."""
        prepare_out(self.out)
        with FolderLock(self.out), _signals_stop(self._on_signal):
            self.manifest = self._open_manifest()
            repair_results(self.out)
            skipped = self._plan()
            ran = [0]
            self._open_bar(self._planned, skipped)
            try:
                if self.executor is not None:
                    self.executor.run(self, ran)
                else:
                    self._run_workers(ran)
            finally:
                if self._bar is not None:
                    self._bar.close()
            summary = self.write_summary()
        if self._retired and not self._pending.empty() and not self.stop.is_set():  # no worker left
            left = self._pending.qsize()
            raise SetupError(
                f"{self._retired[0]} ({left} episode{'s' if left != 1 else ''} not run; "
                "run the same command again to resume)"
            )
        interrupted = self.signal is not None or (self.stop.is_set() and self.stopped is None)
        return BenchOutcome(self.out, summary, ran[0], skipped, interrupted, self.signal, self.stopped)

    def _plan(self) -> int:
        """Queue the episodes to run; returns how many finished before."""
        settings = self.settings
        earlier = {
            (r["task"], int(r["trial"])): r
            for r in read_results(self.out)
            if not (settings.rerun_errors and is_infra_error(r))
        }
        skipped = 0
        for trial in range(1, settings.trials + 1):
            for task in self.suite.tasks:
                self._planned += 1
                line = earlier.get((task.id, trial))
                if line is None:
                    self._pending.put((task, trial))
                    continue
                skipped += 1
                self._successes += bool(line["success"])
        self._done = skipped
        return skipped

    def _run_workers(self, ran: list[int]) -> None:
        pending = self._pending
        workers = list(range(min(self.settings.jobs, max(1, pending.qsize()))))
        # Rounds: a worker that retired (no device) may hand back an episode after the others found the
        # queue empty and left; the healthy workers then go again.
        while workers and not pending.empty() and not self.stop.is_set():
            threads = [
                threading.Thread(target=self._worker, args=(i, ran), name=f"bench-worker-{i}", daemon=True)
                for i in workers
            ]
            for t in threads:
                t.start()
            if not self._wait(threads):
                return
            workers = [i for i in workers if i not in self._retired_workers]

    def _wait(self, threads: list[threading.Thread]) -> bool:
        """Wait for the workers; False when the run was aborted (their environments closed under them)."""
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.1)
            late = self._deadline is not None and time.monotonic() > self._deadline
            if self._abort or late:
                self._abort_running()
                return False
        return True

    def _on_signal(self, signum: int) -> None:
        """First signal: stop after the current step (SIGTERM and SIGHUP: within ``stop_grace_s``). A second
        one aborts at once."""
        name = signal.Signals(signum).name
        if self.signal is not None:
            self._abort = True
            self._say(f"\nscreenpilot: {name} again: closing the running episodes now")
            return
        self.signal = signum
        self.stopped = "Ctrl-C" if signum == signal.SIGINT else name
        if signum != signal.SIGINT:
            self._deadline = time.monotonic() + self.settings.stop_grace_s
        self.stop.set()
        again = "Ctrl-C" if signum == signal.SIGINT else name
        self._say(f"\nscreenpilot: stopping after the current step ({again} again to abort)")

    def _abort_running(self) -> None:
        """Mark the running episodes interrupted and close their environments (displays, apps) from here;
        their threads are left to die with the process, and nothing they finish later is recorded."""
        with self._lock:
            self._aborted = True
            for key in self._running.values():
                self._interrupted[key] = None
        for slot in list(self._slots.values()):
            slot.closed = True
            slot.drop()

    def _say(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the terminal is gone (SIGHUP), the stream closed
            print(text, file=self.stream, flush=True)

    def write_summary(self) -> dict[str, Any]:
        """Summarise the finished episodes, with how much of the plan finished, into ``summary.json``."""
        ids = [t.id for t in self.suite.tasks]
        lines = [
            r for r in read_results(self.out) if r["task"] in ids and int(r["trial"]) <= self.settings.trials
        ]
        summary = summarize(lines, ids, {t.id: t.tags for t in self.suite.tasks})
        summary["suite"] = self.suite.name
        summary["trials"] = self.settings.trials
        planned = self._planned or len(ids) * self.settings.trials
        interrupted = [{"task": t, "trial": k} for t, k in self._interrupted]
        summary.update(completion(planned, len(lines), interrupted, self.stopped))
        summary.update(self.summary_extra)
        write_json_atomic(self.out / SUMMARY, summary)
        return summary

    def _open_bar(self, total: int, done: int) -> None:
        if not self.settings.progress:
            return
        try:
            from tqdm import tqdm
        except ImportError as exc:
            raise MissingExtraError("bench", "tqdm", "the benchmark progress bar") from exc
        self._bar = tqdm(total=total, initial=done, unit="episode", desc=self.suite.name, file=self.stream)
        self._update_bar()

    def _update_bar(self) -> None:
        if self._bar is not None:
            rate = f"{self._successes}/{self._done}" if self._done else "0/0"
            self._bar.set_postfix_str(f"success {rate}", refresh=True)

    def _worker(self, worker: int, ran: list[int]) -> None:
        slot = _Slot(self.envs, worker)
        with self._lock:
            self._slots[worker] = slot
        try:
            while not self.stop.is_set():
                try:
                    task, trial = self._pending.get_nowait()
                except queue.Empty:
                    return
                if not self._run_one(slot, task, trial, ran):
                    return
        finally:
            slot.drop()

    def _run_one(self, slot: _Slot, task: Task, trial: int, ran: list[int]) -> bool:
        """Run one episode on ``slot`` and record it; False when this worker is to stop."""
        with self._lock:
            self._running[slot.worker] = (task.id, trial)
        try:
            line = self.run_episode(task, trial, slot)
        except _Stopped:
            with self._lock:
                self._interrupted[(task.id, trial)] = None
                self._running.pop(slot.worker, None)
            return False
        except _WorkerRetired as exc:
            self._pending.put((task, trial))
            with self._lock:
                self._running.pop(slot.worker, None)
                self._retired.append(exc.error)
                self._retired_workers.add(slot.worker)
            self._say(f"\nscreenpilot: worker {slot.worker} stopped: {exc.error}")
            return False
        except BaseException:
            self.stop.set()
            raise
        if self._append(line, slot.worker):
            with self._lock:
                ran[0] += 1
        return True

    def record(self, line: dict[str, Any], worker: int) -> bool:
        """Record an episode an executor finished (see :class:`Executor`); returns whether it was recorded."""
        return self._append(line, worker)

    def _append(self, line: dict[str, Any], worker: int) -> bool:
        """Record a finished episode (not once the run was aborted); returns whether it was recorded."""
        with self._lock:
            self._running.pop(worker, None)
            if self._aborted:
                return False
            with open(self.out / RESULTS, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._done += 1
            self._successes += bool(line["success"])
            if self._bar is not None:
                self._bar.update(1)
                self._update_bar()
            else:
                self._say(self._episode_line(line))
            self._check_same_errors(line)
        return True

    def _episode_line(self, line: Mapping[str, Any]) -> str:
        """The line printed for a finished episode when there is no progress bar."""
        if line["success"]:
            verdict = "success"
        elif line.get("error"):
            verdict = f"failure, {'infrastructure ' if is_infra_error(line) else ''}error: {line['error']}"
        else:
            verdict = f"failure ({line.get('agent_reason') or 'check failed'})"
        return (
            f"[{self._done}/{self._planned}] {line['task']} trial {line['trial']}: {verdict} "
            f"({line['steps']} steps, {line['duration_s']:.1f} s; success so far {self._successes}/{self._done})"
        )

    def _check_same_errors(self, line: Mapping[str, Any]) -> None:
        """Stop the run when episodes keep ending on the same infrastructure error (called under the lock)."""
        limit = self.settings.same_error_limit
        count = self._streak.add(line)
        if not limit or count < limit or self._pending.empty() or self.stop.is_set():
            return
        self.stopped = (
            f"the last {count} episodes all ended on the same infrastructure error: {self._streak.error}"
        )
        self.stop.set()
        self._say(f"\nscreenpilot: {self.stopped}; stopping the run")

    # -- one episode ------------------------------------------------------------------------------------------
    def run_episode(self, task: Task, trial: int, slot: _Slot) -> dict[str, Any]:
        """Set up, run, check and tear down one episode; returns its result line. Never raises for a task's
        own failure: errors are recorded in the line."""
        folder = episode_dir(self.out, task.id, trial)
        if folder.exists():
            shutil.rmtree(folder)
        ep = _EpisodeState(task, trial, slot.worker, folder)
        retired: SetupError | None = None
        try:
            ready = self._set_up(ep, slot)
            if self.stop.is_set():
                raise _Stopped()
            self._play(ep, ready)
            self._judge(ep, ready.env)
        except _Stopped:
            if ep.model is not None:
                self.models.release(ep.model)
            self._teardown(task, ep.env)
            raise
        except _WorkerRetired:
            raise
        except SetupError as exc:  # found mid-episode (a server that resizes the image): no retry fixes it
            retired = exc
        except CheckError as exc:
            ep.error = f"check: {exc}"
        except TaskSetupError as exc:
            ep.fail(str(exc))
        except Exception as exc:
            ep.fail(f"{type(exc).__name__}: {exc}")
        teardown_error = self._wind_down(ep, slot)
        if retired is not None:  # the episode goes back to the queue, unrecorded, and this worker stops
            raise _WorkerRetired(retired) from retired
        return ep.line(self.out, teardown_error)

    def _set_up(self, ep: _EpisodeState, slot: _Slot) -> _Ready:
        """Reset the environment (telling a task host its task first) and run the task's setup."""
        task = ep.task
        t0 = time.perf_counter()
        env = ep.env = slot.get(task)
        host = env if isinstance(env, TaskHost) else None
        if host is not None:
            host.begin_task(task, episode_seed(self.settings.seed, ep.trial))
        observation = env.reset()
        goal = host.task_goal() if host is not None else task.goal
        setup_log = run_steps(
            task.setup, env, base_dir=self.suite.base_dir, phase="setup", wait=self.stop.wait
        )
        if task.app and env.name != "sandbox":  # a sandbox starts its app itself at each reset
            launch_app(env, task.app)
            setup_log.append(f"launch {task.app}")
        if task.setup or task.app:
            observation = self._settled_look(env)
        ep.phases["setup_s"] = time.perf_counter() - t0
        return _Ready(env, host, observation, goal, setup_log)

    def _settled_look(self, env: Environment) -> Observation:
        """The screen once the setup has settled: the stable frame the settle took where it hands one over
        (nothing touches the screen before the first step looks, as in the agent loop), else a new capture."""
        settled = self.settle(env) if self.settle is not None else None
        if settled is not None and settled.observation is not None:
            return settled.observation
        return env.observe()

    def _play(self, ep: _EpisodeState, ready: _Ready) -> None:
        """Run the agent on the prepared environment, recording every step into the episode's folder."""
        dialect = self._dialect(ready.env.platform)
        space = dialect.coordinate_space(ready.observation.size)
        prompt_sha = sha256_text(dialect.system_prompt(space))
        device = {"worker": ep.worker, "env": ready.env.describe(), "screen": str(ready.observation.size)}
        self.add_device({**device, "model_image": str(space.model), "prompt_sha256": prompt_sha})

        model = ep.model = self.models.episode_model(ep.worker)
        model.begin_episode(ep.task.id)
        agent = Agent(model, dialect, max_retries=self.settings.max_retries)
        limits = self._limits(ep.task)
        meta = self._meta(ep, ready, describe_dialect(dialect), limits, prompt_sha)
        recorder = RunRecorder(ep.folder, meta, overwrite=True)
        episode = run_episode(
            PreparedEnv(ready.env, ready.observation),
            agent,
            ready.goal,
            limits=limits,
            settle=self.settle,
            keep_screenshots=int(self.settings.dialect_options.get("keep_images", 0) or 0) > 0,
        )
        result = ep.result = record_episode(
            episode, recorder, lambda record: self._check_stop(episode, ready.host)
        )
        ep.hosted = ready.host.task_result() if ready.host is not None else None
        if result.reason == "interrupted" or self._aborted:
            self._mark_interrupted(ep.folder, result)
            raise _Stopped()

    def _limits(self, task: Task) -> Limits:
        """The run's limits, with the task's own step and time budgets where it has them."""
        limits = self.settings.limits
        if task.max_steps is not None:
            limits = dataclasses.replace(limits, max_steps=task.max_steps)
        if task.max_seconds is not None:
            limits = dataclasses.replace(limits, max_seconds=task.max_seconds)
        return limits

    def _meta(
        self, ep: _EpisodeState, ready: _Ready, dialect: dict[str, Any], limits: Limits, prompt_sha: str
    ) -> dict[str, Any]:
        """What the episode's ``run.json`` says about how it was run."""
        return {
            "screenpilot": __version__,
            "goal": ready.goal,
            "task": ep.task.id,
            "trial": ep.trial,
            "suite": self.suite.name,
            "started": ep.started,
            "env": ready.env.describe(),
            "model": self.models.describe(),
            "dialect": dialect,
            "limits": dataclasses.asdict(limits),
            "prompt_sha256": prompt_sha,
            "setup": ready.setup_log,
            "seed": self.settings.seed,
        }

    def _judge(self, ep: _EpisodeState, env: Environment) -> None:
        """An episode the run broke records why; any other gets its task's check, run on the environment now."""
        assert ep.result is not None
        if ep.result.reason in INFRA_REASONS:
            ep.error = f"{ep.result.reason}: {ep.result.error}"
            ep.broken = ep.result.reason == "device_error"
            ep.infra = True
            return
        t0 = time.perf_counter()
        ctx = CheckContext(ep.task, env, ep.result, ep.folder, self.suite.base_dir)
        ep.check = evaluate(ep.task.success, ctx)
        ep.phases["check_s"] = time.perf_counter() - t0

    def _wind_down(self, ep: _EpisodeState, slot: _Slot) -> str | None:
        """Give the model back and run the task's teardown; drops an environment that is no longer
        trustworthy. Returns the teardown's error."""
        if ep.model is not None:
            self.models.release(ep.model)
        t0 = time.perf_counter()
        teardown_error = self._teardown(ep.task, ep.env)
        if ep.task.teardown:
            ep.phases["teardown_s"] = time.perf_counter() - t0
        if ep.broken or teardown_error:
            slot.drop()
        return teardown_error

    def add_device(self, device: dict[str, Any]) -> None:
        """Record a device the run used in the manifest (once)."""
        assert self.manifest is not None
        self.manifest.add_device(device)

    def _teardown(self, task: Task, env: Environment | None) -> str | None:
        if env is None or not task.teardown:
            return None
        try:
            run_steps(task.teardown, env, base_dir=self.suite.base_dir, phase="teardown")
        except TaskSetupError as exc:
            return str(exc)
        except Exception as exc:
            return f"teardown: {type(exc).__name__}: {exc}"
        return None

    def _check_stop(self, episode: Episode, host: TaskHost | None = None) -> None:
        """Between steps: end the episode as ``interrupted`` when the run is being stopped, and as
        ``task_ended`` when the environment's own task ended (its verdict is then read by the check)."""
        if self.stop.is_set():
            episode.stop("interrupted", f"the run was stopped ({self.stopped or 'stop requested'})")
        elif host is not None and (why := host.task_ended()) is not None:
            episode.stop("task_ended", why)

    def _mark_interrupted(self, folder: Path, result: EpisodeResult) -> None:
        """An episode whose environment was closed under it (the run aborted) failed because of that: its
        ``result.json`` says interrupted, not the error the closing caused."""
        if result.reason != "interrupted":
            why = f"the run was stopped ({self.stopped or 'aborted'}) during a step"
            fixed = result.model_copy(update={"reason": "interrupted", "error": why, "status": "failure"})
            write_json_atomic(folder / RESULT, fixed.model_dump(mode="json"))


def run_suite(
    suite: Suite,
    out: Path,
    envs: EnvSource,
    models: ModelSource,
    settings: BenchSettings | None = None,
    *,
    settle: Settle | None = None,
    stream: TextIO | None = None,
    executor: Executor | None = None,
) -> BenchOutcome:
    """Run ``suite`` into ``out`` (resuming what is there). See :class:`SuiteRunner`; ``executor`` runs the
    episodes elsewhere (default: threads here, one per ``jobs``)."""
    return SuiteRunner(
        suite, out, envs, models, settings or BenchSettings(), settle=settle, stream=stream, executor=executor
    ).run()
