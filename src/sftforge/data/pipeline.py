"""``sftforge data build``: the whole dataset pipeline, from a recipe to a dataset folder.

    read (per source, streamed) -> clean -> filters      per record, in worker processes
      -> exact / near de-duplication -> decontamination  across all sources, in order
      -> spool to disk (kept records and a small index)
      -> semantic de-duplication, diversity selection    optional, per pool in memory
      -> mix by the recipe's shares -> stratified split -> write JSONL + Parquet
      -> manifest.json, report.html, rejects.jsonl

With ``num_proc > 1`` the per-record stages run in a process pool. Usually the workers
also parse the JSON Lines and prepare each kept record for the main process (its output
row serialised, its exact-duplicate digest and MinHash signature computed; see
``build_worker.py`` and ``prepared.py``), so the one main process only de-duplicates,
spools and writes. Builds with decontamination, and strict builds, ship conversations to
the workers and back instead (``_parallel``).

Memory stays bounded for the streamed stages: kept records live on disk in a spool file,
and mixing and splitting work on integer ids; only semantic de-duplication and selection
load a pool (they are meant for choosing from pools of up to about 100k samples).
Counts reconcile at every stage and overall: every record read is in the output or in
``rejects.jsonl`` with a reason.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sftforge.data.block import Rejected, RejectSink, StageCounts, chunks
from sftforge.data.build_worker import init_worker, tag_source
from sftforge.data.mix import turn_code
from sftforge.data.prepared import Prepared, PreparedBatch, loads
from sftforge.data.recipe import Recipe, RecipeError
from sftforge.data.spool import Ref, Spool, ref_pool
from sftforge.data.writer import conversation_from_row
from sftforge.types import Conversation

Log = Callable[[str], None]
_CHUNK = 2000
#: Samples per source and split that statistics (lengths, turns, language) look at.
_STATS_SAMPLE = 20_000


# -- per-record stages (run in worker processes) ----------------------------------------------
def record_blocks(recipe: Recipe, tokenizer: Any) -> list[Any]:
    """Cleaning and filter blocks, in recipe order, with recipe-level defaults filled in:
    the tokenizer for token bounds, each source's expected language for the language
    filter."""
    from sftforge.data.window import window_block

    blocks: list[Any] = []
    windows = window_block(recipe, tokenizer)
    if windows is not None:  # before cleaning and filters: long documents are cut, not lost
        blocks.append(windows)
    for spec in (*recipe.clean, *recipe.filters):
        blocks.append(_build_one(recipe, spec, tokenizer))
    return blocks


def preflight(recipe: Recipe) -> None:
    """Everything a build can check before it reads a record or starts a worker: the
    source and eval paths exist and can be read, and every cleaning and filter block
    builds from its parameters (values included; token bounds are checked by name only,
    at recipe load: the tokenizer is not loaded here). Errors name the recipe field."""
    from sftforge.data.clean import BlockConfigError
    from sftforge.data.recipe import check_paths

    check_paths(recipe)
    specs = [("clean", i, b) for i, b in enumerate(recipe.clean)]
    specs += [("filters", i, b) for i, b in enumerate(recipe.filters)]
    for key, i, spec in specs:
        try:
            if recipe.tokenizer:  # the block would get the tokenizer: leave token bounds out
                spec = type(spec)(
                    spec.name, {k: v for k, v in spec.params.items() if "token" not in k}
                )
            _build_one(recipe, spec, None)
        except (BlockConfigError, TypeError, ValueError) as exc:
            if isinstance(exc, RecipeError):
                raise
            msg = str(exc).removeprefix(f"{spec.name}: ")
            raise RecipeError(f"{key}[{i}].{spec.name}: {msg}") from None


def _build_one(recipe: Recipe, spec: Any, tokenizer: Any) -> Any:
    from sftforge.data.filters import block_params, build_block

    params = dict(spec.params)
    valid = block_params(spec.name)
    if "tokenizer" in valid and params.get("tokenizer") is None and tokenizer is not None:
        params["tokenizer"] = tokenizer
    if spec.name == "language" and "languages" not in params:
        params["languages"] = {
            str(recipe.resolve(s.path)): list(s.language) for s in recipe.sources if s.language
        }
        params.setdefault("default", None)
    return build_block(spec.name, **params)


def record_stage_names(recipe: Recipe) -> list[str]:
    """The stages of :func:`record_blocks`, in order (without building the blocks)."""
    names = [spec.name for spec in (*recipe.clean, *recipe.filters)]
    if recipe.window.enabled and (
        recipe.window.max_chars is not None
        or recipe.window.max_tokens is not None
        or any(
            b.name == "length" and (b.params.get("max_chars") or b.params.get("max_tokens"))
            for b in recipe.filters
        )
    ):
        names.insert(0, "window")
    return names


# The conversation round trip (builds with decontamination or strict): the workers run the
# record blocks on conversations read here and send the kept conversations back.
class _CollectingSink(RejectSink):
    """A worker's sink: counts plus every reject as a dict, shipped back to the parent."""

    def __init__(self) -> None:
        super().__init__(max_examples=0)
        self.records: list[dict[str, Any]] = []

    def reject(self, rejected: Rejected) -> None:
        self.stage(rejected.stage).rejected[rejected.reason] += 1
        self.records.append(rejected.to_dict())


