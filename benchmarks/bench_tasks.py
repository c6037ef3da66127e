"""Costs of the benchmark machinery itself, apart from the model and the device.

Prints: screenpilot's own work per step (the step path: capture, digest, the model image, parsing, acting,
settle and recording, without the model's own time), as the step path was before (PNG written on the step's
critical path, a plain one-call resize, settle's frame thrown away) and as it is; suite validation time for a
large suite; the runner's overhead per episode and per step (fake environment, replayed answers: what remains
is setup bookkeeping, recording PNGs, the check, result lines); report rendering time per step at a phone's
screen size; and, when Xvfb is installed, the example sandbox suite's wall time with one and two parallel
sandboxes.

    python3 benchmarks/bench_tasks.py [--episodes 40] [--steps 5] [--model-s 0.2] [--no-sandbox]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

from PIL import Image

from screenpilot.actions.coords import CoordinateSpace, Size
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import Step, StepRecord, run_episode
from screenpilot.agent.record import RunRecorder, record_episode
from screenpilot.envs.base import Environment, Observation
from screenpilot.envs.fake import FakeEnv
from screenpilot.envs.settle import SettleResult, wait_until_stable
from screenpilot.model import images
from screenpilot.model.base import Completion, Message
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.replay import ReplayModel
from screenpilot.tasks.report import render_report
from screenpilot.tasks.runner import BenchSettings, ModelPerEpisode, run_suite
from screenpilot.tasks.suite import Task, load_suite

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "suites"


class Source:
    def __init__(self, size: Size) -> None:
        self.size = size

    def key(self, task: Task) -> Hashable:
        return task.env

    def build(self, task: Task, worker: int) -> FakeEnv:
        return FakeEnv(self.size)


def call(**arguments: object) -> str:
    return "<tool_call>\n" + json.dumps({"name": "mobile_use", "arguments": arguments}) + "\n</tool_call>"


# -- the step path, before and after ------------------------------------------------------------------------
class SettlingFake(FakeEnv):
    """A fake screen with a settle of its own, as the Android and desktop environments have; counts captures."""

    captures = 0

    def _observe(self) -> Observation:
        self.captures += 1
        return super()._observe()

    def settle(self, timeout_s: float | None = None) -> SettleResult:
        result = wait_until_stable(lambda: self._observe().screenshot, min_wait_s=0.0, interval_s=0.0)
        return result.handed_over(lambda frame: Observation(frame, info={"fake": True}))


class ThinkingReplay(ReplayModel):
    """Replayed answers that take ``delay`` seconds each, as a model on a GPU or a server does; the CPU is
    free meanwhile."""

    def __init__(self, answers: list[tuple[str | None, str]], delay: float) -> None:
        super().__init__(answers, name="replay:bench")
        self.delay = delay
        #: When each call began and ended (perf_counter).
        self.spans: list[tuple[float, float]] = []

    def complete(self, messages: Sequence[Message], *, deadline: float | None = None) -> Completion:
        t0 = time.perf_counter()
        if self.delay:
            time.sleep(self.delay)
        completion = super().complete(messages, deadline=deadline)
        self.spans.append((t0, time.perf_counter()))
        return completion


class OneCallDialect(Qwen25VLDialect):
    """The dialect with the model image made as before: one resize call, every time."""

    @staticmethod
    def prepare_image(screenshot: Image.Image, space: CoordinateSpace) -> Image.Image:
        image = screenshot.convert("RGB") if screenshot.mode != "RGB" else screenshot
        return image.resize((space.model.width, space.model.height), Image.Resampling.BICUBIC)


class WaitingRecorder(RunRecorder):
    """A recorder that waits for each step's PNG and line, as recording did on the step's critical path."""

    def record(self, step: Step) -> StepRecord:
        record = super().record(step)
        self.drain()
        return record


def step_path(
    root: Path, size: Size, *, before: bool, episodes: int, steps: int, delay: float
) -> tuple[float, float]:
    """Milliseconds of screenpilot's own work per step: the median step (from one model answer to the next
    question: parse, act, record, capture, digest, model image, prompt) and the mean over the whole run less
    the model's time (so with each episode's setup and result writing)."""
    outputs = [call(action="click", coordinate=[100 + 10 * s, 200]) for s in range(steps - 1)]
    outputs.append(call(action="terminate", status="success"))
    dialect = OneCallDialect() if before else Qwen25VLDialect()
    recorder_type = WaitingRecorder if before else RunRecorder
    gaps: list[float] = []
    model_s = 0.0
    t0 = time.perf_counter()
    for e in range(episodes):
        model = ThinkingReplay([(None, o) for o in outputs], delay)
        folder = root / f"steps-{size}-{delay}-{'before' if before else 'after'}-{e}"
        result = record_episode(run_episode(FakeEnv(size), Agent(model, dialect), "g"), recorder_type(folder))
        assert result.status == "success", result
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(model.spans)]
        model_s += sum(b - a for a, b in model.spans)
    wall = time.perf_counter() - t0
    return statistics.median(gaps) * 1000, (wall - model_s) / (episodes * steps) * 1000


def captures_per_step(size: Size, *, before: bool, steps: int) -> float:
    """Screen captures per step, settle's included, with an environment that settles."""
    outputs = [call(action="click", coordinate=[100 + 10 * s, 200]) for s in range(steps - 1)]
    outputs.append(call(action="terminate", status="success"))
    env = SettlingFake(size)

    def settle(env: Environment) -> SettleResult | None:
        assert isinstance(env, SettlingFake)
        result = env.settle()
        return None if before else result  # before: the stable frame was thrown away

    agent = Agent(ReplayModel([(None, o) for o in outputs]), Qwen25VLDialect())
    assert len(list(run_episode(env, agent, "g", settle=settle))) == steps
    return env.captures / steps


