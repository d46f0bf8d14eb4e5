"""Decontamination: drop training samples that contain evaluation questions.

A training sample is contaminated by an eval question when it contains at least
``min_overlap`` (default half) of the question's distinct token n-grams. Tokens are those of
near-duplicate detection (``minhash.py``: words, or single characters for CJK and other
scripts written without spaces; case, width and punctuation folded away), so the check is
blind to formatting, punctuation and spacing changes.

Defaults and why:

* ``ngram=8`` words for questions in space-delimited scripts: 13-grams (GPT-3's rule) miss
  MMLU-style questions that are barely longer than 13 words, while 8-grams are already far
  too specific to occur by chance in unrelated text;
* ``cjk_ngram=13`` characters for questions written mostly in CJK (C-Eval, CMMLU): a Chinese
  character carries less than a word, 13 characters are about 6-8 words;
* ``min_overlap=0.5``: one shared n-gram is not enough (exam boilerplate such as "which of
  the following statements about ... is true" is shared by many questions); a copied or
  lightly edited question shares most of its n-grams;
* a question shorter than ``n`` tokens is matched as a whole (one n-gram of its length) when
  it has at least ``min_tokens`` tokens (default ``ceil(0.75 * n)``: 6 words, 10
  characters); shorter questions are too generic to match on and are skipped (counted in
  :attr:`Decontaminate.skipped_questions`).

Eval sources: :func:`load_eval_questions` reads the MMLU (no header: ``question,A,B,C,D,
answer``), C-Eval (``id,question,A,B,C,D,answer[,explanation]``) and CMMLU
(``,Question,A,B,C,D,Answer``) CSV layouts, JSON Lines or JSON arrays with a
``question``/``prompt``/``instruction`` field (Alpaca-Eval: ``instruction``) or a ``turns``
list (MT-Bench: every turn is a question), and plain ``.txt`` files of one question per
line, from a file or a directory tree.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sftforge.data.block import Rejected, RejectSink, chunks
from sftforge.data.dedup import DuplicateClusters, TextField, text_selector
from sftforge.data.minhash import ngram_hashes, tokenize
from sftforge.errors import SftForgeError
from sftforge.types import Conversation

__all__ = ["EVAL_SUFFIXES", "QUESTION_FIELDS", "Decontaminate", "load_eval_questions"]

#: File types read from an eval directory.
EVAL_SUFFIXES = (".csv", ".jsonl", ".json", ".txt")
#: Fields holding the question in JSON / JSONL eval files, in order of preference.
QUESTION_FIELDS = ("question", "prompt", "instruction", "problem", "query")
_CHOICE_FIELDS = ("choices", "options")
#: MT-Bench style: every user turn of ``turns`` is a question.
TURNS_FIELD = "turns"

EvalQuestion = tuple[str, str]  # (location "file:row", question text)


# -- loading -----------------------------------------------------------------------------------
def _csv_questions(path: Path, shown: str, with_choices: bool) -> Iterator[EvalQuestion]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        line = 1  # the physical line a record starts on (quoted fields may span lines)
        column, choices, first = 0, [1, 2, 3, 4], True
        for row in reader:
            start, line = line, reader.line_num + 1
            if first:
                first = False
                names = [c.strip().casefold() for c in row]
                if "question" in names:  # C-Eval / CMMLU header; MMLU has none
                    column = names.index("question")
                    choices = [names.index(c) for c in ("a", "b", "c", "d") if c in names]
                    continue
            if column >= len(row) or not row[column].strip():
                continue
            text = row[column]
            if with_choices:
                text = "\n".join([text, *(row[c] for c in choices if c < len(row))])
            yield f"{shown}:{start}", text


def _record_questions(obj: Any, with_choices: bool) -> list[str]:
    """The questions of one JSON record: its question field, or each user turn of a
    ``turns`` list (MT-Bench: ``{"question_id", "category", "turns": [...]}``)."""
    q = _record_question(obj, with_choices)
    if q is not None:
        return [q]
    turns = obj.get(TURNS_FIELD) if isinstance(obj, dict) else None
    if isinstance(turns, list):
        return [t for t in turns if isinstance(t, str) and t.strip()]
    return []


def _record_question(obj: Any, with_choices: bool) -> str | None:
    if isinstance(obj, str):
        return obj if obj.strip() else None
    if not isinstance(obj, dict):
        return None
    for key in QUESTION_FIELDS:
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            if with_choices:
                for ck in _CHOICE_FIELDS:
                    opts = obj.get(ck)
                    if isinstance(opts, list):
                        value = "\n".join([value, *map(str, opts)])
                        break
            return value
    return None


def _json_questions(path: Path, shown: str, with_choices: bool) -> Iterator[EvalQuestion]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SftForgeError(f"{shown}: invalid JSON: {exc}") from None
        if not isinstance(records, list):
            records = [records]
        for i, obj in enumerate(records):
            qs = _record_questions(obj, with_choices)
            for t, q in enumerate(qs):
                yield f"{shown}[{i}]" + (f" turn {t + 1}" if len(qs) > 1 else ""), q
        return
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SftForgeError(f"{shown}:{lineno}: invalid JSON: {exc.msg}") from None
        qs = _record_questions(obj, with_choices)
        for t, q in enumerate(qs):
            yield f"{shown}:{lineno}" + (f" turn {t + 1}" if len(qs) > 1 else ""), q


def _txt_questions(path: Path, shown: str) -> Iterator[EvalQuestion]:
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, raw in enumerate(fh, 1):
            if raw.strip():
                yield f"{shown}:{lineno}", raw.rstrip("\n")


def load_eval_questions(
    path: str | Path, *, with_choices: bool = False, loaded: dict[str, int] | None = None
) -> list[EvalQuestion]:
    """``[(location, question), ...]`` from an eval file or every eval file under a
    directory (``.csv``, ``.jsonl``, ``.json``, ``.txt``; sorted). Locations read
    ``file:line`` (the line a CSV record starts on; ``file[i]`` for JSON arrays), with paths
    relative to the directory's parent (``mmlu/dev/x.csv:3``) or as given for a file.
    ``with_choices`` appends the answer options (CSV columns A-D, JSON ``choices``) to the
    question text. ``loaded``, when given, receives the number of questions read from
    each file. A file that yields no question is an error (a layout this reader does not
    know would otherwise decontaminate against nothing, silently)."""
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in EVAL_SUFFIXES)
        base = root.parent
    elif root.is_file():
        files, base = [root], None
    else:
        raise SftForgeError(f"eval source {str(root)!r} does not exist")
    if not files:
        raise SftForgeError(
            f"eval source {str(root)!r}: no eval files in it ({', '.join(EVAL_SUFFIXES)})"
        )
    out: list[EvalQuestion] = []
    for f in files:
        shown = f.relative_to(base).as_posix() if base is not None else str(f)
        before = len(out)
        if f.suffix == ".csv":
            out.extend(_csv_questions(f, shown, with_choices))
        elif f.suffix in (".jsonl", ".json"):
            out.extend(_json_questions(f, shown, with_choices))
        elif f.suffix == ".txt":
            out.extend(_txt_questions(f, shown))
        else:
            raise SftForgeError(
                f"{shown}: unsupported eval file type {f.suffix!r} "
                f"(expected one of {', '.join(EVAL_SUFFIXES)})"
            )
        if len(out) == before:
            raise SftForgeError(
                f"{f}: no eval questions found in it; expected an MMLU/C-Eval/CMMLU CSV, or "
                f"JSON/JSONL records with a {'/'.join(QUESTION_FIELDS)} field or a "
                f"'{TURNS_FIELD}' list (MT-Bench), or a .txt of one question per line"
            )
        if loaded is not None:
            loaded[str(f)] = len(out) - before
    return out


# -- the block ---------------------------------------------------------------------------------
class _NgramIndex:
    """Distinct n-gram hashes of the questions with one window length ``w``: sorted keys,
    and for each key the questions holding it (CSR)."""

    def __init__(self, w: int, qids: np.ndarray, hashes: np.ndarray) -> None:
        self.w = w
        pairs = np.unique(np.stack([hashes, qids.astype(np.uint64)]), axis=1)
        self.keys, first = np.unique(pairs[0], return_index=True)
        self.qptr = np.append(first, pairs.shape[1]).astype(np.int64)
        self.qids = pairs[1].astype(np.int64)

    def matches(self, docs: np.ndarray, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(doc, question)`` for every distinct (doc, n-gram) hit, one per question
        holding the n-gram."""
        pos = np.searchsorted(self.keys, hashes)
        pos[pos == self.keys.size] = 0
        hit = self.keys[pos] == hashes
        if not hit.any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        docs, key = np.unique(
            np.stack([docs[hit].astype(np.int64), pos[hit].astype(np.int64)]), axis=1
        )
        counts = self.qptr[key + 1] - self.qptr[key]
        total = int(counts.sum())
        step = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.repeat(docs, counts), self.qids[np.repeat(self.qptr[key], counts) + step]


