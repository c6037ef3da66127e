"""A self-contained HTML report of a run folder: summary, then every step's screen with its action drawn on.

Everything is inside the one file (thumbnails as data URLs, inline CSS), so it can be mailed or archived.
Model output is untrusted text: the template autoescapes everything.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import math
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
from screenpilot.agent.record import RESULT, TRAJECTORY, RecordedRun, load_run
from screenpilot.errors import MissingExtraError, SetupError
from screenpilot.tasks.manifest import MANIFEST
from screenpilot.tasks.runner import RESULTS, SUMMARY, read_results
from screenpilot.tasks.summary import format_table, summarize

REPORT = "report.html"
_MARK = (230, 30, 60)
_MARK2 = (20, 110, 230)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _label(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, scale: int, color: tuple[int, ...]
) -> None:
    font = _font(max(14, 9 * scale))
    text = text if len(text) <= 60 else text[:57] + "..."
    x, y = xy
    box = draw.textbbox((x, y), text, font=font)
    pad = scale
    draw.rectangle(
        (box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), fill=(255, 255, 255), outline=color
    )
    draw.text((x, y), text, fill=color, font=font)


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
            if isinstance(action, Click) and (action.button != "left" or action.count == 2):
                name = f"{'double ' if action.count == 2 else ''}{action.button} click"
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
            length = 40 * scale * (1 if action.pixels < 0 else -1)
            _arrow(draw, (cx, cy), (cx, cy + length), scale, _MARK2)
            _label(draw, (cx + 6 * scale, cy), f"scroll {action.pixels}", scale, _MARK2)
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


def episode_view(
    run: RecordedRun, *, thumb: int, title: str, line: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Plain data for one episode's part of the template."""
    steps = []
    for record in run.steps:
        image_url = None
        if record.screenshot and (run.folder / record.screenshot).exists():
            with Image.open(run.folder / record.screenshot) as screen:
                drawn = screen.convert("RGB")
                for action in record.actions:
                    # An action that no longer validates is still listed as text below.
                    with contextlib.suppress(ValueError):
                        drawn = draw_action(drawn, action_from_dict(action.device))
                image_url = thumbnail_url(drawn, thumb)
        steps.append(
            {
                "index": record.index,
                "image": image_url,
                "screen": f"{record.screen[0]}x{record.screen[1]}",
                "model_screen": f"{record.model_screen[0]}x{record.model_screen[1]}",
                "outputs": record.outputs,
                "errors": record.errors,
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
        )
    result = run.result.model_dump(mode="json") if run.result is not None else None
    return {
        "title": title,
        "anchor": _anchor(title),
        "goal": run.meta.get("goal") or (result or {}).get("goal"),
        "result": result,
        "line": line,
        "check": json.dumps(line.get("check"), indent=2, ensure_ascii=False)
        if line and line.get("check")
        else None,
        "setup": [str(s) for s in run.meta.get("setup", [])],
        "steps": steps,
    }


def _anchor(title: str) -> str:
    """A readable HTML id for an episode, unique per title: titles that read the same once punctuation is
    replaced (tasks ``a.b`` and ``a-b``) differ in the hash of the exact title."""
    readable = "".join(c if c.isascii() and c.isalnum() else "-" for c in title)
    return f"ep-{readable}-{hashlib.sha256(title.encode('utf-8')).hexdigest()[:10]}"


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


def render_report(folder: str | Path, *, thumb: int = 480) -> str:
    """The report page for a bench folder (``results.jsonl``) or a single run folder (``trajectory.jsonl``)."""
    folder = Path(folder)
    if (folder / RESULTS).exists() or (folder / MANIFEST).exists():
        context = _bench_context(folder, thumb)
    elif (folder / TRAJECTORY).exists():
        run = load_run(folder)
        context = {
            "title": f"screenpilot run: {run.meta.get('goal', folder.name)}",
            "kind": "run",
            "manifest": _json_pretty(run.meta),
            "summary": None,
            "table": None,
            "anchors": {},
            "episodes": [episode_view(run, thumb=thumb, title=folder.name)],
        }
    else:
        raise SetupError(f"{folder} is neither a bench folder ({RESULTS}) nor a run folder ({TRAJECTORY})")
    return str(_template().render(**context))


def _json_pretty(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def _bench_context(folder: Path, thumb: int) -> dict[str, Any]:
    manifest: dict[str, Any] = {}
    if (folder / MANIFEST).exists():
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    lines = read_results(folder)
    order = list(manifest.get("suite", {}).get("tasks", []))
    summary = (
        json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
        if (folder / SUMMARY).exists()
        else summarize(lines, order)
    )
    rank = {t: i for i, t in enumerate(order)}
    lines.sort(key=lambda r: (rank.get(r["task"], len(rank)), r["task"], int(r["trial"])))
    episodes = []
    for line in lines:
        title = f"{line['task']} / trial {line['trial']}"
        sub = folder / line["folder"] if line.get("folder") else None
        if sub is not None and (sub / TRAJECTORY).exists():
            episodes.append(episode_view(load_run(sub), thumb=thumb, title=title, line=line))
        else:  # the episode never started (e.g. setup failed before recording)
            episodes.append(
                {
                    "title": title,
                    "anchor": _anchor(title),
                    "goal": None,
                    "result": None,
                    "line": line,
                    "check": None,
                    "setup": [],
                    "steps": [],
                }
            )
    name = manifest.get("suite", {}).get("name", folder.name)
    anchors: dict[str, str] = {}
    for ep in episodes:
        anchors.setdefault(ep["line"]["task"], ep["anchor"])
    return {
        "title": f"screenpilot bench: {name}",
        "kind": "bench",
        "manifest": _json_pretty(manifest),
        "summary": summary,
        "table": format_table(summary) if summary.get("tasks") else None,
        "anchors": anchors,
        "episodes": episodes,
    }


def write_report(folder: str | Path, *, output: str | Path | None = None, thumb: int = 480) -> Path:
    """Render and write the report (default ``FOLDER/report.html``); returns its path."""
    folder = Path(folder)
    html = render_report(folder, thumb=thumb)
    path = Path(output) if output is not None else folder / REPORT
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


__all__ = ["REPORT", "RESULT", "draw_action", "render_report", "thumbnail_url", "write_report"]
