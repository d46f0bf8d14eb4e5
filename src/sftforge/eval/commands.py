"""``sftforge eval ...``: thin CLI over :mod:`sftforge.eval`.

sftforge eval mcq MODEL --data DIR [--data DIR ...] [--shots K] [--split val|dev] ...
sftforge eval sheet --models A B --prompts prompts.jsonl -n N [--seed S] --output DIR
sftforge eval sheet --import ratings.csv --key DIR/key.json

``add_eval_commands`` creates the ``eval`` parser; each subcommand has its own
``add_*_command(esub)`` so that more can be added next to these.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sftforge.errors import SftForgeError
from sftforge.infer.commands import add_allow_mismatch_arg

MODEL_HELP = "a model directory (sftforge run, merged, HF), .gguf or smollm2"


# -- mcq -------------------------------------------------------------------------------------
def cmd_eval_mcq(args: argparse.Namespace) -> int:
    from sftforge.eval.mcq import evaluate_mcq
    from sftforge.eval.mcq_data import benchmark_dirs
    from sftforge.eval.mcq_report import terminal_report, write_reports
    from sftforge.infer.load import load_for_inference

    for folder in args.data:  # before a model loads: a wrong folder fails in a second
        benchmark_dirs(folder)
    loaded = load_for_inference(args.model, template=args.template,
                                allow_mismatch=args.allow_mismatch)  # fmt: skip
    result = evaluate_mcq(
        loaded,
        args.data,
        shots=args.shots,
        split=args.split,
        limit=args.limit,
        batch_size=args.batch_size,
    )
    result["integrity"] = loaded.integrity()
    paths = write_reports(result, args.output)
    print(terminal_report(result))
    print(f"results: {paths['results']}; report: {paths['report']}")
    return 0


def add_mcq_command(esub: Any) -> None:
    p = esub.add_parser(
        "mcq", help="multiple-choice accuracy (MMLU / C-Eval / CMMLU CSVs) by log-likelihood"
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument(
        "--data",
        action="append",
        required=True,
        help="benchmark dir holding dev/ and val/ (or a dir of such); repeatable",
    )
    p.add_argument("--shots", type=int, default=0, help="k-shot examples from dev (default 0)")
    p.add_argument(
        "--split",
        default="val",
        choices=["val", "dev"],
        help="split scored; a benchmark without it (CMMLU: no val) is scored on dev",
    )
    p.add_argument("--template", help="override the training template (warns if it differs)")
    p.add_argument("--limit", type=int, default=None, help="at most N questions per subject")
    p.add_argument("--batch-size", type=int, default=4, help="prompts per forward pass")
    p.add_argument("--output", default="eval_mcq", help="dir for results.json and report.html")
    add_allow_mismatch_arg(p)
    p.set_defaults(func=cmd_eval_mcq)


# -- sheet -----------------------------------------------------------------------------------
def cmd_eval_sheet(args: argparse.Namespace) -> int:
    from sftforge.eval import sheet

    if args.import_csv:
        if args.models or args.prompts:
            raise SftForgeError("--import un-blinds a filled sheet: drop --models/--prompts")
        if not args.key:
            raise SftForgeError("--import needs --key (the key.json written with the sheet)")
        summary = sheet.summarize_ratings(args.import_csv, args.key)
        from sftforge.fsutil import atomic_write_text, output_dir

        out = output_dir(args.output or Path(args.import_csv).parent)
        path = atomic_write_text(
            out / "ratings_summary.json", json.dumps(summary, ensure_ascii=False, indent=2) + "\n"
        )
        print(sheet.summary_table(summary))
        print(f"summary: {path}")
        return 0

    missing = [
        f
        for f, v in (
            ("--models", args.models),
            ("--prompts", args.prompts),
            ("-n", args.num),
            ("--output", args.output),
        )
        if not v
    ]
    if missing:
        raise SftForgeError(
            f"making a sheet needs {', '.join(missing)} "
            "(or --import ratings.csv --key key.json to read one back)"
        )
    from sftforge.infer.generate import Sampling

    sampling = Sampling(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed
    )
    paths = sheet.make_sheet(
        args.models,
        args.prompts,
        args.num,
        args.output,
        seed=args.seed,
        templates=args.template,
        sampling=sampling,
        batch_size=args.batch_size,
        allow_mismatch=args.allow_mismatch,
        verify=not args.no_verify,
    )
    print(
        f"rating sheet: {paths['sheet']}\nto fill in:   {paths['ratings']}\n"
        f"key:          {paths['key']}  (keep it from the raters)\n{sheet.RATING_HELP}\n"
        f"then: sftforge eval sheet --import {paths['ratings']} --key {paths['key']}"
    )
    return 0


def add_sheet_command(esub: Any) -> None:
    p = esub.add_parser("sheet", help="blinded side-by-side rating sheet for two models")
    p.add_argument("--models", nargs=2, metavar=("A", "B"), help=f"two models: {MODEL_HELP}")
    p.add_argument("--prompts", help='JSONL of {"messages": [...]} or {"prompt": "..."}')
    p.add_argument("-n", "--num", type=int, help="prompts sampled (seeded)")
    p.add_argument("--seed", type=int, default=0, help="sampling of prompts and answer order")
    p.add_argument(
        "--output",
        help="dir for sheet.html, ratings.csv, key.json (with --import: "
        "where ratings_summary.json goes; default next to the CSV)",
    )
    p.add_argument(
        "--template",
        nargs="+",
        metavar="T",
        help="override templates: one for both models or one each",
    )
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--import",
        dest="import_csv",
        metavar="RATINGS_CSV",
        help="read a filled ratings.csv back (needs --key)",
    )
    p.add_argument("--key", help="key.json written with the sheet")
    add_allow_mismatch_arg(p)
    p.add_argument(
        "--no-verify", action="store_true",
        help="read prompts from a built dataset's split even if it does not match its manifest",
    )  # fmt: skip
    p.set_defaults(func=cmd_eval_sheet)


def add_eval_commands(sub: Any) -> Any:
    """The ``eval`` command; returns its subparsers object so more can be attached."""
    p = sub.add_parser(
        "eval", help="evaluate: perplexity, multiple choice, rating sheets, health, checks"
    )
    esub = p.add_subparsers(dest="eval_command", required=True)
    add_mcq_command(esub)
    add_sheet_command(esub)
    return esub
