"""Blinded side-by-side rating sheets for two models, and their un-blinding.

``make_sheet`` samples prompts (seeded), answers them with both models (each through its
own training template), and writes three files:

* ``sheet.html``: per prompt, the prompt and the two answers side by side, labelled only
  "Answer 1" / "Answer 2" in a seeded random order;
* ``ratings.csv``: one row per (prompt, answer slot) with empty columns to fill in;
* ``key.json``: which model is behind each slot, plus the raw answers. Keep it away from
  the raters: the sheet and the CSV alone do not say which model wrote what.

``summarize_ratings`` reads a filled ``ratings.csv`` with the key: per-model mean of each
criterion and win/tie/loss counts from ``preferred``.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftforge.errors import SftForgeError
from sftforge.eval.report_html import esc, text_table, write_page

CRITERIA = ("instruction_following", "correctness", "fluency")
SLOTS = ("Answer 1", "Answer 2")
CSV_COLUMNS = ("prompt_id", "answer_slot", *CRITERIA, "preferred", "comment")
MODEL_KEYS = ("model_1", "model_2")
KEY_FORMAT = "sftforge-rating-key/1"

RATING_HELP = (
    "Rate each answer 1 (poor) to 5 (excellent) on instruction_following (does what the "
    "prompt asks, in the asked form), correctness (facts and reasoning are right) and "
    "fluency (clear, natural language). In 'preferred' write 1, 2 or tie on either row of "
    "the prompt (if on both, they must agree). Leave a cell empty to skip it."
)


# -- making the sheet ------------------------------------------------------------------------
def sample_prompts(rows: Sequence[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` rows drawn without replacement (seeded), kept in file order for reading."""
    if n <= 0:
        raise SftForgeError(f"-n must be positive; got {n}")
    if n > len(rows):
        raise SftForgeError(f"asked for {n} prompts but the file holds only {len(rows)}")
    picked = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in picked]


def blind_order(n: int, seed: int) -> list[bool]:
    """Per prompt, whether model 1 is "Answer 1". Balanced: each model is first for half
    the prompts (an odd one out decided by the seed), in a shuffled order, so a rater
    cannot learn "the left one is usually the tuned model"."""
    rng = random.Random(f"blind-{seed}")  # str seeds are deterministic across runs
    first = [True] * (n // 2) + [False] * (n // 2)
    if n % 2:
        first.append(rng.random() < 0.5)
    rng.shuffle(first)
    return first


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str
    new_tokens: int


def generate_answers(
    source: str,
    conversations: Sequence[Sequence[dict[str, Any]]],
    *,
    template: str | None = None,
    sampling: Any = None,
    batch_size: int = 8,
    allow_mismatch: bool = False,
) -> tuple[list[Answer], dict[str, Any]]:
    """One model's answers, through its training template (or ``template``); the model
    is freed before returning so that the second one fits next."""
    import gc

    from sftforge.infer.generate import generate
    from sftforge.infer.load import load_for_inference

    loaded = load_for_inference(source, template=template, allow_mismatch=allow_mismatch)
    gens = generate(
        loaded.model,
        loaded.tokenizer,
        loaded.template,
        list(conversations),
        sampling,
        batch_size=batch_size,
    )
    info = {
        "source": str(source),
        "allowed_mismatches": loaded.allowed_mismatches,
        "template": loaded.template.name,
        "template_origin": loaded.template_origin,
    }
    del loaded
    gc.collect()
    return [Answer(g.text, g.finish_reason, g.new_tokens) for g in gens], info


def prompt_ids_for(n: int) -> list[str]:
    width = max(2, len(str(n)))
    return [f"p{i + 1:0{width}d}" for i in range(n)]


def refuse_filled_ratings(path: Path) -> None:
    """A new sheet must not overwrite ratings a person has already filled in."""
    if not path.is_file():
        return
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, ValueError, csv.Error):
        rows = [{"?": "unreadable"}]
    filled = [r for r in rows if any((r.get(c) or "").strip() for c in (*CRITERIA, "preferred",
                                                                         "comment"))]  # fmt: skip
    if filled or (rows and "?" in rows[0]):
        raise SftForgeError(
            f"{path}: holds ratings already filled in ({len(filled)} rows); a new sheet would "
            "overwrite them. Import them first (sftforge eval sheet --import ...), or choose "
            "another --output."
        )


