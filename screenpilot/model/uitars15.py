"""UI-TARS-1.5's native GUI-agent format: one plain-text instruction block, ``Thought:``/``Action:`` answers.

UI-TARS-1.5-7B is a Qwen2.5-VL fine-tune that does not use function calling. It is prompted with the
``COMPUTER_USE`` (desktop), ``MOBILE_USE`` (phone) or ``GROUNDING`` template, reproduced here byte for byte
(the tests hold sha256 vectors of them), and answers with a Python-style call such as
``click(start_box='(x,y)')`` whose points are absolute pixels of the screenshot after
:func:`~screenpilot.actions.coords.smart_resize` with factor 28. The parser follows the official one
(``ui_tars.action_parser``) without ever evaluating model output, and also reads the malformed forms the
model is known to write: special box tokens left in, ``<point>x y</point>``, ``(x, y)`` with a space, four-number
boxes (their centre is used), a missing closing parenthesis, unescaped quotes in ``type`` text, ``Action:``
without a space, several actions separated by blank lines.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

from screenpilot.actions.coords import QWEN_FACTOR, QWEN_MAX_PIXELS, CoordinateSpace, Size, patch_tokens
from screenpilot.actions.keys import KeyComboError, split_combo
from screenpilot.actions.parse import MAX_CALLS, MAX_OUTPUT_CHARS, MAX_TEXT_CHARS
from screenpilot.actions.types import (
    Action,
    Answer,
    Click,
    Drag,
    Key,
    LongPress,
    OpenApp,
    Scroll,
    Swipe,
    SystemButton,
    Terminate,
    TypeText,
    Wait,
    action_kind,
)
from screenpilot.errors import ModelOutputError, SetupError
from screenpilot.model.base import ImagePart, Message, TextPart
from screenpilot.model.dialect import NoCallForm, ParsedAction, PastStep, Platform
from screenpilot.model.images import model_image

SYSTEM_PREAMBLE = "You are a helpful assistant."

#: The official parser's pixel floor (100·28·28); only screens smaller than this differ from Qwen2.5-VL's.
UITARS_MIN_PIXELS = 100 * 28 * 28
#: The largest image the model was trained on (16384·28·28).
UITARS_MAX_PIXELS = QWEN_MAX_PIXELS

COMPUTER_USE = (
    "You are a GUI agent. You are given a task and your action history, with screenshots. You need to perform "
    "the next action to complete the task.\n\n## Output Format\n```\nThought: ...\nAction: ...\n```\n\n"
    "## Action Space\n\n"
    "click(start_box='<|box_start|>(x1,y1)<|box_end|>')\n"
    "left_double(start_box='<|box_start|>(x1,y1)<|box_end|>')\n"
    "right_single(start_box='<|box_start|>(x1,y1)<|box_end|>')\n"
    "drag(start_box='<|box_start|>(x1,y1)<|box_end|>', end_box='<|box_start|>(x3,y3)<|box_end|>')\n"
    "hotkey(key='')\n"
    "type(content='xxx') # Use escape characters \\', \\\", and \\n in content part to ensure we can parse the "
    "content in normal python string format. If you want to submit your input, use \\n at the end of content. \n"
    "scroll(start_box='<|box_start|>(x1,y1)<|box_end|>', direction='down or up or right or left')\n"
    "wait() #Sleep for 5s and take a screenshot to check for any changes.\n"
    "finished(content='xxx') # Use escape characters \\', \\\", and \\n in content part to ensure we can parse "
    "the content in normal python string format.\n\n\n"
    "## Note\n- Use {language} in `Thought` part.\n"
    "- Write a small plan and finally summarize your next action (with its target element) in one sentence in "
    "`Thought` part.\n\n## User Instruction\n{instruction}\n"
)

MOBILE_USE = (
    "You are a GUI agent. You are given a task and your action history, with screenshots. You need to perform "
    "the next action to complete the task. \n## Output Format\n```\nThought: ...\nAction: ...\n```\n"
    "## Action Space\n\n"
    "click(start_box='<|box_start|>(x1,y1)<|box_end|>')\n"
    "long_press(start_box='<|box_start|>(x1,y1)<|box_end|>')\n"
    "type(content='') #If you want to submit your input, use \"\\n\" at the end of `content`.\n"
    "scroll(start_box='<|box_start|>(x1,y1)<|box_end|>', direction='down or up or right or left')\n"
    "open_app(app_name='')\n"
    "drag(start_box='<|box_start|>(x1,y1)<|box_end|>', end_box='<|box_start|>(x3,y3)<|box_end|>')\n"
    "press_home()\npress_back()\n"
    "finished(content='xxx') # Use escape characters \\', \\\", and \\n in content part to ensure we can parse "
    "the content in normal python string format.\n\n\n"
    "## Note\n- Use {language} in `Thought` part.\n"
    "- Write a small plan and finally summarize your next action (with its target element) in one sentence in "
    "`Thought` part.\n\n## User Instruction\n{instruction}\n"
)

GROUNDING = (
    "You are a GUI agent. You are given a task and your action history, with screenshots. You need to perform "
    "the next action to complete the task. \n\n## Output Format\n\nAction: ...\n\n\n"
    "## Action Space\nclick(start_box='<|box_start|>(x1,y1)<|box_end|>')\n\n## User Instruction\n{instruction}"
)

#: The question form of :meth:`UITars15Dialect.question_messages`: the answer comes back in ``finished``.
QUESTION_INSTRUCTION = (
    "Answer this question about the current screen without performing any other action: {question}\n"
    "Reply with finished(content='your answer')."
)

#: How far one ``scroll`` goes on a desktop: 5 wheel notches, as the official executor scrolls.
SCROLL_PIXELS = 500
#: How far one ``scroll`` swipes on a phone, as a fraction of the screen's height (or width).
SWIPE_FRACTION = 0.5
#: ``wait()`` sleeps this long, as the prompt says.
WAIT_SECONDS = 5.0

_BOX_TOKENS = re.compile(r"<\|box_start\|>|<\|box_end\|>")
_END_TOKENS = re.compile(r"(?:\s*(?:<\|im_end\|>|\[EOS\]|<\|endoftext\|>))+\s*\Z")
_THOUGHT = re.compile(r"Thought:\s*(.+?)(?=\s*Action:|\Z)", re.S)
_SUMMARY = re.compile(r"Action_Summary:\s*(.+?)(?=\s*Action:|\Z)", re.S)
_ACTION = re.compile(r"(?<![\w])Action:[ \t]*")
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_SEP = r"\s*[,\s]\s*"
_POINT = re.compile(
    rf"\s*[(\[]?\s*{_NUMBER}{_SEP}{_NUMBER}(?:{_SEP}{_NUMBER}{_SEP}{_NUMBER})?\s*[)\]]?\s*",
)
_POINT_TAGS = re.compile(r"</?point>")
_BOX_FOR_HISTORY = re.compile(r"((?:start|end)_box=')(\(\d+,\d+\))(')")

_MOBILE_ACTIONS = (
    "click",
    "long_press",
    "type",
    "scroll",
    "open_app",
    "drag",
    "press_home",
    "press_back",
    "wait",
    "finished",
    "call_user",
)
_DESKTOP_ACTIONS = (
    "click",
    "left_double",
    "right_single",
    "drag",
    "hotkey",
    "type",
    "scroll",
    "wait",
    "finished",
    "call_user",
)
#: Argument names as the Doubao prompt variants spell them, and the names the 7B model uses.
_ARG_ALIASES = {"point": "start_box", "start_point": "start_box", "end_point": "end_box"}

_Pixel = Callable[[float, float], tuple[int, int]]


class UITarsParseError(ModelOutputError):
    """UI-TARS's answer cannot be turned into actions. The message is meant to be shown to the model."""


