"""Per-step overhead of the Android environment against the fake ADB server (loopback, no phone).

Prints observe latency with raw ``screencap`` and with PNG at 1080x2400, execute (tap) latency, and the
same screenshot through adbutils' own ``screenshot()`` for comparison. The fake server encodes in-process,
so the numbers are this machine's protocol, transfer and decode costs; a phone adds its capture time
(raw screencap skips the on-device PNG encode, the large part of ``screencap -p``). The busy-screen rows
show what PNG costs once the image is not flat.

    python3 benchmarks/bench_android.py [--rounds 20]
"""

from __future__ import annotations

import argparse

from PIL import Image
from timing import measure  # benchmarks/ is on sys.path when a script runs

from screenpilot.actions.types import Click
from screenpilot.envs.android import AndroidEnv
from screenpilot.envs.android.fake_server import (
    FakeAdbServer,
    FakePhone,
    default_screen,
    encode_raw_screencap,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    phone = FakePhone(screen=default_screen((1080, 2400)))
    with FakeAdbServer([phone]) as server:
        raw_env = AndroidEnv(port=server.port, capture="raw")
        png_env = AndroidEnv(port=server.port, capture="png")
        raw_env.reset()
        png_env.reset()
        rows: list[tuple[str, tuple[float, float]]] = []
        rows.append(
            (
                "fake server: encode raw frame (server side)",
                measure(lambda: encode_raw_screencap(phone.screen), args.rounds),
            )
        )
        rows.append(("observe, raw screencap (10.4 MB)", measure(raw_env.observe, args.rounds)))
        rows.append(("observe, screencap -p (PNG)", measure(png_env.observe, args.rounds)))
        import adbutils

        device = adbutils.AdbClient(host=server.host, port=server.port).device(phone.serial)
        rows.append(
            (
                "adbutils screenshot() (PNG, for comparison)",
                measure(lambda: device.screenshot(error_ok=False), args.rounds),
            )
        )
        rows.append(
            (
                "adbutils shell('screencap') raw (its reader)",
                measure(lambda: device.shell("screencap", encoding=None), max(3, args.rounds // 4)),
            )
        )
        rows.append(
            (
                "execute Click -> input tap",
                measure(lambda: raw_env.execute(Click(x=540, y=1200)), args.rounds),
            )
        )
        rows.append(
            (
                "adbutils shell('input tap 540 1200')",
                measure(lambda: device.shell("input tap 540 1200"), args.rounds),
            )
        )
        rows.append(
            ("settle on a still screen (2 frames)", measure(raw_env.settle, max(3, args.rounds // 4)))
        )
        # A busy screen (photos, maps) makes PNG expensive to encode and decode; raw costs the same.
        noise = Image.effect_noise((1080, 2400), 60).convert("RGB")
        phone.set_screen(Image.blend(phone.screen, noise, 0.5))
        rows.append(("busy screen: observe, raw screencap", measure(raw_env.observe, args.rounds)))
        rows.append(("busy screen: observe, screencap -p (PNG)", measure(png_env.observe, args.rounds)))
        raw_env.close()
        png_env.close()

    print(
        f"Android environment against the fake ADB server, 1080x2400, {args.rounds} rounds (median / best, ms)"
    )
    for name, (median, best) in rows:
        print(f"  {name:<48} {median:8.1f} {best:8.1f}")


if __name__ == "__main__":
    main()
