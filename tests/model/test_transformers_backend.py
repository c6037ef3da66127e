"""The local transformers backend, on tiny random Qwen2.5-VL checkpoints loaded through from_pretrained."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import Limits, run_episode
from screenpilot.agent.record import RunRecorder, load_run, record_episode
from screenpilot.envs.fake import FakeEnv
from screenpilot.errors import MissingExtraError, SetupError
from screenpilot.model.base import (
    ImagePart,
    Message,
    ModelBackend,
    ModelBackendError,
    TextPart,
    render_chatml,
)
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.transformers_backend import TransformersBackend, load_error
from tests.model.conftest import TEST_MAX_PIXELS, TEST_MIN_PIXELS
from tests.model.tiny_qwen import build_tiny_qwen25vl

torch = pytest.importorskip("torch")

SCREEN = Size(1080, 2400)


def dialect() -> Qwen25VLDialect:
    return Qwen25VLDialect("mobile_use", min_pixels=TEST_MIN_PIXELS, max_pixels=TEST_MAX_PIXELS)


def prompt_for(goal: str = "Open the settings app", screen: Size = SCREEN) -> list[Message]:
    d = dialect()
    space = d.coordinate_space(screen)
    screenshot = Image.new("RGB", tuple(screen), (240, 240, 240))
    return d.messages(goal, screenshot, space, [])


def backend_for(folder: Path, **kwargs: object) -> TransformersBackend:
    options: dict = {
        "device": "cpu",
        "min_pixels": TEST_MIN_PIXELS,
        "max_pixels": TEST_MAX_PIXELS,
        "max_new_tokens": 8,
    }
    options.update(kwargs)
    return TransformersBackend(str(folder), **options)


def test_satisfies_the_backend_protocol(tiny_backend: TransformersBackend) -> None:
    assert isinstance(tiny_backend, ModelBackend)
    described = tiny_backend.describe()
    assert described["architecture"] == "Qwen2_5_VLForConditionalGeneration"
    assert described["device"] == "cpu" and described["dtype"] == "float32"
    from transformers.utils import is_torchvision_available

    # Without torchvision (never beside the CPU torch) the image-only processor stands in for the stock one.
    assert (described["processor"] == "image-only") == (not is_torchvision_available())
    assert described["min_pixels"] == TEST_MIN_PIXELS and described["max_pixels"] == TEST_MAX_PIXELS
    assert described["decoding"] == {
        "do_sample": False,
        "max_new_tokens": 8,
        "repetition_penalty": 1.0,
        "cache_implementation": None,
        "cudnn_attention": False,
        "stop": ["<|im_end|>", "<|endoftext|>"],
    }
    json.dumps(described)  # goes into run manifests


def test_prompt_holds_one_image_pad_per_merged_patch(tiny_backend: TransformersBackend) -> None:
    messages = prompt_for()
    (image,) = messages[1].images
    assert image.size == (252, 588)
    inputs = tiny_backend.processor(text=[render_chatml(messages)], images=[image], return_tensors="pt")
    pads = int((inputs["input_ids"] == tiny_backend.image_token_id).sum())
    assert pads == (588 // 28) * (252 // 28) == 189
    assert inputs["image_grid_thw"].tolist() == [[1, 588 // 14, 252 // 14]]
    # Outside the expanded pads, the ids are exactly the rendered ChatML text's.
    text_ids = tiny_backend.processor.tokenizer(render_chatml(messages))["input_ids"]
    expanded = [i for i in inputs["input_ids"][0].tolist() if i != tiny_backend.image_token_id]
    assert expanded == [i for i in text_ids if i != tiny_backend.image_token_id]


def test_rendered_prompt_matches_the_checkpoints_chat_template(tiny_backend: TransformersBackend) -> None:
    messages = prompt_for()
    as_dicts = [
        {
            "role": m.role,
            "content": [
                {"type": "text", "text": p.text} if isinstance(p, TextPart) else {"type": "image"}
                for p in m.content
            ],
        }
        for m in messages
    ]
    template = tiny_backend.processor.tokenizer.apply_chat_template(
        as_dicts, tokenize=False, add_generation_prompt=True
    )
    assert template == render_chatml(messages)


def test_usage_is_filled(tiny_backend: TransformersBackend) -> None:
    completion = tiny_backend.complete(prompt_for())
    usage = completion.usage
    assert usage.image_tokens == 189
    assert usage.prompt_tokens is not None and usage.prompt_tokens > usage.image_tokens + 100
    assert usage.output_tokens is not None and 1 <= usage.output_tokens <= 8
    assert usage.time_to_first_token_s is not None
    assert 0 < usage.time_to_first_token_s <= usage.total_s


def test_decoding_is_greedy_and_deterministic(tiny_backend: TransformersBackend) -> None:
    messages = prompt_for()
    first = tiny_backend.complete(messages)
    assert tiny_backend.complete(messages).text == first.text
    # The checkpoint's generation config samples; the backend must not: its first token is the argmax.
    model = tiny_backend.model
    inputs = tiny_backend.processor(
        text=[render_chatml(messages)], images=messages[1].images, return_tensors="pt"
    )
    with torch.inference_mode():
        logits = model(**inputs).logits[0, -1]
    greedy = int(logits.argmax())
    assert model.generation_config.do_sample is True
    assert first.text.startswith(tiny_backend.decode([greedy]))


def test_decode_keeps_tool_call_tags_and_drops_special_tokens(tiny_backend: TransformersBackend) -> None:
    tokenizer = tiny_backend.processor.tokenizer
    call = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [935, 406]}}\n</tool_call>'
    ids = tokenizer(call + "<|im_end|>")["input_ids"]
    assert tokenizer.convert_tokens_to_ids("<tool_call>") in ids
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == ids[-1]
    assert tiny_backend.decode(ids) == call


def test_scripted_answer_passes_through_generate_and_stops_at_im_end(tmp_path: Path) -> None:
    # The prompt ends with "assistant\n": the chain starts at "\n" (Ċ in byte-level BPE).
    chain = ["Ċ", "<tool_call>", "</tool_call>", "<|im_end|>"]
    folder = build_tiny_qwen25vl(tmp_path / "scripted", chain=chain)
    backend = backend_for(folder, max_new_tokens=20)
    try:
        completion = backend.complete(prompt_for())
    finally:
        backend.close()
    assert completion.text == "<tool_call></tool_call>"
    assert completion.usage.output_tokens == 3  # two tags and <|im_end|>, not max_new_tokens


def test_qwen2_vl_checkpoints_load_with_their_own_class(tmp_path: Path) -> None:
    folder = build_tiny_qwen25vl(tmp_path / "qwen2vl", model_type="qwen2_vl")
    backend = backend_for(folder, max_new_tokens=4)
    try:
        assert backend.describe()["architecture"] == "Qwen2VLForConditionalGeneration"
        assert type(backend.model).__name__ == "Qwen2VLForConditionalGeneration"
        assert backend.complete(prompt_for()).usage.image_tokens == 189
    finally:
        backend.close()


def test_image_not_at_the_model_size_is_refused(tiny_backend: TransformersBackend) -> None:
    messages = prompt_for()
    raw = Image.new("RGB", (1080, 2400))  # not resized by the dialect
    bad = [messages[0], Message("user", (TextPart("hi"), ImagePart(raw)))]
    with pytest.raises(ModelBackendError, match="1080x2400 is not at the model's size"):
        tiny_backend.complete(bad)


def test_missing_directory_is_a_clear_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match=r"^no such folder: .*/no/such/model; a model is a model folder"):
        backend_for(tmp_path / "no" / "such" / "model")


def test_directory_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match=r"no config\.json"):
        backend_for(tmp_path)


def test_offline_hub_id_says_how_to_get_the_weights() -> None:
    with pytest.raises(
        SetupError,
        match=r"not in the local hub cache.*`hf download Qwen/Qwen2\.5-VL-72B-Instruct --local-dir DIR`",
    ):
        TransformersBackend(
            "Qwen/Qwen2.5-VL-72B-Instruct", min_pixels=TEST_MIN_PIXELS, max_pixels=TEST_MAX_PIXELS
        )


def test_wrong_architecture_is_refused(tmp_path: Path) -> None:
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(SetupError, match=r"'llama' model.*qwen2_5_vl"):
        backend_for(tmp_path)


def test_config_without_weights_says_the_download_is_incomplete(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    for name in tiny_qwen_dir.iterdir():
        if not name.name.endswith(".safetensors"):
            (tmp_path / name.name).write_bytes(name.read_bytes())
    with pytest.raises(SetupError, match="is the download complete"):
        backend_for(tmp_path)


def test_bad_options_are_setup_errors(tiny_qwen_dir: Path) -> None:
    with pytest.raises(SetupError, match="unknown transformers backend option"):
        backend_for(tiny_qwen_dir, temperature=0.5)
    with pytest.raises(SetupError, match="unknown dtype"):
        backend_for(tiny_qwen_dir, dtype="int3")


def test_out_of_memory_while_loading_is_named() -> None:
    error = load_error(
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        "m",
        device="cuda",
        dtype="bfloat16",
    )
    assert "not enough memory to load m on cuda in bfloat16" in str(error)
    error = load_error(OSError("offline"), "Qwen/X", device="cpu", dtype="float32")
    assert "hf download Qwen/X --local-dir DIR" in str(error)


def test_episode_runs_end_to_end_and_records_raw_outputs(
    tiny_backend: TransformersBackend, tmp_path: Path
) -> None:
    env = FakeEnv(SCREEN)
    agent = Agent(tiny_backend, dialect(), max_retries=1)
    episode = run_episode(env, agent, "Open the settings app", limits=Limits(max_steps=3, max_failed_steps=2))
    with RunRecorder(tmp_path / "run", {"model": tiny_backend.describe()}) as recorder:
        result = record_episode(episode, recorder)
    # Random weights produce no usable call: the loop feeds the errors back and gives up.
    assert result.reason in ("too_many_errors", "max_steps")
    run = load_run(tmp_path / "run")
    assert run.result == result
    assert run.steps and all(len(step.outputs) == 2 for step in run.steps if step.failed)
    assert all(step.errors for step in run.steps if step.failed)
    for step in run.steps:
        assert all(u.image_tokens == 189 for u in step.usage)
    assert run.meta["model"]["architecture"] == "Qwen2_5_VLForConditionalGeneration"


def test_missing_torch_names_the_local_extra(tiny_qwen_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` sees when it is not installed
    with pytest.raises(MissingExtraError, match=r"screenpilot\[local\]") as info:
        TransformersBackend(str(tiny_qwen_dir), min_pixels=TEST_MIN_PIXELS, max_pixels=TEST_MAX_PIXELS)
    assert info.value.extra == "local" and info.value.package == "torch"


def test_device_auto_needs_accelerate(tiny_qwen_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from screenpilot.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(MissingExtraError, match=r"accelerate.*screenpilot\[local\]"):
        backend_for(tiny_qwen_dir, device="auto")


def test_device_auto_without_a_gpu_loads_on_the_cpu(tiny_qwen_dir: Path) -> None:
    pytest.importorskip("accelerate")
    import torch

    if torch.cuda.is_available():
        pytest.skip("covered by the gpu tests")
    backend = backend_for(tiny_qwen_dir, device="auto")
    try:
        assert backend.describe()["dtype"] == "float32"
        assert {p.device.type for p in backend.model.parameters()} == {"cpu"}
        assert backend.complete(prompt_for()).usage.output_tokens
    finally:
        backend.close()
