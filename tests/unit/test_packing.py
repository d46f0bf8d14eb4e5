"""Packing: a packed row gives exactly the loss of its samples run one by one, and no
sample sees another. Tiny random Llama in float32, real SmolLM2 tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sftforge import get_template
from sftforge.encode import Encoder
from sftforge.encode.collate import PackedCollator, PaddedCollator
from sftforge.models.attention import PACKED_SDPA
from sftforge.models.load import load_causal_lm
from sftforge.train.loss import masked_nll, trained_positions

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.fixture(scope="module")
def samples(smollm2_tokenizer):
    with open(ASSETS / "conversations_en.jsonl", encoding="utf-8") as fh:
        convs = [json.loads(line) for line in fh if line.strip()][:6]
    enc = Encoder(get_template("chatml"), smollm2_tokenizer, max_length=256)
    out = [e for e in enc.encode_batch(convs, errors="drop") if not e.dropped]
    assert len(out) >= 4
    return [e.to_dict() for e in out[:4]]


def _model(tiny_model_dir, attn):
    model = load_causal_lm(tiny_model_dir, attn_implementation=attn)
    # The default config keeps use_cache=True: the loss must still keep samples apart.
    assert model.config.use_cache
    return model.eval()


def _separately(model, samples):
    total, count = 0.0, 0
    for s in samples:
        nll, n = masked_nll(model, PackedCollator()([s]))
        total += float(nll)
        count += n
    return total, count


@pytest.mark.parametrize("attn", ["sdpa", "eager", "auto"])
def test_packed_loss_equals_unpacked(tiny_model_dir, samples, attn):
    model = _model(tiny_model_dir, attn)
    with torch.no_grad():
        alone, n_alone = _separately(model, samples)
        packed, n_packed = masked_nll(model, PackedCollator()(samples))
        padded, n_padded = masked_nll(model, PaddedCollator(0)(samples))
    assert n_alone == n_packed == n_padded > 0
    assert float(packed) == pytest.approx(alone, rel=1e-5)
    assert float(padded) == pytest.approx(alone, rel=1e-5)


def test_packed_sdpa_is_registered_and_used(tiny_model_dir):
    model = _model(tiny_model_dir, "auto")
    assert model.config._attn_implementation == PACKED_SDPA


def test_no_sample_sees_another(tiny_model_dir, samples):
    """Changing the first sample's tokens leaves every logit of the second unchanged."""
    model = _model(tiny_model_dir, "auto")
    first, second = samples[0], samples[1]
    noisy = {"input_ids": [(t * 7 + 3) % 1000 for t in first["input_ids"]],
             "labels": first["labels"]}  # fmt: skip
    with torch.no_grad():
        a = model(**_inputs(PackedCollator()([first, second]))).logits
        b = model(**_inputs(PackedCollator()([noisy, second]))).logits
    n = len(first["input_ids"])
    assert not torch.allclose(a[:, :n], b[:, :n])
    torch.testing.assert_close(a[:, n:], b[:, n:], rtol=1e-5, atol=1e-5)


def test_skipping_masked_logits_changes_nothing(tiny_model_dir, samples):
    model = _model(tiny_model_dir, "auto")
    batch = PackedCollator()(samples)
    with torch.no_grad():
        fast, n_fast = masked_nll(model, batch)
        full, n_full = masked_nll(model, batch, skip_masked_logits=False)
    assert n_fast == n_full
    assert float(fast) == pytest.approx(float(full), rel=1e-6)
    kept = trained_positions(batch["labels"])
    assert 0 < kept.numel() < batch["input_ids"].shape[1]  # the prompt really is skipped


def test_gradients_match_between_packed_and_unpacked(tiny_model_dir, samples):
    model = _model(tiny_model_dir, "auto").train()
    nll, n = masked_nll(model, PackedCollator()(samples))
    (nll / n).backward()
    packed_grad = model.lm_head.weight.grad.clone()
    model.zero_grad()
    total = 0
    for s in samples:
        part, k = masked_nll(model, PackedCollator()([s]))
        (part / n).backward()
        total += k
    assert total == n
    torch.testing.assert_close(model.lm_head.weight.grad, packed_grad, rtol=1e-4, atol=1e-7)


def test_collator_masks_sample_starts_and_records_boundaries():
    batch = PackedCollator()(
        [{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    # The first token of each sample is never a target: no cross-sample prediction.
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 5]
    assert batch["max_length_q"] == 3


def _inputs(batch):
    return {k: v for k, v in batch.items() if k != "labels"}
