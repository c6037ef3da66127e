"""Tolerant, bounded extraction of function calls from raw model text.

Models wrap their calls in ``<tool_call>`` tags, but real outputs also carry reasoning before the call,
several calls, a missing opening or closing tag, emoji stand-ins for the tags, code fences or a bare JSON
line. This module finds the ``{"name": ..., "arguments": ...}`` objects in all of those; what the arguments
mean is the dialect's business.

Only clearly called objects count: one inside a tag block (or right before a closing tag), or one standing
on its own line. An object inside running prose ("I will not do {...} yet") or inside ``<thinking>`` /
``<conclusion>`` is the model talking about an action, and is never returned. The text is read in one pass
(work linear in its length, at most :data:`MAX_OUTPUT_CHARS` characters), and whatever the text, the only
exception raised is :class:`ToolCallParseError`.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from screenpilot.errors import ModelOutputError

#: Longest answer read, in characters (far beyond any generation limit in use); longer ones are refused.
MAX_OUTPUT_CHARS = 65_536
#: Most calls taken from one answer.
MAX_CALLS = 16
#: Longest text argument (``type``, ``answer``, ``open``, ``key``), in characters.
MAX_TEXT_CHARS = 4_096
#: Deepest nesting of objects and arrays inside one call.
MAX_NESTING = 16


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


_CALL_FORM = '{"name": <function-name>, "arguments": <args-json-object>}'


def extract_tool_calls(text: str) -> list[ToolCall]:
    """Return every clearly called call in ``text``, in order; raise :class:`ToolCallParseError` if none.

    Calls inside tag blocks win: when there are any, bare lines elsewhere are taken for quotes.
    """
    if not text or not text.strip():
        raise ToolCallParseError("The answer was empty. Reply with a <tool_call> block.")
    if len(text) > MAX_OUTPUT_CHARS:
        raise ToolCallParseError(
            f"The answer is {len(text)} characters long; at most {MAX_OUTPUT_CHARS} characters are read. "
            "Reply with one short <tool_call> block."
        )
    scan = _Scanner(text)
    scan.run()
    found = _Findings(text, scan)
    calls = found.tagged or found.bare
    if len(calls) > MAX_CALLS:
        raise ToolCallParseError(f"The answer holds {len(calls)} calls; send at most {MAX_CALLS} at a time.")
    if not calls:
        raise ToolCallParseError(found.why_none())
    return calls


# -- one pass over the text ----------------------------------------------------------------------------------------
_TOKEN = re.compile(r"""[{}"'\\\n]|</?tool_call>|⚗|📐|</?think(?:ing)?>|</?conclusion>""")
_OPENERS = frozenset({"<tool_call>", "⚗", "📐"})
_EMOJI = frozenset({"⚗", "📐"})
_THINK = frozenset({"<think>", "<thinking>"})
_THINK_END = frozenset({"</think>", "</thinking>"})
_BLANK = " \t\r\f\v\n"
_VALUE_START = "{[,:"  # a quote after one of these opens a string; anywhere else it is prose (I'll, "so")


class _Open(NamedTuple):
    """Where an object starts: its offset, whether a tag block holds it, and where its line starts."""

    start: int
    block: bool
    line: int


class _Span(NamedTuple):
    """A balanced ``{...}`` that no other balanced one contains."""

    at: _Open
    end: int  # exclusive


