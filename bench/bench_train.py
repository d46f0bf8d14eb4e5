"""Benchmark: sftforge training against TRL's SFTTrainer, same run, same machine.

    python bench/bench_train.py [--rows 64] [--max-length 512] [--data-dir ../shared/data]

Same model (SmolLM2-135M-Instruct, the embedded default), same rows (Alpaca, English),
same sequence length, same LoRA settings (r=8, alpha=16, no dropout, every attention and
MLP projection), batch 4, one epoch, gradient checkpointing off for everyone, the same
precision (``--precision``: bf16 mixed precision by default, which is TRL's default and
sftforge's on CPUs with native bf16; ``fp32`` for both otherwise), and
the same masks: the loss covers the answer and its end-of-turn token, never the prompt
(TRL: conversational prompt-completion rows, ``completion_only_loss``).

Measured: trained (non-masked) tokens per second of ``trainer.train()`` for

* TRL default (padded batches), TRL ``padding_free=True``, and with ``--bin-packing`` TRL
  ``packing=True`` (BFD bins of ``max_length``);
* sftforge packed (its default: one padding-free row per micro-batch, logits only at trained
  positions), sftforge packed computing every logit (the saving of skipping masked
  positions), and sftforge padded.

Prints each figure and the ratios against the targets: sftforge >= 1.25x TRL's best and
>= 2x TRL's default padded configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

LORA = {"r": 8, "alpha": 16, "dropout": 0.0}
BATCH = 4


def load_rows(data_dir: Path | None, rows: int) -> list[dict]:
    """Alpaca rows from the shared data, else the copy bundled for the quickstart."""
    shared = data_dir / "alpaca" / "alpaca_en_demo.json" if data_dir else None
    if shared is not None and shared.is_file():
        source = shared
    else:
        from sftforge.quickstart import QUICKSTART_RESOURCES

        source = QUICKSTART_RESOURCES / "alpaca_en.json"
    data = json.loads(source.read_text(encoding="utf-8"))
    print(f"data: {source}")
    return data[: rows * 2]  # twice as many: rows too long for max_length are skipped


def conversations(rows: list[dict]) -> list[list[dict]]:
    out = []
    for r in rows:
        prompt = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
        out.append(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": r["output"]}]
        )
    return out


PRECISION = {"bf16": True}


def sftforge_run(
    model_dir: Path, samples: list, tokenizer, *, packing: bool, skip: bool, tmp: Path
):
    from sftforge.train.config import RunContext, config_from_dict
    from sftforge.train.run import build_model, make_trainer

    config = config_from_dict(
        {
            "data": {"path": "unused", "packing": packing, "max_length": 4096},
            "model": {"path": str(model_dir)},
            "train": {
                "method": "lora", "epochs": 1, "batch_size": BATCH, "effective_batch": BATCH,
                "gradient_checkpointing": False, "logging_steps": 1000, "save_steps": 10**6,
                "learning_rate": 2e-4,
                "precision": "bf16" if PRECISION["bf16"] else "fp32",
            },
            "lora": LORA,
        }
    )  # fmt: skip
    ctx = RunContext.create(config, 1, "cpu")
    model = build_model(config, model_dir, ctx)
    trainer = make_trainer(config, ctx, model, tokenizer, samples, [], tmp)
    trainer.skip_masked_logits = skip
    result = trainer.train()
    trained = sum(s.num_trained for s in samples)
    return trained, result.metrics["train_runtime"]


def trl_run(
    model_dir: Path, rows: list[list[dict]], tokenizer, *, mode: str, max_length: int, tmp: Path
):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from sftforge.models.adapters import LORA_TARGETS
    from sftforge.models.load import load_causal_lm

    dataset = Dataset.from_list([{"prompt": c[:1], "completion": c[1:]} for c in rows])
    args = SFTConfig(
        output_dir=str(tmp),
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=1,
        num_train_epochs=1,
        learning_rate=2e-4,
        # padding-free TRL refuses a max_length it cannot enforce; the rows already fit.
        max_length=None if mode == "padding_free" else max_length,
        gradient_checkpointing=False,
        bf16=PRECISION["bf16"],
        use_cpu=True,
        report_to="none",
        logging_steps=1000,
        save_strategy="no",
        padding_free=mode == "padding_free",
        packing=mode == "bin_packing",
        completion_only_loss=True,
        seed=42,
    )
    peft_config = LoraConfig(
        r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
        target_modules=list(LORA_TARGETS["llama"]), task_type="CAUSAL_LM",
    )  # fmt: skip
    model = load_causal_lm(model_dir)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=peft_config,
    )  # fmt: skip
    trained = trl_trained_tokens(trainer.train_dataset)
    result = trainer.train()
    return trained, result.metrics["train_runtime"]


def trl_trained_tokens(dataset) -> int:
    """Tokens TRL trains on (labels != -100, after the shift): answer + end-of-turn."""
    if "labels" in dataset.column_names:
        return sum(sum(1 for x in labels[1:] if x != -100) for labels in dataset["labels"])
    return sum(sum(mask[1:]) for mask in dataset["completion_mask"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--bin-packing", action="store_true", help="also time TRL packing=True")
    parser.add_argument("--only", nargs="*", help="run only these configurations (by label)")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                        help="mixed precision for every configuration (default bf16)")  # fmt: skip
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    PRECISION["bf16"] = args.precision == "bf16"
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    from sftforge.encode.encoder import Encoder
    from sftforge.models.load import resolve_model_dir
    from sftforge.templates import get_template
    from sftforge.tokenizer import load_tokenizer

    model_dir = resolve_model_dir("smollm2")
    tokenizer = load_tokenizer(model_dir)
    encoder = Encoder(get_template("hf", tokenizer), tokenizer, max_length=args.max_length)
    rows = conversations(load_rows(args.data_dir, args.rows))
    encoded = encoder.encode_batch(rows, errors="drop")
    keep = [i for i, e in enumerate(encoded) if not e.dropped and not e.truncated][: args.rows]
    samples = [encoded[i] for i in keep]
    rows = [rows[i] for i in keep]
    trained_per_epoch = sum(s.num_trained for s in samples)
    print(
        f"{len(samples)} rows, {sum(len(s.input_ids) for s in samples)} tokens, "
        f"{trained_per_epoch} trained; batch {BATCH}, LoRA r={LORA['r']}, {args.precision}, "
        f"torch threads {torch.get_num_threads()}"
    )

    runs = [
        ("trl padded (default)", lambda t: trl_run(model_dir, rows, tokenizer, mode="padded",
                                                   max_length=args.max_length, tmp=t)),
        ("trl padding_free", lambda t: trl_run(model_dir, rows, tokenizer, mode="padding_free",
                                               max_length=args.max_length, tmp=t)),
        ("sftforge packed", lambda t: sftforge_run(model_dir, samples, tokenizer, packing=True,
                                                   skip=True, tmp=t)),
        ("sftforge packed, all logits", lambda t: sftforge_run(model_dir, samples, tokenizer,
                                                               packing=True, skip=False, tmp=t)),
        ("sftforge padded", lambda t: sftforge_run(model_dir, samples, tokenizer, packing=False,
                                                   skip=True, tmp=t)),
    ]  # fmt: skip
    if args.bin_packing:
        bins = lambda t: trl_run(  # noqa: E731
            model_dir, rows, tokenizer, mode="bin_packing", max_length=args.max_length, tmp=t
        )
        runs.insert(2, ("trl bin packing", bins))
    if args.only:
        runs = [r for r in runs if r[0] in args.only]

    results: dict[str, float] = {}
    for label, fn in runs:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            trained, runtime = fn(Path(tmp))
        rate = trained / runtime
        results[label] = rate
        wall = time.perf_counter() - started
        print(f"{label:30s} {trained:6d} trained tokens in {runtime:7.1f} s = {rate:7.1f} tok/s"
              f"   (wall incl. setup {wall:.0f} s)", flush=True)  # fmt: skip

    ours = results.get("sftforge packed")
    trl = {k: v for k, v in results.items() if k.startswith("trl")}
    if ours and trl:
        best_label = max(trl, key=trl.get)
        print()
        ratio = ours / trl[best_label]
        print(f"sftforge packed / TRL best ({best_label}): {ratio:.2f}x  (target >= 1.25x)")
        if "trl padded (default)" in trl:
            ratio = ours / trl["trl padded (default)"]
            print(f"sftforge packed / TRL default padded: {ratio:.2f}x  (target >= 2x)")
    if ours and "sftforge packed, all logits" in results:
        print(f"skipping masked logits: {ours / results['sftforge packed, all logits']:.2f}x")


if __name__ == "__main__":
    main()
