"""``transformers.Trainer`` with the three things SFT needs changed, nothing more:

* the loss: :func:`~sftforge.train.loss.masked_nll`, normalised by the number of trained
  tokens in the whole optimizer step (over accumulation and devices), so a packed batch, a
  padded batch, one process or two all give the same gradients;
* evaluation: token-weighted validation loss and perplexity with the same masks;
* checkpoints: written to a staging folder and renamed into place, so a crash mid-save
  never leaves a checkpoint that resuming would pick up half-written.

Accelerate, DeepSpeed and FSDP come with Trainer, unchanged.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from sftforge.train.loss import masked_nll

STAGING_DIR = ".staging"
#: Written into every checkpoint: what sftforge needs to report a resumed run as a whole.
STATE_FILE = "sftforge_state.json"


class TokenCounter:
    """Trained and total tokens seen by this process since training began."""

    def __init__(self) -> None:
        self.trained = 0
        self.total = 0
        self.started = time.perf_counter()
        self.stopped: float | None = None

    def reset(self) -> None:
        self.trained = self.total = 0
        self.started = time.perf_counter()
        self.stopped = None

    def stop(self) -> None:
        """Freeze the rate at the end of training (saving and evaluation don't count)."""
        self.stopped = time.perf_counter()

    def add(self, trained: int, total: int) -> None:
        self.trained += trained
        self.total += total

    def trained_per_second(self) -> float:
        elapsed = (self.stopped or time.perf_counter()) - self.started
        return self.trained / elapsed if elapsed > 0 else 0.0


class SFTTrainer(Trainer):
    # compute_loss divides by the trained-token count of the whole optimizer step.
    loss_is_scaled_for_ga = True
    #: Compute logits only where the next token is trained (the benchmark turns it off to
    #: measure the saving; results are identical either way).
    skip_masked_logits = True

    def __init__(self, *args: Any, token_counter: TokenCounter | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Trainer counts trained tokens per optimizer step (``num_items_in_batch``) only for
        # models it believes take loss kwargs; this loss always wants the count.
        self.model_accepts_loss_kwargs = True
        self.token_counter = token_counter or TokenCounter()
        self._staging: str | None = None
        #: Sum of the per-step train losses before this process started (a resumed run).
        self.loss_sum_before = 0.0

    def loss_sum(self, *, final: bool = False) -> float:
        """Sum of per-step train losses over the whole run so far (every step once)."""
        total = float(getattr(self, "_total_loss_scalar", 0.0))
        tr_loss = getattr(self, "_tr_loss", None)
        if not final and tr_loss is not None:  # steps not yet drained by a log
            total += float(tr_loss.item()) if hasattr(tr_loss, "item") else float(tr_loss)
        return self.loss_sum_before + total

    # -- loss ------------------------------------------------------------------------------
    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        nll, count = masked_nll(model, inputs, skip_masked_logits=self.skip_masked_logits)
        if model.training:
            self.token_counter.add(count, int(inputs["input_ids"].numel()))
        if num_items_in_batch is None:
            loss = nll / max(count, 1) / self.current_gradient_accumulation_steps
        else:
            loss = nll / num_items_in_batch
            if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
                # num_items_in_batch is the global count; DDP averages gradients over ranks.
                loss = loss * self.accelerator.num_processes
        return (loss, None) if return_outputs else loss

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Token-weighted loss and perplexity over trained tokens of the eval split."""
        dataloader = self.get_eval_dataloader(eval_dataset)
        model = self.model_wrapped
        was_training = model.training
        model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.args.device)
        started = time.perf_counter()
        with torch.no_grad():
            for batch in dataloader:
                batch = self._prepare_inputs(batch)
                nll, count = masked_nll(model, batch)
                total += torch.tensor([float(nll), count], dtype=torch.float64, device=total.device)
        total = self.accelerator.reduce(total, reduction="sum")
        if was_training:
            model.train()
        nll_sum, count = float(total[0]), int(total[1])
        loss = nll_sum / count if count else float("nan")
        metrics = {
            f"{metric_key_prefix}_loss": loss,
            f"{metric_key_prefix}_ppl": math.exp(min(loss, 50.0)) if count else float("nan"),
            f"{metric_key_prefix}_tokens": count,
            f"{metric_key_prefix}_runtime": round(time.perf_counter() - started, 3),
        }
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(
            self.args, self.state, self.control, metrics
        )
        return metrics

    # -- atomic checkpoints ----------------------------------------------------------------
    def _get_output_dir(self, trial: Any) -> str:
        return self._staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        final_root = super()._get_output_dir(trial)
        staging = os.path.join(final_root, STAGING_DIR)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save:
            shutil.rmtree(os.path.join(staging, name), ignore_errors=True)
        self._staging = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = None
        self.accelerator.wait_for_everyone()  # every rank has written its RNG state
        if self.args.should_save:
            state = {"global_step": self.state.global_step, "train_loss_sum": self.loss_sum()}
            with open(os.path.join(staging, name, STATE_FILE), "w", encoding="utf-8") as fh:
                json.dump(state, fh)
            target = os.path.join(final_root, name)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(os.path.join(staging, name), target)
            with contextlib.suppress(OSError):
                os.rmdir(staging)  # only when empty
            rotate_checkpoints(
                output_dir=final_root,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        self.accelerator.wait_for_everyone()


def last_checkpoint(checkpoints_dir: str | Path) -> str | None:
    """The newest complete checkpoint (staged ones are never complete), or None."""
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return None
    found = []
    prefix = f"{PREFIX_CHECKPOINT_DIR}-"
    for child in root.glob(f"{prefix}*"):
        step = child.name[len(prefix) :]
        if step.isdigit() and (child / "trainer_state.json").is_file():
            found.append((int(step), child))
    return str(max(found)[1]) if found else None


def checkpoint_step(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[1])


def checkpoint_loss_sum(checkpoint: str | Path) -> float:
    """Sum of per-step train losses up to a checkpoint: recorded by sftforge, or (older
    checkpoints) rebuilt from the logged losses in its trainer state."""
    path = Path(checkpoint)
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        return float(json.loads((path / STATE_FILE).read_text())["train_loss_sum"])
    history = json.loads((path / "trainer_state.json").read_text()).get("log_history", [])
    total, last = 0.0, 0
    for record in sorted((r for r in history if "loss" in r), key=lambda r: r["step"]):
        total += record["loss"] * (record["step"] - last)
        last = record["step"]
    return total


class TokensPerSecondProgress(ProgressCallback):
    """Trainer's progress bar (steps, ETA) with trained tokens/s and the latest loss."""

    def __init__(self, counter: TokenCounter) -> None:
        super().__init__()
        self.counter = counter
        self.last_loss: float | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_step_end(args, state, control, **kwargs)
        if state.is_world_process_zero and self.training_bar is not None:
            postfix = {"trained_tok/s": f"{self.counter.trained_per_second():.0f}"}
            if self.last_loss is not None:
                postfix["loss"] = f"{self.last_loss:.4f}"
            self.training_bar.set_postfix(postfix, refresh=False)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])
        shown_bar = state.is_world_process_zero and self.training_bar is not None
        if logs and shown_bar and any(k.startswith("eval_") for k in logs):
            shown = {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in logs.items()}
            self.training_bar.write(str(shown))


class MetricsLogger(TrainerCallback):
    """Every log line (train loss, learning rate, eval loss/ppl, tokens/s) as JSONL; the
    loss picture is redrawn after each evaluation and at the end."""

    def __init__(self, path: Path, counter: TokenCounter, plot_path: Path | None = None):
        self.path = path
        self.counter = counter
        self.plot_path = plot_path

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, **logs}
        if "loss" in logs:
            record["trained_tokens"] = self.counter.trained
            record["trained_tokens_per_s"] = round(self.counter.trained_per_second(), 2)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.counter.reset()  # tokens/s measures training, not the evaluation before it

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._plot(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.counter.stop()
        self._plot(state)

    def _plot(self, state: Any) -> None:
        if self.plot_path is not None and state.is_world_process_zero and self.path.is_file():
            from sftforge.train.plots import plot_loss_curve

            plot_loss_curve(self.path, self.plot_path)
