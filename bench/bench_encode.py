"""Encoding benchmark: sftforge ``Encoder`` against the plain tokenizer.

Usage (from the repository root)::

    .venv/bin/python bench/bench_encode.py [--data-dir ../shared/data] [--n 20000]
        [--n-multi 5000] [--processes 1 2] [--repeats 3] [--start-method spawn]

Two workloads, built from the shared sample data (see its README.md):

* **alpaca** (single turn): ``alpaca/alpaca_en_demo.json`` + ``alpaca/alpaca_zh_demo.json``,
  repeated to ``--n`` records; every copy gets its index prefixed to the instruction so no
  two texts are equal and no whole-text cache can help. Message content = instruction, the
  message's ``input`` = the Alpaca input.
* **multi-turn**: ``firefly/dummy_data.jsonl`` + ``sharegpt/dummy_conversation.json``,
  repeated to ``--n-multi`` conversations, uniquified the same way (first user message).

Both use the SmolLM2 tokenizer (``load_tokenizer("smollm2")``) and the ``chatml`` template
(``--template hf``: SmolLM2's own jinja template, rendered in the bounded sandbox).

Per workload and repeat, in the same run:

* **plain**: one ``tokenizer(texts)`` call (default arguments) over texts rendered in advance
  with ``template.render(conv, tokenizer=tok)``; this is the reference (it builds no labels).
* **sftforge**: ``Encoder.encode_batch(chunk, report=EncodeReport())`` over the pre-built
  ``Conversation`` objects, in chunks of ``--chunk`` (2048).

Single-process numbers are measured twice: with the tokenizer's own (Rust, rayon) thread pool
(``TOKENIZERS_PARALLELISM`` unset/true, the default) and single-threaded
(``TOKENIZERS_PARALLELISM=false``). The multi-process part runs a ``multiprocessing`` pool per
process count; each worker disables tokenizer threads, loads the tokenizer and rebuilds the
same workload once in its initializer; every worker has run a task and the pool has made one
untimed pass over the data before the clock starts, so start-up is excluded (the
single-process runs get the same untimed pass). Tasks are index ranges of ``--pool-chunk``
samples; a worker returns only counts (a real pipeline writes its shard from the worker),
so the measurement is encoding, not pickling. Every figure is the median over ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
#: The template (``--template``; workers read it from the environment).
TEMPLATE = os.environ.get("SFTFORGE_BENCH_TEMPLATE", "chatml")
TOKENIZER = "smollm2"

ALPACA_FILES = ("alpaca/alpaca_en_demo.json", "alpaca/alpaca_zh_demo.json")
FIREFLY_FILE = "firefly/dummy_data.jsonl"
SHAREGPT_FILE = "sharegpt/dummy_conversation.json"
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant"}

#: The targets (see bench/README.md).
TARGET_RATIO = 0.75
TARGET_SCALING_EFFICIENCY = 0.8


# -- workloads ---------------------------------------------------------------------------------
def _read_records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _repeat(base: Sequence[Any], n: int) -> list[tuple[int, Any]]:
    if not base:
        raise SystemExit("no records to benchmark")
    return [(i, base[i % len(base)]) for i in range(n)]


def build_workload(data_dir: Path, workload: str, n: int) -> list[Any]:
    """``n`` unique Conversations of one workload (deterministic, so workers rebuild it)."""
    from sftforge.types import Conversation, Message

    convs: list[Any] = []
    if workload == "alpaca":
        base = [rec for rel in ALPACA_FILES for rec in _read_records(data_dir / rel)]
        for i, rec in _repeat(base, n):
            user = Message("user", f"{i}. {rec['instruction']}", input=rec.get("input") or None)
            convs.append(Conversation((user, Message("assistant", rec["output"]))))
    elif workload == "multi-turn":
        base = []
        for rec in _read_records(data_dir / FIREFLY_FILE):
            base.append([(t, pair[k]) for pair in rec["conversation"]
                         for t, k in (("user", "human"), ("assistant", "assistant"))])  # fmt: skip
        for rec in _read_records(data_dir / SHAREGPT_FILE):
            base.append([(SHAREGPT_ROLES[t["from"]], t["value"]) for t in rec["conversations"]])
        for i, turns in _repeat(base, n):
            msgs = [Message(role, text) for role, text in turns]
            msgs[0] = Message("user", f"{i}. {msgs[0].content}")
            convs.append(Conversation(tuple(msgs)))
    else:
        raise ValueError(workload)
    return convs


# -- measurements -----------------------------------------------------------------------------
@dataclass
class Measure:
    """Per-repeat wall times of one method; samples and tokens are the same every repeat."""

    samples: int = 0
    tokens: int = 0
    times: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


@contextmanager
def tokenizer_threads(enabled: bool):
    """Turn the Rust tokenizer's thread pool on or off (it reads the variable per call)."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if enabled else "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def run_plain(tok: Any, texts: Sequence[str]) -> tuple[int, int]:
    ids = tok(list(texts))["input_ids"]
    return len(ids), sum(len(x) for x in ids)


