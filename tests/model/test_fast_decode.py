"""The system prompt's KV computed once and reused by every step, and the decoding-graph option's fallback:
the same greedy tokens and scores as a full prefill."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.model.base import Message, render_chatml
from screenpilot.model.dialect import PastStep
from screenpilot.model.prompt_cache import SystemPromptKV, bucketed, system_prefix
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.transformers_backend import STATIC_CACHE_HEADROOM, TransformersBackend
from tests.model.conftest import TEST_MAX_PIXELS, TEST_MIN_PIXELS
from tests.model.tiny_qwen import build_tiny_qwen25vl

torch = pytest.importorskip("torch")

SCREEN = Size(1080, 2400)
HISTORY = [
    PastStep('{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [540, 612]}}'),
    PastStep('{"name": "mobile_use", "arguments": {"action": "open", "text": "Settings"}}'),
]


def backend_for(folder: Path, **options: Any) -> TransformersBackend:
    return TransformersBackend(
        str(folder),
        device="cpu",
        min_pixels=TEST_MIN_PIXELS,
        max_pixels=TEST_MAX_PIXELS,
        max_new_tokens=12,
        **options,
    )


def noise(seed: int, screen: Size = SCREEN) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (screen.height, screen.width, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def step(
    seed: int,
    history: int = 0,
    tool: Literal["mobile_use", "computer_use"] = "mobile_use",
    screen: Size = SCREEN,
) -> list[Message]:
    dialect = Qwen25VLDialect(tool, min_pixels=TEST_MIN_PIXELS, max_pixels=TEST_MAX_PIXELS)
    return dialect.messages(
        "Open the settings app", noise(seed, screen), dialect.coordinate_space(screen), HISTORY[:history]
    )


@pytest.fixture(scope="module")
def stock(tiny_qwen_dir: Path) -> Iterator[TransformersBackend]:
    loaded = backend_for(tiny_qwen_dir, reuse_system_kv=False)
    yield loaded
    loaded.close()


STEPS = [
    step(1),
    step(2, history=1),
    step(3, history=2),
    step(4, tool="computer_use", screen=Size(1280, 800)),
]


def test_steps_answer_as_with_a_full_prefill(tiny_qwen_dir: Path, stock: TransformersBackend) -> None:
    reused = backend_for(tiny_qwen_dir)
    try:
        assert reused.fast_paths["reuse_system_kv"] == "on"
        assert stock.fast_paths["reuse_system_kv"] == "off: asked"
        answers = [reused.complete(messages).text for messages in STEPS]
        held = reused._system_kv
        assert held is not None
        assert held.prefills == 2  # once for the phone's system prompt, once for the computer's
        assert held.cache.get_seq_length() == len(held.prefix)  # cut back after the step
    finally:
        reused.close()
    expected = [stock.complete(messages).text for messages in STEPS]
    assert answers == expected
    assert len(set(expected[:3])) > 1  # the answer follows the screen: the image reached the model


def scores(backend: TransformersBackend, messages: list[Message], cache: Any = None) -> tuple[list[int], Any]:
    images = [image for message in messages for image in message.images]
    inputs = backend.processor(text=[render_chatml(messages)], images=images, return_tensors="pt")
    config = copy.copy(backend._generation_config)
    config.output_scores, config.return_dict_in_generate = True, True
    extra = {} if cache is None else {"cache": cache}
    with torch.inference_mode():
        out = backend.model.generate(**inputs, generation_config=config, **extra)
    return out.sequences[0, inputs["input_ids"].shape[1] :].tolist(), torch.stack(out.scores)


@pytest.mark.parametrize("static", [False, True], ids=["dynamic cache", "static cache"])
def test_scores_equal_a_full_prefill(stock: TransformersBackend, static: bool) -> None:
    held = SystemPromptKV(stock.model, static=static)
    tokenizer = stock.processor.tokenizer
    for messages in STEPS[:3]:
        ids = tokenizer(render_chatml(messages))["input_ids"]
        prefix = system_prefix(
            ids, im_start=tokenizer.convert_tokens_to_ids("<|im_start|>"), image_token=stock.image_token_id
        )
        assert prefix is not None and 100 < len(prefix) < len(ids)
        stock.model.model.rope_deltas = None
        tokens, expected = scores(stock, messages)
        cache = held.cache_for(prefix, 2000)
        got_tokens, got = scores(stock, messages, cache)
        held.rewind()
        assert got_tokens == tokens
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert held.prefills == 1
    assert held.capacity == (2048 if static else None)


def test_a_static_cache_keeps_its_memory_and_grows_by_whole_buckets(tiny_qwen_dir: Path) -> None:
    static = backend_for(tiny_qwen_dir, cache_implementation="static")
    try:
        held = static._system_kv
        assert held is not None and held.static
        tokens = static.complete(STEPS[0]).usage.prompt_tokens
        assert tokens is not None
        first, capacity = held.cache, held.capacity
        assert capacity == bucketed(tokens + 12 + STATIC_CACHE_HEADROOM)  # room for the prompt to grow
        static.complete(STEPS[1])
        assert (
            held.cache is first and held.prefills == 1
        )  # the same cache object: no new shapes, no re-prefill
        static.max_new_tokens = capacity  # a step that cannot fit: the next bucket up
        answer = static.complete(STEPS[1])
        assert answer.usage.prompt_tokens is not None
        grown = bucketed(answer.usage.prompt_tokens + capacity + STATIC_CACHE_HEADROOM)
        assert held.capacity == grown and held.prefills == 2
        static.max_new_tokens = 12
        static.complete(STEPS[3])  # another system prompt, in a cache of the same length
        assert held.capacity == grown and held.prefills == 3
    finally:
        static.close()


def test_without_reuse_the_static_cache_keeps_its_length_until_a_step_needs_more(tiny_qwen_dir: Path) -> None:
    static = backend_for(tiny_qwen_dir, cache_implementation="static", reuse_system_kv=False)
    try:
        lengths = [static._generation_config_for(n, None).max_cache_len for n in (900, 300, 1500, 3100)]
    finally:
        static.close()
    first = bucketed(900 + 12 + STATIC_CACHE_HEADROOM)
    assert lengths == [first, first, first, bucketed(3100 + 12 + STATIC_CACHE_HEADROOM)] and first == 3072


def test_prompts_without_a_plain_system_message_are_not_reused() -> None:
    assert system_prefix([7, 1, 2, 7, 3], im_start=7, image_token=9) == (7, 1, 2)
    assert system_prefix([7, 1, 9, 7, 3], im_start=7, image_token=9) is None  # an image in the first message
    assert system_prefix([1, 7, 2, 7], im_start=7, image_token=9) is None
    assert system_prefix([7, 1, 2], im_start=7, image_token=9) is None  # nothing after it


def test_a_failed_step_leaves_the_cache_at_the_system_prompt(
    tiny_qwen_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = backend_for(tiny_qwen_dir)
    try:
        backend.complete(STEPS[0])
        held = backend._system_kv
        assert held is not None
        head = backend.model.lm_head
        real_forward = head.forward
        calls = {"n": 0}

        def fail_on_third_token(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("device lost")
            return real_forward(*args, **kwargs)

        monkeypatch.setattr(head, "forward", fail_on_third_token)
        with pytest.raises(RuntimeError, match="device lost"):
            backend.complete(STEPS[1])
        assert held.cache.get_seq_length() == len(held.prefix)
        monkeypatch.undo()
        again = backend.complete(STEPS[1])
        assert held.prefills == 1
    finally:
        backend.close()
    assert again.text == backend_for(tiny_qwen_dir, reuse_system_kv=False).complete(STEPS[1]).text


def test_decoding_graphs_fall_back_off_a_gpu(tiny_qwen_dir: Path, stock: TransformersBackend) -> None:
    asked = backend_for(tiny_qwen_dir, decode_graphs=True)
    try:
        assert not asked.decode_graphs
        assert asked.fast_paths["decode_graphs"] == (
            "off: CUDA graphs need one CUDA device (the model is on cpu)"
        )
        assert asked.cache_implementation is None and asked._generation_config.compile_config is None
        assert asked.complete(STEPS[0]).text == stock.complete(STEPS[0]).text
        described = asked.describe()
        assert described["fast_paths"] == {
            "batched_vision": "on",
            "decode_graphs": "off: CUDA graphs need one CUDA device (the model is on cpu)",
            "reuse_system_kv": "on",
        }
    finally:
        asked.close()
    off = backend_for(tiny_qwen_dir, decode_graphs=False)
    assert off.fast_paths["decode_graphs"] == "off: asked"
    off.close()
    dynamic = backend_for(tiny_qwen_dir, cache_implementation="dynamic")
    assert dynamic.fast_paths["decode_graphs"] == "off: the dynamic cache was asked for"
    assert dynamic.cache_implementation is None
    dynamic.close()


def test_qwen2_vl_steps_answer_as_with_a_full_prefill(tmp_path: Path) -> None:
    folder = build_tiny_qwen25vl(tmp_path / "qwen2vl", model_type="qwen2_vl")
    reused, full = backend_for(folder), backend_for(folder, reuse_system_kv=False)
    try:
        assert reused.fast_paths["reuse_system_kv"] == "on"
        assert [reused.complete(m).text for m in STEPS] == [full.complete(m).text for m in STEPS]
    finally:
        reused.close()
        full.close()


def test_the_cache_option_reaches_the_backend_only_when_given(tiny_qwen_dir: Path) -> None:
    from screenpilot.cli.wiring import build_model
    from screenpilot.settings import Settings

    common = {
        "model": str(tiny_qwen_dir),
        "device": "cpu",
        "min_pixels": TEST_MIN_PIXELS,
        "max_pixels": TEST_MAX_PIXELS,
    }
    reasons = {}
    for name, extra in (("unset", {}), ("dynamic", {"cache_implementation": "dynamic"})):
        backend = build_model(Settings(**common, **extra), check=False)
        assert isinstance(backend, TransformersBackend)
        reasons[name] = backend.fast_paths["decode_graphs"]
        backend.close()
    assert reasons == {
        "unset": "off: CUDA graphs need one CUDA device (the model is on cpu)",
        "dynamic": "off: the dynamic cache was asked for",
    }


@pytest.fixture
def fresh_dynamo() -> Iterator[Any]:
    """torch.compile's caches emptied before and after, its counters read from zero."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()


