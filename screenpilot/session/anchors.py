"""Anchors: a patch of a screenshot that finds the same element again without asking the model.

:func:`make_anchor` cuts the patch around a point, growing it until it is unique on the screenshot it comes
from; :func:`find_anchor` looks for it on another screenshot and answers only when the match is strong and
unique. Matching is zero-mean normalised cross-correlation (ZNCC) of grey levels: 1.0 is the same picture,
whatever the brightness; 0 is unrelated. The thresholds below are the whole policy:

* a match counts when its score is at least :data:`MATCH_MIN`, both for the whole patch and for its core (the
  smallest patch size around the point that is not flat: the element itself, where the whole patch may be
  mostly context), its pixels differ from the patch by at most :data:`MAX_MEAN_DIFF` grey levels on average
  and its contrast by at most :data:`MAX_CONTRAST_RATIO` times (so a hover tint passes; a recoloured,
  relabelled or faded element does not);
* a match against an edge of the screen that the patch was not against when it was cut is not used: the
  element may continue beyond the screen, and a partial match can be off by a few pixels;
* it is ambiguous, and nothing is returned, when another place scores within :data:`RIVAL_MARGIN` of it;
* an anchor is made only where the best other place on its own screenshot scores at most
  :data:`CREATE_RIVAL_MAX`, which leaves room for the element to change a little before it becomes ambiguous;
* a patch whose grey levels vary less than :data:`FLAT_STD` is flat, and a flat region is never an anchor.

The search looks near the old point first (:data:`NEAR_RADIUS` pixels around it, at full resolution), then over
the whole screen at 1/:data:`SEARCH_SCALE` resolution (to find a moved element and any rival), and refines
each candidate there (at most :data:`COARSE_CANDIDATES` scoring at least :data:`COARSE_MIN`) at full resolution,
within half a patch of it (between :data:`CANDIDATE_RADIUS` and twice that).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from screenpilot.actions.coords import Point, Size
from screenpilot.errors import ScreenpilotError

#: The least ZNCC score of a match that is used.
MATCH_MIN = 0.90
#: A match is ambiguous when another place scores at least ``best - RIVAL_MARGIN``.
RIVAL_MARGIN = 0.10
#: An anchor is unique on its own screenshot when no other place scores above this.
CREATE_RIVAL_MAX = 0.75
#: The largest mean absolute grey-level difference between a match and the patch.
MAX_MEAN_DIFF = 24.0
#: The most a match's contrast (spread of grey levels) may differ from the patch's, as a ratio either way.
#: Correlation ignores contrast, so without this a faint outline would match a strong one of the same shape.
MAX_CONTRAST_RATIO = 1.5
#: A patch whose grey levels have a standard deviation below this is flat.
FLAT_STD = 8.0
#: How far from the expected place (in device pixels) the first, full-resolution search looks.
NEAR_RADIUS = 24
#: Patch sizes (width, height) tried in turn, smallest first; the last is the largest anchor made.
PATCH_SIZES: tuple[tuple[int, int], ...] = (
    (64, 32),
    (96, 48),
    (128, 64),
    (192, 96),
    (256, 128),
    (384, 192),
    (512, 256),
)
#: Coarse candidates below this score are not refined (the coarse score underrates thin detail).
COARSE_MIN = 0.5
#: How many coarse candidates are refined at most.
COARSE_CANDIDATES = 6
#: How far from each place found on the reduced screen the full-resolution search looks (covers the reduced
#: copy's blur and repeating detail such as stripes or text of a fixed pitch).
CANDIDATE_RADIUS = 16
#: The whole screen is searched at 1/SEARCH_SCALE of its resolution (the smallest patch, 64x32, is then 16x8).
SEARCH_SCALE = 4

#: How many bytes of scratch arrays a thread keeps for its next search (a phone screen's search uses 10-16 MB).
SCRATCH_BYTES = 24 * 2**20
#: How many transform sizes a patch keeps its kernel for: the reduced screen's, the near region's and the
#: candidates' (about 1-1.5 MB per anchor in use on a 1080x2400 screen).
KEPT_KERNELS = 3

Array = NDArray[np.float32]


class AnchorError(ScreenpilotError, ValueError):
    """No anchor can be made at this point (a flat region, or nothing unique within the largest patch)."""


class Anchor(BaseModel):
    """A patch of a screenshot and where the located point lies inside it; ``model_dump(mode="json")`` is its
    JSON form and ``Anchor.model_validate(data)`` reads it back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The patch as a base64 PNG (RGB).
    patch_png: str
    #: The located point, in pixels from the patch's top-left corner.
    offset: Point
    #: The size of the screenshot the patch was cut from.
    screen: Size

    @field_validator("patch_png")
    @classmethod
    def _decodes(cls, value: str) -> str:
        _decode_png(value)
        return value

    @model_validator(mode="after")
    def _offset_inside(self) -> Anchor:
        width, height = self.patch.size
        if not (0 <= self.offset.x < width and 0 <= self.offset.y < height):
            raise ValueError(f"offset {tuple(self.offset)} lies outside the {width}x{height} patch")
        return self

    @cached_property
    def patch(self) -> Image.Image:
        """The patch as an RGB image (decoded once)."""
        return _decode_png(self.patch_png)

    @cached_property
    def _template(self) -> _Template:
        return _Template.of(self.patch, self.offset)


