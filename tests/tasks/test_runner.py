"""The benchmark runner: result lines, trajectories, resume, the manifest guard, errors and stopping."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from screenpilot.actions.coords import Size
from screenpilot.agent.loop import Limits
from screenpilot.agent.record import load_run
from screenpilot.envs.settle import SettleResult
from screenpilot.model.base import Completion
from screenpilot.model.replay import ReplayModel
from screenpilot.tasks.manifest import ManifestMismatch
from screenpilot.tasks.runner import (
    BenchSettings,
    ModelPerEpisode,
    SuiteRunner,
    read_results,
    run_suite,
)
from screenpilot.tasks.suite import Suite, load_suite
from tests.tasks.fakes import FakeSource, ShellFakeEnv


def call(**arguments: Any) -> str:
    return "<tool_call>\n" + json.dumps({"name": "mobile_use", "arguments": arguments}) + "\n</tool_call>"


SUITE = """
name: runner-test
defaults: {env: android, max_steps: 4}
tasks:
  - id: answer
    goal: What is six times seven?
    success: {answer: {normalized: "42"}}
  - id: note
    goal: Write a note
    setup:
      - shell: echo hello > note.txt
    success: {file: note.txt, contains: hello}
    teardown:
      - shell: rm -f note.txt
  - id: claims
    goal: Claims success but the state disagrees
    success: {shell: "test -f never-made.txt"}
  - id: broken
    goal: The check itself fails to run
    success: {python: "runner_checks:boom"}
