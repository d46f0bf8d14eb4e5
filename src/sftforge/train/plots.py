"""The loss curve picture saved with every run (train loss and validation loss / ppl)."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl; a line cut short by a kill is skipped."""
    records = []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return records


def plot_loss_curve(metrics_path: str | Path, out: str | Path) -> Path:
    """Train loss per logging step and validation loss per evaluation, on one axis."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; never open a window
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="#1f77b4")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss", color="#d62728")
        for step, loss in val:
            ax.annotate(
                f"ppl {2.718281828**loss:.1f}",
                (step, loss),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, 6),
            )
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats per trained token)")
    ax.set_title("training and validation loss")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    from sftforge.fsutil import atomic_path

    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=out.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return out
