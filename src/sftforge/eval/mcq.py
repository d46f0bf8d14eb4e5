"""Multiple-choice evaluation by log-likelihood, through the model's chat template.

Each question becomes a conversation: the k shots are earlier user/assistant turns (the
question with lettered options and an instruction line, then the letter), the test
question is the last user turn. The prompt is exactly what inference feeds
(:func:`sftforge.infer.generate.prompt_ids`); each option letter is scored as the
assistant's answer continuing it, ``prompt_ids + tokenizer(letter, add_special_tokens=False)``,
and the most likely letter is the prediction. Scoring the letter (not free generation)
keeps small models measurable: they need not follow the format to be scored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sftforge.errors import SftForgeError
from sftforge.eval.mcq_data import LETTERS, MCQItem, SubjectData, benchmark_dirs, load_benchmark
from sftforge.infer.generate import prompt_ids
from sftforge.templates.base import ChatTemplate

#: The line after the options, per language: asks for the letter alone.
INSTRUCTIONS = {
    "en": "Answer with the letter of the correct option.",
    "zh": "请直接给出正确答案的选项。",
}


# -- prompting -------------------------------------------------------------------------------
def format_question(item: MCQItem, language: str = "en") -> str:
    """The user turn: question, ``A. ...`` option lines, instruction line."""
    pairs = zip(LETTERS, item.options, strict=True)
    options = "\n".join(f"{letter}. {text}" for letter, text in pairs)
    return f"{item.question}\n{options}\n{INSTRUCTIONS[language]}"


def select_shots(item: MCQItem, dev: Sequence[MCQItem], k: int) -> list[MCQItem]:
    """The first ``k`` dev rows, never the question itself (same file row or same text):
    when the questions are the dev rows (CMMLU, ``--split dev``) the shots are the others."""
    if k <= 0:
        return []
    shots = []
    for shot in dev:
        if (shot.source, shot.line) == (item.source, item.line) or shot.same_question(item):
            continue
        shots.append(shot)
        if len(shots) == k:
            break
    return shots


def build_conversation(
    item: MCQItem, shots: Sequence[MCQItem], language: str = "en"
) -> list[dict[str, str]]:
    """Shots as earlier user/assistant turns; the test question as the last user turn."""
    messages: list[dict[str, str]] = []
    for shot in shots:
        messages.append({"role": "user", "content": format_question(shot, language)})
        messages.append({"role": "assistant", "content": shot.answer})
    messages.append({"role": "user", "content": format_question(item, language)})
    return messages


def letter_ids(tokenizer: Any) -> dict[str, list[int]]:
    """Each letter's ids as the answer text; usually one token, summed over if not."""
    ids = {}
    for letter in LETTERS:
        ids[letter] = list(tokenizer(letter, add_special_tokens=False).input_ids)
        if not ids[letter]:
            raise SftForgeError(f"the tokenizer encodes {letter!r} as no tokens")
    return ids


# -- scoring ---------------------------------------------------------------------------------
def score_options(
    model: Any,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    *,
    batch_size: int = 4,
) -> list[list[float]]:
    """``out[i][j]``: log-probability of ``continuations[j]`` right after ``prompts[i]``.

    When every continuation is one token, one forward over each prompt scores all of them
    (the next-token distribution at its last position); otherwise each prompt+continuation
    is a sequence of its own and the continuation's token log-probabilities are summed.
    Sequences are batched with left padding, so that they all end at the same position and
    only the last few positions need logits (a full ``[batch, length, vocab]`` tensor is
    gigabytes for long few-shot prompts).
    """
    import torch

    single = all(len(c) == 1 for c in continuations)
    if single:
        seqs = [list(p) for p in prompts]
    else:
        seqs = [list(p) + list(c) for p in prompts for c in continuations]
    device = next(model.parameters()).device
    # Longest first: similar lengths share a batch (less padding) and OOM shows up at once.
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    seq_scores: dict[int, Any] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(seqs[i]) for i in idx)
        ids = torch.zeros((len(idx), width), dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, width - len(seqs[i]) :] = torch.tensor(seqs[i])
            mask[row, width - len(seqs[i]) :] = 1
        # Left padding shifts positions: count them from each row's first real token.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        keep = 1 if single else max(len(c) for c in continuations) + 1
        logits = _forward_tail(model, ids.to(device), mask.to(device), positions.to(device), keep)
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        for row, i in enumerate(idx):
            seq_scores[i] = logp[row]
    out: list[list[float]] = []
    for p in range(len(prompts)):
        if single:
            last = seq_scores[p][-1]
            out.append([float(last[c[0]]) for c in continuations])
            continue
        row_scores = []
        for j, cont in enumerate(continuations):
            logp = seq_scores[p * len(continuations) + j]
            # logp[t] predicts the token after position t; the tail ends at the last token,
            # whose own prediction (logp[-1]) is not needed.
            n = len(cont)
            preds = logp[-n - 1 : -1]
            row_scores.append(float(sum(preds[t][tok] for t, tok in enumerate(cont))))
        out.append(row_scores)
    return out


