"""DesktopEnv on a test Xvfb display given as $DISPLAY, standing in for the user's desktop."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from screenpilot.actions.types import Click, MouseMove, TypeText
from screenpilot.envs.conformance import check_environment
from screenpilot.envs.desktop import DesktopEnv, FailSafeError
from screenpilot.envs.desktop.clipboard import XClipboard
from screenpilot.envs.desktop.demo_app import ENTRY, centre
from screenpilot.errors import DeviceError, SetupError


@pytest.fixture
def desktop(test_display: Any, monkeypatch: pytest.MonkeyPatch, barrier: Any) -> Any:
    display, log = test_display
    monkeypatch.setenv("DISPLAY", display.name)
    env = DesktopEnv()
    env.reset()
    barrier(env, log)
    yield env, display, log
    env.close()


def test_conformance(test_display: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    display, _ = test_display
    monkeypatch.setenv("DISPLAY", display.name)
    first = check_environment(DesktopEnv)
    assert first.size == (1280, 800)


def test_clicks_and_unicode_typing_reach_the_app(desktop: Any) -> None:
    env, display, log = desktop
    x, y = centre(ENTRY)
    env.execute(Click(x=x, y=y))
    press = log.wait_event("press")
    assert (press["x"], press["y"], press["widget"]) == (x, y, "entry")
    env.execute(TypeText(text="née 東京"))
    assert log.wait_event("text", text="née 東京")
    assert env.describe()["display"] == display.name


def test_the_fail_safe_stops_the_agent_when_the_mouse_is_in_a_corner(desktop: Any) -> None:
    env, display, log = desktop
    # The user's hand: the pointer moved into the top-left corner by someone else.
    subprocess.run(["xdotool", "mousemove", "0", "0"], env=display.environ(), check=True)
    with pytest.raises(FailSafeError, match="corner") as info:
        env.execute(Click(x=400, y=300))
    assert isinstance(info.value, DeviceError)
    subprocess.run(["xdotool", "mousemove", "640", "400"], env=display.environ(), check=True)
    env.execute(Click(x=400, y=300))
    assert log.wait_event("press")["x"] == 400


def test_the_agent_itself_never_trips_the_fail_safe(desktop: Any) -> None:
    env, _, log = desktop
    env.execute(MouseMove(x=0, y=0))  # lands one pixel off the corner
    env.execute(MouseMove(x=1279, y=799))
    env.execute(Click(x=400, y=300))
    assert log.wait_event("press")["x"] == 400


def test_a_missing_display_is_a_setup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    env = DesktopEnv()
    with pytest.raises(SetupError, match="DISPLAY"):
        env.reset()
    env.close()


def test_a_missing_monitor_is_a_setup_error(test_display: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    display, _ = test_display
    monkeypatch.setenv("DISPLAY", display.name)
    env = DesktopEnv(monitor=3)
    with pytest.raises(SetupError, match="monitor 3 does not exist"):
        env.reset()
    env.close()


def test_monitor_zero_is_all_monitors_together(test_display: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    display, _ = test_display
    monkeypatch.setenv("DISPLAY", display.name)
    with DesktopEnv(monitor=0) as env:
        assert env.reset().size == (1280, 800)


def test_typing_unicode_gives_the_user_their_clipboard_back(desktop: Any) -> None:
    env, display, log = desktop
    user = XClipboard(display.name)
    user.set_text("my notes ✎")
    x, y = centre(ENTRY)
    env.execute(Click(x=x, y=y))
    env.execute(TypeText(text="ça va"))
    log.wait_for(lambda events: any(e["event"] == "text" and e["text"].endswith("ça va") for e in events))
    assert user.get_text() == "my notes ✎"
    user.close(stop_daemons=True)


def test_shell_returns_at_once_for_a_background_command_and_close_stops_it(
    test_display: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    display, _ = test_display
    monkeypatch.setenv("DISPLAY", display.name)
    env = DesktopEnv()
    try:
        t0 = time.monotonic()
        result = env.shell("sleep 302.25 & echo $!", timeout=10)
        elapsed = time.monotonic() - t0
        pid = int(result.output)
        assert os.getpgid(pid) != os.getpgid(0)  # running, in a group of its own
    finally:
        env.close()
    time.sleep(0.1)
    with contextlib.suppress(FileNotFoundError):  # gone entirely: fine
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state in "ZX", f"sleep {pid} still runs after close()"
    assert (result.exit_code, elapsed < 2.0) == (0, True)
