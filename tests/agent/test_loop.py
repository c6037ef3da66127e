from __future__ import annotations

import io

import pytest

from screenpilot.actions.coords import Size
from screenpilot.actions.types import Click, LongPress, OpenApp, Swipe, TypeText
from screenpilot.agent.loop import Limits, run_episode
from screenpilot.agent.policy import Confirm, DryRun
from screenpilot.envs.fake import FakeEnv
from screenpilot.errors import DeviceError
from screenpilot.model.base import TextPart
from tests.agent.replies import call


def run(env, agent, goal="do it", **kwargs):
    episode = run_episode(env, agent, goal, **kwargs)
    steps = list(episode)
    return steps, episode.result


def test_actions_reach_the_device_in_device_pixels(make_agent):
    agent, model = make_agent(
        call("click", coordinate=[935, 406]),
        call("swipe", coordinate=[546, 1800], coordinate2=[546, 600]),
        call("type", text="héllo"),
        call("long_press", coordinate=[100, 100], time=2),
        call("open", text="Settings"),
        call("terminate", status="success"),
    )
    env = FakeEnv(Size(1080, 2400))
    steps, result = run(env, agent)
    assert env.executed == [
        Click(x=925, y=405),
        Swipe(x=540, y=1794, x2=540, y2=598),
        TypeText(text="héllo"),
        LongPress(x=99, y=100, seconds=2.0),
        OpenApp(app="Settings"),
    ]
    assert (result.status, result.reason, result.steps) == ("success", "terminated", 6)
    first = steps[0].record
    assert first.actions[0].model == {"action": "click", "x": 935, "y": 406, "button": "left", "count": 1}
    assert (
        first.actions[0].device["x"] == 925
        and first.screen == (1080, 2400)
        and first.model_screen == (1092, 2408)
    )
    # history reaches the prompt in the cookbook text form
    last_user = model.calls[-1][1].content[0]
    assert isinstance(last_user, TextPart)
    assert (
        'Step 1: {"name": "mobile_use", "arguments": {"action": "click", "coordinate": [935, 406]}}; '
        in last_user.text
    )
    assert last_user.text.count("; Step") == 4


def test_unusable_answer_is_sent_back_then_recovered(make_agent):
    agent, model = make_agent(
        "I would tap it",
        call("click", coordinate=[10, 10]),
        call("terminate", status="success"),
        max_retries=1,
    )
    env = FakeEnv()
    steps, result = run(env, agent)
    assert result.status == "success"
    assert steps[0].record.outputs[0] == "I would tap it" and len(steps[0].record.outputs) == 2
    assert "No function call found" in steps[0].record.errors[0]
    retry_prompt = model.calls[1]
    assert retry_prompt[-2].role == "assistant" and retry_prompt[-2].content[0].text == "I would tap it"
    assert "could not be used" in retry_prompt[-1].content[0].text
    assert not steps[0].record.failed


def test_too_many_failed_steps_end_the_episode(make_agent):
    agent, model = make_agent("nope", "still nope", "never", max_retries=0)
    steps, result = run(FakeEnv(), agent, limits=Limits(max_failed_steps=2))
    assert (result.status, result.reason, result.steps) == ("failure", "too_many_errors", 2)
    assert all(s.record.failed for s in steps)
    assert "No function call found" in result.error
    # the failure of step 1 was fed back to the model at step 2
    assert "could not be used" in "".join(
        p.text for p in model.calls[1][1].content if isinstance(p, TextPart)
    )


def test_repeated_action_on_unchanged_screen_is_flagged_then_stops(make_agent):
    agent, _ = make_agent(*[call("click", coordinate=[50, 50])] * 10)
    steps, result = run(FakeEnv(static=True), agent, limits=Limits(warn_repeats=3, stop_repeats=5))
    assert (result.reason, result.steps) == ("stuck", 5)
    assert steps[3].record.feedback and "3 times in a row" in steps[3].record.feedback
    assert steps[2].record.feedback is None


def test_repeated_action_on_changing_screen_is_fine(make_agent):
    agent, _ = make_agent(*[call("click", coordinate=[50, 50])] * 6)
    _, result = run(FakeEnv(), agent, limits=Limits(max_steps=6))
    assert result.reason == "max_steps" and result.steps == 6


def test_dry_run_never_executes(make_agent):
    agent, _ = make_agent(call("click", coordinate=[50, 50]), call("terminate", status="success"))
    env = FakeEnv()
    steps, result = run(env, agent, policy=DryRun())
    assert env.executed == [] and result.status == "success"
    assert steps[0].record.actions[0].verdict == "skip" and not steps[0].record.actions[0].executed


def test_confirm_asks_and_obeys(make_agent):
    agent, _ = make_agent(
        call("click", coordinate=[50, 50]),
        call("click", coordinate=[60, 60]),
        call("click", coordinate=[70, 70]),
    )
    env = FakeEnv()
    out = io.StringIO()
    steps, result = run(env, agent, policy=Confirm(io.StringIO("n\ny\nq\n"), out))
    assert env.executed == [Click(x=59, y=60)]
    assert result.reason == "aborted"
    assert "execute? [y]es" in out.getvalue()
    refused_feedback = steps[1].record.feedback
    assert refused_feedback and "refused" in refused_feedback


