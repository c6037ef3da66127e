"""The system prompt's KV cache, computed once and reused by every step that starts with the same prompt.

An agent's prompt opens with the same system message at every step of an episode (and across episodes of one
task). Its keys and values depend only on its own tokens and positions (text positions, before any image), so
they are computed once; each step then prefills only what follows. After the step the cache is cut back to
the system prompt, so the same cache object (and, for a static cache, the same memory) serves the next step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Static caches are sized in multiples of this many tokens, so prompts of nearby lengths share one shape
#: (and one compiled decoding graph).
CACHE_BUCKET = 1024


def bucketed(tokens: int, bucket: int = CACHE_BUCKET) -> int:
    """``tokens`` rounded up to a whole number of buckets."""
    return -(-tokens // bucket) * bucket


def system_prefix(input_ids: Sequence[int], *, im_start: int, image_token: int) -> tuple[int, ...] | None:
    """The tokens of the prompt's opening message (up to the second ``<|im_start|>``), when it has no image
    and something follows it; None otherwise."""
    if not input_ids or input_ids[0] != im_start:
        return None
    for position in range(1, len(input_ids)):
        if input_ids[position] == im_start:
            prefix = tuple(input_ids[:position])
            return None if image_token in prefix else prefix
    return None


class SystemPromptKV:
    """One system prompt's KV cache, held between steps.

    :meth:`cache_for` returns the cache to pass to ``generate`` (filled with the prompt's opening message);
    :meth:`rewind` cuts it back after the step. A different opening message, or a static cache too short for
    the step, is computed afresh. A static cache keeps its length while it is long enough, and grows to what
    the step needs plus ``headroom`` tokens (in whole buckets), so a prompt that grows step by step seldom
    meets a new shape (each new shape compiles the decoding step again).
    """

    def __init__(self, model: Any, *, static: bool, headroom: int = 0) -> None:
        self.model = model
        self.static = static
        self.headroom = headroom
        self.prefix: tuple[int, ...] = ()
        self.cache: Any = None
        self.prefills = 0
        self._length = 0

    @property
    def capacity(self) -> int | None:
        """The static cache's length in tokens (None for a dynamic cache or none yet)."""
        if not self.static or self.cache is None:
            return None
        return self._length

    def cache_for(self, prefix: tuple[int, ...], needed: int) -> Any:
        """The cache holding ``prefix``'s KV, room for ``needed`` tokens in all (static caches)."""
        capacity = self.capacity
        if self.cache is None or prefix != self.prefix or (capacity is not None and capacity < needed):
            long_enough = capacity is not None and capacity >= needed
            self._prefill(prefix, self._length if long_enough else bucketed(needed + self.headroom))
        self.model.model.rope_deltas = None  # the step's image positions are computed afresh
        return self.cache

    def _prefill(self, prefix: tuple[int, ...], length: int) -> None:
        import torch
        from transformers import DynamicCache, StaticCache

        self.cache = None
        config = self.model.config
        cache = (
            StaticCache(config=config, max_cache_len=length) if self.static else DynamicCache(config=config)
        )
        ids = torch.tensor([list(prefix)], device=self.model.device)
        with torch.inference_mode():
            self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        self.model.model.rope_deltas = None
        self.prefix, self.cache, self._length = prefix, cache, length
        self.prefills += 1

    def rewind(self) -> None:
        """Cut the cache back to the system prompt; on any failure forget it (the next step computes it)."""
        if self.cache is None:
            return
        try:
            extra = int(self.cache.get_seq_length()) - len(self.prefix)
            if extra > 0:
                self.cache.crop(-extra)
            elif extra < 0:
                raise RuntimeError("the cache lost part of the system prompt")
        except Exception:
            self.forget()

    def forget(self) -> None:
        """Drop the held cache."""
        self.cache, self.prefix = None, ()
