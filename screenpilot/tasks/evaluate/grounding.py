"""Grounding evaluation (ScreenSpot-style): the model is asked to click each instruction's target; a hit is a
device point inside the target box.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from screenpilot.actions.coords import CoordinateSpace, Size
from screenpilot.errors import ModelOutputError, SetupError
from screenpilot.model.base import Message, ModelBackend
from screenpilot.model.dialect import Dialect, SupportsGrounding, SupportsInstructionGrounding
from screenpilot.model.dialects import DEFAULT_DIALECT, make_dialect
from screenpilot.model.qwen25vl import ToolName
from screenpilot.tasks.datasets import screenspot
from screenpilot.tasks.evaluate.data import (
    Box,
    action_point,
    image_size,
    inside,
    load_image,
    read_box,
    read_cases,
    text_field,
)
from screenpilot.tasks.evaluate.report import (
    footer,
    mean_model_s,
    percent,
    published_line,
    published_suffix,
    ratio,
    render_table,
    status_counts,
)
from screenpilot.tasks.evaluate.run import Gate, Outcome, image_error, run_examples

#: The grounding data formats: our JSON Lines, and the released ScreenSpot layouts.
GROUNDING_FORMATS = ("jsonl", *screenspot.FORMATS)


def _grounding_tool(obj: Mapping[str, Any], tool: ToolName | None) -> ToolName:
    if tool is not None:
        return tool
    platform = str(obj.get("platform") or "mobile").lower()
    return "mobile_use" if platform in ("mobile", "android", "ios", "phone") else "computer_use"


@dataclass(frozen=True)
class _GroundingCase:
    key: str
    id: Any
    group: str
    tool: ToolName
    instruction: str
    bbox: Box
    image: Path
    ui_type: str | None = None


def _grounding_case(
    obj: dict[str, Any], where: str, *, base: Path, tool: ToolName | None, box_format: str
) -> _GroundingCase:
    instruction = text_field(obj, "instruction", where)
    assert instruction is not None
    bbox = read_box(obj.get("bbox"), where, box_format)
    image, _ = image_size(base, obj.get("image"), where)
    group = str(obj.get("group") or "all")
    key = str(obj["id"]) if obj.get("id") is not None else where.rsplit(":", 1)[-1]
    ui = obj.get("ui_type")
    return _GroundingCase(
        key, obj.get("id"), group, _grounding_tool(obj, tool), instruction, bbox, image, ui and str(ui)
    )


def _released_cases(
    path: Path, fmt: str, images: Path | None, tool: ToolName | None, limit: int | None
) -> list[_GroundingCase]:
    """The cases of a released ScreenSpot layout, the first ``limit`` of them; every entry and those cases'
    images checked, all problems in one error."""
    cases = []
    for ex in screenspot.load(path, fmt, images=images, limit=limit):
        key = str(ex.id) if ex.id is not None else ex.key
        tool_name = _grounding_tool({"platform": ex.platform}, tool)
        cases.append(
            _GroundingCase(key, ex.id, ex.group, tool_name, ex.instruction, ex.bbox, ex.image, ex.ui_type)
        )
    return cases


def _ask_grounding(case: _GroundingCase, image: Any, gate: Gate, dialect: Dialect) -> dict[str, Any]:
    item: dict[str, Any] = {
        "key": case.key,
        "id": case.id,
        "group": case.group,
        "tool": case.tool,
        "bbox": list(case.bbox),
        "output": None,
        "point": None,
        "hit": False,
    }
    if case.ui_type is not None:
        item["ui_type"] = case.ui_type
    if isinstance(image, Exception):
        return image_error(item, image)
    space = dialect.coordinate_space(Size(*image.size))
    messages = grounding_messages(dialect, case.instruction, image, space)
    text, error, model_s = gate.ask(case.key, messages)
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


def grounding_format(data: Path, fmt: str | None) -> str:
    """The format of grounding data: as given, else the released layout detected, else JSON Lines."""
    if fmt is not None:
        if fmt not in GROUNDING_FORMATS:
            raise SetupError(f"format must be one of {', '.join(GROUNDING_FORMATS)}, got {fmt!r}")
        return fmt
    if not data.exists():
        raise SetupError(f"{data} does not exist")
    detected = screenspot.detect(data)
    if detected is None and data.is_dir():
        raise SetupError(
            f"{data} is a folder without ScreenSpot, ScreenSpot-v2 or ScreenSpot-Pro annotation files; "
            "give the annotation file, or --format"
        )
    return detected or "jsonl"


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
    format: str | None = None,
    images: str | Path | None = None,
    concurrency: int = 1,
    journal: str | Path | None = None,
) -> dict[str, Any]:
    """Ask the model to click each instruction's target; a hit is a device point inside the target box.

    ``data`` is a released ScreenSpot, ScreenSpot-v2 or ScreenSpot-Pro folder or annotation file (``format``
    names it, else it is detected; ``images`` overrides the release's image folder), or JSON Lines: ``image``
    (relative to the data file), ``instruction``, ``bbox`` ``[x1, y1, x2, y2]`` in image pixels
    (``box_format="xywh"``: ``[x, y, width, height]``), optional ``group``, ``ui_type``, ``platform``
    (mobile/desktop/web) and ``id`` (passed to the model's ``begin_episode``, so replay files can key answers
    by it; released examples are keyed by their ``id``, else ``file.json[index]``). Every example is checked
    before the model is asked anything (all problems in one SetupError). ``concurrency`` requests run at once
    (a server; other backends are asked one at a time); ``journal`` is a results file appended per example,
    from which the same call resumes. The run stops early, keeping what finished, when the model fails for the
    whole run or on Ctrl-C; the report says so (``complete``, ``stopped``, ``interrupted_by``).
    """
    if box_format not in ("xyxy", "xywh"):
        raise SetupError(f"box format must be xyxy or xywh, got {box_format!r}")
    path = Path(data)
    fmt = grounding_format(path, format)
    cases = _grounding_cases(path, fmt, tool, box_format, Path(images) if images is not None else None, limit)
    dialects = _dialects(cases, dialect, dialect_options)
    outcome = run_examples(
        [(c.key, c) for c in cases],
        lambda c: load_image(c.image),
        partial(_ask_grounding_with, gate=Gate(model), dialects=dialects),
        header={
            "kind": "grounding",
            "data": str(path.resolve()),
            "format": fmt,
            "dialect": dialect,
            "tool": tool,
        },
        journal=journal,
        concurrency=concurrency,
        progress=("grounding", progress, "hits"),
        good="hit",
    )
    return _grounding_report(path, model, tool, outcome, fmt)


def _grounding_cases(
    path: Path, fmt: str, tool: ToolName | None, box_format: str, images: Path | None, limit: int | None
) -> list[_GroundingCase]:
    if fmt == "jsonl":
        prepare = partial(_grounding_case, base=path.parent, tool=tool, box_format=box_format)
        return [case for _, case in read_cases(path, prepare, limit)]
    return _released_cases(path, fmt, images, tool, limit)


def _dialects(
    cases: list[_GroundingCase], dialect: str, dialect_options: Mapping[str, Any] | None
) -> dict[ToolName, Dialect]:
    """A dialect per tool the cases use: mobile_use asks as on a phone, computer_use as on a desktop."""
    options = {k: v for k, v in (dialect_options or {}).items() if k != "keep_images"}
    return {
        name: make_dialect(dialect, "mobile" if name == "mobile_use" else "desktop", **options)
        for name in {c.tool for c in cases}
    }


def _ask_grounding_with(
    case: _GroundingCase, image: Any, *, gate: Gate, dialects: Mapping[ToolName, Dialect]
) -> dict[str, Any]:
    return _ask_grounding(case, image, gate, dialects[case.tool])


def _cell(items: list[dict[str, Any]]) -> dict[str, Any]:
    hits = sum(int(i["hit"]) for i in items)
    return {"total": len(items), "hits": hits, "accuracy": ratio(hits, len(items))}


def _grounding_report(
    path: Path, model: ModelBackend, tool: ToolName | None, outcome: Outcome, fmt: str = "jsonl"
) -> dict[str, Any]:
    items = outcome.items
    by_group: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_group.setdefault(item["group"], []).append(item)
    ui_types = sorted({i["ui_type"] for i in items if i.get("ui_type")})
    groups = {}
    for name, members in sorted(by_group.items()):
        groups[name] = _cell(members)
        for ui in ui_types:
            groups[name][ui] = _cell([i for i in members if i.get("ui_type") == ui])
    hits = sum(int(i["hit"]) for i in items)
    return {
        "kind": "grounding",
        "format": fmt,
        "data": str(path),
        "model": model.describe(),
        "tool": tool or "per line",
        **outcome.fields(),
        "total": len(items),
        "hits": hits,
        "accuracy": ratio(hits, len(items)),
        "by_ui_type": {ui: _cell([i for i in items if i.get("ui_type") == ui]) for ui in ui_types},
        **status_counts(items, "unparsable", "no_point", "model_error", "image_error"),
        "mean_model_s": mean_model_s(items),
        "groups": groups,
        "published": published_line(fmt if fmt != "jsonl" else None),
        "items": items,
    }


def format_grounding(report: Mapping[str, Any]) -> str:
    """The report as a table: a row per group (ScreenSpot's platforms, ScreenSpot-Pro's application groups),
    a column per element type (text, icon) when the data has them, and the published numbers under it."""
    uis = list(report.get("by_ui_type") or {})

    def row(name: str, cell: Mapping[str, Any], per_ui: Mapping[str, Any]) -> list[str]:
        extra = [percent(per_ui[u]["accuracy"]) if u in per_ui else "-" for u in uis]
        return [name, str(cell["total"]), str(cell["hits"]), *extra, percent(cell["accuracy"])]

    rows = [row(g, v, v) for g, v in report["groups"].items()]
    rows.append(row("overall", report, report.get("by_ui_type") or {}))
    first = f"unparsable answers: {report['unparsable']}, answers without a point: {report['no_point']}"
    table = render_table(["group", "n", "hits", *uis, "accuracy"], rows)
    return table + "\n" + footer(report, first) + published_suffix(report)
