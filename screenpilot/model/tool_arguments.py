"""Reading and writing the arguments of JSON tool calls (``{"name": ..., "arguments": {...}}``), shared by the
dialects whose models answer that way (Qwen2.5-VL's and Qwen3-VL's ``mobile_use``/``computer_use``).

The dialects differ in their tools and coordinate frames; what is the same is here, once: argument checks with
messages the model can act on, the action forms every such tool shares, and the ``<tool_call>`` block.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from screenpilot.actions.coords import CoordinateSpace
from screenpilot.actions.parse import MAX_TEXT_CHARS, ToolCallParseError, parse_number, parse_point
from screenpilot.actions.types import Action, Answer, Terminate, TypeText, Wait

Pixel = Callable[[float, float], tuple[int, int]]


def first_line(exc: Exception) -> str:
    """A validation error's first lines, joined into one."""
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text[:3])


def text_argument(args: dict[str, Any], kind: str, field: str = "text") -> str:
    """A string argument, bounded in length."""
    value = args.get(field)
    if not isinstance(value, str):
        raise ToolCallParseError(f"action={kind} requires `{field}` as a string.")
    if len(value) > MAX_TEXT_CHARS:
        raise ToolCallParseError(
            f"`{field}` of action={kind} is {len(value)} characters long; at most {MAX_TEXT_CHARS} are allowed."
        )
    return value


def seconds_argument(args: dict[str, Any], default: float) -> float:
    """``time`` (or ``duration``) in seconds, ``default`` when absent."""
    value = args.get("time", args.get("duration"))
    return default if value is None else parse_number(value, "time")


def status_argument(args: dict[str, Any]) -> Literal["success", "failure"]:
    """``terminate``'s status."""
    status = str(args.get("status", "")).lower()
    if status not in ("success", "failure"):
        raise ToolCallParseError('action=terminate requires `status`: "success" or "failure".')
    return "success" if status == "success" else "failure"


class PointReader:
    """Reads points of one call in the model's frame, range-checked, and gives them as ``pixel`` maps them.
    ``frame`` says, for a point outside it, what the model should write instead."""

    def __init__(
        self, args: dict[str, Any], kind: str, space: CoordinateSpace, pixel: Pixel, *, frame: str
    ) -> None:
        self.args, self.kind, self.space, self.pixel, self.frame = args, kind, space, pixel, frame

    def __call__(self, field: str, *, required: bool = True) -> tuple[int, int] | None:
        value = self.args.get(field)
        if value is None:
            if required:
                raise ToolCallParseError(f"action={self.kind} requires `{field}` as [x, y].")
            return None
        x, y = parse_point(value, field)
        if not self.space.contains_model_point(x, y):
            raise ToolCallParseError(f"`{field}` [{x:g}, {y:g}] is outside the screen; {self.frame}")
        return self.pixel(x, y)

    def need(self, field: str) -> tuple[int, int]:
        """A point that must be there."""
        at = self(field)
        assert at is not None
        return at


def common_arguments(action: Action) -> dict[str, Any] | None:
    """The arguments of the action forms every such tool writes alike (type, wait, answer, terminate)."""
    match action:
        case TypeText(text=text):
            return {"action": "type", "text": text}
        case Wait(seconds=seconds):
            return {"action": "wait", "time": seconds}
        case Answer(text=text):
            return {"action": "answer", "text": text}
        case Terminate(status=status):
            return {"action": "terminate", "status": status}
    return None


def tool_call_block(tool: str, arguments: dict[str, Any]) -> str:
    """One call as the model writes it: a JSON object between ``<tool_call>`` tags."""
    call = json.dumps({"name": tool, "arguments": arguments}, ensure_ascii=False)
    return f"<tool_call>\n{call}\n</tool_call>"
