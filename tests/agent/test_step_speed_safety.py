"""The fast step path keeps its promises: recording off the critical path loses nothing, the settled frame is
the next observation, and the model sees the very pixels a plain bicubic resize gives."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import run_episode
from screenpilot.agent.record import (
    TRAJECTORY,
    RecordingError,
    RunRecorder,
    _Pending,
    load_run,
    record_episode,
)
from screenpilot.cli.wiring import make_settle
from screenpilot.envs.desktop import SandboxEnv
from screenpilot.envs.fake import FakeEnv
from screenpilot.envs.settle import SettleResult, screen_digest
from screenpilot.model import images
from screenpilot.model.qwen3vl import Qwen3VLDialect
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.replay import ReplayModel
from screenpilot.model.uitars15 import UITars15Dialect
from screenpilot.settings import Settings
from tests.agent.replies import call
from tests.envs.android.conftest import make_env, phone, server  # noqa: F401 - the fake phone's fixtures

CLICKS = [call("click", coordinate=[x, 50]) for x in (10, 20, 30, 40)]
ROOT = Path(__file__).resolve().parents[2]


class GatedRecorder(RunRecorder):
    """A recorder whose disk answers only once ``gate`` is set (a slow disk, held still)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.gate = threading.Event()

    def _write(self, pending: _Pending) -> None:
        self.gate.wait()
        super()._write(pending)


class SlowRecorder(RunRecorder):
    """A recorder on a slow disk: each step takes a while to reach it."""

    def _write(self, pending: _Pending) -> None:
        time.sleep(0.05)
        super()._write(pending)


def test_a_step_is_recorded_without_waiting_for_the_disk(tmp_path, make_agent):
    agent, _ = make_agent(*CLICKS)
    recorder = GatedRecorder(tmp_path / "run")
    steps = iter(run_episode(FakeEnv(), agent, "g"))
    record = recorder.record(next(steps))
    assert record.screenshot == "screens/step-0001.png"
    assert not (tmp_path / "run" / record.screenshot).exists()
    assert (tmp_path / "run" / TRAJECTORY).read_text() == ""
    recorder.record(next(steps))  # the loop went on to the next step meanwhile
    recorder.gate.set()
    recorder.drain()
    run = load_run(tmp_path / "run")
    assert [s.index for s in run.steps] == [1, 2]
    assert all((tmp_path / "run" / s.screenshot).stat().st_size > 0 for s in run.steps if s.screenshot)
    recorder.finish(None)


@pytest.mark.parametrize(("error", "reason"), [(RuntimeError, "crashed"), (KeyboardInterrupt, "interrupted")])
def test_a_crash_writes_every_queued_step_before_the_result(tmp_path, make_agent, error, reason):
    class Env(FakeEnv):
        def _execute(self, action):
            if len(self.executed) == 3:
                raise error("stop")
            super()._execute(action)

    agent, _ = make_agent(*CLICKS)
    with pytest.raises(error):
        record_episode(run_episode(Env(), agent, "g"), SlowRecorder(tmp_path / "run"))
    folder = tmp_path / "run"
    run = load_run(folder)
    assert [s.index for s in run.steps] == [1, 2, 3, 4]
    assert all(s.screenshot and (folder / s.screenshot).stat().st_size > 0 for s in run.steps)
    assert run.result is not None and (run.result.reason, run.result.steps) == (reason, 4)
    assert (folder / "result.json").stat().st_mtime_ns >= (folder / TRAJECTORY).stat().st_mtime_ns


def test_no_action_is_taken_once_a_step_could_not_be_written(tmp_path, make_agent):
    agent, _ = make_agent(*CLICKS)
    screens = tmp_path / "run" / "screens"
    screens.mkdir(parents=True)
    (screens / "step-0002.png").symlink_to("/dev/full")  # the kernel answers ENOSPC to every write
    env = FakeEnv()
    with pytest.raises(RecordingError, match=r"cannot write step 2 .* the 1 step"):
        record_episode(run_episode(env, agent, "g"), RunRecorder(tmp_path / "run"))
    assert len(env.executed) == 2  # step 3 was decided but never acted on
    run = load_run(tmp_path / "run")
    assert [s.index for s in run.steps] == [1]
    assert run.result is not None and (run.result.reason, run.result.steps) == ("crashed", 2)


