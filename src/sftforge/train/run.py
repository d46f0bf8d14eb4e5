"""One training run, top to bottom:

config -> model dir + tokenizer -> template (from the config, or the tokenizer's own for
``hf``; never guessed from a model name) -> dataset checked against its manifest -> what
the output folder holds (new | unfinished: resume if the config matches | finished: refuse
unless --overwrite / --resume) -> encode train / validation -> supervision audit
(refuses on a defect) -> model (full | LoRA | QLoRA) -> Trainer (packed batches, masked
loss, atomic checkpoints, resume) -> evaluate before and after -> the model directory.

Launch with ``sftforge train`` for one process, or ``accelerate launch -m sftforge train``
(``configs/accelerate/*.yaml``) for several processes, DeepSpeed or FSDP.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sftforge.encode.collate import make_collator
from sftforge.encode.encoder import Encoded, Encoder
from sftforge.errors import SftForgeError
from sftforge.fsutil import TMP_PREFIX, OutputPathError, atomic_write_text, refuse_input_as_output
from sftforge.lockfile import hold_lock
from sftforge.models.adapters import (
    apply_lora,
    lora_targets,
    prepare_for_kbit,
    qlora_quantization_config,
)
from sftforge.models.load import load_causal_lm, resolve_model_dir
from sftforge.templates import get_template, load_template
from sftforge.templates.base import ChatTemplate
from sftforge.tokenizer import DEFAULT_ALIASES, load_tokenizer
from sftforge.train import artifacts
from sftforge.train.audit import audit_supervision, enforce
from sftforge.train.config import (
    RESUME_SAFE_KEYS,
    RunContext,
    TrainConfig,
    config_changes,
    describe_changes,
)
from sftforge.train.data import DatasetFiles, as_features, dataset_files, encode_split
from sftforge.train.trainer import (
    MetricsLogger,
    SFTTrainer,
    TokenCounter,
    TokensPerSecondProgress,
    checkpoint_loss_sum,
    checkpoint_step,
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


class RunStateError(SftForgeError, RuntimeError):
    """The output folder holds a run this command must not silently reuse or extend."""


class ConfigChangedError(SftForgeError, ValueError):
    """Resuming would continue a run with settings other than those it was trained with."""


#: In ``checkpoints/``: the config the checkpoints were trained with, and the validation
#: metrics before training (so a resumed run reports the whole run).
RECORD_FILE = artifacts.CONFIG_FILE
BEFORE_FILE = "metrics_before.json"


def run_state(out: Path) -> str:
    """``finished`` (run.json, written last), ``unfinished`` (a checkpoint, no run.json) or
    ``new``."""
    if (out / artifacts.RUN_FILE).is_file():
        return "finished"
    if last_checkpoint(out / CHECKPOINTS_DIR) is not None:
        return "unfinished"
    return "new"


def barrier() -> None:
    """Wait for every process (several processes only)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def model_source(config: TrainConfig) -> str | Path:
    """``model.path``: an alias as it is, a path relative to the config file's folder."""
    path = config.model.path
    return path if path.lower() in DEFAULT_ALIASES else config.resolve(path)


def run_record(
    config: TrainConfig, out: Path, files: DatasetFiles, weights: dict[str, Any]
) -> dict[str, Any]:
    """The config as checkpoints record it: paths resolved, plus what the paths held (the
    dataset's manifest hash, the base weights' digest), so a changed file counts too."""
    data = config.to_dict()
    data.pop("base_dir", None)
    data["output_dir"] = str(out)
    data["data"]["path"] = str(config.resolve(config.data.path))
    if config.data.validation:
        data["data"]["validation"] = str(config.resolve(config.data.validation))
    data["model"]["path"] = str(model_source(config))
    if config.model.template.endswith(".json"):
        data["model"]["template"] = str(config.resolve(config.model.template))
    data["fingerprints"] = {
        "dataset_sha256": files.manifest_sha256,
        "base_model_weights_sha256": weights.get("sha256"),
    }
    return data


