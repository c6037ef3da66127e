"""What runs on a Ray node for ``screenpilot bench --executor ray``: the episode workers and the model actor.

An :class:`EpisodeWorker` is a long-lived actor that owns one device (an Android serial on its node, a sandbox
display, a fake screen) and runs episodes one after another with the same episode function as the local
executor (:meth:`SuiteRunner.run_episode`), into a run folder on its node. Each finished episode comes back to
the driver as its result line plus its folder (a tar archive), unless the run folder is shared by every node,
in which case the episode is written there directly. The driver alone writes ``results.jsonl``.

A :class:`ModelWorker` holds a local transformers model on one node's GPU; the episode workers of that node
call it through :class:`RemoteModel`. Nothing here imports Ray at module level: the ``ray`` extra is needed
only where Ray runs.
"""

from __future__ import annotations

import io
import os
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screenpilot.agent.loop import Settle
from screenpilot.envs.android.claim import DeviceBusyError, DeviceClaim
from screenpilot.envs.base import Environment
from screenpilot.errors import SetupError
from screenpilot.model.base import Completion, Message, ModelBackend, ModelBackendError
from screenpilot.reaper import Reaper
from screenpilot.settings import Settings
from screenpilot.tasks.runner import (
    BenchSettings,
    EnvSource,
    ModelSource,
    SharedModel,
    SuiteRunner,
    _Slot,
    _Stopped,
    _WorkerRetired,
    episode_dir,
)
from screenpilot.tasks.suite import Suite, Task

#: Environment variables of the driver that its workers get too (where the ADB server of a node listens).
FORWARDED_ENV = ("ANDROID_ADB_SERVER_HOST", "ANDROID_ADB_SERVER_PORT")


# -- what a worker needs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """Everything an episode worker needs, sent to it once. ``make_envs(worker)`` and ``make_models(worker)`` run
    on the worker's node; ``shared_out`` is a run folder every node sees at the same path (None: each
    episode's folder is sent back to the driver)."""

    worker: int
    suite: Suite
    settings: BenchSettings
    make_envs: Callable[[int], EnvSource]
    make_models: Callable[[int], ModelSource]
    make_settle: Callable[[], Settle | None]
    shared_out: str | None = None


class _WorkerRunner(SuiteRunner):
    """The episode function of the local executor, run on a Ray node: devices go back with the line."""

    def __init__(self, spec: WorkerSpec, out: Path, envs: EnvSource, models: ModelSource) -> None:
        super().__init__(spec.suite, out, envs, models, spec.settings, settle=spec.make_settle())
        self.devices: list[dict[str, Any]] = []

    def add_device(self, device: dict[str, Any]) -> None:
        if device not in self.devices:
            self.devices.append(device)


