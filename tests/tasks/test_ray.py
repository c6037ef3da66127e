"""bench --executor ray on a local Ray (2 CPUs, shared by the module): the same results as the local executor
on fake phones and sandbox displays, a worker killed mid-run, and resume after the driver is killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from screenpilot.cli.main import main
from screenpilot.envs.android.fake_server import FakeAdbServer
from screenpilot.errors import SetupError
from screenpilot.tasks.ray_executor import RayExecutor, RayPlan, probe_address
from screenpilot.tasks.runner import ModelPerEpisode, read_results, run_suite
from screenpilot.tasks.suite import load_suite
from tests.tasks.fakes import FakeSource
from tests.tasks.test_bench_run_control import answering_replay, bench_cmd, write_suite
from tests.tasks.test_examples import EXAMPLES, load_fake_phone
from tests.tasks.test_runner import settings

ray = pytest.importorskip("ray")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[str]:
    """One local Ray for the module: 2 CPUs and 2 'android' resources (a node with two phones)."""
    ray.init(num_cpus=2, resources={"android": 2}, include_dashboard=False, log_to_driver=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def outcomes(out: Path) -> dict[tuple[str, int], tuple[Any, ...]]:
    """What an episode came to, leaving out where and when it ran."""
    return {
        (r["task"], int(r["trial"])): (r["success"], r["agent_status"], r["answer"], r["steps"], r["check"])
        for r in read_results(out)
    }


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_phones_give_the_same_results_as_the_local_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_phone = load_fake_phone()
    phones = [fake_phone.make_phone("emulator-5554"), fake_phone.make_phone("emulator-5556")]
    args = ["bench", str(EXAMPLES / "android.yaml"), "--env", "android", "--answer-action", "--trials", "2"]
    args += ["--model", f"replay:{EXAMPLES / 'android.replay.jsonl'}", "--no-progress", "--no-settle"]
    with FakeAdbServer(phones) as server:
        for key, value in server.environ.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("ANDROID_SERIAL", raising=False)
        serials = ["--serial", "emulator-5554", "--serial", "emulator-5556"]
        assert main([*args, *serials, "--out", str(tmp_path / "local")]) == 0
        # On Ray each worker claims a phone its node's ADB server lists: no --serial needed.
        assert main([*args, "--jobs", "2", "--executor", "ray", "--out", str(tmp_path / "ray")]) == 0
    err = capsys.readouterr().err
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert len(outcomes(on_ray)) == 8 and outcomes(on_ray) == outcomes(local)
    for line in read_results(on_ray):  # each episode's folder came back from its worker, whole
        folder = on_ray / line["folder"]
        assert files(folder) == files(local / line["folder"])
        assert json.loads((folder / "result.json").read_text())["steps"] == line["steps"]
    manifest = json.loads((on_ray / "manifest.json").read_text())
    assert sorted(d["env"]["serial"] for d in manifest["devices"]) == ["emulator-5554", "emulator-5556"]
    summary = json.loads((on_ray / "summary.json").read_text())
    assert summary["complete"] and summary["ray"]["workers"] == 2 and summary["ray"]["workers_lost"] == 0
    assert sum(summary["ray"]["nodes"].values()) == 8
    assert "cluster: 8/8 done; " in err and "/min; ETA " in err
    assert (on_ray / "report.html").exists()


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="the sandbox needs Xvfb")
def test_sandbox_displays_on_ray_workers(tmp_path: Path) -> None:
    out = tmp_path / "sandbox"
    args = ["bench", str(EXAMPLES / "sandbox.yaml"), "--env", "sandbox", "--jobs", "2", "--executor", "ray"]
    args += ["--model", f"replay:{EXAMPLES / 'sandbox.replay.jsonl'}", "--out", str(out), "--no-progress"]
    assert main([*args, "--no-report"]) == 0
    # The local executor's results on this suite (tests/tasks/test_examples.py).
    assert {r["task"]: r["success"] for r in read_results(out)} == {
        "send-greeting": True,
        "double-click-pad": True,
        "scroll-pad": True,
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert {d["model_image"] for d in manifest["devices"]} == {"1288x812"}


class _PidSource(FakeSource):
    """FakeSource whose workers write their process id where the test can find it."""

    def build(self, task: Any, worker: int) -> Any:
        (self.root / f"pid-{worker}").parent.mkdir(parents=True, exist_ok=True)
        (self.root / f"pid-{worker}").write_text(str(os.getpid()))
        return super().build(task, worker)


def _replay_models(replay: Path) -> Any:
    from screenpilot.model.replay import ReplayModel

    return lambda worker: ModelPerEpisode(lambda: ReplayModel.from_path(str(replay)))


def test_a_worker_killed_mid_episode_is_retried_elsewhere(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path, 6, extra=", setup: [{sleep: 0.4}]"))
    replay = answering_replay(tmp_path)
    devices = tmp_path / "devices"
    plan = RayPlan(
        workers=2,
        make_envs=lambda worker: _PidSource(devices),
        make_models=_replay_models(replay),
        make_settle=lambda: None,
    )
    executor = RayExecutor(plan)
    out = tmp_path / "out"

    def kill_one() -> None:
        executor.ready.wait(60)
        pid_file = devices / "pid-0"
        deadline = time.monotonic() + 60
        while not (out / "results.jsonl").exists() or not pid_file.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    outcome = run_suite(
        suite, out, FakeSource(devices), _replay_models(replay)(0), settings(), executor=executor
    )
    killer.join(5)
    lines = read_results(out)
    assert outcome.exit_status == 0 and len(lines) == 6
    assert all(r["success"] for r in lines)  # the lost episode ran again on the worker left
    assert outcome.summary["ray"]["workers_lost"] == 1 and outcome.summary["complete"]
    assert {r["worker"] for r in lines[-2:]} == {1}


def test_resume_after_the_driver_is_killed(tmp_path: Path, local_ray: str) -> None:
    suite = write_suite(tmp_path, 6, extra=", setup: [{sleep: 0.3}]")
    replay = answering_replay(tmp_path)
    out = tmp_path / "out"
    cmd = bench_cmd(suite, out, replay, "--no-progress", "--executor", "ray", "--jobs", "2")
    driver = subprocess.Popen(
        [sys.executable, "-m", "screenpilot", *cmd, "--ray-address", local_ray],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 90
        while len(read_results(out)) < 2:
            assert driver.poll() is None and time.monotonic() < deadline, driver.stderr
            time.sleep(0.05)
    finally:
        driver.kill()
        driver.wait(30)
    before = (out / "results.jsonl").read_bytes()
    assert 2 <= len(before.splitlines()) < 6
    assert main(cmd) == 0  # the same command again resumes
    after = (out / "results.jsonl").read_bytes()
    assert after.startswith(before)
    lines = [json.loads(x) for x in after.splitlines()]
    assert sorted(r["task"] for r in lines) == [f"t{i}" for i in range(6)] and all(
        r["success"] for r in lines
    )
    assert json.loads((out / "summary.json").read_text())["complete"]


class _DyingSource(FakeSource):
    """FakeSource whose worker process dies when it builds an environment for the task ``boom``."""

    def key(self, task: Any) -> Any:
        return task.id  # a new environment for every task

    def build(self, task: Any, worker: int) -> Any:
        if task.id == "boom":
            os._exit(1)
        return super().build(task, worker)


def _run_where_boom_kills_its_worker(
    tmp_path: Path, *, tasks: int, workers: int, lost_retries: int
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Run a suite whose first task (``boom``) kills the Ray worker running it; the outcome and the result
    lines by task."""
    path = write_suite(tmp_path, tasks)
    path.write_text(path.read_text().replace("id: t0", "id: boom"))
    replay = answering_replay(tmp_path)
    devices = tmp_path / "devices"
    plan = RayPlan(
        workers=workers,
        num_cpus=0.5,
        lost_retries=lost_retries,
        make_envs=lambda worker: _DyingSource(devices),
        make_models=_replay_models(replay),
        make_settle=lambda: None,
    )
    out = tmp_path / "out"
    outcome = run_suite(
        load_suite(path),
        out,
        FakeSource(devices),
        _replay_models(replay)(0),
        settings(),
        executor=RayExecutor(plan),
    )
    lines = {r["task"]: r for r in read_results(out)}
    return outcome, lines