@dataclass(frozen=True)
class AnchorMatch:
    """Where an anchor was found: the located point in device pixels, its score and the best rival's score."""

    point: Point
    score: float
    runner_up: float


def make_anchor(screenshot: Image.Image, point: Point) -> Anchor:
    """The smallest patch around ``point`` that is unique on ``screenshot``; raises :class:`AnchorError` when the
    region is flat or nothing within the largest patch size is unique."""
    width, height = screenshot.size
    if not (0 <= point.x < width and 0 <= point.y < height):
        raise AnchorError(f"point {tuple(point)} is outside the {width}x{height} screenshot")
    screen = _Screen.of(screenshot)
    textured = False
    for size in PATCH_SIZES:
        box = _patch_box(point, size, screenshot.size)
        template = _Template.of(screenshot.crop(box), Point(point.x - box[0], point.y - box[1]))
        if template.flat:
            continue
        textured = True
        found = _search(screen, template, Point(box[0], box[1]))
        if found is not None and found.place == (box[0], box[1]) and found.runner_up <= CREATE_RIVAL_MAX:
            return _anchor(screenshot, box, point)
    largest = "x".join(map(str, PATCH_SIZES[-1]))
    why = "is not unique" if textured else "is flat"
    raise AnchorError(f"no anchor at {tuple(point)}: the region around it {why} within {largest} pixels")


def find_anchor(anchor: Anchor, screenshot: Image.Image, near: Point | None = None) -> AnchorMatch | None:
    """The anchor's point on ``screenshot``, or None when the best match is weak or ambiguous.

    ``near`` is where the point was before: that neighbourhood is searched first and at full resolution.
    """
    template = anchor._template
    if template.flat or any(t > s for t, s in zip(template.size, screenshot.size, strict=True)):
        return None
    guess = None if near is None else Point(near.x - anchor.offset.x, near.y - anchor.offset.y)
    found = _search(_Screen.of(screenshot), template, guess)
    if found is None or not found.accepted or not _edges_agree(anchor, found.place, screenshot.size):
        return None
    x, y = found.place
    return AnchorMatch(
        point=Point(x + anchor.offset.x, y + anchor.offset.y), score=found.score, runner_up=found.runner_up
    )


