"""The ``sftforge data ...`` verbs: build (the whole recipe) and single steps."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sftforge.data.block import RejectSink
from sftforge.types import Conversation


def _overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``key.sub=value`` pairs; values are parsed as YAML (numbers, booleans, lists)."""
    import yaml

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"override {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def _column_map(pairs: Iterable[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        ours, _, theirs = pair.partition("=")
        if not theirs:
            raise ValueError(f"--column-map {pair!r}: expected ours=theirs, e.g. output=response")
        out[ours] = theirs
    return out


def cmd_build(args: argparse.Namespace) -> int:
    from sftforge.data.pipeline import build_dataset
    from sftforge.data.recipe import load_recipe

    recipe = load_recipe(args.recipe, _overrides(args.overrides))
    result = build_dataset(recipe, output=args.output, num_proc=args.num_proc)
    m = result.manifest
    print(
        f"read {m['records_read']} records; rejected {m['records_rejected']} (reasons in "
        f"rejects.jsonl); not sampled by the mix {m.get('records_not_sampled', 0)} (counted "
        f"only); train {result.counts.get('train', 0)}, "
        f"validation {result.counts.get('validation', 0)}"
    )
    for stage, c in m["stages"].items():
        dropped = ", ".join(f"{k} {v}" for k, v in c["rejected"].items())
        added = f"  added {c['added']}" if c.get("added") else ""
        print(f"  {stage:16s} seen {c['seen']:>8d}  kept {c['kept']:>8d}{added}  {dropped}")
    if "windows" in m:
        w = m["windows"]
        print(
            f"long text documents cut into windows: {w['documents']} documents -> "
            f"{w['windows']} records ({w['windows_added']} added)"
        )
    if "decontamination" in m:
        for path, n in m["decontamination"]["eval_files"].items():
            print(f"  decontamination: {n} questions from {path}")
    for warning in m.get("warnings", []):
        print(f"warning: {warning}")
    print(f"dataset: {result.out_dir}")
    for name in (
        "train.jsonl",
        "train.parquet",
        "validation.jsonl",
        "validation.parquet",
        "manifest.json",
        "report.html",
        "rejects.jsonl",
    ):
        if (result.out_dir / name).exists():
            print(f"  {result.out_dir / name}")
    return 0


def _read(args: argparse.Namespace, sink: RejectSink) -> Iterable[Conversation]:
    from sftforge.data.formats import read_source

    return read_source(
        args.path,
        format=args.format,
        column_map=_column_map(args.column_map),
        sink=sink,
        strict=getattr(args, "strict", False),
    )


