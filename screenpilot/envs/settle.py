"""Waiting for the screen to stop changing after an action, instead of a fixed sleep."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image

from screenpilot.envs.base import Observation


def screen_digest(image: Image.Image, size: tuple[int, int] = (64, 64)) -> str:
    """A short digest of a screenshot, coarse enough that a blinking cursor pixel rarely matters."""
    small = image.convert("L").resize(size, Image.Resampling.BILINEAR)
    quantised = bytes(v >> 3 for v in small.tobytes())
    return hashlib.blake2b(quantised, digest_size=12).hexdigest()


@dataclass(frozen=True)
class SettleResult:
    """How waiting went. ``last`` is the last frame taken and ``digest`` its :func:`screen_digest`;
    ``observation`` is that frame as the environment's observation, set only when the screen was stable and
    the environment can hand it over (the agent loop then uses it as the next step's observation instead of
    capturing the screen again)."""

    stable: bool
    waited_s: float
    frames: int
    last: Image.Image | None
    digest: str | None = None
    observation: Observation | None = None

    def handed_over(self, observe: Callable[[Image.Image], Observation]) -> SettleResult:
        """This result with its stable last frame made into an observation by ``observe``."""
        if not self.stable or self.last is None:
            return self
        return dataclasses.replace(self, observation=observe(self.last))


@runtime_checkable
class SupportsSettle(Protocol):
    """An environment with its own, faster way to wait until its screen stops changing."""

    def settle(self, timeout_s: float | None = None) -> SettleResult: ...


def wait_until_stable(
    grab: Callable[[], Image.Image],
    *,
    timeout_s: float = 3.0,
    interval_s: float = 0.1,
    stable_frames: int = 2,
    min_wait_s: float = 0.3,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SettleResult:
    """Poll ``grab`` until ``stable_frames`` consecutive frames have the same digest, or the timeout passes.

    ``min_wait_s`` comes first: many apps start redrawing 100-300 ms after an input, and two equal frames taken
    before that would be the old screen. Bounded: returns after ``max(timeout_s, min_wait_s)`` at the latest,
    with ``stable=False``.
    """
    start = clock()
    if min_wait_s > 0:
        sleep(min_wait_s)
    last_digest: str | None = None
    same = 0
    frames = 0
    image: Image.Image | None = None
    while True:
        image = grab()
        frames += 1
        digest = screen_digest(image)
        same = same + 1 if digest == last_digest else 0
        last_digest = digest
        if same >= stable_frames - 1 and frames >= stable_frames:
            return SettleResult(True, clock() - start, frames, image, digest)
        if clock() - start >= timeout_s:
            return SettleResult(False, clock() - start, frames, image, digest)
        sleep(interval_s)


def observe_until_stable(observe: Callable[[], Observation], *, timeout_s: float = 3.0) -> SettleResult:
    """:func:`wait_until_stable` over an environment's observations (for environments without a settle of
    their own); the stable last one is handed over as ``observation``."""
    seen: list[Observation] = []

    def grab() -> Image.Image:
        seen[:] = [observe()]
        return seen[0].screenshot

    result = wait_until_stable(grab, timeout_s=timeout_s)
    return result.handed_over(lambda _frame: seen[0])
