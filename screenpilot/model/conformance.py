"""The behaviour every dialect must share, as reusable checks (the dialect side of
:mod:`screenpilot.envs.conformance`).

A dialect passes when its prompts hash to the reference vectors (:func:`check_prompt_vector`), when a point
it writes in its own form reads back to the same device pixel on any screen (:func:`check_round_trip`), when
every action it can write reads back as the same action (:func:`check_action_forms`), and when a model that
points the dialect's way at a target drawn on the screen gets its click executed on the target
(:class:`PointingModel`, run through the agent loop by the tests). Each check raises ``AssertionError`` naming
the broken rule. The dialect must offer :class:`~screenpilot.model.dialect.SupportsCallText`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

from screenpilot.actions.coords import CoordinateSpace, Size
from screenpilot.actions.types import (
    Action,
    Answer,
    Click,
    Drag,
    Key,
    LongPress,
    MouseMove,
    OpenApp,
    Scroll,
    Swipe,
    SystemButton,
    Terminate,
    TypeText,
    Wait,
    action_kind,
    action_to_dict,
)
from screenpilot.model.base import Completion, ImagePart, Message, TextPart, Usage, render_chatml
from screenpilot.model.dialect import Dialect, NoCallForm, PastStep, Platform, SupportsCallText

# -- prompt vectors ---------------------------------------------------------------------------------------------------
PromptPart = Literal["system", "first_user", "prompt"]


@dataclass(frozen=True)
class PromptVector:
    """One reference hash of a dialect's prompt: ``part`` of the prompt for ``goal`` on ``screen`` after the
    model gave ``answers`` (read with the dialect's own parser, as the agent loop reads them), built with the
    dialect options ``options``. ``part`` is ``system`` (the system text), ``first_user`` (the text of the first
    user turn) or ``prompt`` (the whole prompt as ChatML, one ``<|image_pad|>`` per image)."""

    dialect: str
    platform: Platform
    part: PromptPart
    screen: Size
    goal: str
    chars: int
    sha256: str
    answers: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)


def _history(dialect: Dialect, vector: PromptVector, space: CoordinateSpace) -> list[PastStep]:
    keep = bool(vector.options.get("keep_images"))
    screenshot = Image.new("RGB", vector.screen, "white") if keep else None
    history: list[PastStep] = []
    for answer in vector.answers:
        summary = dialect.summary(answer)
        history += [PastStep(p.call, summary, screenshot) for p in dialect.parse(answer, space)]
    return history


def prompt_text(dialect: Dialect, vector: PromptVector) -> str:
    """The part of ``dialect``'s prompt that ``vector`` hashes (on a white screenshot)."""
    space = dialect.coordinate_space(vector.screen)
    if vector.part == "system":
        return dialect.system_prompt(space)
    blank = Image.new("RGB", vector.screen, "white")
    messages = dialect.messages(vector.goal, blank, space, _history(dialect, vector, space))
    if vector.part == "prompt":
        return render_chatml(messages)
    first = next(m for m in messages if m.role == "user")
    return "".join(p.text for p in first.content if isinstance(p, TextPart))


def check_prompt_vector(dialect: Dialect, vector: PromptVector) -> None:
    """The prompt part's length and sha256 must be the reference's."""
    text = prompt_text(dialect, vector)
    got = (len(text), hashlib.sha256(text.encode("utf-8")).hexdigest())
    assert got == (vector.chars, vector.sha256), (
        f"{vector.dialect} {vector.platform} {vector.part} prompt differs from the reference: "
        f"{got[0]} chars, sha256 {got[1]}; expected {vector.chars} chars, sha256 {vector.sha256}"
    )


# -- points -----------------------------------------------------------------------------------------------------------
def tolerance(space: CoordinateSpace) -> int:
    """How far (device pixels) a point the model writes in whole units of its frame may land from the one it
    meant: 1 px wherever one unit spans at most 2 device pixels (the absolute-pixel dialects at their default
    pixel limits on any screen), otherwise one unit less a pixel (half a unit of rounding, and at the far edge
    of an image frame the start of its last pixel). A dialect may do better; the suite also holds every
    dialect at its defaults to 1 px on screens below 3000 px a side."""
    unit = max(space.device.width / space.model.width, space.device.height / space.model.height)
    return max(1, math.ceil(unit) - 1)


def probe_points(screen: Size, count: int = 48) -> list[tuple[int, int]]:
    """The four corners, the centre and ``count`` points spread over ``screen`` (the same every time)."""
    w, h = screen
    points = [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1), (w // 2, h // 2)]
    for i in range(1, count + 1):  # a low-discrepancy walk: every region of the screen, edges included
        points.append((round((i * 0.6180339887) % 1 * (w - 1)), round((i * 0.7548776662) % 1 * (h - 1))))
    return points


def _writer(dialect: Dialect) -> SupportsCallText:
    assert isinstance(dialect, SupportsCallText), (
        f"dialect {dialect.name} must offer call_text and action_names (SupportsCallText) to be checked"
    )
    return dialect


def check_round_trip(dialect: Dialect, screen: Size, points: Sequence[tuple[int, int]] = ()) -> int:
    """Each device point (default :func:`probe_points`) written as a click in the dialect's own form and
    parsed back must land within :func:`tolerance`. Returns the largest distance seen (pixels, per axis)."""
    writer = _writer(dialect)
    space = dialect.coordinate_space(screen)
    allowed = tolerance(space)
    worst = 0
    for x, y in points or probe_points(screen):
        text = writer.call_text(Click(x=x, y=y), space)
        parsed = dialect.parse(text, space)
        assert len(parsed) == 1 and isinstance(parsed[0].device, Click), (
            f"{dialect.name} wrote {text!r} for one click but it reads back as {parsed}"
        )
        got = parsed[0].device
        assert got.x is not None and got.y is not None
        off = max(abs(got.x - x), abs(got.y - y))
        assert off <= allowed, (
            f"{dialect.name} on {screen}: ({x}, {y}) written as {text!r} reads back as ({got.x}, {got.y}), "
            f"{off} px off (at most {allowed} allowed)"
        )
        worst = max(worst, off)
    return worst


# -- action forms -----------------------------------------------------------------------------------------------------
def sample_actions(screen: Size) -> list[Action]:
    """One action of every kind and variant in screenpilot's vocabulary, in device pixels on ``screen``."""
    w, h = screen
    a, b = (w // 3, h // 4), (w * 2 // 3, h * 3 // 4)
    clicks = [Click(x=a[0], y=a[1], button=button) for button in ("left", "right", "middle")]
    clicks += [Click(x=b[0], y=b[1], count=2), Click(x=b[0], y=b[1], count=3), Click(), Click(count=2)]
    scrolls = [
        Scroll(pixels=p, axis=axis, x=a[0], y=b[1])
        for p in (300, -300)
        for axis in ("vertical", "horizontal")
    ]
    return [
        *clicks,
        LongPress(x=b[0], y=a[1], seconds=1.5),
        Swipe(x=a[0], y=b[1], x2=b[0], y2=a[1]),
        Drag(x=a[0], y=a[1], x2=b[0], y2=b[1]),
        Drag(x2=b[0], y2=b[1]),
        MouseMove(x=b[0], y=b[1]),
        *scrolls,
        Scroll(pixels=-200),
        TypeText(text="hello, world"),
        TypeText(text='it\'s "quoted"\nand a back\\slash'),
        Key(keys=("enter",)),
        Key(keys=("ctrl", "a")),
        *(SystemButton(button=button) for button in ("back", "home", "menu", "enter")),
        OpenApp(app="Clock"),
        Wait(seconds=1.0),
        Answer(text="42 apples"),
        Terminate(status="success"),
        Terminate(status="failure"),
    ]


#: Fields a dialect's form may fix to its own value (a wait's length, a scroll's amount): only their sign counts.
_FREE = {"seconds", "pixels"}
_POINTS = {"x", "y", "x2", "y2"}


def difference(expected: Action, got: Action, allowed: int) -> str | None:
    """Why ``got`` is not ``expected`` (points within ``allowed`` px, lengths free, signs kept), or None.

    A phone scroll may come back as the swipe that performs it: the finger moves against the scroll (a
    scroll up, which reveals what lies above, is a swipe downwards) from the scroll's point."""
    if isinstance(expected, Scroll) and isinstance(got, Swipe):
        return _scroll_as_swipe(expected, got, allowed)
    want, have = action_to_dict(expected), action_to_dict(got)
    if action_kind(expected) != action_kind(got) or want.keys() - _FREE != have.keys() - _FREE:
        return f"{action_kind(got)} {have} instead of {action_kind(expected)} {want}"
    for key, value in want.items():
        other = have.get(key)
        if key in _POINTS:
            off = abs(int(value) - int(other))  # type: ignore[call-overload]
            if off > allowed:
                return f"{key} is {other}, {off} px from {value}"
        elif key == "pixels":
            if (int(value) > 0) != (int(other) > 0):  # type: ignore[call-overload]
                return f"scrolls {other} instead of {value}: the other way"
        elif key not in _FREE and value != other:
            return f"{key} is {other!r} instead of {value!r}"
    return None


def _scroll_as_swipe(scroll: Scroll, swipe: Swipe, allowed: int) -> str | None:
    along, across = (swipe.y2 - swipe.y, swipe.x2 - swipe.x)
    if scroll.axis == "horizontal":
        along, across = across, along
    if along == 0 or (along > 0) != (scroll.pixels > 0) or abs(across) > allowed:
        return f"{swipe} does not perform {scroll}"
    at = (scroll.x, scroll.y)
    if None not in at and max(abs(swipe.x - at[0]), abs(swipe.y - at[1])) > allowed:  # type: ignore[operator]
        return f"{swipe} does not start at the scroll's point ({scroll.x}, {scroll.y})"
    return None


@dataclass(frozen=True)
class WrittenAction:
    """One sample action as the dialect wrote it and what its parser made of the text (device pixels)."""

    action: Action
    text: str
    parsed: tuple[Action, ...]


def check_action_forms(dialect: Dialect, screen: Size) -> tuple[list[WrittenAction], list[Action]]:
    """Write every :func:`sample_actions` action the dialect can write, parse it back, and require the first
    action read to be the one written (:func:`difference`) and every name of :meth:`action_names` to be
    written for some action. Returns what was written (for the environments to execute) and what the
    dialect has no form for."""
    writer = _writer(dialect)
    space = dialect.coordinate_space(screen)
    written: list[WrittenAction] = []
    unwritable: list[Action] = []
    for action in sample_actions(screen):
        try:
            text = writer.call_text(action, space)
        except NoCallForm as exc:
            assert str(exc).strip() and "\n" not in str(exc), f"NoCallForm needs a one-line message: {exc!r}"
            unwritable.append(action)
            continue
        parsed = tuple(p.device for p in dialect.parse(text, space))
        assert parsed, f"{dialect.name} wrote {text!r} for {action} and read no action back"
        why = difference(action, parsed[0], tolerance(space))
        assert why is None, f"{dialect.name} wrote {action} as {text!r}, which reads back as {why}"
        written.append(WrittenAction(action, text, parsed))
    _check_names_written(dialect.name, writer.action_names(), written)
    return written, unwritable


def _check_names_written(name: str, names: frozenset[str], written: Sequence[WrittenAction]) -> None:
    texts = [w.text for w in written]
    missing = sorted(
        n for n in names if not any(re.search(rf"(?<!\w){re.escape(n)}(?!\w)", t) for t in texts)
    )
    assert not missing, (
        f"{name} lists actions it never writes for any sample action: {', '.join(missing)} "
        "(call_text must write every form the parser reads)"
    )


# -- calibration ------------------------------------------------------------------------------------------------------
#: The colour of the calibration target: a red no screen chrome uses.
TARGET_RGB = (230, 20, 20)

_STATED = re.compile(r"The screen's resolution is (\d+)x(\d+)")


def find_target(image: Image.Image) -> tuple[float, float] | None:
    """The centre of the :data:`TARGET_RGB` mark on ``image`` (pixel-index frame, to a fraction of a pixel),
    weighting each pixel by how red it is, so the edges a resize blends count by how much target they hold."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    weight = np.clip(rgb[..., 0] - np.maximum(rgb[..., 1], rgb[..., 2]) - 20.0, 0.0, None)
    total = weight.sum()
    if total <= 0:
        return None
    ys, xs = np.indices(weight.shape)
    return float((xs * weight).sum() / total), float((ys * weight).sum() / total)


class PointingModel:
    """A model backend that finds the calibration target on the image it is shown and clicks it the way a
    model of this dialect's family writes points: in the frame the prompt states (``The screen's resolution
    is WxH``), or in pixels of the image when the prompt states none, rounded to whole units. The answer text
    is the dialect's own (:meth:`~screenpilot.model.dialect.SupportsCallText.call_text` in that frame)."""

    name = "pointing"

    def __init__(self, dialect: Dialect) -> None:
        self.writer = _writer(dialect)
        #: What each call saw: the image size, the frame written in, the point written.
        self.seen: list[tuple[Size, Size, tuple[int, int] | None]] = []

    def complete(self, messages: Sequence[Message], *, deadline: float | None = None) -> Completion:
        image = [p.image for m in messages for p in m.content if isinstance(p, ImagePart)][-1]
        shown = Size(*image.size)
        frame = _stated_frame(messages) or shown
        centre = find_target(image)
        if centre is None:
            self.seen.append((shown, frame, None))
            text = self.writer.call_text(Terminate(status="failure"), CoordinateSpace(frame, frame))
            return Completion(text, Usage())
        x = min(max(round(centre[0] * frame.width / shown.width), 0), frame.width)
        y = min(max(round(centre[1] * frame.height / shown.height), 0), frame.height)
        self.seen.append((shown, frame, (x, y)))
        return Completion(self.writer.call_text(Click(x=x, y=y), CoordinateSpace(frame, frame)), Usage())

    def begin_episode(self, task_id: str | None) -> None:
        pass

    def describe(self) -> dict[str, object]:
        return {"backend": "pointing"}

    def close(self) -> None:
        pass


def _stated_frame(messages: Sequence[Message]) -> Size | None:
    for message in messages:
        for part in message.content:
            if isinstance(part, TextPart) and (found := _STATED.search(part.text)):
                return Size(int(found.group(1)), int(found.group(2)))
    return None
