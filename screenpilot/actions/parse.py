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


# Opening/closing delimiters seen in the wild; the 72B model sometimes emits emoji in place of the tags.
_DELIMITER = re.compile(r"</?tool_call>|⚗|📐")
_THINKING = re.compile(r"<(thinking|think)>.*?</\1>", re.S)
_FENCE = re.compile(r"```[a-zA-Z]*")


def extract_tool_calls(text: str) -> list[ToolCall]:
    """Return every call found in ``text``, in order. Raises :class:`ToolCallParseError` when there is none."""
    if not text or not text.strip():
        raise ToolCallParseError("The answer was empty. Reply with a <tool_call> block.")
    body = _THINKING.sub(" ", text)
    regions = _tagged_regions(body)
    if regions is None:
        regions = [body]
    calls: list[ToolCall] = []
    broken: list[str] = []
    for region in regions:
        found, errors = _objects_in(region)
        calls.extend(found)
        broken.extend(errors)
    if calls:
        return calls
    if broken:
        raise ToolCallParseError(
            f"The <tool_call> block is not valid JSON ({broken[0]}). Write exactly one JSON object "
            '{"name": <function-name>, "arguments": <args-json-object>} inside <tool_call></tool_call>.'
        )
    raise ToolCallParseError(
        "No function call found. Reply with <tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>.'
    )


def _tagged_regions(text: str) -> list[str] | None:
    """The segments after the first delimiter, split at every delimiter; None when there is no delimiter.

    Text before the first delimiter is the model's reasoning and is ignored. Segments between two calls are
    scanned too: only objects shaped like calls are taken from them, and it keeps emoji delimiters (where
    one glyph both opens and closes) simple.
    """
    parts = _DELIMITER.split(text)
    if len(parts) == 1:
        return None
    return parts[1:]


def _objects_in(region: str) -> tuple[list[ToolCall], list[str]]:
    """Decode the JSON objects of a region that look like calls; report the ones that fail to decode."""
    region = _FENCE.sub(" ", region)
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    errors: list[str] = []
    i = 0
    while True:
        i = region.find("{", i)
        if i < 0:
            break
        try:
            obj, end = decoder.raw_decode(region, i)
        except json.JSONDecodeError as exc:
            obj, end = _lenient(region, i)
            if obj is None:
                errors.append(exc.msg)
                i += 1
                continue
        call = _as_call(obj)
        if call is not None:
            calls.append(call)
            i = end
        else:
            i += 1
    return calls, errors


def _lenient(region: str, start: int) -> tuple[Any, int]:
    """Accept a Python-literal dict (single quotes, True/False) spanning a balanced brace run."""
    depth = 0
    for j in range(start, len(region)):
        ch = region[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                try:
                    return ast.literal_eval(region[start : j + 1]), j + 1
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
