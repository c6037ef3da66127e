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
import sys
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
from screenpilot.errors import MissingExtraError, ModelOutputError, SetupError
from screenpilot.jsonl import read_objects
from screenpilot.model.base import ImagePart, Message, ModelBackend, ModelBackendError, TextPart
from screenpilot.model.dialect import PastStep
from screenpilot.model.qwen25vl import Qwen25VLDialect, ToolName
from screenpilot.tasks.checks import normalize_text

#: A click within this fraction of the screen (normalised distance) from the target point counts as a hit.
CLICK_TOLERANCE = 0.14

Box = tuple[float, float, float, float]
T = TypeVar("T")


def _read_lines(path: Path, limit: int | None) -> list[tuple[int, dict[str, Any]]]:
    lines = read_objects(path, limit=limit)
    if not lines:
        raise SetupError(f"{path} has no data lines")
    return lines


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


def _image(base: Path, value: Any, where: str) -> Image.Image:
    if not isinstance(value, str) or not value:
        raise SetupError(f"{where}: expected an image path")
    path = base / value
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as exc:
        raise SetupError(f"{where}: cannot open image {path}: {exc}") from exc


def _text_field(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SetupError(f"{where}: {key!r} must be a non-empty string")
    return value


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


def _progress(items: list[T], progress: bool, what: str) -> Iterable[T]:
    """``items``, with a progress bar on stderr when asked (evaluations of a large model take minutes)."""
    if not progress:
        return items
    try:
        from tqdm import tqdm
    except ImportError as exc:
        raise MissingExtraError("bench", "tqdm", "the progress bar") from exc
    return tqdm(items, desc=what, unit="item", file=sys.stderr)


# -- grounding ------------------------------------------------------------------------------------------------


def _grounding_tool(obj: Mapping[str, Any], tool: ToolName | None) -> ToolName:
    if tool is not None:
        return tool
    platform = str(obj.get("platform") or "mobile").lower()
    return "mobile_use" if platform in ("mobile", "android", "ios", "phone") else "computer_use"


def evaluate_grounding(
    data: str | Path,
    model: ModelBackend,
    *,
    tool: ToolName | None = None,
    dialect_options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    progress: bool = False,
    box_format: str = "xyxy",
) -> dict[str, Any]:
    """Ask the model to click each instruction's target; a hit is a device point inside the target box.

    Data lines: ``image`` (relative to the data file), ``instruction``, ``bbox`` ``[x1, y1, x2, y2]`` in image
    pixels (``box_format="xywh"``: ``[x, y, width, height]``, as ScreenSpot's files have it), optional
    ``group``, ``platform`` (mobile/desktop/web) and ``id`` (passed to the model's ``begin_episode``, so replay
    files can key answers by it).
    """
    if box_format not in ("xyxy", "xywh"):
        raise SetupError(f"box format must be xyxy or xywh, got {box_format!r}")
    path = Path(data)
    options = {k: v for k, v in (dialect_options or {}).items() if k != "keep_images"}
    lines = _read_lines(path, limit)
    items: list[dict[str, Any]] = []
    for number, obj in _progress(lines, progress, "grounding"):
        where = f"{path}:{number}"
        instruction = _text_field(obj, "instruction", where)
        assert instruction is not None
        bbox = _box(obj.get("bbox"), where, box_format)
        image = _image(path.parent, obj.get("image"), where)
        dialect = Qwen25VLDialect(_grounding_tool(obj, tool), **options)
        space = dialect.coordinate_space(Size(*image.size))
        messages = [
            Message.text("system", dialect.system_prompt(space)),
            Message("user", (TextPart(instruction), ImagePart(dialect.prepare_image(image, space)))),
        ]
        model.begin_episode(str(obj["id"]) if obj.get("id") is not None else None)
        text, error, model_s = _ask(model, messages)
        item: dict[str, Any] = {
            "model_s": round(model_s, 4),
            "line": number,
            "id": obj.get("id"),
            "group": str(obj.get("group") or "all"),
            "tool": dialect.tool,
            "bbox": list(bbox),
            "output": text,
            "point": None,
        }
        if text is None:
            item.update(status="model_error", hit=False, error=error)
        else:
            try:
                parsed = dialect.parse(text, space)
            except ModelOutputError as exc:
                item.update(status="unparsable", hit=False, error=str(exc))
            else:
                point = next((p for p in (action_point(a.device) for a in parsed) if p is not None), None)
                if point is None:
                    item.update(status="no_point", hit=False, error="the answer has no point")
                else:
                    hit = inside(bbox, *point)
                    item.update(status="hit" if hit else "miss", hit=hit, point=list(point), error=None)
        items.append(item)

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
        "total": len(items),
        "hits": hits,
        "accuracy": hits / len(items),
        "unparsable": sum(1 for i in items if i["status"] == "unparsable"),
        "no_point": sum(1 for i in items if i["status"] == "no_point"),
        "model_errors": sum(1 for i in items if i["status"] == "model_error"),
        "mean_model_s": sum(i["model_s"] for i in items) / len(items),
        "groups": dict(sorted(groups.items())),
        "items": items,
    }


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)])


