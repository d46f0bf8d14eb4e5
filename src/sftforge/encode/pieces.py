"""Exact tokenization of many prompt prefixes without re-tokenizing shared history.

A Hugging Face tokenizer splits its input on added tokens (``<|im_end|>``, ``</s>``...)
*before* normalising and pre-tokenizing, and tokenizes the pieces between them
independently. So ``tok(X + S + Y) == tok(X + S) + piece(S, Y)``, where
``piece(S, Y) = tok(S + Y)`` without the tokens of ``S`` (tokenizing ``Y`` right after
``S`` keeps position effects, such as SentencePiece's leading-space rule, exactly as in
the whole text).

Multi-turn prompts share almost all of their text, so each prompt is expressed as a list
of pieces that are tokenized once (and shared between turns and samples: the system
prompt's piece is the same in every sample). That turns the quadratic cost of tokenizing
every prompt prefix into roughly one pass over the text.

The property is checked on probe strings when the splitter is built; a tokenizer that
fails it (an added token that strips neighbouring whitespace, a normalizer that changes
how added tokens match) falls back to tokenizing every prompt whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

Tokenize = Callable[[Sequence[str]], list[list[int]]]

# A part of a prompt: an added token (its text), or an index into the table of pieces.
Part = str | int
# A piece to tokenize: (the added token before it, or "" at the start; the piece's text).
PieceKey = tuple[str, str]

_PROBE_TEXTS = ("a{S}b", "{S}\n\nx y", "x {S} y ", "{S}{S}", "你好{S} 世界\n", "  {S}  z", "{S}")


class PieceTokenizer:
    """Tokenize texts as sequences of pieces between the tokenizer's added tokens."""

    def __init__(self, tokenizer: Any, tokenize: Tokenize) -> None:
        self._tokenize = tokenize
        self._ids: dict[str, list[int]] = {}
        self._pattern: re.Pattern[str] | None = None
        self.enabled = False
        hard = _hard_added_tokens(tokenizer)
        if not hard:
            return
        for token in hard:
            self._ids[token] = tokenize([token])[0]
        self._pattern = re.compile(
            "|".join(re.escape(t) for t in sorted(hard, key=len, reverse=True))
        )
        self.enabled = self._probe(hard)

    def _probe(self, hard: Sequence[str]) -> bool:
        """True when piecewise tokenization equals whole-text tokenization on probes."""
        probes = [p.replace("{S}", s) for s in list(hard)[:8] for p in _PROBE_TEXTS]
        if any(len(self._ids[s]) != 1 for s in hard):
            return False
        whole = self._tokenize(probes)
        pieces: dict[PieceKey, int] = {}
        plans = [self.parts(text, pieces) for text in probes]
        table = self.tokenize_pieces(pieces)
        if table is None:
            return False
        return all(self.join(plan, table) == ids for plan, ids in zip(plans, whole, strict=True))

    def parts(self, text: str, pieces: dict[PieceKey, int]) -> list[Part]:
        """Split ``text`` into parts, registering the pieces to tokenize in ``pieces``."""
        assert self._pattern is not None
        parts: list[Part] = []
        pos = 0
        prev = ""
        for m in self._pattern.finditer(text):
            if m.start() > pos:
                parts.append(pieces.setdefault((prev, text[pos : m.start()]), len(pieces)))
            parts.append(m.group())
            prev = m.group()
            pos = m.end()
        if pos < len(text):
            parts.append(pieces.setdefault((prev, text[pos:]), len(pieces)))
        return parts

    def tokenize_pieces(self, pieces: dict[PieceKey, int]) -> list[list[int]] | None:
        """Tokenize every registered piece in one batched call.

        A piece after an added token is tokenized behind that token (so position effects
        match the whole text) and the token's ids are removed. ``None`` if a token did not
        come out as itself in front of its piece: the caller must tokenize whole texts.
        """
        keys = list(pieces)
        return self.strip_contexts(keys, self._tokenize([c + piece for c, piece in keys]))

    def strip_contexts(
        self, keys: Sequence[PieceKey], encoded: Sequence[list[int]]
    ) -> list[list[int]] | None:
        """Remove the leading added token's ids from each encoded ``context + piece``."""
        out = list(encoded)
        for i, (context, _) in enumerate(keys):
            if context:
                n = len(self._ids[context])
                if out[i][:n] != self._ids[context]:
                    return None
                out[i] = out[i][n:]
        return out

    def join(self, parts: Sequence[Part], table: Sequence[list[int]]) -> list[int]:
        ids: list[int] = []
        for part in parts:
            ids.extend(self._ids[part] if isinstance(part, str) else table[part])
        return ids


def _hard_added_tokens(tokenizer: Any) -> list[str]:
    """Added tokens that split text cleanly: no whitespace stripping, single-word rules,
    or (when the tokenizer normalises) matching on normalised text."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    backend = getattr(tokenizer, "backend_tokenizer", None)
    has_normalizer = backend is not None and backend.normalizer is not None
    out = []
    for token in decoder.values():
        content = getattr(token, "content", None)
        if not content:
            continue
        if getattr(token, "lstrip", False) or getattr(token, "rstrip", False):
            continue
        if getattr(token, "single_word", False):
            continue
        if has_normalizer and getattr(token, "normalized", False):
            continue
        out.append(content)
    return out