def print_resize(size: Size) -> None:
    """The model image alone: PIL's one call against the banded resize (the same bytes), best of five."""
    shot = Image.frombytes("RGB", size, random.Random(0).randbytes(size.width * size.height * 3))
    target = tuple(Qwen25VLDialect().coordinate_space(size).model)
    assert len(target) == 2
    images._resize(shot, target)  # the pool's threads start once

    def best(resize: Callable[[], Image.Image]) -> float:
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            resize()
            times.append(time.perf_counter() - t0)
        return min(times) * 1000

    one = best(lambda: shot.resize(target, Image.Resampling.BICUBIC))
    banded = best(lambda: images._resize(shot, target))
    print(f"model image {size} -> {target[0]}x{target[1]}: one call {one:.1f} ms, in bands {banded:.1f} ms")


def print_step_path(root: Path, episodes: int, steps: int, delay: float) -> None:
    load = os.getloadavg()[0]
    for size in (Size(1080, 2400), Size(1280, 800)):
        for delay_s in (0.0, delay):
            runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
            for rep in range(3):  # interleaved, so both see the same load; the best of three is kept
                for when in runs:
                    folder = root / f"{when}-{rep}"
                    before = when == "before"
                    runs[when].append(
                        step_path(folder, size, before=before, episodes=episodes, steps=steps, delay=delay_s)
                    )
            (b_med, b_mean), (a_med, a_mean) = (min(runs[w]) for w in ("before", "after"))
            model = "an instant model" if delay_s == 0 else f"a model taking {delay_s:g} s"
            print(
                f"own work per step at {size} with {model}: before {b_med:.1f} ms, after {a_med:.1f} ms "
                f"(median step; mean with each episode's setup and result: {b_mean:.1f} -> {a_mean:.1f} ms)"
            )
    old, new = (captures_per_step(Size(1080, 2400), before=b, steps=steps) for b in (True, False))
    print(f"screen captures per step with settle: before {old:.1f}, after {new:.1f}")
    for size in (Size(1080, 2400), Size(1280, 800)):
        print_resize(size)
    print(
        f"(fake env, PNG recording included; load average at the start {load:.2f} on {os.cpu_count()} cores)"
    )


