"""The sandbox with a MiniWoB++ page in Chromium on it: one browser per sandbox, reused across episodes."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from screenpilot.actions.coords import Size
from screenpilot.envs.base import Environment
from screenpilot.envs.desktop.sandbox import SandboxEnv
from screenpilot.errors import DeviceError, SetupError
from screenpilot.tasks.miniwob.browser import Browser, PageState, check_browser
from screenpilot.tasks.miniwob.suite import TASK_AREA, ZOOM, task_pages
from screenpilot.tasks.suite import Task


class MiniwobEnv(SandboxEnv):
    """A sandbox whose screen is the MiniWoB++ task area, ``zoom`` times magnified (480x630 at zoom 3).

    Before each reset it is told the task and seed (:meth:`begin_task`); the reset loads that task's page
    afresh with the seed, so the same seed gives the same task instance. The page's instruction is the goal,
    and the page itself ends the episode: its verdict or its time limit (:meth:`task_ended`).
    """

    def __init__(self, zoom: int = ZOOM, **options: Any) -> None:
        width, height = TASK_AREA
        super().__init__(size=Size(width * zoom, height * zoom), **options)
        self.zoom = zoom
        self._browser = Browser(zoom, TASK_AREA)
        self._pages = task_pages()
        self._next: tuple[str, int] | None = None
        self._page: PageState | None = None

    # -- the task ---------------------------------------------------------------------------------------------
    def begin_task(self, task: Task, seed: int) -> None:
        """The next reset loads ``task`` (a MiniWoB++ task name) with ``seed``."""
        if task.id not in self._pages:
            raise SetupError(f"{task.id!r} is not a MiniWoB++ task of the installed miniwob package")
        self._next = (task.id, seed)
        self._page = None

    def task_goal(self) -> str:
        """The instruction the page drew for this episode."""
        return self._current().utterance

    def task_ended(self) -> str | None:
        state = self._browser.state()
        if not state.get("done"):
            return None
        why = state.get("reason") or ("the task's verdict" if state.get("raw_reward") else "no reward")
        return f"the page ended the episode: raw reward {state.get('raw_reward')} ({why})"

    def task_result(self) -> dict[str, Any]:
        """What the episode's result line records: the task, seed, instruction, time limit and reward."""
        page = self._current()
        state = self._browser.state()
        return {
            "task": page.task,
            "seed": page.seed,
            "utterance": page.utterance,
            "time_limit_s": page.time_limit_s,
            "done": bool(state.get("done")),
            "raw_reward": float(state.get("raw_reward") or 0.0),
            "reward": float(state.get("reward") or 0.0),
            "reward_reason": state.get("reason"),
        }

    def _current(self) -> PageState:
        if self._page is None:
            raise DeviceError("no MiniWoB++ episode is running: begin_task and reset first")
        return self._page

    # -- life cycle -------------------------------------------------------------------------------------------
    def _reset(self) -> None:
        if self._next is None:
            raise SetupError("choose the MiniWoB++ task first (begin_task)")
        super()._reset()
        self._browser.ensure(self._xvfb.environ())
        name, seed = self._next
        self._page = self._browser.start_episode(self._pages[name].path, name, seed)
        self._wait_stable(self.settle_timeout_s, interval_s=0.05)

    def _close(self) -> None:
        try:
            self._browser.close()
        finally:
            super()._close()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        width, height = TASK_AREA
        info.update(
            {
                "app": "miniwob",
                "zoom": self.zoom,
                "task_area": f"{width}x{height} CSS px at the page's top left, the whole screen",
                "browser": f"chromium {self._browser.version}" if self._browser.version else "chromium",
            }
        )
        return info


class MiniwobEnvSource:
    """Bench workers' environments for the MiniWoB++ suite: one sandbox and browser per worker, kept for every
    task (the key is the same for all)."""

    def __init__(self, zoom: int = ZOOM) -> None:
        self.zoom = zoom

    def key(self, task: Task) -> Hashable:
        return "miniwob"

    def build(self, task: Task, worker: int) -> Environment:
        return MiniwobEnv(zoom=self.zoom)


@dataclass(frozen=True)
class MiniwobWorkerEnvs:
    """``make_envs`` for Ray workers (:class:`~screenpilot.tasks.ray_executor.RayPlan`): run on the worker's
    node, it checks that Chromium, its driver and selenium are there (a one-line :class:`SetupError` otherwise,
    which refuses the run before any episode), then gives the worker its own sandbox and browser."""

    zoom: int = ZOOM

    def __call__(self, worker: int) -> MiniwobEnvSource:
        check_browser()
        return MiniwobEnvSource(self.zoom)
