"""Perplexity over trained tokens only: the masks of training, per source.

``exp(sum NLL / trained tokens)`` over a dataset split, computed with the training loss
function (:func:`~sftforge.train.loss.masked_nll`) on packed batches, so validation
perplexity at training time and ``sftforge eval ppl`` afterwards measure the same thing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sftforge.encode.collate import PackedCollator
from sftforge.encode.encoder import Encoded, Encoder
from sftforge.templates.base import ChatTemplate
from sftforge.train.data import dataset_files, encode_split, source_of
from sftforge.train.loss import masked_nll


def split_file(data: str | Path, split: str = "validation") -> Path:
    """The file of ``split`` in a dataset folder, or ``data`` itself when it is a file."""
    path = Path(data)
    if path.is_file():
        return path
    files = dataset_files(path, verify=False)  # the split read is verified by the caller
    if split == "train":
        return files.train
    if files.validation is None:
        raise FileNotFoundError(
            f"{path}: no validation split (validation.jsonl); use --split train"
        )
    return files.validation


def nll_by_source(model: Any, samples: list[Encoded], batch_size: int = 4,
                  progress: bool = True) -> dict[str, tuple[float, int, int]]:  # fmt: skip
    """Summed NLL, trained tokens and samples per source, in packed batches."""
    import torch

    by_source: dict[str, list[Encoded]] = defaultdict(list)
    for s in samples:
        by_source[source_of(s)].append(s)
    collate = PackedCollator()
    device = next(model.parameters()).device
    out: dict[str, tuple[float, int, int]] = {}
    bar = tqdm(total=len(samples), desc="perplexity", disable=not progress)
    with torch.no_grad():
        for source, group in sorted(by_source.items()):
            total, count = 0.0, 0
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                batch = collate([s.to_dict() for s in chunk])
                batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
                nll, n = masked_nll(model, batch)
                total += float(nll)
                count += n
                bar.update(len(chunk))
            out[source] = (total, count, len(group))
    bar.close()
    return out


def perplexity(
    loaded: Any,
    data: str | Path,
    *,
    split: str = "validation",
    template: ChatTemplate | None = None,
    max_length: int = 2048,
    policy: str = "all_assistant",
    limit: int | None = None,
    batch_size: int = 4,
    progress: bool = True,
    verify: bool = True,
) -> dict[str, Any]:
    """Perplexity of ``loaded.model`` on a dataset split, overall and per source.

    A split of a built dataset is checked against its manifest first (``verify=False``
    skips that, and the result says so). Samples the encoder drops (too long for
    ``max_length``, invalid) are not scored: ``result["dropped"]`` counts them by reason
    and :func:`dropped_line` words it for a person."""
    from sftforge.data.manifest import verify_dataset

    path = split_file(data, split)
    verification = verify_dataset(path, verify=verify)
    template = template or loaded.template
    encoder = Encoder(template, loaded.tokenizer, max_length=max_length, policy=policy)
    samples, report = encode_split(encoder, path, limit)
    sums = nll_by_source(loaded.model, samples, batch_size, progress)
    total = sum(v[0] for v in sums.values())
    count = sum(v[1] for v in sums.values())
    return {
        "kind": "ppl",
        "model": str(loaded.source),
        "data": str(path),
        "template": template.name,
        "overall": _metrics(total, count, len(samples)),
        "per_source": {src: _metrics(*v) for src, v in sums.items()},
        "samples_in": report.samples_in,
        "dropped": dict(report.dropped),
        "max_length": max_length,
        "encode": report.to_dict(),
        "verification": verification.to_dict(),
    }


def dropped_line(result: dict[str, Any]) -> str | None:
    """``"10 of 40 samples not scored: too_long 10 (longer than --max-length 2048)"``, or
    None when every sample was scored."""
    dropped = result.get("dropped") or {}
    if not dropped:
        return None
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()))
    return (
        f"{sum(dropped.values())} of {result['samples_in']} samples not scored: {reasons} "
        f"(max length {result['max_length']} tokens; see results.json 'encode')"
    )


def _metrics(nll: float, tokens: int, samples: int) -> dict[str, float]:
    loss = nll / tokens if tokens else float("nan")
    return {
        "loss": loss,
        "ppl": math.exp(min(loss, 50.0)) if tokens else float("nan"),
        "tokens": tokens,
        "samples": samples,
    }
