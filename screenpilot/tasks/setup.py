"""Setup and teardown steps: put the environment into the state a task starts from, and clean up after."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import assert_never

from screenpilot.envs.base import Environment, SupportsFiles, SupportsShell
from screenpilot.errors import ScreenpilotError
from screenpilot.tasks.suite import LaunchStep, PushStep, SetupStep, ShellStep, SleepStep


class TaskSetupError(ScreenpilotError):
    """A setup or teardown step failed; the episode is recorded with this error and not run."""


def launch_command(env: Environment, app: str) -> str:
    """The shell command that starts ``app`` in this kind of environment."""
    if env.platform == "mobile":
        if "/" in app:
            return f"am start -W -n {shlex.quote(app)}"
        return f"monkey -p {shlex.quote(app)} -c android.intent.category.LAUNCHER 1"
    # A desktop command, detached so the step returns at once and the app outlives the shell.
    return f"nohup sh -c {shlex.quote(app)} >/dev/null 2>&1 &"


def _shell(env: Environment, command: str, timeout: float, *, check: bool, phase: str) -> str:
    if not isinstance(env, SupportsShell):
        raise TaskSetupError(f"{phase}: the {env.name} environment cannot run shell commands ({command!r})")
    try:
        result = env.shell(command, timeout=timeout)
    except ScreenpilotError as exc:
        raise TaskSetupError(f"{phase}: {command!r} failed: {exc}") from exc
    if check and result.exit_code not in (0, None):
        tail = result.output.strip()[-300:]
        raise TaskSetupError(f"{phase}: {command!r} exited with {result.exit_code}: {tail}")
    return result.output


def run_steps(
    steps: Sequence[SetupStep],
    env: Environment,
    *,
    base_dir: Path,
    phase: str = "setup",
    wait: Callable[[float], object] = time.sleep,
) -> list[str]:
    """Run ``steps`` in order; returns a log line per step. Raises :class:`TaskSetupError` on the first failure.

    ``wait`` does the ``sleep`` steps (the runner passes one that returns early when the run is stopped).
    """
    log: list[str] = []
    for step in steps:
        t0 = time.perf_counter()
        match step:
            case ShellStep():
                _shell(env, step.shell, step.timeout, check=step.check, phase=phase)
                what = f"$ {step.shell}"
            case LaunchStep():
                launch_app(env, step.launch, phase=phase)
                what = f"launch {step.launch}"
            case PushStep():
                local = base_dir / step.push.local
                if not isinstance(env, SupportsFiles):
                    raise TaskSetupError(f"{phase}: the {env.name} environment cannot receive files")
                try:
                    env.push_file(local, step.push.remote)
                except (OSError, ScreenpilotError) as exc:
                    raise TaskSetupError(
                        f"{phase}: pushing {local} to {step.push.remote} failed: {exc}"
                    ) from exc
                what = f"push {step.push.local} -> {step.push.remote}"
            case SleepStep():
                wait(step.sleep)
                what = f"sleep {step.sleep:g}"
            case _:
                assert_never(step)
        log.append(f"{what} ({time.perf_counter() - t0:.2f}s)")
    return log


def launch_app(env: Environment, app: str, *, phase: str = "setup") -> None:
    """Start ``app``; environments with their own ``launch_app`` (e.g. Android) are asked directly."""
    own = getattr(env, "launch_app", None)
    if callable(own):
        try:
            own(app)
        except ScreenpilotError as exc:
            raise TaskSetupError(f"{phase}: launching {app!r} failed: {exc}") from exc
        return
    output = _shell(env, launch_command(env, app), 60.0, check=True, phase=phase)
    if env.platform == "mobile" and ("No activities found" in output or "Error" in output):
        raise TaskSetupError(f"{phase}: launching {app!r} failed: {output.strip()[-300:]}")
