"""Episodes per minute with the local executor and on Ray, and what Ray adds per episode.

Every episode is a typical one: ``--steps`` steps (clicks, then an answer) on a fake phone screen, each step
waiting ``--model-s`` seconds for the model as a served model does (the CPU is free meanwhile). The same suite
runs with the local executor and on a local Ray (``ray.init(num_cpus=2)``) at 1 and 2 workers. Ray's one-time
costs (starting Ray, starting the workers) are printed apart; its overhead per episode is the difference of
the steady-state episode times, against the goal of under 5 % of a 10-step episode.

    python3 benchmarks/bench_ray.py [--episodes 12] [--steps 10] [--model-s 0.1] [--niceness 0]

``--miniwob N`` instead runs N trials of MiniWoB++'s ``click-test`` in Chromium (a click, then giving up where
the seed moved the button), 2 jobs locally against 2 Ray workers, each with its own display and browser: what a
real browser episode costs with each executor, browser start included.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import threading
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from screenpilot.actions.coords import Size
from screenpilot.envs.fake import FakeEnv
from screenpilot.model.base import Completion
from screenpilot.model.replay import ReplayModel
from screenpilot.tasks.ray_executor import RayExecutor, RayPlan
from screenpilot.tasks.runner import BenchSettings, ModelPerEpisode, run_suite
from screenpilot.tasks.suite import Task, load_suite


class Phones:
    """A fake phone screen per worker."""

    def key(self, task: Task) -> Hashable:
        return task.env

    def build(self, task: Task, worker: int) -> FakeEnv:
        return FakeEnv(Size(1080, 2400))


class ThinkingReplay(ReplayModel):
    """Replayed answers that take ``delay`` seconds each."""

    def __init__(self, answers: list[tuple[str | None, str]], delay: float) -> None:
        super().__init__(answers, name="replay:bench")
        self.delay = delay

    def complete(self, messages: Any, *, deadline: float | None = None) -> Completion:
        time.sleep(self.delay)
        return super().complete(messages, deadline=deadline)


def call(**arguments: object) -> str:
    return "<tool_call>\n" + json.dumps({"name": "mobile_use", "arguments": arguments}) + "\n</tool_call>"


class Models:
    """``make_models`` for the workers (and the driver's source): a fresh replay per episode."""

    def __init__(self, steps: int, delay: float) -> None:
        self.answers: list[tuple[str | None, str]] = [(None, call(action="click", coordinate=[500, 900]))] * (
            steps - 1
        ) + [(None, call(action="answer", text="ok"))]
        self.delay = delay

    def __call__(self, worker: int = 0) -> ModelPerEpisode:
        return ModelPerEpisode(lambda: ThinkingReplay(self.answers, self.delay))


def write_suite(folder: Path, episodes: int) -> Path:
    path = folder / "suite.yaml"
    tasks = "".join(
        f"  - {{id: t{i}, goal: g, env: android, success: {{answer: {{exact: ok}}}}}}\n"
        for i in range(episodes)
    )
    path.write_text("tasks:\n" + tasks, encoding="utf-8")
    return path


def settings(jobs: int) -> BenchSettings:
    return BenchSettings(jobs=jobs, progress=False, dialect_options={"answer_action": True})


def run_local(suite: Path, out: Path, models: Models, jobs: int) -> float:
    """Wall seconds for the suite with ``jobs`` threads."""
    t0 = time.perf_counter()
    outcome = run_suite(load_suite(suite), out, Phones(), models(), settings(jobs), stream=io.StringIO())
    assert outcome.exit_status == 0 and outcome.ran == outcome.summary["planned"]
    return time.perf_counter() - t0


def run_ray(
    suite: Path, out: Path, models: Models, workers: int, queued: int, niceness: int = 0
) -> tuple[float, float, dict[str, Any]]:
    """Seconds to start the workers, the seconds from then to the end of the suite, and the executor's timings
    (summary.json's ``ray.timing``)."""
    plan = RayPlan(
        workers=workers,
        make_envs=lambda worker: Phones(),
        make_models=models,
        make_settle=lambda: None,
        queued=queued,
        niceness=niceness,
    )
    executor = RayExecutor(plan)
    started: list[float] = []
    threading.Thread(
        target=lambda: (executor.ready.wait(), started.append(time.perf_counter())), daemon=True
    ).start()
    t0 = time.perf_counter()
    outcome = run_suite(
        load_suite(suite),
        out,
        Phones(),
        models(),
        settings(workers),
        stream=io.StringIO(),
        executor=executor,
    )
    end = time.perf_counter()
    assert outcome.exit_status == 0 and outcome.ran == outcome.summary["planned"]
    return started[0] - t0, end - started[0], outcome.summary["ray"]["timing"]


def miniwob_models(worker: int = 0) -> ModelPerEpisode:
    """Click where seed 7 puts click-test's button (in the 476x616 model image), then give up."""
    calls = ({"action": "left_click", "coordinate": [350, 333]}, {"action": "terminate", "status": "failure"})
    answers: list[tuple[str | None, str]] = [
        (None, "<tool_call>\n" + json.dumps({"name": "computer_use", "arguments": c}) + "\n</tool_call>")
        for c in calls
    ]
    return ModelPerEpisode(lambda: ReplayModel(answers, name="replay:bench"))


def run_miniwob(trials: int) -> None:
    """``--miniwob``: the same click-test trials, 2 local jobs against 2 Ray workers."""
    import ray

    from screenpilot.tasks.miniwob import MiniwobEnvSource, MiniwobWorkerEnvs, load_miniwob_suite

    suite = load_miniwob_suite("miniwob:click-test")
    run = BenchSettings(trials=trials, jobs=2, seed=7, progress=False, dialect="qwen2.5-vl")
    walls: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        outcome = run_suite(
            suite, Path(tmp) / "local", MiniwobEnvSource(), miniwob_models(), run, stream=io.StringIO()
        )
        walls["local, 2 jobs"] = time.perf_counter() - t0
        assert outcome.exit_status == 0 and outcome.ran == trials
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            plan = RayPlan(
                workers=2, make_envs=MiniwobWorkerEnvs(), make_models=miniwob_models, make_settle=lambda: None
            )
            executor = RayExecutor(plan)
            t0 = time.perf_counter()
            ready: list[float] = []
            threading.Thread(
                target=lambda: (executor.ready.wait(), ready.append(time.perf_counter())), daemon=True
            ).start()
            outcome = run_suite(
                suite,
                Path(tmp) / "ray",
                MiniwobEnvSource(),
                miniwob_models(),
                run,
                stream=io.StringIO(),
                executor=executor,
            )
            walls["ray, 2 workers"] = time.perf_counter() - t0
            started = ready[0] - t0
        finally:
            ray.shutdown()
        assert outcome.exit_status == 0 and outcome.ran == trials
    timing = outcome.summary["ray"]["timing"]
    per = max(timing["episodes"], 1)
    print(
        f"{trials} MiniWoB++ click-test episodes (1-2 steps each, instant model), browsers started included"
    )
    print(f"{'executor':<28}{'episodes/min':>14}{'s/episode':>12}")
    for label, wall in walls.items():
        print(f"{label:<28}{trials / wall * 60:>14.1f}{wall / trials * 2:>12.3f}")
    print(
        f"on Ray: a worker packed its episode folder in {timing['pack_s'] / per * 1000:.1f} ms, the driver took "
        f"{timing['driver_s'] / per * 1000:.1f} ms per episode, a worker waited "
        f"{timing['worker_idle_s'] / max(timing['gaps'], 1) * 1000:.1f} ms between episodes; starting the "
        f"workers took {started:.2f} s of the run (their browsers start at their first episode, as locally)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--model-s", type=float, default=0.1)
    parser.add_argument("--niceness", type=int, default=0, help="the Ray workers' (Ray's own default: 15)")
    parser.add_argument("--miniwob", type=int, metavar="N", help="N MiniWoB++ episodes in Chromium instead")
    args = parser.parse_args()
    if args.miniwob:
        run_miniwob(args.miniwob)
        return
    import ray

    models = Models(args.steps, args.model_s)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suite = write_suite(root, args.episodes)
        local = {jobs: run_local(suite, root / f"local-{jobs}", models, jobs) for jobs in (1, 2)}
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t0
        try:
            on_ray = {
                (w, q): run_ray(suite, root / f"ray-{w}-{q}", models, w, q, args.niceness)
                for q in (0, 1)
                for w in (1, 2)
            }
        finally:
            ray.shutdown()
    report(args, local, ray_start, on_ray)


def report(
    args: argparse.Namespace,
    local: dict[int, float],
    ray_start: float,
    on_ray: dict[tuple[int, int], tuple[float, float, dict[str, Any]]],
) -> None:
    """The table, the one-time costs, and Ray's overhead per episode with where it goes."""
    n = args.episodes
    print(
        f"{n} episodes of {args.steps} steps, {args.model_s:g} s of model time per step; "
        f"Ray workers at niceness {args.niceness}"
    )
    print(f"{'executor':<28}{'episodes/min':>14}{'s/episode':>12}")
    for jobs, wall in local.items():
        print(f"{f'local, {jobs} job' + 's' * (jobs > 1):<28}{n / wall * 60:>14.1f}{wall / n * jobs:>12.3f}")
    for (workers, queued), (_, wall, _) in on_ray.items():
        label = f"ray, {workers} worker" + "s" * (workers > 1) + (", 1 queued" if queued else ", none queued")
        print(f"{label:<28}{n / wall * 60:>14.1f}{wall / n * workers:>12.3f}")
    print(
        f"one-time: ray.init {ray_start:.2f} s; workers started in "
        + ", ".join(f"{s:.2f} s ({w}/{q})" for (w, q), (s, _, _) in on_ray.items())
    )
    for (k, queued), (_, wall, timing) in on_ray.items():
        per_local = local[k] / n * k
        extra = wall / n * k - per_local
        per = max(timing["episodes"], 1)
        print(
            f"ray overhead per episode at {k}, {queued} queued: {extra * 1000:+.1f} ms "
            f"({100 * extra / per_local:+.2f} % of an episode); a worker waited "
            f"{timing['worker_idle_s'] / max(timing['gaps'], 1) * 1000:.1f} ms between episodes, packed its folder in "
            f"{timing['pack_s'] / per * 1000:.1f} ms; the driver took {timing['driver_s'] / per * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
