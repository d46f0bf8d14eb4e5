"""The supervision audit: counts, defects, and the refusal to train on a defect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sftforge import get_template
from sftforge.encode import Encoder, EncodeReport
from sftforge.encode.encoder import Encoded, TrainedSpan
from sftforge.train.audit import SupervisionDefect, audit_supervision, enforce

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _convs(n=8):
    with open(ASSETS / "conversations_en.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()][:n]


def test_clean_data_passes_with_real_counts(smollm2_tokenizer):
    report = EncodeReport()
    enc = Encoder(get_template("chatml"), smollm2_tokenizer, max_length=1024)
    samples = list(enc.encode_many(_convs(), report=report))
    audit = audit_supervision(samples, report, smollm2_tokenizer)
    assert audit.ok, audit.defects
    assert audit.trained_tokens == sum(s.num_trained for s in samples) > 0
    assert audit.end_marker_share == 1.0
    assert audit.double_bos_samples == 0
    # SmolLM2's pad token is its EOS: reported, and EOS is still trained by label
    assert audit.pad_is_eos and audit.eos_trained == audit.end_markers_trained
    assert audit.examples and audit.examples[0]["trained"].endswith("<|im_end|>")
    assert "verdict" in audit.to_dict()


def _fake(tokenizer, ids, labels, has_end):
    span = TrainedSpan(message=1, start=labels.index(next(x for x in labels if x != -100)),
                       end=len(ids), has_end_marker=has_end, role="assistant")  # fmt: skip
    return Encoded(ids, labels, spans=(span,))


def _report(samples, end_markers):
    r = EncodeReport(samples_in=len(samples), samples_kept=len(samples))
    r.assistant_turns = r.assistant_turns_trained = len(samples)
    r.end_markers_trained = end_markers
    r.tokens = sum(len(s.input_ids) for s in samples)
    r.trained_tokens = sum(s.num_trained for s in samples)
    return r


def test_untrained_end_marker_is_a_defect_and_blocks_training(smollm2_tokenizer, tmp_path):
    ids = smollm2_tokenizer("hello there friend", add_special_tokens=False).input_ids
    samples = [_fake(smollm2_tokenizer, ids, [-100, *ids[1:]], has_end=False)] * 3
    audit = audit_supervision(samples, _report(samples, 0), smollm2_tokenizer)
    assert not audit.ok
    assert any("end-of-turn marker" in d for d in audit.defects)
    with pytest.raises(SupervisionDefect, match="allow_defects"):
        enforce(audit, allow_defects=False, where=str(tmp_path / "audit.json"))
    enforce(audit, allow_defects=True, where="x")  # an explicit override lets it through


def test_double_bos_is_a_defect(smollm2_tokenizer):
    bos = smollm2_tokenizer.bos_token_id
    body = smollm2_tokenizer("hi", add_special_tokens=False).input_ids
    ids = [bos, bos, *body, smollm2_tokenizer.eos_token_id]
    samples = [_fake(smollm2_tokenizer, ids, [-100, -100, *ids[2:]], has_end=True)] * 2
    audit = audit_supervision(samples, _report(samples, 2), smollm2_tokenizer)
    assert audit.double_bos_samples == 2
    assert any("BOS twice" in d for d in audit.defects)


def test_nothing_trained_is_a_defect(smollm2_tokenizer):
    report = EncodeReport(samples_in=4)
    report.dropped.update({"too_long": 4})
    audit = audit_supervision([], report, smollm2_tokenizer)
    assert any("no token is trained" in d for d in audit.defects)
    assert any("dropped" in d for d in audit.defects)
