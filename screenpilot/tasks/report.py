"""A self-contained HTML report of a run folder: summary, then every step's screen with its action drawn on.

Everything is inside the one file (thumbnails as data URLs, inline CSS), so it can be mailed or archived; only
the links from thumbnails to the full-size screenshots point into the run folder, relative to the page.
Model output is untrusted text: the template autoescapes everything. The folder is untrusted too: it is read
through :mod:`screenpilot.tasks.confined`, and ``--api-key`` values are redacted from what the page shows.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, assert_never

from PIL import Image, ImageDraw, ImageFont

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
    action_from_dict,
)
from screenpilot.agent.loop import StepRecord
from screenpilot.agent.record import RESULT, TRAJECTORY
from screenpilot.errors import MissingExtraError, SetupError
from screenpilot.tasks.confined import (
    BadLine,
    LoadedRun,
    inside,
    jsonl,
    load_episode,
    outside_note,
    read_json,
)
from screenpilot.tasks.fonts import FONT_HINT, Font, font_files, font_runs
from screenpilot.tasks.manifest import MANIFEST, REDACTED, redact_argv
from screenpilot.tasks.runner import RESULTS, SUMMARY, episode_dir
from screenpilot.tasks.summary import format_table, stored_interval, summarize

REPORT = "report.html"
_MARK = (230, 30, 60)
_MARK2 = (20, 110, 230)


def _ascent(font: Font) -> int:
    return font.getmetrics()[0] if isinstance(font, ImageFont.FreeTypeFont) else 0


def _label(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, scale: int, color: tuple[int, ...]
) -> None:
    """Draw ``text`` in a white box at ``xy``, each character in a font that has it (see :mod:`fonts`)."""
    text = "".join(c if c.isprintable() else " " for c in text)
    text = text if len(text) <= 60 else text[:57] + "..."
    runs = font_runs(text, max(14, 9 * scale))
    x, y = xy
    ascent = max((_ascent(font) for font, _ in runs), default=0)
    boxes, placed = [], []
    for font, part in runs:
        at = (x, y + ascent - _ascent(font))  # one baseline for every font
        boxes.append(draw.textbbox(at, part, font=font))
        placed.append((at, font, part))
        x += draw.textlength(part, font=font)
    if not boxes:
        return
    pad = scale
    left, top = min(b[0] for b in boxes) - pad, min(b[1] for b in boxes) - pad
    right, bottom = max(b[2] for b in boxes) + pad, max(b[3] for b in boxes) + pad
    draw.rectangle((left, top, right, bottom), fill=(255, 255, 255), outline=color)
    for at, font, part in placed:
        draw.text(at, part, fill=color, font=font)


def _arrow(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    end: tuple[float, float],
    width: int,
    color: tuple[int, ...],
) -> None:
    draw.line((start, end), fill=color, width=width)
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    head = width * 5
    for side in (-0.5, 0.5):
        tip = (end[0] - head * math.cos(angle + side), end[1] - head * math.sin(angle + side))
        draw.line((end, tip), fill=color, width=width)
    r = width * 2
    draw.ellipse((start[0] - r, start[1] - r, start[0] + r, start[1] + r), outline=color, width=width)


def _point(draw: ImageDraw.ImageDraw, x: float, y: float, width: int, color: tuple[int, ...]) -> None:
    r = width * 5
    draw.ellipse((x - r, y - r, x + r, y + r), outline=color, width=width)
    draw.line((x - 2 * r, y, x + 2 * r, y), fill=color, width=max(1, width // 2))
    draw.line((x, y - 2 * r, x, y + 2 * r), fill=color, width=max(1, width // 2))


def draw_action(image: Image.Image, action: Action) -> Image.Image:
    """A copy of ``image`` (device pixels) with ``action`` drawn on it: point marker, arrow or text label."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    scale = max(2, round(max(out.size) / 300))
    corner = (2 * scale, out.height - 14 * scale)
    match action:
        case Click() | LongPress() | MouseMove():
            if action.x is not None and action.y is not None:
                _point(draw, action.x, action.y, scale, _MARK)
                where = (min(action.x + 6 * scale, out.width * 0.6), max(action.y - 16 * scale, 0))
            else:
                where = corner
            name: str = action.action
            if isinstance(action, Click) and (action.button != "left" or action.count > 1):
                times = {1: "", 2: "double ", 3: "triple "}[action.count]
                name = f"{times}{action.button} click"
            _label(draw, where, name, scale, _MARK)
        case Swipe() | Drag():
            start = (action.x, action.y) if action.x is not None and action.y is not None else None
            end = (action.x2, action.y2)
            if start is not None:
                _arrow(draw, start, end, scale, _MARK)
            else:
                _point(draw, end[0], end[1], scale, _MARK)
            _label(draw, (min(end[0] + 6 * scale, out.width * 0.6), end[1]), action.action, scale, _MARK)
        case Scroll():
            cx = action.x if action.x is not None else out.width / 2
            cy = action.y if action.y is not None else out.height / 2
            # Positive pixels reveal content above (vertical) or to the left (horizontal): the view moves
            # that way, so the arrow points up or left.
            length = 40 * scale * (1 if action.pixels < 0 else -1)
            horizontal = action.axis == "horizontal"
            tip = (cx + length, cy) if horizontal else (cx, cy + length)
            _arrow(draw, (cx, cy), tip, scale, _MARK2)
            name = "hscroll" if horizontal else "scroll"
            _label(draw, (cx + 6 * scale, cy), f"{name} {action.pixels}", scale, _MARK2)
        case TypeText():
            _label(draw, corner, f"type: {action.text}", scale, _MARK2)
        case Key():
            _label(draw, corner, f"key: {'+'.join(action.keys)}", scale, _MARK2)
        case SystemButton():
            _label(draw, corner, f"button: {action.button}", scale, _MARK2)
        case OpenApp():
            _label(draw, corner, f"open: {action.app}", scale, _MARK2)
        case Wait():
            _label(draw, corner, f"wait {action.seconds:g}s", scale, _MARK2)
        case Answer():
            _label(draw, corner, f"answer: {action.text}", scale, _MARK2)
        case Terminate():
            _label(draw, corner, f"terminate: {action.status}", scale, _MARK2)
        case _:
            assert_never(action)
    return out


