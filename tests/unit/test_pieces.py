"""Piecewise tokenization between added tokens must equal whole-text tokenization."""

from __future__ import annotations

import random

import pytest

from sftforge.encode.pieces import PieceTokenizer, _hard_added_tokens

FRAGMENTS = ["hello", " world", "\n", "\n\n", "  ", "你好", "，世界", "4.", " [INST] ", "x", "\t"]


def _tokenize(tok):
    def run(texts):
        return [list(ids) for ids in tok(list(texts), add_special_tokens=False)["input_ids"]]

    return run


@pytest.mark.parametrize("name", ["smollm2", "mistral", "deepseek", "qwen"])
def test_piecewise_equals_whole_on_random_texts(name, real_tokenizers):
    tok = real_tokenizers[name]
    pieces_tok = PieceTokenizer(tok, _tokenize(tok))
    assert pieces_tok.enabled
    specials = [t for t in (tok.bos_token, tok.eos_token, "<|im_start|>", "<|im_end|>") if t]
    rng = random.Random(0)
    texts = []
    for _ in range(300):
        parts = [rng.choice(FRAGMENTS + specials) for _ in range(rng.randint(1, 12))]
        texts.append("".join(parts))
    pieces: dict = {}
    plans = [pieces_tok.parts(t, pieces) for t in texts]
    table = pieces_tok.tokenize_pieces(pieces)
    assert table is not None
    whole = _tokenize(tok)(texts)
    for text, plan, ids in zip(texts, plans, whole, strict=True):
        assert pieces_tok.join(plan, table) == ids, repr(text)


class _Token:
    def __init__(self, content, **flags):
        self.content = content
        self.lstrip = flags.get("lstrip", False)
        self.rstrip = flags.get("rstrip", False)
        self.single_word = False
        self.normalized = False


class _Fake:
    backend_tokenizer = None

    def __init__(self):
        self.added_tokens_decoder = {
            1: _Token("<a>"),
            2: _Token("<b>", rstrip=True),
            3: _Token("<c>", lstrip=True),
        }


def test_tokens_that_strip_whitespace_are_not_boundaries():
    assert _hard_added_tokens(_Fake()) == ["<a>"]