def run_training(
    config: TrainConfig,
    *,
    output_dir: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> TrainResult:
    """Train as configured; returns where the model directory is and the metrics.

    Into a new folder: a fresh run. Into an unfinished one (checkpoints, no run.json): it
    resumes from the last complete checkpoint (``train.resume``), provided the config
    matches the one its checkpoints recorded except for :data:`RESUME_SAFE_KEYS`. Into a
    finished one (run.json): it refuses, unless ``overwrite`` (start over; the previous run
    is set aside and removed when the new one finishes) or ``resume`` (continue from its
    last checkpoint, e.g. with more epochs).
    """
    import torch

    if overwrite and resume:
        raise RunStateError("--overwrite starts a run over, --resume continues it: choose one")
    from sftforge.train.preflight import preflight

    preflight(config)  # seconds, before a minute of model loading: every problem at once
    out = Path(output_dir).resolve() if output_dir else config.resolve(config.output_dir)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out}: is a file; the model directory must be a folder")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx = RunContext.create(config, int(os.environ.get("WORLD_SIZE", "1")), device)

    model_dir = resolve_model_dir(model_source(config))
    tokenizer = load_tokenizer(model_dir)
    template = resolve_template(config.model.template, tokenizer, config)
    say(
        f"model {config.model.path} ({model_dir}); template {template.name}; method "
        f"{config.train.method}; {ctx.world_size} process(es) on {device}, {ctx.precision}"
    )
    # A built dataset is checked against its manifest before anything is written.
    files = dataset_files(
        config.resolve(config.data.path),
        config.resolve(config.data.validation) if config.data.validation else None,
        verify=config.data.verify,
    )
    if files.verification is not None and not files.verification.verified:
        say(f"dataset not verified: {files.verification.skipped_reason}")
    weights = artifacts.weights_digest(model_dir)
    record = run_record(config, out, files, weights)

    lock = hold_lock(out, "training") if is_main_process() else contextlib.nullcontext()
    with lock:
        extending = run_state(out) == "finished"
        action, resume_from = decide(out, config, record, overwrite=overwrite, resume=resume)
        barrier()  # every process decided before the folder changes
        if action == "overwrite" and is_main_process():
            refuse_input_as_output([files.train, files.validation, model_dir], [out])
            set_aside = set_aside_previous(out)
            say(f"starting {out} over: the previous run is set aside in {set_aside.name} and "
                "removed when this one finishes")  # fmt: skip
        barrier()
        out.mkdir(parents=True, exist_ok=True)
        return _train(
            config,
            ctx,
            out,
            model_dir,
            tokenizer,
            template,
            files,
            weights,
            record,
            resume_from,
            extending=extending and resume_from is not None,
        )


def decide(
    out: Path, config: TrainConfig, record: dict[str, Any], *, overwrite: bool, resume: bool
) -> tuple[str, str | None]:
    """``(fresh | overwrite | resume, checkpoint)`` for this output, or a refusal."""
    state = run_state(out)
    checkpoint = last_checkpoint(out / CHECKPOINTS_DIR)
    if state == "new":
        if resume:
            raise RunStateError(f"{out}: --resume, but there is no checkpoint here to resume")
        return ("overwrite" if overwrite and out.exists() and any(out.iterdir()) else "fresh"), None
    if overwrite:
        return "overwrite", None
    if state == "finished":
        if not resume:
            info = artifacts.read_run_info(out)
            raise RunStateError(
                f"{out}: holds a finished run ({artifacts.RUN_FILE}, "
                f"{info.get('global_step', '?')} steps); nothing was changed. Choose:\n"
                "  --output DIR   train a new run in another folder\n"
                "  --overwrite    start this run over (the finished one is set aside and "
                "removed when the new one finishes)\n"
                "  --resume       continue it from its last checkpoint, e.g. with more "
                "train.epochs or train.max_steps"
            )
        if checkpoint is None:
            raise RunStateError(
                f"{out}: --resume, but this finished run kept no checkpoint to continue from; "
                "--overwrite to start over, or --output DIR"
            )
    elif not (resume or config.train.resume):
        return "overwrite", None  # train.resume=false: an unfinished run is started over
    check_config(out, record)
    return "resume", checkpoint


