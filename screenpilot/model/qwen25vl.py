"""Qwen2.5-VL's native GUI-agent format: the ``mobile_use`` / ``computer_use`` tools.

The prompt text here is reproduced byte for byte from the format the model was trained on (the tests hold
sha256 vectors of it): the model grounds poorly on anything else. Coordinates are absolute pixels of the
image after :func:`~screenpilot.actions.coords.smart_resize`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
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
from screenpilot.actions.parse import ToolCall, extract_tool_calls
from screenpilot.actions.types import Action, action_kind
from screenpilot.model.base import ImagePart, Message, TextPart
from screenpilot.model.dialect import NoCallForm, ParsedAction, PastStep, Platform
from screenpilot.model.images import model_image
from screenpilot.model.tool_arguments import (
    POINT_DESCRIPTION,
    STATUS_PARAMETER,
    PointReader,
    action_parameter,
    call_action,
    desktop_action,
    desktop_arguments,
    mobile_action,
    mobile_arguments,
    parsed_calls,
    tool_call_block,
    tools_block,
)
from screenpilot.model.tool_arguments import tool_line as tool_line  # the reference vectors' tool line

ToolName = Literal["mobile_use", "computer_use"]
_Pixel = Callable[[float, float], tuple[int, int]]

SYSTEM_PREAMBLE = "You are a helpful assistant."

_CLICK_CENTER = (
    "* Make sure to click any buttons, links, icons, etc with the cursor tip in the center of the element. "
    "Don't click boxes on their edges unless asked."
)
_ARGS_FORMAT = "Format the arguments as a JSON object."

REASONING_INSTRUCTIONS = (
    "Before answering, explain your reasoning step-by-step in <thinking></thinking> tags, and insert them "
    "before the <tool_call></tool_call> XML tags.\n"
    "After answering, summarize your action in <conclusion></conclusion> tags, and insert them after the "
    "<tool_call></tool_call> XML tags."
)

#: ``mobile_use``'s actions and their descriptions, in the tool's order.
MOBILE_ACTIONS: tuple[tuple[str, str], ...] = (
    (
        "key",
        "Perform a key event on the mobile device.\n    - This supports adb's `keyevent` syntax.\n"
        '    - Examples: "volume_up", "volume_down", "power", "camera", "clear".',
    ),
    ("click", "Click the point on the screen with coordinate (x, y)."),
    ("long_press", "Press the point on the screen with coordinate (x, y) for specified seconds."),
    (
        "swipe",
        "Swipe from the starting point with coordinate (x, y) to the end point with coordinates2 (x2, y2).",
    ),
    ("type", "Input the specified text into the activated input box."),
    ("system_button", "Press the system button."),
    ("open", "Open an app on the device."),
    ("wait", "Wait specified seconds for the change to happen."),
    ("terminate", "Terminate the current task and report its completion status."),
)
#: ``computer_use``'s actions and their descriptions, in the tool's order.
COMPUTER_ACTIONS: tuple[tuple[str, str], ...] = (
    (
        "key",
        "Performs key down presses on the arguments passed in order, then performs key releases in reverse order.",
    ),
    ("type", "Type a string of text on the keyboard."),
    ("mouse_move", "Move the cursor to a specified (x, y) pixel coordinate on the screen."),
    ("left_click", "Click the left mouse button."),
    ("left_click_drag", "Click and drag the cursor to a specified (x, y) pixel coordinate on the screen."),
    ("right_click", "Click the right mouse button."),
    ("middle_click", "Click the middle mouse button."),
    ("double_click", "Double-click the left mouse button."),
    ("scroll", "Performs a scroll of the mouse scroll wheel."),
    ("wait", "Wait specified seconds for the change to happen."),
    ("terminate", "Terminate the current task and report its completion status."),
)
#: The ``answer`` action of the AndroidWorld variant (and of the question prompt), after ``type``.
ANSWER_ACTION = ("answer", "Output the answer.")

_MOBILE_DESCRIPTION = (
    "Use a touchscreen to interact with a mobile device, and take screenshots.\n"
    "* This is an interface to a mobile device with touchscreen. "
    "You can perform actions like clicking, typing, swiping, etc.\n"
    "* Some applications may take time to start or process actions, so you may need to wait and take "
    "successive screenshots to see the results of your actions.\n"
    "* The screen's resolution is {width}x{height}.\n" + _CLICK_CENTER
)
_COMPUTER_DESCRIPTION = (
    "Use a mouse and keyboard to interact with a computer, and take screenshots.\n"
    "* This is an interface to a desktop GUI. You do not have access to a terminal or applications menu. "
    "You must click on desktop icons to start applications.\n"
    "* Some applications may take time to start or process actions, so you may need to wait and take "
    "successive screenshots to see the results of your actions. E.g. if you click on Firefox and a window "
    "doesn't open, try wait and taking another screenshot.\n"
    "* The screen's resolution is {width}x{height}.\n"
    "* Whenever you intend to move the cursor to click on an element like an icon, you should consult a "
    "screenshot to determine the coordinates of the element before moving the cursor.\n"
    "* If you tried clicking on a program or link but it failed to load, even after waiting, try adjusting "
    "your cursor position so that the tip of the cursor visually falls on the element that you want to "
    "click.\n" + _CLICK_CENTER
)
_BUTTON = {
    "description": "Back means returning to the previous interface, Home means returning to the desktop, Menu "
    "means opening the application background menu, and Enter means pressing the enter. Required only by "
    "`action=system_button`",
    "enum": ["Back", "Home", "Menu", "Enter"],
    "type": "string",
}


def _required(*actions: str) -> str:
    """``Required only by `action=a`, `action=b`, and `action=c`.`` as the tools write it."""
    names = [f"`action={a}`" for a in actions]
    if len(names) > 2:
        return f"Required only by {', '.join(names[:-1])}, and {names[-1]}."
    return f"Required only by {' and '.join(names)}."


def _with_answer(actions: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    at = [name for name, _ in actions].index("type") + 1
    return (*actions[:at], ANSWER_ACTION, *actions[at:])


def _tool(name: str, description: str, screen: Size, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "name_for_human": name,
        "name": name,
        "description": description.format(width=screen.width, height=screen.height),
        "parameters": {"properties": properties, "required": ["action"], "type": "object"},
        "args_format": _ARGS_FORMAT,
    }


def mobile_use_tool(screen: Size, *, answer_action: bool = False) -> dict[str, Any]:
    """The ``mobile_use`` function schema at the resized ``screen`` size.

    ``answer_action`` gives the AndroidWorld variant, which lets the model output an answer.
    """
    actions = _with_answer(MOBILE_ACTIONS) if answer_action else MOBILE_ACTIONS
    text_by = ("key", "type", "answer", "open") if answer_action else ("key", "type", "open")
    properties = {
        "action": action_parameter(actions),
        "coordinate": {
            "description": f"{POINT_DESCRIPTION} {_required('click', 'long_press', 'swipe')}",
            "type": "array",
        },
        "coordinate2": {"description": f"{POINT_DESCRIPTION} {_required('swipe')}", "type": "array"},
        "text": {"description": _required(*text_by), "type": "string"},
        "time": {"description": f"The seconds to wait. {_required('long_press', 'wait')}", "type": "number"},
        "button": _BUTTON,
        "status": STATUS_PARAMETER,
    }
    return _tool("mobile_use", _MOBILE_DESCRIPTION, screen, properties)


def computer_use_tool(screen: Size, *, answer_action: bool = False) -> dict[str, Any]:
    """The ``computer_use`` function schema at the resized ``screen`` size; ``answer_action`` adds ``answer``
    as the AndroidWorld variant adds it to ``mobile_use`` (screenpilot's question prompt)."""
    actions = _with_answer(COMPUTER_ACTIONS) if answer_action else COMPUTER_ACTIONS
    text_by = ("type", "answer") if answer_action else ("type",)
    properties = {
        "action": action_parameter(actions),
        "keys": {"description": _required("key"), "type": "array"},
        "text": {"description": _required(*text_by), "type": "string"},
        "coordinate": {
            "description": f"{POINT_DESCRIPTION} {_required('mouse_move', 'left_click_drag')}",
            "type": "array",
        },
        "pixels": {
            "description": "The amount of scrolling to perform. Positive values scroll up, negative values "
            f"scroll down. {_required('scroll')}",
            "type": "number",
        },
        "time": {"description": f"The seconds to wait. {_required('wait')}", "type": "number"},
        "status": STATUS_PARAMETER,
    }
    return _tool("computer_use", _COMPUTER_DESCRIPTION, screen, properties)


def system_text(tools: Sequence[dict[str, Any]]) -> str:
    """System message text: the preamble and the Hermes-style tools block (no trailing newline)."""
    return SYSTEM_PREAMBLE + "\n\n" + tools_block(tools)


_CONCLUSION = re.compile(r"<conclusion>(.*?)(?:</conclusion>|$)", re.S)

_MOBILE_NAMES = frozenset(name for name, _ in MOBILE_ACTIONS)
_DESKTOP_NAMES = frozenset(name for name, _ in COMPUTER_ACTIONS)


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
        return computer_use_tool(space.model, answer_action=True)

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
        return parsed_calls(extract_tool_calls(text), self.tool, space, partial(self._action, space=space))

    def call_to_action(self, call: ToolCall, space: CoordinateSpace) -> Action:
        """Map one call's arguments (model frame) to a typed action in the model frame."""
        return self._action(call, space.model_pixel, space=space)

    def _action(self, call: ToolCall, pixel: _Pixel, *, space: CoordinateSpace) -> Action:
        """The call as an action whose points ``pixel`` turns into pixels of one frame."""
        w, h = space.model
        frame = f"x must be within 0..{w} and y within 0..{h}."

        def point(args: dict[str, Any], kind: str) -> PointReader:
            return PointReader(args, kind, space, pixel, frame=frame)

        build = mobile_action if self.tool == "mobile_use" else desktop_action
        return call_action(call, self.tool, self.action_names(), point, build)

    # -- writing calls ----------------------------------------------------------------------------------------
    def action_names(self) -> frozenset[str]:
        """The actions of this dialect's tool, ``answer`` included when it is offered (only in the AndroidWorld
        variant: never invented into a success)."""
        names = _MOBILE_NAMES if self.tool == "mobile_use" else _DESKTOP_NAMES
        return names | {"answer"} if self.answer_action else names

    def call_text(self, action: Action, space: CoordinateSpace) -> str:
        """``action`` (device pixels) as one ``<tool_call>`` block, its points in pixels of the resized image."""
        model = space.action_to_model(action)
        arguments = mobile_arguments(model) if self.tool == "mobile_use" else desktop_arguments(model)
        if arguments is None or arguments["action"] not in self.action_names():
            raise NoCallForm(f"{self.tool} has no way to write this {action_kind(action)} action")
        return tool_call_block(self.tool, arguments)
