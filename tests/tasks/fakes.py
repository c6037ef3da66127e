"""Fakes for the task tests: FakeEnv with a real shell, files and screen text, backed by a folder."""

from __future__ import annotations

import subprocess
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from screenpilot.actions.coords import Size
from screenpilot.envs.base import ShellResult
from screenpilot.envs.fake import FakeEnv
from screenpilot.errors import DeviceError
from screenpilot.tasks.suite import Task

PHONE = Size(360, 640)


class ShellFakeEnv(FakeEnv):
    """A FakeEnv whose shell runs real commands in ``root`` and whose files live there."""

    def __init__(self, root: Path, size: Size = PHONE, **kwargs: Any) -> None:
        super().__init__(size, **kwargs)
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.text = "Home screen"
        self.commands: list[str] = []
        self.closed_count = 0

    def shell(self, command: str, *, timeout: float = 30.0) -> ShellResult:
        self.commands.append(command)
        try:
            done = subprocess.run(
                ["bash", "-c", command], cwd=self.root, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise DeviceError("shell command timed out", device="fake", command=command) from exc
        return ShellResult(done.stdout + done.stderr, done.returncode)

    def push_file(self, local: Path, remote: str) -> None:
        target = self.root / remote.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(local).read_bytes())

    def read_file(self, remote: str) -> bytes:
        try:
            return (self.root / remote.lstrip("/")).read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise DeviceError(f"cannot read {remote}: {exc.strerror}", device="fake") from exc

    def screen_text(self) -> str:
        return self.text

    def _close(self) -> None:
        self.closed_count += 1


class FakeSource:
    """Environments for the runner: one ShellFakeEnv per worker, each in its own folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: list[ShellFakeEnv] = []

    def key(self, task: Task) -> Hashable:
        return task.env

    def build(self, task: Task, worker: int) -> ShellFakeEnv:
        env = ShellFakeEnv(self.root / f"worker-{worker}")
        self.built.append(env)
        return env
