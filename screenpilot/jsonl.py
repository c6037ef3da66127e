"""Reading JSON Lines files (replay answers, evaluation data, run results) with errors that name the line.

Only ``"\\n"`` ends a line: ``str.splitlines()`` would also split inside values at U+2028, U+0085 and the like.
Lines are split as bytes and decoded one by one, so a byte that is not UTF-8 is reported with its line (and a
torn last line, cut inside a character, is never decoded when the caller drops it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from screenpilot.errors import SetupError

T = TypeVar("T")

#: At most this many problems are listed in one error; the rest are counted.
MAX_LISTED_PROBLEMS = 50


def problems_error(path: Path, problems: list[str]) -> SetupError:
    """One error for every problem found in ``path``: the problem itself when there is one, else a list."""
    if len(problems) == 1:
        return SetupError(problems[0])
    shown = problems[:MAX_LISTED_PROBLEMS]
    more = len(problems) - len(shown)
    tail = f"\n  ... and {more} more" if more else ""
    return SetupError(f"{len(problems)} problems in {path}:\n  " + "\n  ".join(shown) + tail)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SetupError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise SetupError(f"{path} is a folder, not a JSON Lines file") from None
    except OSError as exc:
        raise SetupError(f"cannot read {path}: {exc.strerror}") from exc


def _decode(raw: bytes, path: Path, number: int) -> str:
    """One line as text; the first line's byte order mark (some editors write one) is dropped."""
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        raise SetupError(
            f"{path}:{number}: not UTF-8 text (byte 0x{bad} at column {exc.start + 1})"
        ) from None


def read_lines(path: Path, *, drop_torn_tail: bool = False) -> list[tuple[int, str]]:
    """``(line number, text)`` for each line of ``path``, blank ones included; a SetupError names a line that is
    not UTF-8. ``drop_torn_tail`` ignores whatever follows the last newline (a line a dying writer tore)."""
    parts = _read_bytes(path).split(b"\n")  # 0x0A never occurs inside a multi-byte UTF-8 character
    if drop_torn_tail:
        parts.pop()
    return [(number, _decode(part, path, number)) for number, part in enumerate(parts, start=1)]


def _parse_object(line: str, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SetupError(f"{where}: not JSON ({exc.msg})") from None
    except RecursionError:
        raise SetupError(f"{where}: not JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise SetupError(f"{where}: expected a JSON object")
    return obj


def read_objects(path: Path, *, limit: int | None = None) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line (the first ``limit`` of them). Every line that is not
    UTF-8 text holding a JSON object is a problem; all of them are reported in one SetupError."""
    return read_prepared(path, lambda obj, where: obj, limit=limit)


def read_prepared(
    path: Path, prepare: Callable[[dict[str, Any], str], T], *, limit: int | None = None
) -> list[tuple[int, T]]:
    """Like :func:`read_objects`, with each object passed through ``prepare(object, "file:line")``, which raises
    a SetupError (its message starting with that ``file:line``) for a line it refuses. Every refused line is
    reported, with the lines that are not JSON, in one SetupError."""
    raw = _read_bytes(path)
    out: list[tuple[int, T]] = []
    problems: list[str] = []
    for number, part in enumerate(raw.split(b"\n"), start=1):
        if limit is not None and len(out) + len(problems) >= limit:
            break
        if not part.strip():
            continue
        where = f"{path}:{number}"
        try:
            out.append((number, prepare(_parse_object(_decode(part, path, number), where), where)))
        except SetupError as exc:
            problems.append(str(exc))
    if problems:
        raise problems_error(path, problems)
    return out
