"""``sftforge eval ppl | health | ablation | forgetting | consistency | compare``.

Each writes ``results.json`` and ``report.html`` to ``--output`` and prints a verdict or a
table; ``compare`` puts any two result folders side by side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sftforge.errors import SftForgeError
from sftforge.eval import html as H


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a model directory (sftforge run, merged, HF), .gguf or smollm2")
    p.add_argument("--template", help="override the training template (warns if it differs)")


def _verify_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-verify", action="store_true",
        help="use a built dataset even if it does not match its manifest.json (recorded)",
    )  # fmt: skip


def _output_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--output", default=default, help=f"results folder (default {default})")
    from sftforge.infer.commands import add_allow_mismatch_arg

    add_allow_mismatch_arg(p)


def _load(args: argparse.Namespace, source: str | None = None) -> Any:
    from sftforge.infer.load import load_for_inference

    loaded = load_for_inference(source or args.model, template=getattr(args, "template", None),
                                allow_mismatch=args.allow_mismatch)  # fmt: skip
    args.loaded = [*getattr(args, "loaded", []), loaded]
    return loaded


def _write(args: argparse.Namespace, result: dict[str, Any], page: str) -> Path:
    """results.json (with what each model load allowed through) and report.html."""
    loaded = getattr(args, "loaded", [])
    if loaded:
        result = {**result, "integrity": {m.source: m.integrity() for m in loaded}}
    return H.write_results(args.output, result, page)


def _check_data(args: argparse.Namespace, data: str, split: str | None = None) -> None:
    """The split an eval will read exists and matches its manifest (raises otherwise)."""
    from sftforge.data.manifest import verify_dataset
    from sftforge.eval.ppl import split_file

    verify_dataset(split_file(data, split or args.split), verify=not args.no_verify)


def _say_dropped(result: dict[str, Any], what: str = "") -> None:
    """Print, for a person, the samples a perplexity left out (too long, invalid)."""
    from sftforge.eval.ppl import dropped_line

    line = dropped_line(result)
    if line:
        print(f"note{f' ({what})' if what else ''}: {line}")


def _prompts(path: str, limit: int | None, verify: bool = True) -> list[list[dict[str, Any]]]:
    from sftforge.infer.prompts import read_prompts

    rows = read_prompts(Path(path), verify=verify)
    return [r["messages"] for r in rows[:limit]]


# -- ppl ------------------------------------------------------------------------------------
def cmd_ppl(args: argparse.Namespace) -> int:
    from sftforge.eval.ppl import dropped_line, perplexity

    _check_data(args, args.data)  # before a model loads: a missing or cut dataset fails fast
    loaded = _load(args)
    result = perplexity(loaded, args.data, split=args.split, max_length=args.max_length,
                        limit=args.limit, verify=not args.no_verify)  # fmt: skip
    _say_dropped(result)
    rows = [{"source": "(all)", **result["overall"]}]
    rows += [{"source": s, **m} for s, m in result["per_source"].items()]
    _print_rows(rows, ["source", "ppl", "loss", "tokens", "samples"])
    pyplot = H.plt()
    fig, ax = pyplot.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    ax.barh([r["source"] for r in rows][::-1], [r["ppl"] for r in rows][::-1], color="#4c78a8")
    ax.set_xlabel("perplexity over trained tokens")
    page = H.page(f"Perplexity: {loaded.source}", [
        ("", f"<p>data {result['data']}, template {result['template']}</p>"
             + (f"<p><b>{H.esc(line)}</b></p>" if (line := dropped_line(result)) else "")),
        ("Per source", H.table(rows, ["source", "ppl", "loss", "tokens", "samples"])),
        ("", H.figure_png(fig)),
    ])  # fmt: skip
    print(f"written to {_write(args, result, page)}")
    return 0


# -- health ---------------------------------------------------------------------------------
def cmd_health(args: argparse.Namespace) -> int:
    from sftforge.eval.health import generation_health
    from sftforge.infer.commands import sampling_from
    from sftforge.infer.generate import generate

    prompts = _prompts(args.prompts, args.limit, not args.no_verify)  # before a model loads
    loaded = _load(args)
    sampling = sampling_from(args)
    gens = generate(loaded.model, loaded.tokenizer, loaded.template, prompts, sampling)
    health = generation_health([p[-1]["content"] for p in prompts], gens, loaded.tokenizer,
                               max_new_tokens=sampling.max_new_tokens)  # fmt: skip
    samples = [
        {"prompt": p[-1]["content"], "answer": g.text, "finish_reason": g.finish_reason}
        for p, g in zip(prompts, gens, strict=True)
    ]
    result = {"kind": "health", "model": args.model, "template": loaded.template.name,
              **health, "samples": samples}  # fmt: skip
    summary = _health_summary(health)
    _print_rows([summary], list(summary))
    pyplot = H.plt()
    fig, ax = pyplot.subplots(figsize=(7, 3))
    ax.hist(health["lengths"], bins=20, color="#4c78a8")
    ax.axvline(sampling.max_new_tokens, color="#d62728", linestyle="--", label="length limit")
    ax.set_xlabel("answer length (tokens)")
    ax.legend()
    page = H.page(f"Generation health: {args.model}", [
        ("Summary", H.table([summary])),
        ("Answer lengths", H.figure_png(fig)),
        ("Samples", H.table(result["samples"][:20])),
    ])  # fmt: skip
    print(f"written to {_write(args, result, page)}")
    return 0


def _health_summary(health: dict[str, Any]) -> dict[str, Any]:
    return {
        "answers": health["answers"],
        "stop_rate": health["stop_rate"],
        "mean_length": health["length"]["mean"],
        "p90_length": health["length"]["p90"],
        "repeated_3gram_ratio": health["repetition"]["repeated_3gram_ratio_mean"],
        "distinct_2": health["repetition"]["distinct_2"],
        "language_mismatch_rate": health["language"]["mismatch_rate"],
    }


# -- ablation -------------------------------------------------------------------------------
def cmd_ablation(args: argparse.Namespace) -> int:
    from sftforge.eval.checks import template_ablation

    _check_data(args, args.data)
    prompts = _prompts(args.prompts, args.num_prompts, not args.no_verify)
    loaded = _load(args)
    result = template_ablation(loaded, args.data, prompts,
                               other=args.other, split=args.split, limit=args.limit,
                               max_new_tokens=args.max_new_tokens,
                               verify=not args.no_verify)  # fmt: skip
    for row in result["rows"]:
        _say_dropped(row["ppl_result"], f"template {row['template']}")
    columns = ["template", "role", "ppl", "stop_rate", "mean_length", "repeated_3gram_ratio",
               "language_mismatch_rate"]  # fmt: skip
    _print_rows(result["rows"], columns)
    print(f"verdict: {result['verdict']} (ppl without a template: "
          f"{result['ppl_ratio_no_template']:.2f}x the training template's)")  # fmt: skip
    samples = [
        {"template": r["template"], "answer": s} for r in result["rows"] for s in r["samples"]
    ]
    page = H.page(f"Template ablation: {loaded.source}", [
        ("", H.verdict(result["verdict"], result["verdict"].startswith("training"))),
        ("Side by side", H.table(result["rows"], columns)),
        ("Sample answers", H.table(samples)),
    ])  # fmt: skip
    print(f"written to {_write(args, result, page)}")
    return 0


# -- forgetting -----------------------------------------------------------------------------
def cmd_forgetting(args: argparse.Namespace) -> int:
    from sftforge.eval.checks import forgetting

    _check_data(args, args.replay, "validation")
    base, tuned = _load(args, args.base), _load(args, args.tuned)
    mcq = None
    if args.mcq:
        from sftforge.eval.mcq import evaluate_mcq

        mcq = tuple(evaluate_mcq(m, args.mcq, shots=args.shots, limit=args.mcq_limit)
                    for m in (base, tuned))  # fmt: skip
    result = forgetting(base, tuned, args.replay, threshold=args.threshold, limit=args.limit,
                        mcq=mcq, verify=not args.no_verify)  # fmt: skip
    for who in ("base", "tuned"):
        _say_dropped(result["replay"][who], who)
    rows = [{"metric": "replay perplexity", **{k: v for k, v in result["replay_ppl"].items()}}]
    if "mcq_accuracy" in result:
        rows.append({"metric": "multiple-choice accuracy", **result["mcq_accuracy"]})
    _print_rows(rows, list(rows[0]))
    print(f"verdict: {result['verdict']}" + (f" ({'; '.join(result['flags'])})"
                                              if result["flags"] else ""))  # fmt: skip
    page = H.page("Forgetting: base vs tuned", [
        ("", H.verdict(result["verdict"], not result["flags"])),
        ("", H.table(rows)),
    ])  # fmt: skip
    print(f"written to {_write(args, result, page)}")
    return 0


# -- consistency ----------------------------------------------------------------------------
def cmd_consistency(args: argparse.Namespace) -> int:
    from sftforge.data.manifest import verify_dataset
    from sftforge.eval.checks import train_serve_consistency
    from sftforge.eval.ppl import split_file
    from sftforge.resources import SAMPLE_CONVERSATIONS
    from sftforge.train.data import read_split
    from sftforge.types import KIND_TEXT

    data = split_file(args.data, args.split) if args.data else SAMPLE_CONVERSATIONS
    verification = verify_dataset(data, verify=not args.no_verify)
    # Plain-text rows (replay documents) have no chat turns to serve: counted, not checked.
    convs, skipped = [], 0
    for conv in read_split(data, args.limit):
        if conv.kind == KIND_TEXT:
            skipped += 1
        else:
            convs.append(conv)
    loaded = _load(args)
    result = train_serve_consistency(loaded.tokenizer, loaded.template, convs)
    result.update(data=str(data), skipped_plain_text=skipped,
                  verification=verification.to_dict())  # fmt: skip
    ok = result["verdict"] == "pass"
    print(f"verdict: {result['verdict']}: {result['turns_checked']} assistant turns checked, "
          f"{result['mismatches']} prompts differ from training's")  # fmt: skip
    if skipped:
        print(f"note: {skipped} plain-text rows (replay documents, no chat turns) skipped")
    page = H.page(f"Train-serve consistency: {args.model}", [
        ("", H.verdict(result["verdict"], ok)),
        ("First differences", H.table(result["examples"])),
    ])  # fmt: skip
    print(f"written to {_write(args, result, page)}")
    return 0 if ok else 1


# -- compare --------------------------------------------------------------------------------
def flatten_numbers(data: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a results.json as ``a.b.c`` keys (lists of numbers are skipped)."""
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(flatten_numbers(v, f"{prefix}{k}."))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix[:-1]] = float(data)
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    results = []
    for folder in (args.a, args.b):
        path = Path(folder) / "results.json" if Path(folder).is_dir() else Path(folder)
        if not path.is_file():
            raise SftForgeError(f"{folder}: no results.json (pass an eval --output folder)")
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise SftForgeError(
                f"{path}: not a results.json written by sftforge eval ({exc})"
            ) from None
    a, b = (flatten_numbers(r) for r in results)
    rows = []
    for key in sorted(set(a) | set(b)):
        row: dict[str, Any] = {"metric": key, "A": a.get(key, ""), "B": b.get(key, "")}
        if key in a and key in b:
            row["B - A"] = b[key] - a[key]
        rows.append(row)
    _print_rows(rows, ["metric", "A", "B", "B - A"])
    page = H.page("Comparison", [
        ("", f"<p>A = {args.a}<br>B = {args.b}</p>"),
        ("", H.table(rows, ["metric", "A", "B", "B - A"])),
    ])  # fmt: skip
    out = H.write_results(args.output, {"kind": "compare", "a": str(args.a), "b": str(args.b),
                                        "rows": rows}, page)  # fmt: skip
    print(f"written to {out}")
    return 0


