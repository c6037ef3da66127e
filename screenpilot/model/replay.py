"""A model that replays recorded answers and records what it was shown.

Sources: a JSON Lines file with one ``{"output": "...", "task": "..."}`` object per answer (``task``
optional; entries without one are used, in order, by any episode), or a recorded run folder (its
trajectory's raw outputs, in order).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from screenpilot.errors import SetupError
from screenpilot.jsonl import read_prepared
from screenpilot.model.base import Completion, Message, ModelBackendError, Usage


def _answer(obj: dict[str, Any], where: str) -> tuple[str | None, str]:
    """``(task, output)`` of one line of a replay file."""
    task = obj.get("task")
    if not isinstance(obj.get("output"), str):
        raise SetupError(f'{where}: expected an object with an "output" string')
    if task is not None and not isinstance(task, str):
        raise SetupError(f'{where}: "task" must be a string')
    return task, obj["output"]


class ReplayExhausted(ModelBackendError):
    """The replay source has no answer left for this episode."""


class ReplayModel:
    def __init__(self, answers: Sequence[tuple[str | None, str]], *, name: str = "replay") -> None:
        self.name = name
        self._shared: deque[str] = deque(out for task, out in answers if task is None)
        self._by_task: dict[str, deque[str]] = {}
        for task, out in answers:
            if task is not None:
                self._by_task.setdefault(task, deque()).append(out)
        self._task: str | None = None
        #: Every prompt the model was shown, in order.
        self.calls: list[list[Message]] = []

    @classmethod
    def from_path(cls, path: str | Path) -> ReplayModel:
        path = Path(path)
        if path.is_dir():
            from screenpilot.agent.record import load_run

            run = load_run(path)
            answers: list[tuple[str | None, str]] = [
                (None, out) for step in run.steps for out in step.outputs
            ]
            return cls(answers, name=f"replay:{path}")
        lines = read_prepared(path, _answer)
        return cls([answer for _, answer in lines], name=f"replay:{path}")

    def begin_episode(self, task_id: str | None) -> None:
        self._task = task_id

    def complete(self, messages: Sequence[Message], *, deadline: float | None = None) -> Completion:
        t0 = time.perf_counter()
        self.calls.append(list(messages))
        queue = self._by_task.get(self._task) if self._task is not None else None
        if queue:
            text = queue.popleft()
        elif self._shared:
            text = self._shared.popleft()
        else:
            which = f" for task {self._task!r}" if self._task else ""
            raise ReplayExhausted(f"{self.name} has no answer left{which} (call {len(self.calls)})")
        return Completion(text, Usage(total_s=time.perf_counter() - t0))

    def remaining(self, task_id: str | None = None) -> int:
        extra = len(self._by_task.get(task_id, ())) if task_id else 0
        return len(self._shared) + extra

    def describe(self) -> dict[str, object]:
        return {"backend": "replay", "model": self.name}

    def close(self) -> None:
        pass
