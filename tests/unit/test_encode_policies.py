"""Policies, per-message overrides, truncation and drops: nothing is lost silently."""

from __future__ import annotations

import pytest

from sftforge import Conversation, get_template
from sftforge.encode import IGNORE_INDEX, Encoder, EncodeReport, encode

SYSTEM = {"role": "system", "content": "You are a concise assistant."}


def chat(n_turns: int, answer_words: int = 3, system: bool = True) -> list[dict]:
    msgs = [SYSTEM] if system else []
    for i in range(n_turns):
        msgs.append({"role": "user", "content": f"Question number {i}?"})
        msgs.append({"role": "assistant", "content": " ".join([f"answer{i}"] * answer_words)})
    return msgs


def trained_text(tok, enc):
    return [tok.decode(enc.input_ids[s.start : s.end]) for s in enc.spans]


def test_default_trains_every_assistant_turn_with_its_end(smollm2_tokenizer):
    enc = encode(chat(3), get_template("chatml"), smollm2_tokenizer)
    assert trained_text(smollm2_tokenizer, enc) == [
        "answer0 answer0 answer0<|im_end|>",
        "answer1 answer1 answer1<|im_end|>",
        "answer2 answer2 answer2<|im_end|>",
    ]


def test_last_assistant_policy(smollm2_tokenizer):
    enc = encode(chat(3), get_template("chatml"), smollm2_tokenizer, policy="last_assistant")
    assert trained_text(smollm2_tokenizer, enc) == ["answer2 answer2 answer2<|im_end|>"]


def test_all_tokens_policy_trains_everything(smollm2_tokenizer):
    tok = smollm2_tokenizer
    enc = encode(chat(2), get_template("chatml"), tok, policy="all_tokens")
    assert enc.labels == enc.input_ids
    assert tok.decode(enc.input_ids) == get_template("chatml").render(chat(2), tokenizer=tok)


def test_per_message_overrides(smollm2_tokenizer):
    tok = smollm2_tokenizer
    msgs = chat(2)
    msgs[2] = {**msgs[2], "train": False}  # first answer: known bad, keep as context only
    msgs[3] = {**msgs[3], "train": True}  # second question: train on it too
    enc = encode(msgs, get_template("chatml"), tok)
    assert trained_text(tok, enc) == ["Question number 1?", "answer1 answer1 answer1<|im_end|>"]
    assert [s.role for s in enc.spans] == ["user", "assistant"]


def test_plain_text_replay_is_fully_trained_and_ends_with_eos(smollm2_tokenizer):
    tok = smollm2_tokenizer
    enc = encode(Conversation.text("Plain web text for replay."), get_template("chatml"), tok)
    assert enc.labels == enc.input_ids
    assert tok.decode(enc.input_ids) == "Plain web text for replay.<|im_end|>"


def test_truncation_drops_oldest_turns_and_keeps_the_system_prompt(smollm2_tokenizer):
    tok = smollm2_tokenizer
    template = get_template("chatml")
    full = encode(chat(6), template, tok)
    limit = len(full.input_ids) - 10  # forces at least one turn out
    report = EncodeReport()
    [enc] = Encoder(template, tok, max_length=limit).encode_batch([chat(6)], report=report)
    assert len(enc.input_ids) <= limit
    assert enc.truncated and enc.turns_dropped >= 1
    text = tok.decode(enc.input_ids)
    assert text.startswith("<|im_start|>system\nYou are a concise assistant.<|im_end|>")
    assert "Question number 0?" not in text
    assert text.endswith("answer5 answer5 answer5<|im_end|>")
    assert all(tok.decode(enc.input_ids[s.start : s.end]).endswith("<|im_end|>") for s in enc.spans)
    assert report.truncated_samples == 1
    assert report.turns_dropped_by_truncation == enc.turns_dropped
    assert report.reconciles()


