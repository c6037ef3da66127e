"""Builds a tiny random Qwen2.5-VL checkpoint on disk, loadable with the same ``from_pretrained`` calls users take.

The architecture is the real one at toy sizes; the tokenizer is a byte-level BPE trained in-process on the
dialect's own prompt text, plus Qwen's special tokens, so prompts tokenize to a few hundred ids. The
constraints that make the pieces fit (see the platform notes): ``mrope_section`` sums to head_dim/2, the
vision output size equals the text hidden size, token ids in the config equal the tokenizer's, and the image
processor's patch/merge/temporal sizes equal the vision config's.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from screenpilot.actions.coords import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, Size
from screenpilot.model.qwen25vl import Qwen25VLDialect

# Qwen's own pre-tokenizer split (the one Qwen2Tokenizer installs).
_PRETOKENIZE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

SPECIAL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
TOOL_TAGS = ("<tool_call>", "</tool_call>")

# The Qwen2-VL chat template (as shipped in the model's chat_template.json).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


PRESETS: dict[str, dict[str, Any]] = {
    # head_dim 16 -> mrope_section sums to 8; vision output size = text hidden size.
    "tiny": {
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        },
        "vision": {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 64,
            "window_size": 112,
            "fullatt_block_indexes": [1],
        },
        "tied": False,
    },
    # Qwen/Qwen2.5-VL-3B-Instruct's config.json.
    "3b": {
        "text": {
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-06,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": [16, 24, 24],
            },
        },
        "vision": {
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 2048,
            "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31],
            "tokens_per_second": 2,
        },
        "tied": True,
    },
}


def _corpus() -> list[str]:
    space = Qwen25VLDialect().coordinate_space(Size(1080, 2400))
    return [
        Qwen25VLDialect("mobile_use").system_prompt(space),
        Qwen25VLDialect("computer_use").system_prompt(space),
        Qwen25VLDialect().user_text("Open the settings app", []),
        '{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [935, 406]}}',
        '{"name": "mobile_use", "arguments": {"action": "terminate", "status": "success"}}',
    ]


def _qwen3_corpus() -> list[str]:
    from screenpilot.model.qwen3vl import Qwen3VLDialect

    return [
        Qwen3VLDialect("mobile_use").system_prompt(Qwen3VLDialect().coordinate_space(Size(1080, 2400))),
        Qwen3VLDialect("computer_use").system_prompt(Qwen3VLDialect().coordinate_space(Size(1920, 1080))),
        Qwen3VLDialect().user_text("Open the settings app", []),
        '{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [447, 81]}}',
    ]


def build_tokenizer(vocab_size: int = 1000, corpus: Sequence[str] | None = None):  # type: ignore[no-untyped-def]
    """A Qwen2Tokenizer with a freshly trained byte-level BPE and Qwen's special and tool-call tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(list(corpus) if corpus is not None else _corpus(), trainer)
    trained = json.loads(bpe.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=trained["vocab"],
        merges=[tuple(m) for m in trained["merges"]],
        errors="replace",
        model_max_length=32768,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    # In Qwen's tokenizer the tool-call tags are added tokens that are NOT special: they survive decoding.
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TAGS])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_qwen25vl(
    folder: str | Path,
    *,
    min_pixels: int = QWEN_MIN_PIXELS,
    max_pixels: int = QWEN_MAX_PIXELS,
    model_type: str = "qwen2_5_vl",
    seed: int = 0,
    chain: Sequence[str] = (),
    size: str = "tiny",
    device: str = "cpu",
    dtype: str = "float32",
) -> Path:
    """Write a random tiny checkpoint (config, safetensors, tokenizer, processor config) to ``folder``.

    ``chain`` (token strings) makes the language model a bigram machine along it: after ``chain[i]`` it
    always emits ``chain[i + 1]``, whatever else is in the prompt. Starting the chain at the prompt's last
    token scripts the whole answer, e.g. to see tags and the stop token pass through ``generate``.

    ``size="3b"`` gives Qwen2.5-VL-3B-Instruct's real architecture (random weights, its full vocabulary size)
    for timing on a GPU; build it with ``device="cuda", dtype="bfloat16"``.
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (*SPECIAL_TOKENS, "<|endoftext|>")}
    preset = PRESETS[size]
    text = {
        **preset["text"],
        "vocab_size": preset["text"].get("vocab_size", len(tokenizer)),
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    vision = dict(preset["vision"])
    shared = {
        "text_config": text,
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }
    torch.manual_seed(seed)
    with torch.device(device):
        if model_type == "qwen2_5_vl":
            config = Qwen2_5_VLConfig(vision_config=vision, **shared, tie_word_embeddings=preset["tied"])
            model = Qwen2_5_VLForConditionalGeneration(config)
        elif model_type == "qwen2_vl" and size == "tiny":
            vision = {
                "depth": 2,
                "embed_dim": 32,
                "hidden_size": text["hidden_size"],
                "mlp_ratio": 2,
                "num_heads": 2,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
            }
            model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(vision_config=vision, **shared))
        else:
            raise ValueError(f"no {size} preset for model_type {model_type!r}")
    model.to(getattr(torch, dtype))
    if chain:
        _script_chain(model, [tokenizer.convert_tokens_to_ids(t) for t in chain])
    # Qwen's shipped generation config samples (top_k=1, a repetition penalty); the backend must override it.
    generation = model.generation_config
    generation.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    generation.pad_token_id = ids["<|endoftext|>"]
    generation.bos_token_id = ids["<|endoftext|>"]
    generation.do_sample = True
    generation.temperature = 0.7
    generation.top_p = 0.9
    generation.top_k = 50
    generation.repetition_penalty = 1.05
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # The preprocessor config as Qwen ships it (flat pixel limits, processor class named).
    preprocessor = {
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor" if model_type == "qwen2_5_vl" else "Qwen2VLProcessor",
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2), encoding="utf-8")
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}), encoding="utf-8")
    return folder


#: A tiny Qwen3-VL: head_dim 16 -> mrope_section sums to 8; vision output size = text hidden size; every
#: deepstack index below the vision depth; num_position_embeddings a square (8x8).
QWEN3_TINY: dict[str, Any] = {
    "text": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 32768,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": [2, 3, 3],
            "mrope_interleaved": True,
        },
    },
    "vision": {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "out_hidden_size": 64,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0, 1],
    },
}


def build_tiny_qwen3vl(
    folder: str | Path,
    *,
    min_pixels: int = 64 * 32 * 32,
    max_pixels: int = 16384 * 32 * 32,
    seed: int = 0,
    chain: Sequence[str] = (),
) -> Path:
    """Write a random tiny Qwen3-VL checkpoint (``model_type`` ``qwen3_vl``) to ``folder``, laid out as the
    Instruct checkpoints are: patch 16, merge 2, the pixel limits under ``size``, processor class named.
    ``chain`` scripts the answer as in :func:`build_tiny_qwen25vl`."""
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus=_qwen3_corpus())
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (*SPECIAL_TOKENS, "<|endoftext|>")}
    text = {
        **QWEN3_TINY["text"],
        "vocab_size": len(tokenizer),
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=dict(QWEN3_TINY["vision"]),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    if chain:
        _script_chain(model, [tokenizer.convert_tokens_to_ids(t) for t in chain])
    generation = model.generation_config
    generation.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    generation.pad_token_id = ids["<|endoftext|>"]
    generation.do_sample = True  # as shipped; the backend must decode greedily anyway
    generation.top_k = 20
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    preprocessor = {
        "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels},
        "patch_size": 16,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "image_processor_type": "Qwen2VLImageProcessorFast",
        "processor_class": "Qwen3VLProcessor",
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2), encoding="utf-8")
    return folder


def _script_chain(model: Any, chain: list[int]) -> None:
    """Make every text layer the identity and route token ``chain[i]`` to ``chain[i + 1]``."""
    import torch

    text = model.model.language_model
    hidden = text.config.hidden_size
    if len(chain) > hidden:
        raise ValueError(f"a chain of {len(chain)} tokens needs a hidden size of at least that")
    if len(set(chain[:-1])) != len(chain) - 1:
        raise ValueError("a token may appear only once as a chain step")
    with torch.no_grad():
        for layer in text.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for step, (current, following) in enumerate(itertools.pairwise(chain)):
            text.embed_tokens.weight[current].zero_()
            text.embed_tokens.weight[current, step] = 10.0
            model.lm_head.weight[following, step] = 1.0