SCRIPT = """
import sys, time
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import run_episode
from screenpilot.agent.record import RunRecorder
from screenpilot.envs.fake import FakeEnv
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.replay import ReplayModel
from tests.agent.replies import call

class Slow(RunRecorder):
    def _write(self, pending):
        time.sleep({delay})
        super()._write(pending)

model = ReplayModel([(None, call("click", coordinate=[x, 50])) for x in range(10, 90, 10)])
recorder = Slow(sys.argv[1])
for step in run_episode(FakeEnv(), Agent(model, Qwen25VLDialect("mobile_use")), "g"):
    recorder.record(step)
print("queued", flush=True)
{end}
"""


def _script(tmp_path: Path, delay: float, end: str) -> subprocess.Popen[str]:
    source = tmp_path / "crash.py"
    source.write_text(textwrap.dedent(SCRIPT).format(delay=delay, end=end))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(source), str(tmp_path / "run")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_program_that_dies_of_an_exception_still_writes_the_queued_steps(tmp_path):
    proc = _script(tmp_path, 0.05, "raise RuntimeError('the program fell over')")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "the program fell over" in err and "queued" in out
    run = load_run(tmp_path / "run")
    # eight clicks, then the step on which the replayed answers ran out
    assert [s.index for s in run.steps] == list(range(1, 10)) and run.result is None
    assert all(s.screenshot and (tmp_path / "run" / s.screenshot).stat().st_size > 0 for s in run.steps)


def test_a_killed_program_leaves_no_line_without_its_screenshot(tmp_path):
    proc = _script(tmp_path, 0.2, "time.sleep(60)")
    trajectory = tmp_path / "run" / TRAJECTORY
    while not (trajectory.exists() and trajectory.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    run = load_run(tmp_path / "run")
    assert len(run.steps) >= 2
    assert all(s.screenshot and (tmp_path / "run" / s.screenshot).stat().st_size > 0 for s in run.steps)


# -- settle hands its stable frame to the next step ----------------------------------------------------------
class CountingEnv(FakeEnv):
    """A fake screen that counts its captures; ``flicker`` makes every capture differ."""

    def __init__(self, *, flicker: bool = False) -> None:
        super().__init__()
        self.flicker = flicker
        self.captures = 0

    def _observe(self):
        self.captures += 1
        if self.flicker:
            self._screen.putpixel((0, self.captures % 50), (self.captures % 256, 0, 0))
            self._screen.paste((self.captures * 40 % 256, 0, 0), (0, 0, 400, 400))
        return super()._observe()


def test_the_settled_frame_is_the_next_steps_screen(make_agent):
    agent, _ = make_agent(CLICKS[0], CLICKS[1], call("terminate", status="success"))
    env = CountingEnv()
    settle = make_settle(Settings(settle_timeout=2.0))
    assert settle is not None
    results: list[SettleResult | None] = []
    episode = run_episode(env, agent, "g", settle=lambda e: results.append(settle(e)) or results[-1])
    steps = list(episode)
    assert len(steps) == 3 and all(r is not None and r.stable and r.observation for r in results)
    # one capture at reset, then only settle's frames: no capture of its own at steps 2 and 3
    assert env.captures == 1 + sum(r.frames for r in results if r is not None)
    assert steps[1].screenshot is results[0].observation.screenshot  # type: ignore[union-attr]
    assert steps[1].record.timings.observe_s == 0.0
    assert steps[1].record.screen_digest == screen_digest(steps[1].screenshot)


def test_an_unsettled_screen_is_captured_again(make_agent):
    agent, _ = make_agent(CLICKS[0], call("terminate", status="success"))
    env = CountingEnv(flicker=True)
    settle = make_settle(Settings(settle_timeout=0.0))
    assert settle is not None
    results: list[SettleResult | None] = []
    steps = list(run_episode(env, agent, "g", settle=lambda e: results.append(settle(e)) or results[-1]))
    assert len(steps) == 2 and results[0] is not None and not results[0].stable
    assert results[0].observation is None
    assert env.captures == 1 + results[0].frames + 1
    assert steps[1].screenshot is not results[0].last


def test_android_settle_hands_over_the_frame_in_the_input_frame(make_env, phone):  # noqa: F811
    env = make_env()
    agent = Agent(ReplayModel([(None, c) for c in CLICKS[:2]]), Qwen25VLDialect("mobile_use"))
    results: list[SettleResult] = []
    episode = run_episode(
        env, agent, "g", settle=lambda e: results.append(e.settle(interval_s=0.0)) or results[-1]
    )
    steps = iter(episode)
    next(steps)
    second = next(steps)
    # one capture at reset, then only settle's frames: the frame settle ended on is step 2's screen
    captures = sum(c.startswith("screencap") for c in phone.commands)
    assert len(results) == 2 and captures == 1 + results[0].frames + results[1].frames
    assert results[0].observation is not None and results[0].observation.info["serial"] == "emulator-5554"
    assert second.screenshot is results[0].observation.screenshot and second.screenshot.size == (1080, 2400)
    assert second.record.timings.observe_s == 0.0


# -- the model sees the same pixels --------------------------------------------------------------------------
def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """A screenshot-sized image where every pixel differs from its neighbours: any rounding shows."""
    return Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))