def run_encode(encoder: Any, convs: Sequence[Any], chunk: int) -> tuple[int, int]:
    from sftforge.encode import EncodeReport

    report = EncodeReport()
    samples = tokens = 0
    for start in range(0, len(convs), chunk):
        for enc in encoder.encode_batch(convs[start : start + chunk], report=report):
            samples += 1
            tokens += len(enc.input_ids)
    return samples, tokens


def timed(fn: Callable[[], tuple[int, int]], measure: Measure) -> None:
    t0 = time.perf_counter()
    samples, tokens = fn()
    measure.times.append(time.perf_counter() - t0)
    measure.samples, measure.tokens = samples, tokens


# -- worker side of the pool ------------------------------------------------------------------
_W: dict[str, Any] = {}


def _worker_init(data_dir: str, workload: str, n: int, chunk: int, barrier: Any) -> None:
    # Each worker is one single-threaded encoder: no nested tokenizer threads.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from sftforge.encode import Encoder
    from sftforge.templates import get_template
    from sftforge.tokenizer import load_tokenizer

    tok = load_tokenizer(TOKENIZER)
    template = get_template(TEMPLATE, tokenizer=tok)
    convs = build_workload(Path(data_dir), workload, n)
    _W.update(
        tok=tok,
        encoder=Encoder(template, tok),
        convs=convs,
        texts=[template.render(c, tokenizer=tok) for c in convs],
        chunk=chunk,
        barrier=barrier,
    )


def _worker_sync(_: int) -> int:
    """Warm-up task: with a barrier of P parties, P of these need P distinct workers."""
    run_plain(_W["tok"], _W["texts"][:64])
    run_encode(_W["encoder"], _W["convs"][:64], 64)
    _W["barrier"].wait(timeout=600)
    return os.getpid()


def _worker_task(args: tuple[str, int, int]) -> tuple[int, int]:
    method, start, end = args
    if method == "plain":
        return run_plain(_W["tok"], _W["texts"][start:end])
    return run_encode(_W["encoder"], _W["convs"][start:end], _W["chunk"])


def measure_pool(
    ctx: Any,
    processes: int,
    data_dir: Path,
    workload: str,
    n: int,
    pool_chunk: int,
    repeats: int,
) -> dict[str, Measure]:
    barrier = ctx.Barrier(processes)
    out = {"plain": Measure(), "sftforge": Measure()}
    ranges = [(s, min(s + pool_chunk, n)) for s in range(0, n, pool_chunk)]
    initargs = (str(data_dir), workload, n, pool_chunk, barrier)
    with ctx.Pool(processes, initializer=_worker_init, initargs=initargs) as pool:
        pids = pool.map(_worker_sync, range(processes), chunksize=1)
        assert len(set(pids)) == processes, "warm-up did not reach every worker"
        for method in ("plain", "sftforge"):  # one untimed pass, as the single-process runs
            pool.map(_worker_task, [(method, s, e) for s, e in ranges], chunksize=1)
        for _ in range(repeats):
            for method in ("plain", "sftforge"):
                tasks = [(method, s, e) for s, e in ranges]

                def run(tasks=tasks) -> tuple[int, int]:
                    parts = pool.map(_worker_task, tasks, chunksize=1)
                    return sum(p[0] for p in parts), sum(p[1] for p in parts)

                timed(run, out[method])
    return out