def _print_rows(rows: list[dict[str, Any]], columns: list[str]) -> None:
    print(H.text(rows, columns))


def add_check_commands(esub: Any) -> None:
    """Register the commands of this module on the ``sftforge eval`` subparsers."""
    from sftforge.infer.commands import add_sampling_args

    p = esub.add_parser("ppl", help="perplexity over trained tokens, per source")
    _model_arg(p)
    p.add_argument("--data", required=True, help="a dataset folder or a JSONL file")
    p.add_argument("--split", default="validation", choices=["validation", "train"])
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--limit", type=int)
    _verify_arg(p)
    _output_arg(p, "runs/eval/ppl")
    p.set_defaults(func=cmd_ppl)

    p = esub.add_parser("health", help="stop rate, lengths, repetition, language of answers")
    p.add_argument("model", help="a model directory (sftforge run, merged, HF), .gguf or smollm2")
    p.add_argument("--prompts", required=True, help="prompts JSONL")
    p.add_argument("--limit", type=int, default=50)
    add_sampling_args(p, max_new_tokens=256)
    _verify_arg(p)
    _output_arg(p, "runs/eval/health")
    p.set_defaults(func=cmd_health)

    p = esub.add_parser("ablation", help="training template vs no template vs another one")
    _model_arg(p)
    p.add_argument("--data", required=True, help="dataset folder or JSONL for perplexity")
    p.add_argument("--prompts", required=True, help="prompts JSONL for generation health")
    p.add_argument("--other", help="the other template (default: alpaca, or vicuna)")
    p.add_argument("--split", default="validation", choices=["validation", "train"])
    p.add_argument("--limit", type=int, help="samples for perplexity")
    p.add_argument("--num-prompts", type=int, default=20)
    p.add_argument("--max-new-tokens", type=int, default=128)
    _verify_arg(p)
    _output_arg(p, "runs/eval/ablation")
    p.set_defaults(func=cmd_ablation)

    p = esub.add_parser("forgetting", help="base vs tuned on general text (and MCQ)")
    p.add_argument("--base", required=True)
    p.add_argument("--tuned", required=True)
    p.add_argument("--replay", required=True, help="plain-text JSONL ({'text': ...}) or dataset")
    p.add_argument("--mcq", nargs="*", help="MMLU / C-Eval / CMMLU CSV folders")
    p.add_argument("--shots", type=int, default=0)
    p.add_argument("--mcq-limit", type=int, help="questions per subject")
    p.add_argument("--threshold", type=float, default=0.1)
    p.add_argument("--limit", type=int, help="replay samples")
    _verify_arg(p)
    _output_arg(p, "runs/eval/forgetting")
    p.set_defaults(func=cmd_forgetting)

    p = esub.add_parser("consistency", help="apply_chat_template prompt ids == training ids")
    _model_arg(p)
    p.add_argument(
        "--data", help="a dataset folder or conversations JSONL (default: the bundled samples)"
    )
    p.add_argument("--split", default="validation", choices=["validation", "train"])
    p.add_argument("--limit", type=int, default=100)
    _verify_arg(p)
    _output_arg(p, "runs/eval/consistency")
    p.set_defaults(func=cmd_consistency)

    p = esub.add_parser("compare", help="two eval result folders side by side")
    p.add_argument("a")
    p.add_argument("b")
    _output_arg(p, "runs/eval/compare")
    p.set_defaults(func=cmd_compare)
