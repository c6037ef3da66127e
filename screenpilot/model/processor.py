"""Image-only Qwen-VL processors, for machines where the stock processor cannot be built.

Transformers' ``Qwen2_5_VLProcessor`` and ``Qwen3VLProcessor`` always build a video processor, and that one
needs torchvision, which cannot be installed beside some torch builds (the CPU wheels among them).
screenpilot only ever sends still images, so a processor without the video half does the same work: the
tokenizer plus the image processor, with the same ``<|image_pad|>`` expansion.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLProcessor, Qwen3VLProcessor
from transformers.processing_utils import ProcessorMixin


def _token(tokenizer: Any, name: str, default: str) -> tuple[str, int]:
    """A vision token of the tokenizer, and its id."""
    token = getattr(tokenizer, name, None) or default
    token_id = getattr(tokenizer, f"{name}_id", None) or tokenizer.convert_tokens_to_ids(token)
    return token, token_id


class ImageOnlyQwenVLProcessor(Qwen2_5_VLProcessor):  # type: ignore[misc]
    """``Qwen2_5_VLProcessor`` whose ``__init__`` takes no video processor (so none is ever loaded)."""

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.image_token, self.image_token_id = _token(tokenizer, "image_token", "<|image_pad|>")
        self.video_token, self.video_token_id = _token(tokenizer, "video_token", "<|video_pad|>")
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):  # type: ignore[misc]
    """``Qwen3VLProcessor`` whose ``__init__`` takes no video processor (so none is ever loaded)."""

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.image_token, self.image_token_id = _token(tokenizer, "image_token", "<|image_pad|>")
        self.video_token, self.video_token_id = _token(tokenizer, "video_token", "<|video_pad|>")
        self.vision_start_token, self.vision_start_token_id = _token(
            tokenizer, "vision_start_token", "<|vision_start|>"
        )
        self.vision_end_token, self.vision_end_token_id = _token(
            tokenizer, "vision_end_token", "<|vision_end|>"
        )
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)


#: config.model_type -> the image-only processor for it (Qwen2-VL's processor is Qwen2.5-VL's).
IMAGE_ONLY_PROCESSORS: dict[str, type[ProcessorMixin]] = {
    "qwen2_vl": ImageOnlyQwenVLProcessor,
    "qwen2_5_vl": ImageOnlyQwenVLProcessor,
    "qwen3_vl": ImageOnlyQwen3VLProcessor,
    "qwen3_vl_moe": ImageOnlyQwen3VLProcessor,
}


def load_image_only_processor(
    model_id: str, *, min_pixels: int, max_pixels: int, model_type: str = "qwen2_5_vl", **hub_kwargs: Any
) -> ProcessorMixin:
    """Tokenizer + image processor from ``model_id``, with the pixel limits forced to the given ones."""
    tokenizer = AutoTokenizer.from_pretrained(model_id, **hub_kwargs)
    image_processor = AutoImageProcessor.from_pretrained(
        model_id, min_pixels=min_pixels, max_pixels=max_pixels, **hub_kwargs
    )
    cls = IMAGE_ONLY_PROCESSORS.get(model_type, ImageOnlyQwenVLProcessor)
    return cls(image_processor, tokenizer, chat_template=getattr(tokenizer, "chat_template", None))
