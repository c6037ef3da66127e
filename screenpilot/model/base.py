"""What every model backend speaks: backend-neutral chat messages in, raw text and usage out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from PIL import Image
from pydantic import BaseModel, ConfigDict

from screenpilot.errors import ScreenpilotError


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


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage


class ModelBackendError(ScreenpilotError):
    """The backend could not produce an answer (server down, out of memory, replay exhausted)."""


@runtime_checkable
class ModelBackend(Protocol):
    """A locally hosted VLM. ``complete`` returns the raw text, special tool-call tags kept."""

    #: Identifies the model in run manifests (hub id, path, URL or replay file).
    name: str

    def complete(self, messages: Sequence[Message]) -> Completion: ...

    def begin_episode(self, task_id: str | None) -> None:
        """Called before each episode; replay models use it to pick the task's answers."""

    def describe(self) -> dict[str, object]:
        """Settings that make a run reproducible (id, revision, decoding, pixel limits)."""
        ...

    def close(self) -> None: ...


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