"""

REPLAY = [
    ("answer", call(action="answer", text="42.")),
    ("note", call(action="click", coordinate=[100, 200])),
    ("note", call(action="terminate", status="success")),
    ("claims", call(action="terminate", status="success")),
    ("broken", call(action="terminate", status="failure")),
]


@pytest.fixture
def suite(tmp_path: Path) -> Suite:
    (tmp_path / "runner_checks.py").write_text("def boom(ctx):\n    raise RuntimeError('bad check')\n")
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE).lstrip(), encoding="utf-8")
    return load_suite(path)


def replay_source(answers: list[tuple[str | None, str]] = REPLAY) -> ModelPerEpisode:
    return ModelPerEpisode(lambda: ReplayModel(answers, name="replay:test"))


def settings(**kwargs: Any) -> BenchSettings:
    base: dict[str, Any] = {"progress": False, "dialect_options": {"answer_action": True}}
    return BenchSettings(**{**base, **kwargs})


def test_runs_every_task_and_trial_and_records_them(
    tmp_path: Path, suite: Suite, fake_source: FakeSource
) -> None:
    out = tmp_path / "out"
    outcome = run_suite(suite, out, fake_source, replay_source(), settings(trials=2, jobs=2))
    assert (outcome.ran, outcome.skipped, outcome.interrupted) == (8, 0, False)

    lines = {(r["task"], r["trial"]): r for r in read_results(out)}
    assert len(lines) == 8
    for trial in (1, 2):
        assert lines[("answer", trial)]["success"] is True
        assert lines[("answer", trial)]["answer"] == "42."
        assert lines[("note", trial)]["success"] is True
        assert lines[("note", trial)]["steps"] == 2
        # The agent said success; the state says otherwise, and the state decides.
        claims = lines[("claims", trial)]
        assert (claims["success"], claims["agent_status"], claims["error"]) == (False, "success", None)
        broken = lines[("broken", trial)]
        assert broken["success"] is False
        assert broken["error"] == "check: check runner_checks:boom raised RuntimeError: bad check"
    note = lines[("note", 1)]
    assert set(note["phases"]) >= {"setup_s", "check_s", "teardown_s", "model_s", "execute_s", "observe_s"}
    assert note["check"]["detail"] == "note.txt: found 'hello' in 'hello'"

    run = load_run(out / note["folder"])
    assert run.meta["task"] == "note" and run.meta["trial"] == 1
    assert [s.actions[0].device["action"] for s in run.steps] == ["click", "terminate"]
    assert run.result is not None and run.result.reason == "terminated"
    assert (out / "episodes" / "note" / "trial-2" / "screens" / "step-0001.png").exists()

    # Two workers, two environments, teardown ran (the note is gone), environments closed at the end.
    assert len(fake_source.built) == 2
    assert all(env.closed_count == 1 for env in fake_source.built)
    assert not any((env.root / "note.txt").exists() for env in fake_source.built)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["success_rate"] == pytest.approx(0.5)
    assert summary["overall"]["errors"] == 2
    assert {t["task"]: t["success_rate"] for t in summary["tasks"]} == {
        "answer": 1.0,
        "note": 1.0,
        "claims": 0.0,
        "broken": 0.0,
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fingerprint"]["suite_sha256"] == suite.sha256
    assert manifest["fingerprint"]["model"] == {"backend": "replay", "model": "replay:test"}
    assert manifest["fingerprint"]["dialect"]["mobile"]["answer_action"] is True
    assert len(manifest["devices"]) == 2
    device = manifest["devices"][0]
    assert device["screen"] == "360x640" and device["model_image"] == "364x644"
    assert len(device["prompt_sha256"]) == 64


def test_resume_skips_finished_and_reruns_interrupted(
    tmp_path: Path, suite: Suite, fake_source: FakeSource
) -> None:
    out = tmp_path / "out"
    run_suite(suite.select(["answer", "note"]), out, fake_source, replay_source(), settings())
    # Simulate a crash mid-episode of the second task: its folder exists, its line is gone (torn).
    results = out / "results.jsonl"
    first, second = results.read_text().splitlines()
    results.write_text(first + "\n" + second[:40])
    stale = out / "episodes" / "note" / "trial-1" / "stale-marker"
    stale.write_text("x")

    outcome = run_suite(
        suite.select(["answer", "note"]), out, fake_source, replay_source(), settings(force=True)
    )
    assert (outcome.ran, outcome.skipped) == (1, 1)
    assert not stale.exists()  # rerun from scratch
    lines = read_results(out)
    assert sorted((r["task"], r["trial"]) for r in lines) == [("answer", 1), ("note", 1)]
    assert all(r["success"] for r in lines)

    # More trials later: only the new ones run.
    outcome = run_suite(
        suite.select(["answer", "note"]), out, fake_source, replay_source(), settings(trials=2, force=True)
    )
    assert (outcome.ran, outcome.skipped) == (2, 2)
    assert outcome.summary["overall"]["pass_at_k"] == {"1": 1.0, "2": 1.0}


def test_resume_refuses_changed_settings_unless_forced(
    tmp_path: Path, suite: Suite, fake_source: FakeSource
) -> None:
    out = tmp_path / "out"
    one = suite.select(["answer"])
    run_suite(one, out, fake_source, replay_source(), settings())
    with pytest.raises(ManifestMismatch, match=r"limits\.max_steps changed"):
        run_suite(one, out, fake_source, replay_source(), settings(limits=Limits(max_steps=9)))
    with pytest.raises(ManifestMismatch, match=r"model\.model changed"):
        run_suite(
            one, out, fake_source, ModelPerEpisode(lambda: ReplayModel(REPLAY, name="other")), settings()
        )
    suite.path.write_text(suite.path.read_text() + "\n# edited\n")
    with pytest.raises(ManifestMismatch, match="suite_sha256 changed"):
        run_suite(load_suite(suite.path).select(["answer"]), out, fake_source, replay_source(), settings())
    outcome = run_suite(
        load_suite(suite.path).select(["answer"]), out, fake_source, replay_source(), settings(force=True)
    )
    assert outcome.skipped == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed"][-1]["changed"] == ["suite_sha256"]


class BrokenSource(FakeSource):
    """Building the environment for the `answer` task fails; the others still run."""

    def build(self, task: Any, worker: int) -> ShellFakeEnv:
        if task.id == "answer":
            from screenpilot.errors import DeviceError

            raise DeviceError("no device", device="emulator-5554")
        return super().build(task, worker)


def test_a_failing_task_never_stops_the_others(tmp_path: Path, suite: Suite) -> None:
    out = tmp_path / "out"
    source = BrokenSource(tmp_path / "devices")
    source.key = lambda task: task.id  # type: ignore[method-assign]
    run_suite(suite, out, source, replay_source(), settings())
    lines = {r["task"]: r for r in read_results(out)}
    assert lines["answer"]["success"] is False
    assert lines["answer"]["error"] == "environment: no device; device=emulator-5554"
    assert lines["answer"]["folder"] is None
    assert lines["note"]["success"] is True

    # A model with no answers left ends the episode with a model error, recorded.
    out2 = tmp_path / "out2"
    run_suite(suite.select(["answer"]), out2, FakeSource(tmp_path / "d2"), replay_source([]), settings())
    (line,) = read_results(out2)
    assert line["error"].startswith("model_error: replay:test has no answer left")


def test_setup_failure_is_recorded_and_teardown_still_runs(tmp_path: Path, fake_source: FakeSource) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "tasks:\n"
        "  - id: t\n    goal: g\n    env: android\n"
        "    setup: [{shell: 'echo broken >&2; exit 4'}]\n"
        "    success: {answer: {exact: x}}\n"
        "    teardown: [{shell: 'touch cleaned'}]\n"
    )
    out = tmp_path / "out"
    run_suite(load_suite(path), out, fake_source, replay_source(), settings())
    (line,) = read_results(out)
    assert line["error"] == "setup: 'echo broken >&2; exit 4' exited with 4: broken"
    assert line["steps"] == 0 and line["success"] is False
    assert (fake_source.built[0].root / "cleaned").exists()


class StoppingModel:
    """Stops the runner (as Ctrl-C does) during its second answer."""

    name = "replay:stopping"

    def __init__(self, runner: list[SuiteRunner]) -> None:
        self.runner = runner
        self.inner = ReplayModel(REPLAY, name=self.name)

    def begin_episode(self, task_id: str | None) -> None:
        self.inner.begin_episode(task_id)

    def complete(self, messages: Any) -> Completion:
        if len(self.inner.calls) == 1:
            self.runner[0].stop.set()
        return self.inner.complete(messages)

    def describe(self) -> dict[str, object]:
        return {"backend": "replay", "model": self.name}

    def close(self) -> None:
        pass


def test_stopping_keeps_finished_results_and_resume_finishes(
    tmp_path: Path, suite: Suite, fake_source: FakeSource
) -> None:
    out = tmp_path / "out"
    holder: list[SuiteRunner] = []
    model = StoppingModel(holder)
    runner = SuiteRunner(
        suite.select(["answer", "note"]),
        out,
        fake_source,
        ModelPerEpisode(lambda: model),
        settings(),
        stream=io.StringIO(),
    )
    holder.append(runner)
    outcome = runner.run()
    assert outcome.interrupted
    assert [(r["task"], r["success"]) for r in read_results(out)] == [("answer", True)]
    # The stopped episode left a folder without a result line; resuming reruns it.
    assert (out / "episodes" / "note" / "trial-1").exists()
    outcome = run_suite(
        suite.select(["answer", "note"]), out, fake_source, replay_source(), settings(force=True)
    )
    assert (outcome.ran, outcome.skipped, outcome.interrupted) == (1, 1, False)
    assert sorted(r["task"] for r in read_results(out)) == ["answer", "note"]


def test_progress_bar_reports_success_so_far(tmp_path: Path, suite: Suite, fake_source: FakeSource) -> None:
    stream = io.StringIO()
    run_suite(
        suite.select(["answer", "claims"]),
        tmp_path / "out",
        fake_source,
        replay_source(),
        settings(progress=True),
        stream=stream,
    )
    text = stream.getvalue()
    assert "2/2" in text and "success 1/2" in text


class SlowModel:
    """Records how many calls overlap; answers every call with terminate."""

    name = "slow"

    def __init__(self) -> None:
        import threading

        self.active = 0
        self.most = 0
        self.lock = threading.Lock()

    def begin_episode(self, task_id: str | None) -> None:
        pass

    def complete(self, messages: Any) -> Completion:
        import time

        from screenpilot.model.base import Usage

        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.05)
        with self.lock:
            self.active -= 1
        return Completion(call(action="terminate", status="success"), Usage())

    def describe(self) -> dict[str, object]:
        return {"backend": "test", "model": self.name}

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("serialize", "most"), [(True, 1), (False, 2)])
def test_a_shared_model_is_serialised_only_when_asked(
    tmp_path: Path, fake_source: FakeSource, serialize: bool, most: int
) -> None:
    from screenpilot.tasks.runner import SharedModel

    path = tmp_path / "s.yaml"
    path.write_text(
        "tasks:\n"
        + "".join(f"  - {{id: t{i}, goal: g, env: android, success: {{shell: 'true'}}}}\n" for i in range(3))
    )
    model = SlowModel()
    run_suite(
        load_suite(path),
        tmp_path / "out",
        fake_source,
        SharedModel(model, serialize=serialize),
        settings(jobs=3),
    )
    assert model.most == most if serialize else model.most >= most
    assert all(r["success"] for r in read_results(tmp_path / "out"))


class UnpluggedSource(FakeSource):
    """The phones of the listed workers are not connected (a setup error, not a task failure)."""

    def __init__(self, root: Path, unplugged: set[int]) -> None:
        super().__init__(root)
        self.unplugged = unplugged

    def build(self, task: Any, worker: int) -> ShellFakeEnv:
        if worker in self.unplugged:
            from screenpilot.errors import SetupError

            raise SetupError(f"Android device 'phone-{worker}' is not connected")
        return super().build(task, worker)


def test_a_worker_without_a_device_retires_and_the_others_carry_on(tmp_path: Path, suite: Suite) -> None:
    out = tmp_path / "out"
    stream = io.StringIO()
    two = suite.select(["answer", "note"])
    outcome = run_suite(
        two,
        out,
        UnpluggedSource(tmp_path / "d", {1}),
        replay_source(),
        settings(jobs=2, trials=2),
        stream=stream,
    )
    assert "worker 1 stopped: Android device 'phone-1' is not connected" in stream.getvalue()
    assert outcome.ran == 4
    assert all(r["success"] and r["worker"] == 0 for r in read_results(out))


def test_no_device_at_all_stops_the_run_unrecorded(tmp_path: Path, suite: Suite) -> None:
    from screenpilot.errors import SetupError

    out = tmp_path / "out"
    two = suite.select(["answer", "note"])
    with pytest.raises(
        SetupError, match=r"'phone-0' is not connected \(2 episodes not run; run the same command"
    ):
        run_suite(
            two, out, UnpluggedSource(tmp_path / "d", {0}), replay_source(), settings(), stream=io.StringIO()
        )
    assert read_results(out) == []
    outcome = run_suite(two, out, FakeSource(tmp_path / "d2"), replay_source(), settings())
    assert (outcome.ran, outcome.skipped) == (2, 0)


def test_per_episode_models_are_closed_after_their_episode(
    tmp_path: Path, suite: Suite, fake_source: FakeSource
) -> None:
    made: list[ReplayModel] = []
    closed: list[ReplayModel] = []

    class Counted(ReplayModel):
        def close(self) -> None:
            closed.append(self)

    def factory() -> ReplayModel:
        made.append(Counted(REPLAY, name="replay:test"))
        return made[-1]

    source = ModelPerEpisode(factory)
    run_suite(suite.select(["answer", "note"]), tmp_path / "out", fake_source, source, settings(trials=2))
    assert len(made) == 5  # one for describe(), one per episode
    assert closed == made[1:]
    source.close()
    assert closed[-1] is made[0]


def test_a_failed_teardown_is_recorded_apart_and_the_check_decides(
    tmp_path: Path, fake_source: FakeSource
) -> None:
    from screenpilot.tasks.report import render_report

    path = tmp_path / "s.yaml"
    path.write_text(
        "tasks:\n"
        "  - id: t\n    goal: g\n    env: android\n"
        "    success: {answer: {normalized: '42'}}\n"
        "    teardown: [{shell: 'echo stuck >&2; exit 3'}]\n"
    )
    out = tmp_path / "out"
    answers = replay_source([("t", call(action="answer", text="42"))])
    outcome = run_suite(load_suite(path), out, fake_source, answers, settings())
    (line,) = read_results(out)
    assert (line["success"], line["error"], line["infra_error"]) == (True, None, False)
    assert line["teardown_error"] == "teardown: 'echo stuck >&2; exit 3' exited with 3: stuck"
    assert "teardown_s" in line["phases"]
    overall = outcome.summary["overall"]
    assert (overall["successes"], overall["errors"], overall["teardown_errors"]) == (1, 0, 1)
    assert fake_source.built[0].closed_count == 1  # an environment whose teardown failed is not reused
    html = render_report(out)
    assert "Teardown failed:</strong> teardown: &#39;echo stuck &gt;&amp;2; exit 3&#39; exited with 3" in html


class SettlingEnv(ShellFakeEnv):
    """Has its own settle, as the Android and desktop environments do; counts captures."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.settle_timeouts: list[float | None] = []
        self.observed = 0

    def _observe(self) -> Any:
        self.observed += 1
        return super()._observe()

    def settle(self, timeout_s: float | None = None) -> SettleResult:
        self.settle_timeouts.append(timeout_s)
        return SettleResult(stable=True, waited_s=0.0, frames=1, last=None)