# -- report -----------------------------------------------------------------------------------
@dataclass
class Row:
    workload: str
    setup: str
    method: str
    m: Measure
    ratio: float | None = None
    scaling: float | None = None


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def print_table(rows: list[Row], title: str) -> None:
    headers = ["workload", "setup", "method", "samples", "tokens", "median s",
               "samples/s", "tokens/s", "sftforge/plain", "scaling vs 1 proc"]  # fmt: skip
    body = [
        [
            r.workload, r.setup, r.method, fmt(r.m.samples), fmt(r.m.tokens),
            f"{r.m.seconds:.3f}", fmt(r.m.samples_per_s), fmt(r.m.tokens_per_s),
            "" if r.ratio is None else f"{r.ratio:.2f}x",
            "" if r.scaling is None else f"{r.scaling:.2f}x",
        ]
        for r in rows
    ]  # fmt: skip
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text fallback
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
        for b in body:
            print("  ".join(c.rjust(w) for c, w in zip(b, widths, strict=True)))
        return
    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i < 3 else "right")
    prev = None
    for r, b in zip(rows, body, strict=True):
        if prev is not None and (r.workload, r.setup) != prev:
            table.add_section()
        prev = (r.workload, r.setup)
        table.add_row(*b)
    Console(width=200).print(table)


def bench_workload(args: argparse.Namespace, workload: str, n: int, log) -> list[Row]:
    import multiprocessing as mp

    from sftforge.encode import Encoder
    from sftforge.templates import get_template
    from sftforge.tokenizer import load_tokenizer

    tok = load_tokenizer(TOKENIZER)
    template = get_template(TEMPLATE, tokenizer=tok)
    encoder = Encoder(template, tok)
    t0 = time.perf_counter()
    convs = build_workload(args.data_dir, workload, n)
    texts = [template.render(c, tokenizer=tok) for c in convs]
    log(f"[{workload}] built {len(convs):,} conversations and rendered texts in "
        f"{time.perf_counter() - t0:.1f}s")  # fmt: skip

    rows: list[Row] = []
    for threads in (True, False):
        setup = "1 proc, tokenizer threads" if threads else "1 proc, 1 thread"
        with tokenizer_threads(threads):
            # Warm-up: one untimed pass of each (first-call costs, the tokenizer's word cache).
            run_plain(tok, texts)
            run_encode(encoder, convs, args.chunk)
            plain, ours = Measure(), Measure()
            for rep in range(args.repeats):
                timed(lambda: run_plain(tok, texts), plain)
                timed(lambda: run_encode(encoder, convs, args.chunk), ours)
                log(f"[{workload}] {setup} repeat {rep + 1}: plain {plain.times[-1]:.2f}s, "
                    f"sftforge {ours.times[-1]:.2f}s")  # fmt: skip
        ratio = ours.samples_per_s / plain.samples_per_s
        rows.append(Row(workload, setup, "plain", plain))
        rows.append(Row(workload, setup, "sftforge", ours, ratio))

    # Multi-process: fork needs the parent's tokenizer threads off before forking (the Rust
    # pool does not survive a fork); spawn starts clean. Workers turn threads off either way.
    ctx = mp.get_context(args.start_method)
    base: dict[str, float] = {}
    with tokenizer_threads(False):
        for p in args.processes:
            t0 = time.perf_counter()
            res = measure_pool(ctx, p, args.data_dir, workload, n, args.pool_chunk, args.repeats)
            setup = f"pool x{p} ({args.start_method})"
            total = time.perf_counter() - t0
            log(f"[{workload}] {setup}: plain {res['plain'].seconds:.2f}s, sftforge "
                f"{res['sftforge'].seconds:.2f}s (whole pool run {total:.0f}s)")  # fmt: skip
            ratio = res["sftforge"].samples_per_s / res["plain"].samples_per_s
            for method in ("plain", "sftforge"):
                sps = res[method].samples_per_s
                if p == 1:  # processes are sorted and always start with 1
                    base[method] = sps
                rows.append(
                    Row(workload, setup, method, res[method],
                        ratio if method == "sftforge" else None, sps / base[method])
                )  # fmt: skip
    return rows


