"""Qwen2.5-VL, Qwen2-VL and Qwen3-VL run in-process with transformers.

The prompt is rendered by :func:`~screenpilot.model.base.render_chatml` (bytes we test), not by the
processor's chat template; the processor only tokenizes and expands ``<|image_pad|>``. Images arrive already
resized by the dialect, and the processor is given the same pixel limits, so its resize is a no-op: this is
checked on every call, because a silent second resize would shift every coordinate the model answers in.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from screenpilot.actions.coords import smart_resize
from screenpilot.errors import MissingExtraError, SetupError
from screenpilot.model.base import (
    CHECK_TIMEOUT_S,
    Completion,
    DeadlineExceeded,
    Message,
    ModelBackendError,
    Usage,
    render_chatml,
    run_bounded,
    seconds_left,
)
from screenpilot.model.dialects import default_pixel_limits
from screenpilot.model.prompt_cache import CACHE_BUCKET, SystemPromptKV, bucketed, system_prefix
from screenpilot.model.spec import parse_model_spec

DEFAULT_MODEL_ID = "Qwen/Qwen2.5-VL-3B-Instruct"

log = logging.getLogger("screenpilot.model")

#: config.model_type -> the transformers class that runs it.
ARCHITECTURES = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration",
}

_DTYPES = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
}

#: A static KV cache is sized up to a multiple of this, so prompts of nearby lengths share one compiled
#: decoding graph (transformers compiles the decoding step for static caches; each new size recompiles).
STATIC_CACHE_BUCKET = CACHE_BUCKET

#: Tokens a static cache is made longer than the step that first needs it, so the prompt can grow by its
#: history (about 70 tokens a step without kept images) for some 30 steps at one size. Each extra token
#: costs 37 KB for 3B (36 layers, 2 KV heads of 128, bf16), about 75 MB in all, and decoding reads it.
STATIC_CACHE_HEADROOM = 2048

_OPTIONS = frozenset(
    {
        "revision",
        "attn_implementation",
        "cache_implementation",
        "repetition_penalty",
        "cudnn_attention",
        "batched_vision",
        "reuse_system_kv",
        "decode_graphs",
    }
)

#: Checkpoints whose system-prompt KV reuse is checked against the full prefill (same greedy tokens).
KV_REUSE_MODEL_TYPES = frozenset({"qwen2_5_vl", "qwen2_vl", "qwen3_vl"})


def decode_compile_config(transformers: Any, **overrides: Any) -> Any:
    """How ``decode_graphs`` compiles the decoding step: one graph for the whole step (``fullgraph``: a graph
    break fails the compilation, which then falls back, rather than splitting the CUDA graphs), static shapes
    (a static cache has one), and CUDA graphs (``reduce-overhead``)."""
    return transformers.CompileConfig(fullgraph=True, dynamic=False, mode="reduce-overhead", **overrides)


class _FirstTokenTimer:
    """A ``generate`` streamer that only notes when the first new token arrives.

    ``generate`` pushes the prompt first, then each new token, so the second ``put`` is the first token.
    """

    def __init__(self, start: float) -> None:
        self.start = start
        self.first_token_at: float | None = None
        self._puts = 0

    def put(self, value: Any) -> None:
        self._puts += 1
        if self._puts == 2:
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        pass

    def restart(self) -> None:
        """Count from the prompt again (the step is generated a second time)."""
        self.first_token_at, self._puts = None, 0

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.start


def _import_stack() -> tuple[Any, Any]:
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError("local", "torch", "a local transformers model") from exc
    try:
        import transformers
    except ImportError as exc:
        raise MissingExtraError("local", "transformers", "a local transformers model") from exc
    return torch, transformers


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    import torch

    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` is torch.compile failing to trace or compile (not the model failing to run)."""
    from torch._dynamo.exc import TorchDynamoException

    return isinstance(exc, TorchDynamoException)


