"""Reading and writing JSON tool calls (``{"name": ..., "arguments": {...}}``), shared by the dialects whose
models answer that way (Qwen2.5-VL's and Qwen3-VL's ``mobile_use``/``computer_use``).

The dialects differ in their tools' texts, their action lists and their coordinate frames; what is the same is
here, once: the tools block of the prompt, argument checks with messages the model can act on, the reading of
each action (a family offering fewer actions refuses the others before they are read) and the writing of calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from screenpilot.actions.coords import CoordinateSpace
from screenpilot.actions.keys import KeyComboError, split_combo
from screenpilot.actions.parse import (
    MAX_TEXT_CHARS,
    ToolCall,
    ToolCallParseError,
    parse_number,
    parse_point,
    show,
)
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
)
from screenpilot.model.dialect import ParsedAction

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


# -- the tools block both families' prompts carry -----------------------------------------------------------

#: A point argument's description, the same in every such tool.
POINT_DESCRIPTION = "(x, y): The x (pixels from the left edge) and y (pixels from the top edge) coordinates to move the mouse to."
#: ``terminate``'s ``status`` parameter, the same in every such tool.
STATUS_PARAMETER: dict[str, Any] = {
    "description": "The status of the task. Required only by `action=terminate`.",
    "type": "string",
    "enum": ["success", "failure"],
}


def tool_line(tool: dict[str, Any]) -> str:
    """The tool as ``NousFnCallPrompt`` (and the chat templates) write it inside ``<tools>``."""
    return json.dumps({"type": "function", "function": tool}, ensure_ascii=False)


def tools_block(tools: Sequence[dict[str, Any]]) -> str:
    """``# Tools`` … ``</tool_call>``: the Hermes-style block, one tool line each (no trailing newline)."""
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        + "\n".join(tool_line(t) for t in tools)
        + "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def action_parameter(actions: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The ``action`` parameter of a tool offering ``actions`` (name, description), in that order."""
    return {
        "description": "The action to perform. The available actions are:\n"
        + "\n".join(f"* `{name}`: {text}" for name, text in actions),
        "enum": [name for name, _ in actions],
        "type": "string",
    }


# -- reading calls --------------------------------------------------------------------------------------------

Builder = Callable[[str, dict[str, Any], PointReader], Action]


def call_action(
    call: ToolCall,
    tool: str,
    allowed: frozenset[str],
    point: Callable[[dict[str, Any], str], PointReader],
    build: Builder,
) -> Action:
    """One call of ``tool`` as an action: its name and action checked against ``allowed``, its points read by
    ``point(args, kind)``, its fields by ``build``; every mistake a :class:`ToolCallParseError` for the model."""
    if call.name is not None and call.name != tool:
        raise ToolCallParseError(f"Unknown function {call.name[:60]!r}; the only function is {tool!r}.")
    args = call.arguments
    kind = args.get("action")
    if not isinstance(kind, str) or kind not in allowed:
        raise ToolCallParseError(
            f"Unknown action {show(kind)} for {tool}; use one of: {', '.join(sorted(allowed))}."
        )
    try:
        return build(kind, args, point(args, kind))
    except ToolCallParseError:
        raise
    except (ValueError, TypeError) as exc:  # pydantic validation of the action's fields
        raise ToolCallParseError(f"Invalid arguments for action={kind}: {first_line(exc)}") from exc


def system_button_argument(args: dict[str, Any]) -> SystemButton:
    button = str(args.get("button", "")).lower()
    if button not in ("back", "home", "menu", "enter"):
        raise ToolCallParseError("action=system_button requires `button`: Back, Home, Menu or Enter.")
    return SystemButton(button=button)  # type: ignore[arg-type]


