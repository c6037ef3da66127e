"""``screenpilot.connect``: settings, model, environment, policy, run folder and locator cache for a script.

Everything is built from one :class:`~screenpilot.settings.Settings` by ``screenpilot.cli.wiring``, exactly as
for ``screenpilot run``, so a script and the command line cannot drift apart.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from screenpilot.agent.policy import ApproveAll, Confirm, DryRun, Policy
from screenpilot.agent.record import RunRecorder
from screenpilot.envs.base import Environment
from screenpilot.errors import SetupError
from screenpilot.model.base import ModelBackend
from screenpilot.model.dialects import describe_dialect
from screenpilot.session.session import PolicyName, Session
from screenpilot.settings import ENV_NAMES, Settings

if TYPE_CHECKING:
    from screenpilot.session.locators import LocatorCache

#: Where the locator cache lives by default, relative to the running script's folder.
DEFAULT_CACHE = Path(".screenpilot") / "locators.json"

_POLICIES: dict[str, type[Policy]] = {"approve": ApproveAll, "dry_run": DryRun, "confirm": Confirm}


def connect(
    env: str | Environment,
    *,
    model: str | ModelBackend | None = None,
    out: str | Path | None = None,
    cache: str | Path | Literal[False] | None = None,
    policy: PolicyName | Policy = "approve",
    name: str | None = None,
    quiet: bool = False,
    **options: Any,
) -> Session:
    """Open a :class:`Session` on ``env`` (``"android"``, ``"desktop"``, ``"sandbox"``, ``"fake"`` or an
    :class:`~screenpilot.envs.base.Environment`) with ``model`` (a spec as on the command line: a folder, a hub
    id, ``http://…/v1``, ``replay:FILE``; or a backend instance).

    ``options`` are settings named like the command-line options (``app=``, ``screen_size=``,
    ``max_pixels=``...); a bad one is a one-line :class:`~screenpilot.settings.SettingsError`. ``out`` is the
    run folder (new or empty; default: a new ``runs/<date>-<time>``); ``cache`` the locator cache file
    (default ``.screenpilot/locators.json`` next to the running script) or ``False``; ``policy`` reviews every
    action (``"approve"``, ``"dry_run"``, ``"confirm"`` or a :class:`~screenpilot.agent.policy.Policy`).
    What the caller passed in (an environment or a backend instance) is not closed by the session.
    """
    settings = _settings(env, model, options)
    chosen = _policy(policy)
    cache_path = _cache_path(cache)
    locators = _open_cache(cache_path)  # a file that is not a cache fails before anything starts
    folder = _run_folder(out)
    try:
        backend, env_, owns = _open(settings, env, model)
    except BaseException:
        folder.discard_if_unused()
        raise
    try:
        return _session(settings, env_, backend, folder.path, chosen, locators, name, owns, quiet)
    except BaseException:
        folder.discard_if_unused()
        _close(env_, backend, owns)
        raise


def _settings(env: str | Environment, model: str | ModelBackend | None, options: dict[str, Any]) -> Settings:
    given = dict(options)
    for key in ("env", "model"):
        if key in given:
            raise SetupError(f"give {key} as connect()'s own argument, not as an option")
    if isinstance(env, str):
        if env not in ENV_NAMES:
            raise SetupError(f"unknown environment {env!r}; choose one of {', '.join(ENV_NAMES)}")
        given["env"] = env
    elif not isinstance(env, Environment):
        raise SetupError(f"env must be one of {', '.join(ENV_NAMES)} or an Environment, not {env!r}")
    if isinstance(model, str):
        given["model"] = model
    elif model is not None and not isinstance(model, ModelBackend):
        raise SetupError(
            f"model must be a model spec (a folder, hub id, URL or replay:FILE) or a backend, not {model!r}"
        )
    return Settings.from_options(given)


def _policy(policy: PolicyName | Policy) -> Policy:
    if isinstance(policy, str):
        if policy not in _POLICIES:
            raise SetupError(
                f"unknown policy {policy!r}; choose one of {', '.join(_POLICIES)} or pass a Policy"
            )
        return _POLICIES[policy]()
    if not isinstance(policy, Policy):
        raise SetupError(
            f"policy must be one of {', '.join(_POLICIES)} or have a review() method, not {policy!r}"
        )
    return policy


def default_cache_path() -> Path:
    """``.screenpilot/locators.json`` in the folder of the running script (``__main__``), else the current
    folder (an interactive session)."""
    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    base = Path(file).resolve().parent if isinstance(file, str) else Path.cwd()
    return base / DEFAULT_CACHE


def _cache_path(cache: str | Path | Literal[False] | None) -> Path | None:
    if cache is False:
        return None
    if cache is None:
        return default_cache_path()
    if isinstance(cache, str | Path) and str(cache).strip():
        return Path(cache)
    raise SetupError(f"cache must be a file path or False, not {cache!r}")


def _open_cache(path: Path | None) -> LocatorCache | None:
    """The locator cache at ``path``, read and checked now (``LocatorCacheError`` if it is not one)."""
    if path is None:
        return None
    from screenpilot.session.locators import LocatorCache

    return LocatorCache(path)


def _run_folder(out: str | Path | None) -> Any:
    from screenpilot.agent.folders import given_run_folder, new_run_folder

    if out is None:
        return new_run_folder()
    if not isinstance(out, str | Path) or not str(out).strip():
        raise SetupError(f"out must be a folder path, not {out!r}")
    return given_run_folder(Path(out))


def _open(
    settings: Settings, env: str | Environment, model: str | ModelBackend | None
) -> tuple[ModelBackend, Environment, tuple[bool, bool]]:
    """The model (checked) and the environment (reset), each built here unless the caller gave one."""
    from screenpilot.cli import wiring

    backend = model if isinstance(model, ModelBackend) else wiring.build_model(settings)
    owns = (not isinstance(env, Environment), not isinstance(model, ModelBackend))
    environment = env if isinstance(env, Environment) else None
    try:
        if environment is None:
            environment = wiring.build_env(settings)
        if owns[0] or not environment.ready:
            environment.reset()
    except BaseException:
        _close(environment, backend, owns)
        raise
    return backend, environment, owns


def _session(
    settings: Settings,
    env: Environment,
    model: ModelBackend,
    out: Path,
    policy: Policy,
    cache: LocatorCache | None,
    name: str | None,
    owns: tuple[bool, bool],
    quiet: bool,
) -> Session:
    from screenpilot import __version__
    from screenpilot.cli import wiring

    title = name or _script_name()
    meta = {
        "screenpilot": __version__,
        "goal": title,
        "kind": "session",
        "started": time.time(),
        "env": env.describe(),
        "model": model.describe(),
        "dialect": describe_dialect(wiring.make_dialect(settings, env.platform, model=model)),
        "policy": type(policy).__name__,
        "settings": settings.describe(),
        "locator_cache": None if cache is None else str(cache.path),
    }
    recorder = RunRecorder(out, meta)
    return Session(
        env, model, settings, recorder, policy=policy, cache=cache, name=title, owns=owns, quiet=quiet
    )


def _script_name() -> str:
    file = getattr(sys.modules.get("__main__"), "__file__", None)
    return f"script {Path(file).name}" if isinstance(file, str) else "python session"


def _close(env: Environment | None, model: ModelBackend, owns: tuple[bool, bool]) -> None:
    try:
        if owns[0] and env is not None:
            env.close()
    finally:
        if owns[1]:
            model.close()
