"""How an episode ends when two things happen at once: a step's own end and a stop right after it, an answer
and a crash in one step, a time budget that runs out while the model is being asked."""

from __future__ import annotations

import time
from collections.abc import Sequence

from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import Limits, run_episode
from screenpilot.envs.fake import FakeEnv
from screenpilot.model.base import Completion, DeadlineExceeded, Message
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.replay import ReplayModel
from tests.agent.replies import call


def test_a_stop_right_after_the_final_step_keeps_the_end_that_step_brought(make_agent):
    agent, _ = make_agent(call("answer", text="42"), answer_action=True)
    episode = run_episode(FakeEnv(), agent, "g")
    steps = iter(episode)
    next(steps)
    episode.stop("interrupted", "the run was stopped (Ctrl-C)")  # the signal came during the final step
    assert episode.result is not None
    assert (episode.result.status, episode.result.reason, episode.result.answer) == (
        "success",
        "answered",
        "42",
    )
    assert (episode.result.error, episode.result.steps) == (None, 1)


def test_a_failed_terminate_followed_by_a_stop_still_says_the_agent_gave_up(make_agent):
    agent, _ = make_agent(call("terminate", status="failure"))
    episode = run_episode(FakeEnv(), agent, "g")
    next(iter(episode))
    episode.stop("task_ended", "the page ended its task")
    assert episode.result is not None and (episode.result.reason, episode.result.status) == (
        "terminated",
        "failure",
    )


def test_a_stop_between_ordinary_steps_still_wins(make_agent):
    agent, _ = make_agent(call("click", coordinate=[10, 10]), call("terminate", status="success"))
    episode = run_episode(FakeEnv(), agent, "g")
    next(iter(episode))
    episode.stop("task_ended", "the page ended its task")
    assert episode.result is not None
    assert (episode.result.reason, episode.result.error) == ("task_ended", "the page ended its task")


def test_an_answer_given_in_the_step_before_a_stop_is_kept(make_agent):
    agent, _ = make_agent(call("answer", text="42"), call("terminate", status="success"), answer_action=True)
    episode = run_episode(FakeEnv(), agent, "g", limits=Limits(stop_on_answer=False))
    next(iter(episode))
    episode.stop("task_ended", "the page ended its task")
    assert episode.result is not None and (episode.result.reason, episode.result.answer) == (
        "task_ended",
        "42",
    )


class BrokenClickEnv(FakeEnv):
    def _execute(self, action):
        raise RuntimeError("driver bug")


def test_an_answer_is_kept_when_a_later_action_of_its_step_crashes(make_agent):
    both = call("answer", text="42") + "\n" + call("click", coordinate=[10, 10])
    agent, _ = make_agent(both, answer_action=True)
    episode = run_episode(BrokenClickEnv(), agent, "g", limits=Limits(stop_on_answer=False))
    steps = []
    try:
        for step in episode:
            steps.append(step)
    except RuntimeError:
        pass
    assert [a.verdict for a in steps[0].record.actions] == ["final", "approve"]
    assert episode.result is not None
    assert (episode.result.reason, episode.result.answer) == ("crashed", "42")
    assert episode.result.error == "RuntimeError: driver bug"


class AnswersAtTheDeadline(ReplayModel):
    """A backend whose call runs until the deadline and then gives up, as a slow server does."""

    def complete(self, messages: Sequence[Message], *, deadline: float | None = None) -> Completion:
        assert deadline is not None
        time.sleep(max(0.0, deadline - time.monotonic()))
        raise DeadlineExceeded("the time budget ran out while the model was answering")


def test_a_time_budget_that_runs_out_while_the_model_answers_ends_as_time_budget():
    agent = Agent(AnswersAtTheDeadline([]), Qwen25VLDialect("mobile_use"), max_retries=0)
    episode = run_episode(FakeEnv(), agent, "g", limits=Limits(max_seconds=0.2, max_failed_steps=1))
    steps = list(episode)
    assert episode.result is not None
    assert (episode.result.reason, episode.result.steps) == ("time_budget", 1)
    assert episode.result.error == "time budget of 0.2 s used up"
    assert "the time budget ran out" in steps[0].record.errors[-1]  # while asking, or (a slow machine) before


def test_a_time_budget_that_runs_out_in_the_last_step_is_named(make_agent):
    agent = Agent(AnswersAtTheDeadline([]), Qwen25VLDialect("mobile_use"), max_retries=0)
    episode = run_episode(FakeEnv(), agent, "g", limits=Limits(max_seconds=0.2, max_steps=1))
    list(episode)
    assert episode.result is not None and episode.result.reason == "time_budget"


class RefuseClicks:
    """A policy that refuses every click, giving its reason."""

    def review(self, action, *, step):
        from screenpilot.agent.policy import Verdict

        return Verdict("refuse", action, "clicks are not allowed here")


def test_a_refused_action_asked_for_again_and_again_keeps_the_refusal_in_the_feedback(make_agent):
    agent, _ = make_agent(*[call("click", coordinate=[50, 50])] * 5)
    env = FakeEnv(static=True)
    episode = run_episode(
        env, agent, "g", policy=RefuseClicks(), limits=Limits(warn_repeats=3, stop_repeats=5)
    )
    steps = list(episode)
    assert env.executed == []
    warned = steps[3].record.feedback or ""
    assert "was refused: clicks are not allowed here" in warned, "the reason is not lost"
    assert "You have asked for" in warned and "3 times in a row" in warned
    assert "You have done" not in warned, "nothing was done"
    assert episode.result is not None and episode.result.reason == "stuck"