def _edges_agree(anchor: Anchor, place: tuple[int, int], screen: tuple[int, int]) -> bool:
    """False when the match lies against an edge of the screen that the patch was not against when it was
    cut: the element may then continue beyond the screen, and the match could be a partial one, off by some
    pixels. A patch cut against an edge was shifted to fit, which its off-centre offset shows."""
    for start, side, limit, offset, made_on in zip(
        place, anchor.patch.size, screen, anchor.offset, anchor.screen, strict=True
    ):
        spans = side >= made_on
        if start == 0 and not (spans or offset < side // 2):
            return False
        if start + side == limit and not (spans or offset > side // 2):
            return False
    return True


# -- patches ----------------------------------------------------------------------------------------------------
def _patch_box(point: Point, size: tuple[int, int], screen: tuple[int, int]) -> tuple[int, int, int, int]:
    """A ``size`` box centred on ``point``, shifted (not shrunk) to fit the screen where it can."""
    box = []
    for centre, side, limit in zip(point, size, screen, strict=True):
        side = min(side, limit)
        start = min(max(centre - side // 2, 0), limit - side)
        box.append((start, start + side))
    (left, right), (top, bottom) = box
    return left, top, right, bottom


def _anchor(screenshot: Image.Image, box: tuple[int, int, int, int], point: Point) -> Anchor:
    buffer = io.BytesIO()
    screenshot.crop(box).convert("RGB").save(buffer, format="PNG")
    return Anchor(
        patch_png=base64.b64encode(buffer.getvalue()).decode("ascii"),
        offset=Point(point.x - box[0], point.y - box[1]),
        screen=Size(*screenshot.size),
    )


def _decode_png(data: str) -> Image.Image:
    try:
        raw = base64.b64decode(data, validate=True)
        if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ValueError("the patch is not a PNG image")
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (binascii.Error, UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"the patch is not a readable base64 PNG ({exc})") from None
    return image.convert("RGB")


# -- matching ---------------------------------------------------------------------------------------------------
def _grey(image: Image.Image) -> NDArray[np.uint8]:
    return np.asarray(image.convert("L"))


@dataclass(frozen=True)
class _Plane:
    """Grey levels ready for ZNCC against any patch: their spectrum, computed once."""

    grey: NDArray[np.uint8]
    fft_shape: tuple[int, int]
    spectrum: NDArray[np.complex64]

    @classmethod
    def of(cls, grey: NDArray[np.uint8], *, transient: bool = False) -> _Plane:
        """``transient``: the plane is searched once, at once (its spectrum lives in a scratch array)."""
        shape = (_fast_len(grey.shape[0]), _fast_len(grey.shape[1]))
        half = (shape[0], shape[1] // 2 + 1)
        padded = _SCRATCH.get("padded", shape, np.float64)
        padded[: grey.shape[0], : grey.shape[1]] = grey
        padded[: grey.shape[0], grey.shape[1] :] = 0
        padded[grey.shape[0] :] = 0
        # numpy's forward FFT is faster in float64, its inverse in float32; rows then columns, as rfft2 does
        rows = _fft(np.fft.rfft, padded, _SCRATCH.get("rows", half, np.complex128), axis=1)
        wide = _fft(np.fft.fft, rows, rows, axis=0)
        spectrum = _SCRATCH.get("spectrum", half, np.complex64) if transient else np.empty(half, np.complex64)
        np.copyto(spectrum, wide, casting="same_kind")
        return cls(grey, shape, spectrum)

    def fits(self, patch: _Patch) -> bool:
        return patch.grey.shape[0] <= self.grey.shape[0] and patch.grey.shape[1] <= self.grey.shape[1]

    def zncc(self, patch: _Patch) -> Array:
        """ZNCC of ``patch`` at every place it fits (correlation by FFT, exact window sums in integers);
        flat windows score 0. The scores are a scratch array, overwritten by the next search of this size on
        this thread: use them first."""
        (height, width), (rows, cols) = patch.grey.shape, self.grey.shape
        scores = self._correlation(patch)[height - 1 : rows, width - 1 : cols]
        area = height * width
        sums, squares = _window_sums(self.grey, height, width)
        spread = np.subtract(np.multiply(squares, area, out=squares), np.square(sums, out=sums), out=squares)
        flat = _SCRATCH.get("flat", spread.shape, np.bool_)
        np.less_equal(spread, (FLAT_STD / 4) ** 2 * area * area, out=flat)
        np.copyto(spread, 1, where=flat)
        root = _SCRATCH.get("root", spread.shape, np.float32)
        np.copyto(root, spread, casting="unsafe")
        np.sqrt(root, out=root)
        np.multiply(scores, np.float32(math.sqrt(area) / patch.norm), out=scores)
        np.divide(scores, root, out=scores)
        np.copyto(scores, 0.0, where=flat)
        return scores

    def _correlation(self, patch: _Patch) -> Array:
        """The centred patch's correlation with the plane at every shift (the valid part is ZNCC's numerator)."""
        shape = self.fft_shape
        product = _SCRATCH.get("product", self.spectrum.shape, np.complex64)
        np.multiply(self.spectrum, patch.kernel(shape), out=product)
        columns = _fft(np.fft.ifft, product, product, axis=0)
        return _fft(np.fft.irfft, columns, _SCRATCH.get("products", shape, np.float32), n=shape[1], axis=1)


class _Scratch(threading.local):
    """Arrays reused by one search after another on the same thread, by role and shape, the most recently
    used first, up to :data:`SCRATCH_BYTES`. A search of a phone screen goes through some 15 MB of arrays
    (a few dozen, up to a megabyte or so each); allocated afresh each time, their pages fault in again on
    every search, which costs as much as the FFTs themselves."""

    def __init__(self) -> None:
        self.arrays: dict[tuple[str, tuple[int, ...], type[np.generic]], NDArray[Any]] = {}
        self.nbytes = 0

    def get(self, role: str, shape: tuple[int, ...], dtype: type[np.generic]) -> NDArray[Any]:
        key = (role, shape, dtype)
        array = self.arrays.pop(key, None)
        if array is None:
            array = np.empty(shape, dtype)
            self.nbytes += array.nbytes
            while self.arrays and self.nbytes > SCRATCH_BYTES:
                self.nbytes -= self.arrays.pop(next(iter(self.arrays))).nbytes
        self.arrays[key] = array  # last used last
        return array


_SCRATCH = _Scratch()
#: numpy 2 FFTs write into a given array; numpy 1.26's return a new one.
_FFT_OUT = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


def _fft(
    transform: Callable[..., NDArray[Any]], x: NDArray[Any], out: NDArray[Any], **options: Any
) -> NDArray[Any]:
    """``transform(x, **options)`` written into ``out`` (which may be ``x``)."""
    if _FFT_OUT:
        return transform(x, out=out, **options)
    out[...] = transform(x, **options)
    return out


@dataclass(frozen=True)
class _Patch:
    """A patch's grey levels less their mean, and its correlation kernels for the last few transform sizes
    (kept: the same anchor is looked for again and again on screens of one size)."""

    grey: Array
    centred: NDArray[np.float64] = field(init=False)
    norm: float = field(init=False)
    kernels: dict[tuple[int, int], NDArray[np.complex64]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        centred = self.grey.astype(np.float64) - float(self.grey.mean())
        object.__setattr__(self, "centred", centred)
        object.__setattr__(self, "norm", max(float(np.sqrt(np.square(centred).sum())), 1e-9))

    def kernel(self, shape: tuple[int, int]) -> NDArray[np.complex64]:
        """The correlation kernel for transforms of ``shape``, kept for the :data:`KEPT_KERNELS` sizes used
        last."""
        kernel = self.kernels.pop(shape, None)
        if kernel is None:
            kernel = np.fft.rfft2(self.centred[::-1, ::-1], shape).astype(np.complex64)
            if len(self.kernels) >= KEPT_KERNELS:
                del self.kernels[next(iter(self.kernels))]
        self.kernels[shape] = kernel  # last used last
        return kernel


def _window_sums(
    grey: NDArray[np.uint8], height: int, width: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The sum of the grey levels and of their squares in every ``height`` x ``width`` window, exact (scratch
    arrays, like :meth:`_Plane.zncc`'s scores).

    Separable: running sums down the columns give every window's column sums, then running sums along those
    rows. Only the second pass, over as many rows as there are window positions, needs 64-bit integers."""
    rows, cols = grey.shape
    wide = np.int32 if 255 * 255 * rows < 2**31 else np.int64
    out = []
    for role in ("sums", "squares"):
        running = _SCRATCH.get("down", (rows + 1, cols), wide)
        running[0] = 0
        inner = running[1:]
        inner[...] = grey
        if role == "squares":
            np.multiply(inner, inner, out=inner)
        np.add.accumulate(inner, axis=0, out=inner)
        across = _SCRATCH.get("across", (rows - height + 1, cols + 1), np.int64)
        across[:, 0] = 0
        np.subtract(running[height:], running[:-height], out=across[:, 1:])
        np.add.accumulate(across[:, 1:], axis=1, out=across[:, 1:])
        window = _SCRATCH.get(role, (rows - height + 1, cols - width + 1), np.int64)
        out.append(np.subtract(across[:, width:], across[:, :-width], out=window))
    return out[0], out[1]


@dataclass(frozen=True)
class _Screen:
    """A screenshot prepared for searching: the RGB image (regions are cut from it at full resolution) and a
    reduced grey copy searched as a whole."""

    image: Image.Image
    coarse: _Plane

    @classmethod
    def of(cls, screenshot: Image.Image) -> _Screen:
        image = screenshot if screenshot.mode == "RGB" else screenshot.convert("RGB")
        return cls(image, _Plane.of(_grey(image.reduce(SEARCH_SCALE))))

    def region(self, box: tuple[int, int, int, int]) -> NDArray[np.uint8]:
        return _grey(self.image.crop(box))


@dataclass(frozen=True)
class _Template:
    """A patch prepared for searching: at full resolution, reduced like the screen (if large enough), and the
    box of its core (the smallest patch size around the point that is not flat)."""

    full: _Patch
    coarse: _Patch | None
    core: tuple[int, int, int, int]

    @classmethod
    def of(cls, patch: Image.Image, offset: Point) -> _Template:
        rgb = patch.convert("RGB")
        coarse = None
        if min(rgb.size) >= 4 * SEARCH_SCALE:
            coarse = _Patch(_grey(rgb.reduce(SEARCH_SCALE)).astype(np.float32))
        full = _Patch(_grey(rgb).astype(np.float32))
        return cls(full, coarse, _core(full.grey, offset))

    @property
    def grey(self) -> Array:
        return self.full.grey

    @property
    def size(self) -> tuple[int, int]:
        return self.grey.shape[1], self.grey.shape[0]

    @property
    def flat(self) -> bool:
        return float(self.grey.std()) < FLAT_STD


@dataclass(frozen=True)
class _Found:
    place: tuple[int, int]  # the patch's top-left corner on the screen
    score: float
    runner_up: float
    mean_diff: float
    core: float  # the score of the core alone, at the same place
    contrast: float  # the match's contrast over the patch's, the larger of whole and core over the smaller

    @property
    def accepted(self) -> bool:
        strong = min(self.score, self.core) >= MATCH_MIN and self.mean_diff <= MAX_MEAN_DIFF
        return strong and self.contrast <= MAX_CONTRAST_RATIO and self.runner_up < self.score - RIVAL_MARGIN


def _search(screen: _Screen, template: _Template, guess: Point | None) -> _Found | None:
    """The best place for ``template`` on ``screen`` and the best rival's score (None if nothing matches)."""
    near = None if guess is None else _refine(screen, template, guess, (NEAR_RADIUS, NEAR_RADIUS))
    found = [] if near is None else [near]
    for corner in _candidates(screen, template, guess):
        refined = _refine(screen, template, corner, _candidate_radius(template))
        if refined is not None:
            found.append(refined)
    if not found:
        return None
    found.sort(key=lambda c: c[2], reverse=True)
    (bx, by, best), (width, height) = found[0], template.size
    rivals = [s for x, y, s in found[1:] if abs(x - bx) > width // 2 or abs(y - by) > height // 2]
    patch = screen.region((bx, by, bx + width, by + height)).astype(np.float32)
    mean_diff = float(np.abs(patch - template.grey).mean())
    left, top, right, bottom = template.core
    seen, wanted = patch[top:bottom, left:right], template.grey[top:bottom, left:right]
    contrast = max(_contrast(patch, template.grey), _contrast(seen, wanted))
    return _Found((bx, by), best, max(rivals, default=0.0), mean_diff, _similarity(seen, wanted), contrast)


def _contrast(a: Array, b: Array) -> float:
    """How many times more contrast (grey-level spread) one array has than the other; at least 1."""
    spread_a, spread_b = float(a.std()), float(b.std())
    if min(spread_a, spread_b) < 1e-6:
        return float("inf")
    return max(spread_a, spread_b) / min(spread_a, spread_b)


def _candidates(screen: _Screen, template: _Template, guess: Point | None) -> list[Point]:
    """The places on the reduced screen worth refining (at least :data:`COARSE_MIN`, the best
    :data:`COARSE_CANDIDATES`), less those the search near the guess has already covered."""
    small = template.coarse
    if small is None or not screen.coarse.fits(small):
        return []
    peaks = _coarse_peaks(screen.coarse.zncc(small), small.grey.shape, COARSE_MIN)
    (rx, ry), r = _candidate_radius(template), NEAR_RADIUS
    return [p for p in peaks if guess is None or abs(p.x - guess.x) > r - rx or abs(p.y - guess.y) > r - ry]


def _core(grey: Array, offset: Point) -> tuple[int, int, int, int]:
    """The smallest patch size around ``offset`` inside ``grey`` that is not flat (at worst all of it)."""
    for size in PATCH_SIZES:
        left, top, right, bottom = _patch_box(offset, size, (grey.shape[1], grey.shape[0]))
        if float(grey[top:bottom, left:right].std()) >= FLAT_STD:
            return left, top, right, bottom
    return 0, 0, grey.shape[1], grey.shape[0]


def _similarity(a: Array, b: Array) -> float:
    """ZNCC of two arrays of one shape (0 when either is flat)."""
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt(np.square(a).sum() * np.square(b).sum()))
    return float((a * b).sum()) / norm if norm > 1e-6 else 0.0


def _coarse_peaks(scores: Array, size: tuple[int, int], least: float) -> list[Point]:
    """Full-resolution top-left corners of the best separate places on the reduced screen scoring at least
    ``least`` (``scores`` is overwritten)."""
    height, width = size
    peaks = []
    for _ in range(COARSE_CANDIDATES):
        y, x = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if scores[y, x] < least:
            break
        peaks.append(Point(int(x) * SEARCH_SCALE, int(y) * SEARCH_SCALE))
        scores[
            max(y - height // 2, 0) : y + height // 2 + 1, max(x - width // 2, 0) : x + width // 2 + 1
        ] = -1
    return peaks


def _refine(
    screen: _Screen, template: _Template, guess: Point, radius: tuple[int, int]
) -> tuple[int, int, float] | None:
    """The best top-left corner within ``radius`` (x, y) of ``guess``, at full resolution, and its score."""
    (width, height), (cols, rows) = template.size, screen.image.size
    if width > cols or height > rows:
        return None
    limits = (cols - width, rows - height)
    left, top = (min(max(v - r, 0), lim) for v, r, lim in zip(guess, radius, limits, strict=True))
    right, bottom = (min(max(v + r, 0), lim) for v, r, lim in zip(guess, radius, limits, strict=True))
    plane = _Plane.of(screen.region((left, top, right + width, bottom + height)), transient=True)
    scores = plane.zncc(template.full)
    y, x = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return left + int(x), top + int(y), float(scores[y, x])


def _candidate_radius(template: _Template) -> tuple[int, int]:
    """How far around a reduced-screen candidate to refine: half the patch (the stretch the reduced search
    suppresses around each candidate), between :data:`CANDIDATE_RADIUS` and twice that."""
    return (
        min(max(template.size[0] // 2, CANDIDATE_RADIUS), 2 * CANDIDATE_RADIUS),
        min(max(template.size[1] // 2, CANDIDATE_RADIUS), 2 * CANDIDATE_RADIUS),
    )


def _fast_len(n: int) -> int:
    """The smallest length at least ``n`` whose only prime factors are 2, 3 and 5 (fast for the FFT)."""
    candidate = n
    while True:
        rest = candidate
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return candidate
        candidate += 1