_FORM = "Thought: ...\nAction: click(start_box='(x,y)')"


def template_sha256(template: str) -> str:
    """The sha256 of a template's UTF-8 bytes (recorded with a run, so prompt changes show)."""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


# -- reading the answer ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UITarsCall:
    """One action as the model wrote it: the name, its keyword arguments (strings), and the call text."""

    name: str
    arguments: dict[str, str]
    text: str


def clean_answer(text: str) -> str:
    """The answer without the special box tokens and end-of-turn markers a server may leave in."""
    return _END_TOKENS.sub("", _BOX_TOKENS.sub("", text)).strip()


def read_thought(text: str) -> str | None:
    """The ``Thought:`` text (or ``Action_Summary:`` text in the reflection form), None when absent."""
    text = clean_answer(text)
    found = _SUMMARY.search(text) if text.startswith(("Reflection:", "Action_Summary:")) else None
    found = found or _THOUGHT.search(text)
    return (found.group(1).strip() or None) if found else None


def read_calls(text: str) -> list[UITarsCall]:
    """Every action after the last ``Action:`` in ``text``; :class:`UITarsParseError` when there is none."""
    if not text or not text.strip():
        raise UITarsParseError(f"The answer was empty. Reply with\n{_FORM}")
    if len(text) > MAX_OUTPUT_CHARS:
        raise UITarsParseError(
            f"The answer is {len(text)} characters long; at most {MAX_OUTPUT_CHARS} characters are read. "
            f"Reply briefly with\n{_FORM}"
        )
    text = clean_answer(text)
    starts = list(_ACTION.finditer(text))
    if not starts:
        raise UITarsParseError(f"No `Action:` line found. Reply with\n{_FORM}")
    calls = _CallReader(text, starts[-1].end()).read_all()
    if len(calls) > MAX_CALLS:
        raise UITarsParseError(f"The answer holds {len(calls)} actions; send at most {MAX_CALLS} at a time.")
    return calls


