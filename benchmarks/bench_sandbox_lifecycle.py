"""The desktop sandbox's life cycle, repeated: open (Xvfb, and the watchdog that ends it if this process is
killed), first reset (the app's window), a second reset (the app restarted) and close, each as the median and
best of several rounds, without an app and with the Tk demo app.

    python3 benchmarks/bench_sandbox_lifecycle.py [--rounds 5] [--size 1280x800]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from screenpilot.actions.coords import Size
from screenpilot.envs.desktop import SandboxEnv


def _cycle(size: Size, app: str | None) -> dict[str, float]:
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    env = SandboxEnv(size=size, app=app)
    try:
        env.start()
        times["start (Xvfb up)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        env.reset()
        times["first reset"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        env.reset()
        times["second reset"] = time.perf_counter() - t0
    finally:
        t0 = time.perf_counter()
        env.close()
        times["close"] = time.perf_counter() - t0
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=Size.parse, default=Size(1280, 800))
    args = parser.parse_args()

    demo = f"{sys.executable} -m screenpilot.envs.desktop.demo_app"
    print(f"desktop sandbox {args.size}, {args.rounds} rounds (after one warm-up), median / best in ms")
    for label, app in (("no app", None), ("demo app", demo)):
        _cycle(args.size, app)
        rounds = [_cycle(args.size, app) for _ in range(args.rounds)]
        for phase in rounds[0]:
            samples = [r[phase] * 1000 for r in rounds]
            name = f"{label}: {phase}"
            print(f"  {name:<40} {statistics.median(samples):8.1f} / {min(samples):6.1f}")


if __name__ == "__main__":
    main()
