"""Costs of the benchmark machinery itself, apart from the model and the device.

Prints: suite validation time for a large suite; the runner's overhead per episode and per step (fake
environment, replayed answers: what remains is setup bookkeeping, recording PNGs, the check, result lines);
report rendering time per step at a phone's screen size; and, when Xvfb is installed, the example sandbox
suite's wall time with one and two parallel sandboxes.

    python3 benchmarks/bench_tasks.py [--episodes 40] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Hashable
from pathlib import Path

from screenpilot.actions.coords import Size
from screenpilot.envs.fake import FakeEnv
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--steps", type=int, default=5, help="steps per episode (the last one terminates)")
    parser.add_argument("--no-sandbox", action="store_true", help="skip the sandbox timing")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    try:
        # -- validation -------------------------------------------------------------------------------------
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

        # -- runner overhead --------------------------------------------------------------------------------
        for size in (Size(1080, 2400), Size(1280, 800)):
            small = root / f"suite-{size}.yaml"
            small.write_text(
                "defaults: {env: android}\ntasks:\n"
                + "".join(
                    f"  - {{id: e{i}, goal: g, success: {{answer: {{exact: ok}}}}}}\n"
                    for i in range(args.episodes)
                )
            )
            outputs = [call(action="click", coordinate=[100 + 10 * s, 200]) for s in range(args.steps - 1)]
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
            steps = args.episodes * args.steps
            print(
                f"runner at {size}: {args.episodes} episodes x {args.steps} steps in {wall:.2f} s = "
                f"{wall / args.episodes * 1000:.1f} ms/episode, {wall / steps * 1000:.1f} ms/step "
                "(replay model, fake env, PNG recording included)"
            )
            t0 = time.perf_counter()
            html = render_report(out)
            took = time.perf_counter() - t0
            print(
                f"report at {size}: {steps} steps in {took:.2f} s = {took / steps * 1000:.1f} ms/step, "
                f"{len(html) / steps / 1024:.1f} KiB/step"
            )

        # -- parallel sandboxes -----------------------------------------------------------------------------
        if not args.no_sandbox and shutil.which("Xvfb"):
            for jobs in (1, 2):
                out = root / f"sandbox-{jobs}"
                cmd = [sys.executable, "-m", "screenpilot", "bench", str(EXAMPLES / "sandbox.yaml")]
                cmd += [
                    "--env",
                    "sandbox",
                    "--trials",
                    "2",
                    "--jobs",
                    str(jobs),
                    "--no-progress",
                    "--no-report",
                ]
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
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
