"""Generation health: the failures SFT introduces that accuracy numbers hide.

Over an eval set of prompts, generated through the training template:

* **stopping**: the share of answers that end with the stop token / end-of-turn marker
  before the length limit (a model whose end marker was never trained rambles to the limit);
* **length**: the distribution of answer lengths in tokens;
* **repetition**: the share of repeated token n-grams within each answer, and distinct-1 /
  distinct-2 over all answers (token-level, so it means the same in English and Chinese);
* **language**: answers whose language differs from the prompt's (langid, offline).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sftforge.infer.generate import Generation

#: Answers shorter than this many characters are too short to identify their language.
MIN_LANGUAGE_CHARS = 20


def repeated_ngram_ratio(ids: Sequence[int], n: int = 3) -> float:
    """Share of the n-grams of one answer that repeat an earlier n-gram of it."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def distinct_n(answers: Sequence[Sequence[int]], n: int) -> float:
    """Distinct n-grams over all n-grams of all answers (Li et al. 2016)."""
    grams: Counter[tuple[int, ...]] = Counter()
    for ids in answers:
        grams.update(tuple(ids[i : i + n]) for i in range(len(ids) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def language_mismatch(prompt: str, answer: str) -> bool | None:
    """True when the answer's language differs from the prompt's; None when unsure."""
    from sftforge.data.filters import detect_language

    if len(answer.strip()) < MIN_LANGUAGE_CHARS or len(prompt.strip()) < MIN_LANGUAGE_CHARS:
        return None
    return detect_language(prompt)[0] != detect_language(answer)[0]


def generation_health(
    prompts: Sequence[str], generations: Sequence[Generation], tokenizer: Any,
    *, max_new_tokens: int,
) -> dict[str, Any]:  # fmt: skip
    """Health figures for answers to ``prompts`` (the last user message of each)."""
    # The generated ids when generate() recorded them; answers from elsewhere are tokenized.
    ids = [
        list(g.token_ids) or tokenizer(g.text, add_special_tokens=False).input_ids
        for g in generations
    ]
    lengths = [g.new_tokens for g in generations]
    mismatches = [language_mismatch(p, g.text) for p, g in zip(prompts, generations, strict=True)]
    judged = [m for m in mismatches if m is not None]
    repeated = [repeated_ngram_ratio(x) for x in ids]
    n = len(generations)
    return {
        "answers": n,
        "stop_rate": sum(g.finish_reason == "stop" for g in generations) / n if n else 0.0,
        "hit_length_limit": sum(g.finish_reason == "length" for g in generations),
        "max_new_tokens": max_new_tokens,
        "length": {
            "mean": statistics.fmean(lengths) if lengths else 0.0,
            "median": statistics.median(lengths) if lengths else 0.0,
            "p90": _quantile(lengths, 0.9),
            "max": max(lengths, default=0),
            "empty": sum(1 for g in generations if not g.text.strip()),
        },
        "repetition": {
            "repeated_3gram_ratio_mean": statistics.fmean(repeated) if repeated else 0.0,
            "answers_over_30pct_repeated": sum(r > 0.3 for r in repeated),
            "distinct_1": distinct_n(ids, 1),
            "distinct_2": distinct_n(ids, 2),
        },
        "language": {
            "judged": len(judged),
            "mismatch_rate": sum(judged) / len(judged) if judged else 0.0,
        },
        "lengths": lengths,
        "repeated_3gram_ratio": repeated,
    }


def _quantile(values: Sequence[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])
