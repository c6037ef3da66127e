"""The benchmark runner: every task of a suite, K trials each, N at a time, resumable.

Layout of a run folder::

    manifest.json                      what is needed to reproduce the run (see manifest.py)
    results.jsonl                      one line per finished episode, appended as episodes end
    summary.json                       per-task and overall numbers, rewritten at the end
    report.html                        the self-contained report (see report.py)
    episodes/<task>/trial-<k>/         each episode's trajectory (agent.record layout)

An episode is finished when its line is in ``results.jsonl``. A folder without a line (the process died or
was stopped mid-episode) is deleted and the episode run again from scratch. With ``rerun_errors``, an episode
whose line records an infrastructure error (``infra_error``) is run again as well; its new line supersedes the
old one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TextIO

from screenpilot import __version__
from screenpilot.actions.types import Action
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import EpisodeResult, Limits, Settle, StepRecord, run_episode
from screenpilot.agent.record import RunRecorder, record_episode, write_json_atomic
from screenpilot.envs.base import Environment, Observation, Platform
from screenpilot.envs.settle import SettleResult, wait_until_stable
from screenpilot.errors import MissingExtraError, ScreenpilotError, SetupError
from screenpilot.model.base import Completion, Message, ModelBackend
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.tasks.checks import CheckContext, CheckError, CheckOutcome, evaluate
from screenpilot.tasks.manifest import Manifest, sha256_text
from screenpilot.tasks.setup import TaskSetupError, launch_app, run_steps
from screenpilot.tasks.suite import Suite, Task
from screenpilot.tasks.summary import format_table, is_infra_error, summarize

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
EPISODES = "episodes"

#: Episode end reasons that mean the run, not the agent, went wrong.
INFRA_REASONS = frozenset({"device_error", "model_error", "crashed"})


# -- where environments and models come from ------------------------------------------------------------------


class EnvSource(Protocol):
    """Builds environments for workers. Tasks with equal ``key`` reuse a worker's environment."""

    def key(self, task: Task) -> Hashable: ...

    def build(self, task: Task, worker: int) -> Environment: ...


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

    def complete(self, messages: list[Message] | Any) -> Completion:
        if self._lock is None:
            return self._model.complete(messages)
        with self._lock:
            return self._model.complete(messages)

    def begin_episode(self, task_id: str | None) -> None:
        """A shared model must be stateless across episodes; nothing to select."""

    def describe(self) -> dict[str, object]:
        return self._model.describe()

    def close(self) -> None:
        """Closed by the source, once, at the end."""


class SharedModel:
    """One model for every worker; ``serialize`` guards it with a lock (local GPU models)."""

    def __init__(self, model: ModelBackend, *, serialize: bool = True) -> None:
        self.model = model
        self._view = _LockedModel(model, threading.Lock() if serialize else None)

    def describe(self) -> dict[str, Any]:
        return dict(self.model.describe())

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


# -- settings and results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSettings:
    trials: int = 1
    jobs: int = 1
    limits: Limits = field(default_factory=Limits)
    max_retries: int = 2
    dialect_options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    force: bool = False
    progress: bool = True
    #: Resuming, also run again the episodes whose line records an infrastructure error.
    rerun_errors: bool = False

    def __post_init__(self) -> None:
        if self.trials < 1 or self.jobs < 1:
            raise SetupError("--trials and --jobs must be at least 1")


@dataclass(frozen=True)
class BenchOutcome:
    out: Path
    summary: dict[str, Any]
    ran: int
    skipped: int
    interrupted: bool

    @property
    def table(self) -> str:
        return format_table(self.summary)


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
    lines = path.read_bytes().decode("utf-8").split("\n")
    lines.pop()  # what follows the last newline: nothing, or a torn line
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
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
        own = getattr(self.inner, "settle", None)
        if callable(own):
            result: SettleResult = own(timeout_s=timeout_s)
            return result
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

    def get(self, task: Task) -> Environment:
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
        return self.env

    def drop(self) -> None:
        env, self.env = self.env, None
        if env is not None:
            try:
                env.close()
            except Exception as exc:  # a dying device must not stop the run
                print(f"screenpilot: closing the environment failed: {exc}", file=sys.stderr)


# -- the runner -----------------------------------------------------------------------------------------------


