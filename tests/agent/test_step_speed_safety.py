"""The fast step path keeps its promises: recording off the critical path loses nothing, the settled frame is
the next observation, and the model sees the very pixels a plain bicubic resize gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from screenpilot.agent.loop import run_episode
from screenpilot.agent.record import TRAJECTORY, RunRecorder, _Pending, load_run, record_episode
from screenpilot.envs.fake import FakeEnv
from tests.agent.replies import call

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
