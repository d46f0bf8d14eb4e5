"""Training configuration: what ``sftforge train CONFIG.yaml [key=value ...]`` reads.

Defaults follow known-good SFT recipes: learning rate 2e-5 for full fine-tuning (the
1e-5..5e-5 range), 2e-4 for LoRA / QLoRA (adapters start at zero and need a larger step; the
QLoRA paper and most LoRA recipes use 1e-4..3e-4), 2 epochs (more than 3 tends to overfit
small SFT sets; a warning says so), an effective batch of 16 reached with gradient
accumulation, cosine schedule with 3% warm-up, gradient checkpointing on, bf16 mixed
precision where the hardware has it (GPUs, and CPUs with AVX512-BF16 / AMX).

Derived values (world size, gradient accumulation steps, resolved precision and learning
rate) live in :class:`RunContext`, never written back into the config.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sftforge.configio import (
    ConfigError,
    build,
    parse_overrides,
    read_yaml_mapping,
    set_dotted,
    to_plain,
)

Method = Literal["full", "lora", "qlora"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]

DEFAULT_LR = {"full": 2e-5, "lora": 2e-4, "qlora": 2e-4}


class EpochWarning(UserWarning):
    """More than 3 epochs: SFT sets usually overfit past that."""


@dataclass(frozen=True)
class ModelSpec:
    #: ``smollm2`` (the embedded default), a Hugging Face model directory, or a ``.gguf`` file.
    path: str = "smollm2"
    #: A built-in template name, ``hf`` (the tokenizer's own chat template) or a template.json.
    #: Never guessed from the model name.
    template: str = "hf"
    #: ``auto``: sftforge's packed SDPA (per-sample causal attention in packed rows, plain
    #: SDPA otherwise); or any transformers name: sdpa, eager, flash_attention_2.
    attn_implementation: str = "auto"


@dataclass(frozen=True)
class DataSpec:
    #: A dataset directory written by ``sftforge data build`` (train / validation splits) or
    #: a unified JSONL file.
    path: str
    #: Validation file; defaults to the dataset directory's validation split when it has one.
    validation: str | None = None
    #: Longest sample in tokens; longer ones lose their oldest turns (never an answer's end).
    max_length: int = 2048
    #: What is trained: every assistant turn, the last one, or every token.
    policy: Literal["all_assistant", "last_assistant", "all_tokens"] = "all_assistant"
    #: Pack each micro-batch into one row: position ids restart per sample and attention
    #: stays inside each sample (no padding, no cross-contamination).
    packing: bool = True
    #: Use at most this many training samples (first ones in file order).
    max_samples: int | None = None
    #: Use at most this many validation samples.
    max_val_samples: int | None = None
    #: Check a built dataset against its manifest.json (sizes, rows, SHA-256) before
    #: training; ``false`` (``--no-verify``) trains on it anyway and run.json records that.
    verify: bool = True


@dataclass(frozen=True)
class LoraSpec:
    #: LoRA rank.
    r: int = 16
    #: LoRA scaling numerator (the update is scaled by alpha / r).
    alpha: int = 32
    #: Dropout on the LoRA input.
    dropout: float = 0.05
    #: ``auto`` picks every attention and MLP projection of the architecture.
    target_modules: tuple[str, ...] | str = "auto"


@dataclass(frozen=True)
class TrainSpec:
    #: ``full`` fine-tuning, ``lora`` adapters, or ``qlora`` (4-bit base; CUDA only).
    method: Method = "lora"
    #: Default: 2e-5 for full fine-tuning, 2e-4 for LoRA / QLoRA.
    learning_rate: float | None = None
    #: Passes over the training data (a warning above 3: forgetting, overfitting).
    epochs: float = 2.0
    #: Stop after this many optimizer steps (-1: run the epochs).
    max_steps: int = -1
    #: Samples per device per micro-batch.
    batch_size: int = 4
    #: Samples per optimizer step, over devices and gradient accumulation.
    effective_batch: int = 16
    #: A transformers scheduler name (cosine, linear, constant_with_warmup, ...).
    lr_scheduler: str = "cosine"
    #: Warm-up as a fraction of the total steps.
    warmup_ratio: float = 0.03
    #: AdamW weight decay.
    weight_decay: float = 0.0
    #: Gradient clipping norm.
    max_grad_norm: float = 1.0
    #: Recompute activations in the backward pass (less memory, more time).
    gradient_checkpointing: bool = True
    #: ``auto``: bf16 mixed precision where the hardware has it (GPUs, CPUs with AMX or
    #: AVX512-BF16), else fp32.
    precision: Precision = "auto"
    #: Seeds LoRA initialisation, data order and dropout.
    seed: int = 42
    #: Log the training loss every this many steps (metrics.jsonl).
    logging_steps: int = 5
    #: Evaluate every this many steps (default: at the end of each epoch).
    eval_steps: int | None = None
    #: Write a checkpoint every this many steps.
    save_steps: int = 50
    #: Checkpoints kept (the oldest are removed).
    save_total_limit: int = 2
    #: Resume an unfinished run (checkpoints, no run.json) from its last complete
    #: checkpoint; false starts it over. A finished run is never resumed silently: see
    #: ``sftforge train --resume / --overwrite``.
    resume: bool = True


@dataclass(frozen=True)
class AuditSpec:
    #: Start even when the supervision audit finds a defect (it is still saved and printed).
    allow_defects: bool = False
    #: Decoded trained spans shown per check in the audit.
    examples: int = 3


@dataclass(frozen=True)
class TrainConfig:
    data: DataSpec
    #: The run's name (run.json, reports).
    name: str = "sft"
    #: The model directory, relative to the config file like data paths (``--output``
    #: overrides it).
    output_dir: str = "runs/sft"
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    lora: LoraSpec = field(default_factory=LoraSpec)
    audit: AuditSpec = field(default_factory=AuditSpec)
    base_dir: str = "."

    def resolve(self, path: str) -> Path:
        """A config path, relative to the config file's folder (aliases pass through)."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)