def pack_folder(folder: Path) -> bytes:
    """``folder`` as an uncompressed tar archive (screenshots are PNG already)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def unpack_folder(data: bytes, folder: Path) -> None:
    """Write the archive ``pack_folder`` made into ``folder`` (replacing what was there)."""
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        members = tar.getmembers()
        for member in members:  # only plain files and folders inside ``folder``
            name = Path(member.name)
            if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                raise ValueError(f"unexpected entry {member.name!r} in an episode archive")
        tar.extractall(folder, members=members)  # every entry was checked above


class EpisodeWorker:
    """A Ray actor that owns one device and runs episodes one after another (see the module docstring)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.runner: _WorkerRunner | None = None
        self.slot: _Slot | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._turns = threading.Condition()
        self._next = 0  # calls numbered below this one have ended and the driver holds their answers
        self._free_since: float | None = None  # when the last episode ended
        self._reaper: Reaper | None = None

    def start(self) -> dict[str, Any]:
        """Build the worker's sources; returns where it runs, or ``{"error": ...}`` (one line). What the
        worker starts from here on (X servers, browsers, apps) is ended with it should it die unclosed."""
        spec = self.spec
        self._reaper = Reaper()
        try:
            envs = spec.make_envs(spec.worker)
            models = spec.make_models(spec.worker)
        except SetupError as exc:
            return {"error": str(exc)}
        if spec.shared_out is not None:
            out = Path(spec.shared_out)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="screenpilot-ray-")
            out = Path(self._tmp.name)
        self.runner = _WorkerRunner(spec, out, envs, models)
        self.slot = _Slot(envs, spec.worker)
        return {"node": _node_id(), "host": socket.gethostname(), "pid": os.getpid()}

    def use_model(self, model: Any) -> None:
        """Run this worker's episodes on the node's model actor ``model`` (a local transformers model)."""
        assert self.runner is not None
        self.runner.models = SharedModel(RemoteModel(model), serialize=False)

    def run(self, task_id: str, trial: int, turn: int = 0) -> dict[str, Any]:
        """Run one episode once the driver has the answers of the calls numbered below ``turn`` (it keeps the
        next episode queued here while one runs: were this worker to die as that one starts, the answer of
        the one before could otherwise be lost with it). Returns ``{"line", "folder", "devices", "timing"}``,
        ``{"interrupted"}``, ``{"retired"}``, or ``{"not_started"}`` when the run was stopped before."""
        with self._turns:
            self._turns.wait_for(lambda: self._next >= turn)
        return self._run(task_id, trial)

    def received(self, turn: int) -> None:
        """The driver holds the answer of call ``turn``: the next call may start."""
        with self._turns:
            self._next = max(self._next, turn + 1)
            self._turns.notify_all()

    def _run(self, task_id: str, trial: int) -> dict[str, Any]:
        runner, slot = self.runner, self.slot
        assert runner is not None and slot is not None
        if runner.stop.is_set():
            return {"not_started": True}
        t0 = time.perf_counter()
        timing = {} if self._free_since is None else {"idle_s": t0 - self._free_since}
        task = _task(runner.suite, task_id)
        runner.devices = []
        try:
            answer: dict[str, Any] = {"line": runner.run_episode(task, trial, slot)}
        except _Stopped:
            answer = {"interrupted": True}
        except _WorkerRetired as exc:
            return {"retired": str(exc.error)}
        t1 = time.perf_counter()
        answer["folder"] = self._take_folder(episode_dir(runner.out, task.id, trial))
        self._free_since = time.perf_counter()
        timing.update(episode_s=t1 - t0, pack_s=self._free_since - t1, bytes=len(answer["folder"] or b""))
        return {**answer, "devices": runner.devices, "timing": timing}

    def _take_folder(self, folder: Path) -> bytes | None:
        """The episode's folder as an archive for the driver (removed here), or None when the run folder is
        shared (the episode is already where the driver reads it)."""
        if self.spec.shared_out is not None or not folder.exists():
            return None
        data = pack_folder(folder)
        _remove(folder)
        return data

    def request_stop(self) -> None:
        """End the running episode after its current step: it comes back as interrupted, or finished (checked,
        with its line) when that step ended it by itself, as an answer or ``terminate`` does."""
        if self.runner is not None:
            self.runner.stop.set()

    def close(self) -> None:
        """Close the device and the model; remove the node's scratch folder."""
        if self.slot is not None:
            self.slot.drop()
        if self.runner is not None:
            self.runner.models.close()
        if self._tmp is not None:
            self._tmp.cleanup()
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None


def _task(suite: Suite, task_id: str) -> Task:
    for task in suite.tasks:
        if task.id == task_id:
            return task
    raise KeyError(task_id)


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # outside Ray (tests of the worker alone)
        return socket.gethostname()


# -- the model actor --------------------------------------------------------------------------------------------


class ModelWorker:
    """A Ray actor holding one local model (a node's GPU); its calls are served one at a time."""

    def __init__(self, settings: Settings) -> None:
        from screenpilot.cli import wiring

        self.model = wiring.build_model(settings)

    def complete(self, messages: Sequence[Message], deadline: float | None) -> Completion:
        kwargs = {} if deadline is None else {"deadline": deadline}
        return self.model.complete(messages, **kwargs)

    def describe(self) -> dict[str, object]:
        return self.model.describe()

    def model_type(self) -> str | None:
        return getattr(self.model, "model_type", None)

    def name(self) -> str:
        return self.model.name


