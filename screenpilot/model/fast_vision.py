"""Qwen2.5-VL's vision encoder with every window of a layer in one attention call.

transformers runs Qwen2.5-VL's window attention with SDPA as one call per window (about 200 windows in each of
28 layers for a phone screenshot): on a GPU the encoder then waits on kernel launches, not on arithmetic. Here
the windows of a layer are gathered into one padded batch, ``[windows, heads, longest window, head dim]``,
and attended in a single SDPA call; padded keys are masked out (each query sees exactly the keys of its own
window, as a block-diagonal mask would give), and the padded rows are dropped again. When all windows have
the same length no mask is needed at all. The projections, rotary embedding and merger are the stock ones.

With ``attn_implementation="flash_attention_2"`` transformers already runs all windows in one variable-length
call, and nothing is replaced; Qwen2-VL and Qwen3-VL have no windows (their one image is one call already).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import torch
from torch.nn import functional

#: The vision attention class whose per-window loop this module replaces.
WINDOWED_ATTENTION = "Qwen2_5_VLVisionAttention"


class WindowPlan:
    """How one ``cu_seqlens`` splits a sequence into windows, as gather indices for one batched call."""

    def __init__(self, cu_seqlens: torch.Tensor) -> None:
        bounds = cu_seqlens.tolist()
        spans = [(start, end - start) for start, end in itertools.pairwise(bounds) if end > start]
        self.length = bounds[-1] if bounds else 0
        self.single = len(spans) == 1 and spans[0][0] == 0
        self.windows = len(spans)
        self.longest = max((n for _, n in spans), default=0)
        device = cu_seqlens.device
        starts = torch.tensor([s for s, _ in spans], device=device, dtype=torch.long)
        lengths = torch.tensor([n for _, n in spans], device=device, dtype=torch.long)
        offsets = torch.arange(self.longest, device=device)
        valid = offsets[None, :] < lengths[:, None]
        self.index = torch.where(valid, starts[:, None] + offsets[None, :], 0)
        ragged = bool(spans) and any(n != self.longest for _, n in spans)
        #: Keys a query may see (``[windows, 1, 1, longest]``); None when every window is full.
        self.mask = valid[:, None, None, :] if ragged else None
        #: The rows of the padded output that hold real tokens, in sequence order.
        self.rows = valid.flatten().nonzero().squeeze(1) if ragged else None

    def attend(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """Attention within each window; ``query``, ``key``, ``value`` and the result are ``[tokens, heads, dim]``."""
        if self.single:
            q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (query, key, value))
            return functional.scaled_dot_product_attention(q, k, v, scale=scale)[0].transpose(0, 1)
        q, k, v = (
            t[self.index].transpose(1, 2) for t in (query, key, value)
        )  # [windows, heads, longest, dim]
        out = functional.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, scale=scale)
        heads, dim = query.shape[1], query.shape[2]
        out = out.transpose(1, 2).reshape(self.windows * self.longest, heads, dim)
        return out if self.rows is None else out[self.rows]


class PlanCache:
    """The plans of the current forward pass, found by the identity of its ``cu_seqlens`` tensors.

    The vision model hands the same two tensors (windows, whole images) to every layer, so each is read back
    from the device once per image, not once per layer. The tensors are held, so their identity is not reused.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._entries: list[tuple[torch.Tensor, WindowPlan]] = []

    def get(self, cu_seqlens: torch.Tensor) -> WindowPlan:
        """The plan for ``cu_seqlens``, made on first sight."""
        for tensor, plan in self._entries:
            if tensor is cu_seqlens:
                return plan
        plan = WindowPlan(cu_seqlens)
        self._entries = [*self._entries[-(self.size - 1) :], (cu_seqlens, plan)]
        return plan


def _batched_forward(
    attention: Any,
    plans: PlanCache,
    hidden_states: torch.Tensor,
    cu_seqlens: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_seqlen: int | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Qwen2.5-VL's vision attention forward, its windows attended in one call."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

    tokens = hidden_states.shape[0]
    qkv = attention.qkv(hidden_states).reshape(tokens, 3, attention.num_heads, -1).permute(1, 0, 2, 3)
    query, key, value = qkv.unbind(0)
    if position_embeddings is None:
        raise ValueError("Qwen2.5-VL's vision attention needs its rotary position embeddings")
    cos, sin = position_embeddings
    query, key = apply_rotary_pos_emb_vision(query, key, cos, sin)
    out = plans.get(cu_seqlens).attend(query, key, value, attention.scaling)
    return attention.proj(out.reshape(tokens, -1))  # type: ignore[no-any-return]


def window_attention_modules(model: Any) -> list[Any]:
    """The windowed vision attention modules of a loaded model (empty for models without windows)."""
    visual = getattr(getattr(model, "model", model), "visual", None)
    blocks = getattr(visual, "blocks", None) or []
    return [b.attn for b in blocks if type(getattr(b, "attn", None)).__name__ == WINDOWED_ATTENTION]


def batched_windows_apply(model: Any) -> str | None:
    """Why the batched window attention cannot run on ``model``, or None when it can."""
    if not window_attention_modules(model):
        return "the vision encoder has no window attention"
    implementation = getattr(
        getattr(model.config, "vision_config", model.config), "_attn_implementation", None
    )
    if implementation != "sdpa":
        return f"the vision attention is {implementation}, not sdpa"
    return None


def install_batched_windows(model: Any) -> bool:
    """Run every window of a layer in one attention call; False (and nothing changed) where that does not
    apply (see :func:`batched_windows_apply`)."""
    if batched_windows_apply(model) is not None:
        return False
    plans = PlanCache()
    for attention in window_attention_modules(model):
        attention.forward = functools.partial(_batched_forward, attention, plans)
    return True


def uninstall_batched_windows(model: Any) -> None:
    """Back to transformers' own per-window loop."""
    for attention in window_attention_modules(model):
        attention.__dict__.pop("forward", None)


def uses_batched_windows(model: Any) -> bool:
    """Whether :func:`install_batched_windows` is in effect on ``model``."""
    modules = window_attention_modules(model)
    return bool(modules) and all("forward" in m.__dict__ for m in modules)
