"""``sftforge chat`` and ``sftforge generate``: thin CLI over :mod:`sftforge.infer`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

CHAT_HELP = "/system TEXT sets the system prompt, /reset clears the history, /exit quits"


def add_allow_mismatch_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-mismatch", action="store_true",
        help="load even if the model folder's template, tokenizer or base weights differ from "
        "what run.json recorded at training (outputs record it)",
    )  # fmt: skip


def add_sampling_args(p: argparse.ArgumentParser, *, max_new_tokens: int = 512) -> None:
    p.add_argument("--template", help="override the training template (warns if it differs)")
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--no-repeat-ngram-size", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)


def sampling_from(args: argparse.Namespace) -> Any:
    from sftforge.infer.generate import Sampling

    return Sampling(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        seed=args.seed,
    )


def cmd_chat(args: argparse.Namespace) -> int:
    from transformers import TextStreamer

    from sftforge.infer.generate import generate
    from sftforge.infer.load import load_for_inference

    loaded = load_for_inference(args.model, template=args.template,
                                allow_mismatch=args.allow_mismatch)  # fmt: skip
    print(f"{args.model}: template {loaded.template.name} (from {loaded.template_origin}). "
          f"{CHAT_HELP}")  # fmt: skip
    sampling = sampling_from(args)
    system: str | None = args.system
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input("you> ")
        except EOFError:
            print()
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            history = []
            print("(history cleared)")
            continue
        if text.startswith("/system"):
            system = text[len("/system") :].strip() or None
            history = []
            print(f"(system prompt {'set' if system else 'cleared'}; history cleared)")
            continue
        history.append({"role": "user", "content": text})
        messages = ([{"role": "system", "content": system}] if system else []) + history
        print("assistant> ", end="", flush=True)
        streamer = TextStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
        [answer] = generate(loaded.model, loaded.tokenizer, loaded.template, [messages],
                            sampling, streamer=streamer)  # fmt: skip
        if answer.finish_reason == "length":
            print(f"[stopped at --max-new-tokens {sampling.max_new_tokens}]")
        history.append({"role": "assistant", "content": answer.text})


def cmd_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from sftforge.fsutil import atomic_open, check_output_file, refuse_input_as_output
    from sftforge.infer.generate import generate
    from sftforge.infer.load import load_for_inference
    from sftforge.infer.prompts import read_prompts

    out = check_output_file(args.output)
    refuse_input_as_output([args.input], [out])  # before loading a model for a minute
    rows = read_prompts(Path(args.input), verify=not args.no_verify)
    loaded = load_for_inference(args.model, template=args.template,
                                allow_mismatch=args.allow_mismatch)  # fmt: skip
    sampling = sampling_from(args)
    stopped = 0
    # Answers appear at the output path only when all are written (a kill leaves the old file).
    with atomic_open(out) as fh, tqdm(total=len(rows), desc="generate") as bar:
        for start in range(0, len(rows), args.batch_size):
            chunk = rows[start : start + args.batch_size]
            results = generate(loaded.model, loaded.tokenizer, loaded.template,
                               [r["messages"] for r in chunk], sampling,
                               batch_size=args.batch_size)  # fmt: skip
            for row, gen in zip(chunk, results, strict=True):
                stopped += gen.finish_reason == "stop"
                record = {k: v for k, v in row.items() if k != "line"}
                record.update(output=gen.text, finish_reason=gen.finish_reason,
                              prompt_tokens=gen.prompt_tokens, new_tokens=gen.new_tokens,
                              template=loaded.template.name)  # fmt: skip
                if loaded.allowed_mismatches:
                    record["allowed_mismatches"] = loaded.allowed_mismatches
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            bar.update(len(chunk))
    print(f"{len(rows)} answers written to {out}; {stopped} stopped by themselves, "
          f"{len(rows) - stopped} hit --max-new-tokens")  # fmt: skip
    return 0


def add_infer_commands(sub: Any) -> None:
    p = sub.add_parser("chat", help="interactive multi-turn chat with the training template")
    p.add_argument("model", help="a model directory (sftforge run, merged, HF), .gguf or smollm2")
    p.add_argument("--system", help="system prompt")
    add_sampling_args(p)
    add_allow_mismatch_arg(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("generate", help="batched generation over a prompts JSONL file")
    p.add_argument("model", help="a model directory (sftforge run, merged, HF), .gguf or smollm2")
    p.add_argument("--input", required=True, help='JSONL of {"messages": [...]} or {"prompt": ...}')
    p.add_argument("--output", required=True, help="JSONL with the answers")
    p.add_argument("--batch-size", type=int, default=8)
    add_sampling_args(p)
    add_allow_mismatch_arg(p)
    p.add_argument(
        "--no-verify", action="store_true",
        help="read a built dataset's split even if it does not match its manifest.json",
    )  # fmt: skip
    p.set_defaults(func=cmd_generate)
