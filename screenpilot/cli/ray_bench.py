"""``screenpilot bench --executor ray``: the options, and the executor and model source they make."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from screenpilot.errors import SetupError
from screenpilot.model.base import ModelBackend
from screenpilot.settings import Settings


def add_executor_options(p: argparse.ArgumentParser) -> None:
    """``--executor`` and the Ray options of ``screenpilot bench``."""
    g = p.add_argument_group("executor")
    g.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: threads on this machine (default); ray: long-lived workers on a Ray cluster, one per "
        "device (pip install 'screenpilot[ray]'; see docs/scale.md)",
    )
    g.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the Ray cluster to join (HOST:PORT, ray://HOST:10001 or auto; default: start a Ray here)",
    )
    g.add_argument(
        "--ray-cpus",
        type=float,
        default=None,
        help="CPUs each Ray worker reserves (default: 1; 0.25 on Android)",
    )
    g.add_argument("--ray-memory", type=int, metavar="MB", help="memory each Ray worker reserves, in MB")
    g.add_argument(
        "--ray-model-gpus",
        type=float,
        default=1.0,
        help="a local model runs as one Ray actor per node, shared by the node's workers, on this many GPUs "
        "(default: 1; 0 runs it on the CPU)",
    )
    g.add_argument(
        "--ray-shared-out",
        action="store_true",
        help="--out is the same folder on every node (a shared file system): workers write episodes there "
        "instead of sending them back",
    )


def servers(model: str) -> tuple[str, ...]:
    """Several OpenAI-compatible servers of one model, comma-separated in ``--model``."""
    return tuple(part.strip() for part in model.split(",") if part.strip())


def bench_sources(args: argparse.Namespace, options: Settings, jobs: int) -> tuple[Any, Any]:
    """The executor (None: local threads) and the driver's model source for ``screenpilot bench``."""
    from screenpilot.cli.suite_commands import build_model_source

    urls = servers(options.model)
    if args.executor != "ray":
        if len(urls) > 1:
            raise SetupError("several --model servers (comma-separated) need --executor ray")
        return None, build_model_source(options)
    from screenpilot.model.spec import parse_model_spec

    specs = [parse_model_spec(url) for url in urls]
    if len(specs) > 1 and any(s.kind != "server" for s in specs):
        raise SetupError("only server URLs may be given several times in --model (comma-separated)")
    first = options.replace(model=urls[0]) if len(urls) > 1 else options
    local = specs[0].kind == "local"
    if len(specs) > 1:
        models: Any = _several_servers(first, tuple(str(s) for s in specs))
    else:
        models = LocalModelOnCluster(first) if local else build_model_source(first)
    try:
        executor = _executor(args, options, jobs, urls if len(urls) > 1 else (), local)
    except BaseException:
        models.close()
        raise
    return executor, models


def _several_servers(first: Settings, servers: tuple[str, ...]) -> Any:
    """The driver's model when ``--model`` names several servers of one model: the first server answers the
    start-up check here, and every server is named in its description, so the manifest's fingerprint records
    the whole set and resuming with another set is refused like any changed setting."""
    from screenpilot.cli import wiring
    from screenpilot.tasks.runner import SharedModel

    return SharedModel(wiring.build_model(first), serialize=False, servers=servers)


def _executor(
    args: argparse.Namespace, options: Settings, jobs: int, urls: tuple[str, ...], local: bool
) -> Any:
    from screenpilot.tasks.ray_executor import RayExecutor, RayPlan
    from screenpilot.tasks.ray_worker import CliModels, CliSettle

    android = options.env == "android"
    cpus = args.ray_cpus if args.ray_cpus is not None else (0.25 if android else 1.0)
    if cpus < 0 or args.ray_model_gpus < 0 or (args.ray_memory is not None and args.ray_memory < 1):
        raise SetupError("--ray-cpus and --ray-model-gpus must not be negative, --ray-memory at least 1 MB")
    plan = RayPlan(
        workers=jobs,
        make_envs=_worker_envs(args, options),
        make_models=CliModels(options, urls),
        make_settle=CliSettle(options),
        address=args.ray_address,
        num_cpus=cpus,
        memory_mb=args.ray_memory,
        resources={"android": 1.0} if android else {},
        shared_out=args.ray_shared_out,
        local_model=options if local else None,
        model_gpus=args.ray_model_gpus,
    )
    executor = RayExecutor(plan)
    try:
        executor.connect()
    except BaseException:
        executor.close()
        raise
    return executor


def _worker_envs(args: argparse.Namespace, options: Settings) -> Any:
    """Where each Ray worker gets its environments: for the built-in MiniWoB++ suite, a sandbox and a Chromium
    of its own; otherwise the device ``--env`` names (a phone it claims on its node, a display, a fake)."""
    from screenpilot.tasks.miniwob.suite import is_miniwob_spec
    from screenpilot.tasks.ray_worker import CliEnvs

    if is_miniwob_spec(args.suite):
        from screenpilot.tasks.miniwob import MiniwobWorkerEnvs

        return MiniwobWorkerEnvs()
    return CliEnvs(options)


def bench_dialect(options: Settings, model: ModelBackend | None) -> str:
    """The run's dialect: from ``model`` when it is loaded here, else from a local checkpoint's
    ``config.json`` (a Ray run loads it on the nodes), else ``--dialect`` or the default."""
    from screenpilot.cli import wiring
    from screenpilot.model.dialects import dialect_for_model_type

    if model is not None or options.dialect:
        return wiring.dialect_name(options, model)
    config = Path(options.model).expanduser() / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None
    return dialect_for_model_type(model_type) or wiring.dialect_name(options)


class LocalModelOnCluster:
    """The driver's view of a local model that Ray runs on the nodes (one model actor per node)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"name": s.model, "backend": "transformers", "placement": "one Ray model actor per node"} | {
            k: v for k, v in (("dtype", s.dtype), ("max_new_tokens", s.max_new_tokens)) if v is not None
        }

    def episode_model(self, worker: int) -> ModelBackend:
        raise SetupError("a local model on Ray runs on the nodes, not in the driver")

    def release(self, model: ModelBackend) -> None:
        """Nothing is handed out here."""

    def close(self) -> None:
        """The model actors end with the run."""