def compile_everywhere(backend: TransformersBackend, compiler: Any = "eager") -> None:
    """The decoding step compiled as decode_graphs compiles it, on the CPU too (no CUDA graphs there: the
    ``eager`` compiler only traces, which is where graph breaks and recompilations show)."""
    import transformers

    from screenpilot.model.transformers_backend import decode_compile_config

    config = decode_compile_config(transformers, backend=compiler)
    config._compile_all_devices = True
    backend.decode_graphs = True
    backend._generation_config.compile_config = config


def qwen3_steps() -> list[list[Message]]:
    from tests.model.test_qwen3vl_backend import dialect

    phone, computer, desk = dialect(), dialect("computer_use"), Size(1280, 800)
    return [
        phone.messages("Open", noise(1), phone.coordinate_space(SCREEN), []),
        phone.messages("Open", noise(2), phone.coordinate_space(SCREEN), HISTORY[:1]),
        phone.messages("Open", noise(3), phone.coordinate_space(SCREEN), HISTORY),
        computer.messages("Open", noise(4, desk), computer.coordinate_space(desk), []),
    ]


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_the_decoding_step_compiles_into_one_graph_once_as_the_prompt_grows(
    tiny_qwen_dir: Path,
    tmp_path: Path,
    fresh_dynamo: Any,
    family: str,
) -> None:
    if family == "qwen3-vl":
        from tests.model.test_qwen3vl_backend import backend_for as qwen3_backend
        from tests.model.tiny_qwen import build_tiny_qwen3vl

        folder = build_tiny_qwen3vl(tmp_path / "q3")
        make: Any = lambda **o: qwen3_backend(folder, max_new_tokens=12, **o)  # noqa: E731
        steps = qwen3_steps()
    else:
        make, steps = (lambda **o: backend_for(tiny_qwen_dir, **o)), STEPS
    plain = make(cache_implementation="static")
    expected = [plain.complete(m).text for m in steps[:3]]
    compile_everywhere(plain)
    first = plain.complete(steps[0]).text
    assert fresh_dynamo["stats"]["unique_graphs"] == 1  # fullgraph: one graph, no breaks
    with torch._dynamo.config.patch(error_on_recompile=True):
        rest = [plain.complete(m).text for m in steps[1:3]]  # longer prompts, the same cache size
    assert fresh_dynamo["stats"]["unique_graphs"] == 1
    assert [first, *rest] == expected
    assert plain._system_kv is not None and plain._system_kv.prefills == 1
    plain.close()


