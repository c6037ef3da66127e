"""Whether a predicted next action matches the recorded one (AndroidControl-style)."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import assert_never

from screenpilot.actions.coords import Size
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
    action_to_dict,
)
from screenpilot.tasks.checks import normalize_text
from screenpilot.tasks.evaluate.data import Box, inside

#: A click within this fraction of the screen (normalised distance) from the target point counts as a hit.
CLICK_TOLERANCE = 0.14


@dataclass(frozen=True)
class StepMatch:
    type_ok: bool
    step_ok: bool
    why: str


def swipe_direction(x: float, y: float, x2: float, y2: float) -> str:
    """The direction the finger moves: up, down, left or right (the dominant axis)."""
    dx, dy = x2 - x, y2 - y
    if abs(dx) > abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def _app_name(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", unicodedata.normalize("NFKC", name).casefold())


@dataclass(frozen=True)
class MatchRules:
    """How near is right: the distance (a fraction of the screen, normalised per axis) a click may be from the
    recorded point, how much the target box is enlarged about its centre, and whether typed text matches when
    one text contains the other (after case and space folding) rather than only when equal."""

    click_tolerance: float = CLICK_TOLERANCE
    box_scale: float = 1.0
    text_containment: bool = False


#: The rules of the Qwen2.5-VL team's AndroidControl evaluator (the script its authors shared in
#: QwenLM/Qwen2.5-VL issue #904, gist LukeForeverYoung/1f5d19495788de0d905c5ac6341153f5): a click or long press
#: is right inside the target element's box enlarged 1.2 times, else within 0.04 of the screen from the recorded
#: point; typed text is right when either text contains the other; scrolls by direction.
ANDROIDCONTROL_RULES = MatchRules(click_tolerance=0.04, box_scale=1.2, text_containment=True)


def _scaled(box: Box, scale: float) -> Box:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * scale / 2, (box[3] - box[1]) * scale / 2
    return cx - hw, cy - hh, cx + hw, cy + hh


def _match_point(
    predicted: Click | LongPress, truth: Click | LongPress, screen: Size, bbox: Box | None, rules: MatchRules
) -> StepMatch:
    if predicted.x is None or predicted.y is None or truth.x is None or truth.y is None:
        ok = predicted.x == truth.x and predicted.y == truth.y
        return StepMatch(True, ok, "points compared as given")
    if bbox is not None and inside(_scaled(bbox, rules.box_scale), predicted.x, predicted.y):
        return StepMatch(True, True, "inside the target box")
    distance = math.hypot((predicted.x - truth.x) / screen.width, (predicted.y - truth.y) / screen.height)
    ok = distance <= rules.click_tolerance
    return StepMatch(True, ok, f"distance {distance:.3f} of the screen")


def _same_text(got: str, want: str, rules: MatchRules) -> bool:
    a, b = normalize_text(got), normalize_text(want)
    return a == b or (rules.text_containment and bool(a) and bool(b) and (a in b or b in a))


def match_step(
    predicted: Action | None,
    truth: Action,
    screen: Size,
    bbox: Box | None = None,
    rules: MatchRules = MatchRules(),
) -> StepMatch:
    """AndroidControl-style matching of a predicted action against the recorded one (device pixels).

    Clicks and long presses hit when inside the target box (enlarged by ``rules.box_scale``) or within
    ``rules.click_tolerance`` of the screen (normalised distance) from the target point; typed text and answers
    are compared after normalisation (or by containment); swipes by direction; apps by normalised name; system
    buttons, keys and terminate status exactly.
    """
    if predicted is None:
        return StepMatch(False, False, "no action")
    if predicted.action != truth.action:
        return StepMatch(False, False, f"{predicted.action} instead of {truth.action}")
    match truth:
        case Click() | LongPress():
            assert isinstance(predicted, (Click, LongPress))
            return _match_point(predicted, truth, screen, bbox, rules)
        case Swipe():
            assert isinstance(predicted, Swipe)
            want = swipe_direction(truth.x, truth.y, truth.x2, truth.y2)
            got = swipe_direction(predicted.x, predicted.y, predicted.x2, predicted.y2)
            return StepMatch(True, want == got, f"swiped {got}, wanted {want}")
        case TypeText() | Answer() | OpenApp():
            return _match_words(predicted, truth, rules)
        case SystemButton() | Key() | Wait() | Terminate() | Drag() | MouseMove() | Scroll():
            return _match_exactly(predicted, truth)
        case _:
            assert_never(truth)


def _match_words(predicted: Action, truth: TypeText | Answer | OpenApp, rules: MatchRules) -> StepMatch:
    """Text typed, answered or named (an app), compared after normalisation."""
    match truth:
        case TypeText():
            assert isinstance(predicted, TypeText)
            ok = _same_text(predicted.text, truth.text, rules)
            return StepMatch(True, ok, f"typed {predicted.text!r}, wanted {truth.text!r}")
        case Answer():
            assert isinstance(predicted, Answer)
            ok = normalize_text(predicted.text) == normalize_text(truth.text)
            return StepMatch(True, ok, f"answered {predicted.text!r}, wanted {truth.text!r}")
        case OpenApp():
            assert isinstance(predicted, OpenApp)
            ok = _app_name(predicted.app) == _app_name(truth.app)
            return StepMatch(True, ok, f"opened {predicted.app!r}, wanted {truth.app!r}")
        case _:
            assert_never(truth)


def _match_exactly(
    predicted: Action, truth: SystemButton | Key | Wait | Terminate | Drag | MouseMove | Scroll
) -> StepMatch:
    """Buttons, keys and the terminate status compared exactly (keys without case); a wait is a wait."""
    match truth:
        case SystemButton():
            assert isinstance(predicted, SystemButton)
            return StepMatch(True, predicted.button == truth.button, f"pressed {predicted.button}")
        case Key():
            assert isinstance(predicted, Key)
            ok = [k.casefold() for k in predicted.keys] == [k.casefold() for k in truth.keys]
            return StepMatch(True, ok, f"keys {'+'.join(predicted.keys)}")
        case Wait():
            return StepMatch(True, True, "wait")
        case Terminate():
            assert isinstance(predicted, Terminate)
            return StepMatch(True, predicted.status == truth.status, f"status {predicted.status}")
        case Drag() | MouseMove() | Scroll():
            ok = action_to_dict(predicted) == action_to_dict(truth)
            return StepMatch(True, ok, "compared exactly")
        case _:
            assert_never(truth)
