"""The device-neutral action vocabulary.

Every action a supported model can express is one frozen pydantic model tagged by ``action``. Points are
plain integer pixels; which frame they are in (model image or device screen) is decided by whoever holds
the action, and crossing frames goes through :class:`screenpilot.actions.coords.CoordinateSpace` only.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

#: Largest scroll amount an action may ask for, either way (a few screens; the model's examples use 500).
MAX_SCROLL_PIXELS = 10_000


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Click(_Action):
    """Press and release a button at a point; no point means wherever the cursor is (desktop only)."""

    action: Literal["click"] = "click"
    x: int | None = Field(default=None, description="Horizontal pixel, or None for the current cursor")
    y: int | None = Field(default=None, description="Vertical pixel, or None for the current cursor")
    button: Literal["left", "right", "middle"] = Field(default="left", description="Mouse button")
    count: Literal[1, 2, 3] = Field(
        default=1, description="1 for a click, 2 for a double click, 3 for a triple click"
    )


class LongPress(_Action):
    """Touch and hold a point."""

    action: Literal["long_press"] = "long_press"
    x: int
    y: int
    seconds: float = Field(default=1.0, gt=0, le=60, description="How long to hold")


class Swipe(_Action):
    """A touch gesture from (x, y) to (x2, y2)."""

    action: Literal["swipe"] = "swipe"
    x: int
    y: int
    x2: int
    y2: int
    seconds: float = Field(default=0.3, gt=0, le=10, description="Duration of the gesture")


class Drag(_Action):
    """Press at (x, y) (or at the cursor when absent), move to (x2, y2), release."""

    action: Literal["drag"] = "drag"
    x: int | None = None
    y: int | None = None
    x2: int
    y2: int
    seconds: float = Field(default=0.5, gt=0, le=10)


class MouseMove(_Action):
    action: Literal["mouse_move"] = "mouse_move"
    x: int
    y: int


class Scroll(_Action):
    """Scroll the wheel; ``pixels`` > 0 scrolls up (reveals content above), as the model was taught.

    A horizontal scroll mirrors that: ``pixels`` > 0 scrolls left (reveals content to the left), negative
    scrolls right. Dialects whose models use another sign convention map it when they parse.
    """

    action: Literal["scroll"] = "scroll"
    pixels: int = Field(
        ge=-MAX_SCROLL_PIXELS,
        le=MAX_SCROLL_PIXELS,
        description="Amount; positive scrolls up (or left), negative down (or right). Never mapped between frames",
    )
    axis: Literal["vertical", "horizontal"] = Field(
        default="vertical", description="vertical (the usual wheel) or horizontal"
    )
    x: int | None = Field(default=None, description="Where to scroll, or None for the current cursor")
    y: int | None = None


class TypeText(_Action):
    """Type text into the focused field. Any Unicode; environments refuse what they cannot type."""

    action: Literal["type"] = "type"
    text: str


class Key(_Action):
    """Press keys together (a combination), released in reverse order. One key for mobile key events."""

    action: Literal["key"] = "key"
    keys: tuple[str, ...] = Field(min_length=1, description="Key names as the model gave them")


class SystemButton(_Action):
    action: Literal["system_button"] = "system_button"
    button: Literal["back", "home", "menu", "enter"]


class OpenApp(_Action):
    action: Literal["open_app"] = "open_app"
    app: str = Field(min_length=1, description="Human name of the app, e.g. 'Settings'")


class Wait(_Action):
    action: Literal["wait"] = "wait"
    seconds: float = Field(default=1.0, ge=0, le=120)


class Answer(_Action):
    """The agent's answer to an information question; ends the episode when the loop is told to."""

    action: Literal["answer"] = "answer"
    text: str


class Terminate(_Action):
    action: Literal["terminate"] = "terminate"
    status: Literal["success", "failure"]


Action: TypeAlias = Annotated[
    Click
    | LongPress
    | Swipe
    | Drag
    | MouseMove
    | Scroll
    | TypeText
    | Key
    | SystemButton
    | OpenApp
    | Wait
    | Answer
    | Terminate,
    Field(discriminator="action"),
]

ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)

#: Names of the action kinds that carry screen points (and so are mapped between frames).
POINTER_ACTIONS = frozenset({"click", "long_press", "swipe", "drag", "mouse_move", "scroll"})


def action_kind(action: Action) -> str:
    """The action's name, finer where environments differ: ``triple_click`` for a three-click
    :class:`Click`, ``hscroll`` for a horizontal :class:`Scroll`, otherwise ``action.action``."""
    if isinstance(action, Click) and action.count == 3:
        return "triple_click"
    if isinstance(action, Scroll) and action.axis == "horizontal":
        return "hscroll"
    return action.action


def action_from_dict(data: dict[str, object]) -> Action:
    """Validate a plain dict (e.g. one line of a trajectory) into an action."""
    return ACTION_ADAPTER.validate_python(data)


def action_to_dict(action: Action) -> dict[str, object]:
    """Plain JSON-ready dict, absent optional points left out.

    A vertical scroll is written without ``axis`` (the default), so it reads the same as before the field
    existed; a horizontal one always carries ``"axis": "horizontal"``.
    """
    data = action.model_dump(mode="json", exclude_none=True)
    if data.get("axis") == "vertical":
        del data["axis"]
    return data
