"""MiniWoB++ as a built-in suite: the task pages the ``miniwob`` package ships, run in Chromium on a sandbox.

``screenpilot bench miniwob --env sandbox`` runs the named subset :data:`DEFAULT_SUBSET`;
``miniwob:click-button,enter-text`` picks tasks, ``miniwob:all`` runs every task the package registers. Each
episode loads the task page with its seed, the agent is told the page's own instruction, and the page's own
reward decides success (see :mod:`screenpilot.tasks.miniwob.env`).
"""

from __future__ import annotations

from screenpilot.tasks.miniwob.env import MiniwobEnv, MiniwobEnvSource, MiniwobWorkerEnvs
from screenpilot.tasks.miniwob.suite import (
    DEFAULT_SUBSET,
    SUBSETS,
    ZOOM,
    is_miniwob_spec,
    load_miniwob_suite,
    reward_check,
)

__all__ = [
    "DEFAULT_SUBSET",
    "SUBSETS",
    "ZOOM",
    "MiniwobEnv",
    "MiniwobEnvSource",
    "MiniwobWorkerEnvs",
    "is_miniwob_spec",
    "load_miniwob_suite",
    "reward_check",
]
