"""Per-step overhead of the desktop environment, measured in an Xvfb sandbox running the Tk demo app.

Prints median and best times for: the raw mss grab, grab + PIL image (what ``observe`` costs), preparing
the image for the model (bicubic resize to the smart_resize size, at default and at reduced pixel limits),
and action latency (click, ASCII typing key by key, Unicode typing through the clipboard with restore,
a key combination, scrolling), plus the sandbox start and a settle after a click (which waits the shared
minimum of 0.3 s before comparing frames, so it measures about 0.4 s on a still screen).

    python3 benchmarks/bench_desktop.py [--rounds 20] [--size 1280x800]
"""

from __future__ import annotations

import argparse
import sys
import time

from timing import measure  # benchmarks/ is on sys.path when a script runs

from screenpilot.actions.coords import CoordinateSpace, Size
from screenpilot.actions.types import Click, Key, Scroll, TypeText
from screenpilot.envs.desktop import SandboxEnv
from screenpilot.model.qwen25vl import Qwen25VLDialect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--size", type=Size.parse, default=Size(1280, 800))
    args = parser.parse_args()

    app = f"{sys.executable} -m screenpilot.envs.desktop.demo_app"
    t0 = time.perf_counter()
    env = SandboxEnv(size=args.size, app=app)
    try:
        first = env.reset()
        start_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        env.reset()
        restart_s = time.perf_counter() - t0

        shot = first.screenshot
        full = CoordinateSpace.for_screen(first.size)
        reduced = CoordinateSpace.for_screen(first.size, max_pixels=1280 * 28 * 28)
        region = env._region  # the monitor rectangle the environment grabs

        # A new screenshot each time, as each step brings: the dialect keeps the last resize of an image.
        fresh = iter([shot.copy() for _ in range(2 * (args.rounds + 1))])

        def click_entry() -> None:
            env.execute(Click(x=300, y=138))

        def select_all_and_delete() -> None:
            env.execute(Key(keys=("ctrl", "slash")))
            env.execute(Key(keys=("Delete",)))

        click_entry()
        rows: list[tuple[str, tuple[float, float]]] = [
            ("screenshot: mss grab only", measure(lambda: env._mss.grab(region), args.rounds)),
            ("screenshot: grab + PIL RGB image (observe)", measure(env.observe, args.rounds)),
            (
                f"prepare image for the model: {first.size} -> {full.model} (default limits)",
                measure(lambda: Qwen25VLDialect.prepare_image(next(fresh), full), args.rounds),
            ),
            (
                f"prepare image for the model: {first.size} -> {reduced.model} (max_pixels=1280*28*28)",
                measure(lambda: Qwen25VLDialect.prepare_image(next(fresh), reduced), args.rounds),
            ),
            ("action: click", measure(click_entry, args.rounds)),
            (
                "action: key combination ctrl+slash",
                measure(lambda: env.execute(Key(keys=("ctrl", "slash"))), args.rounds),
            ),
            (
                "action: scroll 300 px (3 wheel clicks)",
                measure(lambda: env.execute(Scroll(pixels=-300, x=400, y=300)), args.rounds),
            ),
        ]
        click_entry()
        ascii_text = "Hello, World 42"
        rows.append(
            (
                f"action: type ASCII, {len(ascii_text)} chars, key by key",
                measure(
                    lambda: (env.execute(TypeText(text=ascii_text)), select_all_and_delete()), args.rounds
                ),
            )
        )
        unicode_text = "Grüße, 世界 🙂"
        rows.append(
            (
                f"action: type Unicode, {len(unicode_text)} chars, paste + clipboard restore",
                measure(
                    lambda: (env.execute(TypeText(text=unicode_text)), select_all_and_delete()), args.rounds
                ),
            )
        )
        rows.append(
            (
                "(select all + delete, included in both typing rows)",
                measure(select_all_and_delete, args.rounds),
            )
        )

        def click_and_settle() -> None:
            env.execute(Click(x=400, y=300))
            env.settle()

        rows.append(
            (
                "click + settle (0.3 s minimum wait, then 2 equal frames 0.1 s apart)",
                measure(click_and_settle, max(3, args.rounds // 4)),
            )
        )
    finally:
        env.close()

    print(f"desktop sandbox {args.size}, {args.rounds} rounds, median / best in ms")
    print(f"  {'sandbox start (Xvfb + app window)':<78} {start_s * 1000:8.1f}")
    print(f"  {'reset (app restarted)':<78} {restart_s * 1000:8.1f}")
    for name, (median, best) in rows:
        print(f"  {name:<78} {median:8.1f} / {best:6.1f}")


if __name__ == "__main__":
    main()
