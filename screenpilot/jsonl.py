"""Reading JSON Lines input files (replay answers, evaluation data) with errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from screenpilot.errors import SetupError


def read_objects(path: Path, *, limit: int | None = None) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line; anything but a JSON object is a SetupError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SetupError(f"{path} does not exist") from None
    except OSError as exc:
        raise SetupError(f"cannot read {path}: {exc.strerror}") from exc
    out: list[tuple[int, dict[str, Any]]] = []
    # Only \n ends a line: str.splitlines() would also split inside values at U+2028, U+0085 and the like.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SetupError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise SetupError(f"{path}:{number}: expected a JSON object")
        out.append((number, obj))
        if limit is not None and len(out) >= limit:
            break
    return out
