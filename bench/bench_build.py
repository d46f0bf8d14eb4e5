"""Benchmark: `sftforge data build` on a synthetic 1,000,000-record Alpaca file.

    python bench/bench_build.py [--records 1000000] [--num-proc 2] [--data-dir ../shared/data]

The file is made from the shared Alpaca demo rows (English and Chinese), each record
made unique by a numbered prefix, with 1% exact and 1% near duplicates planted. The recipe
runs cleaning, the usual filters, exact and near de-duplication (no semantic
de-duplication), mixing and a stratified split, and writes JSONL + Parquet + report.

Prints records/s and peak memory (resident set of the main process and, separately, of
the largest worker), next to the targets: >= 10,000 records/s with 2 processes and peak
memory under 2 GB. Reading the same file with the plain readers is timed in the same run
as a reference for how much of the time is I/O and parsing.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def make_file(path: Path, records: int, data_dir: Path, seed: int = 0) -> None:
    """Unique records: each takes a demo row's instruction and an answer stitched from
    sentences of three random rows, so only the planted duplicates are duplicates."""
    rows = json.loads((data_dir / "alpaca/alpaca_en_demo.json").read_text(encoding="utf-8"))
    rows += json.loads((data_dir / "alpaca/alpaca_zh_demo.json").read_text(encoding="utf-8"))
    sentences = [
        [s for s in r["output"].replace("。", "。\n").replace(". ", ".\n").split("\n") if s]
        for r in rows
    ]
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        last = None
        for i in range(records):
            r = rows[rng.randrange(len(rows))]
            picks = [sentences[rng.randrange(len(rows))] for _ in range(3)]
            answer = " ".join(rng.choice(p) for p in picks if p)
            out = {"instruction": f"{i}. {r['instruction']}", "input": r["input"], "output": answer}
            roll = rng.random()
            if last is not None and roll < 0.01:
                out = dict(last)  # exact duplicate
            elif last is not None and roll < 0.02:
                words = last["output"].split(" ")
                if len(words) > 8:
                    words[rng.randrange(len(words))] = "indeed"
                out = {**last, "output": " ".join(words)}  # near duplicate
            fh.write(json.dumps(out, ensure_ascii=False) + "\n")
            last = out


def recipe(path: Path, data: Path, out: Path, num_proc: int) -> Path:
    spec = {
        "name": "bench_1m",
        "seed": 0,
        "num_proc": num_proc,
        "tokenizer": "smollm2",
        "output": str(out),
        "sources": [{"name": "synthetic", "path": str(data), "language": ["en", "zh"]}],
        "clean": ["unicode", "whitespace"],
        "filters": [
            {"length": {"min_chars": 2, "max_tokens": 4096}},
            "placeholder",
            "refusal",
            "echo",
            "repetition",
            "language",
        ],
        "dedup": {"exact": True, "near": {"threshold": 0.8}},
        "split": {"val_ratio": 0.01},
    }
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def peak_rss_mb() -> tuple[float, float]:
    """(main process, largest finished child) peak resident set size in MB (Linux: KB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes (the pool's workers)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    from sftforge.data.block import RejectSink
    from sftforge.data.formats import read_source
    from sftforge.data.pipeline import build_dataset
    from sftforge.data.recipe import load_recipe

    tmp = Path(tempfile.mkdtemp(prefix="sftforge-bench-"))
    data = tmp / "alpaca_1m.jsonl"
    t0 = time.perf_counter()
    make_file(data, args.records, Path(args.data_dir))
    print(f"made {args.records:,} records ({data.stat().st_size / 1e6:.0f} MB) in "
          f"{time.perf_counter() - t0:.1f}s")  # fmt: skip

    t0 = time.perf_counter()
    n = sum(1 for _ in read_source(str(data), sink=RejectSink()))
    read_s = time.perf_counter() - t0
    print(f"reference: reading and validating alone: {n / read_s:,.0f} records/s")

    rec = load_recipe(recipe(tmp / "recipe.yaml", data, tmp / "out", args.num_proc))
    cpu0, kids0 = time.process_time(), _children_cpu()
    t0 = time.perf_counter()
    result = build_dataset(rec, progress=sys.stderr.isatty(), log=lambda _: None)
    build_s = time.perf_counter() - t0
    main_cpu, kids_cpu = time.process_time() - cpu0, _children_cpu() - kids0
    main_mb, child_mb = peak_rss_mb()
    rate = args.records / build_s
    stages = result.manifest["stages"]
    print(f"build: {build_s:.1f}s, {rate:,.0f} records/s with {args.num_proc} processes "
          f"(target >= 10,000): {'OK' if rate >= 10_000 else 'MISSED'}")  # fmt: skip
    print(
        f"peak memory: main {main_mb:,.0f} MB, largest worker {child_mb:,.0f} MB "
        f"(target < 2,048 MB each): {'OK' if max(main_mb, child_mb) < 2048 else 'MISSED'}"
    )
    # CPU seconds are steadier than wall time on a shared machine: compare versions by these.
    print(
        f"cpu: main {main_cpu:.1f}s, workers {kids_cpu:.1f}s in all "
        f"({(main_cpu + kids_cpu) / args.records * 1e6:.0f} us/record; main alone "
        f"{main_cpu / args.records * 1e6:.0f} us/record)"
    )
    print(f"ratio build/read-only: {read_s / build_s:.2f}x of plain reading throughput")
    for name, c in stages.items():
        print(f"  {name:14s} seen {c['seen']:>9,} kept {c['kept']:>9,} {c['rejected']}")
    print(f"train {result.counts['train']:,}, validation {result.counts['validation']:,}")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