def _use_template(name: str) -> None:
    global TEMPLATE
    TEMPLATE = name
    os.environ["SFTFORGE_BENCH_TEMPLATE"] = name  # spawned workers read it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--n", type=int, default=20000, help="alpaca records (default 20000)")
    parser.add_argument("--n-multi", type=int, default=5000, help="multi-turn conversations")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                        help="pool sizes to measure (default: 1 2)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=2048, help="encode_batch chunk size")
    parser.add_argument("--pool-chunk", type=int, default=500,
                        help="samples per pool task (same for every pool size)")  # fmt: skip
    parser.add_argument("--start-method", choices=("spawn", "fork", "forkserver"),
                        default="spawn")  # fmt: skip
    parser.add_argument("--workloads", nargs="+", choices=("alpaca", "multi-turn"),
                        default=["alpaca", "multi-turn"])  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--template", default=TEMPLATE,
                        help="template name; 'hf' renders SmolLM2's own jinja chat template "
                             "in the bounded sandbox")  # fmt: skip
    args = parser.parse_args(argv)
    _use_template(args.template)
    args.data_dir = args.data_dir.resolve()
    if not (args.data_dir / ALPACA_FILES[0]).is_file():
        parser.error(f"{args.data_dir} has no {ALPACA_FILES[0]} (pass --data-dir)")
    if 1 not in args.processes:
        args.processes = [1, *args.processes]  # scaling is relative to one process
    args.processes = sorted(set(args.processes))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    import tokenizers
    import transformers

    cpus = os.cpu_count()
    log(f"python {platform.python_version()}, transformers {transformers.__version__}, "
        f"tokenizers {tokenizers.__version__}, {cpus} CPUs, template {TEMPLATE}, "
        f"tokenizer {TOKENIZER}")  # fmt: skip
    if max(args.processes) > (cpus or 1):
        log(f"note: {max(args.processes)} processes on {cpus} CPUs: scaling is capped by cores")

    rows: list[Row] = []
    sizes = {"alpaca": args.n, "multi-turn": args.n_multi}
    for workload in args.workloads:
        rows += bench_workload(args, workload, sizes[workload], log)

    title = (f"Encoding throughput (median of {args.repeats}; {cpus} CPUs; "
             f"{TOKENIZER} + {TEMPLATE})")  # fmt: skip
    print_table(rows, title)
    print(f"Targets: sftforge/plain >= {TARGET_RATIO}x samples/s in one process; "
          "near-linear scaling with processes (scaling ~= process count).")  # fmt: skip
    for r in rows:
        if r.method == "sftforge" and r.setup.startswith("1 proc") and r.ratio is not None:
            ok = "OK" if r.ratio >= TARGET_RATIO else "BELOW TARGET"
            print(f"  {r.workload:10s} {r.setup:26s} sftforge/plain = {r.ratio:.2f}x  {ok}")
    if args.json:
        data = [
            {"workload": r.workload, "setup": r.setup, "method": r.method,
             "samples": r.m.samples, "tokens": r.m.tokens, "times": r.m.times,
             "samples_per_s": r.m.samples_per_s, "tokens_per_s": r.m.tokens_per_s,
             "ratio": r.ratio, "scaling": r.scaling}
            for r in rows
        ]  # fmt: skip
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
