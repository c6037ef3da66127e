"""Chromium driven through selenium, as the ``miniwob`` package drives it, on a sandbox's display.

The browser is not headless: it draws on the sandbox's Xvfb display, full screen, magnified ``zoom`` times, so
the agent sees the task area and clicks it through the sandbox like any other screen. Selenium only loads
pages, seeds them and reads their state; it never acts for the agent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screenpilot.errors import DeviceError, MissingExtraError, SetupError
from screenpilot.reaper import TOKEN_VAR, Reaper

#: Flags that work without a network and without a GPU; the profile is a fresh folder each start.
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--kiosk",
    "--hide-scrollbars",
    "--window-position=0,0",
)
_BINARIES = ("chromium", "chromium-browser", "google-chrome")
_PAGE_WAIT_S = 10.0

# Loading a page: wait for its start cover, make the cover inert (a click on it after the episode ended would
# start a new problem and overwrite the reward), seed the page's random numbers, start the episode.
_START_JS = """
Math.seedrandom(arguments[0]);
core.setDataMode('train');
core.startEpisodeReal();
return core.EPISODE_MAX_TIME;
"""
_STATE_JS = """
return {done: WOB_DONE_GLOBAL, reward: WOB_REWARD_GLOBAL, raw_reward: WOB_RAW_REWARD_GLOBAL,
        reason: WOB_REWARD_REASON, ready: WOB_TASK_READY};
"""


@dataclass
class PageState:
    """A task episode as the page reports it."""

    task: str
    seed: int
    utterance: str
    time_limit_s: float


def _executables() -> tuple[str, str]:
    """Chromium and its driver: ``MINIWOB_CHROME_BINARY`` and ``MINIWOB_CHROMEDRIVER`` (as the miniwob package
    reads them), else Debian's ``chromium`` and ``chromedriver`` on PATH."""
    for name in ("MINIWOB_CHROME_BINARY", "MINIWOB_CHROMEDRIVER"):
        given = os.environ.get(name)
        if given and not (os.path.isfile(given) and os.access(given, os.X_OK)):
            raise SetupError(f"{name}={given} is not an executable file")
    binary = os.environ.get("MINIWOB_CHROME_BINARY") or next(filter(None, map(shutil.which, _BINARIES)), None)
    driver = os.environ.get("MINIWOB_CHROMEDRIVER") or shutil.which("chromedriver")
    if not binary or not driver:
        raise SetupError(
            "MiniWoB++ needs Chromium and its driver: install the chromium and chromium-driver packages "
            "(Debian/Ubuntu: apt install chromium chromium-driver), or set MINIWOB_CHROME_BINARY and "
            "MINIWOB_CHROMEDRIVER"
        )
    return binary, driver


def check_browser() -> None:
    """Fail at once, in one line, where the browser cannot start: selenium missing (the extra to install) or
    Chromium and its driver missing (the apt packages). A bench worker calls it before it takes any episode."""
    try:
        import selenium  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("miniwob", "selenium", "the MiniWoB++ suite") from exc
    _executables()


class Browser:
    """One Chromium for a sandbox: started on first use, reused for every episode, quit by :meth:`close`."""

    def __init__(self, zoom: int, area: tuple[int, int]) -> None:
        self.zoom = zoom
        self.area = area
        self.driver: Any = None
        self.version: str | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._reaper: Reaper | None = None

    def ensure(self, environ: dict[str, str]) -> None:
        """Start Chromium on the display ``environ`` names, unless it is running and answers."""
        if self.driver is not None:
            try:
                self.driver.execute_script("return 1")
                return
            except Exception:
                self.close()
        self._start(environ)

    def _start(self, environ: dict[str, str]) -> None:
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError as exc:
            raise MissingExtraError("miniwob", "selenium", "the MiniWoB++ suite") from exc
        binary, driver = _executables()
        self._profile = tempfile.TemporaryDirectory(prefix="screenpilot-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        options.add_experimental_option("excludeSwitches", ["enable-automation"])  # no "controlled by" bar
        width, height = self.area
        for flag in (
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self._profile.name}",
            f"--force-device-scale-factor={self.zoom}",
            f"--window-size={width},{height}",
        ):
            options.add_argument(flag)
        # The driver and its Chromium end with this process, even on kill -9.
        self._reaper = Reaper(mark=False)
        environ = {**environ, TOKEN_VAR: self._reaper.token}
        try:
            self.driver = webdriver.Chrome(service=Service(driver, env=environ), options=options)
        except Exception as exc:
            self.close()
            raise DeviceError(f"Chromium did not start: {' '.join(str(exc).split())[:300]}") from exc
        self.version = str(self.driver.capabilities.get("browserVersion", "")) or None

    def start_episode(self, page: Path, task: str, seed: int) -> PageState:
        """Load ``page`` afresh, seed it and start its episode; returns what it asks and how long it allows."""
        driver = self.driver
        driver.get(page.as_uri())
        self._wait("return typeof core !== 'undefined' && core.cover_div !== null")
        driver.execute_script("core.cover_div.onclick = null;")
        limit_ms = driver.execute_script(_START_JS, seed)
        self._wait("return WOB_TASK_READY === true")
        utterance = str(driver.execute_script("return core.getUtterance();") or "")
        return PageState(task, seed, utterance, float(limit_ms) / 1000)

    def _wait(self, condition: str) -> None:
        deadline = time.monotonic() + _PAGE_WAIT_S
        while not self.driver.execute_script(condition):
            if time.monotonic() > deadline:
                raise DeviceError(f"the MiniWoB++ page did not get ready within {_PAGE_WAIT_S:g} s")
            time.sleep(0.02)

    def state(self) -> dict[str, Any]:
        """The page's episode globals: done, reward (time-scaled), raw_reward, reason."""
        return dict(self.driver.execute_script(_STATE_JS))

    def close(self) -> None:
        driver, self.driver = self.driver, None
        try:
            if driver is not None:
                driver.quit()
        finally:
            if self._reaper is not None:
                self._reaper.close()
                self._reaper = None
            if self._profile is not None:
                self._profile.cleanup()
                self._profile = None