class _Scanner:
    """Finds balanced top-level objects, tag blocks and asides in one left-to-right pass.

    Braces are matched with a stack, so unbalanced braces in prose cost nothing later. Strings are only
    recognised inside an open object (a quote after ``{ [ , :``) and end at the end of their line, so a
    stray apostrophe spoils at most one line. Any tag outside a string abandons objects still open.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.spans: list[_Span] = []
        self.unclosed: list[tuple[list[_Open], int]] = []  # objects left open at a tag or the end, and where
        self.stack: list[_Open] = []
        self.quote: str | None = None
        self.escaped_until = -1
        self.block = False
        self.aside: str | None = None  # "think" or "conclusion" while inside one
        self.line = 0

    def run(self) -> None:
        for match in _TOKEN.finditer(self.text):
            token, pos = match.group(), match.start()
            if self.aside is not None:
                self._aside(token, match.end())
            elif self.quote is not None:
                self._string(token, pos, match.end())
            else:
                self._structure(token, pos, match.end())
        self._abandon(len(self.text))

    def _aside(self, token: str, end: int) -> None:
        if self.aside == "conclusion":
            if token == "</conclusion>":
                self.aside, self.line = None, end
        elif token in _THINK_END:
            self.aside, self.line = None, end
        elif token in _OPENERS:  # reasoning left unclosed ends where the call starts
            self.aside = None
            self._tag(token, end)

    def _string(self, token: str, pos: int, end: int) -> None:
        if pos < self.escaped_until:
            return
        if token == "\\":
            self.escaped_until = end + 1
        elif token == self.quote:
            self.quote = None
        elif token == "\n":  # JSON and Python strings never span lines: this one was prose
            self.quote, self.line = None, end

    def _structure(self, token: str, pos: int, end: int) -> None:
        if token == "{":
            self.stack.append(_Open(pos, self.block, self.line))
        elif token == "}":
            self._close(end)
        elif token in "\"'":
            if self.stack and self._after_value_start(pos):
                self.quote = token
        elif token == "\n":
            self.line = end
        elif token != "\\":
            self._tag(token, end)

    def _close(self, end: int) -> None:
        if not self.stack:
            return
        opened = self.stack.pop()
        while self.spans and self.spans[-1].at.start > opened.start:
            self.spans.pop()
        self.spans.append(_Span(opened, end))

    def _after_value_start(self, pos: int) -> bool:
        j = pos - 1
        while j >= 0 and self.text[j] in _BLANK:
            j -= 1
        return j >= 0 and self.text[j] in _VALUE_START

    def _tag(self, token: str, end: int) -> None:
        self._abandon(end)
        self.line = end
        if token in _THINK:
            self.aside = "think"
        elif token == "<conclusion>":
            self.aside, self.block = "conclusion", False
        elif token in _EMOJI:
            self.block = not self.block
        elif token in _OPENERS:
            self.block = True
        elif token == "</tool_call>":
            self.block = False

    def _abandon(self, where: int) -> None:
        if self.stack:
            self.unclosed.append((self.stack, where))
            self.stack = []
        self.quote = None


# -- what the objects are -------------------------------------------------------------------------------------------
_CLOSER_AFTER = re.compile(r"[\s`]*</tool_call>")  # outside a block an emoji opens one, never closes
_LINE_AFTER = re.compile(r"[ \t\r\f\v`]*(?:\n|\Z|</?tool_call>|⚗|📐|</?think(?:ing)?>|<conclusion>)")
_LINE_BEFORE = re.compile(r"[ \t\r\f\v]*(?:```[\w-]*[ \t\r\f\v]*)?")


class _Unusable(Exception):
    """An object that cannot be a call; the message says why, for the model."""


class _Findings:
    """Sorts the scanned objects into calls in tag blocks, calls on their own lines, and reasons for none."""

    def __init__(self, text: str, scan: _Scanner) -> None:
        self.text, self.scan = text, scan
        self.tagged: list[ToolCall] = []
        self.bare: list[ToolCall] = []
        self.problems: list[str] = []  # why clearly called objects were unusable
        self.in_prose = False  # a call-shaped object stood in running text
        self._line_starts: dict[int, int] = {}
        self.broken = [(start, end) for group, end in scan.unclosed if (start := self._broken(group)) >= 0]
        self._sort_all(scan.spans)

    def _broken(self, group: list[_Open]) -> int:
        """Start of the first object of ``group`` (left open) that was clearly called, or -1."""
        for at in group:
            if at.block or self._own_line(at, None):
                return at.start
        return -1

    def _sort_all(self, spans: list[_Span]) -> None:
        """Sort every span but those inside a broken call: its inner arguments object is not a call."""
        broken = iter(self.broken)
        current = next(broken, None)
        for span in spans:
            while current is not None and current[1] <= span.at.start:
                current = next(broken, None)
            if current is None or not current[0] < span.at.start:
                self._sort(span)

    def _sort(self, span: _Span) -> None:
        tagged = span.at.block or _CLOSER_AFTER.match(self.text, span.end) is not None
        called = tagged or self._own_line(span.at, span.end)
        try:
            call = _as_call(_decode(self.text[span.at.start : span.end]))
        except _Unusable as exc:
            if called:
                self.problems.append(str(exc))
            return
        if call is None:
            return
        if not called:
            self.in_prose = True
        else:
            (self.tagged if tagged else self.bare).append(call)

    def _own_line(self, at: _Open, end: int | None) -> bool:
        if at.line not in self._line_starts:  # each line is measured once
            found = _LINE_BEFORE.match(self.text, at.line)
            self._line_starts[at.line] = found.end() if found else at.line
        if self._line_starts[at.line] != at.start:
            return False
        return end is None or _LINE_AFTER.match(self.text, end) is not None

    def why_none(self) -> str:
        if self.problems:
            return (
                f"The call is not usable: {self.problems[0]}. Write exactly one JSON object {_CALL_FORM} "
                "inside <tool_call></tool_call>."
            )
        if self.broken:
            start, end = self.broken[0]
            return (
                f"The <tool_call> block is not valid JSON ({_json_error(self.text[start:end])}). Write exactly "
                f"one JSON object {_CALL_FORM} inside <tool_call></tool_call>."
            )
        if self.in_prose:
            return (
                "A call written inside a sentence is not executed. Put the call alone inside <tool_call>\n"
                f"{_CALL_FORM}\n</tool_call>."
            )
        return f"No function call found. Reply with <tool_call>\n{_CALL_FORM}\n</tool_call>."


def _json_error(text: str) -> str:
    try:
        json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _reason(exc)
    return "unbalanced braces"


def _reason(exc: ValueError | RecursionError) -> str:
    """Why JSON decoding failed, in a few words."""
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(":")[0][:80]  # e.g. an integer beyond Python's digit limit


# -- decoding ---------------------------------------------------------------------------------------------------------
def _decode(source: str) -> Any:
    """JSON, or failing that a Python literal (single quotes, True/False/None), as plain JSON values."""
    try:
        return _plain(json.loads(source))
    except (ValueError, RecursionError) as exc:
        json_error = _reason(exc)
    try:
        value = ast.literal_eval(source)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _Unusable(f"not valid JSON ({json_error})") from None
    return _plain(value)


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON values (tuples become lists); refuses deep nesting and other Python types."""
    if depth > MAX_NESTING:
        raise _Unusable(f"nested more than {MAX_NESTING} levels deep")
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise _Unusable("object keys must be strings")
        return {key: _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, depth + 1) for item in value]
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise _Unusable(f"a {type(value).__name__} is not a JSON value")