def _local_commit(folder: Path) -> str | None:
    """The hub commit a local copy came from, where the download left a trace of it."""
    if folder.parent.name == "snapshots":  # inside the hub cache: .../snapshots/<commit>
        return folder.name
    # `huggingface-cli download --local-dir` writes one metadata file per file, its commit on the first line.
    metadata = folder / ".cache" / "huggingface" / "download" / "config.json.metadata"
    try:
        first = metadata.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    return first or None


def load_error(exc: BaseException, model_id: str, *, device: str, dtype: str) -> SetupError:
    """Turn an exception raised while loading ``model_id`` into a SetupError that says what to do."""
    if _is_out_of_memory(exc):
        return SetupError(
            f"not enough memory to load {model_id} on {device} in {dtype} ({_first_line(exc)}). "
            "Use a smaller model, a GPU with more memory, --dtype bfloat16, or serve the model elsewhere "
            "and pass --model http://HOST:PORT/v1."
        )
    where = (
        "the hub is offline (HF_HUB_OFFLINE=1) and it is not in the local cache"
        if _hub_offline()
        else ("it is not in the local cache and could not be fetched from the hub")
    )
    return SetupError(f"could not load {model_id}: {where} ({_first_line(exc)}).{_download_hint(model_id)}")


def _download_hint(model_id: str) -> str:
    return (
        f" Download it where the hub is reachable (`hf download {model_id} --local-dir DIR`; older "
        "huggingface_hub: `huggingface-cli download`) and pass --model DIR."
    )


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_local_model(
    model_id: str, *, revision: str | None = None, timeout_s: float = CHECK_TIMEOUT_S
) -> bool:
    """Fail within about ``timeout_s``, before torch is imported, when ``model_id`` cannot be loaded.

    A folder must hold a ``config.json``. A hub id must be in the local hub cache, or the hub must answer
    for it within ``timeout_s`` (it is then downloaded while loading). Returns True when the weights must
    come from the cache alone: cached, and the hub offline or out of reach (so loading does not wait on
    the hub's retries).
    """
    spec = parse_model_spec(model_id)
    if spec.kind != "local":
        raise SetupError(f"{model_id} is not a model folder or hub id; the local backend loads those")
    if not spec.hub:
        if not (Path(spec.target) / "config.json").is_file():
            raise SetupError(f"{spec.target} has no config.json: it is not a transformers model folder")
        return False
    try:
        import huggingface_hub
    except ImportError as exc:
        raise MissingExtraError("local", "huggingface_hub", "a local transformers model") from exc
    cached = isinstance(
        huggingface_hub.try_to_load_from_cache(model_id, "config.json", revision=revision), str
    )
    if _hub_offline():
        if cached:
            return True
        raise SetupError(
            f"{model_id} is not in the local hub cache and the hub is offline (HF_HUB_OFFLINE=1)."
            + _download_hint(model_id)
        )
    problem = _ask_hub(huggingface_hub, model_id, revision, timeout_s)
    if problem is None:
        return False
    if cached:
        return True
    raise SetupError(f"{model_id} is not in the local hub cache and {problem}.{_download_hint(model_id)}")


def _ask_hub(huggingface_hub: Any, model_id: str, revision: str | None, timeout_s: float) -> str | None:
    """None when the hub knows ``model_id``; otherwise why it cannot be had from there (SetupError when the
    hub answers that it has no such model or revision)."""
    from huggingface_hub import constants, errors

    endpoint = constants.ENDPOINT
    try:
        run_bounded(
            lambda: huggingface_hub.HfApi().model_info(model_id, revision=revision, timeout=timeout_s),
            timeout_s,
            f"the hub ({endpoint})",
        )
    except errors.GatedRepoError:
        return (
            f"the hub keeps it behind a license or login ({endpoint}/{model_id}; log in with `hf auth login`)"
        )
    except errors.RevisionNotFoundError as exc:
        raise SetupError(f"the hub has no revision {revision!r} of {model_id}") from exc
    except errors.RepositoryNotFoundError as exc:
        raise SetupError(
            f"no model {model_id} on the hub ({endpoint}), and no such folder: check the name "
            "(private models need `hf auth login`)"
        ) from exc
    except SetupError:
        return f"the hub ({endpoint}) did not answer within {timeout_s:g} s"
    except Exception as exc:  # connection refused, name resolution, TLS: the hub is out of reach
        return f"the hub ({endpoint}) cannot be reached ({type(exc).__name__})"
    return None


