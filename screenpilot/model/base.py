"""What every model backend speaks: backend-neutral chat messages in, raw text and usage out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, runtime_checkable

from PIL import Image
from pydantic import BaseModel, ConfigDict

from screenpilot.errors import ScreenpilotError, SetupError

T = TypeVar("T")

#: The start-up check's default bound: a bad model fails within it, before the first episode.
CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    """An image already resized to the size the prompt states; backends must not resize it again."""

    image: Image.Image


Part = TextPart | ImagePart


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: tuple[Part, ...]

    @classmethod
    def text(cls, role: Literal["system", "user", "assistant"], text: str) -> Message:
        return cls(role, (TextPart(text),))

    @property
    def images(self) -> list[Image.Image]:
        return [p.image for p in self.content if isinstance(p, ImagePart)]


class Usage(BaseModel):
    """What one model call cost. Fields a backend cannot know stay None."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int | None = None
    image_tokens: int | None = None
    output_tokens: int | None = None
    time_to_first_token_s: float | None = None
    total_s: float = 0.0
    """Wall time of the whole call: every try and every wait between tries included."""
    tries: int = 1
    """How many requests the call took (more than 1 when transient failures were retried)."""


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage

    @property
    def tries(self) -> int:
        return self.usage.tries

    @property
    def total_s(self) -> float:
        return self.usage.total_s


class ModelBackendError(ScreenpilotError):
    """The backend could not produce an answer (server down, out of memory, replay exhausted)."""


class DeadlineExceeded(ModelBackendError):
    """The call's deadline came before an answer: the time budget, not the backend, ended it."""


def seconds_left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (a ``time.monotonic()`` value), or None without one."""
    return None if deadline is None else deadline - time.monotonic()


def run_bounded(fn: Callable[[], T], timeout_s: float, what: str) -> T:
    """``fn()`` in a daemon thread, waited for at most ``timeout_s``; SetupError if it takes longer.

    For start-up checks whose libraries have no overall timeout (name resolution, a hub client's retries):
    the check must answer in time, and a late thread is left to finish on its own.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"check {what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise SetupError(f"{what} did not answer within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


@runtime_checkable
class ModelBackend(Protocol):
    """A locally hosted VLM. ``complete`` returns the raw text, special tool-call tags kept."""

    #: Identifies the model in run manifests (hub id, path, URL or replay file).
    name: str

    def complete(self, messages: Sequence[Message], *, deadline: float | None = None) -> Completion:
        """The model's answer. ``deadline`` (a ``time.monotonic()`` value) bounds the call, retries included:
        past it the backend raises :class:`DeadlineExceeded` (or returns what it generated so far)."""
        ...

    def begin_episode(self, task_id: str | None) -> None:
        """Called before each episode; replay models use it to pick the task's answers."""

    def describe(self) -> dict[str, object]:
        """Settings that make a run reproducible (id, revision, decoding, pixel limits)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class HasModelType(Protocol):
    """A backend that knows which architecture it runs (a local checkpoint's ``config.json`` ``model_type``),
    so the dialect can default to the one that checkpoint was trained on."""

    model_type: str


@runtime_checkable
class SupportsCheck(Protocol):
    """A backend that can check, once and quickly, that it will be able to answer.

    Called before the first episode; raises :class:`~screenpilot.errors.SetupError` with what to do (start
    the server, download the weights, pick a served model) within about ``timeout_s``.
    """

    def check(self, timeout_s: float = CHECK_TIMEOUT_S) -> None: ...


def render_chatml(messages: Sequence[Message], *, add_generation_prompt: bool = True) -> str:
    """Render messages the way Qwen2-VL/Qwen2.5-VL's chat template does.

    Content parts are concatenated with no separator; an image part becomes
    ``<|vision_start|><|image_pad|><|vision_end|>``. The default system prompt is added only when the first
    message is not a system message. Kept here (rather than calling the processor's template) so the exact
    bytes are ours to test.
    """
    out: list[str] = []
    if not messages or messages[0].role != "system":
        out.append("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    for message in messages:
        body = "".join(
            p.text if isinstance(p, TextPart) else "<|vision_start|><|image_pad|><|vision_end|>"
            for p in message.content
        )
        out.append(f"<|im_start|>{message.role}\n{body}<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)
