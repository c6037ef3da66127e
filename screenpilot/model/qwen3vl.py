"""Qwen3-VL's native GUI-agent format: the ``mobile_use`` / ``computer_use`` tools of the Qwen3-VL cookbooks.

The prompts are reproduced byte for byte from the cookbooks (the tests hold sha256 vectors of them). Three
things differ from Qwen2.5-VL: coordinates are **relative**, on the fixed N×N grid the prompt's ``The
screen's resolution is NxN.`` line states (N = 999 for ``mobile_use``, 1000 for ``computer_use``: the two
cookbooks disagree, and each prompt is kept with its own N), the vision patch is 16 px so the image is
resized with factor 32, and the phone prompt asks for a ``Thought:`` / ``Action:`` / one ``<tool_call>``
answer. Because coordinates are relative, the image size never enters the coordinate conversion: the
:class:`~screenpilot.actions.coords.CoordinateSpace` of this dialect maps the N×N grid to the device, and the
image is sized separately (:meth:`Qwen3VLDialect.image_size`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

from PIL import Image

from screenpilot.actions.coords import CoordinateSpace, Size, patch_tokens, smart_resize
from screenpilot.actions.parse import ToolCall, extract_tool_calls
from screenpilot.actions.types import Action, action_kind
from screenpilot.errors import SetupError
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

ToolName = Literal["mobile_use", "computer_use"]
_Pixel = Callable[[float, float], tuple[int, int]]

#: Qwen3-VL's processor: patch 16 x merge 2.
QWEN3_FACTOR = 32
#: The Instruct checkpoints' ``preprocessor_config.json``: 64·32² and 16384·32² pixels.
QWEN3_MIN_PIXELS = 64 * 32 * 32
QWEN3_MAX_PIXELS = 16384 * 32 * 32

#: The grid each tool's prompt states (``The screen's resolution is NxN.``).
GRID: dict[ToolName, int] = {"mobile_use": 999, "computer_use": 1000}

SYSTEM_PREAMBLE = "You are a helpful assistant."

MOBILE_USE_TOOL: dict[str, Any] = {
    "name": "mobile_use",
    "description": "Use a touchscreen to interact with a mobile device, and take screenshots.\n"
    "* This is an interface to a mobile device with touchscreen. You can perform actions like clicking, "
    "typing, swiping, etc.\n"
    "* Some applications may take time to start or process actions, so you may need to wait and take "
    "successive screenshots to see the results of your actions.\n"
    "* The screen's resolution is 999x999.\n"
    "* Make sure to click any buttons, links, icons, etc with the cursor tip in the center of the element. "
    "Don't click boxes on their edges unless asked.",
    "parameters": {
        "properties": {
            "action": {
                "description": "The action to perform. The available actions are:\n"
                "* `click`: Click the point on the screen with coordinate (x, y).\n"
                "* `long_press`: Press the point on the screen with coordinate (x, y) for specified seconds.\n"
                "* `swipe`: Swipe from the starting point with coordinate (x, y) to the end point with "
                "coordinates2 (x2, y2).\n"
                "* `type`: Input the specified text into the activated input box.\n"
                "* `answer`: Output the answer.\n"
                "* `system_button`: Press the system button.\n"
                "* `wait`: Wait specified seconds for the change to happen.\n"
                "* `terminate`: Terminate the current task and report its completion status.",
                "enum": [
                    "click",
                    "long_press",
                    "swipe",
                    "type",
                    "answer",
                    "system_button",
                    "wait",
                    "terminate",
                ],
                "type": "string",
            },
            "coordinate": {
                "description": POINT_DESCRIPTION
                + " Required only by `action=click`, `action=long_press`, and `action=swipe`.",
                "type": "array",
            },
            "coordinate2": {
                "description": POINT_DESCRIPTION + " Required only by `action=swipe`.",
                "type": "array",
            },
            "text": {"description": "Required only by `action=type` and `action=answer`.", "type": "string"},
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
            "status": STATUS_PARAMETER,
        },
        "required": ["action"],
        "type": "object",
    },
}

_COMPUTER_ACTIONS = (
    (
        "key",
        "Performs key down presses on the arguments passed in order, then performs key releases in reverse order.",
    ),
    ("type", "Type a string of text on the keyboard."),
    ("mouse_move", "Move the cursor to a specified (x, y) pixel coordinate on the screen."),
    ("left_click", "Click the left mouse button at a specified (x, y) pixel coordinate on the screen."),
    ("left_click_drag", "Click and drag the cursor to a specified (x, y) pixel coordinate on the screen."),
    ("right_click", "Click the right mouse button at a specified (x, y) pixel coordinate on the screen."),
    ("middle_click", "Click the middle mouse button at a specified (x, y) pixel coordinate on the screen."),
    (
        "double_click",
        "Double-click the left mouse button at a specified (x, y) pixel coordinate on the screen.",
    ),
    (
        "triple_click",
        "Triple-click the left mouse button at a specified (x, y) pixel coordinate on the screen "
        "(simulated as double-click since it's the closest action).",
    ),
    ("scroll", "Performs a scroll of the mouse scroll wheel."),
    ("hscroll", "Performs a horizontal scroll (mapped to regular scroll)."),
    ("wait", "Wait specified seconds for the change to happen."),
    ("terminate", "Terminate the current task and report its completion status."),
    ("answer", "Answer a question."),
)

COMPUTER_USE_TOOL: dict[str, Any] = {
    "name": "computer_use",
    "description": "Use a mouse and keyboard to interact with a computer, and take screenshots.\n"
    "* This is an interface to a desktop GUI. You do not have access to a terminal or applications menu. "
    "You must click on desktop icons to start applications.\n"
    "* Some applications may take time to start or process actions, so you may need to wait and take "
    "successive screenshots to see the results of your actions. E.g. if you click on Firefox and a window "
    "doesn't open, try wait and taking another screenshot.\n"
    "* The screen's resolution is 1000x1000.\n"
    "* Whenever you intend to move the cursor to click on an element like an icon, you should consult a "
    "screenshot to determine the coordinates of the element before moving the cursor.\n"
    "* If you tried clicking on a program or link but it failed to load, even after waiting, try adjusting "
    "your cursor position so that the tip of the cursor visually falls on the element that you want to "
    "click.\n"
    "* Make sure to click any buttons, links, icons, etc with the cursor tip in the center of the element. "
    "Don't click boxes on their edges.",
    "parameters": {
        "properties": {
            "action": action_parameter(_COMPUTER_ACTIONS),
            "keys": {"description": "Required only by `action=key`.", "type": "array"},
            "text": {"description": "Required only by `action=type` and `action=answer`.", "type": "string"},
            "coordinate": {"description": POINT_DESCRIPTION, "type": "array"},
            "pixels": {
                "description": "The amount of scrolling to perform. Positive values scroll up, negative values "
                "scroll down. Required only by `action=scroll` and `action=hscroll`.",
                "type": "number",
            },
            "time": {"description": "The seconds to wait. Required only by `action=wait`.", "type": "number"},
            "status": STATUS_PARAMETER,
        },
        "required": ["action"],
        "type": "object",
    },
}

#: What the phone prompt adds after the tools block (the mobile cookbook's literal text).
RESPONSE_FORMAT = (
    "\n\n# Response format\n\n"
    "Response format for every step:\n"
    "1) Thought: one concise sentence explaining the next move (no multi-step reasoning).\n"
    "2) Action: a short imperative describing what to do in the UI.\n"
    '3) A single <tool_call>...</tool_call> block containing only the JSON: {"name": <function-name>, '
    '"arguments": <args-json-object>}.\n\n'
    "Rules:\n"
    "- Output exactly in the order: Thought, Action, <tool_call>.\n"
    "- Be brief: one sentence for Thought, one for Action.\n"
    "- Do not output anything else outside those three parts.\n"
    "- If finishing, use action=terminate in the tool call."
)

_PROGRESS = "Task progress (You have done the following operation on the current device): "


def mobile_system_text() -> str:
    """The phone cookbook's system text: two newlines, the tools block, the response-format rules."""
    return "\n\n" + tools_block([MOBILE_USE_TOOL]) + RESPONSE_FORMAT


