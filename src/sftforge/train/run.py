"""One training run, top to bottom:

config -> model dir + tokenizer -> template (from the config, or the tokenizer's own for
``hf``; never guessed from a model name) -> encode train / validation -> supervision audit
(refuses on a defect) -> model (full | LoRA | QLoRA) -> Trainer (packed batches, masked
loss, atomic checkpoints, resume) -> evaluate before and after -> the model directory.

Launch with ``sftforge train`` for one process, or ``accelerate launch -m sftforge train``
(``configs/accelerate/*.yaml``) for several processes, DeepSpeed or FSDP.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sftforge.encode.collate import make_collator
from sftforge.encode.encoder import Encoded, Encoder
from sftforge.models.adapters import (
    apply_lora,
    lora_targets,
    prepare_for_kbit,
    qlora_quantization_config,
)
from sftforge.models.load import load_causal_lm, resolve_model_dir
from sftforge.templates import get_template, load_template
from sftforge.templates.base import ChatTemplate
from sftforge.tokenizer import load_tokenizer
from sftforge.train import artifacts
from sftforge.train.audit import audit_supervision, enforce
from sftforge.train.config import RunContext, TrainConfig
from sftforge.train.data import as_features, dataset_files, encode_split
from sftforge.train.trainer import (
    MetricsLogger,
    SFTTrainer,
    TokenCounter,
    TokensPerSecondProgress,
    last_checkpoint,
)

CHECKPOINTS_DIR = "checkpoints"


@dataclass
class TrainResult:
    output_dir: Path
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    train_loss: float | None
    global_step: int
    trained_tokens_per_s: float


def resolve_template(spec: str, tokenizer: Any, config: TrainConfig) -> ChatTemplate:
    """A built-in name, ``hf`` (the tokenizer's chat template) or a template.json path."""
    if spec.endswith(".json"):
        return load_template(config.resolve(spec))
    return get_template(spec, tokenizer=tokenizer)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def say(*args: Any) -> None:
    if is_main_process():
        print(*args, flush=True)


def run_training(config: TrainConfig, *, output_dir: str | Path | None = None) -> TrainResult:
    """Train as configured; returns where the model directory is and the metrics."""
    import torch

    out = Path(output_dir).resolve() if output_dir else config.resolve(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx = RunContext.create(config, int(os.environ.get("WORLD_SIZE", "1")), device)

    model_dir = resolve_model_dir(config.model.path)
    tokenizer = load_tokenizer(model_dir)
    template = resolve_template(config.model.template, tokenizer, config)
    say(
        f"model {config.model.path} ({model_dir}); template {template.name}; method "
        f"{config.train.method}; {ctx.world_size} process(es) on {device}, {ctx.precision}"
    )

    # -- data ------------------------------------------------------------------------------
    files = dataset_files(
        config.resolve(config.data.path),
        config.resolve(config.data.validation) if config.data.validation else None,
    )
    encoder = Encoder(
        template, tokenizer, max_length=config.data.max_length, policy=config.data.policy
    )
    train_samples, train_report = encode_split(encoder, files.train, config.data.max_samples)
    val_samples, val_report = (
        encode_split(encoder, files.validation, config.data.max_val_samples)
        if files.validation
        else ([], None)
    )
    if val_report is not None and not val_samples:
        say(
            f"warning: no validation sample fits data.max_length={config.data.max_length} "
            f"({val_report.summary().splitlines()[0]}); validation is skipped"
        )
    audit = audit_supervision(
        train_samples, train_report, tokenizer, examples=config.audit.examples
    )
    if is_main_process():
        audit.save(out / artifacts.AUDIT_FILE)
    say(audit.summary())
    enforce(audit, config.audit.allow_defects, str(out / artifacts.AUDIT_FILE))

    # -- model -----------------------------------------------------------------------------
    # Seed before building the model: LoRA's A matrices are initialised randomly, and
    # Trainer seeds only later (runs would differ, and a resumed run would not match).
    from transformers import set_seed

    set_seed(config.train.seed)
    model = build_model(config, model_dir, ctx)
    metrics_path = out / artifacts.METRICS_FILE
    resume = last_checkpoint(out / CHECKPOINTS_DIR) if config.train.resume else None
    if resume is None and is_main_process() and metrics_path.exists():
        metrics_path.unlink()  # a fresh run: start the metrics file over
    trainer = make_trainer(config, ctx, model, tokenizer, train_samples, val_samples, out)
    counter = trainer.token_counter

    before: dict[str, float] = {}
    if val_samples and resume is None:
        before = trainer.evaluate(metric_key_prefix="eval")
        say(
            f"validation before training: loss {before['eval_loss']:.4f}, "
            f"ppl {before['eval_ppl']:.2f} ({before['eval_tokens']} trained tokens)"
        )
    if resume:
        say(f"resuming from {resume}")
    result = trainer.train(resume_from_checkpoint=resume)
    after = final_evaluation(trainer) if val_samples else {}
    if after:
        say(
            f"validation after training: loss {after['eval_loss']:.4f}, ppl {after['eval_ppl']:.2f}"
        )

    # -- the model directory ---------------------------------------------------------------
    trainer.save_model(str(out))
    if is_main_process():
        artifacts.save_tokenizer_and_template(out, tokenizer, template)
        if config.train.method == "full":
            artifacts.set_generation_stops(trainer.model, tokenizer, template)
            trainer.model.generation_config.save_pretrained(str(out))
        artifacts.write_config(out, config.to_dict())
        info = artifacts.run_info(
            name=config.name,
            method=config.train.method,
            base_model=config.model.path,
            base_model_dir=str(model_dir),
            template=template,
            tokenizer=tokenizer,
            dataset={
                "train": str(files.train),
                "validation": str(files.validation) if files.validation else None,
                "manifest_sha256": files.manifest_sha256,
                "train_samples": len(train_samples),
                "validation_samples": len(val_samples),
            },
            context=asdict(ctx),
            metrics={
                "before": before,
                "after": after,
                "train_loss": result.training_loss,
                "trained_tokens_per_s": round(counter.trained_per_second(), 2),
            },
        )
        artifacts.write_run_info(out, info)
        if metrics_path.is_file():
            from sftforge.train.plots import plot_loss_curve

            plot_loss_curve(metrics_path, out / artifacts.LOSS_PLOT)
    return TrainResult(
        out, before, after, result.training_loss, result.global_step, counter.trained_per_second()
    )


def make_trainer(
    config: TrainConfig,
    ctx: RunContext,
    model: Any,
    tokenizer: Any,
    train_samples: list[Encoded],
    val_samples: list[Encoded],
    out: Path,
) -> SFTTrainer:
    """The Trainer for a run: collator, arguments, metrics file and progress bar."""
    from transformers.trainer_callback import ProgressCallback

    counter = TokenCounter()
    args = training_arguments(config, ctx, out / CHECKPOINTS_DIR, has_eval=bool(val_samples))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=as_features(train_samples),
        eval_dataset=as_features(val_samples) if val_samples else None,
        data_collator=make_collator(config.data.packing, tokenizer.pad_token_id),
        processing_class=tokenizer,
        token_counter=counter,
        callbacks=[MetricsLogger(out / artifacts.METRICS_FILE, counter, out / artifacts.LOSS_PLOT)],
    )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(TokensPerSecondProgress(counter))
    return trainer


def final_evaluation(trainer: SFTTrainer) -> dict[str, float]:
    """Validation metrics at the last step: reuse the scheduled evaluation if it just ran."""
    step = trainer.state.global_step
    for record in reversed(trainer.state.log_history):
        if "eval_loss" in record and record.get("step") == step:
            return {k: v for k, v in record.items() if k.startswith("eval_")}
    return trainer.evaluate(metric_key_prefix="eval")


def build_model(config: TrainConfig, model_dir: Path, ctx: RunContext) -> Any:
    """The trainable model for the configured method."""
    import torch

    method = config.train.method
    attn = config.model.attn_implementation
    if method == "qlora":
        quant = qlora_quantization_config()  # raises with the reason where it can't run
        model = load_causal_lm(
            model_dir,
            dtype=quant.bnb_4bit_compute_dtype,
            attn_implementation=attn,
            quantization_config=quant,
            device_map={"": int(os.environ.get("LOCAL_RANK", "0"))},
        )
        model = prepare_for_kbit(model, config.train.gradient_checkpointing)
    else:
        model = load_causal_lm(model_dir, dtype=torch.float32, attn_implementation=attn)
    model.config.use_cache = False  # the KV cache is for generation; training never reuses it
    if method in ("lora", "qlora"):
        lora = config.lora
        model = apply_lora(
            model,
            r=lora.r,
            alpha=lora.alpha,
            dropout=lora.dropout,
            targets=lora_targets(model, lora.target_modules),
        )
        if is_main_process():
            model.print_trainable_parameters()
    return model


def training_arguments(
    config: TrainConfig, ctx: RunContext, checkpoints: Path, *, has_eval: bool
) -> Any:
    from transformers import TrainingArguments

    t = config.train
    eval_strategy = "no"
    if has_eval:
        eval_strategy = "steps" if t.eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=ctx.gradient_accumulation,
        learning_rate=ctx.learning_rate,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=ctx.precision == "bf16",
        fp16=ctx.precision == "fp16",
        logging_steps=t.logging_steps,
        eval_strategy=eval_strategy,
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        report_to="none",
        remove_unused_columns=False,
        prediction_loss_only=True,
        use_cpu=ctx.device == "cpu",
        ddp_backend="gloo" if ctx.device == "cpu" and ctx.world_size > 1 else None,
        disable_tqdm=not is_main_process(),
    )
