"""Qwen2.5-VL's native GUI-agent format: the ``mobile_use`` / ``computer_use`` tools.

The prompt text here is reproduced byte for byte from the format the model was trained on (the tests hold
sha256 vectors of it): the model grounds poorly on anything else. Coordinates are absolute pixels of the
image after :func:`~screenpilot.actions.coords.smart_resize`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from PIL import Image

from screenpilot.actions.coords import (
    QWEN_FACTOR,
    QWEN_MAX_PIXELS,
    QWEN_MIN_PIXELS,
    CoordinateSpace,
    Size,
    patch_tokens,
)
from screenpilot.actions.parse import (
    ToolCall,
    ToolCallParseError,
    extract_tool_calls,
    parse_number,
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
    action_kind,
)
from screenpilot.model.base import ImagePart, Message, TextPart
from screenpilot.model.dialect import NoCallForm, ParsedAction, PastStep, Platform
from screenpilot.model.images import model_image
from screenpilot.model.tool_arguments import (
    PointReader,
    common_arguments,
    first_line,
    seconds_argument,
    status_argument,
    text_argument,
    tool_call_block,
)

ToolName = Literal["mobile_use", "computer_use"]
_Pixel = Callable[[float, float], tuple[int, int]]

SYSTEM_PREAMBLE = "You are a helpful assistant."

_POINT_DESCRIPTION = "(x, y): The x (pixels from the left edge) and y (pixels from the top edge) coordinates to move the mouse to."
_CLICK_CENTER = (
    "* Make sure to click any buttons, links, icons, etc with the cursor tip in the center of the element. "
    "Don't click boxes on their edges unless asked."
)
_TERMINATE_DESCRIPTION = "* `terminate`: Terminate the current task and report its completion status."
_WAIT_DESCRIPTION = "* `wait`: Wait specified seconds for the change to happen."
_STATUS = {
    "description": "The status of the task. Required only by `action=terminate`.",
    "type": "string",
    "enum": ["success", "failure"],
}
_ARGS_FORMAT = "Format the arguments as a JSON object."

REASONING_INSTRUCTIONS = (
    "Before answering, explain your reasoning step-by-step in <thinking></thinking> tags, and insert them "
    "before the <tool_call></tool_call> XML tags.\n"
    "After answering, summarize your action in <conclusion></conclusion> tags, and insert them after the "
    "<tool_call></tool_call> XML tags."
)


def mobile_use_tool(screen: Size, *, answer_action: bool = False) -> dict[str, Any]:
    """The ``mobile_use`` function schema at the resized ``screen`` size.

    ``answer_action`` gives the AndroidWorld variant, which lets the model output an answer.
    """
    actions = [
        "* `key`: Perform a key event on the mobile device.\n"
        "    - This supports adb's `keyevent` syntax.\n"
        '    - Examples: "volume_up", "volume_down", "power", "camera", "clear".',
        "* `click`: Click the point on the screen with coordinate (x, y).",
        "* `long_press`: Press the point on the screen with coordinate (x, y) for specified seconds.",
        "* `swipe`: Swipe from the starting point with coordinate (x, y) to the end point with coordinates2 (x2, y2).",
        "* `type`: Input the specified text into the activated input box.",
        "* `system_button`: Press the system button.",
        "* `open`: Open an app on the device.",
        _WAIT_DESCRIPTION,
        _TERMINATE_DESCRIPTION,
    ]
    enum = ["key", "click", "long_press", "swipe", "type", "system_button", "open", "wait", "terminate"]
    text_description = "Required only by `action=key`, `action=type`, and `action=open`."
    if answer_action:
        actions.insert(5, "* `answer`: Output the answer.")
        enum.insert(5, "answer")
        text_description = "Required only by `action=key`, `action=type`, `action=answer`, and `action=open`."
    description = (
        "Use a touchscreen to interact with a mobile device, and take screenshots.\n"
        "* This is an interface to a mobile device with touchscreen. "
        "You can perform actions like clicking, typing, swiping, etc.\n"
        "* Some applications may take time to start or process actions, so you may need to wait and take "
        "successive screenshots to see the results of your actions.\n"
        f"* The screen's resolution is {screen.width}x{screen.height}.\n" + _CLICK_CENTER
    )
    return {
        "name_for_human": "mobile_use",
        "name": "mobile_use",
        "description": description,
        "parameters": {
            "properties": {
                "action": {
                    "description": "The action to perform. The available actions are:\n" + "\n".join(actions),
                    "enum": enum,
                    "type": "string",
                },
                "coordinate": {
                    "description": _POINT_DESCRIPTION
                    + " Required only by `action=click`, `action=long_press`, and `action=swipe`.",
                    "type": "array",
                },
                "coordinate2": {
                    "description": _POINT_DESCRIPTION + " Required only by `action=swipe`.",
                    "type": "array",
                },
                "text": {"description": text_description, "type": "string"},
                "time": {
                    "description": "The seconds to wait. Required only by `action=long_press` and `action=wait`.",
                    "type": "number",
                },
                "button": {
                    "description": "Back means returning to the previous interface, Home means returning to the "
                    "desktop, Menu means opening the application background menu, and Enter means pressing the "
                    "enter. Required only by `action=system_button`",
                    "enum": ["Back", "Home", "Menu", "Enter"],
                    "type": "string",
                },
                "status": _STATUS,
            },
            "required": ["action"],
            "type": "object",
        },
        "args_format": _ARGS_FORMAT,
    }


def computer_use_tool(screen: Size) -> dict[str, Any]:
    """The ``computer_use`` function schema at the resized ``screen`` size."""
    actions = [
        "* `key`: Performs key down presses on the arguments passed in order, then performs key releases in "
        "reverse order.",
        "* `type`: Type a string of text on the keyboard.",
        "* `mouse_move`: Move the cursor to a specified (x, y) pixel coordinate on the screen.",
        "* `left_click`: Click the left mouse button.",
        "* `left_click_drag`: Click and drag the cursor to a specified (x, y) pixel coordinate on the screen.",
        "* `right_click`: Click the right mouse button.",
        "* `middle_click`: Click the middle mouse button.",
        "* `double_click`: Double-click the left mouse button.",
        "* `scroll`: Performs a scroll of the mouse scroll wheel.",
        _WAIT_DESCRIPTION,
        _TERMINATE_DESCRIPTION,
    ]
    description = (
        "Use a mouse and keyboard to interact with a computer, and take screenshots.\n"
        "* This is an interface to a desktop GUI. You do not have access to a terminal or applications menu. "
        "You must click on desktop icons to start applications.\n"
        "* Some applications may take time to start or process actions, so you may need to wait and take "
        "successive screenshots to see the results of your actions. E.g. if you click on Firefox and a window "
        "doesn't open, try wait and taking another screenshot.\n"
        f"* The screen's resolution is {screen.width}x{screen.height}.\n"
        "* Whenever you intend to move the cursor to click on an element like an icon, you should consult a "
        "screenshot to determine the coordinates of the element before moving the cursor.\n"
        "* If you tried clicking on a program or link but it failed to load, even after waiting, try adjusting "
        "your cursor position so that the tip of the cursor visually falls on the element that you want to "
        "click.\n" + _CLICK_CENTER
    )
    return {
        "name_for_human": "computer_use",
        "name": "computer_use",
        "description": description,
        "parameters": {
            "properties": {
                "action": {
                    "description": "The action to perform. The available actions are:\n" + "\n".join(actions),
                    "enum": [
                        "key",
                        "type",
                        "mouse_move",
                        "left_click",
                        "left_click_drag",
                        "right_click",
                        "middle_click",
                        "double_click",
                        "scroll",
                        "wait",
                        "terminate",
                    ],
                    "type": "string",
                },
                "keys": {"description": "Required only by `action=key`.", "type": "array"},
                "text": {"description": "Required only by `action=type`.", "type": "string"},
                "coordinate": {
                    "description": _POINT_DESCRIPTION
                    + " Required only by `action=mouse_move` and `action=left_click_drag`.",
                    "type": "array",
                },
                "pixels": {
                    "description": "The amount of scrolling to perform. Positive values scroll up, negative values "
                    "scroll down. Required only by `action=scroll`.",
                    "type": "number",
                },
                "time": {
                    "description": "The seconds to wait. Required only by `action=wait`.",
                    "type": "number",
                },
                "status": _STATUS,
            },
            "required": ["action"],
            "type": "object",
        },
        "args_format": _ARGS_FORMAT,
    }


def tool_line(tool: dict[str, Any]) -> str:
    return json.dumps({"type": "function", "function": tool}, ensure_ascii=False)


def system_text(tools: Sequence[dict[str, Any]]) -> str:
    """System message text: the preamble and the Hermes-style tools block (no trailing newline)."""
    lines = "\n".join(tool_line(t) for t in tools)
    return (
        SYSTEM_PREAMBLE
        + "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        + lines
        + "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


_CONCLUSION = re.compile(r"<conclusion>(.*?)(?:</conclusion>|$)", re.S)

_MOBILE_ACTIONS = frozenset(
    {"key", "click", "long_press", "swipe", "type", "system_button", "open", "wait", "terminate"}
)
_DESKTOP_ACTIONS = frozenset(
    {
        "key",
        "type",
        "mouse_move",
        "left_click",
        "left_click_drag",
        "right_click",
        "middle_click",
        "double_click",
        "scroll",
        "wait",
        "terminate",
    }
)


class Qwen25VLDialect:
    """Prompt and parser for Qwen2.5-VL's ``mobile_use`` (Android) and ``computer_use`` (desktop) tools.

    The same pixel limits must reach the model's processor (or server); the image is resized client-side
    to exactly the size the prompt states, so a backend's own resize is a no-op.
    """

    name = "qwen2.5-vl"

    def __init__(
        self,
        tool: ToolName = "mobile_use",
        *,
        min_pixels: int = QWEN_MIN_PIXELS,
        max_pixels: int = QWEN_MAX_PIXELS,
        answer_action: bool = False,
        reasoning: bool = False,
        keep_images: int = 0,
    ) -> None:
        if tool not in ("mobile_use", "computer_use"):
            raise ValueError(f"unknown tool {tool!r}: expected mobile_use or computer_use")
        if keep_images < 0:
            raise ValueError("keep_images must be >= 0")
        self.tool: ToolName = tool
        self.platform: Platform = "mobile" if tool == "mobile_use" else "desktop"
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.answer_action = answer_action
        self.reasoning = reasoning
        self.keep_images = keep_images

    @classmethod
    def for_platform(cls, platform: Platform, **kwargs: Any) -> Qwen25VLDialect:
        return cls("mobile_use" if platform == "mobile" else "computer_use", **kwargs)

    def describe(self) -> dict[str, object]:
        return {
            "dialect": self.name,
            "tool": self.tool,
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
            "answer_action": self.answer_action,
            "reasoning": self.reasoning,
            "keep_images": self.keep_images,
        }

    # -- prompt -----------------------------------------------------------------------------------------------
    def coordinate_space(self, screen: Size) -> CoordinateSpace:
        return CoordinateSpace.for_screen(
            screen, min_pixels=self.min_pixels, max_pixels=self.max_pixels, factor=QWEN_FACTOR
        )

    def image_tokens(self, screen: Size) -> int:
        """How many ``<|image_pad|>`` tokens the processor makes of a screenshot of ``screen``: (W/28)·(H/28) of
        the factor-28 resized image the prompt states."""
        return patch_tokens(self.coordinate_space(screen).model, QWEN_FACTOR)

    def tool_schema(self, space: CoordinateSpace) -> dict[str, Any]:
        if self.tool == "mobile_use":
            return mobile_use_tool(space.model, answer_action=self.answer_action)
        return computer_use_tool(space.model)

    def system_prompt(self, space: CoordinateSpace) -> str:
        return system_text([self.tool_schema(space)])

    def user_text(self, goal: str, history: Sequence[PastStep]) -> str:
        progress = "".join(
            f"Step {i}: {(step.summary if self.reasoning and step.summary else step.call) or 'no action'}; "
            for i, step in enumerate(history, start=1)
        )
        query = f"The user query:  {goal}\n"
        if self.reasoning:
            query += REASONING_INSTRUCTIONS + "\n"
        return (
            query + f"Task progress (You have done the following operation on the current device): {progress}"
        )

    def messages(
        self,
        goal: str,
        screenshot: Image.Image,
        space: CoordinateSpace,
        history: Sequence[PastStep],
        feedback: str | None = None,
    ) -> list[Message]:
        parts: list[TextPart | ImagePart] = [TextPart(self.user_text(goal, history))]
        if feedback:
            parts.append(TextPart(f"\nNote: {feedback}\n"))
        if self.keep_images:
            kept = [(i, s) for i, s in enumerate(history, start=1) if s.screenshot is not None]
            for i, step in kept[-self.keep_images :]:
                assert step.screenshot is not None
                parts.append(TextPart(f"\nScreenshot before step {i}:"))
                parts.append(ImagePart(self.prepare_image(step.screenshot, space)))
            if kept:
                parts.append(TextPart("\nCurrent screenshot:"))
        parts.append(ImagePart(self.prepare_image(screenshot, space)))
        return [Message.text("system", self.system_prompt(space)), Message("user", tuple(parts))]

    # -- grounding (scripts) ----------------------------------------------------------------------------------
    def grounding_messages(
        self, target: str, screenshot: Image.Image, space: CoordinateSpace
    ) -> list[Message]:
        """The native prompt with a user turn asking for exactly one click on ``target``; a model that
        cannot see it is asked to terminate with ``failure``."""
        query = (
            f"Click {target}. Answer with exactly one action: a click on it. "
            "If it is not on the screen, terminate with status failure."
        )
        return self.messages(query, screenshot, space, ())

    def instruction_messages(
        self, instruction: str, screenshot: Image.Image, space: CoordinateSpace
    ) -> list[Message]:
        """The tool prompt and the benchmark's instruction as the whole user text (the cookbook's grounding
        form, used for ScreenSpot-style evaluations)."""
        user = (TextPart(instruction), ImagePart(self.prepare_image(screenshot, space)))
        return [Message.text("system", self.system_prompt(space)), Message("user", user)]

    def question_messages(
        self, question: str, screenshot: Image.Image, space: CoordinateSpace
    ) -> list[Message]:
        """The native prompt with the ``answer`` action offered (the AndroidWorld variant of the tool, and the
        same addition to ``computer_use``) and a user turn asking to answer ``question`` with it. The answer
        is read by a dialect built with ``answer_action=True``."""
        query = (
            f"Answer this question about the screen with the answer action and no other action: {question}"
        )
        user = (TextPart(self.user_text(query, ())), ImagePart(self.prepare_image(screenshot, space)))
        system = system_text([self.answer_tool_schema(space)])
        return [Message.text("system", system), Message("user", user)]

    def answer_tool_schema(self, space: CoordinateSpace) -> dict[str, Any]:
        """This dialect's tool at ``space``'s model size with the ``answer`` action added."""
        if self.tool == "mobile_use":
            return mobile_use_tool(space.model, answer_action=True)
        tool: dict[str, Any] = json.loads(json.dumps(computer_use_tool(space.model)))
        props = tool["parameters"]["properties"]
        props["action"]["description"] = props["action"]["description"].replace(
            "\n* `mouse_move`", "\n* `answer`: Output the answer.\n* `mouse_move`", 1
        )
        props["action"]["enum"].insert(props["action"]["enum"].index("type") + 1, "answer")
        props["text"]["description"] = "Required only by `action=type` and `action=answer`."
        return tool

    @staticmethod
    def prepare_image(screenshot: Image.Image, space: CoordinateSpace) -> Image.Image:
        """Resize to the model frame (bicubic, as the processor does, byte for byte), RGB."""
        return model_image(screenshot, (space.model.width, space.model.height))

    # -- answers ----------------------------------------------------------------------------------------------
    def summary(self, text: str) -> str | None:
        m = _CONCLUSION.search(text)
        return m.group(1).strip() or None if m else None

    def parse(self, text: str, space: CoordinateSpace) -> list[ParsedAction]:
        """Actions of every call in ``text``; each point is rounded once, straight into each frame."""
        parsed = []
        for call in extract_tool_calls(text):
            model = self._action(call, space, space.model_pixel)
            device = self._action(call, space, space.to_device)
            named = ToolCall(self.tool, call.arguments)
            parsed.append(ParsedAction(model=model, device=device, call=named.as_json()))
        return parsed

    def call_to_action(self, call: ToolCall, space: CoordinateSpace) -> Action:
        """Map one call's arguments (model frame) to a typed action in the model frame."""
        return self._action(call, space, space.model_pixel)

    def _action(self, call: ToolCall, space: CoordinateSpace, pixel: _Pixel) -> Action:
        """The call as an action whose points ``pixel`` turns into pixels of one frame."""
        if call.name is not None and call.name != self.tool:
            raise ToolCallParseError(
                f"Unknown function {call.name[:60]!r}; the only function is {self.tool!r}."
            )
        args = call.arguments
        kind = args.get("action")
        allowed = _MOBILE_ACTIONS if self.tool == "mobile_use" else _DESKTOP_ACTIONS
        if self.answer_action:  # only offered in the AndroidWorld variant; never invented into a success
            allowed = allowed | {"answer"}
        if not isinstance(kind, str) or kind not in allowed:
            raise ToolCallParseError(
                f"Unknown action {show(kind)} for {self.tool}; use one of: {', '.join(sorted(allowed))}."
            )
        w, h = space.model
        frame = f"x must be within 0..{w} and y within 0..{h}."
        point = PointReader(args, kind, space, pixel, frame=frame)
        builder = _mobile_action if self.tool == "mobile_use" else _desktop_action
        try:
            return builder(kind, args, point)
        except ToolCallParseError:
            raise
        except (ValueError, TypeError) as exc:  # pydantic validation of the action's fields
            raise ToolCallParseError(f"Invalid arguments for action={kind}: {first_line(exc)}") from exc

    # -- writing calls ----------------------------------------------------------------------------------------
    def action_names(self) -> frozenset[str]:
        """The actions of this dialect's tool, ``answer`` included when it is offered."""
        names = _MOBILE_ACTIONS if self.tool == "mobile_use" else _DESKTOP_ACTIONS
        return names | {"answer"} if self.answer_action else names

    def call_text(self, action: Action, space: CoordinateSpace) -> str:
        """``action`` (device pixels) as one ``<tool_call>`` block, its points in pixels of the resized image."""
        model = space.action_to_model(action)
        if self.tool == "mobile_use":
            arguments = self._mobile_arguments(model)
        else:
            arguments = self._desktop_arguments(model)
        arguments = arguments or common_arguments(model)
        if arguments is None or arguments["action"] not in self.action_names():
            raise NoCallForm(f"{self.tool} has no way to write this {action_kind(action)} action")
        return tool_call_block(self.tool, arguments)

    @staticmethod
    def _mobile_arguments(action: Action) -> dict[str, Any] | None:
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
        return None

    @staticmethod
    def _desktop_arguments(action: Action) -> dict[str, Any] | None:
        names = {("left", 1): "left_click", ("right", 1): "right_click", ("middle", 1): "middle_click"}
        names[("left", 2)] = "double_click"
        at: dict[str, Any] = {}
        if getattr(action, "x", None) is not None:
            at["coordinate"] = [action.x, action.y]  # type: ignore[union-attr]
        match action:
            case Click(button=button, count=count) if (button, count) in names:
                return {"action": names[(button, count)], **at}
            case MouseMove(x=x, y=y):
                return {"action": "mouse_move", "coordinate": [x, y]}
            case Drag(x2=x2, y2=y2):
                start = {"start_coordinate": at["coordinate"]} if at else {}
                return {"action": "left_click_drag", **start, "coordinate": [x2, y2]}
            case Scroll(axis="vertical", pixels=pixels):
                return {"action": "scroll", "pixels": pixels, **at}
            case Key(keys=keys):
                return {"action": "key", "keys": list(keys)}
        return None