def _as_call(obj: Any) -> ToolCall | None:
    """The call an object spells, None if it is no call at all; :class:`_Unusable` if it is a broken one.

    ``parameters`` is read as ``arguments`` (models trained on OpenAI-style schemas write it); the name is
    kept either way, for the dialect to check.
    """
    if not isinstance(obj, dict):
        return None
    if "name" in obj:
        if not isinstance(obj["name"], str):
            raise _Unusable('"name" must be a string')
        return ToolCall(obj["name"], _arguments(obj))
    if isinstance(obj.get("action"), str):
        return ToolCall(None, obj)
    return None


def _arguments(obj: dict[str, Any]) -> dict[str, Any]:
    if "arguments" in obj and "parameters" in obj:
        raise _Unusable('the call has both "arguments" and "parameters"; give "arguments" only')
    args = obj.get("arguments", obj.get("parameters"))
    if isinstance(args, str):  # OpenAI-style arguments string
        try:
            args = _plain(json.loads(args))
        except (ValueError, RecursionError):
            raise _Unusable('"arguments" is a string that is not a JSON object') from None
    if not isinstance(args, dict):
        raise _Unusable('"arguments" must be a JSON object')
    return args


# -- argument values ------------------------------------------------------------------------------------------------
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def show(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of a value for an error message."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_point(value: Any, field: str) -> tuple[float, float]:
    """Read a point given as ``[x, y]``, ``["x", "y"]``, ``"[x, y]"``, ``"x, y"`` or ``{"x":..,"y":..}``."""
    if isinstance(value, dict) and {"x", "y"} <= value.keys():
        value = [value["x"], value["y"]]
    if isinstance(value, str):
        value = _NUMBER.findall(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and not any(isinstance(v, bool) for v in value):
        try:
            x, y = _finite(value[0]), _finite(value[1])
        except (TypeError, ValueError, OverflowError):
            pass
        else:
            return x, y
    raise ToolCallParseError(f"`{field}` must be a pair of numbers [x, y], got {show(value)}.")


def parse_number(value: Any, field: str) -> float:
    """Read a finite number that may arrive as a string."""
    if not isinstance(value, bool):
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = value.strip()
        if isinstance(value, (int, float, str)):
            try:
                return _finite(value)
            except (ValueError, OverflowError):
                pass
    raise ToolCallParseError(f"`{field}` must be a number, got {show(value)}.")


def _finite(value: Any) -> float:
    if isinstance(value, str) and not _NUMBER.fullmatch(value.strip()):
        raise ValueError(value)
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(value)
    return number