def test_sample_that_cannot_fit_is_dropped_with_a_reason(smollm2_tokenizer):
    tok = smollm2_tokenizer
    report = EncodeReport()
    encoder = Encoder(get_template("chatml"), tok, max_length=40)
    convs = [chat(1, answer_words=200), chat(1, answer_words=2, system=False)]
    kept = list(encoder.encode_many(convs, report=report))
    assert len(kept) == 1
    assert report.dropped == {"too_long": 1}
    assert report.samples_in == 2 and report.samples_kept == 1 and report.reconciles()


def test_never_keeps_an_answer_without_its_end_marker(mistral_tokenizer):
    tok = mistral_tokenizer
    template = get_template("llama2")
    conv = chat(4, answer_words=20)
    for limit in range(30, 400, 17):
        [enc] = Encoder(template, tok, max_length=limit).encode_batch([conv], report=EncodeReport())
        if enc.dropped:
            assert enc.drop_reason == "too_long"
            continue
        assert len(enc.input_ids) <= limit
        for span in enc.spans:
            assert enc.input_ids[span.end - 1] == tok.eos_token_id


def test_no_trained_tokens_is_dropped_not_trained(smollm2_tokenizer):
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "train": False}]
    report = EncodeReport()
    [enc] = Encoder(get_template("chatml"), smollm2_tokenizer).encode_batch([msgs], report=report)
    assert enc.dropped and enc.drop_reason == "no_trained_tokens"
    assert enc.input_ids == [] and all(label == IGNORE_INDEX for label in enc.labels)
    assert report.dropped == {"no_trained_tokens": 1}


def test_invalid_conversations_raise_or_are_counted(smollm2_tokenizer):
    bad = {"messages": [{"role": "bot", "content": "x"}], "meta": {"source": "f.jsonl", "line": 4}}
    encoder = Encoder(get_template("chatml"), smollm2_tokenizer)
    with pytest.raises(ValueError, match=r"f.jsonl:4 messages\[0\].role"):
        encoder.encode(bad)
    report = EncodeReport()
    assert list(encoder.encode_many([bad], report=report)) == []
    assert report.dropped == {"invalid_conversation": 1}
    assert "f.jsonl:4" in report.examples["invalid_conversation"][0]


def test_guanaco_boundary_merge_is_counted_and_p1_kept(mistral_tokenizer):
    """Guanaco's prompt ends in a space that merges into the answer in later prompts."""
    tok = mistral_tokenizer
    template = get_template("guanaco")
    msgs = chat(2, system=False)
    report = EncodeReport()
    [enc] = Encoder(template, tok).encode_batch([msgs], report=report)
    assert report.boundary_merges >= 1
    assert report.turns_untrained_boundary == 1
    assert [s.message for s in enc.spans] == [3]
    prompt = template.render(msgs[:3], add_generation_prompt=True, tokenizer=tok)
    assert enc.input_ids[: enc.spans[0].start] == tok(prompt, add_special_tokens=False).input_ids


def test_report_counts_reconcile_and_summarise(smollm2_tokenizer):
    report = EncodeReport()
    encoder = Encoder(get_template("chatml"), smollm2_tokenizer, max_length=64)
    convs = [chat(1), chat(3), chat(1, answer_words=100), [{"role": "user", "content": "only"}]]
    list(encoder.encode_many(convs, report=report))
    assert report.samples_in == 4
    assert report.reconciles()
    assert 0 < report.trained_fraction < 1
    text = report.summary()
    assert "dropped (too_long)" in text and "dropped (invalid_conversation)" in text
    assert report.to_dict()["reconciles"] is True


def test_mismatched_template_and_tokenizer_warns(smollm2_tokenizer):
    from sftforge.encode import TemplateMismatchWarning, template_tokenizer_problems

    assert template_tokenizer_problems(get_template("chatml"), smollm2_tokenizer) == []
    problems = template_tokenizer_problems(get_template("llama3"), smollm2_tokenizer)
    assert problems and "<|eot_id|>" in problems[0]
    with pytest.warns(TemplateMismatchWarning, match="eot_id"):
        Encoder(get_template("llama3"), smollm2_tokenizer)
