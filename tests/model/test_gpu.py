"""The transformers backend on a CUDA GPU (run with ``-m gpu``); the tiny checkpoint needs no hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_batched_windows_equal_the_per_window_loop_on_cuda(tmp_path: Path, dtype: str) -> None:
    from tests.model.test_fast_vision import CASES, features, noise

    folder = build_tiny_qwen25vl(tmp_path / "tiny")
    backend = TransformersBackend(
        str(folder), device="cuda", dtype=dtype, min_pixels=TEST_MIN_PIXELS, max_pixels=TEST_MAX_PIXELS
    )
    atol, rtol = (1e-4, 1e-4) if dtype == "float32" else (8e-3, 2e-2)  # features are about 0.1 in size
    try:
        assert backend.fast_paths["batched_vision"] == "on"
        for sizes in CASES.values():
            images = [noise(w, h, seed=n) for n, (w, h) in enumerate(sizes)]
            reference = features(backend, images, batched=False)
            for ours, theirs in zip(features(backend, images, batched=True), reference, strict=True):
                assert ours.device.type == "cuda"
                torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol)
    finally:
        backend.close()


def test_the_speed_levers_answer_as_the_stock_path_and_never_recompile(
    tiny_qwen_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.model.test_fast_decode import STEPS

    options: dict[str, Any] = {
        "device": "cuda",
        "dtype": "float32",  # bf16 rounding would make near-tied greedy tokens differ between paths
        "min_pixels": TEST_MIN_PIXELS,
        "max_pixels": TEST_MAX_PIXELS,
        "max_new_tokens": 12,
    }
    stock = TransformersBackend(
        str(tiny_qwen_dir), batched_vision=False, reuse_system_kv=False, decode_graphs=False, **options
    )
    try:
        expected = [stock.complete(m).text for m in STEPS]
    finally:
        stock.close()
    fast = TransformersBackend(str(tiny_qwen_dir), **options)
    try:
        assert fast.fast_paths == {"batched_vision": "on", "decode_graphs": "on", "reuse_system_kv": "on"}
        with caplog.at_level("WARNING", logger="screenpilot.model"):
            answers = [fast.complete(STEPS[0]).text]  # compiles
            with torch._dynamo.config.patch(error_on_recompile=True):
                answers += [fast.complete(m).text for m in STEPS[1:3]]  # longer prompts, one cache size
            answers.append(fast.complete(STEPS[3]).text)  # another system prompt
        assert fast.fast_paths["decode_graphs"] == "on"  # compiled, not fallen back
        assert sum("compiling the decoding step" in r.getMessage() for r in caplog.records) == 1
    finally:
        fast.close()
    assert answers == expected


def test_qwen3_vl_runs_with_decoding_graphs(tmp_path: Path) -> None:
    from tests.model.test_qwen3vl_backend import MAX_PIXELS, MIN_PIXELS, prompt_for
    from tests.model.tiny_qwen import build_tiny_qwen3vl

    folder = build_tiny_qwen3vl(tmp_path / "q3", chain=["Ċ", "<tool_call>", "</tool_call>", "<|im_end|>"])
    backend = TransformersBackend(
        str(folder), min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, max_new_tokens=16
    )
    try:
        assert backend.fast_paths == {
            "batched_vision": "off: the vision encoder has no window attention",
            "decode_graphs": "on",
            "reuse_system_kv": "on",
        }
        screens = [Size(1080, 2400), Size(1080, 2400)]
        assert [backend.complete(prompt_for(s)).text for s in screens] == ["<tool_call></tool_call>"] * 2
        assert backend.fast_paths["decode_graphs"] == "on"
    finally:
        backend.close()
