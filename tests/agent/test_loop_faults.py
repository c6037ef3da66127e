"""Faults in the middle of a step: every executed step stays recorded and the episode ends for the right reason."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from screenpilot.actions.types import Click
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import MAX_RECORDED_OUTPUT, run_episode
from screenpilot.agent.policy import Verdict
from screenpilot.agent.record import RecordingError, RunRecorder, load_run, record_episode
from screenpilot.envs.fake import FakeEnv
from screenpilot.errors import DeviceError
from screenpilot.model.base import ModelBackendError
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.replay import ReplayModel
from tests.agent.replies import call

CLICKS = [call("click", coordinate=[x, 50]) for x in (10, 20, 30, 40)]


def record(tmp_path: Path, agent: Agent, env: FakeEnv | None = None, **kwargs: object):
    recorder = RunRecorder(tmp_path / "run")
    return record_episode(run_episode(env or FakeEnv(), agent, "g", **kwargs), recorder)  # type: ignore[arg-type]


def settle_failing_at(step: int, error: BaseException):
    def settle(env: FakeEnv) -> None:
        if len(env.executed) == step:
            raise error

    return settle


def test_a_device_error_while_settling_keeps_the_step_and_ends_with_device_error(tmp_path, make_agent):
    agent, _ = make_agent(*CLICKS)
    env = FakeEnv()
    result = record(tmp_path, agent, env, settle=settle_failing_at(2, DeviceError("screen capture failed")))
    run = load_run(tmp_path / "run")
    assert (result.reason, result.steps) == ("device_error", 2)
    assert "screen capture failed" in (result.error or "")
    assert [s.index for s in run.steps] == [1, 2] and len(env.executed) == 2
    assert run.steps[1].actions[0].executed and "screen capture failed" in run.steps[1].errors[-1]
    assert run.result == result


def test_an_unexpected_error_while_settling_is_recorded_then_raised(tmp_path, make_agent):
    agent, _ = make_agent(*CLICKS)
    with pytest.raises(ZeroDivisionError):
        record(tmp_path, agent, settle=settle_failing_at(1, ZeroDivisionError("boom")))
    run = load_run(tmp_path / "run")
    assert [s.index for s in run.steps] == [1] and run.steps[0].actions[0].executed
    assert run.result is not None and (run.result.reason, run.result.steps) == ("crashed", 1)
    assert run.result.error == "ZeroDivisionError: boom"


def test_ctrl_c_while_settling_keeps_the_step(tmp_path, make_agent):
    agent, _ = make_agent(*CLICKS)
    with pytest.raises(KeyboardInterrupt):
        record(tmp_path, agent, settle=settle_failing_at(2, KeyboardInterrupt()))
    run = load_run(tmp_path / "run")
    assert [s.index for s in run.steps] == [1, 2]
    assert run.result is not None and (run.result.reason, run.result.steps) == ("interrupted", 2)


class EnvInterruptedAt(FakeEnv):
    """Ctrl-C arrives while the device runs the ``step``-th action."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def execute(self, action):
        if len(self.executed) + 1 == self.step:
            raise KeyboardInterrupt
        return super().execute(action)


def test_ctrl_c_while_acting_is_recorded_as_an_interruption_not_an_exception_name(tmp_path, make_agent):
    agent, _ = make_agent(*CLICKS)
    with pytest.raises(KeyboardInterrupt):
        record(tmp_path, agent, EnvInterruptedAt(2))
    run = load_run(tmp_path / "run")
    action = run.steps[1].actions[0]
    assert not action.executed and action.error == "interrupted by the user"
    assert run.steps[1].errors == ["interrupted by the user"]
    assert run.result is not None and run.result.reason == "interrupted"


class PolicyFailingAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def review(self, action, *, step):
        if step == self.step:
            raise LookupError("no rule for this action")
        return Verdict("approve", action)


def test_a_failing_policy_keeps_the_actions_already_done_in_its_step(tmp_path, make_agent):
    both = call("click", coordinate=[10, 50]) + "\n" + call("click", coordinate=[20, 50])
    agent, _ = make_agent(CLICKS[0], both)

    class Policy(PolicyFailingAt):
        def review(self, action, *, step):
            if step == 2 and action.x > 15:  # the step's second action
                raise LookupError("no rule for this action")
            return Verdict("approve", action)

    env = FakeEnv()
    with pytest.raises(LookupError):
        record(tmp_path, agent, env, policy=Policy(2))
    run = load_run(tmp_path / "run")
    assert [s.index for s in run.steps] == [1, 2] and len(env.executed) == 2
    assert run.steps[1].actions[0].executed and "LookupError: no rule" in run.steps[1].errors[-1]
    assert run.result is not None and run.result.reason == "crashed" and "LookupError" in run.result.error


