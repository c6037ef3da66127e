"""A tiny random Qwen3-VL checkpoint, loaded with its own class and processor, seeing the image tokens the
Qwen3-VL dialect's factor-32 resize implies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import Limits, run_episode
from screenpilot.envs.fake import FakeEnv
from screenpilot.model.base import ImagePart, Message, ModelBackendError, TextPart, render_chatml
from screenpilot.model.dialects import dialect_for_model_type
from screenpilot.model.qwen3vl import Qwen3VLDialect
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.transformers_backend import TransformersBackend

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

# Small limits keep the vision work tiny: 1080x2400 -> 288x672, 189 tokens.
MIN_PIXELS = 4 * 32 * 32
MAX_PIXELS = 200 * 32 * 32


def dialect(tool: str = "mobile_use") -> Qwen3VLDialect:
    return Qwen3VLDialect(tool, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)  # type: ignore[arg-type]


def prompt_for(screen: Size, tool: str = "mobile_use") -> list[Message]:
    d = dialect(tool)
    return d.messages(
        "Open the settings app", Image.new("RGB", screen, "white"), d.coordinate_space(screen), []
    )


def backend_for(folder: Path, **kwargs: object) -> TransformersBackend:
    options: dict[str, object] = {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, "max_new_tokens": 4}
    return TransformersBackend(str(folder), device="cpu", **{**options, **kwargs})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.model.tiny_qwen import build_tiny_qwen3vl

    return build_tiny_qwen3vl(tmp_path_factory.mktemp("tiny-qwen3vl"))


@pytest.fixture(scope="module")
def backend(tiny_qwen3_dir: Path) -> Iterator[TransformersBackend]:
    loaded = backend_for(tiny_qwen3_dir)
    yield loaded
    loaded.close()


def test_loads_with_its_own_class_and_processor(backend: TransformersBackend) -> None:
    assert backend.model_type == "qwen3_vl"
    assert dialect_for_model_type(backend.model_type) == "qwen3-vl"
    assert type(backend.model).__name__ == "Qwen3VLForConditionalGeneration"
    assert "Qwen3VL" in type(backend.processor).__name__
    assert (backend.patch_size, backend.merge_size, backend.factor) == (16, 2, 32)
    info = backend.describe()
    assert (info["model_type"], info["architecture"]) == ("qwen3_vl", "Qwen3VLForConditionalGeneration")


@pytest.mark.parametrize("screen", [Size(1080, 2400), Size(2400, 1080), Size(1920, 1080), Size(393, 852)])
def test_the_model_sees_the_image_tokens_the_dialect_implies(
    backend: TransformersBackend, screen: Size
) -> None:
    messages = prompt_for(screen, "mobile_use" if screen.height > screen.width else "computer_use")
    expected = dialect().image_tokens(screen)
    completion = backend.complete(messages)
    assert completion.usage.image_tokens == expected
    text_tokens = len(backend.processor.tokenizer(render_chatml(messages))["input_ids"])
    assert completion.usage.prompt_tokens == text_tokens - 1 + expected  # the one <|image_pad|> expanded
    assert completion.usage.output_tokens is not None and 1 <= completion.usage.output_tokens <= 4


def test_decoding_is_greedy_and_deterministic(backend: TransformersBackend) -> None:
    messages = prompt_for(Size(1080, 2400))
    assert backend.complete(messages).text == backend.complete(messages).text


def test_scripted_answer_passes_through_generate_and_stops_at_im_end(tmp_path: Path) -> None:
    from tests.model.tiny_qwen import build_tiny_qwen3vl

    folder = build_tiny_qwen3vl(
        tmp_path / "scripted", chain=["Ċ", "<tool_call>", "</tool_call>", "<|im_end|>"]
    )
    scripted = backend_for(folder, max_new_tokens=20)
    try:
        completion = scripted.complete(prompt_for(Size(1080, 2400)))
    finally:
        scripted.close()
    assert completion.text == "<tool_call></tool_call>"
    assert completion.usage.output_tokens == 3


def test_a_factor_28_image_is_refused_rather_than_resized(backend: TransformersBackend) -> None:
    old = Qwen25VLDialect(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    image = old.prepare_image(Image.new("RGB", (1080, 2400)), old.coordinate_space(Size(1080, 2400)))
    bad = [Message.text("system", "s"), Message("user", (TextPart("hi"), ImagePart(image)))]
    with pytest.raises(ModelBackendError, match=r"not at the model's size for factor 32"):
        backend.complete(bad)


def test_a_backend_with_narrower_pixel_limits_refuses_the_dialects_image(tiny_qwen3_dir: Path) -> None:
    narrow = backend_for(tiny_qwen3_dir, max_pixels=100 * 32 * 32)
    try:
        with pytest.raises(ModelBackendError, match="would resize it to"):
            narrow.complete(prompt_for(Size(1080, 2400)))
    finally:
        narrow.close()


def test_an_episode_runs_with_the_qwen3_dialect(backend: TransformersBackend) -> None:
    screen = Size(1080, 2400)
    agent = Agent(backend, dialect(), max_retries=0)
    episode = run_episode(
        FakeEnv(screen), agent, "Open the settings app", limits=Limits(max_steps=2, max_failed_steps=2)
    )
    usages = [u for step in episode for u in step.record.usage]
    assert usages and all(u.image_tokens == 189 for u in usages)


def test_the_speed_levers_that_apply_are_on_and_the_others_say_why(backend: TransformersBackend) -> None:
    assert backend.describe()["fast_paths"] == {
        "batched_vision": "off: the vision encoder has no window attention",  # one attention call already
        "decode_graphs": "off: CUDA graphs need one CUDA device (the model is on cpu)",
        "reuse_system_kv": "on",
    }


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_steps_with_the_system_prompt_reused_answer_as_with_a_full_prefill(
    tiny_qwen3_dir: Path, cache: str
) -> None:
    from tests.model.test_fast_decode import qwen3_steps

    steps = qwen3_steps()
    reused = backend_for(tiny_qwen3_dir, max_new_tokens=12, cache_implementation=cache)
    full = backend_for(tiny_qwen3_dir, max_new_tokens=12, cache_implementation=cache, reuse_system_kv=False)
    try:
        answers = [reused.complete(m).text for m in steps]
        expected = [full.complete(m).text for m in steps]
        held = reused._system_kv
        assert held is not None and held.prefills == 2  # the phone's system prompt, then the computer's
    finally:
        reused.close()
        full.close()
    assert answers == expected
    assert len(set(expected)) == len(steps)  # each screen gives its own answer: the image reached the model