class RemoteModel:
    """A :class:`ModelBackend` whose answers come from a :class:`ModelWorker` actor on the same node."""

    def __init__(self, actor: Any) -> None:
        import ray

        self._actor = actor
        self.name = str(ray.get(actor.name.remote()))
        self._describe: dict[str, object] = ray.get(actor.describe.remote())

    def complete(self, messages: Sequence[Message], *, deadline: float | None = None) -> Completion:
        import ray

        try:
            answer: Completion = ray.get(self._actor.complete.remote(list(messages), deadline))
        except ray.exceptions.RayActorError as exc:
            raise ModelBackendError(f"the model actor was lost: {exc}") from exc
        return answer

    def begin_episode(self, task_id: str | None) -> None:
        """A shared model is stateless across episodes."""

    def describe(self) -> dict[str, object]:
        return dict(self._describe)

    def close(self) -> None:
        """The actor is the driver's to end."""


# -- where CLI workers get their devices and models --------------------------------------------------------------


class ClaimedDevices:
    """The environments of one CLI worker: the device it claimed on its node, or a display of its own."""

    def __init__(self, settings: Settings, serial: str | None) -> None:
        self.settings = settings
        self.serial = serial

    def key(self, task: Task) -> Hashable:
        if self.settings.env == "sandbox":
            return ("sandbox", task.app or self.settings.app)
        return self.settings.env

    def build(self, task: Task, worker: int) -> Environment:
        from screenpilot.cli import wiring

        app = task.app if self.settings.env == "sandbox" else None
        return wiring.build_env(self.settings, serial=self.serial, app=app)


_claims: dict[str, DeviceClaim] = {}  # serial -> claim, held for the worker process's life
_claims_lock = threading.Lock()


def claim_serial(candidates: Sequence[str]) -> str:
    """The first serial of ``candidates`` (else of every ready device) that this node's ADB server knows and
    nobody on the node is driving: the worker takes the phone's claim (the one every Android environment
    takes, see :mod:`screenpilot.envs.android.claim`) and holds it while it lives."""
    from screenpilot.envs.android.device import list_devices, server_address

    ready = [d.serial for d in list_devices() if d.state == "device"]
    wanted = [s for s in candidates if s in ready] if candidates else ready
    host, port = server_address()
    with _claims_lock:
        for serial in wanted:
            if serial in _claims:  # another worker of this process has it (claims are shared in a process)
                continue
            try:
                _claims[serial] = DeviceClaim(host, port, serial)
            except DeviceBusyError:
                continue
            return serial
    given = f" of --serial {', '.join(candidates)}" if candidates else ""
    raise SetupError(
        f"no free Android device{given} on node {socket.gethostname()} (its ADB server lists "
        f"{', '.join(ready) or 'none'}); advertise only as many 'android' resources as the node has phones"
    )


@dataclass(frozen=True)
class CliEnvs:
    """``make_envs`` for the command line: Android workers claim a phone on their node."""

    settings: Settings

    def __call__(self, worker: int) -> EnvSource:
        serial = claim_serial(self.settings.serial) if self.settings.env == "android" else None
        return ClaimedDevices(self.settings, serial)


@dataclass(frozen=True)
class CliModels:
    """``make_models`` for the command line: worker ``i`` uses server ``i`` modulo their number for all its
    episodes (its prefix cache stays warm), or a replay file."""

    settings: Settings
    servers: tuple[str, ...] = ()

    def __call__(self, worker: int) -> ModelSource:
        from screenpilot.model.spec import parse_model_spec

        if parse_model_spec(self.settings.model).kind == "local":
            return _NoModelYet(self.settings.model)
        from screenpilot.cli.suite_commands import build_model_source

        settings = self.settings
        if self.servers:
            settings = settings.replace(model=self.servers[worker % len(self.servers)])
        source: ModelSource = build_model_source(settings)
        return source


class _NoModelYet:
    """Stands in until the driver hands the worker its node's model actor (:meth:`EpisodeWorker.use_model`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def episode_model(self, worker: int) -> ModelBackend:
        raise ModelBackendError("no model actor was given to this worker")

    def release(self, model: ModelBackend) -> None:
        """Nothing is handed out."""

    def close(self) -> None:
        """Nothing to close."""


@dataclass(frozen=True)
class CliSettle:
    """``make_settle`` for the command line."""

    settings: Settings

    def __call__(self) -> Settle | None:
        from screenpilot.cli import wiring

        return wiring.make_settle(self.settings)


def forwarded_env() -> dict[str, str]:
    """The driver's :data:`FORWARDED_ENV` variables that are set."""
    return {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}
