"""Near-duplicate benchmark: sftforge ``NearDedup`` against a plain datasketch loop.

Usage (from the repository root)::

    .venv/bin/python bench/bench_dedup.py [--data-dir ../shared/data] [--n 52000]
        [--threshold 0.8] [--num-perm 128] [--ngram 5] [--edits 2] [--repeats 3]
        [--references update update_batch] [--json PATH]

Workload: ``alpaca/alpaca_en_demo.json`` + ``alpaca/alpaca_zh_demo.json`` (see the shared data
README), repeated to ``--n`` records. Every record gets ``--edits`` random edits (a word
replaced by a random word in English text; a character replaced by a random CJK character in
text without spaces), so copies of one record are near duplicates of each other, not exact
ones. Conversation = user (instruction, Alpaca input) + assistant (output); the compared text
is :func:`sftforge.data.block.conversation_text` of it, for every method.

Methods, timed in the same process on the same texts:

* **datasketch, update** (the reference the target is stated against): per text, tokens from
  a regular expression (words, and single CJK characters, as sftforge tokenises), the set of
  word 5-grams joined with spaces, ``MinHash(num_perm)`` with ``m.update(shingle.encode())``
  per shingle, then ``MinHashLSH.query``; a text with a candidate is flagged, any other is
  inserted (only kept texts are indexed, as in sftforge).
* **datasketch, update_batch**: the same loop with ``m.update_batch(shingles)``, datasketch's
  faster (numpy) path: a stronger reference, reported for transparency.
* **sftforge**: ``NearDedup(threshold, num_perm, ngram).run(conversations, RejectSink())``
  end to end: text extraction, tokenising, shingling, signatures, LSH, the Jaccard check of
  candidates, reject records, in-order streaming.

Before timing, each method runs once untimed on 1,000 texts (imports, datasketch's LSH
parameter optimisation, sftforge's character tables). Reported: seconds (median of
``--repeats`` for sftforge; references run once unless ``--repeats-ref``), records/s, the
speedup over each reference, and the agreement of the flagged sets, with the exact shingle
Jaccard of a sample of the records flagged by only one side (datasketch's LSH query is not
verified, so it also flags LSH false positives below the threshold).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
ALPACA_FILES = ("alpaca/alpaca_en_demo.json", "alpaca/alpaca_zh_demo.json")

#: The target (see bench/README.md): sftforge at least this many times faster than the
#: plain per-shingle datasketch loop.
TARGET_SPEEDUP = 20.0

# Same token rule as sftforge.data.minhash, as a regular expression: single characters of
# space-less scripts (CJK, kana, Thai, ...), else runs of letters/digits.
_CHAR_SCRIPTS = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u312f\u31a0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
)
TOKEN = re.compile(f"[{_CHAR_SCRIPTS}]|[^\\W_{_CHAR_SCRIPTS}]+")


# -- workload ----------------------------------------------------------------------------------
def _read_records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _edit(text: str, edits: int, rng: random.Random) -> str:
    words = text.split(" ")
    if len(words) >= 10:  # space-delimited: replace whole words
        for _ in range(edits):
            words[rng.randrange(len(words))] = f"w{rng.randrange(100_000)}"
        return " ".join(words)
    chars = list(text)
    for _ in range(edits):
        chars[rng.randrange(len(chars))] = chr(0x4E00 + rng.randrange(20_000))
    return "".join(chars)


def build_workload(data_dir: Path, n: int, edits: int, seed: int) -> list[Any]:
    """The base records once, unchanged, then copies of them, each with 1..``edits`` random
    edits in the answer, until ``n`` records (deterministic for a seed)."""
    from sftforge.types import Conversation, Message

    base = [rec for rel in ALPACA_FILES for rec in _read_records(data_dir / rel)]
    if not base:
        raise SystemExit(f"no Alpaca records under {data_dir}")
    rng = random.Random(seed)
    convs = []
    for i in range(n):
        rec = base[i % len(base)]
        answer = rec["output"]
        if i >= len(base) and edits and answer:
            answer = _edit(answer, rng.randint(1, edits), rng)
        user = Message("user", rec["instruction"], input=rec.get("input") or None)
        meta = {"source": "bench", "index": i}
        convs.append(Conversation((user, Message("assistant", answer)), meta=meta))
    return convs


# -- methods -----------------------------------------------------------------------------------
def shingles_py(text: str, n: int) -> set[str]:
    tokens = TOKEN.findall(text.casefold())
    if not tokens:
        return set()
    if len(tokens) < n:
        return {" ".join(tokens)}
    return {" ".join(tokens[k : k + n]) for k in range(len(tokens) - n + 1)}


def run_datasketch(
    texts: Sequence[str], threshold: float, num_perm: int, n: int, batch: bool
) -> dict[int, list[int]]:
    """The plain loop; returns {flagged index: its LSH candidates}."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    flagged: dict[int, list[int]] = {}
    for i, text in enumerate(texts):
        shingles = shingles_py(text, n)
        if not shingles:
            continue
        m = MinHash(num_perm=num_perm)
        if batch:
            m.update_batch([s.encode("utf-8") for s in shingles])
        else:
            for s in shingles:
                m.update(s.encode("utf-8"))
        found = lsh.query(m)
        if found:
            flagged[i] = found
        else:
            lsh.insert(i, m)
    return flagged


