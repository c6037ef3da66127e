"""Subcommands for task suites, reports and offline evaluation (``bench``, ``report``, ``eval``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

ParentFactory = Callable[[], argparse.ArgumentParser]


def register(
    sub: Any,
    *,
    model_options: ParentFactory,
    env_options: ParentFactory,
    loop_options: ParentFactory,
) -> None:
    """Add the suite subcommands to the ``screenpilot`` parser."""
