"""Reading a run folder for the report without trusting it: no path leads out of the folder, no byte crashes.

A run folder may come from elsewhere (a colleague's archive, a crafted ``results.jsonl``), and the report is a page
meant to be shared. So every path a file names (an episode ``folder``, a step's ``screenshot``) is resolved,
symlinks included, and used only when it stays inside the folder; a line that is not UTF-8, not JSON or not a
record of the expected shape becomes a :class:`BadLine` that the report shows, instead of an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from screenpilot.agent.loop import EpisodeResult, StepRecord
from screenpilot.agent.record import META, RESULT, TRAJECTORY

_SHOWN = 300  # characters of a bad line shown in the report


@dataclass(frozen=True)
class BadLine:
    """A line of a JSON Lines file that could not be used, kept so the report can show it as such."""

    file: str
    number: int
    problem: str
    text: str

    def __str__(self) -> str:
        return f"{self.file} line {self.number}: {self.problem}: {self.text}"


@dataclass
class LoadedRun:
    """One episode's run folder as far as it could be read; ``notes`` say what could not."""

    folder: Path
    meta: dict[str, Any]
    steps: list[StepRecord | BadLine]
    result: EpisodeResult | None
    notes: list[str] = field(default_factory=list)


def inside(root: Path, relative: object) -> Path | None:
    """``root / relative`` with symlinks resolved, or None when that leaves ``root`` (an absolute path, ``..``,
    a link pointing elsewhere) or is no usable path at all."""
    if not isinstance(relative, str) or not relative:
        return None
    try:
        base = root.resolve()
        target = (base / relative).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        return None
    return target if target.is_relative_to(base) else None


def outside_note(what: str, relative: object) -> str:
    """The note shown in place of a path that leads out of the run folder."""
    return f"{what} {relative!r} lies outside the run folder: not read"


def _shown(raw: bytes) -> str:
    text = raw.decode("utf-8", "backslashreplace")
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def jsonl(path: Path, name: str) -> list[tuple[int, Any] | BadLine]:
    """The lines of a JSON Lines file, each parsed or a :class:`BadLine`. Only ``\\n`` ends a line; what follows
    the last one is a line torn by a process that died while writing, shown as such when not empty."""
    chunks = path.read_bytes().split(b"\n")
    torn = chunks.pop()
    out: list[tuple[int, Any] | BadLine] = []
    for number, raw in enumerate(chunks, start=1):
        if not raw.strip():
            continue
        try:
            out.append((number, json.loads(raw.decode("utf-8"))))
        except UnicodeDecodeError:
            out.append(BadLine(name, number, "not UTF-8", _shown(raw)))
        except ValueError as exc:
            out.append(BadLine(name, number, f"not JSON ({exc})", _shown(raw)))
    if torn.strip():
        out.append(BadLine(name, len(chunks) + 1, "incomplete (no line end)", _shown(torn)))
    return out


def read_json(root: Path, name: str, notes: list[str]) -> Any:
    """The JSON file ``name`` of ``root``, or None when it is absent, outside the folder or unreadable (then a
    note says why)."""
    path = inside(root, name)
    if path is None:
        notes.append(outside_note("file", name))
        return None
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        notes.append(f"{name}: not UTF-8, not shown")
    except ValueError as exc:
        notes.append(f"{name}: not JSON ({exc}), not shown")
    except OSError as exc:
        notes.append(f"{name}: cannot be read ({exc.strerror or exc})")
    return None


def _step(item: tuple[int, Any] | BadLine) -> StepRecord | BadLine:
    if isinstance(item, BadLine):
        return item
    number, data = item
    try:
        return StepRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        problem = f"not a step record ({'.'.join(map(str, first['loc'])) or 'line'}: {first['msg']})"
        return BadLine(TRAJECTORY, number, problem, _shown(json.dumps(data, ensure_ascii=False).encode()))


def _result(folder: Path, notes: list[str]) -> EpisodeResult | None:
    data = read_json(folder, RESULT, notes)
    if data is None:
        return None
    try:
        return EpisodeResult.model_validate(data)
    except ValidationError as exc:
        notes.append(f"{RESULT}: not an episode result ({exc.error_count()} problems), not shown")
        return None


def load_episode(folder: Path) -> LoadedRun:
    """An episode's run folder: ``run.json``, every line of ``trajectory.jsonl`` and ``result.json``, each as far
    as it can be read, all from inside ``folder``."""
    notes: list[str] = []
    meta = read_json(folder, META, notes)
    steps: list[StepRecord | BadLine] = []
    trajectory = inside(folder, TRAJECTORY)
    if trajectory is None:
        notes.append(outside_note("file", TRAJECTORY))
    elif trajectory.is_file():
        try:
            steps = [_step(item) for item in jsonl(trajectory, TRAJECTORY)]
        except OSError as exc:
            notes.append(f"{TRAJECTORY}: cannot be read ({exc.strerror or exc})")
    return LoadedRun(folder, meta if isinstance(meta, dict) else {}, steps, _result(folder, notes), notes)


__all__ = ["BadLine", "LoadedRun", "inside", "jsonl", "load_episode", "outside_note", "read_json"]
