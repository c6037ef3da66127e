"""Offline evaluation on recorded screens, no device: grounding (ScreenSpot-style) and next-step prediction
(AndroidControl-style).

The model is asked exactly as the agent asks it (the dialect's system prompt and image size) and its answer is
parsed by the same parser, so these numbers measure the format the agent runs on. Unparsable answers are
misses, and counted.
"""

from __future__ import annotations

import io
import json
import math
import re
import signal
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
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
from screenpilot.jsonl import read_lines, read_prepared
from screenpilot.model.base import Message, ModelBackend, ModelBackendError
from screenpilot.model.dialect import (
    Dialect,
    NoCallForm,
    PastStep,
    SupportsCallText,
    SupportsGrounding,
    SupportsInstructionGrounding,
)
from screenpilot.model.dialects import DEFAULT_DIALECT, make_dialect
from screenpilot.model.qwen25vl import Qwen25VLDialect, ToolName
from screenpilot.tasks.checks import normalize_text
from screenpilot.tasks.datasets import androidcontrol, screenspot

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


class _Gate:
    """Asks the model from worker threads. A server takes requests at once; any other backend (a replay model
    keyed by ``begin_episode``, a local GPU model) is asked one request at a time."""

    def __init__(self, model: ModelBackend) -> None:
        self.model = model
        concurrent = model.describe().get("backend") == "openai"
        self._lock: threading.Lock | None = None if concurrent else threading.Lock()

    def ask(self, key: str | None, messages: list[Message]) -> tuple[str | None, str | None, float]:
        if self._lock is None:
            return self._ask(key, messages)
        with self._lock:
            return self._ask(key, messages)

    def _ask(self, key: str | None, messages: list[Message]) -> tuple[str | None, str | None, float]:
        self.model.begin_episode(key)
        t0 = time.perf_counter()
        try:
            text = self.model.complete(messages).text
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


