"""Tolerant extraction of function calls from raw model text.

Models wrap their calls in ``<tool_call>`` tags, but real outputs also carry reasoning before the call,
several calls, a missing closing tag, emoji stand-ins for the tags, code fences or a bare JSON line. This
module finds the ``{"name": ..., "arguments": ...}`` objects in all of those; what the arguments mean is the
dialect's business.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from screenpilot.errors import ModelOutputError


class ToolCallParseError(ModelOutputError):
    """No usable function call in the model's answer. The message is meant to be shown to the model."""


@dataclass(frozen=True)
class ToolCall:
    """One call as the model wrote it. ``name`` is None for a bare arguments object (``{"action": ...}``)."""

    name: str | None
    arguments: dict[str, Any]

    def as_json(self) -> str:
        """The call in the form the cookbook history uses (``json.dumps`` defaults)."""
        return json.dumps({"name": self.name, "arguments": self.arguments})


# Delimiters seen in the wild: the tags, and emoji in their place (72B). Only openers mark where calls start.
_OPEN = re.compile(r"<tool_call>|⚗|📐")
_DELIMITER = re.compile(r"</?tool_call>|⚗|📐")
# Reasoning before the call (up to its closing tag, or the call if unclosed) and the summary after it (possibly
# cut off): never actions, whatever they quote.
_ASIDES = re.compile(
    r"<(thinking|think)>.*?(?:</\1>|(?=<tool_call>|⚗|📐))|<conclusion>.*?(?:</conclusion>|$)", re.S
)


def extract_tool_calls(text: str) -> list[ToolCall]:
    """Return every call found in ``text``, in order. Raises :class:`ToolCallParseError` when there is none.

    JSON objects are decoded wherever they start, so tags inside string arguments, code fences, a missing
    opening or closing tag and bare lines all work; when calls follow an opening delimiter, objects before it
    (the model quoting something while it reasons) are ignored.
    """
    if not text or not text.strip():
        raise ToolCallParseError("The answer was empty. Reply with a <tool_call> block.")
    body = _ASIDES.sub(" ", text)
    found, broken = _objects_in(body)
    opener = _OPEN.search(body)
    if opener is not None and any(start >= opener.start() for start, _ in found):
        found = [(start, call) for start, call in found if start >= opener.start()]
    if found:
        return [call for _, call in found]
    if broken and (_DELIMITER.search(body) or '"name"' in body):
        raise ToolCallParseError(
            f"The <tool_call> block is not valid JSON ({broken[0]}). Write exactly one JSON object "
            '{"name": <function-name>, "arguments": <args-json-object>} inside <tool_call></tool_call>.'
        )
    raise ToolCallParseError(
        "No function call found. Reply with <tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>.'
    )


def _objects_in(body: str) -> tuple[list[tuple[int, ToolCall]], list[str]]:
    """Call-shaped JSON objects of ``body`` with their offsets, and why the ones that failed to decode did."""
    decoder = json.JSONDecoder()
    calls: list[tuple[int, ToolCall]] = []
    errors: list[str] = []
    i = 0
    while True:
        i = body.find("{", i)
        if i < 0:
            break
        try:
            obj, end = decoder.raw_decode(body, i)
        except json.JSONDecodeError as exc:
            obj, end = _lenient(body, i)
            if obj is None:
                errors.append(exc.msg)
                i += 1
                continue
        call = _as_call(obj)
        if call is not None:
            calls.append((i, call))
            i = end
        else:
            i += 1
    return calls, errors


def _lenient(body: str, start: int) -> tuple[Any, int]:
    """Accept a Python-literal dict (single quotes, True/False) spanning a balanced brace run.

    Braces inside quoted strings do not count.
    """
    depth = 0
    quote: str | None = None
    escaped = False
    for j in range(start, len(body)):
        ch = body[j]
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                try:
                    return ast.literal_eval(body[start : j + 1]), j + 1
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    return None, start
    return None, start


def _as_call(obj: Any) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    if "name" in obj and "arguments" in obj:
        args = obj["arguments"]
        if isinstance(args, str):  # OpenAI-style arguments string
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return None
        if isinstance(args, dict) and isinstance(obj["name"], str):
            return ToolCall(obj["name"], args)
        return None
    if "action" in obj and isinstance(obj["action"], str):
        return ToolCall(None, dict(obj))
    return None


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_point(value: Any, field: str) -> tuple[float, float]:
    """Read a point given as ``[x, y]``, ``["x", "y"]``, ``"[x, y]"``, ``"x, y"`` or ``{"x":..,"y":..}``."""
    if isinstance(value, dict) and {"x", "y"} <= value.keys():
        value = [value["x"], value["y"]]
    if isinstance(value, str):
        value = _NUMBER.findall(value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        try:
            x, y = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            pass
        else:
            if x == x and y == y and abs(x) != float("inf") and abs(y) != float("inf"):
                return x, y
    raise ToolCallParseError(f"`{field}` must be a pair of numbers [x, y], got {json.dumps(value)}.")


def parse_number(value: Any, field: str) -> float:
    """Read a number that may arrive as a string."""
    if isinstance(value, bool):
        raise ToolCallParseError(f"`{field}` must be a number, got {json.dumps(value)}.")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = _NUMBER.fullmatch(value.strip())
        if m:
            return float(value)
    raise ToolCallParseError(f"`{field}` must be a number, got {json.dumps(value)}.")
