"""The results journal of an offline evaluation: what is done, so the same command resumes."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from screenpilot.errors import SetupError
from screenpilot.jsonl import read_lines


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
