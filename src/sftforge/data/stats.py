"""Per-source statistics of a built dataset, for the manifest and the HTML report."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sftforge.data.block import conversation_text
from sftforge.types import KIND_TEXT, Conversation


def _default_language(text: str) -> str:
    from sftforge.data.filters import detect_language

    return detect_language(text)[0]


def token_lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    """Tokens per text (no special tokens added), as the statistics count them."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [len(e.ids) for e in encode(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts)["input_ids"]]


@dataclass
class SourceStats:
    lengths: list[int] = field(default_factory=list)
    turns: Counter[int] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)


class DatasetStats:
    """Collects lengths (tokens if a tokenizer is given, else characters), assistant turns
    per conversation, detected language and split counts, per source.

    Language detection runs on at most ``language_sample`` samples per source: it is the
    slowest statistic and a sample tells the mix well enough.
    """

    def __init__(
        self,
        tokenizer: Any | None = None,
        *,
        language_sample: int = 2000,
        detect_language: Callable[[str], str] | None = None,
        count_tokens: Callable[[list[str]], list[int]] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        #: Counts tokens in place of ``tokenizer`` (a build counts them in its workers,
        #: which have the tokenizer loaded already).
        self._count_tokens = count_tokens
        uses_tokens = tokenizer is not None or count_tokens is not None
        self.length_unit = "tokens" if uses_tokens else "characters"
        self.language_sample = language_sample
        self._detect = detect_language or _default_language
        self.sources: dict[str, SourceStats] = defaultdict(SourceStats)

    def observe(
        self, conversations: Iterable[Conversation], split: str, *, count_splits: bool = True
    ) -> None:
        """Add conversations. ``count_splits=False`` when they are a sample and the split
        sizes come from :meth:`count_split`."""
        batch = list(conversations)
        texts = [conversation_text(c) for c in batch]
        if self._count_tokens is not None and texts:
            lengths = self._count_tokens(texts)
        elif self.tokenizer is not None and texts:
            lengths = token_lengths(self.tokenizer, texts)
        else:
            lengths = [len(t) for t in texts]
        for conv, text, n in zip(batch, texts, lengths, strict=True):
            s = self.sources[str(conv.meta.get("source_name") or conv.meta.get("source", "?"))]
            s.lengths.append(n)
            if count_splits:
                s.splits[split] += 1
            s.kinds[conv.kind] += 1
            if conv.kind != KIND_TEXT:
                s.turns[sum(1 for m in conv.messages if m.role == "assistant")] += 1
            if sum(s.languages.values()) < self.language_sample:
                s.languages[self._detect(text)] += 1

    def count_split(self, split: str, counts: Sequence[int], names: Sequence[str]) -> None:
        """Record a split's true size per source (``counts[i]`` samples of ``names[i]``)."""
        for name, n in zip(names, counts, strict=True):
            if n:
                self.sources[name].splits[split] += int(n)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for name, s in sorted(self.sources.items()):
            lengths = sorted(s.lengths)
            out[name] = {
                "samples": len(lengths),
                "splits": dict(s.splits),
                "kinds": dict(s.kinds),
                f"length_{self.length_unit}": _summary(lengths),
                "assistant_turns": {str(k): v for k, v in sorted(s.turns.items())},
                "languages_sampled": dict(s.languages.most_common()),
            }
        return out


def _summary(sorted_values: list[int]) -> dict[str, float]:
    if not sorted_values:
        return {}
    n = len(sorted_values)

    def q(p: float) -> int:
        return sorted_values[min(n - 1, int(p * (n - 1) + 0.5))]

    return {
        "min": sorted_values[0],
        "p50": q(0.5),
        "p90": q(0.9),
        "p99": q(0.99),
        "max": sorted_values[-1],
        "mean": round(sum(sorted_values) / n, 1),
        "total": sum(sorted_values),
    }