def computer_system_text() -> str:
    """The computer cookbook's system text: the preamble and the tools block (no response format)."""
    return SYSTEM_PREAMBLE + "\n\n" + tools_block([COMPUTER_USE_TOOL])


def history_text(items: Sequence[str]) -> str:
    """``Step 1: …; Step 2: …; `` as the cookbook writes it (newlines and double quotes removed)."""
    return "".join(
        f"Step {i}: {item.replace(chr(10), '').replace(chr(34), '')}; "
        for i, item in enumerate(items, start=1)
    )


def mobile_user_text(goal: str, history: Sequence[str]) -> str:
    """The phone cookbook's user text (the task gets a ``.``; the history is followed by ``.`` and a newline)."""
    return f"The user query: {goal}.\n{_PROGRESS}{history_text(history)}.\n"


_THINK_END = "</think>"
_ACTION_LINE = re.compile(r"^[ \t]*Action:[ \t]*(.+?)[ \t]*$", re.M)
_THOUGHT = re.compile(r"Thought:[ \t]*(.*?)(?=^[ \t]*Action:|<tool_call>|\Z)", re.S | re.M)
_QUOTES = "\"'“”‘’"


def answer_body(text: str) -> str:
    """The answer after the last ``</think>`` (a Thinking model's reasoning is not part of the answer)."""
    at = text.rfind(_THINK_END)
    return text if at < 0 else text[at + len(_THINK_END) :]