def test_an_episode_that_keeps_losing_its_worker_is_recorded_as_crashed(tmp_path: Path) -> None:
    outcome, lines = _run_where_boom_kills_its_worker(tmp_path, tasks=2, workers=3, lost_retries=1)
    assert outcome.exit_status == 0 and lines["t1"]["success"]  # the run went on
    boom = lines["boom"]
    assert boom["infra_error"] and boom["error"].startswith("crashed: the Ray worker on ")
    assert boom["error"].endswith("(2 tries)") and outcome.summary["ray"]["workers_lost"] == 2
    # The crashed episode counts, once, as a failure: in the denominator, not left out of it.
    stats = {t["task"]: t for t in outcome.summary["tasks"]}
    assert (stats["boom"]["trials"], stats["boom"]["successes"], stats["boom"]["infra_errors"]) == (1, 0, 1)
    assert outcome.summary["finished"] == outcome.summary["planned"] == 2
    assert outcome.summary["overall"]["success_rate"] == 0.5 and outcome.summary["overall"]["episodes"] == 2


def test_ctrl_c_keeps_finished_episodes_and_marks_running_ones_interrupted(
    tmp_path: Path, local_ray: str
) -> None:
    suite = write_suite(tmp_path, 6, extra=", setup: [{sleep: 0.4}]")
    replay = answering_replay(tmp_path)
    out = tmp_path / "out"
    cmd = bench_cmd(suite, out, replay, "--no-progress", "--executor", "ray", "--jobs", "2")
    driver = subprocess.Popen(
        [sys.executable, "-m", "screenpilot", *cmd, "--ray-address", local_ray],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 90
        while len(read_results(out)) < 1:
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err
    summary = json.loads((out / "summary.json").read_text())
    finished = read_results(out)
    assert not summary["complete"] and summary["finished"] == len(finished) < 6
    assert summary["interrupted"] and summary["stopped"] == "Ctrl-C"
    for item in summary["interrupted"]:  # stopped in its setup (no folder yet) or after a step: no line
        result = out / "episodes" / item["task"] / f"trial-{item['trial']}" / "result.json"
        assert not result.exists() or json.loads(result.read_text())["reason"] == "interrupted"
        assert item["task"] not in {r["task"] for r in finished}


def test_a_cluster_without_the_devices_or_several_servers_off_ray_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = write_suite(tmp_path, 1)
    replay = answering_replay(tmp_path)
    args = ["bench", str(suite), "--env", "android", "--answer-action", "--out", str(tmp_path / "out")]
    assert main([*args, "--model", f"replay:{replay}", "--executor", "ray", "--jobs", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (
        "the Ray cluster has 2 android but the run needs 3; start each node with its phones as `ray start"
        in err
    )
    assert main([*args, "--model", "http://a:1/v1,http://b:1/v1"]) == 2
    assert "several --model servers (comma-separated) need --executor ray" in capsys.readouterr().err
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(
        SetupError, match=r"cannot reach the Ray cluster at ray://127.0.0.1:\d+ \(Connection refused\); "
    ):
        probe_address(f"ray://127.0.0.1:{port}")  # at once, not after Ray's minutes of retries


def test_a_local_model_runs_as_a_model_actor_the_workers_of_its_node_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tiny random Qwen2.5-VL on the CPU stands in for a GPU model (--ray-model-gpus 0)."""
    for module in ("torch", "transformers", "tokenizers"):
        pytest.importorskip(module)
    from tests.model.tiny_qwen import build_tiny_qwen25vl

    model = build_tiny_qwen25vl(tmp_path / "tiny")
    suite = write_suite(tmp_path, 2)
    out = tmp_path / "out"
    args = [
        "bench",
        str(suite),
        "--env",
        "fake",
        "--screen-size",
        "360x640",
        "--out",
        str(out),
        "--no-report",
    ]
    args += ["--model", str(model), "--device", "cpu", "--max-new-tokens", "8", "--max-steps", "1"]
    args += ["--min-pixels", "3136", "--max-pixels", "156800", "--no-progress", "--max-retries", "0"]
    assert main([*args, "--executor", "ray", "--jobs", "2", "--ray-model-gpus", "0"]) == 0
    lines = read_results(out)
    assert len(lines) == 2 and not any(r["infra_error"] for r in lines), capsys.readouterr().err
    for line in lines:  # the model answered every step (random words: no action parsed)
        steps = [json.loads(x) for x in (out / line["folder"] / "trajectory.jsonl").read_text().splitlines()]
        assert steps and all(step["outputs"] and step["usage"][0]["output_tokens"] for step in steps)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["fingerprint"]["model"]["placement"] == "one Ray model actor per node"


def test_several_model_servers_each_worker_keeps_to_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.model.openai_server import ScriptedServer

    suite = write_suite(tmp_path, 4)
    out = tmp_path / "out"
    with ScriptedServer() as first, ScriptedServer() as second, ScriptedServer() as third:
        servers = [first, second]
        for server in servers:
            server.default_text = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "answer", "text": "ok"}}\n</tool_call>'
        args = ["bench", str(suite), "--env", "fake", "--screen-size", "360x640", "--answer-action"]
        args += ["--served-model", first.models[0], "--no-progress"]
        args += ["--out", str(out), "--no-report", "--executor", "ray", "--jobs", "2", "--ray-shared-out"]
        assert main([*args, "--model", f"{first.url},{second.url}"]) == 0
        fingerprint = json.loads((out / "manifest.json").read_text())["fingerprint"]
        assert fingerprint["model"]["servers"] == [first.url, second.url]
        capsys.readouterr()
        # Resuming with another set of servers is refused like any changed setting.
        assert main([*args, "--model", f"{first.url},{third.url}"]) == 2
        assert "model.servers changed" in capsys.readouterr().err
    lines = read_results(out)
    assert len(lines) == 4 and all(r["success"] for r in lines)
    for line in lines:  # worker i asked server i for every step of every episode it ran
        run = json.loads((out / line["folder"] / "run.json").read_text())
        assert servers[line["worker"]].url in json.dumps(run["model"])
    for i, server in enumerate(servers):  # both served episodes (besides the start-up checks)
        ran = sum(r["worker"] == i for r in lines)
        assert ran and len(server.posts) >= ran


def test_a_ray_started_here_advertises_the_phones_the_run_asks_for(tmp_path: Path) -> None:
    def plan(address: str | None) -> RayPlan:
        return RayPlan(
            workers=3,
            make_envs=lambda worker: FakeSource(tmp_path),
            make_models=_replay_models(tmp_path / "r.jsonl"),
            make_settle=lambda: None,
            resources={"android": 1.0},
            address=address,
        )

    assert RayExecutor(plan(None)).init_kwargs()["resources"] == {"android": 3.0}
    joined = RayExecutor(plan("head:6379")).init_kwargs()
    assert (
        joined["address"] == "head:6379" and "resources" not in joined
    )  # a cluster's nodes say what they have


def test_the_episode_queued_on_a_worker_that_dies_goes_back_to_the_queue(tmp_path: Path) -> None:
    # boom, t1 .. t4: each worker runs one and holds the next queued
    outcome, lines = _run_where_boom_kills_its_worker(tmp_path, tasks=5, workers=2, lost_retries=0)
    assert lines["boom"]["error"].endswith("(1 tries)")  # no retry allowed: the running one is recorded
    # The episode queued behind it never started: it ran on the other worker, not recorded as crashed.
    assert all(lines[f"t{i}"]["success"] for i in range(1, 5)) and outcome.summary["ray"]["workers_lost"] == 1
    assert outcome.exit_status == 0 and outcome.summary["ray"]["timing"]["episodes"] == 4


def _worker_alone(tmp_path: Path) -> Any:
    """An episode worker outside Ray, on a fake phone, with a replay that answers at once."""
    from screenpilot.tasks.ray_worker import EpisodeWorker, WorkerSpec

    suite = load_suite(write_suite(tmp_path, 2))
    replay = answering_replay(tmp_path)
    spec = WorkerSpec(
        0, suite, settings(), lambda w: FakeSource(tmp_path / "devices"), _replay_models(replay), lambda: None
    )
    worker = EpisodeWorker(spec)
    assert "error" not in worker.start()
    return worker


def test_a_queued_episode_starts_once_the_driver_holds_the_answer_before_it(tmp_path: Path) -> None:
    worker = _worker_alone(tmp_path)
    try:
        first = worker.run("t0", 1, 0)
        assert first["line"]["success"] and first["folder"] and first["timing"]["episode_s"] > 0
        answers: list[dict[str, Any]] = []
        queued = threading.Thread(target=lambda: answers.append(worker.run("t1", 1, 1)))
        queued.start()
        queued.join(0.5)
        assert queued.is_alive() and not answers  # the answer of call 0 may still be on its way
        worker.received(0)
        queued.join(30)
        assert answers[0]["line"]["task"] == "t1" and answers[0]["line"]["success"]
    finally:
        worker.close()


def test_a_queued_episode_of_a_stopped_run_does_not_start(tmp_path: Path) -> None:
    worker = _worker_alone(tmp_path)
    try:
        worker.request_stop()
        assert worker.run("t0", 1, 0) == {"not_started": True}
        assert not list(worker.runner.out.rglob("*"))  # no episode folder was begun
    finally:
        worker.close()


class _NiceSource(FakeSource):
    """FakeSource that writes its worker process's CPU niceness where the test can find it."""

    def build(self, task: Any, worker: int) -> Any:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / f"nice-{worker}").write_text(str(os.nice(0)))
        return super().build(task, worker)


def test_workers_run_at_the_niceness_of_the_plan_not_rays_default(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path, 1))
    replay = answering_replay(tmp_path)
    devices = tmp_path / "devices"
    plan = RayPlan(
        workers=1,
        make_envs=lambda worker: _NiceSource(devices),
        make_models=_replay_models(replay),
        make_settle=lambda: None,
    )
    outcome = run_suite(
        suite,
        tmp_path / "out",
        FakeSource(devices),
        _replay_models(replay)(0),
        settings(),
        executor=RayExecutor(plan),
    )
    assert outcome.exit_status == 0 and (devices / "nice-0").read_text() == "0"  # Ray's own default is 15


# -- MiniWoB++ on Ray: each worker its own sandbox and Chromium --------------------------------------------------

HAVE_BROWSER = all(shutil.which(b) for b in ("chromium", "chromedriver", "Xvfb"))
browser = pytest.mark.skipif(not HAVE_BROWSER, reason="needs chromium, chromium-driver and Xvfb")
# click-test with seed 7: its button, in the 476x616 model image (tests/tasks/test_miniwob_suite.py).
_CLICK = {"action": "left_click", "coordinate": [350, 333]}
_GIVE_UP = {"action": "terminate", "status": "failure"}


def _miniwob_replay(path: Path) -> Path:
    """click-test clicks its button; the other tasks give up at once."""
    calls = [("click-test", _CLICK), ("click-test-2", _GIVE_UP), ("click-button", _GIVE_UP)]
    lines = [
        {"task": task, "output": "<tool_call>\n" + json.dumps({"name": "computer_use", "arguments": c})}
        for task, c in calls
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


_DISPLAY_PROCESSES = {"Xvfb", "chromium", "chromedriver", "chrome"}


def _left_by_workers() -> list[str]:
    """The X servers, browsers and drivers that Ray workers started (they carry the variable the executor sets
    for its workers) and that still run."""
    left = []
    for proc in Path("/proc").iterdir():
        try:
            name = (proc / "comm").read_text().strip()
            environ = (proc / "environ").read_bytes() if name in _DISPLAY_PROCESSES else b""
        except OSError:
            continue
        if b"RAY_worker_niceness=" in environ:
            left.append(f"{name} (pid {proc.name})")
    return left


def _miniwob_bench(tmp_path: Path, spec: str, *extra: str) -> tuple[Any, Any]:
    """The executor and driver model ``bench SPEC --env sandbox --executor ray --jobs 2`` makes."""
    from screenpilot.cli.main import build_parser
    from screenpilot.cli.options import settings_from_args
    from screenpilot.cli.ray_bench import bench_sources

    replay = _miniwob_replay(tmp_path / "answers.jsonl")
    argv = ["bench", spec, "--env", "sandbox", "--model", f"replay:{replay}", "--jobs", "2"]
    args = build_parser().parse_args([*argv, "--executor", "ray", "--out", str(tmp_path / "out"), *extra])
    return bench_sources(args, settings_from_args(args), 2)


@browser
def test_miniwob_on_ray_each_worker_its_own_browser_closed_at_the_end(tmp_path: Path) -> None:
    pytest.importorskip("miniwob")
    from screenpilot.tasks.miniwob import MiniwobEnvSource, MiniwobWorkerEnvs, load_miniwob_suite

    suite = load_miniwob_suite("miniwob:click-test,click-test-2,click-button")
    executor, models = _miniwob_bench(tmp_path, "miniwob:click-test,click-test-2,click-button")
    assert isinstance(executor.plan.make_envs, MiniwobWorkerEnvs)
    out = tmp_path / "out"
    outcome = run_suite(suite, out, MiniwobEnvSource(), models, settings(seed=7), executor=executor)

    lines = {r["task"]: r for r in read_results(out)}
    assert outcome.exit_status == 0 and outcome.summary["complete"] and len(lines) == 3
    hit = lines["click-test"]  # the page, seeded on its worker, gave its verdict
    assert hit["success"] and hit["agent_reason"] == "task_ended" and hit["task_result"]["raw_reward"] == 1.0
    assert hit["task_result"]["seed"] == 7 and hit["task_result"]["utterance"] == "Click the button."
    for task in ("click-test-2", "click-button"):
        assert not lines[task]["success"] and not lines[task]["infra_error"]
        assert "did not end the episode" in lines[task]["check"]["detail"]
    for line in lines.values():  # each folder came back whole
        assert (out / line["folder"] / "screens" / "step-0001.png").is_file()
    devices = json.loads((out / "manifest.json").read_text())["devices"]
    displays = {d["env"]["display"] for d in devices}
    assert len(devices) == 2 and len(displays) == 2  # a display and a browser per worker
    assert all(d["env"]["browser"].startswith("chromium ") for d in devices)
    assert outcome.summary["ray"]["workers"] == 2 and outcome.summary["ray"]["workers_lost"] == 0
    deadline = time.monotonic() + 10  # a browser that was told to quit may take a moment to exit
    while _left_by_workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _left_by_workers()  # clean shutdown: every browser, driver and X server stopped


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="the sandbox needs Xvfb")
def test_killing_the_driver_of_a_ray_it_started_leaves_no_display_or_app_running(tmp_path: Path) -> None:
    """kill -9 of the driver takes down the Ray it started, its workers with it, unclosed: what they started
    (X servers, the suite's app) is ended by their watchdogs; the same command then resumes the run."""
    out = tmp_path / "out"
    cmd = ["bench", str(EXAMPLES / "sandbox.yaml"), "--env", "sandbox", "--jobs", "2", "--executor", "ray"]
    cmd += ["--model", f"replay:{EXAMPLES / 'sandbox.replay.jsonl'}", "--out", str(out), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "screenpilot", *cmd, "--trials", "2", "--no-report"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while len(read_results(out)) < 1:
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert _left_by_workers()  # the other worker's display is up
    finally:
        driver.kill()
        driver.wait(30)
    deadline = time.monotonic() + 20
    while _left_by_workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _left_by_workers()
