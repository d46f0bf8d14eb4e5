"""Attention for packed rows without flash-attn: one causal SDPA call per sample.

A packed row holds several samples. transformers keeps them apart with SDPA by building a
block-diagonal mask from the position ids, which is correct but makes every layer attend
over the whole row: cost grows with the square of the *row* length, and an explicit mask
rules out PyTorch's fused causal kernels. flash-attn avoids both with variable-length
kernels, but it needs CUDA and a separate install.

This attention function reads the same sequence boundaries flash-attn uses
(``cu_seq_lens_q``, which :class:`~sftforge.encode.collate.PackedCollator` adds) and runs
``scaled_dot_product_attention(is_causal=True)`` on each sample: the cost is the sum of the
squares of the sample lengths, with the fused kernel, on any device. Batches without
boundaries (padded batches, generation with a KV cache) go to transformers' own SDPA path
unchanged, so one model serves training, evaluation and generation.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F

#: The ``attn_implementation`` name this module registers with transformers.
PACKED_SDPA = "sftforge_packed_sdpa"


def packed_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Shapes as transformers passes them: query (batch, heads, len, dim), key/value
    (batch, kv_heads, len, dim); returns (batch, len, heads, dim)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    edges = _edges(bounds)
    gqa = query.shape[1] != key.shape[1]
    dropout_p = dropout if module.training else 0.0
    parts = [
        F.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            is_causal=True,
            dropout_p=dropout_p,
            scale=scaling,
            enable_gqa=gqa,
        )
        for start, end in pairwise(edges)
        if end > start
    ]
    out = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
    return out.transpose(1, 2).contiguous(), None


# Every layer of one forward pass gets the same boundary tensor; converting it once (rather
# than per layer) avoids a device-to-host sync per layer on GPUs.
_last_edges: tuple[torch.Tensor | None, list[int]] = (None, [])


def _edges(bounds: torch.Tensor) -> list[int]:
    global _last_edges
    if _last_edges[0] is not bounds:
        _last_edges = (bounds, bounds.tolist())
    return _last_edges[1]


_registered = False


def register_packed_attention() -> str:
    """Register :data:`PACKED_SDPA` with transformers (idempotent); returns its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
        # Masks are built as for SDPA: needed by the fallback path (padded batches,
        # generation); packed rows ignore them.
        AttentionMaskInterface.register(PACKED_SDPA, sdpa_mask)
        _registered = True
    return PACKED_SDPA