def _forward_tail(model: Any, ids: Any, mask: Any, positions: Any, keep: int) -> Any:
    """Logits of the last ``keep`` positions ([batch, keep, vocab])."""
    import torch

    with torch.no_grad():
        try:
            out = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                logits_to_keep=keep,
                use_cache=False,
            )
        except TypeError:  # a model without logits_to_keep: compute all, keep the tail
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
    return out.logits[:, -keep:, :]


# -- evaluation ------------------------------------------------------------------------------
def _resolve_template(loaded: Any, template: ChatTemplate | str | None) -> ChatTemplate:
    if template is None:
        return loaded.template
    if isinstance(template, str):
        from sftforge.infer.load import named_template

        return named_template(template, loaded.tokenizer)
    return template


def _accuracy(correct: int, n: int) -> float | None:
    return correct / n if n else None


def _macro(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def evaluate_mcq(
    loaded_model: Any,
    data_dirs: str | Path | Sequence[str | Path],
    shots: int = 0,
    split: str = "val",
    limit: int | None = None,
    *,
    template: ChatTemplate | str | None = None,
    batch_size: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy of ``loaded_model`` on MMLU / C-Eval / CMMLU style benchmark directories.

    ``loaded_model`` is a :class:`sftforge.infer.load.LoadedModel` or anything with
    ``model``, ``tokenizer`` and ``template`` attributes; ``template`` (a template or a
    name) overrides its template, e.g. to measure what a wrong template costs. ``limit``
    caps the questions per subject (the first ``limit`` rows). Returns a JSON-serialisable
    dict: per benchmark the per-subject accuracy, macro (mean over subjects) and micro
    (over questions) accuracy; overall macro and micro; every question's prediction;
    ``notes`` for anything that changes what was measured (a missing split, too few shots).
    """
    from tqdm import tqdm

    if isinstance(data_dirs, (str, Path)):
        data_dirs = [data_dirs]
    if shots < 0:
        raise SftForgeError(f"shots must be >= 0; got {shots}")
    tpl = _resolve_template(loaded_model, template)
    tokenizer = loaded_model.tokenizer
    letters = letter_ids(tokenizer)
    continuations = [letters[letter] for letter in LETTERS]

    subjects: list[SubjectData] = []
    for data_dir in data_dirs:
        for bench_dir in benchmark_dirs(data_dir):
            subjects.extend(load_benchmark(bench_dir, split))
    keys = [(s.benchmark, s.subject) for s in subjects]
    if len(set(keys)) != len(keys):
        raise SftForgeError("the same benchmark was given twice (benchmark names are dir names)")

    notes: list[str] = []
    fallback_benches = sorted({s.benchmark for s in subjects if s.fallback})
    for bench in fallback_benches:
        notes.append(
            f"{bench}: no {split} split; evaluated on dev, with shots taken from the other dev "
            "rows (never the question itself)"
        )
    total = sum(len(s.items[:limit]) for s in subjects)
    questions: list[dict[str, Any]] = []
    bar = tqdm(total=total, desc="mcq", unit="q", disable=not progress)
    for subj in subjects:
        items = subj.items[:limit]
        language = subj.language
        if shots and not subj.dev:
            notes.append(f"{subj.benchmark}/{subj.subject}: no dev file; evaluated zero-shot")
        convs, used = [], []
        for item in items:
            chosen = select_shots(item, subj.dev, shots)
            used.append(len(chosen))
            convs.append(build_conversation(item, chosen, language))
        if subj.dev and items and min(used) < shots:
            notes.append(
                f"{subj.benchmark}/{subj.subject}: only {min(used)} shot(s) available "
                f"of {shots} requested"
            )
        prompts = [prompt_ids(tpl, tokenizer, c) for c in convs]
        # Score in chunks so that the bar moves with the work done.
        for start in range(0, len(items), batch_size):
            chunk = slice(start, start + batch_size)
            scores = score_options(
                loaded_model.model, prompts[chunk], continuations, batch_size=batch_size
            )
            for item, n_shots, prompt, row in zip(
                items[chunk], used[chunk], prompts[chunk], scores, strict=True
            ):
                best = max(range(len(LETTERS)), key=lambda j: row[j])
                questions.append(
                    {
                        "id": f"{subj.benchmark}/{subj.subject}/{item.index}",
                        "benchmark": subj.benchmark,
                        "subject": subj.subject,
                        "split": subj.split,
                        "source": item.source,
                        "line": item.line,
                        "answer": item.answer,
                        "prediction": LETTERS[best],
                        "correct": LETTERS[best] == item.answer,
                        "logprobs": {
                            letter: (round(v, 6) if math.isfinite(v) else None)
                            for letter, v in zip(LETTERS, row, strict=True)
                        },
                        "shots": n_shots,
                        "prompt_tokens": len(prompt),
                    }
                )
            bar.update(len(items[chunk]))
    bar.close()
    origin = "override" if template is not None else getattr(loaded_model, "template_origin", "")
    return {
        "model": str(getattr(loaded_model, "source", "")),
        "template": tpl.name,
        "template_origin": origin,
        "shots": shots,
        "split": split,
        "limit": limit,
        "benchmarks": summarize(subjects, questions),
        "overall": _overall(questions),
        "notes": notes,
        "questions": questions,
    }


def summarize(subjects: Sequence[SubjectData], questions: Sequence[dict[str, Any]]) -> dict:
    """Per benchmark: per-subject counts and accuracy, then macro and micro accuracy."""
    benches: dict[str, dict[str, Any]] = {}
    for subj in subjects:
        rows = [
            q
            for q in questions
            if q["benchmark"] == subj.benchmark and q["subject"] == subj.subject
        ]
        correct = sum(q["correct"] for q in rows)
        bench = benches.setdefault(subj.benchmark, {"subjects": {}})
        bench["subjects"][subj.subject] = {
            "split": subj.split,
            "fallback_to_dev": subj.fallback,
            "n": len(rows),
            "correct": correct,
            "accuracy": _accuracy(correct, len(rows)),
        }
    for name, bench in benches.items():
        subs = bench["subjects"].values()
        n = sum(s["n"] for s in subs)
        correct = sum(s["correct"] for s in subs)
        rows = [q for q in questions if q["benchmark"] == name]
        bench.update(
            n=n,
            correct=correct,
            macro_accuracy=_macro(s["accuracy"] for s in subs),
            micro_accuracy=_accuracy(correct, n),
            # A model that always answers one letter scores that letter's share: show it.
            predicted_letters={x: sum(q["prediction"] == x for q in rows) for x in LETTERS},
            answer_letters={x: sum(q["answer"] == x for q in rows) for x in LETTERS},
        )
    return benches


def _overall(questions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    per_subject: dict[tuple[str, str], list[bool]] = {}
    for q in questions:
        per_subject.setdefault((q["benchmark"], q["subject"]), []).append(q["correct"])
    n = len(questions)
    correct = sum(q["correct"] for q in questions)
    return {
        "n": n,
        "correct": correct,
        "macro_accuracy": _macro(_accuracy(sum(v), len(v)) for v in per_subject.values()),
        "micro_accuracy": _accuracy(correct, n),
    }