def _mobile_action(kind: str, args: dict[str, Any], point: PointReader) -> Action:
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
        case "type":
            return TypeText(text=text_argument(args, kind))
        case "system_button":
            button = str(args.get("button", "")).lower()
            if button not in ("back", "home", "menu", "enter"):
                raise ToolCallParseError("action=system_button requires `button`: Back, Home, Menu or Enter.")
            return SystemButton(button=button)  # type: ignore[arg-type]
        case "open":
            return OpenApp(app=text_argument(args, kind))
        case "wait":
            return Wait(seconds=seconds_argument(args, 2.0))
        case "answer":
            return Answer(text=text_argument(args, kind))
        case "terminate":
            return Terminate(status=status_argument(args))
    raise ToolCallParseError(f"Unknown action {kind!r}.")


_DESKTOP_CLICKS: dict[str, tuple[Literal["left", "right", "middle"], Literal[1, 2]]] = {
    "left_click": ("left", 1),
    "right_click": ("right", 1),
    "middle_click": ("middle", 1),
    "double_click": ("left", 2),
}


def _desktop_action(kind: str, args: dict[str, Any], point: PointReader) -> Action:
    if kind in _DESKTOP_CLICKS:
        button, count = _DESKTOP_CLICKS[kind]
        at = point("coordinate", required=False)
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
            if start:
                return Drag(x=start[0], y=start[1], x2=x2, y2=y2)
            return Drag(x2=x2, y2=y2)
        case "scroll":
            if args.get("pixels") is None:
                raise ToolCallParseError(
                    "action=scroll requires `pixels` (positive scrolls up, negative down)."
                )
            at = point("coordinate", required=False)
            pixels = round(parse_number(args["pixels"], "pixels"))
            return Scroll(pixels=pixels, x=at[0], y=at[1]) if at else Scroll(pixels=pixels)
        case "key":
            keys = args.get("keys", args.get("text"))
            if isinstance(keys, str):
                # "ctrl+c", "ctrl + shift + t"; a "+" right after a separator is the plus key ("ctrl++").
                keys = [k for k in re.split(r"(?<=[^+\s])\s*\+\s*", keys.strip()) if k] or [keys]
            if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
                raise ToolCallParseError(
                    'action=key requires `keys` as a list of key names, e.g. ["ctrl", "c"].'
                )
            return Key(keys=tuple(keys))
        case "type":
            return TypeText(text=text_argument(args, kind))
        case "wait":
            return Wait(seconds=seconds_argument(args, 1.0))
        case "answer":
            return Answer(text=text_argument(args, kind))
        case "terminate":
            return Terminate(status=status_argument(args))
    raise ToolCallParseError(f"Unknown action {kind!r}.")