def write_sheet(
    prompts: Sequence[dict[str, Any]],
    answers: Sequence[Sequence[Answer]],
    models: Sequence[dict[str, str]],
    out_dir: str | Path,
    *,
    seed: int,
    meta: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Blind and write ``sheet.html``, ``ratings.csv`` and ``key.json`` (see module doc)."""
    if len(answers) != 2 or len(models) != 2:
        raise SftForgeError("a rating sheet compares exactly two models")
    from sftforge.fsutil import atomic_open, atomic_write_text, output_dir

    out = output_dir(out_dir)
    refuse_filled_ratings(out / "ratings.csv")
    ids = prompt_ids_for(len(prompts))
    order = blind_order(len(prompts), seed)
    slots: dict[str, dict[str, str]] = {}
    items = []
    for i, (pid, prompt, first) in enumerate(zip(ids, prompts, order, strict=True)):
        by_model = dict(zip(MODEL_KEYS, (answers[0][i], answers[1][i]), strict=True))
        keys = MODEL_KEYS if first else MODEL_KEYS[::-1]
        slots[pid] = dict(zip(SLOTS, keys, strict=True))
        items.append((pid, prompt, [by_model[k] for k in keys]))

    sheet = write_page(out / "sheet.html", "Rating sheet", _sheet_body(items), _SHEET_CSS)
    ratings = out / "ratings.csv"
    with atomic_open(ratings, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for pid in ids:
            for slot in SLOTS:
                writer.writerow([pid, slot] + [""] * (len(CSV_COLUMNS) - 2))
    key = {
        "format": KEY_FORMAT,
        "seed": seed,
        **(meta or {}),
        "models": dict(zip(MODEL_KEYS, models, strict=True)),
        "slots": slots,
        "prompts": [
            {
                "id": pid,
                "line": p.get("line"),
                "messages": p["messages"],
                "answers": {k: answers[j][i].__dict__ for j, k in enumerate(MODEL_KEYS)},
            }
            for i, (pid, p) in enumerate(zip(ids, prompts, strict=True))
        ],
    }
    key_path = out / "key.json"
    atomic_write_text(key_path, json.dumps(key, ensure_ascii=False, indent=2) + "\n")
    return {"sheet": sheet, "ratings": ratings, "key": key_path}


_SHEET_CSS = """
.prompt{margin:1.5rem 0 2.5rem} .turn{margin:.3rem 0} .role{font-weight:600;color:#656d76}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem;margin-top:.6rem}
.answer{border:1px solid #d0d7de;border-radius:8px;padding:.6rem .8rem;background:#fff}
.answer h3{margin:.1rem 0 .5rem;font-size:1rem}
details{margin:.4rem 0} summary{cursor:pointer;color:#656d76}
@media (max-width:800px){.pair{grid-template-columns:1fr}}
"""


def _sheet_body(items: Sequence[tuple[str, dict[str, Any], Sequence[Answer]]]) -> str:
    parts = [
        f"<p>{esc(RATING_HELP)}</p>",
        f"<p class='muted'>{len(items)} prompts. Fill in <code>ratings.csv</code>; the "
        "answers are in random order and do not name their model.</p>",
    ]
    for pid, prompt, answers in items:
        turns = "".join(
            f'<div class="turn"><span class="role">{esc(m.get("role", ""))}:</span> '
            f'<span class="text">{esc(m.get("content", ""))}</span></div>'
            for m in prompt["messages"]
        )
        ref = prompt.get("reference")
        reference = (
            f"<details><summary>reference answer</summary>"
            f'<div class="text">{esc(ref)}</div></details>'
            if ref
            else ""
        )
        cells = "".join(
            f'<div class="answer"><h3>{slot}</h3><div class="text">{esc(a.text)}</div>'
            + (
                '<p class="muted">(cut at the token limit)</p>'
                if a.finish_reason == "length"
                else ""
            )
            + "</div>"
            for slot, a in zip(SLOTS, answers, strict=True)
        )
        parts.append(
            f'<section class="prompt" id="{pid}"><h2>{pid}</h2>{turns}{reference}'
            f'<div class="pair">{cells}</div></section>'
        )
    return "\n".join(parts)


def make_sheet(
    models: Sequence[str],
    prompts_path: str | Path,
    n: int,
    out_dir: str | Path,
    *,
    seed: int = 0,
    templates: Sequence[str | None] | None = None,
    sampling: Any = None,
    batch_size: int = 8,
    allow_mismatch: bool = False,
    verify: bool = True,
) -> dict[str, Path]:
    """Sample, generate with both models, blind and write the sheet (see module doc)."""
    from sftforge.infer.prompts import read_prompts

    if len(models) != 2:
        raise SftForgeError(f"--models takes exactly two models; got {len(models)}")
    templates = list(templates or [None])
    if len(templates) == 1:
        templates = templates * 2
    if len(templates) != 2:
        raise SftForgeError("--template takes one name (both models) or two (one each)")
    prompts = sample_prompts(read_prompts(Path(prompts_path), verify=verify), n, seed)
    convs = [p["messages"] for p in prompts]
    answers, infos = [], []
    for source, template in zip(models, templates, strict=True):
        got, info = generate_answers(
            source, convs, template=template, sampling=sampling, batch_size=batch_size,
            allow_mismatch=allow_mismatch,
        )  # fmt: skip
        answers.append(got)
        infos.append(info)
    meta = {
        "prompts_file": str(prompts_path),
        "n": n,
        "sampling": getattr(sampling, "__dict__", None),
    }
    return write_sheet(prompts, answers, infos, out_dir, seed=seed, meta=meta)


# -- reading ratings back --------------------------------------------------------------------
_PREFERRED = {
    "1": "Answer 1",
    "answer 1": "Answer 1",
    "2": "Answer 2",
    "answer 2": "Answer 2",
    "tie": "tie",
    "=": "tie",
    "0": "tie",
}


def _score(value: str, column: str, where: str, errors: list[str]) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        number = float(value)  # spreadsheets may write 4 as "4.0"
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number != int(number) or not 1 <= number <= 5:
        errors.append(f"{where}: {column} must be an integer from 1 to 5, got {value!r}")
        return None
    return int(number)


def read_ratings(path: str | Path, key: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of a filled ``ratings.csv``; every problem is reported with ``file:line``
    (all of them at once, so that a rater fixes the file in one pass)."""
    path = Path(path)
    slots = key["slots"]
    rows, errors, seen = [], [], {}
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in CSV_COLUMNS[:-1] if c not in header]
        if missing:
            raise SftForgeError(f"{path}:1: missing column(s): {', '.join(missing)}")
        end = reader.line_num
        for raw in reader:
            line, end = end + 1, reader.line_num
            if not any(c.strip() for c in raw):
                continue
            rec = dict(zip(header, (c.strip() for c in raw), strict=False))
            where = f"{path}:{line}"
            pid, slot = rec.get("prompt_id", ""), rec.get("answer_slot", "")
            if pid not in slots:
                errors.append(f"{where}: unknown prompt_id {pid!r} (not in the key)")
                continue
            if slot not in SLOTS:
                errors.append(
                    f"{where}: answer_slot must be 'Answer 1' or 'Answer 2', got {slot!r}"
                )
                continue
            if (pid, slot) in seen:
                errors.append(f"{where}: {pid} {slot} already rated on line {seen[pid, slot]}")
                continue
            seen[pid, slot] = line
            scores = {c: _score(rec.get(c, ""), c, where, errors) for c in CRITERIA}
            pref_raw = rec.get("preferred", "")
            pref = _PREFERRED.get(pref_raw.lower()) if pref_raw else None
            if pref_raw and pref is None:
                errors.append(f"{where}: preferred must be 1, 2 or tie, got {pref_raw!r}")
            rows.append(
                {
                    "line": line,
                    "prompt_id": pid,
                    "slot": slot,
                    "model": slots[pid][slot],
                    "scores": scores,
                    "preferred": pref,
                }
            )
    _check_preferences(path, rows, errors)
    if errors:
        raise SftForgeError(f"{len(errors)} problem(s) in the ratings:\n" + "\n".join(errors))
    return rows


def _check_preferences(path: Path, rows: list[dict[str, Any]], errors: list[str]) -> None:
    by_prompt: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["preferred"]:
            by_prompt.setdefault(r["prompt_id"], []).append(r)
    for pid, marked in by_prompt.items():
        if len({r["preferred"] for r in marked}) > 1:
            lines = ", ".join(str(r["line"]) for r in marked)
            errors.append(
                f"{path}:{marked[-1]['line']}: {pid}: preferred differs between "
                f"its rows (lines {lines})"
            )


def summarize_ratings(ratings_path: str | Path, key_path: str | Path) -> dict[str, Any]:
    """Per model: mean and count of each criterion, and win/tie/loss from ``preferred``."""
    key_path = Path(key_path)
    try:
        key = json.loads(key_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SftForgeError(f"{key_path}: cannot read the key: {exc}") from exc
    if key.get("format") != KEY_FORMAT:
        raise SftForgeError(f"{key_path}: not a rating key ({KEY_FORMAT})")
    rows = read_ratings(ratings_path, key)
    models: dict[str, dict[str, Any]] = {}
    for mk in MODEL_KEYS:
        info = key["models"][mk]
        means = {}
        for c in CRITERIA:
            vals = [r["scores"][c] for r in rows if r["model"] == mk and r["scores"][c] is not None]
            means[c] = {"mean": sum(vals) / len(vals) if vals else None, "n": len(vals)}
        models[mk] = {**info, "criteria": means, "wins": 0, "ties": 0, "losses": 0}
    decided: dict[str, str] = {}
    for r in rows:
        if r["preferred"]:
            decided[r["prompt_id"]] = r["preferred"]
    for pid, pref in decided.items():
        if pref == "tie":
            for mk in MODEL_KEYS:
                models[mk]["ties"] += 1
            continue
        winner = key["slots"][pid][pref]
        for mk in MODEL_KEYS:
            models[mk]["wins" if mk == winner else "losses"] += 1
    return {
        "ratings": str(ratings_path),
        "key": str(key_path),
        "prompts": len(key["slots"]),
        "rated_rows": len(rows),
        "preferences": len(decided),
        "models": models,
    }


def summary_table(summary: dict[str, Any]) -> str:
    headers = ["model", "source", *CRITERIA, "wins", "ties", "losses"]
    rows = []
    for mk, m in summary["models"].items():
        rows.append(
            [
                mk,
                m["source"],
                *(m["criteria"][c]["mean"] for c in CRITERIA),
                m["wins"],
                m["ties"],
                m["losses"],
            ]
        )
    note = (
        f"{summary['prompts']} prompts, {summary['rated_rows']} rated rows, "
        f"{summary['preferences']} preferences given; criteria are means over 1-5"
    )
    return f"{text_table(headers, rows, digits=2)}\n{note}"
