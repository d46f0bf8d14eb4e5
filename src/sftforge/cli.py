"""The ``sftforge`` command: thin subcommands over the library.

sftforge templates list [--json]
sftforge templates show NAME
sftforge templates render NAME --input conv.json [--generation-prompt] [--tokenizer TOK]
sftforge templates export NAME --format hf|ollama
sftforge encode --template NAME --tokenizer TOK INPUT --output OUT.jsonl
sftforge preview --template NAME --tokenizer TOK INPUT [--html page.html]
sftforge eval mcq MODEL --data DIR [--shots K] | sftforge eval sheet --models A B ...
sftforge quickstart
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sftforge.errors import SftForgeError

#: Where the quickstart writes, relative to the current directory.
QUICKSTART_DIR = Path("runs") / "quickstart"


def _load_tokenizer(spec: str | None) -> Any:
    if spec is None:
        return None
    from sftforge.tokenizer import load_tokenizer

    return load_tokenizer(spec)


def _template(name: str, tokenizer: Any) -> Any:
    from sftforge.templates import get_template

    return get_template(name, tokenizer=tokenizer)


# -- templates -------------------------------------------------------------------------------
def cmd_templates_list(args: argparse.Namespace) -> int:
    from sftforge.templates import get_template, template_names

    names = template_names()
    if args.json:
        rows = []
        for name in names:
            if name == "hf":
                rows.append({"name": "hf", "summary": "the tokenizer's own jinja chat_template"})
            else:
                t = get_template(name)
                rows.append({"name": name, "summary": t.summary, "source": t.source})
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for name in names:
            summary = (
                "the tokenizer's own jinja chat_template (needs --tokenizer)"
                if name == "hf"
                else get_template(name).summary
            )
            print(f"{name:16s} {summary}")
    return 0


def cmd_templates_show(args: argparse.Namespace) -> int:
    tokenizer = _load_tokenizer(args.tokenizer)
    template = _template(args.name, tokenizer)
    data = template.to_dict()
    data.pop("golden", None)
    print(json.dumps(data, ensure_ascii=False, indent=2))
    print(f"\nstop strings: {list(template.stop_strings(tokenizer))}")
    example = [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
    ]
    print("\nexample (training text):")
    print(repr(template.render(example, tokenizer=tokenizer)))
    print("example (generation prompt):")
    print(repr(template.render(example[:2], add_generation_prompt=True, tokenizer=tokenizer)))
    return 0


def cmd_templates_render(args: argparse.Namespace) -> int:
    from sftforge.types import as_conversation

    tokenizer = _load_tokenizer(args.tokenizer)
    template = _template(args.name, tokenizer)
    path = Path(args.input)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SftForgeError(f"{path}: cannot read conversation JSON: {exc}") from exc
    conv = as_conversation(data, meta={"source": str(path)})
    text = template.render(conv, add_generation_prompt=args.generation_prompt, tokenizer=tokenizer)
    sys.stdout.write(text)
    if sys.stdout.isatty() and not text.endswith("\n"):
        sys.stdout.write("\n")
    return 0


def cmd_templates_export(args: argparse.Namespace) -> int:
    from sftforge.templates import JinjaChatTemplate, to_hf_chat_template, to_ollama_modelfile

    tokenizer = _load_tokenizer(args.tokenizer)
    template = _template(args.name, tokenizer)
    if isinstance(template, JinjaChatTemplate):
        if args.format != "hf":
            raise SftForgeError("an 'hf' template can only be exported as --format hf")
        print(template.source)
    elif args.format == "hf":
        print(to_hf_chat_template(template))
    else:
        print(to_ollama_modelfile(template, args.model_path), end="")
    return 0


# -- encode / preview -------------------------------------------------------------------------
def _encode_file(args: argparse.Namespace, tokenizer: Any, template: Any, limit: int | None):
    """Encode INPUT with a progress bar; returns (encoded samples, report)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from sftforge.conversation_io import read_conversations
    from sftforge.encode import Encoder, EncodeReport

    encoder = Encoder(template, tokenizer, max_length=args.max_length, policy=args.policy)
    report = EncodeReport()
    convs = list(read_conversations(args.input))
    if limit is not None:
        convs = convs[:limit]
    out = []
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), transient=True, disable=not sys.stderr.isatty(),
    ) as progress:  # fmt: skip
        task = progress.add_task("encoding", total=len(convs))
        for start in range(0, len(convs), 1024):
            batch = convs[start : start + 1024]
            out.extend(encoder.encode_batch(batch, errors=args.errors, report=report))
            progress.advance(task, len(batch))
    return out, report


def _verify_input(args: argparse.Namespace) -> Any:
    """Check an input that lies in a built dataset against its manifest (see
    :func:`sftforge.data.manifest.verify_dataset`)."""
    from sftforge.data.manifest import verify_dataset

    return verify_dataset(args.input, verify=not args.no_verify)