def run_sftforge(
    convs: Sequence[Any], threshold: float, num_perm: int, n: int, capture: bool = False
) -> dict[int, int]:
    """NearDedup end to end; returns {dropped index: index of the kept sample it duplicates}
    (with ``capture``; otherwise the kept index is -1, and nothing extra is recorded)."""
    from sftforge.data.block import Rejected, RejectSink
    from sftforge.data.dedup import NearDedup

    where_to_index = {f"bench sample {c.meta['index']}": c.meta["index"] for c in convs}
    dropped: dict[int, int] = {}

    class CapturingSink(RejectSink):
        def reject(self, rejected: Rejected) -> None:
            assert rejected.conversation is not None and rejected.duplicate_of is not None
            dropped[rejected.conversation.meta["index"]] = where_to_index[rejected.duplicate_of]
            super().reject(rejected)

    sink = CapturingSink(max_examples=0) if capture else RejectSink(max_examples=0)
    block = NearDedup(threshold, num_perm=num_perm, ngram=n)
    kept = {c.meta["index"] for c in block.run(convs, sink)}
    assert sink.stage("near_dedup").reconciles()
    if not capture:
        dropped = {i: -1 for i in range(len(convs)) if i not in kept}
    return dropped


def exact_jaccard(a: str, b: str, n: int) -> float:
    sa, sb = shingles_py(a, n), shingles_py(b, n)
    return len(sa & sb) / max(1, len(sa | sb))


def best_candidate(texts: Sequence[str], i: int, candidates: Sequence[int], n: int) -> float:
    """The highest exact Jaccard of text ``i`` with any of (the first 10 of) its candidates."""
    return max(exact_jaccard(texts[i], texts[c], n) for c in sorted(candidates)[:10])


def _share_above(js: Sequence[float], threshold: float) -> float | None:
    return sum(j >= threshold for j in js) / len(js) if js else None


def _describe(js: Sequence[float], threshold: float) -> str:
    below = sum(j < threshold for j in js)
    near = sum(abs(j - threshold) <= 0.1 for j in js)
    return (
        f"median {statistics.median(js):.2f}, {below} below the threshold, {near} within 0.1 of it"
    )