def cmd_inspect(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sftforge.data.formats import detect_format

    console = Console()
    fmt = detect_format(args.path) if args.format == "auto" else args.format
    console.print(f"[bold]{args.path}[/]: format [green]{fmt}[/]")
    sink = RejectSink(max_examples=3)
    shown = 0
    total = turns = 0
    for conv in _read(args, sink):
        total += 1
        turns += sum(1 for m in conv.messages if m.role == "assistant")
        if shown < args.num:
            shown += 1
            console.rule(f"sample {shown} ({conv.location})")
            for m in conv.messages:
                text = m.content if len(m.content) < 400 else m.content[:400] + " ..."
                extra = f"\n  [dim]input:[/] {m.input}" if m.input else ""
                console.print(f"[bold cyan]{m.role}[/]: {text}{extra}", highlight=False)
    console.rule()
    read = sink.stages.get("read")
    console.print(
        f"records: {read.seen if read else total}, valid conversations: {total}, "
        f"assistant turns: {turns}"
    )
    if read and read.rejected:
        for reason, n in read.rejected.items():
            example = sink.examples.get(("read", reason), [{}])[0]
            console.print(
                f"  [red]rejected ({reason}): {n}[/]  e.g. {example.get('where', '')} "
                f"{example.get('detail', '')}"
            )
    return 0


def _refuse_in_place(args: argparse.Namespace, *outputs: str | Path | None) -> None:
    """Stop before anything is opened when an output is the input (symlinks and hard
    links included): writing it would destroy the data being read."""
    from sftforge.fsutil import check_output_file, refuse_input_as_output

    refuse_input_as_output([args.path], outputs)
    for out in outputs:
        if out is not None:
            check_output_file(out)


def cmd_convert(args: argparse.Namespace) -> int:
    from sftforge.data.writer import SplitWriter, row
    from sftforge.fsutil import atomic_open, atomic_path

    out = Path(args.output)
    _refuse_in_place(args, out, args.rejects)
    # Every file goes to a temporary sibling, renamed into place only once the input has
    # been read to the end: a failure leaves the previous files as they were.
    with RejectSink(args.rejects, atomic=True) if args.rejects else RejectSink() as sink:
        n = 0
        if out.suffix == ".parquet":
            with atomic_path(out) as tmp:
                writer = SplitWriter(out.parent, out.stem, jsonl=False, parquet_path=tmp)
                writer.write(row(c, str(c.meta.get("source", ""))) for c in _read(args, sink))
                writer.close()
            n = writer.count
        else:
            with atomic_open(out, "w") as fh:
                for conv in _read(args, sink):
                    fh.write(conv.to_json() + "\n")
                    n += 1
    print(f"wrote {n} conversations to {out}; rejected {sink.total_rejected()}")
    return 0


def cmd_dedup(args: argparse.Namespace) -> int:
    from sftforge.data.block import run_blocks
    from sftforge.fsutil import atomic_open

    out = Path(args.output)
    rejects = Path(args.rejects) if args.rejects else out.with_suffix(".rejects.jsonl")
    _refuse_in_place(args, out, rejects)
    blocks: list[Any] = []
    if not args.no_exact:
        from sftforge.data.dedup import ExactDedup

        blocks.append(ExactDedup())
    if args.near is not None:
        from sftforge.data.dedup import NearDedup

        blocks.append(NearDedup(args.near))
    if args.semantic is not None:
        from sftforge.data.dedup import SemanticDedup

        blocks.append(SemanticDedup(threshold=args.semantic))
    if args.decontaminate:
        from sftforge.data.decontam import Decontaminate

        blocks.append(Decontaminate(args.decontaminate))
        for line in blocks[-1].loaded_lines():
            print(line)
    n = 0
    with RejectSink(rejects, atomic=True) as sink, atomic_open(out, "w") as fh:
        for conv in run_blocks(blocks, _read(args, sink), sink):
            fh.write(conv.to_json() + "\n")
            n += 1
    for stage, c in sink.to_dict().items():
        print(f"{stage:16s} seen {c['seen']:>8d} kept {c['kept']:>8d} dropped {c['rejected']}")
    print(f"wrote {n} conversations to {out}; rejects with the sample each duplicated: {sink.path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from sftforge.data.report import write_report
    from sftforge.data.stats import DatasetStats
    from sftforge.data.writer import conversation_from_row

    target = Path(args.path)
    stats = DatasetStats(None if args.no_tokenizer else _tokenizer(args.tokenizer))
    stages: dict[str, Any] = {}
    manifest = None
    if target.is_dir() and (target / "train.jsonl").exists():
        manifest_path = target / "manifest.json"
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            stages = manifest.get("stages", {})
        for split in ("train", "validation"):
            path = target / f"{split}.jsonl"
            if path.exists():
                with path.open(encoding="utf-8") as fh:
                    stats.observe((conversation_from_row(json.loads(line)) for line in fh), split)
        out = Path(args.output) if args.output else target / "report.html"
    else:
        sink = RejectSink()
        stats.observe(_read(args, sink), "all")
        stages = sink.to_dict()
        out = Path(args.output) if args.output else target.with_suffix(".report.html")
    _refuse_in_place(args, out)
    path = write_report(
        out, title=f"Report: {target.name}", stats=stats, stages=stages, manifest=manifest
    )
    print(f"report: {path}")
    return 0


def _tokenizer(spec: str | None) -> Any:
    if not spec:
        return None
    from sftforge.tokenizer import load_tokenizer

    return load_tokenizer(spec)


def add_data_commands(sub: Any) -> None:
    """Register ``sftforge data ...`` on the main parser's subparsers."""
    data = sub.add_parser("data", help="build and inspect datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)

    p = dsub.add_parser("build", help="run a recipe: read, clean, filter, dedup, mix, split")
    p.add_argument("recipe", help="recipe YAML (see configs/data/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. mix.total=500")
    p.add_argument("--output", help="dataset folder (default: the recipe's output)")
    p.add_argument("--num-proc", type=int, help="worker processes (default: the recipe's)")
    p.set_defaults(func=cmd_build)

    def source_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "path", help="a data file (json, jsonl, csv, parquet, txt) or HF dataset dir"
        )
        p.add_argument(
            "--format",
            default="auto",
            help="alpaca, sharegpt, openai, firefly, belle, text (default: detect)",
        )
        p.add_argument(
            "--column-map",
            nargs="*",
            metavar="OURS=THEIRS",
            help="field names, e.g. instruction=prompt output=response",
        )

    p = dsub.add_parser("inspect", help="detect the format, count records, show samples")
    source_args(p)
    p.add_argument("-n", "--num", type=int, default=3)
    p.set_defaults(func=cmd_inspect)

    p = dsub.add_parser("convert", help="convert to the unified format (.jsonl or .parquet)")
    source_args(p)
    p.add_argument("--output", required=True)
    p.add_argument("--rejects", help="write rejected records with reasons here")
    p.add_argument("--strict", action="store_true", help="stop at the first bad record")
    p.set_defaults(func=cmd_convert)

    p = dsub.add_parser("dedup", help="exact, near, semantic de-duplication; decontamination")
    source_args(p)
    p.add_argument("--output", required=True)
    p.add_argument("--near", type=float, default=0.8, help="MinHash Jaccard threshold")
    p.add_argument("--no-exact", action="store_true")
    p.add_argument("--semantic", type=float, help="cosine threshold (MiniLM embeddings)")
    p.add_argument("--decontaminate", nargs="*", help="eval CSV/JSONL files or folders")
    p.add_argument("--rejects", help="rejects file (default: OUTPUT.rejects.jsonl)")
    p.set_defaults(func=cmd_dedup)

    p = dsub.add_parser("report", help="HTML report of a built dataset folder or a data file")
    source_args(p)
    p.add_argument("--output", help="report file (default: next to the input)")
    p.add_argument("--tokenizer", default="smollm2", help="for token lengths")
    p.add_argument("--no-tokenizer", action="store_true", help="character lengths instead")
    p.set_defaults(func=cmd_report)
