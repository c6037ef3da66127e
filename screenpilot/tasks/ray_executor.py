"""``screenpilot bench --executor ray``: the same run, its episodes spread over a Ray cluster.

The driver (this process) plans the run, holds the run folder and alone writes ``results.jsonl``, exactly as the
local executor does (:class:`~screenpilot.tasks.runner.SuiteRunner`), so trials, resume, ``--rerun-errors``,
the manifest, the summary, the report and the signals behave the same. What changes is where episodes run: on
long-lived :class:`~screenpilot.tasks.ray_worker.EpisodeWorker` actors, one per device, each declaring the
resources it needs (CPU, memory, and ``android: 1`` for a phone), so Ray places them where the devices are.

Faults: a worker (or its node) that dies mid-episode makes that episode an infrastructure error, retried on
another worker up to ``lost_retries`` times, then recorded as ``crashed``; the run goes on with the workers left
and ``summary.json`` says how many were lost (``ray.workers_lost``). When none is left, the run stops early
(exit status 1). A first Ctrl-C asks every worker to end its episode after the current step; a second one, or
the end of the SIGTERM grace, kills the workers: their episodes are marked interrupted, finished ones are kept.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from screenpilot.agent.loop import Settle
from screenpilot.errors import MissingExtraError, SetupError
from screenpilot.reaper import Reaper
from screenpilot.settings import Settings
from screenpilot.tasks.ray_worker import EpisodeWorker, ModelWorker, WorkerSpec, forwarded_env, unpack_folder
from screenpilot.tasks.runner import STOP_SIGNALS, EnvSource, ModelSource, SuiteRunner, episode_dir
from screenpilot.tasks.suite import Task

#: How long the workers get to start (be placed, build their model source) before the run is refused.
START_TIMEOUT_S = 300.0


def import_ray() -> Any:
    """The ``ray`` module, or a one-line :class:`MissingExtraError`."""
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("ray", "ray", "--executor ray") from exc
    return ray


@dataclass(frozen=True)
class RayPlan:
    """How a run uses the cluster. ``address`` None starts a Ray on this machine (``init`` are its
    ``ray.init`` arguments, such as ``num_cpus``); ``resources`` are each worker's custom resources
    (``{"android": 1}``); ``shared_out`` says that ``--out`` is the same folder on every node."""

    workers: int
    make_envs: Callable[[int], EnvSource]
    make_models: Callable[[int], ModelSource]
    make_settle: Callable[[], Settle | None]
    address: str | None = None
    num_cpus: float = 1.0
    memory_mb: int | None = None
    resources: Mapping[str, float] = field(default_factory=dict)
    lost_retries: int = 2
    shared_out: bool = False
    #: Episodes each worker holds queued behind its running one, so that the driver's part of an episode (its
    #: line, its folder, the progress) overlaps the next one instead of sitting between them.
    queued: int = 1
    #: The workers' CPU niceness. Ray's default for its workers, 15, puts episodes behind every other process
    #: of the node (the driver, a busy test machine), which slows them wherever the CPUs are shared.
    niceness: int = 0
    #: A local transformers model: one model actor per node with these settings, on ``model_gpus`` GPUs.
    local_model: Settings | None = None
    model_gpus: float = 1.0
    init: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Worker:
    index: int
    handle: Any
    node: str = ""
    host: str = ""
    pid: int = 0
    calls: int = 0  # ``run`` calls sent (each is numbered: the worker takes them in that order)
    flights: list[Any] = field(default_factory=list)  # its calls not yet collected, oldest (running) first


@dataclass
class _Flight:
    worker: _Worker
    task: Task
    trial: int
    started: float
    turn: int = 0


class RayExecutor:
    """Runs a :class:`SuiteRunner`'s episodes on Ray workers; see the module docstring."""

    def __init__(self, plan: RayPlan) -> None:
        if plan.workers < 1 or plan.lost_retries < 0 or plan.queued < 0:
            raise SetupError("a Ray run needs at least one worker and non-negative retry and queue counts")
        self.plan = plan
        self.ray = import_ray()
        self.workers: list[_Worker] = []
        self.lost = 0
        self._started_ray = False
        self._reaper: Reaper | None = None  # watches this process when it starts a Ray of its own
        self._attempts: dict[tuple[str, int], int] = {}
        self._flights: dict[Any, _Flight] = {}
        self._done_by_host: dict[str, int] = {}
        self._t0 = 0.0
        self.timing: dict[str, float] = {
            "episodes": 0,  # answers with timings
            "gaps": 0,  # times a worker went from one episode to its next
            "worker_idle_s": 0.0,  # how long they waited in all, between episodes
            "pack_s": 0.0,
            "driver_s": 0.0,
        }
        self.ready = threading.Event()  # set once every worker has started (tests watch it)

    # -- the cluster ------------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Join the cluster at ``address`` (or start one here) and check it can hold the workers. Call it
        before the run starts: ``ray.init`` installs its own SIGTERM handler, which the run then replaces."""
        ray = self.ray
        if not ray.is_initialized():
            kwargs = self.init_kwargs()
            if self.plan.address is not None:
                probe_address(self.plan.address)
            if self.plan.address is None:  # Ray's processes end with this one, even on kill -9
                self._reaper = Reaper()
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                self._end_reaper()
                where = self.plan.address or "a local Ray"
                raise SetupError(
                    f"cannot start or join the Ray cluster at {where}: {_first_line(exc)}"
                ) from exc
            self._started_ray = True
        self._check_capacity(ray.cluster_resources())

    def init_kwargs(self) -> dict[str, Any]:
        """``ray.init``'s arguments: join ``address``, or start a Ray here that has the devices asked for
        (this machine is then the whole cluster)."""
        kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
        if self.plan.address is not None:
            return {**kwargs, "address": self.plan.address}
        kwargs["resources"] = {k: v * self.plan.workers for k, v in self.plan.resources.items()}
        return {**kwargs, **self.plan.init}

    def _check_capacity(self, total: Mapping[str, float]) -> None:
        """Refuse a plan whose workers the cluster cannot place all at once (they would wait for ever)."""
        plan = self.plan
        need = {
            "CPU": plan.num_cpus * plan.workers,
            **{k: v * plan.workers for k, v in plan.resources.items()},
        }
        if plan.local_model is not None and plan.model_gpus:
            need["GPU"] = plan.model_gpus  # one node's model, at least
        for name, amount in need.items():
            have = float(total.get(name, 0.0))
            if amount > have + 1e-9:
                hint = (
                    f"; start each node with its phones as `ray start ... --resources '{{\"{name}\": N}}'`"
                    if name not in ("CPU", "GPU", "memory")
                    else ""
                )
                raise SetupError(f"the Ray cluster has {have:g} {name} but the run needs {amount:g}{hint}")

    def close(self) -> None:
        """End the workers (closing their devices) and the Ray this executor started."""
        ray = self.ray
        for worker in self.workers:
            with contextlib.suppress(Exception):  # a dead or stuck worker: killed below
                ray.get(worker.handle.close.remote(), timeout=10)
            ray.kill(worker.handle)
        self.workers = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        self._end_reaper()

    def _end_reaper(self) -> None:
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None

    # -- the run ----------------------------------------------------------------------------------------------
    def run(self, runner: SuiteRunner, ran: list[int]) -> None:
        """Run the runner's queued episodes on the workers (see :class:`~screenpilot.tasks.runner.Executor`)."""
        if not self.ray.is_initialized():
            self.connect()
            _take_signals(runner)
        if runner._pending.empty():
            return
        try:
            self._start_workers(runner)
            self._t0 = time.monotonic()
            self._loop(runner, ran)
        finally:
            runner.summary_extra["ray"] = self.describe()
            if self.lost:
                runner._say(f"\nscreenpilot: {self.lost} Ray worker{'s' if self.lost != 1 else ''} lost")
            self.close()

    def describe(self) -> dict[str, Any]:
        """For summary.json: workers started and lost, episodes finished per node."""
        return {
            "workers": len(self.workers) + self.lost,
            "workers_lost": self.lost,
            "nodes": self._done_by_host,
            "timing": {k: round(v, 3) for k, v in self.timing.items()},
        }

    def _start_workers(self, runner: SuiteRunner) -> None:
        ray, plan = self.ray, self.plan
        # Threads: the running episode, the queued ones waiting their turn, a stop or close request, and the
        # driver's note that it holds an answer.
        concurrency = 3 + plan.queued
        options: dict[str, Any] = {
            "num_cpus": plan.num_cpus,
            "max_concurrency": concurrency,
            "max_restarts": 0,
        }
        if plan.resources:
            options["resources"] = dict(plan.resources)
        if plan.memory_mb:
            options["memory"] = plan.memory_mb * 1024 * 1024
        env = {**forwarded_env(), "RAY_worker_niceness": str(plan.niceness)}
        options["runtime_env"] = {"env_vars": env}
        actor = ray.remote(EpisodeWorker).options(**options)
        shared = str(runner.out.resolve()) if plan.shared_out else None
        for i in range(min(plan.workers, runner._pending.qsize())):
            spec = WorkerSpec(
                i, runner.suite, runner.settings, plan.make_envs, plan.make_models, plan.make_settle, shared
            )
            self.workers.append(_Worker(i, actor.remote(spec)))
        self._await_start(runner)
        if plan.local_model is not None:
            self._start_models()
        self.ready.set()

    def _await_start(self, runner: SuiteRunner) -> None:
        ray = self.ray
        refs = [w.handle.start.remote() for w in self.workers]
        _, waiting = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT_S)
        if waiting:
            raise SetupError(
                f"{len(waiting)} of {len(refs)} Ray workers were not placed within {START_TIMEOUT_S:g} s; "
                "does the cluster have the resources they ask for?"
            )
        for worker, ref in zip(self.workers, refs, strict=True):
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise SetupError(f"a Ray worker failed to start: {_first_line(exc)}") from exc
            if "error" in info:
                raise SetupError(str(info["error"]))
            worker.node, worker.host, worker.pid = info["node"], info["host"], int(info["pid"])

    def _start_models(self) -> None:
        """One model actor per node that has workers, pinned there; the node's workers share it."""
        ray, plan = self.ray, self.plan
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        models: dict[str, Any] = {}
        for worker in self.workers:
            if worker.node not in models:
                strategy = NodeAffinitySchedulingStrategy(worker.node, soft=False)
                remote = ray.remote(ModelWorker).options(
                    num_cpus=0, num_gpus=plan.model_gpus, scheduling_strategy=strategy
                )
                models[worker.node] = remote.remote(plan.local_model)
            ray.get(worker.handle.use_model.remote(models[worker.node]))

    def _loop(self, runner: SuiteRunner, ran: list[int]) -> None:
        ray = self.ray
        told = False
        while True:
            self._fill(runner)
            if not self._flights:
                return
            running = [w.flights[0] for w in self.workers if w.flights]  # a worker's calls end in order
            done, _ = ray.wait(running, num_returns=1, timeout=0.2)
            if done:  # and any other that ended meanwhile
                done, _ = ray.wait(running, num_returns=len(running), timeout=0)
            for ref in done:  # the workers may start their queued episodes
                flight = self._flights[ref]
                flight.worker.handle.received.remote(flight.turn)
            for ref in done:
                t0 = time.perf_counter()
                self._collect(ref, runner, ran)
                self.timing["driver_s"] += time.perf_counter() - t0
            if runner.stop.is_set() and not told:
                told = True
                for worker in self.workers:
                    if worker.flights:
                        worker.handle.request_stop.remote()
            late = runner._deadline is not None and time.monotonic() > runner._deadline
            if runner._abort or late:
                self._abort(runner)
                return
            self._stop_when_none_left(runner)

    def _fill(self, runner: SuiteRunner) -> None:
        """Give every worker an episode, then one more to hold queued (``queued``) while enough are left
        for the others: near the end of the run a queued episode would wait while another worker idles."""
        while not runner._pending.empty() and not runner.stop.is_set() and self.workers:
            worker = min(self.workers, key=lambda w: len(w.flights))
            depth = len(worker.flights)
            if depth > self.plan.queued or (depth and runner._pending.qsize() < len(self.workers)):
                return
            self._dispatch(worker, runner)

    def _dispatch(self, worker: _Worker, runner: SuiteRunner) -> None:
        task, trial = runner._pending.get_nowait()
        ref = worker.handle.run.remote(task.id, trial, worker.calls)
        worker.flights.append(ref)
        self._flights[ref] = _Flight(worker, task, trial, time.time(), worker.calls)
        worker.calls += 1

    def _collect(self, ref: Any, runner: SuiteRunner, ran: list[int]) -> None:
        """Handle the finished call of a worker's running episode (its queued one starts meanwhile)."""
        ray = self.ray
        flight = self._flights.pop(ref)
        flight.worker.flights.remove(ref)
        if flight.worker.flights:  # the queued episode started when this one ended
            self._flights[flight.worker.flights[0]].started = time.time()
        key = (flight.task.id, flight.trial)
        try:
            answer = ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            self._lost(flight, runner, ran, exc)
            return
        if answer.get("not_started"):
            runner._pending.put((flight.task, flight.trial))
            return
        self._add_timing(answer.get("timing"))
        if answer.get("folder") is not None:
            unpack_folder(answer["folder"], episode_dir(runner.out, *key))
        if answer.get("retired"):
            runner._pending.put((flight.task, flight.trial))
            runner._retired.append(SetupError(str(answer["retired"])))
            runner._say(f"\nscreenpilot: worker {flight.worker.index} stopped: {answer['retired']}")
            self._drop(flight.worker, runner, close=True)
        elif answer.get("interrupted"):
            runner._interrupted[key] = None
        else:
            for device in answer.get("devices", []):
                runner.add_device({**device, "node": flight.worker.host})
            self._finish(answer["line"], flight, runner, ran)

    def _add_timing(self, timing: Mapping[str, float] | None) -> None:
        if timing is not None:
            self.timing["episodes"] += 1
            self.timing["pack_s"] += timing["pack_s"]
            if "idle_s" in timing:
                self.timing["gaps"] += 1
                self.timing["worker_idle_s"] += timing["idle_s"]

    def _finish(self, line: dict[str, Any], flight: _Flight, runner: SuiteRunner, ran: list[int]) -> None:
        line["node"] = flight.worker.host
        if runner.record(line, flight.worker.index):
            ran[0] += 1
            host = flight.worker.host
            self._done_by_host[host] = self._done_by_host.get(host, 0) + 1
            self._progress(runner)

    def _lost(self, flight: _Flight, runner: SuiteRunner, ran: list[int], exc: BaseException) -> None:
        """A worker died under its episode: retry the episode elsewhere, or record it as crashed."""
        self.lost += 1
        self._drop(flight.worker, runner)
        key = (flight.task.id, flight.trial)
        self._attempts[key] = tries = self._attempts.get(key, 0) + 1
        why = f"the Ray worker on {flight.worker.host or 'its node'} was lost: {_first_line(exc)}"
        runner._say(f"\nscreenpilot: {flight.task.id} trial {flight.trial}: {why}")
        if tries <= self.plan.lost_retries and not runner.stop.is_set():
            runner._pending.put((flight.task, flight.trial))
            return
        self._finish(_crashed_line(flight, f"crashed: {why} ({tries} tries)"), flight, runner, ran)

    def _drop(self, worker: _Worker, runner: SuiteRunner, *, close: bool = False) -> None:
        """Retire ``worker`` (a dead one is only forgotten; a live one closes its device first); the episodes
        it held queued, not started, go back to the run's queue."""
        if worker in self.workers:
            self.workers.remove(worker)
        self._requeue(worker, runner)
        if close:
            with contextlib.suppress(Exception):  # killed below either way
                self.ray.get(worker.handle.close.remote(), timeout=10)
        self.ray.kill(worker.handle)

    def _requeue(self, worker: _Worker, runner: SuiteRunner) -> None:
        for ref in worker.flights:
            flight = self._flights.pop(ref)
            runner._pending.put((flight.task, flight.trial))
        worker.flights.clear()

    def _stop_when_none_left(self, runner: SuiteRunner) -> None:
        if self.workers or runner._pending.empty() or runner.stop.is_set() or runner._retired:
            return
        runner.stopped = f"every Ray worker was lost ({self.lost})"
        runner.stop.set()
        runner._say(f"\nscreenpilot: {runner.stopped}; stopping the run")

    def _abort(self, runner: SuiteRunner) -> None:
        """Kill the workers under their episodes; those episodes are interrupted (queued ones go back to the
        run's queue), finished ones kept."""
        for worker in [w for w in self.workers if w.flights]:
            flight = self._flights.pop(worker.flights.pop(0))
            runner._interrupted[(flight.task.id, flight.trial)] = None
            self._requeue(worker, runner)
            self.ray.kill(worker.handle)
            self.workers.remove(worker)
        self._flights.clear()

    def _progress(self, runner: SuiteRunner) -> None:
        """Episodes done across the cluster, per-node throughput and the ETA (a line, or the bar's tail)."""
        minutes = max(time.monotonic() - self._t0, 1e-6) / 60
        nodes = ", ".join(f"{h} {n / minutes:.1f}/min" for h, n in sorted(self._done_by_host.items()))
        done_now = sum(self._done_by_host.values())
        left = max(runner._planned - runner._done, 0)
        eta = left / (done_now / minutes) * 60 if done_now else 0.0
        text = f"cluster: {runner._done}/{runner._planned} done; {nodes}; ETA {_duration(eta)}"
        if runner._bar is not None:
            runner._bar.set_postfix_str(text, refresh=True)
        else:
            runner._say(text)


def _crashed_line(flight: _Flight, error: str) -> dict[str, Any]:
    """The result line of an episode whose workers kept dying under it (an infrastructure error)."""
    return {
        "task": flight.task.id,
        "trial": flight.trial,
        "success": False,
        "agent_status": None,
        "agent_reason": None,
        "answer": None,
        "steps": 0,
        "duration_s": round(time.time() - flight.started, 4),
        "error": error,
        "infra_error": True,
        "teardown_error": None,
        "check": None,
        "phases": {},
        "worker": flight.worker.index,
        "started": flight.started,
        "folder": None,
    }


def probe_address(address: str, timeout_s: float = 5.0) -> None:
    """A one-line :class:`SetupError` when nothing listens at ``address`` (``HOST:PORT`` or
    ``ray://HOST:PORT``; ``auto`` is left to Ray), instead of Ray's minutes of retries."""
    rest = address.split("://", 1)[-1]
    host, _, port = rest.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise SetupError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); "
            "is `ray start --head` running there?"
        ) from exc


def _take_signals(runner: SuiteRunner) -> None:
    """After ``ray.init`` replaced them, the run's signal handlers again (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda signum, frame: runner._on_signal(signum))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[-1] if "Traceback" in text else text.splitlines()[0]


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s"