def test_a_decoding_step_that_cannot_compile_runs_again_without(
    tiny_qwen_dir: Path,
    stock: TransformersBackend,
    fresh_dynamo: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def no_compiler(graph: Any, example_inputs: Any, **options: Any) -> Any:
        raise RuntimeError("no C++ compiler here")

    backend = backend_for(tiny_qwen_dir, cache_implementation="static")
    try:
        compile_everywhere(backend, no_compiler)
        with caplog.at_level("WARNING", logger="screenpilot.model"):
            answer = backend.complete(STEPS[0])
        assert answer.text == stock.complete(STEPS[0]).text
        assert answer.usage.time_to_first_token_s is not None
        assert not backend.decode_graphs
        reason = backend.describe()["fast_paths"]["decode_graphs"]  # type: ignore[index]
        assert reason == "off: compiling failed (RuntimeError: no C++ compiler here)"
        notices = [r.getMessage() for r in caplog.records]
        assert re.search(r"compiling the decoding step as CUDA graphs for a \d+-token cache", notices[0])
        assert notices[1].endswith(reason) and len(notices) == 2
        assert backend.complete(STEPS[1]).text == stock.complete(STEPS[1]).text  # not compiled again
        assert fresh_dynamo["stats"]["unique_graphs"] == 0
    finally:
        backend.close()


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_eager_attention_reuses_the_system_prompt_with_the_same_answers(
    tiny_qwen_dir: Path, cache: str
) -> None:
    reused = backend_for(tiny_qwen_dir, attn_implementation="eager", cache_implementation=cache)
    full = backend_for(
        tiny_qwen_dir, attn_implementation="eager", cache_implementation=cache, reuse_system_kv=False
    )
    try:
        assert reused.fast_paths["reuse_system_kv"] == "on"
        assert reused.fast_paths["batched_vision"] == "off: the vision attention is eager, not sdpa"
        assert [reused.complete(m).text for m in STEPS] == [full.complete(m).text for m in STEPS]
        assert reused._system_kv is not None and reused._system_kv.prefills == 2
    finally:
        reused.close()
        full.close()