_WORKER_BLOCKS: list[Any] = []


def _init_worker(recipe: Recipe) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    tokenizer = _load_tokenizer(recipe)
    _WORKER_BLOCKS[:] = record_blocks(recipe, tokenizer)


def _process(chunk: list[Conversation]) -> tuple[list[Conversation], dict, list[dict]]:
    sink = _CollectingSink()
    stream: Iterable[Conversation] = chunk
    for block in _WORKER_BLOCKS:
        stream = block.run(stream, sink)
    kept = list(stream)
    return kept, {k: v.to_dict() for k, v in sink.stages.items()}, sink.records


def _merge_counts(sink: RejectSink, counts: dict[str, dict], records: list[dict]) -> None:
    for stage, c in counts.items():
        target = sink.stage(stage)
        target.seen += c["seen"]
        target.kept += c["kept"]
        target.rejected.update(c["rejected"])
        target.added += c.get("added", 0)
    for rec in records:
        sink.add_record(rec)


# -- the build --------------------------------------------------------------------------------
@dataclass
class BuildResult:
    out_dir: Path
    manifest: dict[str, Any]
    report: Path | None
    counts: dict[str, int] = field(default_factory=dict)


def _load_tokenizer(recipe: Recipe) -> Any:
    if not recipe.tokenizer:
        return None
    from sftforge.tokenizer import load_tokenizer

    return load_tokenizer(recipe.tokenizer)


# -- the process pool -------------------------------------------------------------------------
# concurrent.futures, not multiprocessing.Pool: a worker that dies (a signal, the OOM
# killer) breaks the pool and every waiting result raises, where multiprocessing.Pool
# would respawn the worker and wait for the lost task forever. Errors raised in a worker
# (its initializer included, see build_worker.safe_init) come back with their message.
def _start_pool(procs: int, init: Callable[[Recipe], None], recipe: Recipe) -> Any:
    from concurrent.futures import ProcessPoolExecutor

    from sftforge.data.build_worker import safe_init

    ctx = mp.get_context("spawn")
    return ProcessPoolExecutor(
        procs, mp_context=ctx, initializer=safe_init, initargs=(init, recipe)
    )


def _submit(pool: Any, fn: Callable[[Any], Any], arg: Any) -> Any:
    from sftforge.data.build_worker import call

    return pool.submit(call, fn, arg)