class Decontaminate:
    """Drop training conversations that contain an evaluation question (see the module
    doc for the rule and its defaults). ``evals``: an eval file or directory, several of
    them, or ``(location, text)`` pairs as :func:`load_eval_questions` returns. Reason
    ``eval_contamination``; ``duplicate_of`` is the question's ``file:row``; the detail
    gives the matched n-grams. :attr:`clusters` groups the dropped samples by question."""

    name = "decontaminate"

    def __init__(
        self,
        evals: str | Path | Sequence[str | Path] | Sequence[EvalQuestion],
        *,
        ngram: int = 8,
        cjk_ngram: int = 13,
        min_overlap: float = 0.5,
        min_tokens: int | None = None,
        field: TextField = "all",
        with_choices: bool = False,
        chunk_size: int = 2048,
        max_clusters: int = 50,
    ) -> None:
        if not 0.0 < min_overlap <= 1.0:
            raise SftForgeError(f"min_overlap must be in (0, 1], got {min_overlap}")
        self.ngram, self.cjk_ngram = ngram, cjk_ngram
        self.min_overlap = min_overlap
        self.min_tokens = min_tokens
        self.field = field
        self._text = text_selector(field)
        self.chunk_size = chunk_size
        self.max_clusters = max_clusters
        self.questions = self._collect(evals, with_choices)
        if not self.questions:
            raise SftForgeError("no eval questions to decontaminate against")
        self.skipped_questions = 0
        self._build()
        self.clusters = DuplicateClusters(max_clusters)

    def _collect(self, evals: Any, with_choices: bool) -> list[EvalQuestion]:
        #: Questions read per eval file (for the manifest and the build summary).
        self.loaded: dict[str, int] = {}
        if isinstance(evals, (str, Path)):
            return load_eval_questions(evals, with_choices=with_choices, loaded=self.loaded)
        out: list[EvalQuestion] = []
        for item in evals:
            if isinstance(item, (str, Path)):
                out.extend(load_eval_questions(item, with_choices=with_choices, loaded=self.loaded))
            else:
                loc, text = item
                out.append((str(loc), str(text)))
        return out

    def loaded_lines(self) -> list[str]:
        """One line per eval file: how many questions it gave."""
        return [f"decontamination: {n} questions from {f}" for f, n in self.loaded.items()]

    def _min_tokens(self, n: int) -> int:
        return self.min_tokens if self.min_tokens is not None else math.ceil(0.75 * n)

    def _build(self) -> None:
        batch = tokenize([text for _, text in self.questions])
        counts = batch.counts
        n_q = np.where(batch.mostly_char_tokens(), self.cjk_ngram, self.ngram)
        window = np.minimum(counts, n_q)
        minimum = np.array([self._min_tokens(int(n)) for n in n_q], dtype=np.int64)
        too_short = counts < minimum
        too_short |= counts == 0
        self.skipped_questions = int(too_short.sum())
        window[too_short] = 0
        self._indexes: list[_NgramIndex] = []
        totals = np.zeros(len(self.questions), dtype=np.int64)
        for w in sorted(set(window.tolist()) - {0}):
            members = window == w
            ids = np.flatnonzero(members)
            sub_off = np.zeros(ids.size + 1, dtype=np.int64)
            np.cumsum(counts[ids], out=sub_off[1:])
            docs, hashes = ngram_hashes(batch.hashes[np.repeat(members, counts)], sub_off, w)
            qids = ids[docs]
            index = _NgramIndex(w, qids, hashes)
            totals += np.bincount(index.qids, minlength=len(self.questions))
            self._indexes.append(index)
        self._totals = totals  # distinct n-grams per question
        self._window = window  # their length (0: skipped)

    def run(
        self, conversations: Iterable[Conversation], sink: RejectSink
    ) -> Iterator[Conversation]:
        counts = sink.stage(self.name)
        self.clusters = clusters = DuplicateClusters(self.max_clusters)
        offset = 0
        for chunk in chunks(conversations, self.chunk_size):
            texts = [self._text(c) for c in chunk]
            verdicts = self._judge(texts)
            for i, conv in enumerate(chunk):
                counts.seen += 1
                hit = verdicts.get(i)
                if hit is None:
                    counts.kept += 1
                    yield conv
                    continue
                q, matched = hit
                loc, question = self.questions[q]
                total = int(self._totals[q])
                sink.reject(
                    Rejected(
                        "eval_contamination",
                        self.name,
                        f"contains {matched}/{total} of the eval question's "
                        f"{self._window[q]}-grams ({matched / total:.0%})",
                        conversation=conv,
                        duplicate_of=loc,
                    )
                )
                clusters.add(q, loc, conv, offset + i, question, score=matched / total)
            offset += len(chunk)

    def _judge(self, texts: list[str]) -> dict[int, tuple[int, int]]:
        """Chunk position -> (question, matched n-grams) for the contaminated texts."""
        batch = tokenize(texts)
        n_q = len(self.questions)
        found_doc, found_q, found_n = [], [], []
        for index in self._indexes:
            docs, hashes = ngram_hashes(batch.hashes, batch.offsets, index.w)
            d, q = index.matches(docs, hashes)
            if not d.size:
                continue
            pair, matched = np.unique(d * n_q + q, return_counts=True)
            d, q = pair // n_q, pair % n_q
            ok = matched >= self.min_overlap * self._totals[q] - 1e-9
            found_doc.append(d[ok])
            found_q.append(q[ok])
            found_n.append(matched[ok])
        out: dict[int, tuple[int, int]] = {}
        if not found_doc:
            return out
        d, q, m = np.concatenate(found_doc), np.concatenate(found_q), np.concatenate(found_n)
        frac = m / self._totals[q]
        order = np.lexsort((q, -frac, d))  # per doc: the best-covered question first
        for di, qi, mi in zip(d[order].tolist(), q[order].tolist(), m[order].tolist(), strict=True):
            out.setdefault(di, (qi, mi))
        return out
