"""Offline evaluation on recorded screens, no device: grounding (ScreenSpot-style) and next-step prediction
(AndroidControl-style).

The model is asked exactly as the agent asks it (the dialect's system prompt and image size) and its answer is
parsed by the same parser, so these numbers measure the format the agent runs on. Unparsable answers are
misses, and counted.
"""

from __future__ import annotations

import json
import math
import re
import signal
import sys
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, assert_never

from PIL import Image

from screenpilot.actions.coords import CoordinateSpace, Size
from screenpilot.actions.parse import ToolCall
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
from screenpilot.errors import ModelOutputError, SetupError
from screenpilot.jsonl import read_prepared
from screenpilot.model.base import Message, ModelBackend, ModelBackendError
from screenpilot.model.dialect import Dialect, PastStep, SupportsGrounding, SupportsInstructionGrounding
from screenpilot.model.dialects import DEFAULT_DIALECT, make_dialect
from screenpilot.model.qwen25vl import Qwen25VLDialect, ToolName
from screenpilot.tasks.checks import normalize_text

#: A click within this fraction of the screen (normalised distance) from the target point counts as a hit.
CLICK_TOLERANCE = 0.14

Box = tuple[float, float, float, float]
T = TypeVar("T")


def _box(value: Any, where: str, box_format: str = "xyxy") -> Box:
    shape = "[x1, y1, x2, y2]" if box_format == "xyxy" else "[x, y, width, height]"
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 4
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise SetupError(f"{where}: bbox must be {shape} in image pixels, got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    if box_format == "xywh":
        x2, y2 = x1 + x2, y1 + y2
    if x2 < x1 or y2 < y1:
        raise SetupError(f"{where}: bbox {value!r} has x2 < x1 or y2 < y1")
    return x1, y1, x2, y2


def _image_size(base: Path, value: Any, where: str) -> tuple[Path, Size]:
    """The image's path and size, read from its header only (the pixels are loaded when the line is asked)."""
    if not isinstance(value, str) or not value:
        raise SetupError(f"{where}: expected an image path")
    path = base / value
    try:
        with Image.open(path) as img:
            return path, Size(*img.size)
    except (OSError, Image.DecompressionBombError) as exc:
        raise SetupError(f"{where}: cannot open image {path}: {exc}") from exc


def _load_image(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def _text_field(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SetupError(f"{where}: {key!r} must be a non-empty string")
    return value


def _read_cases(
    path: Path, prepare: Callable[[dict[str, Any], str], T], limit: int | None
) -> list[tuple[int, T]]:
    """``(line, case)`` for every line, all checked before the model is asked anything: every bad line is
    reported in one error."""
    cases = read_prepared(path, prepare, limit=limit)
    if not cases:
        raise SetupError(f"{path} has no data lines")
    return cases


def inside(box: Box, x: float, y: float) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def action_point(action: Action) -> tuple[int, int] | None:
    """Where an action lands, for grounding: the point of a click/press/move, the start of a swipe/drag."""
    match action:
        case Click() | LongPress() | MouseMove() | Scroll():
            return (action.x, action.y) if action.x is not None and action.y is not None else None
        case Swipe():
            return action.x, action.y
        case Drag():
            return (
                (action.x, action.y)
                if action.x is not None and action.y is not None
                else (action.x2, action.y2)
            )
        case TypeText() | Key() | SystemButton() | OpenApp() | Wait() | Answer() | Terminate():
            return None
        case _:
            assert_never(action)


def _ask(model: ModelBackend, messages: list[Message]) -> tuple[str | None, str | None, float]:
    t0 = time.perf_counter()
    try:
        text = model.complete(messages).text
    except ModelBackendError as exc:
        return None, f"model error: {exc}", time.perf_counter() - t0
    return text, None, time.perf_counter() - t0


# -- running the examples -------------------------------------------------------------------------------------

#: When the first this many examples (or all of them, when there are fewer) end on one and the same model error,
#: the model fails for the whole run: the evaluation stops there instead of scoring every example a miss.
RUN_WIDE_FAILURES = 3


@dataclass
class _Progress:
    """Progress on stderr: a bar on a terminal (tqdm), else a line every tenth of the run."""

    what: str
    planned: int
    enabled: bool
    label: str
    done: int = 0
    good: int = 0
    bar: Any = None

    def __post_init__(self) -> None:
        if self.enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=self.planned, desc=self.what, unit="item", file=sys.stderr)

    def update(self, good: bool) -> None:
        self.done += 1
        self.good += int(good)
        share = f"{100 * self.good / self.done:.1f}% {self.label}"
        if self.bar is not None:
            self.bar.set_postfix_str(share, refresh=False)
            self.bar.update(1)
        elif self.enabled and (self.done % max(1, self.planned // 10) == 0 or self.done == self.planned):
            print(
                f"{self.what}: {self.done}/{self.planned} done, {share} so far", file=sys.stderr, flush=True
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class _Outcome:
    """The items that finished, and why the run ended before the last one (if it did)."""

    items: list[dict[str, Any]]
    planned: int
    stopped: str | None = None
    interrupted_by: str | None = None

    def fields(self) -> dict[str, Any]:
        """The report's account of the run: planned and finished examples, and whether it is complete."""
        return {
            "planned": self.planned,
            "finished": len(self.items),
            "complete": self.stopped is None and self.interrupted_by is None,
            "stopped": self.stopped,
            "interrupted_by": self.interrupted_by,
        }


def _run_wide_failure(items: list[dict[str, Any]], planned: int) -> str | None:
    """Why the model fails for the whole run, when the first examples all ended on the same model error."""
    first = min(RUN_WIDE_FAILURES, planned)
    if len(items) != first:
        return None
    errors = {item["error"] for item in items if item["status"] == "model_error"}
    if len(errors) != 1 or any(item["status"] != "model_error" for item in items):
        return None
    return f"the model failed on the first {first} examples, each with: {errors.pop()}"


def _run(cases: list[T], ask: Callable[[T], dict[str, Any]], progress: _Progress, good: str) -> _Outcome:
    """Ask every case in turn; stop early when the model fails for the whole run, or on Ctrl-C / SIGTERM (a
    ``KeyboardInterrupt``, whose ``signum`` names the signal), keeping every finished item."""
    outcome = _Outcome([], len(cases))
    try:
        for case in cases:
            outcome.items.append(ask(case))
            progress.update(bool(outcome.items[-1][good]))
            outcome.stopped = _run_wide_failure(outcome.items, len(cases))
            if outcome.stopped:
                break
    except KeyboardInterrupt as exc:
        outcome.interrupted_by = signal.Signals(getattr(exc, "signum", signal.SIGINT)).name
    finally:
        progress.close()
    return outcome


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _mean_model_s(items: list[dict[str, Any]]) -> float | None:
    return sum(i["model_s"] for i in items) / len(items) if items else None


def _image_error(item: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """An item whose image passed the header check but cannot be loaded: recorded as such, never asked."""
    return {**item, "status": "image_error", "error": f"cannot load the image: {exc}", "model_s": 0.0}


# -- grounding ------------------------------------------------------------------------------------------------


def _grounding_tool(obj: Mapping[str, Any], tool: ToolName | None) -> ToolName:
    if tool is not None:
        return tool
    platform = str(obj.get("platform") or "mobile").lower()
    return "mobile_use" if platform in ("mobile", "android", "ios", "phone") else "computer_use"


@dataclass(frozen=True)
class _GroundingCase:
    id: Any
    group: str
    tool: ToolName
    instruction: str
    bbox: Box
    image: Path


def _grounding_case(
    obj: dict[str, Any], where: str, *, base: Path, tool: ToolName | None, box_format: str
) -> _GroundingCase:
    instruction = _text_field(obj, "instruction", where)
    assert instruction is not None
    bbox = _box(obj.get("bbox"), where, box_format)
    image, _ = _image_size(base, obj.get("image"), where)
    group = str(obj.get("group") or "all")
    return _GroundingCase(obj.get("id"), group, _grounding_tool(obj, tool), instruction, bbox, image)


def _ask_grounding(line: int, case: _GroundingCase, model: ModelBackend, dialect: Dialect) -> dict[str, Any]:
    item: dict[str, Any] = {
        "line": line,
        "id": case.id,
        "group": case.group,
        "tool": case.tool,
        "bbox": list(case.bbox),
        "output": None,
        "point": None,
        "hit": False,
    }
    try:
        image = _load_image(case.image)
    except (OSError, Image.DecompressionBombError) as exc:
        return _image_error(item, exc)
    space = dialect.coordinate_space(Size(*image.size))
    messages = grounding_messages(dialect, case.instruction, image, space)
    model.begin_episode(str(case.id) if case.id is not None else None)
    text, error, model_s = _ask(model, messages)
    item.update(output=text, model_s=round(model_s, 4))
    if text is None:
        return {**item, "status": "model_error", "error": error}
    return {**item, **_score_point(dialect, text, space, case.bbox)}


def grounding_messages(
    dialect: Dialect, instruction: str, image: Image.Image, space: CoordinateSpace
) -> list[Message]:
    """How a grounding example is asked: the model family's own benchmark form where the dialect has one (the
    instruction alone beside the tool prompt, for Qwen2.5-VL), else its grounding prompt (as ``Session.locate``
    asks; UI-TARS's GROUNDING template), else the agent's prompt with the instruction as the goal."""
    if isinstance(dialect, SupportsInstructionGrounding):
        return dialect.instruction_messages(instruction, image, space)
    if isinstance(dialect, SupportsGrounding):
        return dialect.grounding_messages(instruction, image, space)
    return dialect.messages(instruction, image, space, ())


def _score_point(dialect: Dialect, text: str, space: CoordinateSpace, bbox: Box) -> dict[str, Any]:
    try:
        parsed = dialect.parse(text, space)
    except ModelOutputError as exc:
        return {"status": "unparsable", "error": str(exc)}
    point = next((p for p in (action_point(a.device) for a in parsed) if p is not None), None)
    if point is None:
        return {"status": "no_point", "error": "the answer has no point"}
    hit = inside(bbox, *point)
    return {"status": "hit" if hit else "miss", "hit": hit, "point": list(point), "error": None}


def evaluate_grounding(
    data: str | Path,
    model: ModelBackend,
    *,
    tool: ToolName | None = None,
    dialect: str = DEFAULT_DIALECT,
    dialect_options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    progress: bool = False,
    box_format: str = "xyxy",
) -> dict[str, Any]:
    """Ask the model to click each instruction's target; a hit is a device point inside the target box.

    Data lines: ``image`` (relative to the data file), ``instruction``, ``bbox`` ``[x1, y1, x2, y2]`` in image
    pixels (``box_format="xywh"``: ``[x, y, width, height]``, as ScreenSpot's files have it), optional
    ``group``, ``platform`` (mobile/desktop/web) and ``id`` (passed to the model's ``begin_episode``, so replay
    files can key answers by it). Every line is checked before the model is asked anything (all bad lines in
    one SetupError). The run stops early, keeping what finished, when the model fails for the whole run or on
    Ctrl-C; the report says so (``complete``, ``stopped``, ``interrupted_by``).
    """
    if box_format not in ("xyxy", "xywh"):
        raise SetupError(f"box format must be xyxy or xywh, got {box_format!r}")
    path = Path(data)
    options = {k: v for k, v in (dialect_options or {}).items() if k != "keep_images"}
    prepare = partial(_grounding_case, base=path.parent, tool=tool, box_format=box_format)
    cases = _read_cases(path, prepare, limit)
    dialects = {
        name: make_dialect(dialect, "mobile" if name == "mobile_use" else "desktop", **options)
        for name in {c.tool for _, c in cases}
    }
    outcome = _run(
        cases,
        lambda lc: _ask_grounding(*lc, model, dialects[lc[1].tool]),
        _Progress("grounding", len(cases), progress, "hits"),
        "hit",
    )
    return _grounding_report(path, model, tool, outcome)


def _grounding_report(
    path: Path, model: ModelBackend, tool: ToolName | None, outcome: _Outcome
) -> dict[str, Any]:
    items = outcome.items
    groups: dict[str, dict[str, Any]] = {}
    for item in items:
        g = groups.setdefault(item["group"], {"total": 0, "hits": 0})
        g["total"] += 1
        g["hits"] += int(item["hit"])
    for g in groups.values():
        g["accuracy"] = g["hits"] / g["total"]
    hits = sum(int(i["hit"]) for i in items)
    return {
        "kind": "grounding",
        "data": str(path),
        "model": model.describe(),
        "tool": tool or "per line",
        **outcome.fields(),
        "total": len(items),
        "hits": hits,
        "accuracy": _ratio(hits, len(items)),
        **_status_counts(items, "unparsable", "no_point", "model_error", "image_error"),
        "mean_model_s": _mean_model_s(items),
        "groups": dict(sorted(groups.items())),
        "items": items,
    }


def _status_counts(items: list[dict[str, Any]], *statuses: str) -> dict[str, int]:
    """``unparsable``, ``no_point``, ``model_errors``, ``image_errors``: how many items ended so."""
    return {
        (s if s in ("unparsable", "no_point") else f"{s}s"): sum(1 for i in items if i["status"] == s)
        for s in statuses
    }


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)])


def _footer(report: Mapping[str, Any], first: str) -> str:
    """The line under a table: answer problems, model time, errors and, for a run that ended early, why."""
    mean = report["mean_model_s"]
    extra = first + (f", mean model time {mean:.2f} s" if mean is not None else "")
    if report["model_errors"]:
        extra += f", model errors: {report['model_errors']}"
    if report.get("image_errors"):
        extra += f", images that could not be loaded: {report['image_errors']}"
    if not report.get("complete", True):
        why = report["stopped"] or f"interrupted ({report['interrupted_by']})"
        extra += f"\nincomplete: {report['finished']} of {report['planned']} examples finished; {why}"
    return extra


def format_grounding(report: Mapping[str, Any]) -> str:
    rows = [
        [g, str(v["total"]), str(v["hits"]), _percent(v["accuracy"])] for g, v in report["groups"].items()
    ]
    rows.append(["overall", str(report["total"]), str(report["hits"]), _percent(report["accuracy"])])
    first = f"unparsable answers: {report['unparsable']}, answers without a point: {report['no_point']}"
    return _table(["group", "n", "hits", "accuracy"], rows) + "\n" + _footer(report, first)


# -- next-step prediction -------------------------------------------------------------------------------------


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


def match_step(predicted: Action | None, truth: Action, screen: Size, bbox: Box | None = None) -> StepMatch:
    """AndroidControl-style matching of a predicted action against the recorded one (device pixels).

    Clicks and long presses hit when inside the target box or within :data:`CLICK_TOLERANCE` of the screen
    (normalised distance) from the target point; typed text and answers are compared after normalisation;
    swipes by direction; apps by normalised name; system buttons, keys and terminate status exactly.
    """
    if predicted is None:
        return StepMatch(False, False, "no action")
    if predicted.action != truth.action:
        return StepMatch(False, False, f"{predicted.action} instead of {truth.action}")
    match truth:
        case Click() | LongPress():
            assert isinstance(predicted, (Click, LongPress))
            if predicted.x is None or predicted.y is None or truth.x is None or truth.y is None:
                ok = predicted.x == truth.x and predicted.y == truth.y
                return StepMatch(True, ok, "points compared as given")
            if bbox is not None and inside(bbox, predicted.x, predicted.y):
                return StepMatch(True, True, "inside the target box")
            distance = math.hypot(
                (predicted.x - truth.x) / screen.width, (predicted.y - truth.y) / screen.height
            )
            ok = distance <= CLICK_TOLERANCE
            return StepMatch(True, ok, f"distance {distance:.3f} of the screen")
        case Swipe():
            assert isinstance(predicted, Swipe)
            want = swipe_direction(truth.x, truth.y, truth.x2, truth.y2)
            got = swipe_direction(predicted.x, predicted.y, predicted.x2, predicted.y2)
            return StepMatch(True, want == got, f"swiped {got}, wanted {want}")
        case TypeText():
            assert isinstance(predicted, TypeText)
            ok = normalize_text(predicted.text) == normalize_text(truth.text)
            return StepMatch(True, ok, f"typed {predicted.text!r}, wanted {truth.text!r}")
        case Answer():
            assert isinstance(predicted, Answer)
            ok = normalize_text(predicted.text) == normalize_text(truth.text)
            return StepMatch(True, ok, f"answered {predicted.text!r}, wanted {truth.text!r}")
        case OpenApp():
            assert isinstance(predicted, OpenApp)
            ok = _app_name(predicted.app) == _app_name(truth.app)
            return StepMatch(True, ok, f"opened {predicted.app!r}, wanted {truth.app!r}")
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


def _history_call(item: Any, space: CoordinateSpace, where: str, dialect: Dialect) -> str:
    """A previous action as the prompt's history shows it: the call in model pixels. Argument objects are
    written as Qwen2.5-VL calls, so other dialects take history as the model's own call strings only."""
    if isinstance(item, str):
        return item
    if not isinstance(item, dict) or not isinstance(item.get("action"), str):
        raise SetupError(f"{where}: history entries must be strings or mobile_use argument objects")
    if not isinstance(dialect, Qwen25VLDialect):
        raise SetupError(
            f"{where}: history as mobile_use argument objects is Qwen2.5-VL's form; with the {dialect.name} "
            "dialect give each history entry as the call string that model writes"
        )
    args = dict(item)
    for key in ("coordinate", "coordinate2"):
        if isinstance(args.get(key), (list, tuple)) and len(args[key]) == 2:
            args[key] = list(space.to_model(*args[key]))
    return json.dumps({"name": "mobile_use", "arguments": args})


#: Reads the recorded actions of step data (mobile_use arguments in device pixels), whatever dialect asks.
_DATA_FORMAT = Qwen25VLDialect("mobile_use", answer_action=True)


@dataclass(frozen=True)
class _StepCase:
    id: Any
    query: str
    image: Path
    screen: Size
    truth: Action
    bbox: Box | None
    past: tuple[PastStep, ...]


def _step_case(obj: dict[str, Any], where: str, *, base: Path, level: str, dialect: Dialect) -> _StepCase:
    goal = _text_field(obj, "goal", where)
    assert goal is not None
    instruction = _text_field(obj, "instruction", where, required=False)
    image, screen = _image_size(base, obj.get("screenshot"), where)
    truth_args = obj.get("action")
    if not isinstance(truth_args, dict):
        raise SetupError(f"{where}: 'action' must be an object of mobile_use arguments")
    try:
        truth = _DATA_FORMAT.call_to_action(
            ToolCall("mobile_use", truth_args), CoordinateSpace(screen, screen)
        )
    except ModelOutputError as exc:
        raise SetupError(f"{where}: the recorded action is not valid: {exc}") from exc
    bbox = _box(obj["bbox"], where) if obj.get("bbox") is not None else None
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise SetupError(f"{where}: 'history' must be a list")
    space = dialect.coordinate_space(screen)
    past = tuple(PastStep(_history_call(h, space, where, dialect)) for h in history)
    query = f"{goal}\nNext step: {instruction}" if level == "low" and instruction else goal
    return _StepCase(obj.get("id"), query, image, screen, truth, bbox, past)


def _ask_step(line: int, case: _StepCase, model: ModelBackend, dialect: Dialect) -> dict[str, Any]:
    item: dict[str, Any] = {
        "line": line,
        "id": case.id,
        "type": case.truth.action,
        "truth": action_to_dict(case.truth),
        "predicted": None,
        "type_ok": False,
        "step_ok": False,
        "why": "not asked",
        "output": None,
    }
    try:
        image = _load_image(case.image)
    except (OSError, Image.DecompressionBombError) as exc:
        return _image_error(item, exc)
    space = dialect.coordinate_space(case.screen)
    model.begin_episode(str(case.id) if case.id is not None else None)
    text, error, model_s = _ask(model, dialect.messages(case.query, image, space, list(case.past)))
    predicted: Action | None = None
    status = "ok" if text is not None else "model_error"
    if text is not None:
        try:
            predicted = dialect.parse(text, space)[0].device
        except ModelOutputError as exc:
            status, error = "unparsable", str(exc)
    result = match_step(predicted, case.truth, case.screen, case.bbox)
    return {
        **item,
        "predicted": action_to_dict(predicted) if predicted is not None else None,
        "type_ok": result.type_ok,
        "step_ok": result.step_ok,
        "why": result.why,
        "status": status,
        "error": error,
        "output": text,
        "model_s": round(model_s, 4),
    }


def evaluate_steps(
    data: str | Path,
    model: ModelBackend,
    *,
    level: str = "high",
    dialect: str = DEFAULT_DIALECT,
    dialect_options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Ask for the next action of each recorded step and compare it with the recorded one.

    Data lines: ``screenshot`` (relative to the data file), ``goal``, optional ``instruction`` (the step's
    low-level instruction, used with ``level="low"``), optional ``history`` (previous actions as mobile_use
    argument objects in device pixels, or call strings), ``action`` (mobile_use arguments in device pixels),
    optional ``bbox`` of the target element, optional ``id``. Lines are checked, and runs stop early, as in
    :func:`evaluate_grounding`.
    """
    if level not in ("high", "low"):
        raise SetupError(f"level must be high or low, got {level!r}")
    path = Path(data)
    options = {k: v for k, v in (dialect_options or {}).items() if k != "keep_images"}
    asker = make_dialect(dialect, "mobile", **options)
    cases = _read_cases(path, partial(_step_case, base=path.parent, level=level, dialect=asker), limit)
    outcome = _run(
        cases,
        lambda lc: _ask_step(*lc, model, asker),
        _Progress("steps", len(cases), progress, "step accuracy"),
        "step_ok",
    )
    return _steps_report(path, model, level, outcome)


def _steps_report(path: Path, model: ModelBackend, level: str, outcome: _Outcome) -> dict[str, Any]:
    items = outcome.items
    by_type: dict[str, dict[str, Any]] = {}
    for item in items:
        t = by_type.setdefault(item["type"], {"total": 0, "type_ok": 0, "step_ok": 0})
        t["total"] += 1
        t["type_ok"] += int(item["type_ok"])
        t["step_ok"] += int(item["step_ok"])
    for t in by_type.values():
        t["type_accuracy"] = t["type_ok"] / t["total"]
        t["step_accuracy"] = t["step_ok"] / t["total"]
    n = len(items)
    return {
        "kind": "steps",
        "data": str(path),
        "model": model.describe(),
        "level": level,
        **outcome.fields(),
        "total": n,
        "type_accuracy": _ratio(sum(int(i["type_ok"]) for i in items), n),
        "step_accuracy": _ratio(sum(int(i["step_ok"]) for i in items), n),
        **_status_counts(items, "unparsable", "model_error", "image_error"),
        "mean_model_s": _mean_model_s(items),
        "by_type": dict(sorted(by_type.items())),
        "items": items,
    }


def format_steps(report: Mapping[str, Any]) -> str:
    rows = [
        [t, str(v["total"]), _percent(v["type_accuracy"]), _percent(v["step_accuracy"])]
        for t, v in report["by_type"].items()
    ]
    overall = [_percent(report["type_accuracy"]), _percent(report["step_accuracy"])]
    rows.append(["overall", str(report["total"]), *overall])
    first = f"unparsable answers: {report['unparsable']}"
    return _table(["action", "n", "type acc", "step acc"], rows) + "\n" + _footer(report, first)
