"""Locator cache lookups: what a cached ``locate`` costs instead of a model call.

Prints the median and best wall time and the median CPU time of ``LocatorCache.lookup`` on a phone screen
(1080x2400) and a desktop screen (1280x800): a hit where the target was, a hit after it moved, and a miss (the
label changed, so the whole screen is searched and nothing is used), plus the one-off cost of storing an entry
(making its anchor).

    python3 benchmarks/bench_locators.py [--rounds 30]

For comparison, the model call a hit replaces: one Qwen2.5-VL-3B step takes 1-3.7 s on an H100 (README,
"Performance"; ``benchmarks/bench_model.py``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from timing import measure  # benchmarks/ is on sys.path when a script runs

from screenpilot.actions.coords import Point
from screenpilot.session.locators import LocatorCache
from screenpilot.tasks.fonts import FONT_PATHS

TARGET = "the Save button"
FIELD = "the empty field"


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = next((p for p in FONT_PATHS if Path(p).exists()), None)
    return ImageFont.truetype(path, size) if path else ImageFont.load_default()


#: A point inside each screen's empty text field, away from its text: its anchor is large (the inside is flat).
FIELDS = {"1080x2400": Point(540, 2020), "1280x800": Point(420, 138)}


def phone(label: str = "Save", lift: int = 0) -> tuple[Image.Image, Point]:
    """A settings-like phone screen: rows, an empty field, a button near the bottom (``lift`` pixels higher)."""
    image = Image.new("RGB", (1080, 2400), (250, 250, 250))
    draw, font = ImageDraw.Draw(image), _font(44)
    draw.rectangle((0, 0, 1080, 80), fill=(30, 30, 30))
    draw.rectangle((0, 80, 1080, 240), fill=(25, 118, 210))
    draw.text((60, 130), "Settings", font=font, fill="white")
    for row, name in enumerate(("Network", "Bluetooth", "Display", "Sound", "Storage", "Battery", "System")):
        top = 300 + row * 240
        draw.rectangle((54, top, 1026, top + 170), fill=(225, 230, 235))
        draw.text((90, top + 60), name, font=font, fill=(20, 20, 20))
    draw.rounded_rectangle((54, 1960, 1026, 2080), 16, fill="white", outline=(150, 150, 150), width=3)
    draw.text((90, 1990), "Search settings", font=font, fill=(150, 150, 150))
    top = 2200 - lift
    draw.rounded_rectangle((640, top, 1000, top + 120), 20, fill=(25, 118, 210))
    draw.text((820, top + 60), label, font=font, fill="white", anchor="mm")
    return image, Point(820, 2260 - lift)


def desktop(label: str = "Save", lift: int = 0) -> tuple[Image.Image, Point]:
    """A desktop with a window: a text field, a button (``lift`` pixels higher) and some text."""
    image = Image.new("RGB", (1280, 800), (46, 84, 122))
    draw, font = ImageDraw.Draw(image), _font(18)
    draw.rectangle((100, 100, 900, 650), fill=(244, 244, 244))
    draw.rectangle((120, 120, 520, 156), fill="white", outline=(160, 160, 160))
    for line in range(8):
        draw.text(
            (130, 200 + line * 40), f"Line {line + 1}: some text in the document", font=font, fill="black"
        )
    top = 580 - lift
    draw.rectangle((700, top, 860, top + 36), fill=(217, 217, 217), outline=(120, 120, 120))
    draw.text((780, top + 18), label, font=font, fill="black", anchor="mm")
    return image, Point(780, top + 18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    print(f"{'screen':10} {'case':22} {'median ms':>10} {'best ms':>9} {'cpu ms':>7}  result")
    with tempfile.TemporaryDirectory() as tmp:
        for name, draw in (("1080x2400", phone), ("1280x800", desktop)):
            _bench_screen(name, draw, LocatorCache(Path(tmp) / f"{name}.json"), rounds)
    print(
        "the model call a hit replaces: 1-3.7 s per Qwen2.5-VL-3B step on an H100 (benchmarks/bench_model.py)"
    )


def _bench_screen(
    name: str, draw: Callable[..., tuple[Image.Image, Point]], cache: LocatorCache, rounds: int
) -> None:
    screen, point = draw()
    _row(name, "store (make anchor)", lambda: cache.store(TARGET, screen, point), rounds, "stored")
    cache.store(FIELD, screen, FIELDS[name])
    entry = next((e for e in cache.entries() if e.target == FIELD), None)
    if entry is None:
        print(
            f"{name:10} {'hit, empty field':22} {'-':>10} {'-':>9} {'-':>7}  no anchor there (flat or repetitive)"
        )
    else:
        hit = cache.lookup(FIELD, screen)
        size = "x".join(map(str, entry.anchor.patch.size))
        result = f"{tuple(hit.point)} from a {size} anchor" if hit else "None"
        _row(name, "hit, empty field", lambda: cache.lookup(FIELD, screen), rounds, result)
    cases = {
        "hit, in place": draw()[0],
        "hit, after a move": draw(lift=500)[0],
        "miss, label changed": draw(label="Send")[0],
    }
    for case, shot in cases.items():
        hit = cache.lookup(TARGET, shot)
        result = f"{tuple(hit.point)} score {hit.score:.3f}" if hit else "None (ask the model)"
        _row(name, case, lambda shot=shot: cache.lookup(TARGET, shot), rounds, result)


def _row(screen: str, case: str, fn: Callable[[], object], rounds: int, result: str) -> None:
    median, best = measure(fn, rounds)
    print(f"{screen:10} {case:22} {median:10.1f} {best:9.1f} {_cpu_median(fn, rounds):7.1f}  {result}")


def _cpu_median(fn: Callable[[], object], rounds: int) -> float:
    """Median CPU time of ``fn`` on this thread in milliseconds: on a machine busy with other work the wall
    time also counts the waits for a core, this does not."""
    samples = []
    for _ in range(rounds):
        t0 = time.thread_time()
        fn()
        samples.append(time.thread_time() - t0)
    return statistics.median(samples) * 1000


if __name__ == "__main__":
    main()