def _result(future: Any) -> Any:
    from concurrent.futures.process import BrokenProcessPool

    from sftforge.data.build_worker import BuildWorkerError

    try:
        return future.result()
    except BrokenProcessPool:
        raise BuildWorkerError(
            "a build worker process died (killed by a signal or by the out-of-memory "
            "killer?); the build stopped. Rerun with num_proc: 1 to see the failing record, "
            "or with more memory"
        ) from None


def _stop_pool(pool: Any, *, kill: bool) -> None:
    """Wait for the workers to finish (``kill=False``), or stop them now."""
    if not kill:
        pool.shutdown(wait=True)
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)


def _parallel(
    pool: Any, chunks: Iterator[list[Conversation]], sink: RejectSink, inflight: int
) -> Iterator[Conversation]:
    """Run per-record blocks in the pool with a bounded number of chunks in flight, in
    order, so memory stays flat however fast the reader is."""
    pending: list[Any] = []
    for chunk in chunks:
        pending.append(_submit(pool, _process, chunk))
        if len(pending) >= inflight:
            kept, counts, records = _result(pending.pop(0))
            _merge_counts(sink, counts, records)
            yield from kept
    for job in pending:
        kept, counts, records = _result(job)
        _merge_counts(sink, counts, records)
        yield from kept


def _prepared_parallel(
    pool: Any,
    tasks: Iterator[tuple[Any, ...]],
    sink: RejectSink,
    inflight: int,
    per_source: list[int],
) -> Iterator[Prepared]:
    """Run tasks in the pool (``build_worker.run_task``), a bounded number in flight, and
    yield the prepared records in input order; counts and rejects are merged as each
    chunk comes back."""
    from sftforge.data.build_worker import run_task

    pending: deque[Any] = deque()

    def collect(batch: PreparedBatch) -> list[Prepared]:
        _merge_counts(sink, batch.counts, [])
        for stage, reason, line in batch.rejects:
            sink.add_line(stage, reason, line)
        items = batch.items()
        per_source[batch.source] += len(items)
        return items

    for task in tasks:
        pending.append(_submit(pool, run_task, task))
        if len(pending) >= inflight:
            yield from collect(_result(pending.popleft()))
    while pending:
        yield from collect(_result(pending.popleft()))


def _count_sources(
    stream: Iterable[Conversation], per_source: list[int], sid_of: dict[str, int]
) -> Iterator[Conversation]:
    """Count each source's records as they leave the per-record stages (the paths that
    ship conversations; prepared batches are counted per batch)."""
    for conv in stream:
        per_source[sid_of[conv.meta["source_name"]]] += 1
        yield conv


def _jsonl_format(recipe: Recipe, src: Any) -> str | None:
    """The format of a JSON Lines source whose lines the workers can parse (None: read
    it in the main process). Detected here, once per file, as ``read_source`` does."""
    from sftforge.data.containers import container_of
    from sftforge.data.formats import FormatError, detect_format

    path = recipe.resolve(src.path)
    if not path.is_file() or container_of(path) != "jsonl":
        return None
    if src.format != "auto":
        return str(src.format)
    try:
        return detect_format(str(path), column_map=dict(src.column_map) or None)
    except FormatError:
        return None  # read_source reports it (or rejects every line of a file of bad lines)


def _tasks(recipe: Recipe, sink: RejectSink, source_stage: StageCounts) -> Iterator[tuple]:
    """Chunks of every source in order, for ``build_worker.run_task``: raw lines of JSON
    Lines files (parsed in the workers), conversations read here from anything else."""
    from sftforge.data.containers import guard_file, jsonl_lines, open_binary
    from sftforge.data.formats import read_source

    for sid, src in enumerate(recipe.sources):
        path = recipe.resolve(src.path)
        fmt = _jsonl_format(recipe, src)
        if fmt is None:
            stream = read_source(
                str(path),
                format=src.format,
                column_map=dict(src.column_map) or None,
                sink=sink,
                strict=recipe.strict,
            )
            tagged = tag_source(stream, src.name, src.filter_label, sink, source_stage)
            for chunk in chunks(tagged, _CHUNK):
                yield ("convs", sid, chunk)
            continue
        index = 0
        linenos: list[int] = []
        lines: list[bytes] = []
        with open_binary(path) as fh:
            for lineno, line in guard_file(jsonl_lines(fh), str(path)):
                linenos.append(lineno)
                lines.append(line)
                if len(lines) == _CHUNK:
                    yield ("lines", sid, fmt, index, linenos, lines)
                    index += len(lines)
                    linenos, lines = [], []
        if lines:
            yield ("lines", sid, fmt, index, linenos, lines)