# -- main --------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--n", type=int, default=52_000)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--edits", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="sftforge runs (median)")
    ap.add_argument("--repeats-ref", type=int, default=1, help="runs of each reference")
    ap.add_argument(
        "--references",
        nargs="*",
        default=["update", "update_batch"],
        choices=["update", "update_batch"],
    )
    ap.add_argument("--sample", type=int, default=200, help="disagreements to check exactly")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    sys.path.insert(0, str(REPO_ROOT / "src"))
    from sftforge.data.block import conversation_text

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    log(f"building {args.n} records from {args.data_dir} ...")
    convs = build_workload(args.data_dir, args.n, args.edits, args.seed)
    texts = [conversation_text(c) for c in convs]
    chars = sum(map(len, texts))

    # untimed warm-up of every method
    run_sftforge(convs[:1000], args.threshold, args.num_perm, args.ngram)
    for ref in args.references:
        run_datasketch(
            texts[:1000], args.threshold, args.num_perm, args.ngram, ref == "update_batch"
        )

    results: dict[str, Any] = {}
    times: list[float] = []
    ours: dict[int, int] = {}
    for r in range(args.repeats):
        log(f"sftforge NearDedup, run {r + 1}/{args.repeats} ...")
        t0 = time.perf_counter()
        ours = run_sftforge(convs, args.threshold, args.num_perm, args.ngram)
        times.append(time.perf_counter() - t0)
    results["sftforge"] = {"seconds": statistics.median(times), "flagged": len(ours)}
    ours = run_sftforge(convs, args.threshold, args.num_perm, args.ngram, capture=True)

    refs: dict[str, dict[int, list[int]]] = {}
    for ref in args.references:
        ref_times = []
        for r in range(args.repeats_ref):
            log(f"datasketch loop ({ref}), run {r + 1}/{args.repeats_ref} ...")
            t0 = time.perf_counter()
            refs[ref] = run_datasketch(
                texts, args.threshold, args.num_perm, args.ngram, ref == "update_batch"
            )
            ref_times.append(time.perf_counter() - t0)
        results[f"datasketch_{ref}"] = {
            "seconds": statistics.median(ref_times),
            "flagged": len(refs[ref]),
        }

    # -- report --------------------------------------------------------------------------------
    print(
        f"near-duplicate detection: {args.n} records ({chars / 1e6:.1f} M characters), "
        f"threshold {args.threshold}, num_perm {args.num_perm}, word/char {args.ngram}-grams; "
        f"copies carry 1..{args.edits} random edits"
    )
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print()
    print(f"{'method':<28}{'seconds':>10}{'records/s':>12}{'flagged':>10}{'speedup':>10}")
    ours_s = results["sftforge"]["seconds"]
    for name, res in results.items():
        speed = "" if name == "sftforge" else f"{res['seconds'] / ours_s:>9.1f}x"
        print(
            f"{name:<28}{res['seconds']:>10.2f}{args.n / res['seconds']:>12,.0f}"
            f"{res['flagged']:>10}{speed:>10}"
        )
        res["records_per_s"] = args.n / res["seconds"]
        if name != "sftforge":
            res["speedup"] = res["seconds"] / ours_s
    print()

    flagged_ours = set(ours)
    rng = random.Random(args.seed)
    # precision: of the flagged records, how many really are near duplicates (exact shingle
    # Jaccard >= threshold) of the sample they were matched with
    sample = rng.sample(sorted(flagged_ours), min(args.sample, len(flagged_ours)))
    js = [exact_jaccard(texts[i], texts[ours[i]], args.ngram) for i in sample]
    line = f"sftforge: {_describe(js, args.threshold)}" if js else "sftforge: nothing flagged"
    for ref, flagged in refs.items():
        pick = rng.sample(sorted(flagged), min(args.sample, len(flagged)))
        ref_js = [best_candidate(texts, i, flagged[i], args.ngram) for i in pick]
        if ref_js:
            line += f"; datasketch ({ref}): {_describe(ref_js, args.threshold)}"
        results[f"datasketch_{ref}"]["precision_sample"] = _share_above(ref_js, args.threshold)
    results["sftforge"]["precision_sample"] = _share_above(js, args.threshold)
    print(f"exact shingle Jaccard of {args.sample} flagged records with their match: {line}")
    for ref, flagged in refs.items():
        theirs = set(flagged)
        both = theirs & flagged_ours
        only_ref, only_ours = theirs - flagged_ours, flagged_ours - theirs
        union = len(theirs | flagged_ours)
        print(
            f"agreement with datasketch ({ref}): both {len(both)}, only datasketch "
            f"{len(only_ref)}, only sftforge {len(only_ours)}; "
            f"Jaccard of the flagged sets {len(both) / max(1, union):.3f}"
        )
        # exact shingle Jaccard of the datasketch-only flags against their LSH candidate
        sample = rng.sample(sorted(only_ref), min(args.sample, len(only_ref)))
        if sample:
            js = [best_candidate(texts, i, flagged[i], args.ngram) for i in sample]
            print(
                f"  datasketch-only, sample of {len(js)}: exact Jaccard with its LSH "
                f"candidate: {_describe(js, args.threshold)}"
            )
        sample = rng.sample(sorted(only_ours), min(args.sample, len(only_ours)))
        if sample:
            js = [exact_jaccard(texts[i], texts[ours[i]], args.ngram) for i in sample]
            print(
                f"  sftforge-only, sample of {len(js)}: exact Jaccard with its "
                f"duplicate_of: {_describe(js, args.threshold)}"
            )
        results[f"agreement_{ref}"] = {
            "both": len(both),
            "only_datasketch": len(only_ref),
            "only_sftforge": len(only_ours),
        }
    if refs:
        ratio = results["datasketch_update"]["speedup"] if "update" in refs else None
        if ratio is not None:
            verdict = "meets" if ratio >= TARGET_SPEEDUP else "MISSES"
            print(
                f"\nspeedup over the per-shingle datasketch loop: {ratio:.1f}x "
                f"({verdict} the >= {TARGET_SPEEDUP:.0f}x target)"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