_NAME = re.compile(r"[A-Za-z_]\w*")
_KEY = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*")
_STRING_END = re.compile(r"\s*(?:\)|,\s*[A-Za-z_]\w*\s*=|\Z)")
_BARE = re.compile(r"[^,)\s]+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "'": "'", '"': '"', "\\": "\\"}


class _CallReader:
    """Reads ``name(key='value', ...)`` calls one after another, tolerant of what the model gets wrong.

    A quoted value ends at the first matching quote followed by ``)``, by ``, key=`` or by the end of the text,
    so quotes the model forgot to escape inside ``type`` text stay part of the text (as the official parser
    reads them). A missing ``)`` at the end is supplied. Positional arguments are ignored, as officially.
    """

    def __init__(self, text: str, pos: int) -> None:
        self.text, self.pos = text, pos

    def read_all(self) -> list[UITarsCall]:
        calls: list[UITarsCall] = []
        self._skip_blank()
        while self.pos < len(self.text) and len(calls) <= MAX_CALLS:
            calls.append(self._call())
            self._skip_blank()
        if not calls:
            raise UITarsParseError(f"`Action:` is followed by no action. Reply with\n{_FORM}")
        return calls

    def _skip_blank(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _call(self) -> UITarsCall:
        start = self.pos
        name = _NAME.match(self.text, self.pos)
        if not name or not self.text.startswith("(", name.end()):
            raise UITarsParseError(
                f"Expected an action like click(start_box='(x,y)') after `Action:`, got "
                f"{_show(self.text[start:])}."
            )
        self.pos = name.end() + 1
        arguments = self._arguments()
        call_text = self.text[start : self.pos].strip()
        if not call_text.endswith(")"):
            call_text += ")"
        return UITarsCall(name.group(), arguments, call_text)

    def _arguments(self) -> dict[str, str]:
        arguments: dict[str, str] = {}
        while True:
            self._skip_blank()
            if self.pos >= len(self.text):
                return arguments  # the closing parenthesis is missing: supplied
            if self.text[self.pos] == ")":
                self.pos += 1
                return arguments
            if self.text[self.pos] == ",":
                self.pos += 1
                continue
            key = _KEY.match(self.text, self.pos)
            if key:
                self.pos = key.end()
            value = self._value()
            if key:
                arguments[_ARG_ALIASES.get(key.group(1), key.group(1))] = value

    def _value(self) -> str:
        quote = self.text[self.pos] if self.pos < len(self.text) else ""
        if quote in ("'", '"'):
            return self._string(quote)
        if quote in "([":
            return self._group()
        bare = _BARE.match(self.text, self.pos)
        if not bare:
            raise UITarsParseError(f"Unreadable action arguments at {_show(self.text[self.pos :])}.")
        self.pos = bare.end()
        return bare.group()

    def _string(self, quote: str) -> str:
        out: list[str] = []
        i = self.pos + 1
        while i < len(self.text):
            ch = self.text[i]
            if ch == "\\" and i + 1 < len(self.text):
                nxt = self.text[i + 1]
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            if ch == quote and _STRING_END.match(self.text, i + 1):
                self.pos = i + 1
                return "".join(out)
            out.append(ch)
            i += 1
        raise UITarsParseError(
            f"A quoted argument is never closed: {_show(self.text[self.pos :])}. Close it with {quote}."
        )

    def _group(self) -> str:
        closer = ")" if self.text[self.pos] == "(" else "]"
        end = self.text.find(closer, self.pos)
        if end < 0:
            raise UITarsParseError(f"Unclosed {self.text[self.pos]!r} in {_show(self.text[self.pos :])}.")
        value = self.text[self.pos : end + 1]
        self.pos = end + 1
        return value


def _show(text: str, limit: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def add_box_tokens(call: str) -> str:
    """The call as it goes back into history: ``(x,y)`` boxes get their special tokens back (as the official
    ``add_box_token`` does: only ``start_box``/``end_box`` values written without a space)."""
    return _BOX_FOR_HISTORY.sub(r"\1<|box_start|>\2<|box_end|>\3", call)


# -- what the calls mean --------------------------------------------------------------------------------------------
class _Points:
    """Reads and range-checks the points of one call (model frame), and gives them as ``pixel`` maps them."""

    def __init__(self, call: UITarsCall, space: CoordinateSpace, pixel: _Pixel) -> None:
        self.call, self.space, self.pixel = call, space, pixel

    def model(self, field: str, *, required: bool = True) -> tuple[float, float] | None:
        """The point as the model wrote it (a box becomes its centre), in model pixels."""
        value = self.call.arguments.get(field)
        if value is None or not value.strip():
            if required:
                raise UITarsParseError(
                    f"{self.call.name} requires {field}='(x,y)', in pixels of the screenshot."
                )
            return None
        found = _POINT.fullmatch(_POINT_TAGS.sub(" ", value))
        if not found:
            raise UITarsParseError(
                f"{field} must be a point '(x,y)' in pixels of the screenshot, got {_show(value)}."
            )
        numbers = [float(n) for n in found.groups() if n is not None]
        x, y = (numbers[0], numbers[1]) if len(numbers) == 2 else _centre(numbers)
        if not self.space.contains_model_point(x, y):
            w, h = self.space.model
            raise UITarsParseError(
                f"{field} ({x:g},{y:g}) is outside the screenshot; x must be within 0..{w} and y within 0..{h}."
            )
        return x, y

    def __call__(self, field: str) -> tuple[int, int]:
        point = self.model(field)
        assert point is not None
        return self.pixel(*point)

    def optional(self, field: str) -> tuple[int, int] | None:
        point = self.model(field, required=False)
        return None if point is None else self.pixel(*point)


def _centre(numbers: list[float]) -> tuple[float, float]:
    x1, y1, x2, y2 = numbers
    return (x1 + x2) / 2, (y1 + y2) / 2


def _text(call: UITarsCall, field: str) -> str:
    value = call.arguments.get(field)
    if value is None or not value:
        raise UITarsParseError(f"{call.name} requires {field}='...'.")
    if len(value) > MAX_TEXT_CHARS:
        raise UITarsParseError(
            f"{field} of {call.name} is {len(value)} characters long; at most {MAX_TEXT_CHARS} are allowed."
        )
    return value


_DIRECTIONS = ("up", "down", "left", "right")


def _direction(call: UITarsCall) -> str:
    direction = call.arguments.get("direction", "").strip().strip("'\"").lower()
    if direction not in _DIRECTIONS:
        raise UITarsParseError(
            f"scroll requires direction='up', 'down', 'left' or 'right', got {_show(direction)}."
        )
    return direction


def _finished(call: UITarsCall) -> list[Action]:
    content = call.arguments.get("content", "").strip()
    if len(content) > MAX_TEXT_CHARS:
        raise UITarsParseError(f"content of finished is longer than {MAX_TEXT_CHARS} characters.")
    done = Terminate(status="success")
    return [Answer(text=content), done] if content else [done]


def _hotkey(call: UITarsCall) -> Key:
    """``key='ctrl c'`` as taught (spaces separate keys; UI-TARS writes names in lowercase); ``ctrl+c`` and
    ``ctrl + c`` as sometimes written; a lone ``+`` is the plus key (:func:`screenpilot.actions.keys.split_combo`)."""
    value = call.arguments.get("key", call.arguments.get("hotkey", ""))
    try:
        keys = [k for k in split_combo(value, spaces=True) if k.strip()]
    except KeyComboError as error:
        raise UITarsParseError(
            f"hotkey key={value.strip()[:40]!r} ends with '+' and no key after it; "
            f"write key='{error.head} plus' for the plus key."
        ) from None
    if not keys:
        raise UITarsParseError("hotkey requires key='...', key names separated by spaces, e.g. key='ctrl c'.")
    return Key(keys=tuple(k.lower() for k in keys))


def _common(call: UITarsCall) -> list[Action] | None:
    """The actions both templates share that carry no point."""
    match call.name:
        case "type":
            return [TypeText(text=_text(call, "content"))]
        case "wait":
            return [Wait(seconds=WAIT_SECONDS)]
        case "finished":
            return _finished(call)
        case "call_user":
            return [Terminate(status="failure")]
    return None


def _desktop(call: UITarsCall, point: _Points) -> list[Action]:
    match call.name:
        case "click":
            return [Click(x=(p := point("start_box"))[0], y=p[1])]
        case "left_double":
            return [Click(x=(p := point("start_box"))[0], y=p[1], count=2)]
        case "right_single":
            return [Click(x=(p := point("start_box"))[0], y=p[1], button="right")]
        case "drag":
            (x, y), (x2, y2) = point("start_box"), point("end_box")
            return [Drag(x=x, y=y, x2=x2, y2=y2)]
        case "hotkey":
            return [_hotkey(call)]
        case "scroll":
            return [_wheel(_direction(call), point.optional("start_box"))]
    return _common(call) or []


def _wheel(direction: str, at: tuple[int, int] | None) -> Scroll:
    """Up and left reveal what lies before: positive pixels, as :class:`Scroll` counts."""
    pixels = SCROLL_PIXELS if direction in ("up", "left") else -SCROLL_PIXELS
    axis: Literal["vertical", "horizontal"] = "vertical" if direction in ("up", "down") else "horizontal"
    if at is None:
        return Scroll(pixels=pixels, axis=axis)
    return Scroll(pixels=pixels, axis=axis, x=at[0], y=at[1])


def _mobile(call: UITarsCall, point: _Points) -> list[Action]:
    match call.name:
        case "click":
            return [Click(x=(p := point("start_box"))[0], y=p[1])]
        case "long_press":
            return [LongPress(x=(p := point("start_box"))[0], y=p[1])]
        case "drag":
            (x, y), (x2, y2) = point("start_box"), point("end_box")
            return [Swipe(x=x, y=y, x2=x2, y2=y2)]
        case "scroll":
            return [_swipe(_direction(call), point)]
        case "open_app":
            return [OpenApp(app=_text(call, "app_name"))]
        case "press_home":
            return [SystemButton(button="home")]
        case "press_back":
            return [SystemButton(button="back")]
    return _common(call) or []


def _swipe(direction: str, point: _Points) -> Swipe:
    """A scroll on a phone: the finger moves against ``direction`` from the point (the screen's centre when
    absent) by :data:`SWIPE_FRACTION` of the screen, staying on it, so what lies that way comes into view."""
    w, h = point.space.model
    start = point.model("start_box", required=False) or (w / 2, h / 2)
    dx, dy = {"up": (0, 1), "down": (0, -1), "left": (1, 0), "right": (-1, 0)}[direction]
    end_x = min(max(start[0] + dx * w * SWIPE_FRACTION, 0), w - 1)
    end_y = min(max(start[1] + dy * h * SWIPE_FRACTION, 0), h - 1)
    (x, y), (x2, y2) = point.pixel(*start), point.pixel(end_x, end_y)
    return Swipe(x=x, y=y, x2=x2, y2=y2)


# -- the dialect ----------------------------------------------------------------------------------------------------
class UITars15Dialect:
    """Prompt and parser for UI-TARS-1.5: ``MOBILE_USE`` on phones, ``COMPUTER_USE`` on desktops.

    The image is resized client-side (factor 28) to exactly the size the model answers in, so a server's own
    resize must be a no-op (its pixel limits at least as wide as these). History: every earlier answer is an
    assistant turn (``Thought: …`` and ``Action: …`` with box tokens restored); the screenshots of the last
    ``keep_images`` steps go before their answers, each in its own user turn, as the reference agents send them.
    """

    name = "ui-tars-1.5"

    def __init__(
        self,
        platform: Platform = "desktop",
        *,
        min_pixels: int = UITARS_MIN_PIXELS,
        max_pixels: int = UITARS_MAX_PIXELS,
        keep_images: int = 0,
        language: str = "English",
    ) -> None:
        if platform not in ("mobile", "desktop"):
            raise ValueError(f"unknown platform {platform!r}: expected mobile or desktop")
        if keep_images < 0:
            raise ValueError("keep_images must be >= 0")
        self.platform: Platform = platform
        self.template = MOBILE_USE if platform == "mobile" else COMPUTER_USE
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.keep_images = keep_images
        self.language = language

    @classmethod
    def for_platform(
        cls,
        platform: Platform,
        *,
        answer_action: bool = False,
        reasoning: bool = False,
        **options: Any,
    ) -> UITars15Dialect:
        """The dialect from the options every dialect takes.

        ``answer_action`` and ``reasoning`` are built in: the model always writes a ``Thought:`` and always
        answers through ``finished(content=…)``, whatever they say. A ``max_pixels`` above the largest image the
        model was trained on is refused.
        """
        max_pixels = options.get("max_pixels", UITARS_MAX_PIXELS)
        if max_pixels > UITARS_MAX_PIXELS:
            raise SetupError(
                f"--max-pixels {max_pixels} is above {UITARS_MAX_PIXELS} (16384*28*28), the largest image "
                "UI-TARS-1.5 was trained on; lower it"
            )
        try:
            return cls(platform, **options)
        except TypeError as exc:
            raise SetupError(f"the ui-tars-1.5 dialect does not take that option: {exc}") from None

    def describe(self) -> dict[str, object]:
        """The settings a run records: the template (and its sha256), pixel limits, kept images, language."""
        return {
            "dialect": self.name,
            "template": "mobile_use" if self.platform == "mobile" else "computer_use",
            "template_sha256": template_sha256(self.template),
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
            "keep_images": self.keep_images,
            "language": self.language,
            "answer": "finished(content=...)",
        }

    # -- prompt -----------------------------------------------------------------------------------------------
    def coordinate_space(self, screen: Size) -> CoordinateSpace:
        """The screen and the factor-28 resized image the model sees and answers in."""
        return CoordinateSpace.for_screen(
            screen, min_pixels=self.min_pixels, max_pixels=self.max_pixels, factor=QWEN_FACTOR
        )

    def image_tokens(self, screen: Size) -> int:
        """How many ``<|image_pad|>`` tokens the processor makes of a screenshot of ``screen``: (W/28)·(H/28) of
        the factor-28 resized image the prompt states."""
        return patch_tokens(self.coordinate_space(screen).model, QWEN_FACTOR)

    def system_prompt(self, space: CoordinateSpace) -> str:
        """The system message: the Qwen2.5-VL default text (the instruction block is the first user turn)."""
        return SYSTEM_PREAMBLE

    def instruction(self, goal: str) -> str:
        """The filled ``COMPUTER_USE``/``MOBILE_USE`` template: the first user turn."""
        return self.template.format(language=self.language, instruction=goal)

    def messages(
        self,
        goal: str,
        screenshot: Image.Image,
        space: CoordinateSpace,
        history: Sequence[PastStep],
        feedback: str | None = None,
    ) -> list[Message]:
        out = [Message.text("system", SYSTEM_PREAMBLE), Message.text("user", self.instruction(goal))]
        out += self.history_messages(history, space)
        parts: list[TextPart | ImagePart] = [TextPart(f"Note: {feedback}\n")] if feedback else []
        parts.append(ImagePart(self.prepare_image(screenshot, space)))
        out.append(Message("user", tuple(parts)))
        return out

    def history_messages(self, history: Sequence[PastStep], space: CoordinateSpace) -> list[Message]:
        """Earlier answers as assistant turns, each kept screenshot in a user turn before its answer.

        The actions of one answer come back as one turn, joined by blank lines as the model wrote them.
        """
        with_images = [i for i, s in enumerate(history) if s.screenshot is not None]
        shown = set(with_images[-self.keep_images :]) if self.keep_images else set()
        out: list[Message] = []
        for i, step in enumerate(history):
            if i > 0 and step.call and _same_answer(history[i - 1], step) and out[-1].role == "assistant":
                joined = out[-1].content[0]
                assert isinstance(joined, TextPart)
                out[-1] = Message.text("assistant", f"{joined.text}\n\n{add_box_tokens(step.call)}")
                continue
            if i in shown:
                assert step.screenshot is not None
                out.append(Message("user", (ImagePart(self.prepare_image(step.screenshot, space)),)))
            out.append(Message.text("assistant", _answer_text(step)))
        return out

    @staticmethod
    def prepare_image(screenshot: Image.Image, space: CoordinateSpace) -> Image.Image:
        """Resize to the model frame (bicubic, as the processor does, byte for byte), RGB."""
        return model_image(screenshot, (space.model.width, space.model.height))

    def grounding_messages(
        self, target: str, screenshot: Image.Image, space: CoordinateSpace
    ) -> list[Message]:
        """The ``GROUNDING`` template with ``target`` as the instruction; the answer is one ``click``."""
        return [
            Message.text("system", SYSTEM_PREAMBLE),
            Message.text("user", GROUNDING.format(instruction=target)),
            Message("user", (ImagePart(self.prepare_image(screenshot, space)),)),
        ]

    def question_messages(
        self, question: str, screenshot: Image.Image, space: CoordinateSpace
    ) -> list[Message]:
        """The agent template asking for the answer in ``finished(content=…)``, the model's answer channel."""
        goal = QUESTION_INSTRUCTION.format(question=question)
        return self.messages(goal, screenshot, space, ())

    # -- answers ----------------------------------------------------------------------------------------------
    def summary(self, text: str) -> str | None:
        """The model's ``Thought:`` (it goes back into history with the step's actions)."""
        return read_thought(text)

    def parse(self, text: str, space: CoordinateSpace) -> list[ParsedAction]:
        """Actions of every call after ``Action:``; each point is rounded once, straight into each frame."""
        parsed: list[ParsedAction] = []
        for call in read_calls(text):
            models = self.call_to_actions(call, space, space.model_pixel)
            devices = self.call_to_actions(call, space, space.to_device)
            parsed += [
                ParsedAction(model=m, device=d, call=call.text) for m, d in zip(models, devices, strict=True)
            ]
        return parsed

    def call_to_actions(self, call: UITarsCall, space: CoordinateSpace, pixel: _Pixel) -> list[Action]:
        """One call as typed actions whose points ``pixel`` turns into pixels of one frame."""
        allowed = _MOBILE_ACTIONS if self.platform == "mobile" else _DESKTOP_ACTIONS
        if call.name not in allowed:
            raise UITarsParseError(
                f"Unknown action {_show(call.name)} on this {'phone' if self.platform == 'mobile' else 'desktop'}; "
                f"use one of: {', '.join(allowed)}."
            )
        build = _mobile if self.platform == "mobile" else _desktop
        try:
            return build(call, _Points(call, space, pixel))
        except UITarsParseError:
            raise
        except (ValueError, TypeError) as exc:  # pydantic validation of the action's fields
            raise UITarsParseError(f"Invalid arguments for {call.name}: {_first_line(exc)}") from exc

    # -- writing calls ----------------------------------------------------------------------------------------
    def action_names(self) -> frozenset[str]:
        """The actions of this platform's action space (``wait`` and ``call_user`` included, as parsed)."""
        return frozenset(_MOBILE_ACTIONS if self.platform == "mobile" else _DESKTOP_ACTIONS)

    def call_text(self, action: Action, space: CoordinateSpace) -> str:
        """``action`` (device pixels) as an ``Action:`` line, its points in pixels of the resized screenshot
        written ``'(x,y)'`` (as a server that skips special tokens returns them). ``wait()`` is always 5 s, a
        desktop scroll always 500 px; an answer is ``finished(content=…)``, a failure ``call_user()``."""
        model = space.action_to_model(action)
        platform_call = self._mobile_call if self.platform == "mobile" else self._desktop_call
        call = platform_call(model) or self._common_call(model)
        if call is None:
            raise NoCallForm(
                f"UI-TARS has no way to write this {action_kind(action)} action on a {self.platform}"
            )
        return f"Action: {call}"

    @staticmethod
    def _common_call(action: Action) -> str | None:
        def quoted(text: str) -> str:
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"

        match action:
            case TypeText(text=text):
                return f"type(content={quoted(text)})"
            case Wait():
                return "wait()"
            case Answer(text=text):
                return f"finished(content={quoted(text)})"
            case Terminate(status="success"):
                return "finished()"
            case Terminate(status="failure"):
                return "call_user()"
        return None

    @staticmethod
    def _mobile_call(action: Action) -> str | None:
        match action:
            case Click(x=int() as x, y=int() as y, button="left", count=1):
                return f"click(start_box='({x},{y})')"
            case LongPress(x=x, y=y):
                return f"long_press(start_box='({x},{y})')"
            case Swipe(x=x, y=y, x2=x2, y2=y2):
                return f"drag(start_box='({x},{y})', end_box='({x2},{y2})')"
            case OpenApp(app=app):
                return "open_app(app_name='" + app.replace("\\", "\\\\").replace("'", "\\'") + "')"
            case SystemButton(button="home"):
                return "press_home()"
            case SystemButton(button="back"):
                return "press_back()"
        return UITars15Dialect._scroll_call(action)

    @staticmethod
    def _desktop_call(action: Action) -> str | None:
        names = {("left", 1): "click", ("left", 2): "left_double", ("right", 1): "right_single"}
        match action:
            case Click(x=int() as x, y=int() as y, button=button, count=count) if (button, count) in names:
                return f"{names[(button, count)]}(start_box='({x},{y})')"
            case Drag(x=int() as x, y=int() as y, x2=x2, y2=y2):
                return f"drag(start_box='({x},{y})', end_box='({x2},{y2})')"
            case Key(keys=keys) if all(key.strip() and " " not in key for key in keys):
                return f"hotkey(key='{' '.join(keys)}')"
        return UITars15Dialect._scroll_call(action)

    @staticmethod
    def _scroll_call(action: Action) -> str | None:
        """A scroll as ``scroll(direction=…)``: on a phone the model's scroll is a half-screen swipe."""
        match action:
            case Scroll(axis=axis, pixels=pixels, x=x, y=y) if pixels != 0:
                sides = ("up", "down") if axis == "vertical" else ("left", "right")
                at = f"start_box='({x},{y})', " if x is not None else ""
                return f"scroll({at}direction='{sides[0] if pixels > 0 else sides[1]}')"
        return None


def _same_answer(before: PastStep, step: PastStep) -> bool:
    """Whether ``step`` is a further action of the answer ``before`` came from (same thought, no new screen)."""
    return step.screenshot is None and step.summary is not None and step.summary == before.summary


def _answer_text(step: PastStep) -> str:
    """An earlier answer as the model wrote it: its thought, then its action with box tokens restored."""
    thought = f"Thought: {step.summary}" if step.summary else ""
    action = f"Action: {add_box_tokens(step.call)}" if step.call else ""
    return "\n".join(part for part in (thought, action) if part)


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in lines[:3])