class Journal:
    """The results file beside ``--out``: a header line naming the evaluation, then one line per finished
    example, appended (and flushed) as each finishes. Opening it again returns what is done, so the same command
    resumes; examples that ended on a model error are asked again. A file written by another evaluation (other
    data, format, level or dialect) is refused, in one line."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = {"screenpilot_eval": 1, **header}
        self._file: Any = None
        self._lock = threading.Lock()

    def open(self) -> dict[str, dict[str, Any]]:
        """The finished items by key, and the file opened for appending (made, with its header, if new)."""
        done: dict[str, dict[str, Any]] = {}
        if self.path.is_file() and self.path.stat().st_size:
            done = self._read()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.is_file() or not self.path.stat().st_size
            self._file = self.path.open("a", encoding="utf-8")
            if fresh:
                self._write(self.header)
        except OSError as exc:
            raise SetupError(f"cannot write the results file {self.path}: {exc.strerror or exc}") from exc
        return done

    def _read(self) -> dict[str, dict[str, Any]]:
        lines = [(n, t) for n, t in read_lines(self.path, drop_torn_tail=True) if t.strip()]
        try:
            header = json.loads(lines[0][1]) if lines else None
        except json.JSONDecodeError:
            header = None
        if header != self.header:
            raise SetupError(
                f"{self.path} holds results of another evaluation (other data, format, level or dialect); "
                "remove it or give another --out"
            )
        done: dict[str, dict[str, Any]] = {}
        for number, text in lines[1:]:
            try:
                item = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SetupError(f"{self.path}:{number}: not JSON ({exc.msg})") from None
            if (
                isinstance(item, dict)
                and isinstance(item.get("key"), str)
                and item.get("status") != "model_error"
            ):
                done[item["key"]] = item
        return done

    def _write(self, obj: dict[str, Any]) -> None:
        self._file.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._file.flush()

    def append(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._write(item)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@dataclass
class _Plan:
    """The examples of a run: keys and cases in data order, and those already done (resuming)."""

    jobs: list[tuple[str, Any]]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)

    def todo(self) -> list[tuple[int, Any]]:
        return [(i, case) for i, (key, case) in enumerate(self.jobs) if key not in self.done]


def _run(
    plan: _Plan,
    load: Callable[[Any], Any],
    ask: Callable[[Any, Any], dict[str, Any]],
    progress: _Progress,
    good: str,
    *,
    concurrency: int = 1,
    journal: Journal | None = None,
) -> _Outcome:
    """Ask every case not yet done, ``concurrency`` at a time (``load`` runs here, in data order; ``ask`` in
    worker threads); stop early when the model fails for the whole run, or on Ctrl-C / SIGTERM (a
    ``KeyboardInterrupt``, whose ``signum`` names the signal). Every finished item is kept (and journalled), and
    the items come back in data order."""
    results = {i: plan.done[key] for i, (key, _) in enumerate(plan.jobs) if key in plan.done}
    outcome = _Outcome([], len(plan.jobs))
    fresh: list[dict[str, Any]] = []
    pending: dict[Future[dict[str, Any]], int] = {}
    to_ask = plan.todo()

    def record(future: Future[dict[str, Any]]) -> None:
        item = future.result()
        results[pending.pop(future)] = item
        fresh.append(item)
        if journal is not None:
            journal.append(item)
        progress.update(bool(item[good]))
        outcome.stopped = outcome.stopped or _run_wide_failure(fresh, len(to_ask))

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval")
    todo = iter(to_ask)
    try:
        while True:
            while outcome.stopped is None and len(pending) < concurrency:
                nxt = next(todo, None)
                if nxt is None:
                    break
                payload = _try_load(load, nxt[1])
                pending[pool.submit(ask, nxt[1], payload)] = nxt[0]
            if not pending:
                break
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: pending[f]):
                record(future)
    except KeyboardInterrupt as exc:
        outcome.interrupted_by = signal.Signals(getattr(exc, "signum", signal.SIGINT)).name
        for future in pending:
            future.cancel()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for future in [f for f in pending if f.done() and not f.cancelled() and f.exception() is None]:
            record(future)
        progress.close()
    outcome.items = [results[i] for i in sorted(results)]
    return outcome


def _try_load(load: Callable[[Any], Any], case: Any) -> Any:
    """What ``load`` gives for a case, or the exception it raised (the item then records an image error)."""
    try:
        return load(case)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return exc


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

#: Qwen2.5-VL's published results (Qwen2.5-VL Technical Report, arXiv:2502.13923, GUI agent table), in percent,
#: for 3B / 7B / 72B: ScreenSpot and ScreenSpot-Pro accuracy, AndroidControl step success rate.
PUBLISHED: dict[str, tuple[str, tuple[float, float, float]]] = {
    "screenspot": ("ScreenSpot", (55.5, 84.7, 87.1)),
    "screenspot-pro": ("ScreenSpot-Pro", (23.9, 29.0, 43.6)),
    "androidcontrol-high": ("AndroidControl-High", (63.7, 60.1, 67.36)),
    "androidcontrol-low": ("AndroidControl-Low", (90.8, 91.4, 93.7)),
}

#: The grounding data formats: our JSON Lines, and the released ScreenSpot layouts.
GROUNDING_FORMATS = ("jsonl", *screenspot.FORMATS)


def published_line(benchmark: str | None) -> str | None:
    """The published Qwen2.5-VL numbers for a benchmark, as one line (None when there are none)."""
    if benchmark == "screenspot-v2":
        name, (a, b, c) = PUBLISHED["screenspot"]
        return f"Qwen2.5-VL published: none for ScreenSpot-v2 (ScreenSpot: 3B {a}%, 7B {b}%, 72B {c}%)"
    if benchmark not in PUBLISHED:
        return None
    name, (a, b, c) = PUBLISHED[benchmark]
    return f"Qwen2.5-VL published ({name}): 3B {a}%, 7B {b}%, 72B {c}%"


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
    instruction = _text_field(obj, "instruction", where)
    assert instruction is not None
    bbox = _box(obj.get("bbox"), where, box_format)
    image, _ = _image_size(base, obj.get("image"), where)
    group = str(obj.get("group") or "all")
    key = str(obj["id"]) if obj.get("id") is not None else where.rsplit(":", 1)[-1]
    ui = obj.get("ui_type")
    return _GroundingCase(
        key, obj.get("id"), group, _grounding_tool(obj, tool), instruction, bbox, image, ui and str(ui)
    )


def _released_cases(
    path: Path, fmt: str, images: Path | None, tool: ToolName | None, limit: int | None
) -> list[_GroundingCase]:
    """The cases of a released ScreenSpot layout; every entry and image checked, all problems in one error."""
    examples = screenspot.load(path, fmt, images=images)[:limit]
    problems: list[str] = []
    cases = []
    for ex in examples:
        if not ex.image.is_file():
            problems.append(f"{ex.key}: no image {ex.image}")
            continue
        platform = {"platform": ex.platform}
        key = str(ex.id) if ex.id is not None else ex.key
        case = _GroundingCase(
            key,
            ex.id,
            ex.group,
            _grounding_tool(platform, tool),
            ex.instruction,
            ex.bbox,
            ex.image,
            ex.ui_type,
        )
        cases.append(case)
    if problems:
        from screenpilot.jsonl import problems_error

        raise problems_error(path, problems)
    return cases


def _ask_grounding(case: _GroundingCase, image: Any, gate: _Gate, dialect: Dialect) -> dict[str, Any]:
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
        return _image_error(item, image)
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
    if fmt == "jsonl":
        prepare = partial(_grounding_case, base=path.parent, tool=tool, box_format=box_format)
        cases = [case for _, case in _read_cases(path, prepare, limit)]
    else:
        cases = _released_cases(path, fmt, Path(images) if images is not None else None, tool, limit)
    options = {k: v for k, v in (dialect_options or {}).items() if k != "keep_images"}
    dialects = {
        name: make_dialect(dialect, "mobile" if name == "mobile_use" else "desktop", **options)
        for name in {c.tool for c in cases}
    }
    header = {
        "kind": "grounding",
        "data": str(path.resolve()),
        "format": fmt,
        "dialect": dialect,
        "tool": tool,
    }
    outcome = _journalled(
        journal,
        header,
        [(c.key, c) for c in cases],
        lambda plan, book: _run(
            plan,
            lambda c: _load_image(c.image),
            partial(_ask_grounding_with, gate=_Gate(model), dialects=dialects),
            _Progress("grounding", len(plan.todo()), progress, "hits"),
            "hit",
            concurrency=concurrency,
            journal=book,
        ),
    )
    return _grounding_report(path, model, tool, outcome, fmt)


def _ask_grounding_with(
    case: _GroundingCase, image: Any, *, gate: _Gate, dialects: Mapping[ToolName, Dialect]
) -> dict[str, Any]:
    return _ask_grounding(case, image, gate, dialects[case.tool])


def _journalled(
    journal: str | Path | None,
    header: dict[str, Any],
    jobs: list[tuple[str, Any]],
    run: Callable[[_Plan, Journal | None], _Outcome],
) -> _Outcome:
    """Run the jobs, resuming from and appending to ``journal`` when one is given."""
    keys = [key for key, _ in jobs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise SetupError(f"two examples share the key {dup!r}; keys (ids) must be unique to resume")
    if journal is None:
        return run(_Plan(jobs), None)
    book = Journal(Path(journal), header)
    done = book.open()
    if done:
        print(
            f"resuming: {sum(k in done for k in keys)} of {len(jobs)} examples already done", file=sys.stderr
        )
    try:
        return run(_Plan(jobs, done), book)
    finally:
        book.close()


def _cell(items: list[dict[str, Any]]) -> dict[str, Any]:
    hits = sum(int(i["hit"]) for i in items)
    return {"total": len(items), "hits": hits, "accuracy": _ratio(hits, len(items))}


def _grounding_report(
    path: Path, model: ModelBackend, tool: ToolName | None, outcome: _Outcome, fmt: str = "jsonl"
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
        "accuracy": _ratio(hits, len(items)),
        "by_ui_type": {ui: _cell([i for i in items if i.get("ui_type") == ui]) for ui in ui_types},
        **_status_counts(items, "unparsable", "no_point", "model_error", "image_error"),
        "mean_model_s": _mean_model_s(items),
        "groups": groups,
        "published": published_line(fmt if fmt != "jsonl" else None),
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
    """The report as a table: a row per group (ScreenSpot's platforms, ScreenSpot-Pro's application groups),
    a column per element type (text, icon) when the data has them, and the published numbers under it."""
    uis = list(report.get("by_ui_type") or {})

    def row(name: str, cell: Mapping[str, Any], per_ui: Mapping[str, Any]) -> list[str]:
        extra = [_percent(per_ui[u]["accuracy"]) if u in per_ui else "-" for u in uis]
        return [name, str(cell["total"]), str(cell["hits"]), *extra, _percent(cell["accuracy"])]

    rows = [row(g, v, v) for g, v in report["groups"].items()]
    rows.append(row("overall", report, report.get("by_ui_type") or {}))
    first = f"unparsable answers: {report['unparsable']}, answers without a point: {report['no_point']}"
    table = _table(["group", "n", "hits", *uis, "accuracy"], rows)
    return table + "\n" + _footer(report, first) + _published(report)


def _published(report: Mapping[str, Any]) -> str:
    line = report.get("published")
    return f"\n{line}" if line else ""


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
    """A previous action as the prompt's history shows it: the call as the asking model writes it, in its own
    frame. Argument objects (mobile_use arguments in device pixels) are read as data and written with the
    dialect's own call form; strings are taken as the model's call text already."""
    if isinstance(item, str):
        return item
    if not isinstance(item, dict) or not isinstance(item.get("action"), str):
        raise SetupError(f"{where}: history entries must be strings or mobile_use argument objects")
    if isinstance(dialect, Qwen25VLDialect):
        args = dict(item)
        for key in ("coordinate", "coordinate2"):
            if isinstance(args.get(key), (list, tuple)) and len(args[key]) == 2:
                args[key] = list(space.to_model(*args[key]))
        return json.dumps({"name": "mobile_use", "arguments": args})
    if not isinstance(dialect, SupportsCallText):
        raise SetupError(f"{where}: the {dialect.name} dialect cannot write history; give call strings")
    try:
        action = _DATA_FORMAT.call_to_action(
            ToolCall("mobile_use", dict(item)), CoordinateSpace(space.device, space.device)
        )
        return dialect.parse(dialect.call_text(action, space), space)[0].call
    except (ModelOutputError, NoCallForm) as exc:
        raise SetupError(f"{where}: history entry cannot be written for {dialect.name}: {exc}") from None


#: Reads the recorded actions of step data (mobile_use arguments in device pixels), whatever dialect asks.
_DATA_FORMAT = Qwen25VLDialect("mobile_use", answer_action=True)


@dataclass(frozen=True)
class _Shot:
    """A screenshot inside an AndroidControl record: the record's place and the step's index."""

    where: str
    index: int


@dataclass(frozen=True)
class _StepCase:
    key: str
    id: Any
    query: str
    image: Path | _Shot
    screen: Size
    truth: Action
    bbox: Box | None
    past: tuple[PastStep, ...]
    rules: MatchRules = MatchRules()


def _query(goal: str, instruction: str | None, level: str) -> str:
    return f"{goal}\nNext step: {instruction}" if level == "low" and instruction else goal


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
    key = str(obj["id"]) if obj.get("id") is not None else where.rsplit(":", 1)[-1]
    return _StepCase(key, obj.get("id"), _query(goal, instruction, level), image, screen, truth, bbox, past)


def _past_call(action: Action, space: CoordinateSpace, dialect: Dialect) -> str:
    """A recorded action as the model would have written it; as its JSON where the model has no form for it."""
    if isinstance(dialect, SupportsCallText):
        try:
            return dialect.call_text(action, space)
        except NoCallForm:
            pass
    return json.dumps(action_to_dict(action), ensure_ascii=False)


def _androidcontrol_case(step: androidcontrol.Step, where: str, *, level: str, dialect: Dialect) -> _StepCase:
    screen = Size(step.width, step.height)
    space = dialect.coordinate_space(screen)
    past = tuple(PastStep(_past_call(a, space, dialect)) for a in step.history)
    query = _query(step.goal, step.instruction, level)
    shot = _Shot(where, step.index)
    return _StepCase(
        step.key, step.key, query, shot, screen, step.truth, step.bbox, past, ANDROIDCONTROL_RULES
    )


def _androidcontrol_cases(
    path: Path, *, level: str, dialect: Dialect, limit: int | None, episodes: set[int] | None
) -> list[_StepCase]:
    """Every step of every episode (of the chosen split), checked before anything is asked: a damaged record
    stops at once; every step whose action cannot be read is reported in one SetupError."""
    cases: list[_StepCase] = []
    problems: list[str] = []
    for where, episode in androidcontrol.read_episodes(path):
        if episodes is not None and episode.episode_id not in episodes:
            continue
        try:
            for step in androidcontrol.steps(episode):
                cases.append(_androidcontrol_case(step, where, level=level, dialect=dialect))
        except ValueError as exc:
            problems.append(f"{where} (episode {episode.episode_id}): {exc}")
        if limit is not None and len(cases) >= limit:
            break
    if problems:
        from screenpilot.jsonl import problems_error

        raise problems_error(path, problems)
    if not cases:
        raise SetupError(f"{path} has no steps" + (" in that split" if episodes is not None else ""))
    return cases[:limit]


class _ShotReader:
    """Screenshots of AndroidControl steps, read in data order: the records are read again, one at a time, and
    the current episode is kept until a later step asks for another."""

    def __init__(self, path: Path) -> None:
        self._episodes: Iterator[tuple[str, androidcontrol.Episode]] = androidcontrol.read_episodes(path)
        self._current: tuple[str, androidcontrol.Episode] | None = None

    def __call__(self, case: _StepCase) -> Image.Image:
        if isinstance(case.image, Path):
            return _load_image(case.image)
        shot = case.image
        while self._current is None or self._current[0] != shot.where:
            self._current = next(self._episodes, None)
            if self._current is None:
                raise OSError(f"{shot.where} is no longer in the data")
        with Image.open(io.BytesIO(self._current[1].screenshots[shot.index])) as img:
            return img.convert("RGB")


def _ask_step(case: _StepCase, image: Any, gate: _Gate, dialect: Dialect) -> dict[str, Any]:
    item: dict[str, Any] = {
        "key": case.key,
        "id": case.id,
        "type": case.truth.action,
        "truth": action_to_dict(case.truth),
        "bbox": list(case.bbox) if case.bbox is not None else None,
        "predicted": None,
        "type_ok": False,
        "step_ok": False,
        "why": "not asked",
        "output": None,
    }
    if isinstance(image, Exception):
        return _image_error(item, image)
    space = dialect.coordinate_space(case.screen)
    text, error, model_s = gate.ask(case.key, dialect.messages(case.query, image, space, list(case.past)))
    predicted: Action | None = None
    status = "ok" if text is not None else "model_error"
    if text is not None:
        try:
            predicted = dialect.parse(text, space)[0].device
        except ModelOutputError as exc:
            status, error = "unparsable", str(exc)
    result = match_step(predicted, case.truth, case.screen, case.bbox, case.rules)
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


#: The step data formats: our JSON Lines, and AndroidControl's TFRecord files as released.
STEP_FORMATS = ("jsonl", "androidcontrol")


def steps_format(data: Path, fmt: str | None) -> str:
    """The format of step data: as given, else AndroidControl for TFRecord files (or a folder of them), else
    JSON Lines."""
    if fmt is not None:
        if fmt not in STEP_FORMATS:
            raise SetupError(f"format must be one of {', '.join(STEP_FORMATS)}, got {fmt!r}")
        return fmt
    if not data.exists():
        raise SetupError(f"{data} does not exist")
    return "androidcontrol" if androidcontrol.is_tfrecord(data) else "jsonl"


def _split_ids(path: Path, split: str | None, splits: str | Path | None) -> set[int] | None:
    if split is None:
        return None
    folder = path if path.is_dir() else path.parent
    return androidcontrol.read_splits(Path(splits) if splits is not None else folder / "splits.json", split)


def evaluate_steps(
    data: str | Path,
    model: ModelBackend,
    *,
    level: str = "high",
    dialect: str = DEFAULT_DIALECT,
    dialect_options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    progress: bool = False,
    format: str | None = None,
    split: str | None = None,
    splits: str | Path | None = None,
    concurrency: int = 1,
    journal: str | Path | None = None,
) -> dict[str, Any]:
    """Ask for the next action of each recorded step and compare it with the recorded one.

    ``data`` is AndroidControl as released (a GZIP TFRecord file or a folder of them; ``split`` keeps the
    episodes of that split of ``splits.json``, found beside the data unless ``splits`` names it; matched by
    :data:`ANDROIDCONTROL_RULES`, the target box from the accessibility tree), or JSON Lines: ``screenshot``
    (relative to the data file), ``goal``, optional ``instruction`` (the step's low-level instruction, used
    with ``level="low"``), optional ``history`` (previous actions as mobile_use argument objects in device
    pixels, or call strings), ``action`` (mobile_use arguments in device pixels), optional ``bbox`` of the
    target element, optional ``id``. Data is checked, runs resume from ``journal``, run ``concurrency``
    requests at once and stop early, as in :func:`evaluate_grounding`.
    """
    if level not in ("high", "low"):
        raise SetupError(f"level must be high or low, got {level!r}")
    path = Path(data)
    fmt = steps_format(path, format)
    options = {k: v for k, v in (dialect_options or {}).items() if k != "keep_images"}
    asker = make_dialect(dialect, "mobile", **options)
    if fmt == "androidcontrol":
        ids = _split_ids(path, split, splits)
        cases = _androidcontrol_cases(path, level=level, dialect=asker, limit=limit, episodes=ids)
    else:
        prepare = partial(_step_case, base=path.parent, level=level, dialect=asker)
        cases = [case for _, case in _read_cases(path, prepare, limit)]
    header: dict[str, Any] = {
        "kind": "steps",
        "data": str(path.resolve()),
        "format": fmt,
        "level": level,
        "dialect": dialect,
    }
    header |= {"split": split}
    outcome = _journalled(
        journal,
        header,
        [(c.key, c) for c in cases],
        lambda plan, book: _run(
            plan,
            _ShotReader(path) if fmt == "androidcontrol" else lambda c: _load_image(c.image),
            partial(_ask_step_with, gate=_Gate(model), dialect=asker),
            _Progress("steps", len(plan.todo()), progress, "step accuracy"),
            "step_ok",
            concurrency=concurrency,
            journal=book,
        ),
    )
    report = _steps_report(path, model, level, outcome)
    published = published_line(f"androidcontrol-{level}" if fmt == "androidcontrol" else None)
    return {**report, "format": fmt, "split": split, "published": published}


def _ask_step_with(case: _StepCase, image: Any, *, gate: _Gate, dialect: Dialect) -> dict[str, Any]:
    return _ask_step(case, image, gate, dialect)


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
    table = _table(["action", "n", "type acc", "step acc"], rows)
    return table + "\n" + _footer(report, first) + _published(report)