def thumbnail_url(image: Image.Image, longest: int) -> str:
    """A scaled-down JPEG as a data URL."""
    thumb = image.convert("RGB")
    thumb.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=80, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --api-key and the prefixes argparse accepts for it (--api-k, ...), then its value, as in a shell line.
# A bare value stops at a quote or comma, so a command line inside JSON text keeps its punctuation.
_SECRET = re.compile(r"""(--ap(?:i(?:-(?:k(?:e(?:y)?)?)?)?)?(?:=|\s+))('[^']*'|"[^"]*"|[^\s"',]+)""")


def redact(value: Any) -> Any:
    """``value`` with every value given to ``--api-key`` replaced by ``REDACTED`` (as the manifest records it),
    in strings (``--api-key=K``, ``--api-key K``) and in argument lists (``["--api-key", "K"]``), at any depth;
    abbreviations argparse accepts (``--api-k``) count too."""
    if isinstance(value, str):
        return _SECRET.sub(lambda m: m.group(1) + REDACTED, value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [redact(v) for v in value]
        return redact_argv(items) if all(isinstance(v, str) for v in items) else items
    return value


def _screen(run: LoadedRun, record: StepRecord, thumb: int, page_dir: Path) -> dict[str, Any]:
    """The step's thumbnail (its actions drawn on), a link to the full-size file, or a note why there is none."""
    if not record.screenshot:
        return {"image": None, "full": None, "note": None}
    path = inside(run.folder, record.screenshot)
    if path is None:
        return {"image": None, "full": None, "note": outside_note("screenshot", record.screenshot)}
    if not path.is_file():  # missing, or a folder or pipe that must not be opened
        return {"image": None, "full": None, "note": f"screenshot {record.screenshot} is missing"}
    try:
        with Image.open(path) as screen:
            drawn = screen.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return {"image": None, "full": None, "note": f"screenshot {record.screenshot} cannot be read: {exc}"}
    for action in record.actions:
        # An action that no longer validates is still listed as text below.
        with contextlib.suppress(ValueError):
            drawn = draw_action(drawn, action_from_dict(action.device))
    return {"image": thumbnail_url(drawn, thumb), "full": _link(path, page_dir), "note": None}


def _link(path: Path, page_dir: Path) -> str:
    """A relative URL from the page to ``path``: it works while the page stays where it was written."""
    relative = os.path.relpath(path, page_dir.resolve())
    return urllib.parse.quote(Path(relative).as_posix())


def _step_view(run: LoadedRun, record: StepRecord, thumb: int, page_dir: Path) -> dict[str, Any]:
    action_errors = {a.error for a in record.actions if a.error}
    return {
        "bad": None,
        "index": record.index,
        **_screen(run, record, thumb, page_dir),
        "screen": f"{record.screen[0]}x{record.screen[1]}",
        "model_screen": f"{record.model_screen[0]}x{record.model_screen[1]}",
        "outputs": record.outputs,
        "errors": [e for e in record.errors if e not in action_errors],  # each error once
        "summary": record.summary,
        "feedback": record.feedback,
        "failed": record.failed,
        "actions": [
            {
                "model": _json(a.model),
                "device": _json(a.device),
                "verdict": a.verdict,
                "executed": a.executed,
                "error": a.error,
            }
            for a in record.actions
        ],
        "timings": {k: f"{v:.3f}" for k, v in record.timings.model_dump().items()},
    }


def episode_view(
    run: LoadedRun, *, thumb: int, title: str, page_dir: Path, line: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Plain data for one episode's part of the template."""
    steps = [
        {"bad": str(step)} if isinstance(step, BadLine) else _step_view(run, step, thumb, page_dir)
        for step in run.steps
    ]
    result = run.result.model_dump(mode="json") if run.result is not None else None
    view = _empty_episode(title, line, run.notes)
    view.update(
        {
            "goal": run.meta.get("goal") or (result or {}).get("goal"),
            "result": result,
            "setup": [str(s) for s in run.meta.get("setup", []) or []],
            "steps": steps,
        }
    )
    if line is None:
        view["failed"] = result is None or result.get("status") != "success"
    return view


def _empty_episode(title: str, line: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    """An episode with nothing recorded (setup failed before recording, or its folder cannot be read)."""
    return {
        "title": title,
        "anchor": _anchor(title),
        "goal": None,
        "result": None,
        "line": line,
        "failed": line is None or not line["success"],
        "check": json.dumps(line.get("check"), indent=2, ensure_ascii=False)
        if line and line.get("check")
        else None,
        "setup": [],
        "notes": notes,
        "steps": [],
    }


def _anchor(title: str) -> str:
    """A readable HTML id for an episode, unique per title: titles that read the same once punctuation is
    replaced (tasks ``a.b`` and ``a-b``) differ in the hash of the exact title."""
    readable = "".join(c if c.isascii() and c.isalnum() else "-" for c in title)
    digest = hashlib.sha256(title.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"ep-{readable}-{digest}"


def _template() -> Any:
    try:
        import jinja2
    except ImportError as exc:
        raise MissingExtraError("bench", "jinja2", "HTML reports") from exc
    source = (
        resources.files("screenpilot.tasks").joinpath("templates/report.html").read_text(encoding="utf-8")
    )
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    return env.from_string(source)


def _kind(folder: Path) -> str:
    """``bench`` or ``run``; a folder that is neither is a setup error."""
    if (folder / RESULTS).exists() or (folder / MANIFEST).exists():
        return "bench"
    if (folder / TRAJECTORY).exists():
        return "run"
    raise SetupError(f"{folder} is neither a bench folder ({RESULTS}) nor a run folder ({TRAJECTORY})")


def render_report(folder: str | Path, *, thumb: int = 480, page_dir: str | Path | None = None) -> str:
    """The report page for a bench folder (``results.jsonl``) or a single run folder (``trajectory.jsonl``).

    ``page_dir`` is where the page will be written (default ``folder``): thumbnails link to the full-size
    screenshots relative to it."""
    folder = Path(folder)
    where = Path(page_dir) if page_dir is not None else folder
    if _kind(folder) == "run":
        return _render(_run_context(folder, thumb, where))
    try:
        return _render(_bench_context(folder, thumb, where))
    except _summary_errors():  # summary.json edited by hand or cut short: its numbers cannot be shown
        return _render(_bench_context(folder, thumb, where, stored_summary=False))


def _render(context: dict[str, Any]) -> str:
    context["font_note"] = None if font_files() else FONT_HINT
    return str(_template().render(**redact(context)))


def _summary_errors() -> tuple[type[Exception], ...]:
    """What a summary of the right shape but with wrong or missing fields raises while the page is built."""
    import jinja2

    return (TypeError, ValueError, KeyError, AttributeError, jinja2.UndefinedError)


def _run_context(folder: Path, thumb: int, page_dir: Path) -> dict[str, Any]:
    run = load_episode(folder)
    return {
        "title": f"screenpilot run: {run.meta.get('goal', folder.name)}",
        "kind": "run",
        "manifest": _json_pretty(redact(run.meta)),
        "summary": None,
        "success_ci": None,
        "table": None,
        "progress": None,
        "notes": [],
        "anchors": {},
        "episodes": [episode_view(run, thumb=thumb, title=folder.name, page_dir=page_dir)],
    }


def _json_pretty(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


_RESULT_FIELDS: dict[str, tuple[type, ...]] = {
    "task": (str,),
    "trial": (int,),
    "success": (bool,),
    "steps": (int,),
}


def _result_line(item: tuple[int, Any] | BadLine) -> dict[str, Any] | BadLine:
    """A result line with the fields the report needs, or why it is not one."""
    if isinstance(item, BadLine):
        return item
    number, data = item
    raw = _json(data).encode("utf-8", "backslashreplace")
    if not isinstance(data, dict):
        return BadLine(RESULTS, number, "not a result line", raw.decode())
    for name, types in _RESULT_FIELDS.items():
        value = data.get(name)
        if not isinstance(value, types) or (types != (bool,) and isinstance(value, bool)):
            return BadLine(RESULTS, number, f"not a result line (field {name!r})", raw.decode())
    duration, phases = data.get("duration_s"), data.get("phases")
    if duration is not None and not _number(duration):
        return BadLine(RESULTS, number, "not a result line (field 'duration_s')", raw.decode())
    if phases is not None and not (isinstance(phases, dict) and all(map(_number, phases.values()))):
        return BadLine(RESULTS, number, "not a result line (field 'phases')", raw.decode())
    return {**data, "duration_s": float(duration or 0.0)}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _result_lines(folder: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The latest usable line of each task and trial; every unusable line becomes a note."""
    path = inside(folder, RESULTS)
    if path is None:
        notes.append(outside_note("file", RESULTS))
        return []
    if not path.is_file():
        return []
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for item in jsonl(path, RESULTS):
        line = _result_line(item)
        if isinstance(line, BadLine):
            notes.append(str(line))
        else:
            latest[(line["task"], line["trial"])] = line
    return list(latest.values())


def _bench_episode(folder: Path, line: dict[str, Any], thumb: int, page_dir: Path) -> dict[str, Any]:
    title = f"{line['task']} / trial {line['trial']}"
    if not line.get("folder"):  # the episode never started (e.g. setup failed before recording)
        return _empty_episode(title, line, [])
    sub = inside(folder, line["folder"])
    if sub is None:
        return _empty_episode(title, line, [outside_note("episode folder", line["folder"])])
    if not (sub / TRAJECTORY).exists():
        return _empty_episode(title, line, [])
    return episode_view(load_episode(sub), thumb=thumb, title=title, line=line, page_dir=page_dir)


def _summary(
    folder: Path,
    lines: list[dict[str, Any]],
    order: list[str],
    notes: list[str],
    *,
    stored_summary: bool = True,
) -> dict[str, Any]:
    """``summary.json`` when it has the expected shape (and ``stored_summary``), else one computed from the
    result lines."""
    stored = read_json(folder, SUMMARY, notes)
    if not stored_summary:
        notes.append(f"{SUMMARY}: not in the expected form; the tables are computed from {RESULTS}")
    elif (
        isinstance(stored, dict)
        and isinstance(stored.get("overall"), dict)
        and isinstance(stored.get("tasks"), list)
    ):
        return stored
    return summarize(lines, order)


def _stopped_details(fields: dict[str, Any]) -> str:
    """What the summary says about why and how a run stopped short, after a colon; empty if nothing."""
    interrupted, not_started, stopped = (
        fields.get("interrupted"),
        fields.get("not_started"),
        fields.get("stopped"),
    )
    details = []
    if isinstance(interrupted, list) and interrupted:
        details.append(f"{len(interrupted)} interrupted")
    elif isinstance(interrupted, str) and interrupted:
        details.append(interrupted)
    elif interrupted is True:
        details.append("interrupted")
    if isinstance(not_started, int) and not_started > 0:
        details.append(f"{not_started} not started")
    if isinstance(stopped, str) and stopped:
        details.append(f"stopped: {stopped}")
    return ": " + ", ".join(details) if details else ""


def progress(summary: dict[str, Any]) -> dict[str, Any] | None:
    """How much of the planned run finished, from the summary's ``planned``, ``finished``, ``complete``,
    ``interrupted``, ``not_started`` and ``stopped`` (at its top or in ``overall``), or None when it says
    nothing about it (summaries written before these fields existed)."""
    overall = summary.get("overall")
    fields = {**(overall if isinstance(overall, dict) else {}), **summary}
    planned, finished = fields.get("planned"), fields.get("finished")
    incomplete = fields.get("complete") is False or bool(fields.get("interrupted"))
    parts = []
    if isinstance(planned, int) and isinstance(finished, int):
        parts.append(f"{finished} of {planned} planned episodes finished")
        incomplete = incomplete or finished < planned
    if incomplete:
        parts.append("run incomplete" + _stopped_details(fields))
    if not parts:
        return None
    return {"text": " \N{EM DASH} ".join(parts), "incomplete": incomplete}


def _interrupted(summary: dict[str, Any]) -> list[tuple[str, int]]:
    """The episodes the summary lists as stopped while running (``interrupted``: task and trial of each)."""
    entries = summary.get("interrupted")
    if not isinstance(entries, list):
        return []
    return [
        (e["task"], e["trial"])
        for e in entries
        if isinstance(e, dict) and isinstance(e.get("task"), str) and type(e.get("trial")) is int
    ]


def _interrupted_episode(folder: Path, task: str, trial: int, thumb: int, page_dir: Path) -> dict[str, Any]:
    """An episode stopped while running: no result line, but its folder holds the steps it took."""
    title = f"{task} / trial {trial} (interrupted)"
    relative = episode_dir(Path(), task, trial).as_posix()
    sub = inside(folder, relative)
    if sub is None:
        return _empty_episode(title, None, [outside_note("episode folder", relative)])
    if not (sub / TRAJECTORY).is_file():
        return _empty_episode(title, None, ["stopped before its first step was recorded"])
    return episode_view(load_episode(sub), thumb=thumb, title=title, page_dir=page_dir)


def _bench_context(
    folder: Path, thumb: int, page_dir: Path, *, stored_summary: bool = True
) -> dict[str, Any]:
    notes: list[str] = []
    stored = read_json(folder, MANIFEST, notes)
    manifest: dict[str, Any] = stored if isinstance(stored, dict) else {}
    suite: dict[str, Any] = manifest["suite"] if isinstance(manifest.get("suite"), dict) else {}
    order = [str(t) for t in suite.get("tasks", []) or []]
    lines = _result_lines(folder, notes)
    summary = _summary(folder, lines, order, notes, stored_summary=stored_summary)
    rank = {t: i for i, t in enumerate(order)}
    lines.sort(key=lambda r: (rank.get(r["task"], len(rank)), r["task"], r["trial"]))
    episodes = [_bench_episode(folder, line, thumb, page_dir) for line in lines]
    anchors: dict[str, str] = {}
    for ep in episodes:
        anchors.setdefault(ep["line"]["task"], ep["anchor"])
    finished = {(line["task"], line["trial"]) for line in lines}
    episodes += [
        _interrupted_episode(folder, task, trial, thumb, page_dir)
        for task, trial in _interrupted(summary)
        if (task, trial) not in finished
    ]
    return {
        "title": f"screenpilot bench: {suite.get('name', folder.name)}",
        "kind": "bench",
        "manifest": _json_pretty(redact(manifest)),
        "summary": summary,
        "success_ci": _success_ci(summary),
        "table": format_table(summary) if summary.get("tasks") else None,
        "progress": progress(summary),
        "notes": notes,
        "anchors": anchors,
        "episodes": episodes,
    }


def _success_ci(summary: Mapping[str, Any]) -> str | None:
    """The overall success rate's 95 % interval as text, or None when the summary has no usable one."""
    ci = stored_interval(summary["overall"].get("success_ci95"))
    return None if ci is None else f"{100 * ci[0]:.1f}% to {100 * ci[1]:.1f}%"


def _check_output(path: Path) -> None:
    """Refuse, before any work, an output that cannot be written: a folder, or a file in no folder."""
    if path.is_dir():
        raise SetupError(f"cannot write the report to {path}: it is a directory (give a file name)")
    if not path.parent.is_dir():
        raise SetupError(f"cannot write the report to {path}: no directory {path.parent}")


def write_report(folder: str | Path, *, output: str | Path | None = None, thumb: int = 480) -> Path:
    """Render and write the report (default ``FOLDER/report.html``); returns its path. A path that cannot be
    written is a :class:`SetupError`, and no partial file is left."""
    folder = Path(folder)
    _kind(folder)
    path = Path(output) if output is not None else folder / REPORT
    _check_output(path)
    html = render_report(folder, thumb=thumb, page_dir=path.parent)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(html.encode("utf-8", "replace"))
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise SetupError(f"cannot write the report to {path}: {exc.strerror or exc}") from exc
    return path


__all__ = [
    "REDACTED",
    "REPORT",
    "RESULT",
    "draw_action",
    "progress",
    "redact",
    "render_report",
    "thumbnail_url",
    "write_report",
]
