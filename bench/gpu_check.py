"""The prepared GPU check: one short run that measures and checks the GPU paths.

Usage (from the repository root; ``bench/gpu_check.sh`` wraps it)::

    python bench/gpu_check.py [--steps 20] [--dry-run] [--json out.json]

No network and no downloaded weights: the model is built from a SmolLM2-135M-shaped config
(30 layers, hidden 576, vocabulary 49,152) with random weights, and the data is random
token sequences of mixed lengths whose second half is trained. It measures and checks:

* **bf16 LoRA, packed, packed SDPA** (sftforge's per-sample attention): trained tokens/s,
  peak memory;
* **bf16 LoRA, packed, flash_attention_2** when ``flash_attn`` is importable;
* **packed loss == unpacked loss**: the same samples packed in one row and padded in a
  batch give the same summed loss (relative 1e-2 in bf16);
* **QLoRA** (4-bit NF4 through bitsandbytes) when importable: tokens/s and peak memory;
* **ZeRO-2 through accelerate** (one process, ``configs/accelerate/zero2.yaml``) when
  DeepSpeed is importable: ``sftforge train`` on a tiny model folder, three steps.

It prints one table (and ``--json``). ``--dry-run`` runs the same code on the CPU with a
2-layer model and a few steps: that is what the test suite runs, so the script cannot rot
between GPU sessions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SMOLLM2_SHAPE = {"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
                 "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                 "max_position_embeddings": 8192, "tie_word_embeddings": True}  # fmt: skip
TINY_SHAPE = {**SMOLLM2_SHAPE, "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2}  # fmt: skip


def make_samples(n: int, vocab: int, seed: int, max_len: int) -> list[dict[str, list[int]]]:
    """Random sequences of mixed lengths; the second half of each is trained."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(max_len // 8, max_len, (1,), generator=g))
        ids = torch.randint(3, vocab, (length,), generator=g).tolist()
        half = length // 2
        out.append({"input_ids": ids, "labels": [-100] * half + ids[half:]})
    return out


def build_model(shape: dict[str, Any], device: str, dtype: Any, attn: str, quant: Any = None):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sftforge.models.adapters import apply_lora, lora_targets

    torch.manual_seed(0)
    config = LlamaConfig(**shape, attn_implementation=attn)
    model = LlamaForCausalLM(config).to(dtype=dtype)
    if quant is not None:  # QLoRA: quantise the random base through a saved folder
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            model = LlamaForCausalLM.from_pretrained(
                tmp, quantization_config=quant, dtype=dtype, device_map={"": 0},
                attn_implementation=attn,
            )  # fmt: skip
    else:
        model = model.to(device)
    model.config.use_cache = False
    return apply_lora(model, r=8, alpha=16, dropout=0.0, targets=lora_targets(model))


def train_throughput(model: Any, samples: list, steps: int, per_step: int, device: str) -> dict:
    """LoRA steps on packed rows; trained tokens/s after one warm-up step, peak memory."""
    import torch

    from sftforge.encode.collate import PackedCollator
    from sftforge.train.loss import masked_nll

    collate = PackedCollator()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trained = 0
    started = None
    for step in range(steps + 1):
        batch = collate(
            samples[(step * per_step) % len(samples) :][:per_step] or samples[:per_step]
        )
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        nll, count = masked_nll(model, batch)
        (nll / max(count, 1)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step == 0:  # warm-up: kernels chosen, memory allocated
            if cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
            continue
        trained += count
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - (started or time.perf_counter())
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return {"trained_tok_s": trained / elapsed if elapsed > 0 else 0.0, "peak_gib": peak,
            "steps": steps}  # fmt: skip


def packed_equals_unpacked(model: Any, samples: list, device: str, rel: float) -> dict:
    import torch

    from sftforge.encode.collate import PackedCollator, PaddedCollator
    from sftforge.train.loss import masked_nll

    few = samples[:4]
    with torch.no_grad():
        packed = {k: v.to(device) if hasattr(v, "to") else v
                  for k, v in PackedCollator()(few).items()}  # fmt: skip
        padded = {k: v.to(device) for k, v in PaddedCollator(0)(few).items()}
        a, n_a = masked_nll(model, packed)
        b, n_b = masked_nll(model, padded)
    diff = abs(float(a) - float(b)) / max(abs(float(b)), 1e-9)
    return {"packed_nll": float(a), "padded_nll": float(b), "rel_diff": diff,
            "ok": n_a == n_b and diff <= rel}  # fmt: skip


def zero2_launch(device: str, tmp: Path) -> dict:
    """``accelerate launch`` with the ZeRO-2 config, one process, three steps of LoRA."""
    import torch
    import yaml
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(512)}
    vocab.update({"<unk>": 512, "<s>": 513, "</s>": 514, "<|im_start|>": 515, "<|im_end|>": 516})
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["<|im_start|>", "<|im_end|>"]
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>", pad_token="</s>",
                                  additional_special_tokens=specials)  # fmt: skip
    model_dir = tmp / "model"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**{**TINY_SHAPE, "vocab_size": len(tok)})).save_pretrained(
        model_dir
    )
    tok.save_pretrained(model_dir)
    data = tmp / "data.jsonl"
    conv = {"messages": [{"role": "user", "content": "w1 w2 w3"},
                         {"role": "assistant", "content": "w4 w5 w6 w7"}]}  # fmt: skip
    data.write_text((json.dumps(conv) + "\n") * 16)
    config = tmp / "train.yaml"
    config.write_text(yaml.safe_dump({
        "output_dir": str(tmp / "run"), "model": {"path": str(model_dir), "template": "chatml"},
        "data": {"path": str(data), "max_length": 64},
        "train": {"method": "lora", "max_steps": 3, "batch_size": 2, "effective_batch": 2,
                  "gradient_checkpointing": False},
    }))  # fmt: skip
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
           "--config_file", str(ROOT / "configs/accelerate/zero2.yaml"),
           "-m", "sftforge", "train", str(config)]  # fmt: skip
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    ok = done.returncode == 0 and (tmp / "run" / "run.json").is_file()
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    return {"ok": ok, "seconds": time.perf_counter() - started,
            "note": "" if ok else " | ".join(tail)}  # fmt: skip


def importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--per-step", type=int, default=16, help="samples packed per step")
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, few steps")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import torch

    from sftforge.models.attention import register_packed_attention

    dry = args.dry_run or not torch.cuda.is_available()
    device = "cpu" if dry else "cuda"
    shape = TINY_SHAPE if dry else SMOLLM2_SHAPE
    steps, max_len = (2, 64) if dry else (args.steps, args.max_len)
    dtype = torch.float32 if dry else torch.bfloat16
    gpu = "none (dry run on CPU)" if dry else torch.cuda.get_device_name(0)
    print(f"device: {gpu}; torch {torch.__version__}; model {shape['num_hidden_layers']} "
          f"layers, hidden {shape['hidden_size']}", flush=True)  # fmt: skip
    samples = make_samples(max(64, steps * args.per_step), shape["vocab_size"], 0, max_len)
    rows: list[dict[str, Any]] = []

    def row(name: str, fn: Any, skip: str | None = None) -> None:
        if skip:
            rows.append({"check": name, "result": f"skipped: {skip}"})
            return
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # a check that breaks is reported, the others still run
            result = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        rows.append({"check": name, **result, "wall_s": round(time.perf_counter() - started, 1)})
        print(f"  {name}: {result}", flush=True)
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()

    packed = register_packed_attention()
    row(
        "LoRA packed, packed SDPA",
        lambda: train_throughput(
            build_model(shape, device, dtype, packed), samples, steps, args.per_step, device
        ),
    )
    row(
        "packed loss == unpacked",
        lambda: packed_equals_unpacked(
            build_model(shape, device, dtype, "sdpa"), samples, device, 1e-2 if not dry else 1e-5
        ),
    )
    row(
        "LoRA packed, flash_attention_2",
        lambda: train_throughput(
            build_model(shape, device, dtype, "flash_attention_2"),
            samples,
            steps,
            args.per_step,
            device,
        ),
        None
        if importable("flash_attn") and not dry
        else "flash_attn not importable"
        if not dry
        else "dry run",
    )
    if importable("bitsandbytes") and not dry:
        from sftforge.models.adapters import qlora_quantization_config

        row(
            "QLoRA NF4 packed, packed SDPA",
            lambda: train_throughput(
                build_model(shape, device, dtype, packed, qlora_quantization_config()),
                samples,
                steps,
                args.per_step,
                device,
            ),
        )
    else:
        row("QLoRA NF4", None, "dry run" if dry else "bitsandbytes not importable")
    if importable("deepspeed") and not dry:
        with tempfile.TemporaryDirectory() as tmp:
            row("ZeRO-2 accelerate launch (1 GPU)", lambda: zero2_launch(device, Path(tmp)))
    else:
        row("ZeRO-2 accelerate launch", None, "dry run" if dry else "deepspeed not importable")

    print("\n| check | trained tok/s | peak GiB | result |\n|---|---|---|---|")
    for r in rows:
        tok = f"{r['trained_tok_s']:,.0f}" if "trained_tok_s" in r else ""
        peak = f"{r['peak_gib']:.2f}" if isinstance(r.get("peak_gib"), float) and r[
            "peak_gib"] == r["peak_gib"] else ""  # fmt: skip
        result = r.get("result") or r.get("error") or (
            ("ok" if r["ok"] else "FAIL") + (f" (rel diff {r['rel_diff']:.2e})"
                                             if "rel_diff" in r else "")
            if "ok" in r else "ok")  # fmt: skip
        print(f"| {r['check']} | {tok} | {peak} | {result} |")
    if args.json:
        args.json.write_text(json.dumps({"device": gpu, "rows": rows}, indent=2))
    failed = [r for r in rows if "error" in r or r.get("ok") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