def mobile_action(kind: str, args: dict[str, Any], point: PointReader) -> Action:
    """A ``mobile_use`` action (every family's; the caller has checked ``kind`` against its tool's list)."""
    match kind:
        case "click":
            x, y = point.need("coordinate")
            return Click(x=x, y=y)
        case "long_press":
            x, y = point.need("coordinate")
            return LongPress(x=x, y=y, seconds=seconds_argument(args, 2.0))
        case "swipe":
            x, y = point.need("coordinate")
            x2, y2 = point.need("coordinate2")
            return Swipe(x=x, y=y, x2=x2, y2=y2)
        case "key":
            return Key(keys=(text_argument(args, kind),))
        case "system_button":
            return system_button_argument(args)
        case "open":
            return OpenApp(app=text_argument(args, kind))
        case "wait":
            return Wait(seconds=seconds_argument(args, 2.0))
    return common_action(kind, args)


def common_action(kind: str, args: dict[str, Any]) -> Action:
    """The actions every such tool reads alike: type, answer, terminate."""
    match kind:
        case "type":
            return TypeText(text=text_argument(args, kind))
        case "answer":
            return Answer(text=text_argument(args, kind))
        case "terminate":
            return Terminate(status=status_argument(args))
    raise ToolCallParseError(f"Unknown action {kind!r}.")


#: ``computer_use``'s clicks: button and count.
CLICKS: dict[str, tuple[Literal["left", "right", "middle"], Literal[1, 2, 3]]] = {
    "left_click": ("left", 1),
    "right_click": ("right", 1),
    "middle_click": ("middle", 1),
    "double_click": ("left", 2),
    "triple_click": ("left", 3),
}


def desktop_action(kind: str, args: dict[str, Any], point: PointReader) -> Action:
    """A ``computer_use`` action (every family's; the caller has checked ``kind`` against its tool's list)."""
    if kind in CLICKS:
        button, count = CLICKS[kind]
        at = point("coordinate", required=False)  # no point: click where the pointer is
        return (
            Click(x=at[0], y=at[1], button=button, count=count) if at else Click(button=button, count=count)
        )
    match kind:
        case "mouse_move":
            x, y = point.need("coordinate")
            return MouseMove(x=x, y=y)
        case "left_click_drag":
            start = point("start_coordinate", required=False)
            x2, y2 = point.need("coordinate")
            return Drag(x=start[0], y=start[1], x2=x2, y2=y2) if start else Drag(x2=x2, y2=y2)
        case "scroll" | "hscroll":
            return scroll_argument(kind, args, point)
        case "key":
            return Key(keys=keys_argument(args))
        case "wait":
            return Wait(seconds=seconds_argument(args, 1.0))
    return common_action(kind, args)


def scroll_argument(kind: str, args: dict[str, Any], point: PointReader) -> Scroll:
    """``scroll``: positive up. ``hscroll`` (Qwen3-VL): the prompt leaves the sign open; positive is taken as
    right (screenpilot's horizontal scroll counts positive as left, so the sign flips)."""
    if args.get("pixels") is None:
        raise ToolCallParseError(
            f"action={kind} requires `pixels` (a number; positive scrolls up, negative down)."
        )
    pixels = round(parse_number(args["pixels"], "pixels"))
    at = point("coordinate", required=False)
    where: dict[str, int] = {"x": at[0], "y": at[1]} if at else {}
    if kind == "hscroll":
        return Scroll(pixels=-pixels, axis="horizontal", **where)
    return Scroll(pixels=pixels, **where)


def _key_names(text: str) -> list[str]:
    """Names in one string: a written list (``"['alt', 'tab']"``), else names joined by ``+`` or spaces."""
    if _WRAPPED.match(text):
        return [a or b for a, b in _QUOTED.findall(text)]
    try:
        return list(split_combo(text, spaces=True))
    except KeyComboError:  # never pressed as the modifiers alone
        raise ToolCallParseError(
            f"`keys` {text.strip()[:40]!r} ends with '+' and no key after it; write 'ctrl++' for the plus key."
        ) from None