def _global_blocks(recipe: Recipe) -> list[Any]:
    from sftforge.data.decontam import Decontaminate
    from sftforge.data.dedup import ExactDedup, NearDedup

    blocks: list[Any] = []
    if recipe.dedup.exact:
        blocks.append(ExactDedup())
    if recipe.dedup.near is not None:
        blocks.append(NearDedup(**dict(recipe.dedup.near)))
    if recipe.dedup.decontaminate is not None:
        params = dict(recipe.dedup.decontaminate)
        evals = params.pop("eval", None) or params.pop("evals", None)
        if not evals:
            raise RecipeError("dedup.decontaminate.eval: list the eval files or folders")
        paths = [recipe.resolve(p) for p in ([evals] if isinstance(evals, str) else evals)]
        for p in paths:
            if not p.exists():
                raise RecipeError(f"dedup.decontaminate.eval: {p} does not exist")
        blocks.append(Decontaminate(paths, **params))
    return blocks


def build_dataset(
    recipe: Recipe,
    *,
    output: str | Path | None = None,
    num_proc: int | None = None,
    write_report: bool = True,
    progress: bool = True,
    log: Log = print,
) -> BuildResult:
    """Run the recipe and publish the dataset folder; returns where and what was written.

    The build holds the output's lock throughout (a second build of the same output stops
    at once, naming this one), works in a temporary sibling of the output (spool files
    included), writes ``manifest.json`` last and swaps the finished folder into place in
    one rename. A build that fails or is killed leaves the previous dataset as it was
    (see docs/data_safety.md)."""
    from sftforge.data.build_output import check_output_folder, clear_leftovers, write_error
    from sftforge.errors import SftForgeError
    from sftforge.fsutil import publish_dir
    from sftforge.lockfile import hold_lock

    started = time.time()
    out_dir = (
        Path(output) if output else recipe.resolve(recipe.output or f"runs/data/{recipe.name}")
    )
    preflight(recipe)
    check_output_folder(recipe, out_dir)
    done: dict[str, Any] = {}

    def write(staging: Path) -> None:
        done["manifest"], done["counts"] = _build_into(
            recipe, staging, num_proc or recipe.num_proc, write_report, progress, log, started
        )

    try:
        with hold_lock(out_dir, "building"):
            clear_leftovers(out_dir, log)
            publish_dir(out_dir, write, replace=True)
    except OSError as exc:  # a full disk, a read-only folder, a parent that is a file
        if isinstance(exc, SftForgeError):
            raise
        raise write_error(out_dir, exc) from exc
    report = out_dir / "report.html" if write_report else None
    return BuildResult(out_dir, done["manifest"], report, done["counts"])


