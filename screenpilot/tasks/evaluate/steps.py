"""Next-step prediction (AndroidControl-style): the model is asked for the next action of each recorded step."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from screenpilot.actions.coords import CoordinateSpace, Size
from screenpilot.actions.parse import ToolCall
from screenpilot.actions.types import Action, action_to_dict
from screenpilot.errors import ModelOutputError, SetupError
from screenpilot.model.base import ModelBackend
from screenpilot.model.dialect import Dialect, NoCallForm, PastStep, SupportsCallText
from screenpilot.model.dialects import DEFAULT_DIALECT, make_dialect
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.tasks.datasets import androidcontrol
from screenpilot.tasks.evaluate.data import Box, image_size, load_image, read_box, read_cases, text_field
from screenpilot.tasks.evaluate.matching import ANDROIDCONTROL_RULES, MatchRules, match_step
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
    rules: MatchRules = field(default_factory=MatchRules)


def _query(goal: str, instruction: str | None, level: str) -> str:
    return f"{goal}\nNext step: {instruction}" if level == "low" and instruction else goal


def _step_case(obj: dict[str, Any], where: str, *, base: Path, level: str, dialect: Dialect) -> _StepCase:
    goal = text_field(obj, "goal", where)
    assert goal is not None
    instruction = text_field(obj, "instruction", where, required=False)
    image, screen = image_size(base, obj.get("screenshot"), where)
    truth_args = obj.get("action")
    if not isinstance(truth_args, dict):
        raise SetupError(f"{where}: 'action' must be an object of mobile_use arguments")
    try:
        truth = _DATA_FORMAT.call_to_action(
            ToolCall("mobile_use", truth_args), CoordinateSpace(screen, screen)
        )
    except ModelOutputError as exc:
        raise SetupError(f"{where}: the recorded action is not valid: {exc}") from exc
    bbox = read_box(obj["bbox"], where) if obj.get("bbox") is not None else None
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
            return load_image(case.image)
        shot = case.image
        while self._current is None or self._current[0] != shot.where:
            self._current = next(self._episodes, None)
            if self._current is None:
                raise OSError(f"{shot.where} is no longer in the data")
        with Image.open(io.BytesIO(self._current[1].screenshots[shot.index])) as img:
            return img.convert("RGB")


def _ask_step(case: _StepCase, image: Any, gate: Gate, dialect: Dialect) -> dict[str, Any]:
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
        return image_error(item, image)
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
    JSON Lines; a folder without TFRecord files is an error that says what was looked for."""
    if fmt is not None:
        if fmt not in STEP_FORMATS:
            raise SetupError(f"format must be one of {', '.join(STEP_FORMATS)}, got {fmt!r}")
        return fmt
    if not data.exists():
        raise SetupError(f"{data} does not exist")
    if androidcontrol.is_tfrecord(data):
        return "androidcontrol"
    if data.is_dir():
        raise SetupError(f"{data} has no android_control-* or *.tfrecord files, and is not a JSON Lines file")
    return "jsonl"


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
    cases = _step_cases(path, fmt, level, asker, limit, split=split, splits=splits)
    header = {"kind": "steps", "data": str(path.resolve()), "format": fmt, "level": level, "dialect": dialect}
    outcome = run_examples(
        [(c.key, c) for c in cases],
        _ShotReader(path) if fmt == "androidcontrol" else lambda c: load_image(c.image),
        partial(_ask_step_with, gate=Gate(model), dialect=asker),
        header={**header, "split": split},
        journal=journal,
        concurrency=concurrency,
        progress=("steps", progress, "step accuracy"),
        good="step_ok",
    )
    report = _steps_report(path, model, level, outcome)
    published = published_line(f"androidcontrol-{level}" if fmt == "androidcontrol" else None)
    return {**report, "format": fmt, "split": split, "published": published}


def _step_cases(
    path: Path,
    fmt: str,
    level: str,
    asker: Dialect,
    limit: int | None,
    *,
    split: str | None,
    splits: str | Path | None,
) -> list[_StepCase]:
    """The cases of the data; AndroidControl's are those of ``split`` (of the ``splits`` file) when one is named."""
    if fmt == "androidcontrol":
        episodes = _split_ids(path, split, splits)
        return _androidcontrol_cases(path, level=level, dialect=asker, limit=limit, episodes=episodes)
    prepare = partial(_step_case, base=path.parent, level=level, dialect=asker)
    return [case for _, case in read_cases(path, prepare, limit)]


def _ask_step_with(case: _StepCase, image: Any, *, gate: Gate, dialect: Dialect) -> dict[str, Any]:
    return _ask_step(case, image, gate, dialect)


def _steps_report(path: Path, model: ModelBackend, level: str, outcome: Outcome) -> dict[str, Any]:
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
        "type_accuracy": ratio(sum(int(i["type_ok"]) for i in items), n),
        "step_accuracy": ratio(sum(int(i["step_ok"]) for i in items), n),
        **status_counts(items, "unparsable", "model_error", "image_error"),
        "mean_model_s": mean_model_s(items),
        "by_type": dict(sorted(by_type.items())),
        "items": items,
    }


def format_steps(report: Mapping[str, Any]) -> str:
    rows = [
        [t, str(v["total"]), percent(v["type_accuracy"]), percent(v["step_accuracy"])]
        for t, v in report["by_type"].items()
    ]
    overall = [percent(report["type_accuracy"]), percent(report["step_accuracy"])]
    rows.append(["overall", str(report["total"]), *overall])
    first = f"unparsable answers: {report['unparsable']}"
    table = render_table(["action", "n", "type acc", "step acc"], rows)
    return table + "\n" + footer(report, first) + published_suffix(report)
