from __future__ import annotations

import json

import pytest

from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import run_episode
from screenpilot.agent.record import RunRecorder, load_run, read_trajectory, record_episode
from screenpilot.envs.fake import FakeEnv
from screenpilot.errors import SetupError
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.replay import ReplayModel
from tests.agent.replies import call


def test_run_folder_holds_everything(tmp_path, make_agent):
    agent, _ = make_agent(
        call("click", coordinate=[935, 406]), "garbage", call("terminate", status="success")
    )
    rec = RunRecorder(tmp_path / "run", {"goal": "g"})
    result = record_episode(run_episode(FakeEnv(), agent, "g"), rec)
    run = load_run(tmp_path / "run")
    assert run.meta == {"goal": "g"}
    assert run.result == result and result.steps == 3
    assert [s.index for s in run.steps] == [1, 2, 3]
    assert run.steps[1].outputs == ["garbage"] and run.steps[1].failed
    for s in run.steps:
        assert (tmp_path / "run" / s.screenshot).stat().st_size > 0
    assert run.steps[0].actions[0].device["x"] == 925


@pytest.mark.parametrize(("error", "reason"), [(RuntimeError, "crashed"), (KeyboardInterrupt, "interrupted")])
def test_crash_or_ctrl_c_loses_nothing_recorded(tmp_path, make_agent, error, reason):
    class Env(FakeEnv):
        def _execute(self, action):
            if self.executed:
                raise error("stop")
            super()._execute(action)

    agent, _ = make_agent(*[call("click", coordinate=[x, 9]) for x in (1, 2, 3)])
    rec = RunRecorder(tmp_path / "run")
    with pytest.raises(error):
        record_episode(run_episode(Env(), agent, "g"), rec)
    run = load_run(tmp_path / "run")
    # the step whose action raised is recorded too, with what happened to its action
    assert [s.index for s in run.steps] == [1, 2]
    assert not run.steps[1].actions[0].executed and "stop" in (run.steps[1].actions[0].error or "")
    assert run.result is not None and run.result.reason == reason and run.result.status == "failure"


def test_torn_last_line_is_skipped(tmp_path, make_agent):
    agent, _ = make_agent(call("click", coordinate=[1, 1]), call("terminate", status="success"))
    record_episode(run_episode(FakeEnv(), agent, "g"), RunRecorder(tmp_path))
    path = tmp_path / "trajectory.jsonl"
    path.write_text(path.read_text() + '{"index": 3, "sta', encoding="utf-8")
    assert [s.index for s in read_trajectory(path)] == [1, 2]
    path.write_text('{"index": 1}\n' + path.read_text(), encoding="utf-8")
    with pytest.raises(SetupError, match="not a step record"):
        list(read_trajectory(path))


def test_recorder_refuses_to_overwrite_a_run(tmp_path, make_agent):
    agent, _ = make_agent(call("terminate", status="success"))
    record_episode(run_episode(FakeEnv(), agent, "g"), RunRecorder(tmp_path))
    with pytest.raises(SetupError, match="already holds"):
        RunRecorder(tmp_path)


def test_replaying_a_recorded_run_reproduces_its_actions(tmp_path, make_agent):
    agent, _ = make_agent(
        call("click", coordinate=[935, 406]), call("type", text="x"), call("terminate", status="success")
    )
    env1 = FakeEnv()
    record_episode(run_episode(env1, agent, "g"), RunRecorder(tmp_path / "a"))
    replay = ReplayModel.from_path(tmp_path / "a")
    env2 = FakeEnv()
    record_episode(run_episode(env2, Agent(replay, Qwen25VLDialect()), "g"), RunRecorder(tmp_path / "b"))
    assert env2.executed == env1.executed and len(env1.executed) == 2
    # the replay model recorded what it was shown
    assert len(replay.calls) == 3 and replay.calls[0][1].images[0].size == (1092, 2408)


def test_replay_file_by_task(tmp_path):
    f = tmp_path / "r.jsonl"
    f.write_text(
        "\n".join(
            json.dumps(o)
            for o in [{"output": "A", "task": "t1"}, {"output": "S"}, {"output": "B", "task": "t2"}]
        ),
        encoding="utf-8",
    )
    model = ReplayModel.from_path(f)
    model.begin_episode("t2")
    assert model.complete([]).text == "B"
    assert model.complete([]).text == "S"  # shared entries serve any episode
    model.begin_episode("t1")
    assert model.complete([]).text == "A"


@pytest.mark.parametrize(
    ("content", "message"),
    [("{bad", "not JSON"), ('{"text": "x"}', '"output" string'), ('{"output": "x", "task": 3}', '"task"')],
)
def test_replay_file_errors_name_the_line(tmp_path, content, message):
    f = tmp_path / "r.jsonl"
    f.write_text('{"output": "ok"}\n' + content, encoding="utf-8")
    with pytest.raises(SetupError, match=rf"r.jsonl:2: .*{message}"):
        ReplayModel.from_path(f)


def test_replay_file_with_unicode_line_separators_in_an_answer(tmp_path):
    f = tmp_path / "r.jsonl"
    answer = "<tool_call>\n" + json.dumps(
        {"name": "mobile_use", "arguments": {"action": "type", "text": "a\u2028b\u0085c"}}, ensure_ascii=False
    )
    f.write_text(json.dumps({"output": answer}, ensure_ascii=False) + "\n", encoding="utf-8")
    model = ReplayModel.from_path(f)
    assert model.complete([]).text == answer


@pytest.mark.parametrize(
    ("error", "reason"), [(KeyboardInterrupt, "interrupted"), (BrokenPipeError, "crashed")]
)
def test_an_error_while_recording_a_step_is_the_result(tmp_path, make_agent, error, reason):
    agent, _ = make_agent(*[call("click", coordinate=[x, 9]) for x in (1, 2, 3)])

    def on_step(record):
        if record.index == 2:
            raise error("stop")

    with pytest.raises(error):
        record_episode(run_episode(FakeEnv(), agent, "g"), RunRecorder(tmp_path), on_step)
    run = load_run(tmp_path)
    assert [s.index for s in run.steps] == [1, 2]
    assert run.result is not None and (run.result.reason, run.result.steps) == (reason, 2)
    assert run.result.duration_s > 0


@pytest.mark.parametrize(("error", "reason"), [(TypeError, "crashed"), (KeyboardInterrupt, "interrupted")])
@pytest.mark.parametrize("final", [call("answer", text="42"), call("terminate", status="success")])
def test_a_final_step_that_could_not_be_recorded_does_not_keep_its_end(
    tmp_path, make_agent, error, reason, final
):
    """The last step ends the episode by itself, but it never reached the disk: the result must not say
    ``answered`` or ``terminated`` for a step the run folder does not hold."""

    class Recorder(RunRecorder):
        def record(self, step):
            if step.record.index == 2:
                raise error("cannot keep this step")
            return super().record(step)

    agent, _ = make_agent(call("click", coordinate=[1, 9]), final, answer_action=True)
    with pytest.raises(error):
        record_episode(run_episode(FakeEnv(), agent, "g"), Recorder(tmp_path))
    run = load_run(tmp_path)
    assert [s.index for s in run.steps] == [1]
    assert run.result is not None and (run.result.status, run.result.reason) == ("failure", reason)
    assert run.result.error is not None and "cannot keep this step" in run.result.error
    assert "\n" not in run.result.error