def _build_into(
    recipe: Recipe,
    out_dir: Path,
    procs: int,
    write_report: bool,
    progress: bool,
    log: Log,
    started: float,
) -> tuple[dict[str, Any], dict[str, int]]:
    """The build itself, into ``out_dir`` (the staging folder): returns the manifest and
    the written counts."""
    from sftforge.data.build_output import (
        build_manifest,
        check_pools,
        clusters_of,
        write_manifest,
    )

    work = out_dir / ".work"
    work.mkdir(exist_ok=True)
    # Loaded here only when the record blocks run here; otherwise after the stream, for
    # statistics (importing the tokenizer stack costs seconds and hundreds of MB, which
    # would add to the de-duplication index at the peak of the main process's memory).
    tokenizer = _load_tokenizer(recipe) if procs <= 1 else None
    global_blocks = _global_blocks(recipe)
    from sftforge.data.dedup import ExactDedup, NearDedup
    from sftforge.data.formats import read_source

    sink = RejectSink(out_dir / "rejects.jsonl", strict=recipe.strict)
    spool = Spool(work / "kept.jsonl")
    # Stages in pipeline order (lazy generators would otherwise register them backwards).
    sink.stage("read")
    source_stage = sink.stage("source")
    for name in record_stage_names(recipe):
        sink.stage(name)
    for block in global_blocks:
        sink.stage(block.name)
    sid_of = {s.name: i for i, s in enumerate(recipe.sources)}
    per_source = [0] * len(recipe.sources)  # records out of the per-record stages
    pool = None
    # Workers read, filter and prepare records for exact and near de-duplication; other
    # global blocks (decontamination) need conversations, and strict builds must stop at
    # the first reject, so those build with conversations shipped both ways.
    prepared = (
        procs > 1
        and not recipe.strict
        and all(isinstance(b, (ExactDedup, NearDedup)) for b in global_blocks)
    )
    if procs > 1:
        pool = _start_pool(procs, init_worker if prepared else _init_worker, recipe)
    else:
        serial_blocks = record_blocks(recipe, tokenizer)
    try:
        with _progress(progress) as bar:
            tasks = [bar.add_task(src.name, total=None) for src in recipe.sources]

            def all_sources() -> Iterator[Conversation]:
                for src in recipe.sources:
                    stream = read_source(
                        str(recipe.resolve(src.path)),
                        format=src.format,
                        column_map=dict(src.column_map) or None,
                        sink=sink,
                        strict=recipe.strict,
                    )
                    yield from tag_source(stream, src.name, src.filter_label, sink, source_stage)

            # One stream over every source, so de-duplication works across sources too.
            stream: Iterable[Any]
            if prepared:
                stream = _prepared_parallel(
                    pool, _tasks(recipe, sink, source_stage), sink, 2 * procs, per_source
                )
            else:
                if pool is not None:
                    stream = _parallel(pool, chunks(all_sources(), _CHUNK), sink, 2 * procs)
                else:
                    stream = all_sources()
                    for block in serial_blocks:
                        stream = block.run(stream, sink)
                stream = _count_sources(stream, per_source, sid_of)
            for block in global_blocks:
                stream = block.run(stream, sink)
            advance = [0] * len(tasks)  # the progress bar, updated in steps (it is slow)
            for item in stream:
                if type(item) is Prepared:
                    sid = item.source
                    spool.add_line(item.line, sid, item.code)
                else:
                    name = item.meta["source_name"]
                    sid = sid_of[name]
                    spool.add(item, sid, turn_code(item), name)
                advance[sid] += 1
                if advance[sid] == 4096:
                    bar.advance(tasks[sid], advance[sid])
                    advance[sid] = 0
            for task, left in zip(tasks, advance, strict=True):
                bar.advance(task, left)
            for task in tasks:
                bar.update(task, total=bar.tasks[task].completed)
    except BaseException:
        if pool is not None:
            _stop_pool(pool, kill=True)
        sink.close()
        raise
    if pool is not None and not prepared:
        _stop_pool(pool, kill=False)
        pool = None
    spool.seal()
    try:  # a pool left open counts tokens for the statistics (its workers hold a tokenizer)
        check_pools(recipe, per_source, sink)
        written, stats, split_counts, mix_report, selection = _finish(
            recipe, out_dir, spool, sink, pool, tokenizer, log
        )
    except BaseException:
        if pool is not None:
            _stop_pool(pool, kill=True)
            pool = None
        raise
    finally:
        if pool is not None:
            _stop_pool(pool, kill=False)
        sink.close()
        spool.close()
    shutil.rmtree(work, ignore_errors=True)

    manifest = build_manifest(
        recipe, out_dir, sink, stats, mix_report, split_counts, selection, global_blocks, started
    )
    if write_report:
        from sftforge.data.report import write_report as render

        render(
            out_dir / "report.html",
            title=f"Dataset {recipe.name}",
            stats=stats,
            stages=sink.to_dict(),
            clusters=clusters_of(global_blocks),
            manifest=manifest,
        )
    write_manifest(out_dir, manifest)  # last: its presence marks the folder complete
    counts = {"read": sink.stages["read"].seen if "read" in sink.stages else 0, **written}
    return manifest, counts