def test_answer_ends_the_episode(make_agent):
    agent, _ = make_agent(call("answer", text="42"), answer_action=True)
    _, result = run(FakeEnv(), agent)
    assert (result.status, result.reason, result.answer) == ("success", "answered", "42")


def test_unsupported_action_goes_back_to_the_model(make_agent):
    agent, _ = make_agent(call("open", text="Settings"), call("terminate", status="failure"))
    steps, result = run(FakeEnv(unsupported={"open_app"}), agent)
    assert steps[0].record.failed and "cannot do action=open_app" in steps[0].record.errors[0]
    assert (result.status, result.reason) == ("failure", "terminated")
    assert "could not be done" in steps[1].record.feedback


class FlakyEnv(FakeEnv):
    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at

    def _execute(self, action):
        if len(self.executed) + 1 == self.fail_at:
            raise DeviceError("device vanished", device="emulator-5554", command="input tap 1 1")
        super()._execute(action)


def test_device_error_ends_cleanly_and_keeps_steps(make_agent):
    agent, _ = make_agent(*[call("click", coordinate=[x, 50]) for x in (10, 20, 30)])
    steps, result = run(FlakyEnv(fail_at=2), agent)
    assert (result.reason, result.steps) == ("device_error", 2)
    assert "emulator-5554" in result.error and "input tap 1 1" in result.error
    assert steps[0].record.actions[0].executed and not steps[1].record.actions[0].executed


def test_model_running_dry_ends_with_model_error(make_agent):
    agent, _ = make_agent(call("click", coordinate=[10, 10]))
    steps, result = run(FakeEnv(), agent)
    assert (result.reason, result.steps) == ("model_error", 2)
    assert steps[1].record.outputs == [] and "no answer left" in steps[1].record.errors[-1]


def test_a_backend_failure_keeps_the_answers_of_the_step(make_agent):
    agent, _ = make_agent("I would tap it", max_retries=1)
    steps, result = run(FakeEnv(), agent)
    assert (result.reason, result.steps) == ("model_error", 1)
    assert steps[0].record.outputs == ["I would tap it"]
    assert (
        "No function call found" in steps[0].record.errors[0]
        and "no answer left" in steps[0].record.errors[1]
    )


def test_history_lists_only_what_was_done(make_agent):
    agent, model = make_agent(
        call("click", coordinate=[10, 10]),
        call("click", coordinate=[20, 20]),
        "garbage",
        call("wait", time=1),
    )
    env = FakeEnv()
    run(env, agent, policy=Confirm(io.StringIO("n\ny\ny\n"), io.StringIO()), limits=Limits(max_steps=4))
    last = model.calls[-1][1].content[0].text
    assert '"coordinate": [10, 10]' not in last, "a refused action was not done"
    assert last.endswith(
        'Step 1: {"name": "mobile_use", "arguments": {"action": "click", "coordinate": [20, 20]}}; '
    )


def test_answers_can_be_collected_without_stopping(make_agent):
    agent, _ = make_agent(call("answer", text="42"), call("terminate", status="success"), answer_action=True)
    _, result = run(FakeEnv(), agent, limits=Limits(stop_on_answer=False))
    assert (result.reason, result.answer, result.steps) == ("terminated", "42", 2)


def test_time_budget(make_agent):
    agent, _ = make_agent(call("click", coordinate=[10, 10]))
    _, result = run(FakeEnv(), agent, limits=Limits(max_seconds=0))
    assert (result.reason, result.steps) == ("time_budget", 0)


def test_settle_hook_runs_after_executed_actions(make_agent):
    agent, _ = make_agent(call("click", coordinate=[10, 10]), call("terminate", status="success"))
    seen = []
    run(FakeEnv(), agent, settle=lambda env: seen.append(len(env.executed)))
    assert seen == [1]


def test_keep_screenshots_passes_images(make_agent):
    agent, model = make_agent(
        call("click", coordinate=[10, 10]), call("terminate", status="success"), keep_images=2
    )
    run(FakeEnv(Size(720, 1280)), agent, keep_screenshots=True)
    assert len(model.calls[1][1].images) == 2


def test_limits_are_validated():
    with pytest.raises(ValueError):
        Limits(max_steps=0)
    with pytest.raises(ValueError):
        Limits(warn_repeats=5, stop_repeats=3)


class ClampToTopHalf:
    """A policy that edits taps in the lower half of the screen up into the top half."""

    def review(self, action, *, step):
        from screenpilot.agent.policy import Verdict

        if isinstance(action, Click) and action.y is not None and action.y > 1200:
            return Verdict("approve", action.model_copy(update={"y": 1200}), "clamped")
        return Verdict("approve", action)


def test_a_policy_may_edit_the_action(make_agent):
    agent, _ = make_agent(call("click", coordinate=[100, 2000]), call("terminate", status="success"))
    env = FakeEnv()
    steps, _ = run(env, agent, policy=ClampToTopHalf())
    assert env.executed == [Click(x=99, y=1200)]
    record = steps[0].record.actions[0]
    assert record.device["y"] == 1200 and record.model["y"] == 2000 and record.executed
