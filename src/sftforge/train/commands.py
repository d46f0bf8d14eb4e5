"""``sftforge train`` and ``sftforge merge``: thin CLI over :mod:`sftforge.train.run` and
:mod:`sftforge.models.adapters`."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from sftforge.errors import SftForgeError


def cmd_train(args: argparse.Namespace) -> int:
    from sftforge.train.config import load_train_config
    from sftforge.train.run import run_training, say

    config = load_train_config(args.config, list(args.overrides))
    result = run_training(config, output_dir=args.output)
    say(f"\nmodel directory: {result.output_dir}")
    say(
        f"  steps {result.global_step}, train loss {result.train_loss:.4f}, "
        f"{result.trained_tokens_per_s:.0f} trained tokens/s"
    )
    return 0


def merge_run(
    run_dir: str | Path, output: str | Path | None = None, base: str | None = None
) -> Path:
    """Fold a run's LoRA adapter into its base; the result is a plain transformers model
    directory with the same tokenizer, chat template, template.json and run info."""
    from sftforge.models.adapters import is_adapter_dir, merge_adapter
    from sftforge.train import artifacts

    run_dir = Path(run_dir)
    if not is_adapter_dir(run_dir):
        raise SftForgeError(
            f"{run_dir}: no adapter_config.json; only LoRA / QLoRA runs need merging "
            "(a full fine-tune is already a complete model)"
        )
    out = Path(output) if output else run_dir / "merged"
    model = merge_adapter(run_dir, base)
    from sftforge.templates import load_template
    from sftforge.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(run_dir)
    template = load_template(run_dir / artifacts.TEMPLATE_FILE)
    artifacts.set_generation_stops(model, tokenizer, template)
    model.config.use_cache = True
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))  # chat_template already set at training
    shutil.copyfile(run_dir / artifacts.TEMPLATE_FILE, out / artifacts.TEMPLATE_FILE)
    info = artifacts.read_run_info(run_dir)
    info["merged_from"] = {
        "adapter": str(run_dir.resolve()),
        "base": base or info.get("base_model_dir"),
    }
    info["method"] = "merged"
    artifacts.write_run_info(out, info)
    return out


def cmd_merge(args: argparse.Namespace) -> int:
    out = merge_run(args.run_dir, args.output, args.base)
    print(f"merged model written to {out} (load it with AutoModelForCausalLM.from_pretrained)")
    return 0


def cmd_train_validate(args: argparse.Namespace) -> int:
    from sftforge.train.config import load_train_config

    config = load_train_config(args.config, list(args.overrides))
    print(json.dumps(config.to_dict(), indent=2, ensure_ascii=False))
    return 0


def add_train_commands(sub: Any) -> None:
    p = sub.add_parser("train", help="fine-tune a model (full, LoRA or QLoRA) from a config")
    p.add_argument("config", help="training config YAML (see configs/train/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=1")
    p.add_argument("--output", help="model directory (default: the config's output_dir)")
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the config and print it resolved; do not train",
    )
    p.set_defaults(func=lambda a: cmd_train_validate(a) if a.check else cmd_train(a))

    p = sub.add_parser("merge", help="fold a LoRA adapter into its base model")
    p.add_argument("run_dir", help="a LoRA / QLoRA model directory written by sftforge train")
    p.add_argument("--output", help="where to write the merged model (default: RUN_DIR/merged)")
    p.add_argument("--base", help="base model directory (default: the one recorded in run.json)")
    p.set_defaults(func=cmd_merge)
