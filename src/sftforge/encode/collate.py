"""Batches of encoded samples: packed (padding-free) or padded.

Packing concatenates a micro-batch into one row. ``position_ids`` restart at 0 for every
sample and no ``attention_mask`` is passed, which is how transformers recognises a packed
row: its masking utilities derive a block-diagonal causal mask from the position ids (SDPA
and eager attention), and flash attention uses them as sequence boundaries. No sample
attends to another and no compute is spent on padding.

The row also carries the sample boundaries the way flash-attn's variable-length kernels take
them (``cu_seq_lens_q/k``, ``max_length_q/k``); transformers passes them to the attention
function, so flash attention on GPUs and sftforge's packed SDPA
(:mod:`sftforge.models.attention`) attend within each sample without any mask.

The first label of every packed sample is set to -100. Labels are unshifted (the loss
shifts them), so without this the last token of one sample would be trained to predict the
first token of the next one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import torch

from sftforge.encode.encoder import IGNORE_INDEX

Feature = Mapping[str, Sequence[int]]


class PackedCollator:
    """Concatenate samples into a single row with per-sample position ids."""

    def __call__(self, features: Sequence[Feature]) -> dict[str, torch.Tensor]:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        bounds = [0]
        for f in features:
            n = len(f["input_ids"])
            if n == 0:  # a dropped sample carries no tokens
                continue
            ids.extend(f["input_ids"])
            labels.append(IGNORE_INDEX)
            labels.extend(f["labels"][1:])
            positions.extend(range(n))
            bounds.append(bounds[-1] + n)
        cu = torch.tensor(bounds, dtype=torch.int32)
        longest = max((b - a for a, b in pairwise(bounds)), default=0)
        return {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
            "cu_seq_lens_q": cu,
            "cu_seq_lens_k": cu,
            "max_length_q": longest,
            "max_length_k": longest,
        }


class PaddedCollator:
    """Right-pad to the longest sample; padding is masked out of attention and the loss."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[Feature]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.tensor(f["labels"], dtype=torch.long)
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def make_collator(packing: bool, pad_token_id: int | None) -> Any:
    if packing:
        return PackedCollator()
    if pad_token_id is None:
        raise ValueError("padded batches need a pad token id (or use packing)")
    return PaddedCollator(pad_token_id)
