"""Real X servers and a real Tk window for the desktop tests.

The demo app writes what it receives as JSON lines; :class:`DemoLog` reads them, waiting briefly because
the app handles X events asynchronously after the environment has sent them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from screenpilot.actions.types import Click
from screenpilot.envs.base import Environment
from screenpilot.envs.desktop import SandboxEnv
from screenpilot.envs.desktop.xvfb import XvfbDisplay

#: Tests that drive a real X server (all but the pure ones) are skipped where Xvfb or xclip is missing.
HAVE_X = shutil.which("Xvfb") is not None and shutil.which("xclip") is not None
PURE_MODULES = {"test_keys.py", "test_monitor_frame.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAVE_X:
        return
    skip = pytest.mark.skip(reason="needs Xvfb and xclip (apt install xvfb xclip)")
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here and item.path.name not in PURE_MODULES:
            item.add_marker(skip)


DEMO = f"{sys.executable} -m screenpilot.envs.desktop.demo_app"

Event = dict[str, Any]


class DemoLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def all(self) -> list[Event]:
        if not self.path.exists():
            return []
        # The app may be writing its last line right now: only lines a newline ends are complete.
        complete = self.path.read_text(encoding="utf-8").split("\n")[:-1]
        return [json.loads(line) for line in complete if line.strip()]

    def mark(self) -> None:
        """Only events after this point count from now on."""
        self.offset = len(self.all())

    def new(self) -> list[Event]:
        return self.all()[self.offset :]

    def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float = 5.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.new()
            if predicate(events):
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"the demo app did not receive what was expected; it saw: {events}")
            time.sleep(0.02)

    def wait_event(self, kind: str, timeout: float = 5.0, **match: Any) -> Event:
        def found(events: list[Event]) -> bool:
            return any(e["event"] == kind and all(e.get(k) == v for k, v in match.items()) for e in events)

        events = self.wait_for(found, timeout)
        return next(e for e in events if e["event"] == kind and all(e.get(k) == v for k, v in match.items()))

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.new() if e["event"] == kind]


@pytest.fixture(scope="module")
def demo_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxEnv, DemoLog]]:
    """One sandbox running the demo app, shared by a test module (a reset costs ~0.8 s)."""
    log = DemoLog(tmp_path_factory.mktemp("demo") / "events.jsonl")
    env = SandboxEnv(app=f"{DEMO} --log {log.path}")
    try:
        env.reset()
        log.wait_event("ready")
        yield env, log
    finally:
        env.close()


#: A spot of the demo window outside every widget; a middle click there is the tests' barrier.
SYNC_POINT = (695, 495)


def sync(env: Environment, log: DemoLog) -> None:
    """Wait until the app has handled everything sent so far, then count only later events.

    X delivers a client's events in order, so once the app logs this click it has logged all before it.
    """
    log.mark()
    env.execute(Click(x=SYNC_POINT[0], y=SYNC_POINT[1], button="middle"))
    log.wait_event("release", button=2, x=SYNC_POINT[0], y=SYNC_POINT[1])
    log.mark()


@pytest.fixture
def barrier() -> Callable[[Environment, DemoLog], None]:
    return sync


@pytest.fixture
def sandbox_app(demo_sandbox: tuple[SandboxEnv, DemoLog]) -> tuple[SandboxEnv, DemoLog]:
    env, log = demo_sandbox
    sync(env, log)
    return env, log


@pytest.fixture(scope="module")
def test_display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[XvfbDisplay, DemoLog]]:
    """A separate Xvfb with the demo app on it, standing in for a user's desktop."""
    log = DemoLog(tmp_path_factory.mktemp("desk") / "events.jsonl")
    with XvfbDisplay() as display:
        app = subprocess.Popen(
            [sys.executable, "-m", "screenpilot.envs.desktop.demo_app", "--log", str(log.path)],
            env=display.environ(),
            start_new_session=True,
        )
        try:
            log.wait_event("ready", timeout=20)
            yield display, log
        finally:
            app.terminate()
            app.wait(timeout=5)
