"""Parser time on hostile answers at half the length cap and at the cap: about twice, never four times.

Prints, for each kind of brace-, quote- or tag-heavy text, the median time to parse (or refuse) it at
n = MAX_OUTPUT_CHARS / 2 and at 2n characters, and the ratio. Linear work gives a ratio near 2.

    python3 benchmarks/bench_parse.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable

from timing import measure  # benchmarks/ is on sys.path when a script runs

from screenpilot.actions.coords import Size
from screenpilot.actions.parse import MAX_OUTPUT_CHARS
from screenpilot.errors import ModelOutputError
from screenpilot.model.qwen25vl import Qwen25VLDialect

KINDS: dict[str, Callable[[int], str]] = {
    "open braces": lambda n: "{" * n,
    "empty objects": lambda n: "{}" * (n // 2),
    "open keys": lambda n: '{"a": ' * (n // 6),
    "open quotes": lambda n: "{'" * (n // 2),
    "tag openers": lambda n: "<tool_call>{" * (n // 12),
    "Python dict lines": lambda n: "{'a': 1}\n" * (n // 9),
    "prose with braces": lambda n: "I see { here, don't I? " * (n // 23),
    "nested objects": lambda n: "{" * (n // 2) + "}" * (n // 2),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    dialect = Qwen25VLDialect("mobile_use")
    space = dialect.coordinate_space(Size(1080, 2400))

    def parse(text: str) -> None:
        with contextlib.suppress(ModelOutputError):
            dialect.parse(text, space)

    n = MAX_OUTPUT_CHARS // 2
    print(f"{'text':20s} {'n=' + str(n):>12s} {'2n':>12s}  ratio")
    for name, make in KINDS.items():
        half, full = make(n)[:n], make(2 * n)[: 2 * n]
        t_half, _ = measure(lambda text=half: parse(text), rounds)
        t_full, _ = measure(lambda text=full: parse(text), rounds)
        print(f"{name:20s} {t_half:9.1f} ms {t_full:9.1f} ms  {t_full / t_half:5.2f}")


if __name__ == "__main__":
    main()