def format_grounding(report: Mapping[str, Any]) -> str:
    rows = [
        [g, str(v["total"]), str(v["hits"]), f"{100 * v['accuracy']:.1f}%"]
        for g, v in report["groups"].items()
    ]
    rows.append(["overall", str(report["total"]), str(report["hits"]), f"{100 * report['accuracy']:.1f}%"])
    extra = f"unparsable answers: {report['unparsable']}, answers without a point: {report['no_point']}"
    extra += f", mean model time {report['mean_model_s']:.2f} s"
    if report["model_errors"]:
        extra += f", model errors: {report['model_errors']}"
    return _table(["group", "n", "hits", "accuracy"], rows) + "\n" + extra


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


def _history_call(item: Any, space: CoordinateSpace, where: str) -> str:
    """A previous action as the prompt's history shows it: the call in model pixels."""
    if isinstance(item, str):
        return item
    if not isinstance(item, dict) or not isinstance(item.get("action"), str):
        raise SetupError(f"{where}: history entries must be strings or mobile_use argument objects")
    args = dict(item)
    for key in ("coordinate", "coordinate2"):
        if isinstance(args.get(key), (list, tuple)) and len(args[key]) == 2:
            args[key] = list(space.to_model(*args[key]))
    return json.dumps({"name": "mobile_use", "arguments": args})


def evaluate_steps(
    data: str | Path,
    model: ModelBackend,
    *,
    level: str = "high",
    dialect_options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Ask for the next action of each recorded step and compare it with the recorded one.

    Data lines: ``screenshot`` (relative to the data file), ``goal``, optional ``instruction`` (the step's
    low-level instruction, used with ``level="low"``), optional ``history`` (previous actions as mobile_use
    argument objects in device pixels, or call strings), ``action`` (mobile_use arguments in device pixels),
    optional ``bbox`` of the target element, optional ``id``.
    """
    if level not in ("high", "low"):
        raise SetupError(f"level must be high or low, got {level!r}")
    path = Path(data)
    options = {k: v for k, v in (dialect_options or {}).items() if k != "keep_images"}
    dialect = Qwen25VLDialect("mobile_use", **options)
    prepared = []
    for number, obj in _read_lines(path, limit):
        where = f"{path}:{number}"
        goal = _text_field(obj, "goal", where)
        assert goal is not None
        instruction = _text_field(obj, "instruction", where, required=False)
        image = _image(path.parent, obj.get("screenshot"), where)
        screen = Size(*image.size)
        identity = CoordinateSpace(screen, screen)
        truth_args = obj.get("action")
        if not isinstance(truth_args, dict):
            raise SetupError(f"{where}: 'action' must be an object of mobile_use arguments")
        try:
            truth = dialect.call_to_action(ToolCall("mobile_use", truth_args), identity)
        except ModelOutputError as exc:
            raise SetupError(f"{where}: the recorded action is not valid: {exc}") from exc
        bbox = _box(obj["bbox"], where) if obj.get("bbox") is not None else None
        history = obj.get("history") or []
        if not isinstance(history, list):
            raise SetupError(f"{where}: 'history' must be a list")
        prepared.append((number, obj, goal, instruction, image, screen, truth, bbox, history))

    items: list[dict[str, Any]] = []
    for number, obj, goal, instruction, image, screen, truth, bbox, history in _progress(
        prepared, progress, "steps"
    ):
        where = f"{path}:{number}"
        space = dialect.coordinate_space(screen)
        past = [PastStep(_history_call(h, space, where)) for h in history]
        query = f"{goal}\nNext step: {instruction}" if level == "low" and instruction else goal
        messages = dialect.messages(query, image, space, past)
        model.begin_episode(str(obj["id"]) if obj.get("id") is not None else None)
        text, error, model_s = _ask(model, messages)
        predicted: Action | None = None
        status = "ok"
        if text is None:
            status = "model_error"
        else:
            try:
                parsed = dialect.parse(text, space)
                predicted = parsed[0].device
            except ModelOutputError as exc:
                status, error = "unparsable", str(exc)
        result = match_step(predicted, truth, screen, bbox)
        items.append(
            {
                "line": number,
                "id": obj.get("id"),
                "type": truth.action,
                "truth": action_to_dict(truth),
                "predicted": action_to_dict(predicted) if predicted is not None else None,
                "type_ok": result.type_ok,
                "step_ok": result.step_ok,
                "why": result.why,
                "status": status,
                "error": error,
                "output": text,
                "model_s": round(model_s, 4),
            }
        )

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
        "total": n,
        "type_accuracy": sum(int(i["type_ok"]) for i in items) / n,
        "step_accuracy": sum(int(i["step_ok"]) for i in items) / n,
        "unparsable": sum(1 for i in items if i["status"] == "unparsable"),
        "model_errors": sum(1 for i in items if i["status"] == "model_error"),
        "mean_model_s": sum(i["model_s"] for i in items) / n,
        "by_type": dict(sorted(by_type.items())),
        "items": items,
    }


def format_steps(report: Mapping[str, Any]) -> str:
    rows = [
        [t, str(v["total"]), f"{100 * v['type_accuracy']:.1f}%", f"{100 * v['step_accuracy']:.1f}%"]
        for t, v in report["by_type"].items()
    ]
    rows.append(
        [
            "overall",
            str(report["total"]),
            f"{100 * report['type_accuracy']:.1f}%",
            f"{100 * report['step_accuracy']:.1f}%",
        ]
    )
    extra = f"unparsable answers: {report['unparsable']}, mean model time {report['mean_model_s']:.2f} s"
    if report["model_errors"]:
        extra += f", model errors: {report['model_errors']}"
    return _table(["action", "n", "type acc", "step acc"], rows) + "\n" + extra