class ObserveFailingAt(FakeEnv):
    def __init__(self, observation: int, error: Exception) -> None:
        super().__init__()
        self.left = observation
        self.error = error

    def _observe(self):
        self.left -= 1
        if self.left == 0:
            raise self.error
        return super()._observe()


@pytest.mark.parametrize(
    ("error", "reason"), [(DeviceError("adb: device offline"), "device_error"), (OSError("pipe"), "crashed")]
)
def test_a_failing_observation_keeps_every_step_before_it(tmp_path, make_agent, error, reason):
    agent, _ = make_agent(*CLICKS)
    try:
        record(tmp_path, agent, ObserveFailingAt(3, error))
    except OSError:
        assert reason == "crashed"
    run = load_run(tmp_path / "run")
    assert [s.index for s in run.steps] == [1, 2]
    assert run.result is not None and (run.result.reason, run.result.steps) == (reason, 2)
    assert str(error) in run.result.error


def test_a_full_disk_ends_the_episode_naming_the_folder_and_keeps_what_was_written(tmp_path, make_agent):
    agent, _ = make_agent(*CLICKS)
    screens = tmp_path / "run" / "screens"
    screens.mkdir(parents=True)
    (screens / "step-0003.png").symlink_to("/dev/full")  # the kernel answers ENOSPC to every write
    with pytest.raises(RecordingError) as caught:
        record(tmp_path, agent)
    message = str(caught.value)
    assert str(tmp_path / "run") in message and os.strerror(errno.ENOSPC) in message
    assert "step 3" in message and "2 step(s) before it are kept" in message
    run = load_run(tmp_path / "run")
    assert [s.index for s in run.steps] == [1, 2]
    assert run.result is not None and run.result.reason == "crashed" and "run folder" in run.result.error
    assert not (screens / "step-0003.png").exists()


def test_a_huge_answer_is_recorded_as_its_head_and_tail(tmp_path, make_agent):
    prose = "I am thinking about it. " * 450_000  # about 10 MB of prose, no call
    agent, _ = make_agent(prose, prose, prose, max_retries=2)
    record(tmp_path, agent)
    run = load_run(tmp_path / "run")
    outputs = run.steps[0].outputs
    assert len(outputs) == 3 and all(len(o) < MAX_RECORDED_OUTPUT + 100 for o in outputs)
    cut = len(prose) - MAX_RECORDED_OUTPUT
    assert outputs[0].startswith(prose[:1000]) and outputs[0].endswith(prose[-1000:])
    assert f"[... {cut} characters cut ...]" in outputs[0]
    size = sum(f.stat().st_size for f in (tmp_path / "run").rglob("*") if f.is_file())
    assert size < 1_000_000


class SlowFailingModel(ReplayModel):
    """Spends a while (as a backend's retries would) and then gives up."""

    def complete(self, messages):
        time.sleep(0.3)
        raise ModelBackendError("server unreachable after 3 attempts")


def test_time_spent_on_a_failed_model_call_is_counted(tmp_path):
    agent = Agent(SlowFailingModel([]), Qwen25VLDialect("mobile_use"))
    result = record(tmp_path, agent)
    step = load_run(tmp_path / "run").steps[0]
    assert result.reason == "model_error" and step.timings.model_s >= 0.3
    assert step.outputs == [] and "unreachable" in step.errors[-1]


def test_execute_errors_name_their_kind(tmp_path, make_agent):
    class Env(FakeEnv):
        def _execute(self, action):
            if isinstance(action, Click) and self.executed:
                raise ValueError("bad coordinate")
            super()._execute(action)

    agent, _ = make_agent(*CLICKS)
    with pytest.raises(ValueError):
        record(tmp_path, agent, Env())
    run = load_run(tmp_path / "run")
    assert run.steps[1].actions[0].error == "ValueError: bad coordinate"


def test_a_huge_summary_is_cut_too(tmp_path, make_agent):
    huge = "x" * 50_000
    agent, _ = make_agent(
        call("click", coordinate=[10, 10]) + f"\n<conclusion>{huge}</conclusion>",
        call("terminate", status="success"),
        reasoning=True,
    )
    record(tmp_path, agent)
    summary = load_run(tmp_path / "run").steps[0].summary
    assert summary is not None and summary.startswith("xxx") and "characters cut" in summary
    size = sum(f.stat().st_size for f in (tmp_path / "run").rglob("*") if f.is_file())
    assert size < 200_000