def check_config(out: Path, record: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """Refuse a resume whose config differs from the checkpoints' record (outside the safe
    keys); returns the safe changes."""
    recorded = artifacts.read_config(out / CHECKPOINTS_DIR / RECORD_FILE)
    choices = (
        "Choose: put the recorded values back to resume it; --overwrite to start it over; "
        "or --output DIR for a new run."
    )
    if recorded is None:
        raise ConfigChangedError(
            f"{out}: its checkpoints do not record the config they were trained with "
            f"({CHECKPOINTS_DIR}/{RECORD_FILE} is missing), so resuming could mix two runs. "
            + choices
        )
    unsafe, allowed = config_changes(recorded, record)
    if unsafe:
        lines = "\n".join(f"  {key}: {old!r} -> {new!r}" for key, old, new in unsafe)
        raise ConfigChangedError(
            f"{out}: this run's checkpoints were trained with another config; resuming "
            f"would mix two runs. Differing settings (recorded -> now):\n{lines}\n{choices} "
            f"Only these may change on resume: {', '.join(sorted(RESUME_SAFE_KEYS))}."
        )
    return allowed


def set_aside_previous(out: Path) -> Path:
    """Move a previous run out of the way in one rename (a hidden sibling), so nothing is
    left half-deleted for a later resume to trip on; removed when the new run finishes."""
    import tempfile

    aside = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{out.name}-previous-", dir=out.parent))
    os.rmdir(aside)
    os.replace(out, aside)
    out.mkdir()
    return aside


def remove_set_aside(out: Path) -> None:
    for old in out.parent.glob(f"{TMP_PREFIX}{out.name}-previous-*"):
        shutil.rmtree(old, ignore_errors=True)


def trim_metrics(path: Path, step: int) -> None:
    """Drop what was logged after ``step`` (a resumed run logs those steps again), and
    the previous session's end-of-training summary."""
    if not path.is_file():
        return
    from sftforge.train.plots import read_metrics

    kept = [
        r
        for r in read_metrics(path)
        if r.get("step", 0) < step or (r.get("step") == step and "train_runtime" not in r)
    ]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def planned_steps(trainer: SFTTrainer) -> int | None:
    """The optimizer steps this config trains in all (Trainer's own computation)."""
    try:
        values = trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())
    except Exception:  # only a pre-check; training computes it again
        return None
    return int(values[-1])


