"""An image-only Qwen2-VL/Qwen2.5-VL processor, for machines where the stock processor cannot be built.

Transformers' ``Qwen2_5_VLProcessor`` always builds a video processor, and that one needs torchvision, which
cannot be installed beside some torch builds (the CPU wheels among them). screenpilot only ever sends
still images, so a processor without the video half does the same work: the tokenizer plus the PIL image
processor, with the same ``<|image_pad|>`` expansion.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin


class ImageOnlyQwenVLProcessor(Qwen2_5_VLProcessor):  # type: ignore[misc]
    """``Qwen2_5_VLProcessor`` whose ``__init__`` takes no video processor (so none is ever loaded)."""

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.image_token
        )
        self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(
            self.video_token
        )
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)


def load_image_only_processor(
    model_id: str, *, min_pixels: int, max_pixels: int, **hub_kwargs: Any
) -> ImageOnlyQwenVLProcessor:
    """Tokenizer + image processor from ``model_id``, with the pixel limits forced to the given ones."""
    tokenizer = AutoTokenizer.from_pretrained(model_id, **hub_kwargs)
    image_processor = AutoImageProcessor.from_pretrained(
        model_id, min_pixels=min_pixels, max_pixels=max_pixels, **hub_kwargs
    )
    return ImageOnlyQwenVLProcessor(
        image_processor, tokenizer, chat_template=getattr(tokenizer, "chat_template", None)
    )