def read_thought(text: str) -> str | None:
    """The ``Thought:`` of an answer (it may run over several lines), if any."""
    m = _THOUGHT.search(answer_body(text))
    return (m.group(1).strip() or None) if m else None


def read_action_line(text: str) -> str | None:
    """The ``Action:`` line of an answer, surrounding quotes removed, if any."""
    m = _ACTION_LINE.search(answer_body(text).split("<tool_call>", 1)[0])
    return (m.group(1).strip().strip(_QUOTES).strip() or None) if m else None


class Qwen3VLDialect:
    """Prompt and parser for Qwen3-VL's ``mobile_use`` (phones) and ``computer_use`` (desktops) tools.

    Points are on the N×N grid of the prompt (N = 999 on phones, 1000 on desktops) and map to device pixels
    as ``round(x / N · W)``, clamped to the screen. The image is resized client-side with factor 32 to
    exactly what the processor would make of it under the same pixel limits, so a backend's resize is a
    no-op; the image size only decides what the model sees and the token cost, never the coordinates.

    Only the current screenshot is sent (``keep_images`` adds earlier ones before it); earlier steps are
    text, as the phone cookbook writes them: the model's own ``Action:`` line, or the call when it wrote
    none. The computer cookbook is single-step; later desktop steps add the same ``Task progress`` text
    after the query (screenpilot's choice: no multi-step form is published).
    """

    name = "qwen3-vl"

    def __init__(
        self,
        tool: ToolName = "mobile_use",
        *,
        min_pixels: int = QWEN3_MIN_PIXELS,
        max_pixels: int = QWEN3_MAX_PIXELS,
        keep_images: int = 0,
    ) -> None:
        if tool not in GRID:
            raise ValueError(f"unknown tool {tool!r}: expected mobile_use or computer_use")
        if keep_images < 0:
            raise ValueError("keep_images must be >= 0")
        if not 0 < min_pixels <= max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {min_pixels} and {max_pixels}")
        self.tool: ToolName = tool
        self.platform: Platform = "mobile" if tool == "mobile_use" else "desktop"
        self.grid = GRID[tool]
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.keep_images = keep_images

    @classmethod
    def for_platform(
        cls,
        platform: Platform,
        *,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        answer_action: bool = False,
        reasoning: bool = False,
        keep_images: int = 0,
    ) -> Qwen3VLDialect:
        """The dialect from the options every dialect takes.

        ``answer_action`` changes nothing: both published tools always offer ``answer``. ``reasoning`` is
        built into the phone prompt (``Thought:`` and ``Action:`` lines); the computer prompt has no reasoning
        form, so asking for one there is refused, as is a ``max_pixels`` above the largest image the
        processor makes (16384·32²).
        """
        del answer_action  # always offered
        if reasoning and platform != "mobile":
            raise SetupError(
                "the qwen3-vl computer_use prompt has no reasoning form; drop --reasoning "
                "(the phone prompt always asks for a Thought)"
            )
        max_pixels = QWEN3_MAX_PIXELS if max_pixels is None else max_pixels
        min_pixels = QWEN3_MIN_PIXELS if min_pixels is None else min(min_pixels, max_pixels)
        if max_pixels > QWEN3_MAX_PIXELS:
            raise SetupError(
                f"--max-pixels {max_pixels} is above {QWEN3_MAX_PIXELS} (16384*32*32), the largest image "
                "Qwen3-VL's processor makes; lower it"
            )
        try:
            tool: ToolName = "mobile_use" if platform == "mobile" else "computer_use"
            return cls(tool, min_pixels=min_pixels, max_pixels=max_pixels, keep_images=keep_images)
        except ValueError as exc:
            raise SetupError(f"qwen3-vl: {exc}") from None

    def describe(self) -> dict[str, object]:
        return {
            "dialect": self.name,
            "tool": self.tool,
            "grid": f"{self.grid}x{self.grid}",
            "factor": QWEN3_FACTOR,
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
            "keep_images": self.keep_images,
            "answer_action": True,
            "reasoning": self.tool == "mobile_use",
        }

    # -- frames -----------------------------------------------------------------------------------------------
    def coordinate_space(self, screen: Size) -> CoordinateSpace:
        """The prompt's N×N grid against the device screen."""
        return CoordinateSpace(model=Size(self.grid, self.grid), device=Size(*screen))

    def image_size(self, screen: Size) -> Size:
        """The size the screenshot is sent at: smart_resize with factor 32 and this dialect's limits."""
        height, width = smart_resize(screen[1], screen[0], QWEN3_FACTOR, self.min_pixels, self.max_pixels)
        return Size(width, height)

    def image_tokens(self, screen: Size) -> int:
        """How many ``<|image_pad|>`` tokens the processor puts in for a screenshot of ``screen``."""
        return patch_tokens(Size(*self.image_size(screen)), QWEN3_FACTOR)

    def prepare_image(self, screenshot: Image.Image, space: CoordinateSpace) -> Image.Image:
        """The screenshot (device pixels) resized to :meth:`image_size` (bicubic, as the processor does), RGB."""
        width, height = self.image_size(Size(*screenshot.size))
        return model_image(screenshot, (width, height))

    # -- prompt -----------------------------------------------------------------------------------------------
    def system_prompt(self, space: CoordinateSpace) -> str:
        """The system text; it does not depend on the screen."""
        return mobile_system_text() if self.tool == "mobile_use" else computer_system_text()

    def user_text(self, goal: str, history: Sequence[PastStep]) -> str:
        """The user turn's text: the phone form, or on a desktop the bare query (plus progress later on)."""
        items = [step.summary or step.call or "no action" for step in history]
        if self.tool == "mobile_use":
            return mobile_user_text(goal, items)
        if not items:
            return goal
        return f"{goal}\n{_PROGRESS}{history_text(items)}.\n"

    def messages(
        self,
        goal: str,
        screenshot: Image.Image,
        space: CoordinateSpace,
        history: Sequence[PastStep],
        feedback: str | None = None,
    ) -> list[Message]:
        text: list[TextPart | ImagePart] = [TextPart(self.user_text(goal, history))]
        if feedback:
            text.append(TextPart(f"\nNote: {feedback}\n"))
        images = self._kept_images(history, space)
        images.append(ImagePart(self.prepare_image(screenshot, space)))
        parts = [*text, *images] if self.tool == "mobile_use" else [*images, *text]
        return [Message.text("system", self.system_prompt(space)), Message("user", tuple(parts))]

    def _kept_images(self, history: Sequence[PastStep], space: CoordinateSpace) -> list[TextPart | ImagePart]:
        if not self.keep_images:
            return []
        kept = [(i, s.screenshot) for i, s in enumerate(history, start=1) if s.screenshot is not None]
        parts: list[TextPart | ImagePart] = []
        for i, shot in kept[-self.keep_images :]:
            assert shot is not None
            parts += [TextPart(f"Screenshot before step {i}:"), ImagePart(self.prepare_image(shot, space))]
        if parts:
            parts.append(TextPart("Current screenshot:"))
        return parts

    # -- grounding (scripts) ----------------------------------------------------------------------------------
    def grounding_messages(
        self, target: str, screenshot: Image.Image, space: CoordinateSpace
    ) -> list[Message]:
        """The native prompt with a query asking for exactly one click on ``target``; a model that cannot see
        it is asked to terminate with ``failure``."""
        query = (
            f"Click {target}. Answer with exactly one action: a click on it. "
            "If it is not on the screen, terminate with status failure"
        )
        return self.messages(query, screenshot, space, ())

    def question_messages(
        self, question: str, screenshot: Image.Image, space: CoordinateSpace
    ) -> list[Message]:
        """The native prompt with a query asking to answer ``question`` through the tool's ``answer`` action
        (both Qwen3-VL tools offer it)."""
        query = (
            f"Answer this question about the screen with the answer action and no other action: {question}"
        )
        return self.messages(query, screenshot, space, ())

    # -- answers ----------------------------------------------------------------------------------------------
    def summary(self, text: str) -> str | None:
        """The model's ``Action:`` line (a one-sentence description of the step), used as history."""
        return read_action_line(text)

    def parse(self, text: str, space: CoordinateSpace) -> list[ParsedAction]:
        """The call(s) in ``text`` (on a phone only the first: the prompt asks for a single one), each point
        rounded once, straight into each frame."""
        calls = extract_tool_calls(answer_body(text))
        if self.tool == "mobile_use":
            calls = calls[:1]
        return parsed_calls(calls, self.tool, space, partial(self._action, space=space))

    def _action(self, call: ToolCall, pixel: _Pixel, *, space: CoordinateSpace) -> Action:
        frame = f"coordinates are relative, x and y each within 0..{space.model.width}."

        def point(args: dict[str, Any], kind: str) -> PointReader:
            return PointReader(args, kind, space, pixel, frame=frame)

        build = mobile_action if self.tool == "mobile_use" else desktop_action
        return call_action(call, self.tool, self.action_names(), point, build)

    # -- writing calls ----------------------------------------------------------------------------------------
    def action_names(self) -> frozenset[str]:
        """The actions of this dialect's tool."""
        return _MOBILE if self.tool == "mobile_use" else _DESKTOP

    def call_text(self, action: Action, space: CoordinateSpace) -> str:
        """``action`` (device pixels) as one ``<tool_call>`` block, its points on the prompt's N×N grid."""
        model = self._to_grid(action, space)
        arguments = mobile_arguments(model) if self.tool == "mobile_use" else desktop_arguments(model)
        if arguments is None or arguments["action"] not in self.action_names():
            raise NoCallForm(f"{self.tool} has no way to write this {action_kind(action)} action")
        return tool_call_block(self.tool, arguments)

    @staticmethod
    def _to_grid(action: Action, space: CoordinateSpace) -> Action:
        """The action's points on the grid, which runs from 0 to N inclusive (N is the right or bottom edge, so
        the last device pixel is N, not N - 1 as the last pixel of an image would be)."""
        n_x, n_y = space.model
        w, h = space.device
        update: dict[str, int] = {}
        for fx, fy in (("x", "y"), ("x2", "y2")):
            x, y = getattr(action, fx, None), getattr(action, fy, None)
            if x is not None and y is not None:
                update[fx], update[fy] = round(x * n_x / w), round(y * n_y / h)
        return action.model_copy(update=update)


_MOBILE = frozenset(MOBILE_USE_TOOL["parameters"]["properties"]["action"]["enum"])
_DESKTOP = frozenset(COMPUTER_USE_TOOL["parameters"]["properties"]["action"]["enum"])
