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

    overrides = list(args.overrides)
    if getattr(args, "no_verify", False):
        overrides.append("data.verify=false")
    config = load_train_config(args.config, overrides)
    result = run_training(
        config,
        output_dir=args.output,
        overwrite=getattr(args, "overwrite", False),
        resume=getattr(args, "resume", False),
    )
    say(f"\nmodel directory: {result.output_dir}")
    say(
        f"  steps {result.global_step}, train loss {result.train_loss:.4f}, "
        f"{result.trained_tokens_per_s:.0f} trained tokens/s"
    )
    return 0


#: ``sftforge merge --dtype`` choices; ``auto`` is the base model's own dtype.
MERGE_DTYPES = ("auto", "bfloat16", "float16", "float32")


def merge_run(
    run_dir: str | Path,
    output: str | Path | None = None,
    base: str | None = None,
    dtype: str = "auto",
    *,
    allow_mismatch: bool = False,
) -> Path:
    """Fold a run's LoRA adapter into its base; the result is a plain transformers model
    directory with the same tokenizer, chat template, template.json and run info.

    The base is the one recorded at training, resolved on this machine (``smollm2``, the
    path the config gave, ...) unless ``base`` names it. The merge runs in fp32 and is
    saved in ``dtype``: ``auto`` is the base's own (config.json; a quantised GGUF's original
    float dtype is unknown, so bfloat16). The folder is published whole (atomic), replacing
    a previous one in one rename.
    """
    import torch

    from sftforge.fsutil import publish_dir
    from sftforge.models.adapters import is_adapter_dir, merge_adapter, resolve_adapter_base
    from sftforge.models.load import base_float_dtype
    from sftforge.templates import load_template
    from sftforge.tokenizer import load_tokenizer
    from sftforge.train import artifacts

    run_dir = Path(run_dir)
    if not is_adapter_dir(run_dir):
        raise SftForgeError(
            f"{run_dir}: no adapter_config.json; only LoRA / QLoRA runs need merging "
            "(a full fine-tune is already a complete model)"
        )
    if dtype not in MERGE_DTYPES:
        raise SftForgeError(f"--dtype {dtype}: choose one of {', '.join(MERGE_DTYPES)}")
    out = Path(output) if output else run_dir / "merged"
    import warnings

    from sftforge.infer.load import enforce_integrity

    tokenizer = load_tokenizer(run_dir)
    template = load_template(run_dir / artifacts.TEMPLATE_FILE)
    info = artifacts.read_run_info(run_dir)
    # An edited template.json or a swapped tokenizer would be baked into the merged model.
    allowed = enforce_integrity(run_dir, info, tokenizer, template, allow_mismatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        base_dir = resolve_adapter_base(run_dir, base, allow_mismatch=allow_mismatch)
    allowed += [str(w.message) for w in caught]
    for message in allowed:
        warnings.warn(message, stacklevel=2)
    from sftforge.fsutil import refuse_input_as_output

    # The merged folder replaces whatever is at --output: never the adapter or its base.
    refuse_input_as_output([run_dir, base_dir], [out])
    model = merge_adapter(run_dir, str(base_dir), allow_mismatch=True)  # checked just above
    dtype_name = base_float_dtype(base_dir) if dtype == "auto" else dtype
    model = model.to(getattr(torch, dtype_name))
    artifacts.set_generation_stops(model, tokenizer, template)
    model.config.use_cache = True
    if allowed:
        info["allowed_mismatches"] = allowed
    info["merged_from"] = {
        "adapter": str(run_dir.resolve()),
        "base": base or info.get("base_model"),
        "base_dir": str(base_dir),
    }
    info["method"] = "merged"
    info["dtype"] = dtype_name

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))  # chat_template already set at training
        shutil.copyfile(run_dir / artifacts.TEMPLATE_FILE, tmp / artifacts.TEMPLATE_FILE)
        artifacts.write_run_info(tmp, info)

    publish_dir(out, write, replace=True)
    return out


def cmd_merge(args: argparse.Namespace) -> int:
    out = merge_run(args.run_dir, args.output, args.base, args.dtype,
                    allow_mismatch=args.allow_mismatch)  # fmt: skip
    print(f"merged model written to {out} (load it with AutoModelForCausalLM.from_pretrained)")
    return 0


def cmd_train_validate(args: argparse.Namespace) -> int:
    from sftforge.train.config import load_train_config
    from sftforge.train.preflight import describe, preflight

    overrides = list(args.overrides)
    if getattr(args, "no_verify", False):
        overrides.append("data.verify=false")
    config = load_train_config(args.config, overrides)
    print(json.dumps(config.to_dict(), indent=2, ensure_ascii=False))
    result = preflight(config)  # raises, listing every problem
    print(f"preflight passed (nothing loaded):\n{describe(result)}")
    return 0


def add_train_commands(sub: Any) -> None:
    p = sub.add_parser("train", help="fine-tune a model (full, LoRA or QLoRA) from a config")
    p.add_argument("config", help="training config YAML (see configs/train/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=1")
    p.add_argument("--output", help="model directory (default: the config's output_dir)")
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--overwrite",
        action="store_true",
        help="start the run in the output folder over (the previous one is set aside and "
        "removed when the new run finishes)",
    )
    when.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the output folder from its last checkpoint, also a "
        "finished one (e.g. with more train.epochs); only the settings listed in "
        "docs/training.md may differ from its recorded config",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="train on a built dataset even if it does not match its manifest.json "
        "(data.verify=false; run.json records it)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the config and print it resolved; do not train",
    )
    p.set_defaults(func=lambda a: cmd_train_validate(a) if a.check else cmd_train(a))

    p = sub.add_parser("merge", help="fold a LoRA adapter into its base model")
    p.add_argument("run_dir", help="a LoRA / QLoRA model directory written by sftforge train")
    p.add_argument("--output", help="where to write the merged model (default: RUN_DIR/merged)")
    p.add_argument(
        "--base",
        help="base model (default: the one recorded at training, found on this machine)",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=MERGE_DTYPES,
        help="dtype of the merged weights (default: the base model's own; bfloat16 for a "
        "quantised GGUF base such as smollm2)",
    )
    p.add_argument(
        "--allow-mismatch", action="store_true",
        help="merge even if template.json, the tokenizer or the base weights differ from "
        "what run.json recorded (the merged run.json records it)",
    )  # fmt: skip
    p.set_defaults(func=cmd_merge)
