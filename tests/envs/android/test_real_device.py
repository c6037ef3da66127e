"""Checks on a real phone or emulator; skipped unless asked for.

Run with a device attached (and unlocked, on any screen):

    python3 -m pytest tests/envs/android -m device

``ANDROID_SERIAL`` picks the device when several are connected. The tests only look, type nothing, and
press Home at the end; file checks use /data/local/tmp.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from screenpilot.actions.types import OpenApp, SystemButton, Wait
from screenpilot.envs.android import AndroidEnv
from screenpilot.envs.conformance import check_environment

pytestmark = pytest.mark.device


@pytest.fixture
def real_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[AndroidEnv]:
    monkeypatch.delenv("ADBUTILS_ADB_PATH", raising=False)  # a real server may need starting
    env = AndroidEnv()
    env.reset()
    yield env
    env.close()


def test_conformance_on_a_real_device() -> None:
    check_environment(AndroidEnv)


def test_raw_and_png_screenshots_agree(real_env: AndroidEnv) -> None:
    raw = real_env.observe()
    png = AndroidEnv(real_env.serial, capture="png")
    png.reset()
    assert png.observe().size == raw.size
    assert raw.info["capture"] == "raw"


def test_shell_files_and_screen_text(real_env: AndroidEnv, tmp_path: Path) -> None:
    assert real_env.shell("echo ok; false") == ("ok\n", 1)
    local = tmp_path / "probe.txt"
    local.write_text("screenpilot probe\n")
    real_env.push_file(local, "/data/local/tmp/screenpilot-probe.txt")
    assert real_env.read_file("/data/local/tmp/screenpilot-probe.txt") == b"screenpilot probe\n"
    real_env.shell("rm -f /data/local/tmp/screenpilot-probe.txt")
    real_env.execute(SystemButton(button="home"))
    real_env.settle()
    assert real_env.screen_text().strip()


def test_open_settings(real_env: AndroidEnv) -> None:
    real_env.execute(OpenApp(app="Settings"))
    real_env.execute(Wait(seconds=1.5))
    focus = real_env.shell("dumpsys window | grep -E 'mCurrentFocus|mFocusedApp'").output
    assert "com.android.settings" in focus
    real_env.execute(SystemButton(button="home"))