def _finish(
    recipe: Recipe,
    out_dir: Path,
    spool: Spool,
    sink: RejectSink,
    pool: Any,
    tokenizer: Any,
    log: Log,
) -> tuple[dict[str, int], Any, dict, Any, dict[str, Any]]:
    """Everything after the stream: selection, mixing, splitting, writing the splits and
    their statistics. Returns (written counts, stats, split counts, mix report, selection)."""
    sources = np.asarray(spool.sources, dtype=np.int32)
    codes = np.asarray(spool.codes, dtype=np.int8)
    pools = {
        s.name: ref_pool(np.flatnonzero(sources == i), codes[sources == i])
        for i, s in enumerate(recipe.sources)
    }
    selection = _select(recipe, spool, pools, sink, log)
    mixed, mix_report = _mix(recipe, spool, pools, sink)
    train_ids, val_ids, split_counts = _split(recipe, mixed, mix_report)

    from sftforge.data.stats import DatasetStats
    from sftforge.data.writer import SplitWriter

    # Statistics on a sample per source and split: token-length histograms need
    # thousands of samples, not millions (tokenizing everything would double the build).
    count_tokens = None
    if pool is not None and recipe.tokenizer:

        def count_tokens(texts: list[str]) -> list[int]:
            from sftforge.data.build_worker import token_lengths

            half = (len(texts) + 1) // 2
            jobs = [_submit(pool, token_lengths, part) for part in (texts[:half], texts[half:])]
            first, second = (_result(job) for job in jobs)
            return first + second

    elif tokenizer is None:
        tokenizer = _load_tokenizer(recipe)
    stats = DatasetStats(tokenizer, count_tokens=count_tokens)
    written = {}
    for split, ids in (("train", train_ids), ("validation", val_ids)):
        writer = SplitWriter(out_dir, split)
        sampled: dict[int, int] = {}
        sample: list[Conversation] = []
        for i in ids:
            line = spool.raw(i)
            writer.write_raw(line)  # copied as it is; Arrow parses it for Parquet
            src = spool.sources[i]
            if sampled.get(src, 0) < _STATS_SAMPLE:
                sampled[src] = sampled.get(src, 0) + 1
                sample.append(conversation_from_row(loads(line)))
        writer.close()
        stats.observe(sample, split, count_splits=False)
        stats.count_split(
            split,
            np.bincount(
                np.asarray([spool.sources[i] for i in ids], dtype=np.int64),
                minlength=len(recipe.sources),
            ),
            [s.name for s in recipe.sources],
        )
        written[split] = writer.count
    return written, stats, split_counts, mix_report, selection


def _progress(enabled: bool) -> Any:
    from rich.progress import MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        MofNCompleteColumn(),
        TextColumn("kept"),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )


def _select(
    recipe: Recipe, spool: Spool, pools: dict[str, list[Ref]], sink: RejectSink, log: Log
) -> dict[str, Any]:
    """Semantic de-duplication and diversity selection, per source pool (in memory)."""
    out: dict[str, Any] = {}
    if recipe.dedup.semantic is None and recipe.select is None:
        return out
    from sftforge.data.dedup import SemanticDedup
    from sftforge.data.select import select_diverse

    for name, pool in list(pools.items()):
        ids = np.asarray([r.id for r in pool], dtype=np.int64)
        convs = [spool.get(int(i)) for i in ids]
        if recipe.dedup.semantic is not None and convs:
            block = SemanticDedup(**dict(recipe.dedup.semantic))
            kept = {id(c) for c in block.run(convs, sink)}
            keep = np.array([id(c) in kept for c in convs], dtype=bool)
            ids, convs = ids[keep], [c for c, k in zip(convs, keep, strict=True) if k]
        if recipe.select is not None and len(convs) > recipe.select.n:
            result = select_diverse(
                convs,
                recipe.select.n,
                method=recipe.select.method,
                features=recipe.select.features,
                seed=recipe.seed,
            )
            chosen = np.asarray(result.indices, dtype=np.int64)
            mask = np.zeros(len(convs), dtype=bool)
            mask[chosen] = True
            counts = sink.stage("select")
            counts.seen += len(convs)
            counts.kept += int(mask.sum())
            for c in (c for c, m in zip(convs, mask, strict=True) if not m):
                sink.reject(Rejected("not_selected", "select", "less diverse", conversation=c))
            ids, convs = ids[chosen], [convs[i] for i in chosen]
            out[name] = result.to_dict()
            log(f"selected {len(chosen)} of {len(convs)} from {name} for diversity")
        codes = np.asarray([turn_code(c) for c in convs], dtype=np.int8)
        pools[name] = ref_pool(ids, codes)
    return out


def _mix(
    recipe: Recipe, spool: Spool, pools: dict[str, list[Ref]], sink: RejectSink
) -> tuple[list[Ref], Any]:
    from sftforge.data.build_output import check_mix
    from sftforge.data.mix import MixPlan, MixWarning, SourceMix, mix

    plan = MixPlan(
        sources=tuple(
            SourceMix(
                s.name, weight=s.weight, count=s.count, allow_repeat=s.allow_repeat, replay=s.replay
            )
            for s in recipe.sources
        ),
        total=recipe.mix.total,
        multi_turn_share=recipe.mix.multi_turn_share,
        replay_ratio=recipe.mix.replay_ratio,
        seed=recipe.seed,
    )
    with warnings.catch_warnings():  # surfaced below: an error, or a recorded warning
        warnings.simplefilter("ignore", MixWarning)
        mixed, report = mix(pools, plan, None)
    check_mix(recipe, report, sink)
    # Counts are of distinct records (an upsampled record is kept once, repeated in output).
    # Records not drawn are counted, not written to rejects.jsonl: they are fine records
    # the recipe's shares left out (writing them made rejects.jsonl mostly sampling).
    chosen = np.zeros(len(spool), dtype=bool)
    chosen[[r.id for r in mixed]] = True
    counts = sink.stage("mix")
    in_pools = np.asarray([r.id for p in pools.values() for r in p], dtype=np.int64)
    counts.seen += len(in_pools)
    left = int((~chosen[in_pools]).sum()) if len(in_pools) else 0
    counts.kept += counts.seen - left
    if left:
        counts.rejected["not_sampled"] += left
    return mixed, report


def _split(recipe: Recipe, mixed: list[Ref], report: Any) -> tuple[list[int], list[int], dict]:
    from sftforge.data.mix import split_train_val

    if not mixed:
        return [], [], {}
    groups = report.output_sources()
    if recipe.split.val_count is not None:
        result = split_train_val(
            mixed, val_count=recipe.split.val_count, seed=recipe.seed, groups=groups
        )
    else:
        result = split_train_val(
            mixed, val_ratio=recipe.split.val_ratio, seed=recipe.seed, groups=groups
        )
    counts = {k: {"train": v.train, "val": v.val} for k, v in result.counts.items()}
    return [r.id for r in result.train], [r.id for r in result.val], counts
