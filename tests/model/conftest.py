"""Tiny random Qwen2.5-VL checkpoints, built once per test session and loaded like real ones."""

from __future__ import annotations

from pathlib import Path

import pytest

# Small limits keep the images (and so the vision encoder's work) tiny: 1080x2400 -> 252x588, 189 tokens.
TEST_MIN_PIXELS = 4 * 28 * 28
TEST_MAX_PIXELS = 200 * 28 * 28


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module in ("torch", "transformers", "tokenizers"):
        pytest.importorskip(module)
    from tests.model.tiny_qwen import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen25vl"))


@pytest.fixture(scope="session")
def tiny_backend(tiny_qwen_dir: Path):  # type: ignore[no-untyped-def]
    from screenpilot.model.transformers_backend import TransformersBackend

    backend = TransformersBackend(
        str(tiny_qwen_dir),
        device="cpu",
        min_pixels=TEST_MIN_PIXELS,
        max_pixels=TEST_MAX_PIXELS,
        max_new_tokens=8,
    )
    yield backend
    backend.close()
