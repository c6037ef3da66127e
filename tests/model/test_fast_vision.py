"""Qwen2.5-VL's window attention in one call per layer: the same image features as transformers' own loop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.model.fast_vision import (
    WindowPlan,
    install_batched_windows,
    uninstall_batched_windows,
    uses_batched_windows,
)
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.transformers_backend import TransformersBackend
from tests.model.conftest import TEST_MAX_PIXELS, TEST_MIN_PIXELS
from tests.model.tiny_qwen import build_tiny_qwen25vl

torch = pytest.importorskip("torch")


def backend_for(folder: Path, **options: Any) -> TransformersBackend:
    return TransformersBackend(
        str(folder),
        device="cpu",
        min_pixels=TEST_MIN_PIXELS,
        max_pixels=TEST_MAX_PIXELS,
        max_new_tokens=12,
        **options,
    )


@pytest.fixture(scope="module")
def backend(tiny_qwen_dir: Path) -> Iterator[TransformersBackend]:
    loaded = backend_for(tiny_qwen_dir)
    yield loaded
    loaded.close()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def features(backend: TransformersBackend, images: list[Image.Image], batched: bool) -> list[Any]:
    model = backend.model
    if batched:
        assert install_batched_windows(model)
    else:
        uninstall_batched_windows(model)
    try:
        text = "<|vision_start|><|image_pad|><|vision_end|>" * len(images)
        inputs = backend.processor(text=[text], images=images, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        return list(out.pooler_output)
    finally:
        install_batched_windows(model)  # the backend's default


# Ragged edge windows (252x588: 9x21 merged units in 4x4 windows), windows that tile the image exactly
# (224x448: no padding, no mask), one window (56x56), and two images of different sizes in one call (the
# full-attention layers then attend within each image, padded).
CASES = {
    "ragged windows": [(252, 588)],
    "whole windows": [(224, 448)],
    "one window": [(56, 56)],
    "two images": [(252, 588), (364, 196)],
}


@pytest.mark.parametrize("sizes", CASES.values(), ids=list(CASES))
def test_image_features_equal_the_reference_loop(
    backend: TransformersBackend, sizes: list[tuple[int, int]]
) -> None:
    images = [noise(w, h, seed=n) for n, (w, h) in enumerate(sizes)]
    reference = features(backend, images, batched=False)
    batched = features(backend, images, batched=True)
    assert len(batched) == len(reference) == len(images)
    for ours, theirs in zip(batched, reference, strict=True):
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


class AttentionCalls:
    """Counts calls to torch's SDPA while still running it."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = torch.nn.functional.scaled_dot_product_attention

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.real(*args, **kwargs)


def test_each_layer_makes_one_attention_call(
    backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = AttentionCalls()
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counter)
    image = noise(252, 588)
    features(backend, [image], batched=False)
    per_window = counter.calls
    counter.calls = 0
    features(backend, [image], batched=True)
    depth = len(backend.model.model.visual.blocks)
    assert counter.calls == depth  # one window layer, one full-attention layer
    assert per_window == 18 + 1  # the stock loop: one call per window (3x6 windows), then the whole image


def test_padded_plan_keeps_every_token_once_in_order() -> None:
    plan = WindowPlan(torch.tensor([0, 4, 4, 9, 11]))  # an empty window, lengths 4, 5, 2
    assert plan.windows == 3 and plan.longest == 5 and not plan.single
    assert plan.rows is not None and plan.mask is not None
    order = plan.index.flatten()[plan.rows]
    assert order.tolist() == list(range(11))
    assert plan.mask.shape == (3, 1, 1, 5)
    assert plan.mask[:, 0, 0].sum(dim=1).tolist() == [4, 5, 2]


def test_the_same_greedy_answer_with_and_without(tiny_qwen_dir: Path, backend: TransformersBackend) -> None:
    dialect = Qwen25VLDialect("mobile_use", min_pixels=TEST_MIN_PIXELS, max_pixels=TEST_MAX_PIXELS)
    screen = Size(1080, 2400)
    messages = dialect.messages(
        "Open the settings app", noise(1080, 2400), dialect.coordinate_space(screen), []
    )
    stock = backend_for(tiny_qwen_dir, batched_vision=False, reuse_system_kv=False)
    try:
        assert not uses_batched_windows(stock.model)
        assert stock.describe()["fast_paths"]["batched_vision"] == "off: asked"  # type: ignore[index]
        expected = stock.complete(messages)
    finally:
        stock.close()
    assert uses_batched_windows(backend.model)
    assert backend.describe()["fast_paths"]["batched_vision"] == "on"  # type: ignore[index]
    answer = backend.complete(messages)
    assert answer.text == expected.text and answer.usage.output_tokens == expected.usage.output_tokens


def test_other_attention_implementations_keep_the_stock_path(tiny_qwen_dir: Path) -> None:
    eager = backend_for(tiny_qwen_dir, attn_implementation="eager")
    try:
        assert not eager.batched_vision and not uses_batched_windows(eager.model)
        assert eager.fast_paths["batched_vision"] == "off: the vision attention is eager, not sdpa"
    finally:
        eager.close()


def test_models_without_windows_keep_the_stock_path(tmp_path: Path) -> None:
    folder = build_tiny_qwen25vl(tmp_path / "qwen2vl", model_type="qwen2_vl")
    qwen2 = backend_for(folder)
    try:
        assert not qwen2.batched_vision
        assert qwen2.fast_paths["batched_vision"] == "off: the vision encoder has no window attention"
    finally:
        qwen2.close()