def _check_arguments(
    options: dict[str, Any], max_new_tokens: int, min_pixels: int | None, max_pixels: int | None
) -> None:
    unknown = set(options) - _OPTIONS
    if unknown:
        raise SetupError(
            f"unknown transformers backend option(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_OPTIONS))}"
        )
    if max_new_tokens < 1:
        raise SetupError("max_new_tokens must be at least 1")
    if min_pixels is not None and max_pixels is not None and not 0 < min_pixels <= max_pixels:
        raise SetupError(f"need 0 < min_pixels <= max_pixels, got {min_pixels} and {max_pixels}")


class TransformersBackend:
    """A Qwen2.5-VL, Qwen2-VL or Qwen3-VL checkpoint, from a local directory or a hub id, decoded greedily.

    Each runs with its own class and processor (:data:`ARCHITECTURES`); :attr:`model_type` tells which
    (``qwen3_vl`` for Qwen3-VL), so the dialect can follow the checkpoint.

    Decoding ignores the checkpoint's sampling settings (pure greedy, ``repetition_penalty`` 1.0 unless
    given), so the same screen gives the same answer. Options: ``revision``, ``attn_implementation``
    (default ``sdpa``), ``cache_implementation`` (e.g. ``static``), ``repetition_penalty``,
    ``cudnn_attention`` (default off with a dynamic cache: cuDNN's SDPA kernel builds plans for every new
    sequence length, and an agent's prompt grows every step; measured on an H100 at +3-5 s for each new
    length. A static cache has one shape and always keeps cuDNN).
    """

    def __init__(
        self,
        model_id: str = DEFAULT_MODEL_ID,
        *,
        device: str | None = None,
        dtype: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_new_tokens: int = 256,
        **options: Any,
    ) -> None:
        _check_arguments(options, max_new_tokens, min_pixels, max_pixels)
        self.revision: str | None = options.get("revision")
        cache_only = check_local_model(model_id, revision=self.revision)  # fast, and before torch loads
        torch, transformers = _import_stack()
        self._torch = torch
        self.name = model_id
        self.max_new_tokens = max_new_tokens
        self.attn_implementation: str = options.get("attn_implementation") or "sdpa"
        requested_cache: str | None = options.get("cache_implementation")
        self.cache_implementation: str | None = None if requested_cache == "dynamic" else requested_cache
        self.repetition_penalty = float(options.get("repetition_penalty", 1.0))
        self.cudnn_attention = bool(options.get("cudnn_attention", False))
        # "auto" spreads the layers over every visible GPU (accelerate's device map), for checkpoints that do
        # not fit on one (72B in bf16 needs about 150 GB).
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._on_gpu = self.device.startswith("cuda") or (self.device == "auto" and torch.cuda.is_available())
        self.dtype = self._pick_dtype(dtype)
        source, hub_kwargs = self._source(model_id, cache_only)
        config = self._load_config(transformers, source, hub_kwargs)
        self._read_config(config, min_pixels, max_pixels)
        self.processor, self.image_only_processor = self._load_processor(transformers, source, hub_kwargs)
        self._model = self._load_model(transformers, source, config, hub_kwargs)
        self._setup_tokens()
        self._setup_fast_paths(options, requested_cache)
        self._generation_config = self._make_generation_config(transformers)

    # -- loading ----------------------------------------------------------------------------------------------
    def _pick_dtype(self, dtype: str | None) -> str:
        if dtype is None or dtype == "auto":
            if self._on_gpu:
                return "bfloat16" if self._torch.cuda.is_bf16_supported() else "float16"
            return "float32"
        name = _DTYPES.get(dtype.lower().removeprefix("torch."))
        if name is None:
            raise SetupError(f"unknown dtype {dtype!r}; use bfloat16, float16 or float32")
        return name

    def _source(self, model_id: str, cache_only: bool) -> tuple[str, dict[str, Any]]:
        """What ``from_pretrained`` loads (a folder or a hub id), and its hub arguments."""
        spec = parse_model_spec(model_id)
        self.local_dir = None if spec.hub else Path(spec.target)
        hub_kwargs: dict[str, Any] = {"revision": self.revision} if self.revision else {}
        if cache_only:
            hub_kwargs["local_files_only"] = True
        return (str(self.local_dir) if self.local_dir is not None else model_id), hub_kwargs

    def _read_config(self, config: Any, min_pixels: int | None, max_pixels: int | None) -> None:
        """The checkpoint's type, pixel limits and commit, from its config."""
        #: The checkpoint's ``config.json`` ``model_type`` (``qwen2_5_vl``, ``qwen2_vl``, ``qwen3_vl``, ...).
        self.model_type: str = config.model_type
        default_min, default_max = default_pixel_limits(self.model_type)
        #: The image pixel limits: as given, else the checkpoint's own (its dialect uses the same defaults).
        self.min_pixels: int = default_min if min_pixels is None else min_pixels
        self.max_pixels: int = default_max if max_pixels is None else max_pixels
        if not 0 < self.min_pixels <= self.max_pixels:
            raise SetupError(
                f"need 0 < min_pixels <= max_pixels, got {self.min_pixels} and {self.max_pixels}"
            )
        self.commit: str | None = getattr(config, "_commit_hash", None) or (
            _local_commit(self.local_dir) if self.local_dir is not None else None
        )

    def _load_config(self, transformers: Any, source: str, hub_kwargs: dict[str, Any]) -> Any:
        try:
            config = transformers.AutoConfig.from_pretrained(source, **hub_kwargs)
        except (OSError, ValueError) as exc:
            if self.local_dir is not None:  # a local config that transformers cannot read
                raise SetupError(
                    f"{self.local_dir}/config.json is not a model config transformers "
                    f"{transformers.__version__} understands ({_first_line(exc)}); "
                    "a newer transformers may be needed"
                ) from exc
            raise load_error(exc, self.name, device=self.device, dtype=self.dtype) from exc
        if config.model_type not in ARCHITECTURES:
            raise SetupError(
                f"{self.name} is a {config.model_type!r} model; the local backend runs Qwen2.5-VL "
                "(qwen2_5_vl), Qwen2-VL (qwen2_vl) and Qwen3-VL (qwen3_vl, qwen3_vl_moe) checkpoints"
            )
        return config

    def _load_processor(self, transformers: Any, source: str, hub_kwargs: dict[str, Any]) -> tuple[Any, bool]:
        """The stock processor where torchvision works, the image-only one otherwise.

        torchvision may be installed yet unusable (built for another torch: ``torchvision::nms does not
        exist``); that also falls back, since only its video half needs it.
        """
        limits = {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}
        try:
            if transformers.utils.is_torchvision_available():
                try:
                    return transformers.AutoProcessor.from_pretrained(source, **limits, **hub_kwargs), False
                except (ImportError, RuntimeError, AttributeError):
                    pass
            from screenpilot.model.processor import load_image_only_processor

            return load_image_only_processor(source, model_type=self.model_type, **limits, **hub_kwargs), True
        except (OSError, ValueError) as exc:
            raise SetupError(f"could not load the processor of {self.name}: {_first_line(exc)}") from exc

    def _load_model(self, transformers: Any, source: str, config: Any, hub_kwargs: dict[str, Any]) -> Any:
        cls = getattr(transformers, ARCHITECTURES[config.model_type])
        torch_dtype = getattr(self._torch, self.dtype)
        placement = self._placement()
        try:
            model = cls.from_pretrained(
                source,
                config=config,
                dtype=torch_dtype,
                attn_implementation=self.attn_implementation,
                **placement,
                **hub_kwargs,
            )
            if not placement:
                model.to(self.device)
        except (OSError, RuntimeError, MemoryError) as exc:
            if self.local_dir is not None and not _is_out_of_memory(exc):
                raise SetupError(
                    f"could not load the weights in {self.local_dir} ({_first_line(exc)}); "
                    "is the download complete (*.safetensors present)?"
                ) from exc
            raise load_error(exc, self.name, device=self.device, dtype=self.dtype) from exc
        except (ValueError, ImportError) as exc:  # e.g. an attention implementation that is not installed
            raise SetupError(f"could not set up {self.name}: {_first_line(exc)}") from exc
        model.eval()
        return model

    def _placement(self) -> dict[str, Any]:
        """Where the weights go as they load: straight onto the GPU (no full copy in CPU memory first) when
        accelerate is there, spread over all GPUs for ``auto``; an empty dict means load, then ``.to()``."""
        try:
            import accelerate  # noqa: F401
        except ImportError:
            if self.device == "auto":
                raise MissingExtraError("local", "accelerate", "--device auto") from None
            return {}
        if self.device == "cpu":
            return {}
        return {"device_map": self.device}

    def _setup_tokens(self) -> None:
        tokenizer = self.processor.tokenizer
        ids = {
            t: tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>", "<|image_pad|>")
        }
        unknown = tokenizer.unk_token_id
        missing = [t for t, i in ids.items() if i is None or (i == unknown and t != tokenizer.unk_token)]
        if missing:
            raise SetupError(
                f"the tokenizer of {self.name} lacks Qwen's tokens {missing}: not a Qwen-VL tokenizer"
            )
        self._stop_ids = [ids["<|im_end|>"], ids["<|endoftext|>"]]
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids["<|endoftext|>"]
        self.image_token_id: int = self.processor.image_token_id
        config_image_id = getattr(self._model.config, "image_token_id", None)
        if config_image_id is not None and config_image_id != self.image_token_id:
            raise SetupError(
                f"{self.name}: the model's image_token_id ({config_image_id}) is not the tokenizer's "
                f"<|image_pad|> ({self.image_token_id})"
            )
        image_processor = self.processor.image_processor
        self.patch_size: int = int(image_processor.patch_size)
        self.merge_size: int = int(image_processor.merge_size)
        vision = getattr(self._model.config, "vision_config", None)
        for name, value in (("patch_size", self.patch_size), ("spatial_merge_size", self.merge_size)):
            expected = getattr(vision, name, value)
            if expected != value:
                raise SetupError(
                    f"{self.name}: the image processor's {name.removeprefix('spatial_')} ({value}) is not the "
                    f"vision model's {name} ({expected})"
                )

    def _make_generation_config(self, transformers: Any) -> Any:
        """Greedy decoding, the checkpoint's sampling settings left out; compiled as CUDA graphs where
        ``decode_graphs`` is on."""
        config = transformers.GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=self.max_new_tokens,
            repetition_penalty=self.repetition_penalty,
            # Neutral values, so the checkpoint's sampling settings are not merged in (and warned about).
            temperature=1.0,
            top_p=1.0,
            top_k=50,
            eos_token_id=self._stop_ids,
            pad_token_id=self._pad_id,
            cache_implementation=self.cache_implementation,
        )
        if self.decode_graphs:
            config.compile_config = decode_compile_config(transformers)
        return config

    def _setup_fast_paths(self, options: dict[str, Any], requested_cache: str | None) -> None:
        """The speed levers: each on by default where it can run, off where it cannot; :attr:`fast_paths`
        says which are on, and why the others are not."""
        from screenpilot.model.fast_vision import batched_windows_apply, install_batched_windows

        #: Lever -> "on", or why it is off.
        self.fast_paths: dict[str, str] = {}
        self._compiled_sizes: set[int] = set()  # static cache sizes the decoding step was compiled for
        self._static_tokens = 0  # the length of transformers' own static cache (without system-prompt reuse)
        self.batched_vision = bool(options.get("batched_vision", True))
        reason = batched_windows_apply(self._model) if self.batched_vision else "asked"
        self.batched_vision = self.batched_vision and install_batched_windows(self._model)
        self.fast_paths["batched_vision"] = "on" if self.batched_vision else f"off: {reason}"
        self.decode_graphs, self.fast_paths["decode_graphs"] = self._decide_decode_graphs(
            options.get("decode_graphs"), requested_cache
        )
        if self.decode_graphs:
            self.cache_implementation = "static"
        self.reuse_system_kv, self.fast_paths["reuse_system_kv"] = self._decide_kv_reuse(
            options.get("reuse_system_kv", True)
        )
        self._system_kv = (
            SystemPromptKV(
                self._model, static=self.cache_implementation == "static", headroom=STATIC_CACHE_HEADROOM
            )
            if self.reuse_system_kv
            else None
        )

    def _decide_decode_graphs(self, requested: bool | None, requested_cache: str | None) -> tuple[bool, str]:
        """Whether the decoding step runs as CUDA graphs (transformers' compiled static-cache step, mode
        ``reduce-overhead``): by default on one CUDA GPU with sdpa attention; elsewhere the plain path."""
        if requested is not None and not requested:
            return False, "off: asked"
        if requested_cache is not None and requested_cache != "static":
            return False, f"off: the {requested_cache} cache was asked for"
        if not self.device.startswith("cuda"):
            return False, f"off: CUDA graphs need one CUDA device (the model is on {self.device})"
        if self.attn_implementation != "sdpa":
            return False, f"off: set up for sdpa attention, not {self.attn_implementation}"
        major, minor = self._torch.cuda.get_device_capability(self._torch.device(self.device))
        if major < 7:
            return False, f"off: compute capability {major}.{minor} is below 7.0"
        return True, "on"

    def _decide_kv_reuse(self, requested: bool) -> tuple[bool, str]:
        """Whether the system prompt's KV is computed once and reused by every step."""
        if not requested:
            return False, "off: asked"
        if self.model_type not in KV_REUSE_MODEL_TYPES:
            return False, f"off: not checked for {self.model_type}"
        if self.cache_implementation not in (None, "static"):
            return False, f"off: the {self.cache_implementation} cache is built by transformers"
        tokenizer = self.processor.tokenizer
        self._im_start_id = tokenizer.convert_tokens_to_ids("<|im_start|>")
        if self._im_start_id is None or self._im_start_id == tokenizer.unk_token_id:
            return False, "off: the tokenizer has no <|im_start|>"
        return True, "on"

    @property
    def factor(self) -> int:
        """Image sides are multiples of this (patch × merge: 28 for Qwen2.5-VL, 32 for Qwen3-VL)."""
        return self.patch_size * self.merge_size

    @property
    def model(self) -> Any:
        """The loaded torch module (for benchmarks and inspection)."""
        if self._model is None:
            raise ModelBackendError(f"{self.name} is closed")
        return self._model

    # -- the ModelBackend protocol -----------------------------------------------------------------------------
    def check(self, timeout_s: float = CHECK_TIMEOUT_S) -> None:
        """The constructor ran the fast checks and loaded the weights: only a closed backend fails here."""
        if getattr(self, "_model", None) is None:
            raise SetupError(f"{self.name} is closed")

    def begin_episode(self, task_id: str | None) -> None:
        pass

    def complete(self, messages: Sequence[Message], *, deadline: float | None = None) -> Completion:
        """Greedy answer; a ``deadline`` (``time.monotonic()``) stops generation there (``max_time``) and
        returns what was generated so far."""
        t0 = time.perf_counter()
        if (left := seconds_left(deadline)) is not None and left <= 0:
            raise DeadlineExceeded(f"{self.name}: the time budget ran out before the model was asked")
        prompt = render_chatml(messages)
        images = [image for message in messages for image in message.images]
        for image in images:
            self._check_image_size(image)
        inputs = self.processor(text=[prompt], images=images or None, return_tensors="pt")
        self._check_grid(inputs, images)
        input_ids = inputs["input_ids"]
        prompt_tokens = int(input_ids.shape[1])
        image_tokens = int((input_ids == self.image_token_id).sum())
        inputs = inputs.to(self._model.device)
        timer = _FirstTokenTimer(t0)  # from the call's start: processor, vision and prefill
        try:
            output = self._generate(inputs, input_ids[0].tolist(), deadline, timer)
        except (RuntimeError, MemoryError) as exc:
            if _is_out_of_memory(exc):
                if self._system_kv is not None:
                    self._system_kv.forget()
                self._free_cache()
                raise ModelBackendError(
                    f"out of memory generating on {self.device} ({prompt_tokens} prompt tokens, "
                    f"{image_tokens} image tokens): lower --max-pixels or --keep-images"
                ) from exc
            raise
        new_tokens = output[0, prompt_tokens:].tolist()
        text = self.decode(new_tokens)
        return Completion(
            text,
            Usage(
                prompt_tokens=prompt_tokens,
                image_tokens=image_tokens,
                output_tokens=len(new_tokens),
                time_to_first_token_s=timer.time_to_first_token,
                total_s=time.perf_counter() - t0,
            ),
        )

    def _generate(self, inputs: Any, input_ids: list[int], deadline: float | None, timer: Any) -> Any:
        """``generate`` on the processed inputs; when the decoding step cannot be compiled, decoding graphs
        are turned off (with a warning, and the reason in :attr:`fast_paths`) and the step runs again."""
        try:
            return self._generate_once(inputs, input_ids, deadline, timer)
        except Exception as exc:
            if not (self.decode_graphs and _is_compile_error(exc)):
                raise
            self._stop_decode_graphs(exc)
        timer.restart()
        return self._generate_once(inputs, input_ids, deadline, timer)

    def _generate_once(self, inputs: Any, input_ids: list[int], deadline: float | None, timer: Any) -> Any:
        """``generate`` on the processed inputs, after the held system-prompt KV where there is one."""
        torch = self._torch
        with torch.inference_mode(), self._attention_kernels():
            cache = self._step_cache(input_ids)
            generation_config = self._generation_config_for(
                len(input_ids), deadline, own_cache=cache is not None
            )
            if self.decode_graphs:
                held = self._system_kv if cache is not None else None
                self._announce_compilation(generation_config.max_cache_len if held is None else held.capacity)
            extra = {} if cache is None else {"cache": cache}
            try:
                return self.model.generate(
                    **inputs, generation_config=generation_config, streamer=timer, **extra
                )
            finally:
                if cache is not None and self._system_kv is not None:
                    self._system_kv.rewind()

    def _announce_compilation(self, cache_tokens: int | None) -> None:
        """One line before a step that compiles the decoding step (the first of each cache size)."""
        if cache_tokens is None or cache_tokens in self._compiled_sizes:
            return
        self._compiled_sizes.add(cache_tokens)
        log.warning(
            "%s: compiling the decoding step as CUDA graphs for a %d-token cache; this step takes about a "
            "minute longer (once per process and cache size; decode_graphs=False, or "
            "--cache-implementation dynamic, skips it)",
            self.name,
            cache_tokens,
        )

    def _stop_decode_graphs(self, exc: BaseException) -> None:
        """Decode without compiling from now on (the static cache stays)."""
        cause = getattr(exc, "inner_exception", None) or exc  # a compiler's own error, where it raised one
        self.decode_graphs = False
        self.fast_paths["decode_graphs"] = (
            f"off: compiling failed ({type(cause).__name__}: {_first_line(cause)})"
        )
        self._generation_config.compile_config = None
        self._generation_config.disable_compile = True  # no compilation of transformers' own either
        log.warning("%s: decoding without CUDA graphs: %s", self.name, self.fast_paths["decode_graphs"])

    def _step_cache(self, input_ids: list[int]) -> Any:
        """The cache holding this prompt's system message (computed on first sight), or None: no reuse."""
        if self._system_kv is None:
            return None
        prefix = system_prefix(input_ids, im_start=self._im_start_id, image_token=self.image_token_id)
        if prefix is None:
            return None
        return self._system_kv.cache_for(prefix, len(input_ids) + self.max_new_tokens)

    def _generation_config_for(
        self, prompt_tokens: int, deadline: float | None, *, own_cache: bool = False
    ) -> Any:
        """The decoding settings for one call: the static cache's size (or none, when the step brings its own
        cache), and ``max_time`` to the deadline."""
        generation_config = self._generation_config
        static = self.cache_implementation is not None and "static" in self.cache_implementation
        left = seconds_left(deadline)
        if not static and left is None and not own_cache:
            return generation_config
        generation_config = copy.copy(generation_config)
        if own_cache:
            generation_config.cache_implementation = None
        elif static:
            generation_config.max_cache_len = self._static_length(prompt_tokens + self.max_new_tokens)
        if left is not None:
            generation_config.max_time = max(left, 0.001)
        return generation_config

    def _static_length(self, needed: int) -> int:
        """The static cache's length for a step that needs ``needed`` tokens: the last one while it is long
        enough, else ``needed`` and the headroom in whole buckets."""
        if needed > self._static_tokens:
            self._static_tokens = bucketed(needed + STATIC_CACHE_HEADROOM, STATIC_CACHE_BUCKET)
        return self._static_tokens

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of generated ids: special tokens dropped, the (non-special) ``<tool_call>`` tags kept."""
        return str(self.processor.tokenizer.decode(list(token_ids), skip_special_tokens=True))

    def describe(self) -> dict[str, object]:
        import transformers

        return {
            "backend": "transformers",
            "model": self.name,
            "path": str(self.local_dir) if self.local_dir is not None else None,
            "revision": self.revision,
            "commit": self.commit,
            "model_type": self.model_type,
            "architecture": ARCHITECTURES[self.model_type],
            "dtype": self.dtype,
            "device": self.device,
            "attn_implementation": self.attn_implementation,
            "processor": "image-only" if self.image_only_processor else type(self.processor).__name__,
            "decoding": {
                "do_sample": False,
                "max_new_tokens": self.max_new_tokens,
                "repetition_penalty": self.repetition_penalty,
                "cache_implementation": self.cache_implementation,
                "cudnn_attention": self.uses_cudnn_attention,
                "stop": ["<|im_end|>", "<|endoftext|>"],
            },
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
            "fast_paths": dict(self.fast_paths),
            "transformers": transformers.__version__,
            "torch": self._torch.__version__,
        }

    def close(self) -> None:
        if getattr(self, "_model", None) is None:
            return
        if self._system_kv is not None:
            self._system_kv.forget()
            self._system_kv.model = None
        self._model = None
        gc.collect()
        self._free_cache()

    # -- checks -----------------------------------------------------------------------------------------------
    def _check_image_size(self, image: Image.Image) -> None:
        width, height = image.size
        expected = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        if expected != (height, width):
            raise ModelBackendError(
                f"image {width}x{height} is not at the model's size for factor {self.factor}, "
                f"min_pixels={self.min_pixels}, "
                f"max_pixels={self.max_pixels} (the processor would resize it to {expected[1]}x{expected[0]} and "
                "the coordinates would no longer match the prompt); the dialect and the backend need the same "
                "pixel limits"
            )

    def _check_grid(self, inputs: Any, images: Sequence[Image.Image]) -> None:
        if not images:
            return
        grids = inputs["image_grid_thw"].tolist()
        for image, grid in zip(images, grids, strict=True):
            width, height = image.size
            want = [1, height // self.patch_size, width // self.patch_size]
            if list(grid) != want:
                raise ModelBackendError(
                    f"the processor resized a {width}x{height} image to a {grid[2]}x{grid[1]} patch grid "
                    f"(expected {want[2]}x{want[1]}): its pixel limits differ from the dialect's"
                )

    @property
    def uses_cudnn_attention(self) -> bool:
        """Whether SDPA may pick cuDNN's kernel: on CUDA with a static cache, or when asked for.

        cuDNN builds plans per shape: with a growing (dynamic) cache that costs seconds for every new prompt
        length, while a static cache has one shape and decodes faster with it.
        """
        if self.attn_implementation != "sdpa" or not self._on_gpu:
            return False
        static = self.cache_implementation is not None and "static" in self.cache_implementation
        return self.cudnn_attention or static

    def _attention_kernels(self) -> contextlib.AbstractContextManager[Any]:
        if self.uses_cudnn_attention or self.attn_implementation != "sdpa" or not self._on_gpu:
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])

    def _free_cache(self) -> None:
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