def load_train_config(
    path: str | Path, overrides: dict[str, Any] | list[str] | None = None
) -> TrainConfig:
    """Read, override (``train.epochs=1``), validate and resolve a training config."""
    path = Path(path)
    data = read_yaml_mapping(path)
    data.setdefault("name", path.stem)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    data["base_dir"] = str(path.resolve().parent)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    config = build(TrainConfig, data)
    _check(config)
    return config


def _check(config: TrainConfig) -> None:
    t = config.train
    if t.learning_rate is not None and not 0 < t.learning_rate < 1:
        raise ConfigError("train.learning_rate: must be in (0, 1)")
    if t.epochs <= 0 and t.max_steps <= 0:
        raise ConfigError("train.epochs: must be > 0 (or set train.max_steps)")
    if t.batch_size < 1:
        raise ConfigError("train.batch_size: must be at least 1")
    if t.effective_batch < t.batch_size:
        raise ConfigError("train.effective_batch: must be at least train.batch_size")
    if not 0 <= t.warmup_ratio < 1:
        raise ConfigError("train.warmup_ratio: must be in [0, 1)")
    if config.data.max_length < 16:
        raise ConfigError("data.max_length: must be at least 16")
    if config.lora.r < 1:
        raise ConfigError("lora.r: must be at least 1")
    if t.epochs > 3:
        warnings.warn(
            f"train.epochs={t.epochs:g}: SFT sets usually overfit beyond 3 epochs; "
            "prefer more (or more diverse) data",
            EpochWarning,
            stacklevel=3,
        )


#: The only settings a resumed run may change from those its checkpoints were written with
#: (``checkpoints/train_config.yaml``): how long to train (to extend a run), how often to
#: log, evaluate and save, and labels. Anything else (learning rate, data, model, template,
#: method, lengths, LoRA, seed, ...) would silently mix two runs, so resuming stops and
#: names the differing keys. docs/training.md lists the same keys.
RESUME_SAFE_KEYS = frozenset(
    {
        "name",
        "output_dir",
        "train.epochs",
        "train.max_steps",
        "train.logging_steps",
        "train.eval_steps",
        "train.save_steps",
        "train.save_total_limit",
        "train.resume",
        "data.verify",
        "audit.examples",
        "audit.allow_defects",
    }
)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 2}}`` -> ``{"train.epochs": 2}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def config_changes(
    recorded: dict[str, Any], current: dict[str, Any], safe: frozenset[str] = RESUME_SAFE_KEYS
) -> tuple[list[tuple[str, Any, Any]], list[tuple[str, Any, Any]]]:
    """Keys whose values differ, as ``(key, old, new)``: (unsafe ones, safe ones)."""
    old, new = flatten(recorded), flatten(current)
    unsafe, allowed = [], []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b or (isinstance(a, (list, tuple)) and list(a) == list(b or ())):
            continue
        (allowed if key in safe else unsafe).append((key, a, b))
    return unsafe, allowed


def describe_changes(changes: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changes)


@dataclass(frozen=True)
class RunContext:
    """Values derived from the config and the machine, kept apart from the config."""

    world_size: int
    gradient_accumulation: int
    learning_rate: float
    precision: str  # fp32 | bf16 | fp16
    device: str

    @classmethod
    def create(cls, config: TrainConfig, world_size: int, device: str) -> RunContext:
        t = config.train
        per_step = t.batch_size * world_size
        accumulation = max(1, round(t.effective_batch / per_step))
        if accumulation * per_step != t.effective_batch:
            warnings.warn(
                f"train.effective_batch={t.effective_batch} is not a multiple of batch_size x "
                f"devices ({per_step}); using {accumulation * per_step}",
                stacklevel=2,
            )
        lr = t.learning_rate if t.learning_rate is not None else DEFAULT_LR[t.method]
        return cls(world_size, accumulation, lr, resolve_precision(t.precision, device), device)


def resolve_precision(precision: str, device: str) -> str:
    """``auto``: bf16 mixed precision where the hardware has it (GPUs with bf16; CPUs with
    native bf16 instructions, AVX512-BF16 or AMX, where it runs about twice as fast as
    fp32), else fp32. Master weights and the loss stay fp32 either way."""
    if precision != "auto":
        return precision
    import torch

    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def cpu_has_bf16() -> bool:
    """Native bf16 matrix instructions on this CPU (oneDNN's own check)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
