"""Screenshots resized to the model's size: byte for byte PIL's bicubic resize, the one the processors use,
spread over the machine's cores and done once per screenshot.

PIL resizes in two passes, each rounded to 8 bits: one along the rows, then one along the columns (or, in
newer releases when the height shrinks, the other way round). A row of a horizontal pass depends only on the
same row of its input, and a column of a vertical pass only on the same column; the filter weights depend only
on the sizes. So the same calls on bands of rows and bands of columns, in PIL's order, give exactly the bytes
of ``image.resize(size, Image.Resampling.BICUBIC)``, and PIL lets go of the interpreter lock while it resizes,
so the bands run on several cores at once. When the height grows or stays, PIL goes horizontally first; for a
shrinking height the order is found once per pair of sizes, on a noise image, and a pair for which no order
reproduces PIL's bytes is resized in one call.

The last few results are kept, keyed by the screenshot object: a screenshot shown again (the same screen in
the history of later steps, or several questions about one screen) is not resized again. Screenshots are
never changed in place once captured, so the object stands for its pixels.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

#: At most this many bands (threads); more rarely pays on the sizes of screens.
MAX_BANDS = 4
#: Images smaller than this (in pixels) are resized in one call: the bands would not pay for themselves.
MIN_BANDED_PIXELS = 400_000
#: How many resized screenshots are kept for reuse.
KEPT = 4

_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None
_kept: OrderedDict[int, tuple[weakref.ref[Image.Image], tuple[int, int], Image.Image]] = OrderedDict()
_orders: dict[tuple[tuple[int, int], tuple[int, int]], str | None] = {}


def model_image(screenshot: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The screenshot as the model is shown it: RGB, resized to ``size`` with :func:`bicubic` (as the
    processor resizes, byte for byte)."""
    image = screenshot.convert("RGB") if screenshot.mode != "RGB" else screenshot
    return bicubic(image, size)


def bicubic(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image.resize(size, Image.Resampling.BICUBIC)``, byte for byte; ``image`` itself when it already has
    that size. The result is shared with later calls for the same image and size: do not change it."""
    size = (int(size[0]), int(size[1]))
    if image.size == size:
        return image
    with _lock:
        hit = _kept.get(id(image))
    if hit is not None and hit[0]() is image and hit[1] == size:
        return hit[2]
    resized = _resize(image, size)
    with _lock:
        _kept[id(image)] = (weakref.ref(image), size, resized)
        _kept.move_to_end(id(image))
        while len(_kept) > KEPT:
            _kept.popitem(last=False)
    return resized


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    bands = _bands()
    if bands < 2 or image.mode != "RGB" or image.width * image.height < MIN_BANDED_PIXELS:
        return image.resize(size, Image.Resampling.BICUBIC)
    order = _order(image.size, size)
    if order is None:
        return image.resize(size, Image.Resampling.BICUBIC)
    return _banded(image, size, order, bands)


def _banded(image: Image.Image, size: tuple[int, int], order: str, bands: int) -> Image.Image:
    """The resize as PIL's passes in ``order`` (``"hv"`` or ``"vh"``), each in bands."""
    for axis in order:
        if axis == "h" and image.width != size[0]:
            image = _horizontal(image, size[0], bands)
        elif axis == "v" and image.height != size[1]:
            image = _vertical(image, size[1], bands)
    return image


def _order(source: tuple[int, int], target: tuple[int, int]) -> str | None:
    """PIL's order of passes for these sizes, or None when banding cannot reproduce its bytes."""
    if source[0] == target[0] or source[1] == target[1] or target[1] >= source[1]:
        return "hv"
    key = (source, target)
    if key not in _orders:
        noise = Image.frombytes("RGB", source, random.Random(0).randbytes(source[0] * source[1] * 3))
        expected = noise.resize(target, Image.Resampling.BICUBIC).tobytes()
        found = [o for o in ("hv", "vh") if _banded(noise, target, o, 2).tobytes() == expected]
        _orders[key] = found[0] if found else None
    return _orders[key]


def _horizontal(image: Image.Image, width: int, bands: int) -> Image.Image:
    """The first pass, in bands of rows."""
    cuts = _cuts(image.height, bands)

    def one(band: tuple[int, int]) -> Image.Image:
        top, bottom = band
        strip = image.crop((0, top, image.width, bottom))
        return strip.resize((width, bottom - top), Image.Resampling.BICUBIC)

    out = Image.new(image.mode, (width, image.height))
    for (top, _), strip in zip(cuts, _executor().map(one, cuts), strict=True):
        out.paste(strip, (0, top))
    return out


def _vertical(image: Image.Image, height: int, bands: int) -> Image.Image:
    """The second pass, in bands of columns."""
    cuts = _cuts(image.width, bands)

    def one(band: tuple[int, int]) -> Image.Image:
        left, right = band
        strip = image.crop((left, 0, right, image.height))
        return strip.resize((right - left, height), Image.Resampling.BICUBIC)

    out = Image.new(image.mode, (image.width, height))
    for (left, _), strip in zip(cuts, _executor().map(one, cuts), strict=True):
        out.paste(strip, (left, 0))
    return out


def _cuts(length: int, bands: int) -> list[tuple[int, int]]:
    """``bands`` nearly equal, adjacent ranges covering ``0..length``."""
    edges = [length * i // bands for i in range(bands + 1)]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def _bands() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(MAX_BANDS, cores)


def _executor() -> ThreadPoolExecutor:
    """The shared pool, made afresh in a forked child (a parent's pool has no threads there)."""
    global _pool
    with _lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(MAX_BANDS, thread_name_prefix="screenpilot-resize"))
        return _pool[1]