def print_validation(root: Path) -> None:
    """Time to load and validate a 500-task suite."""
    tasks = "".join(
        f"  - id: t{i}\n    goal: task {i}\n    setup: [{{shell: 'true'}}]\n"
        f"    success: {{all: [{{shell: 'echo {i}', equals: '{i}'}}, {{not: {{answer: {{regex: 'x+'}}}}}}]}}\n"
        for i in range(500)
    )
    suite_file = root / "big.yaml"
    suite_file.write_text("defaults: {env: android}\ntasks:\n" + tasks)
    t0 = time.perf_counter()
    load_suite(suite_file)
    print(f"validate a 500-task suite: {(time.perf_counter() - t0) * 1000:.0f} ms")


def print_runner(root: Path, size: Size, episodes: int, steps_per_episode: int) -> None:
    """The runner's overhead per episode and step, then the report's rendering time, at one screen size."""
    small = root / f"suite-{size}.yaml"
    small.write_text(
        "defaults: {env: android}\ntasks:\n"
        + "".join(f"  - {{id: e{i}, goal: g, success: {{answer: {{exact: ok}}}}}}\n" for i in range(episodes))
    )
    outputs = [call(action="click", coordinate=[100 + 10 * s, 200]) for s in range(steps_per_episode - 1)]
    outputs.append(call(action="answer", text="ok"))
    answers: list[tuple[str | None, str]] = [(None, o) for o in outputs]
    out = root / f"run-{size}"
    t0 = time.perf_counter()
    outcome = run_suite(
        load_suite(small),
        out,
        Source(size),
        ModelPerEpisode(lambda a=answers: ReplayModel(a, name="replay:bench")),  # type: ignore[misc]
        BenchSettings(progress=False, dialect_options={"answer_action": True}),
    )
    wall = time.perf_counter() - t0
    assert outcome.summary["overall"]["success_rate"] == 1.0
    steps = episodes * steps_per_episode
    print(
        f"runner at {size}: {episodes} episodes x {steps_per_episode} steps in {wall:.2f} s = "
        f"{wall / episodes * 1000:.1f} ms/episode, {wall / steps * 1000:.1f} ms/step "
        "(replay model, fake env, PNG recording included)"
    )
    t0 = time.perf_counter()
    html = render_report(out)
    took = time.perf_counter() - t0
    print(
        f"report at {size}: {steps} steps in {took:.2f} s = {took / steps * 1000:.1f} ms/step, "
        f"{len(html) / steps / 1024:.1f} KiB/step"
    )


def print_sandbox(root: Path) -> None:
    """The example sandbox suite's wall time with one and two parallel sandboxes (needs Xvfb)."""
    for jobs in (1, 2):
        out = root / f"sandbox-{jobs}"
        cmd = [sys.executable, "-m", "screenpilot", "bench", str(EXAMPLES / "sandbox.yaml")]
        cmd += ["--env", "sandbox", "--trials", "2", "--jobs", str(jobs), "--no-progress", "--no-report"]
        cmd += ["--model", f"replay:{EXAMPLES / 'sandbox.replay.jsonl'}", "--out", str(out)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
        ok = sum(r["success"] for r in lines)
        print(
            f"sandbox example suite, 3 tasks x 2 trials, --jobs {jobs}: {wall:.1f} s wall "
            f"({ok}/{len(lines)} succeeded, exit {done.returncode})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--steps", type=int, default=5, help="steps per episode (the last one terminates)")
    parser.add_argument("--no-sandbox", action="store_true", help="skip the sandbox timing")
    parser.add_argument(
        "--model-s", type=float, default=0.2, help="seconds a model call takes in the step-path timing"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    try:
        print_step_path(root, max(2, args.episodes // 5), args.steps, args.model_s)
        print_validation(root)
        for size in (Size(1080, 2400), Size(1280, 800)):
            print_runner(root, size, args.episodes, args.steps)
        if not args.no_sandbox and shutil.which("Xvfb"):
            print_sandbox(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