_QUOTED = re.compile(r"""'([^']*)'|"([^"]*)\"""")
_WRAPPED = re.compile(r"^\s*(?:keys\s*=\s*)?\[.*\]\s*$", re.S)


def keys_argument(args: dict[str, Any]) -> tuple[str, ...]:
    """``keys`` as a list of names; also one string (or a list of one) of names joined by ``+`` (``"ctrl+c"``)
    or by spaces (``"ctrl c"``, as UI-TARS writes hotkeys), or a ``"keys=['ctrl', 'c']"`` string: forms the
    models write."""
    keys = args.get("keys", args.get("text"))
    if isinstance(keys, list) and len(keys) == 1 and isinstance(keys[0], str):
        keys = keys[0]
    if isinstance(keys, str):
        keys = _key_names(keys)
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k.strip() for k in keys):
        raise ToolCallParseError('action=key requires `keys` as a list of key names, e.g. ["ctrl", "c"].')
    return tuple(k.strip() for k in keys)


def parsed_calls(
    calls: Sequence[ToolCall], tool: str, space: CoordinateSpace, read: Callable[[ToolCall, Pixel], Action]
) -> list[ParsedAction]:
    """Each call read twice by ``read(call, pixel)``, its points rounded once, straight into each frame (the
    model's image and the device), with the call as history shows it (named ``tool``)."""
    return [
        ParsedAction(
            model=read(call, space.model_pixel),
            device=read(call, space.to_device),
            call=ToolCall(tool, call.arguments).as_json(),
        )
        for call in calls
    ]


# -- writing calls --------------------------------------------------------------------------------------------


def mobile_arguments(action: Action) -> dict[str, Any] | None:
    """``action`` (model frame) as ``mobile_use`` arguments, or None when no form writes it. The caller drops
    forms its tool lacks (Qwen3-VL has no ``key`` or ``open``)."""
    match action:
        case Click(x=int() as x, y=int() as y, button="left", count=1):
            return {"action": "click", "coordinate": [x, y]}
        case LongPress(x=x, y=y, seconds=seconds):
            return {"action": "long_press", "coordinate": [x, y], "time": seconds}
        case Swipe(x=x, y=y, x2=x2, y2=y2):
            return {"action": "swipe", "coordinate": [x, y], "coordinate2": [x2, y2]}
        case Key(keys=(key,)):
            return {"action": "key", "text": key}
        case SystemButton(button=button):
            return {"action": "system_button", "button": button.capitalize()}
        case OpenApp(app=app):
            return {"action": "open", "text": app}
    return common_arguments(action)


def desktop_arguments(action: Action) -> dict[str, Any] | None:
    """``action`` (model frame) as ``computer_use`` arguments, or None when no form writes it. The caller drops
    forms its tool lacks (Qwen2.5-VL has no ``triple_click`` or ``hscroll``)."""
    at: dict[str, Any] = {}
    if isinstance(action, Click | Drag | Scroll) and action.x is not None:
        at["coordinate"] = [action.x, action.y]
    clicks = {clicked: name for name, clicked in CLICKS.items()}
    match action:
        case Click(button=button, count=count) if (button, count) in clicks:
            return {"action": clicks[(button, count)], **at}
        case MouseMove(x=x, y=y):
            return {"action": "mouse_move", "coordinate": [x, y]}
        case Drag(x2=x2, y2=y2):
            start = {"start_coordinate": at["coordinate"]} if at else {}
            return {"action": "left_click_drag", **start, "coordinate": [x2, y2]}
        case Scroll(axis="vertical", pixels=pixels):
            return {"action": "scroll", "pixels": pixels, **at}
        case Scroll(pixels=pixels):  # hscroll counts positive as right: the sign flips back
            return {"action": "hscroll", "pixels": -pixels, **at}
        case Key(keys=keys):
            return {"action": "key", "keys": list(keys)}
    return common_arguments(action)