def test_bench_settles_through_the_environment_own_settle(tmp_path: Path) -> None:
    from screenpilot.cli.wiring import make_settle
    from screenpilot.settings import Settings

    class Source(FakeSource):
        def build(self, task: Any, worker: int) -> SettlingEnv:
            env = SettlingEnv(self.root / f"worker-{worker}")
            self.built.append(env)
            return env

    path = tmp_path / "s.yaml"
    path.write_text("tasks:\n  - {id: note, goal: g, env: android, success: {shell: 'true'}}\n")
    source = Source(tmp_path / "devices")
    answers = replay_source(
        [
            ("note", call(action="click", coordinate=[10, 20])),
            ("note", call(action="terminate", status="success")),
        ]
    )
    settle = make_settle(Settings(settle_timeout=1.5))
    run_suite(load_suite(path), tmp_path / "out", source, answers, settings(), settle=settle)
    (env,) = source.built
    (line,) = read_results(tmp_path / "out")
    assert (line["success"], line["steps"]) == (True, 2)
    assert env.settle_timeouts == [1.5]  # after the click
    assert env.observed == 2  # one screen per step; no polling


class HandingOverEnv(SettlingEnv):
    """Its settle hands over the stable frame it took, as the Android and desktop environments' settle does."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.settled_frames = 0

    def settle(self, timeout_s: float | None = None) -> SettleResult:
        self.settle_timeouts.append(timeout_s)
        self.settled_frames += 1
        frame = ShellFakeEnv._observe(self)
        return SettleResult(stable=True, waited_s=0.0, frames=1, last=frame.screenshot, observation=frame)


def test_setup_hands_its_settled_frame_to_the_first_step(tmp_path: Path) -> None:
    from screenpilot.cli.wiring import make_settle
    from screenpilot.settings import Settings

    class Source(FakeSource):
        def build(self, task: Any, worker: int) -> HandingOverEnv:
            env = HandingOverEnv(self.root / f"worker-{worker}")
            self.built.append(env)
            return env

    path = tmp_path / "s.yaml"
    path.write_text(
        "tasks:\n  - {id: note, goal: g, env: android, setup: [{shell: 'true'}], success: {shell: 'true'}}\n"
    )
    source = Source(tmp_path / "devices")
    answers = replay_source(
        [
            ("note", call(action="click", coordinate=[10, 20])),
            ("note", call(action="terminate", status="success")),
        ]
    )
    settle = make_settle(Settings(settle_timeout=1.5))
    run_suite(load_suite(path), tmp_path / "out", source, answers, settings(), settle=settle)
    (env,) = source.built
    (line,) = read_results(tmp_path / "out")
    assert (line["success"], line["steps"]) == (True, 2)
    assert env.settle_timeouts == [1.5, 1.5]  # after the setup, after the click
    # the reset's screen only: step 1 sees the setup's settled frame, step 2 the click's
    assert (env.observed, env.settled_frames) == (1, 2)


def test_prepared_env_settles_by_polling_when_the_inner_one_cannot() -> None:
    from screenpilot.envs.fake import FakeEnv
    from screenpilot.tasks.runner import PreparedEnv

    inner = FakeEnv(Size(64, 64))
    assert not hasattr(inner, "settle")
    prepared = PreparedEnv(inner, inner.reset())
    result = prepared.settle(timeout_s=2.0)
    assert result.stable and result.frames >= 2 and result.last is not None


class StopDuringFirstAnswer(StoppingModel):
    """Stops the runner (as Ctrl-C does) while the model gives its first answer."""

    def complete(self, messages: Any) -> Completion:
        if not self.inner.calls:
            self.runner[0].stop.set()
        return self.inner.complete(messages)


def test_an_episode_whose_final_step_was_under_way_when_the_run_stopped_is_finished(
    tmp_path: Path, suite: Suite, fake_source: FakeSource
) -> None:
    out = tmp_path / "out"
    holder: list[SuiteRunner] = []
    model = StopDuringFirstAnswer(holder)
    runner = SuiteRunner(
        suite.select(["answer", "note"]), out, fake_source, ModelPerEpisode(lambda: model), settings()
    )
    holder.append(runner)
    outcome = runner.run()
    assert outcome.interrupted
    # The agent answered in that step, so the episode ended by itself: it is checked and recorded, not rerun.
    (line,) = read_results(out)
    assert (line["task"], line["success"], line["agent_reason"]) == ("answer", True, "answered")
    result = load_run(out / "episodes" / "answer" / "trial-1").result
    assert result is not None and (result.reason, result.answer) == ("answered", "42.")
    assert outcome.summary["interrupted"] == []
