"""A sandbox running the demo app, and an oracle model that sees it, for the scripting tests."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.session.oracle import Oracle

HAVE_X = shutil.which("Xvfb") is not None and shutil.which("xclip") is not None
needs_x = pytest.mark.skipif(not HAVE_X, reason="needs Xvfb and xclip (apt install xvfb xclip)")

DEMO = f"{sys.executable} -m screenpilot.envs.desktop.demo_app"


@dataclass
class Demo:
    """The demo app's command line for a layout, its event log and the oracle reading that log."""

    log: Path
    oracle: Oracle
    layout: str = "default"

    @property
    def app(self) -> str:
        return f"{DEMO} --log {self.log} --layout {self.layout}"

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.oracle.events() if kind is None or e["event"] == kind]

    def wait_for(self, kind: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The first ``kind`` event with ``match``ing fields (the app handles X events asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events(kind):
                if all(event.get(k) == v for k, v in match.items()):
                    return event
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} event like {match}; the app saw: {self.events()}")
            time.sleep(0.02)

    def centre(self, widget: str) -> tuple[int, int]:
        x, y, w, h = self.oracle.screen()["widgets"][widget]
        return x + w // 2, y + h // 2


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    log = tmp_path / "events.jsonl"
    with Oracle(log) as oracle:
        yield Demo(log, oracle)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    complete = path.read_text(encoding="utf-8").split("\n")[:-1]  # the last line may still be being written
    return [json.loads(line) for line in complete if line.strip()]
