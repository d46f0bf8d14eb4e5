"""Perplexity, generation health and the forgotten checks, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sftforge import as_conversation, get_template
from sftforge.encode import Encoder
from sftforge.encode.collate import PackedCollator
from sftforge.eval.checks import NO_TEMPLATE, forgetting, template_ablation, train_serve_consistency
from sftforge.eval.health import distinct_n, generation_health, repeated_ngram_ratio
from sftforge.eval.ppl import perplexity
from sftforge.infer.generate import Generation
from sftforge.infer.load import load_for_inference
from sftforge.tokenizer import load_tokenizer
from sftforge.train.artifacts import set_chat_template
from sftforge.train.data import read_split
from sftforge.train.loss import masked_nll

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CONVS = ASSETS / "conversations_en.jsonl"


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_for_inference(str(tiny_model_dir), template="chatml")


def test_perplexity_matches_the_training_loss_per_sample(loaded):
    result = perplexity(loaded, CONVS, limit=6, max_length=512, progress=False)
    enc = Encoder(get_template("chatml"), loaded.tokenizer, max_length=512)
    total, count = 0.0, 0
    with torch.no_grad():
        for sample in enc.encode_many(read_split(CONVS, 6)):
            nll, n = masked_nll(loaded.model, PackedCollator()([sample.to_dict()]))
            total, count = total + float(nll), count + n
    assert result["overall"]["tokens"] == count
    assert result["overall"]["loss"] == pytest.approx(total / count, rel=1e-5)
    assert sum(v["tokens"] for v in result["per_source"].values()) == count


def test_health_figures():
    assert repeated_ngram_ratio([1, 2, 3, 1, 2, 3, 1, 2, 3]) == pytest.approx(4 / 7)
    assert repeated_ngram_ratio([1, 2, 3, 4]) == 0.0
    assert distinct_n([[1, 2], [1, 3]], 1) == pytest.approx(3 / 4)


def test_generation_health_counts(smollm2_tokenizer):
    gens = [
        Generation("Paris is the capital of France, and it is lovely.", "stop", 5, 12),
        Generation("the the the the the the the the the the", "length", 5, 10),
    ]
    prompts = ["What is the capital city of France please?", "Say something nice about Paris."]
    health = generation_health(prompts, gens, smollm2_tokenizer, max_new_tokens=10)
    assert health["stop_rate"] == 0.5 and health["hit_length_limit"] == 1
    assert health["repetition"]["answers_over_30pct_repeated"] == 1
    assert health["language"]["mismatch_rate"] == 0.0


def test_consistency_passes_with_the_exported_template(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    template = get_template("chatml")
    set_chat_template(tok, template)
    with open(CONVS, encoding="utf-8") as fh:
        convs = [as_conversation(json.loads(line)) for line in list(fh)[:8]]
    result = train_serve_consistency(tok, template, convs)
    assert result["verdict"] == "pass" and result["turns_checked"] >= 8


def test_consistency_fails_when_serving_another_template(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    set_chat_template(tok, get_template("vicuna"))
    with open(CONVS, encoding="utf-8") as fh:
        convs = [as_conversation(json.loads(line)) for line in list(fh)[:3]]
    result = train_serve_consistency(tok, get_template("chatml"), convs)
    assert result["verdict"] == "fail" and result["mismatches"] == result["turns_checked"]


def test_ablation_reports_each_template(loaded):
    prompts = [[{"role": "user", "content": "Name a fruit."}]]
    result = template_ablation(loaded, CONVS, prompts, limit=4, max_new_tokens=4)
    names = [row["template"] for row in result["rows"]]
    assert names == ["chatml", NO_TEMPLATE.name, "alpaca"]
    assert all(row["ppl"] > 0 for row in result["rows"])
    assert result["verdict"]


def test_forgetting_flags_a_damaged_model(tiny_model_dir, loaded):
    replay = ASSETS / "data" / "pretrain" / "c4_demo.jsonl"
    same = forgetting(loaded, loaded, replay, limit=4)
    assert same["verdict"] == "no regression"
    damaged = load_for_inference(str(tiny_model_dir), template="chatml")
    with torch.no_grad():
        for p in damaged.model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    result = forgetting(loaded, damaged, replay, limit=4)
    assert result["verdict"] == "regression" and result["replay_ppl"]["relative_change"] > 0.1
