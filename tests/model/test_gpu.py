"""The transformers backend on a CUDA GPU (run with ``-m gpu``); the tiny checkpoint needs no hub."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.transformers_backend import TransformersBackend
from tests.model.conftest import TEST_MAX_PIXELS, TEST_MIN_PIXELS
from tests.model.tiny_qwen import build_tiny_qwen25vl

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("cache_implementation", [None, "static"])
def test_cuda_bf16_by_default_and_same_answer_as_cpu(
    tmp_path: Path, cache_implementation: str | None
) -> None:
    folder = build_tiny_qwen25vl(tmp_path / "tiny", chain=["Ċ", "<tool_call>", "</tool_call>", "<|im_end|>"])
    dialect = Qwen25VLDialect(min_pixels=TEST_MIN_PIXELS, max_pixels=TEST_MAX_PIXELS)
    space = dialect.coordinate_space(Size(1080, 2400))
    messages = dialect.messages("Open settings", Image.new("RGB", (1080, 2400), "white"), space, [])
    options = {"min_pixels": TEST_MIN_PIXELS, "max_pixels": TEST_MAX_PIXELS, "max_new_tokens": 16}
    gpu = TransformersBackend(str(folder), cache_implementation=cache_implementation, **options)
    try:
        described = gpu.describe()
        assert described["device"] == "cuda" and described["dtype"] == "bfloat16"
        assert next(gpu.model.parameters()).device.type == "cuda"
        first = gpu.complete(messages)
        assert gpu.complete(messages).text == first.text == "<tool_call></tool_call>"
        assert first.usage.image_tokens == 189 and first.usage.output_tokens == 3
        assert first.usage.time_to_first_token_s is not None
        assert 0 < first.usage.time_to_first_token_s <= first.usage.total_s
    finally:
        gpu.close()


def test_device_auto_places_the_layers_on_the_gpus(tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    folder = build_tiny_qwen25vl(tmp_path / "tiny", chain=["Ċ", "<tool_call>", "</tool_call>", "<|im_end|>"])
    dialect = Qwen25VLDialect(min_pixels=TEST_MIN_PIXELS, max_pixels=TEST_MAX_PIXELS)
    space = dialect.coordinate_space(Size(1080, 2400))
    messages = dialect.messages("Open settings", Image.new("RGB", (1080, 2400), "white"), space, [])
    backend = TransformersBackend(
        str(folder), device="auto", min_pixels=TEST_MIN_PIXELS, max_pixels=TEST_MAX_PIXELS, max_new_tokens=16
    )
    try:
        assert backend.describe()["dtype"] == "bfloat16"
        assert {p.device.type for p in backend.model.parameters()} == {"cuda"}
        assert backend.complete(messages).text == "<tool_call></tool_call>"
    finally:
        backend.close()