def cmd_encode(args: argparse.Namespace) -> int:
    from sftforge.fsutil import (
        atomic_open,
        atomic_write_text,
        check_output_file,
        refuse_input_as_output,
    )

    output = check_output_file(args.output)
    report_path = output.with_suffix(".report.json")
    refuse_input_as_output([args.input], [output, report_path])
    verification = _verify_input(args)
    tokenizer = _load_tokenizer(args.tokenizer)
    template = _template(args.template, tokenizer)
    samples, report = _encode_file(args, tokenizer, template, None)
    with atomic_open(output) as fh:
        for enc in samples:
            if not enc.dropped:
                fh.write(json.dumps(enc.to_dict()) + "\n")
    summary = {**report.to_dict(), "verification": verification.to_dict()}
    atomic_write_text(report_path, json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    print(report.summary())
    print(f"wrote {report.samples_kept} samples to {output}; report: {report_path}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from sftforge.encode.preview import preview_html, preview_terminal
    from sftforge.fsutil import check_output_file, refuse_input_as_output

    refuse_input_as_output([args.input], [check_output_file(args.html)])
    _verify_input(args)
    tokenizer = _load_tokenizer(args.tokenizer)
    template = _template(args.template, tokenizer)
    samples, report = _encode_file(args, tokenizer, template, args.limit)
    preview_terminal(samples, tokenizer, max_samples=args.num)
    html = preview_html(samples, tokenizer, args.html, report=report, max_samples=args.html_samples)
    print(report.summary())
    print(f"HTML preview: {html}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """The main job: build data, LoRA fine-tune SmolLM2, evaluate, merge, answer."""
    from sftforge.quickstart import run_quickstart

    run_quickstart(Path(args.output), overrides=list(args.overrides))
    return 0


# -- parser ----------------------------------------------------------------------------------
def _add_encode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input", help="conversations: .jsonl (one {'messages': [...]} per line) or .json"
    )
    p.add_argument("--template", required=True, help="template name (sftforge templates list)")
    p.add_argument(
        "--tokenizer", required=True,
        help="local Hugging Face tokenizer dir, .gguf file, tokenizer.json, or 'smollm2'",
    )  # fmt: skip
    p.add_argument("--max-length", type=int, default=None, help="turn-aware truncation limit")
    p.add_argument(
        "--policy", default="all_assistant",
        choices=["all_assistant", "last_assistant", "all_tokens"], help="what is trained",
    )  # fmt: skip
    p.add_argument(
        "--errors", default="drop", choices=["drop", "raise"],
        help="invalid conversations: count and skip (drop) or stop at the first (raise)",
    )  # fmt: skip
    p.add_argument(
        "--no-verify", action="store_true",
        help="use a built dataset's split even if it does not match its manifest.json",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sftforge",
        description=__doc__.split("\n\n")[0],
        epilog="--debug (anywhere) prints the traceback of a failure.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    templates = sub.add_parser("templates", help="list, show, render and export templates")
    tsub = templates.add_subparsers(dest="templates_command", required=True)
    p = tsub.add_parser("list", help="template names")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_templates_list)
    p = tsub.add_parser("show", help="a template's full definition and an example")
    p.add_argument("name")
    p.add_argument("--tokenizer", help="needed for 'hf'; fills BOS/EOS from the tokenizer")
    p.set_defaults(func=cmd_templates_show)
    p = tsub.add_parser("render", help="print the exact text of a conversation")
    p.add_argument("name")
    p.add_argument("--input", required=True, help='JSON file holding {"messages": [...]}')
    p.add_argument("--generation-prompt", action="store_true", help="render the inference prompt")
    p.add_argument("--tokenizer", help="use this tokenizer's BOS/EOS strings")
    p.set_defaults(func=cmd_templates_render)
    p = tsub.add_parser("export", help="as a Hugging Face chat_template or Ollama Modelfile")
    p.add_argument("name")
    p.add_argument("--format", required=True, choices=["hf", "ollama"])
    p.add_argument("--tokenizer", help="needed for 'hf'")
    p.add_argument("--model-path", default="./model.gguf", help="FROM line of the Modelfile")
    p.set_defaults(func=cmd_templates_export)

    p = sub.add_parser("encode", help="encode conversations to input_ids/labels JSONL")
    _add_encode_args(p)
    p.add_argument("--output", required=True, help="output .jsonl")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("preview", help="show samples token by token with trained tokens marked")
    _add_encode_args(p)
    p.add_argument("-n", "--num", type=int, default=3, help="samples shown in the terminal")
    p.add_argument("--limit", type=int, default=200, help="samples encoded for the preview")
    p.add_argument("--html", default="preview.html", help="HTML page to write")
    p.add_argument("--html-samples", type=int, default=50, help="samples drawn in the HTML")
    p.set_defaults(func=cmd_preview)

    from sftforge.data.commands import add_data_commands

    add_data_commands(sub)

    from sftforge.train.commands import add_train_commands

    add_train_commands(sub)

    from sftforge.infer.commands import add_infer_commands

    add_infer_commands(sub)

    from sftforge.eval.cli_checks import add_check_commands
    from sftforge.eval.commands import add_eval_commands

    add_check_commands(add_eval_commands(sub))

    p = sub.add_parser("quickstart", help="the main job on the embedded default model")
    p.add_argument("--output", default=str(QUICKSTART_DIR))
    p.add_argument("overrides", nargs="*",
                   help="training config overrides, e.g. train.max_steps=4")  # fmt: skip
    p.set_defaults(func=cmd_quickstart)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``, taking ``key=value`` overrides wherever they stand among the options
    (argparse alone only takes them before the first option)."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides"):
        misplaced = [a for a in extra if a.startswith("-") or "=" not in a]
        if not misplaced:
            args.overrides = [*args.overrides, *extra]
            extra = []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; failures end as described in :mod:`sftforge.crashlog`."""
    from sftforge import crashlog

    words = list(sys.argv[1:] if argv is None else argv)
    # --debug may stand anywhere (it is taken out before parsing), or SFTFORGE_DEBUG=1.
    debug = "--debug" in words or os.environ.get("SFTFORGE_DEBUG") == "1"
    words = [w for w in words if w != "--debug"]
    parser = build_parser()
    args = parse_args(parser, words)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("sftforge: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return crashlog.report(exc, words, debug=debug)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