def _plain(image: Image.Image, size: tuple[int, int]) -> bytes:
    return image.resize(size, Image.Resampling.BICUBIC).tobytes()


SCREENS = [(1080, 2400), (1280, 800), (1920, 1080), (2560, 1440), (720, 1600), (1170, 2532), (1000, 1000)]
DIALECTS = [
    Qwen25VLDialect("mobile_use"),
    Qwen25VLDialect("computer_use", max_pixels=1_000_000),
    UITars15Dialect(),
    Qwen3VLDialect("mobile_use"),
    Qwen3VLDialect("computer_use", max_pixels=800_000),
]


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_dialect_shows_the_model_plain_bicubic_pixels(screen):
    shot = _noise(*screen, seed=screen[0])
    for dialect in DIALECTS:
        space = dialect.coordinate_space(Size(*screen))
        image = dialect.prepare_image(shot, space)
        assert image.mode == "RGB"
        assert image.tobytes() == _plain(shot, image.size), (type(dialect).__name__, screen, image.size)
        assert dialect.prepare_image(shot, space) is image  # shown again (history): not resized again


@pytest.mark.parametrize("seed", range(12))
def test_banded_resizes_equal_one_call_for_any_sizes(seed):
    rng = random.Random(seed)
    source = (rng.randint(600, 1800), rng.randint(600, 1800))
    target = (rng.randint(300, 2000), rng.randint(300, 2000))
    if seed % 4 == 0:
        target = (source[0], target[1])
    elif seed % 4 == 1:
        target = (target[0], source[1])
    shot = _noise(*source, seed=seed)
    order = images._order(source, target)
    assert order is not None, (source, target)  # PIL's order of passes was found for these sizes
    for bands in (2, 3):
        banded = images._banded(shot, target, order, bands)
        assert banded.tobytes() == _plain(shot, target), (source, target, order, bands)


def test_a_resized_screenshot_is_reused_only_for_the_same_object():
    shot = _noise(1080, 2400)
    first = images.bicubic(shot, (1092, 2408))
    assert images.bicubic(shot, (1092, 2408)) is first
    other = shot.copy()
    other.paste((255, 0, 0), (0, 0, 1080, 1200))
    again = images.bicubic(other, (1092, 2408))
    assert again is not first and again.tobytes() == _plain(other, (1092, 2408))
    assert images.bicubic(shot, (546, 1204)).tobytes() == _plain(shot, (546, 1204))
    assert images.bicubic(shot, shot.size) is shot


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb")
def test_desktop_settle_hands_over_its_last_frame_with_the_screens_facts(tmp_path):
    app = tmp_path / "still.py"
    app.write_text("import tkinter as tk\nroot = tk.Tk()\nroot.geometry('300x200+50+50')\nroot.mainloop()\n")
    env = SandboxEnv(app=f"{sys.executable} {app}")
    try:
        first = env.reset()
        result = env.settle(min_wait_s=0.0)
        assert result.stable and result.observation is not None
        assert result.observation.screenshot is result.last
        assert result.observation.info == first.info and result.observation.size == first.size
        assert result.digest == screen_digest(result.observation.screenshot)
    finally:
        env.close()
