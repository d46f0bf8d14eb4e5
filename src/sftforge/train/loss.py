"""The SFT loss: next-token cross-entropy over trained positions only.

The output projection (hidden -> vocabulary) is the largest single matrix product of a
small model, and its softmax over the whole vocabulary is the most memory-hungry step.
Prompt tokens (label -100) never need it, so the model is asked for logits only at the
positions whose next token is trained (``logits_to_keep`` with an index tensor). The
result is identical to computing every logit and masking; the benchmark shows the saving.

Training, validation perplexity and ``sftforge eval ppl`` all use :func:`masked_nll`, so
they measure the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from sftforge.encode.encoder import IGNORE_INDEX


def trained_positions(labels: torch.Tensor) -> torch.Tensor:
    """Sequence positions ``p`` whose next token ``labels[:, p + 1]`` is trained in any row."""
    targets = labels[:, 1:] != IGNORE_INDEX
    return targets.any(dim=0).nonzero(as_tuple=True)[0]


def masked_nll(
    model: Any, batch: Mapping[str, torch.Tensor], *, skip_masked_logits: bool = True
) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood of the trained tokens of ``batch`` and their count.

    ``batch`` holds ``input_ids`` and unshifted ``labels`` (plus ``attention_mask`` or
    ``position_ids``). With ``skip_masked_logits=False`` every logit is computed (the
    reference the benchmark compares against).
    """
    labels = batch["labels"]
    # No KV cache: with a cache transformers skips the packed-sequence detection that keeps
    # attention inside each sample, and packed samples would see each other.
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    inputs["use_cache"] = False
    if skip_masked_logits:
        keep = trained_positions(labels)
        if keep.numel() == 0:  # nothing trained in this batch: a zero that keeps the graph
            logits = model(**inputs, logits_to_keep=1).logits
            return logits.sum() * 0.0, 0
        logits = model(**inputs, logits_to_keep=keep).logits
        targets = labels[:, keep + 1]
    else:
        logits = model(**inputs).logits[:, :-1]
        targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    count = int(mask.sum())
    # Cross-entropy in fp32: bf16 logits lose precision in the log-sum-exp.
    nll = F.cross_entropy(logits[mask].float(), targets[mask], reduction="sum")
    return nll, count