def _train(
    config: TrainConfig,
    ctx: RunContext,
    out: Path,
    model_dir: Path,
    tokenizer: Any,
    template: ChatTemplate,
    files: DatasetFiles,
    weights: dict[str, Any],
    record: dict[str, Any],
    resume: str | None,
    *,
    extending: bool = False,
) -> TrainResult:
    checkpoints = out / CHECKPOINTS_DIR
    # -- data ------------------------------------------------------------------------------
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
    trainer = make_trainer(config, ctx, model, tokenizer, train_samples, val_samples, out)
    counter = trainer.token_counter

    before: dict[str, float] = {}
    if resume:
        step = checkpoint_step(resume)
        # A finished run continued with no more steps would "train" 0 steps and report
        # nothing; an unfinished one killed after its last checkpoint just completes.
        total = planned_steps(trainer) if extending else None
        if total is not None and step >= total:
            raise RunStateError(
                f"{out}: its last checkpoint is at step {step}, and this config trains "
                f"{total} steps in all: nothing is left to train. Raise train.epochs or "
                "train.max_steps to extend it, or --overwrite to start over."
            )
        changed = check_config(out, record)  # the safe changes, recorded from now on
        if is_main_process():
            if changed:
                artifacts.write_config(checkpoints, record)
                say(f"resuming with changed settings: {describe_changes(changed)}")
            trim_metrics(metrics_path, step)
        trainer.loss_sum_before = checkpoint_loss_sum(resume)
        before_path = checkpoints / BEFORE_FILE
        if before_path.is_file():
            before = json.loads(before_path.read_text(encoding="utf-8"))
        say(f"resuming from {resume}")
    else:
        if is_main_process():
            if metrics_path.exists():
                metrics_path.unlink()  # a fresh run: start the metrics file over
            (checkpoints / BEFORE_FILE).unlink(missing_ok=True)
            artifacts.write_config(checkpoints, record)
        if val_samples:
            before = trainer.evaluate(metric_key_prefix="eval")
            say(
                f"validation before training: loss {before['eval_loss']:.4f}, "
                f"ppl {before['eval_ppl']:.2f} ({before['eval_tokens']} trained tokens)"
            )
        if is_main_process():
            artifacts.write_json(checkpoints / BEFORE_FILE, before)
    barrier()
    result = trainer.train(resume_from_checkpoint=resume)
    after = final_evaluation(trainer) if val_samples else {}
    if after:
        say(
            f"validation after training: loss {after['eval_loss']:.4f}, ppl {after['eval_ppl']:.2f}"
        )
    # Over every step of the run, resumed or not (Trainer's own covers this process only).
    train_loss = trainer.loss_sum(final=True) / max(result.global_step, 1)

    # -- the model directory ---------------------------------------------------------------
    save_model_files(trainer, out, base_reference=config.model.path)
    if is_main_process():
        artifacts.save_tokenizer_and_template(out, tokenizer, template)
        if config.train.method == "full":
            artifacts.set_generation_stops(trainer.model, tokenizer, template)
            artifacts.publish_files(
                out, lambda tmp: trainer.model.generation_config.save_pretrained(str(tmp))
            )
        artifacts.write_config(out, config.to_dict())
        if metrics_path.is_file():
            from sftforge.train.plots import plot_loss_curve

            plot_loss_curve(metrics_path, out / artifacts.LOSS_PLOT)
        info = artifacts.run_info(
            name=config.name,
            method=config.train.method,
            base_model=config.model.path,
            base_model_dir=str(model_dir),
            base_model_weights=weights,
            template=template,
            tokenizer=tokenizer,
            dataset={
                "train": str(files.train),
                "validation": str(files.validation) if files.validation else None,
                "manifest_sha256": files.manifest_sha256,
                **files.record(),
                "train_samples": len(train_samples),
                "validation_samples": len(val_samples),
            },
            context=asdict(ctx),
            metrics={
                "before": before,
                "after": after,
                "train_loss": train_loss,
                "trained_tokens_per_s": round(counter.trained_per_second(), 2),
            },
        )
        # The base relative to this folder: found again when both move together.
        info["base_model_relative"] = os.path.relpath(model_dir, out)
        info["global_step"] = result.global_step
        info["resumed_from"] = resume
        artifacts.write_run_info(out, info)  # last: its presence marks a finished run
        remove_set_aside(out)
    return TrainResult(
        out, before, after, train_loss, result.global_step, counter.trained_per_second()
    )


def save_model_files(trainer: SFTTrainer, out: Path, *, base_reference: str) -> None:
    """``trainer.save_model`` into a staging folder (every process: sharded saves are
    collective), then each file renamed into ``out``. A LoRA adapter's
    ``adapter_config.json`` names its base portably (as the config gave it, e.g.
    ``smollm2``), not by this machine's cache path; run.json has the weights' digest."""
    staging = out / f"{TMP_PREFIX}model"
    if is_main_process():
        shutil.rmtree(staging, ignore_errors=True)
    barrier()
    trainer.save_model(str(staging))
    barrier()
    if not is_main_process():
        return
    adapter_config = staging / "adapter_config.json"
    if adapter_config.is_file():
        data = json.loads(adapter_config.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = base_reference
        adapter_config.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    artifacts.move_files(staging, out)


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