class SuiteRunner:
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
        self.manifest: Manifest | None = None
        self._retired: list[SetupError] = []
        self._retired_workers: set[int] = set()

    # -- manifest ---------------------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        limits = dataclasses.asdict(self.settings.limits)
        platforms: list[Platform] = sorted(
            {"mobile" if t.env == "android" else "desktop" for t in self.suite.tasks}
        )
        return {
            "suite_sha256": self.suite.sha256,
            "model": self.models.describe(),
            "dialect": {p: self._dialect(p).describe() for p in platforms},
            "limits": limits,
            "max_retries": self.settings.max_retries,
            "seed": self.settings.seed,
        }

    def _dialect(self, platform: Platform) -> Qwen25VLDialect:
        return Qwen25VLDialect.for_platform(platform, **dict(self.settings.dialect_options))

    # -- run --------------------------------------------------------------------------------------------------
    def run(self) -> BenchOutcome:
        settings = self.settings
        self.out.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest.open(
            self.out,
            self.fingerprint(),
            {
                "suite": {
                    "path": str(self.suite.path),
                    "name": self.suite.name,
                    "sha256": self.suite.sha256,
                    "tasks": [t.id for t in self.suite.tasks],
                },
                "trials": settings.trials,
                "jobs": settings.jobs,
                "seeds": {"base": settings.seed},
                "command": sys.argv,
            },
            force=settings.force,
        )
        repair_results(self.out)
        finished = {
            (r["task"], int(r["trial"]))
            for r in read_results(self.out)
            if not (settings.rerun_errors and is_infra_error(r))
        }
        pending: queue.Queue[tuple[Task, int]] = queue.Queue()
        total = 0
        skipped = 0
        for trial in range(1, settings.trials + 1):
            for task in self.suite.tasks:
                total += 1
                if (task.id, trial) in finished:
                    skipped += 1
                    continue
                pending.put((task, trial))
        earlier = [r for r in read_results(self.out) if (r["task"], int(r["trial"])) in finished]
        self._done = skipped
        self._successes = sum(
            1
            for r in earlier
            if r["success"]
            and int(r["trial"]) <= settings.trials
            and r["task"] in {t.id for t in self.suite.tasks}
        )
        self._open_bar(total, skipped)
        jobs = min(settings.jobs, max(1, pending.qsize()))
        ran = [0]
        interrupted = False
        workers = list(range(jobs))
        try:
            # Rounds: a worker that retired (no device) may hand back an episode after the others found the
            # queue empty and left; the healthy workers then go again.
            while workers and not pending.empty() and not self.stop.is_set():
                threads = [
                    threading.Thread(
                        target=self._worker, args=(i, pending, ran), name=f"bench-worker-{i}", daemon=True
                    )
                    for i in workers
                ]
                for t in threads:
                    t.start()
                try:
                    while any(t.is_alive() for t in threads):
                        for t in threads:
                            t.join(0.1)
                except KeyboardInterrupt:
                    interrupted = True
                    self.stop.set()
                    print(
                        "\nscreenpilot: stopping after the current step (Ctrl-C again to abort)",
                        file=self.stream,
                    )
                    for t in threads:
                        t.join()
                workers = [i for i in workers if i not in self._retired_workers]
        finally:
            if self._bar is not None:
                self._bar.close()
        if self.stop.is_set():
            interrupted = True
        summary = self.write_summary()
        if self._retired and not pending.empty():
            left = pending.qsize()
            raise SetupError(
                f"{self._retired[0]} ({left} episode{'s' if left != 1 else ''} not run; "
                "run the same command again to resume)"
            )
        return BenchOutcome(self.out, summary, ran[0], skipped, interrupted)

    def write_summary(self) -> dict[str, Any]:
        ids = [t.id for t in self.suite.tasks]
        lines = [
            r for r in read_results(self.out) if r["task"] in ids and int(r["trial"]) <= self.settings.trials
        ]
        summary = summarize(lines, ids)
        summary["suite"] = self.suite.name
        summary["trials"] = self.settings.trials
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

    def _worker(self, worker: int, pending: queue.Queue[tuple[Task, int]], ran: list[int]) -> None:
        slot = _Slot(self.envs, worker)
        try:
            while not self.stop.is_set():
                try:
                    task, trial = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    line = self.run_episode(task, trial, slot)
                except _Stopped:
                    return
                except _WorkerRetired as exc:
                    pending.put((task, trial))
                    with self._lock:
                        self._retired.append(exc.error)
                        self._retired_workers.add(worker)
                    print(f"\nscreenpilot: worker {worker} stopped: {exc.error}", file=self.stream)
                    return
                except BaseException:
                    self.stop.set()
                    raise
                self._append(line)
                with self._lock:
                    ran[0] += 1
        finally:
            slot.drop()

    def _append(self, line: dict[str, Any]) -> None:
        with self._lock:
            with open(self.out / RESULTS, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._done += 1
            self._successes += bool(line["success"])
            if self._bar is not None:
                self._bar.update(1)
                self._update_bar()

    # -- one episode ------------------------------------------------------------------------------------------
    def run_episode(self, task: Task, trial: int, slot: _Slot) -> dict[str, Any]:
        """Set up, run, check and tear down one episode; returns its result line. Never raises for a task's
        own failure: errors are recorded in the line."""
        folder = episode_dir(self.out, task.id, trial)
        if folder.exists():
            shutil.rmtree(folder)
        started = time.time()
        t_start = time.perf_counter()
        phases: dict[str, float] = {}
        error: str | None = None
        result: EpisodeResult | None = None
        check: CheckOutcome | None = None
        setup_log: list[str] = []
        env: Environment | None = None
        model: ModelBackend | None = None
        broken = False
        infra = False  # the run, not the agent, went wrong: device, model, crash or setup
        try:
            t0 = time.perf_counter()
            env = slot.get(task)
            observation = env.reset()
            setup_log = run_steps(
                task.setup, env, base_dir=self.suite.base_dir, phase="setup", wait=self.stop.wait
            )
            if task.app and env.name != "sandbox":  # a sandbox starts its app itself at each reset
                launch_app(env, task.app)
                setup_log.append(f"launch {task.app}")
            if self.settle is not None and (task.setup or task.app):
                self.settle(env)
            if task.setup or task.app:
                observation = env.observe()
            phases["setup_s"] = time.perf_counter() - t0

            if self.stop.is_set():
                raise _Stopped()

            dialect = self._dialect(env.platform)
            space = dialect.coordinate_space(observation.size)
            prompt_sha = sha256_text(dialect.system_prompt(space))
            device = {"worker": slot.worker, "env": env.describe(), "screen": str(observation.size)}
            assert self.manifest is not None
            self.manifest.add_device({**device, "model_image": str(space.model), "prompt_sha256": prompt_sha})

            model = self.models.episode_model(slot.worker)
            model.begin_episode(task.id)
            agent = Agent(model, dialect, max_retries=self.settings.max_retries)
            limits = self.settings.limits
            if task.max_steps is not None:
                limits = dataclasses.replace(limits, max_steps=task.max_steps)
            if task.max_seconds is not None:
                limits = dataclasses.replace(limits, max_seconds=task.max_seconds)
            meta = {
                "screenpilot": __version__,
                "goal": task.goal,
                "task": task.id,
                "trial": trial,
                "suite": self.suite.name,
                "started": started,
                "env": env.describe(),
                "model": self.models.describe(),
                "dialect": dialect.describe(),
                "limits": dataclasses.asdict(limits),
                "prompt_sha256": prompt_sha,
                "setup": setup_log,
                "seed": self.settings.seed,
            }
            recorder = RunRecorder(folder, meta, overwrite=True)
            episode = run_episode(
                PreparedEnv(env, observation),
                agent,
                task.goal,
                limits=limits,
                settle=self.settle,
                keep_screenshots=int(self.settings.dialect_options.get("keep_images", 0) or 0) > 0,
            )
            result = record_episode(episode, recorder, self._check_stop)
            if result.reason in INFRA_REASONS:
                error = f"{result.reason}: {result.error}"
                broken = result.reason == "device_error"
                infra = True
            else:
                t0 = time.perf_counter()
                ctx = CheckContext(task, env, result, folder, self.suite.base_dir)
                check = evaluate(task.success, ctx)
                phases["check_s"] = time.perf_counter() - t0
        except _Stopped:
            if model is not None:
                self.models.release(model)
            self._teardown(task, env)
            raise
        except _WorkerRetired:
            raise
        except CheckError as exc:
            error = f"check: {exc}"
        except TaskSetupError as exc:
            error = str(exc)
            broken = infra = True
        except ScreenpilotError as exc:
            error = f"{type(exc).__name__}: {exc}"
            broken = infra = True
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            broken = infra = True
        if model is not None:
            self.models.release(model)
        t0 = time.perf_counter()
        teardown_error = self._teardown(task, env)
        if task.teardown:
            phases["teardown_s"] = time.perf_counter() - t0
        if broken or teardown_error:
            slot.drop()

        if result is not None:
            phases.update({k: round(v, 4) for k, v in result.timings.model_dump().items()})
        line: dict[str, Any] = {
            "task": task.id,
            "trial": trial,
            "success": bool(check is not None and check.passed and error is None),
            "agent_status": result.status if result is not None else None,
            "agent_reason": result.reason if result is not None else None,
            "answer": result.answer if result is not None else None,
            "steps": result.steps if result is not None else 0,
            "duration_s": round(time.perf_counter() - t_start, 4),
            "error": error,
            "infra_error": infra,
            "teardown_error": teardown_error,
            "check": check.to_dict() if check is not None else None,
            "phases": {k: round(v, 4) for k, v in phases.items()},
            "worker": slot.worker,
            "started": started,
            "folder": str(folder.relative_to(self.out)) if folder.exists() else None,
        }
        return line

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

    def _check_stop(self, record: StepRecord) -> None:
        if self.stop.is_set():
            raise _Stopped()


def run_suite(
    suite: Suite,
    out: Path,
    envs: EnvSource,
    models: ModelSource,
    settings: BenchSettings | None = None,
    *,
    settle: Settle | None = None,
    stream: TextIO | None = None,
) -> BenchOutcome:
    """Run ``suite`` into ``out`` (resuming what is there). See :class:`SuiteRunner`."""
    return SuiteRunner(
        suite, out, envs, models, settings or BenchSettings(), settle=settle, stream=stream
    ).run()
