"""The supervision audit: what the model will actually be trained on, checked before the
first step and saved with the run.

Most silent SFT failures are supervision failures: the end-of-turn token is masked (the
model never learns to stop; common where pad == EOS and padding is masked by token id),
BOS appears twice (the template writes it and the tokenizer adds another), every sample is
truncated to nothing, or no token is trained at all. The audit counts each of these over the
whole encoded dataset, shows a few decoded trained spans, and gives a verdict; training
refuses to start on a defect unless ``audit.allow_defects`` is set.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sftforge.encode.encoder import Encoded
from sftforge.encode.report import EncodeReport
from sftforge.errors import SftForgeError

#: Share of assistant turns whose end marker must be trained; below it the model will often
#: not stop. Turns whose end marker was cut by truncation are the usual, benign exception.
MIN_END_MARKER_SHARE = 0.9
#: Share of samples with a doubled BOS above which it is a template/tokenizer defect.
MAX_DOUBLE_BOS_SHARE = 0.01
#: Share of samples dropped (zero targets, too long) above which the data or max_length
#: is wrong for this run.
MAX_DROPPED_SHARE = 0.5


class SupervisionDefect(SftForgeError, RuntimeError):
    """The audit found a defect; the message lists them and how to override."""


@dataclass
class SupervisionAudit:
    samples_in: int
    samples_kept: int
    dropped: dict[str, int]
    truncated_samples: int
    tokens: int
    trained_tokens: int
    trained_fraction: float
    assistant_turns: int
    assistant_turns_trained: int
    end_markers_trained: int
    end_marker_share: float
    double_bos_samples: int
    pad_token: str | None
    eos_token: str | None
    pad_is_eos: bool
    eos_trained: int
    examples: list[dict[str, str]] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.defects

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": "ok" if self.ok else "defect"}

    def save(self, path: str | Path) -> Path:
        from sftforge.fsutil import atomic_write_text

        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n")
        return path

    def summary(self) -> str:
        lines = [
            f"supervision audit: {'OK' if self.ok else 'DEFECT'}",
            f"  samples: {self.samples_in} in, {self.samples_kept} kept, "
            f"dropped {self.dropped or 0}, truncated {self.truncated_samples}",
            f"  trained tokens: {self.trained_tokens} of {self.tokens} "
            f"({self.trained_fraction:.1%})",
            f"  assistant turns trained: {self.assistant_turns_trained} of "
            f"{self.assistant_turns}; end marker trained in {self.end_marker_share:.1%}",
            f"  double BOS: {self.double_bos_samples} samples; pad token {self.pad_token!r}"
            + (
                " == EOS (masked by label, not by id: EOS stays trained)" if self.pad_is_eos else ""
            ),
        ]
        for ex in self.examples:
            lines.append(f"  trained span: {ex['trained']!r}")
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  DEFECT: {d}" for d in self.defects]
        return "\n".join(lines)


def audit_supervision(
    samples: list[Encoded], report: EncodeReport, tokenizer: Any, *, examples: int = 3
) -> SupervisionAudit:
    """Audit kept samples (``samples``) against their encode report."""
    bos_id = tokenizer.bos_token_id
    eos_id = tokenizer.eos_token_id
    double_bos = 0
    eos_trained = 0
    shown: list[dict[str, str]] = []
    for enc in samples:
        ids = enc.input_ids
        if bos_id is not None and len(ids) >= 2 and ids[0] == bos_id and ids[1] == bos_id:
            double_bos += 1
        if eos_id is not None:
            eos_trained += sum(
                1 for t, lab in zip(ids, enc.labels, strict=True) if t == eos_id and lab == t
            )
        if len(shown) < examples and enc.spans:
            span = enc.spans[0]
            shown.append(
                {
                    "prompt_tail": tokenizer.decode(ids[max(0, span.start - 12) : span.start]),
                    "trained": tokenizer.decode(ids[span.start : span.end])[-300:],
                }
            )
    pad, eos = tokenizer.pad_token, tokenizer.eos_token
    end_share = (
        report.end_markers_trained / report.assistant_turns_trained
        if report.assistant_turns_trained
        else 0.0
    )
    audit = SupervisionAudit(
        samples_in=report.samples_in,
        samples_kept=report.samples_kept,
        dropped=dict(report.dropped),
        truncated_samples=report.truncated_samples,
        tokens=report.tokens,
        trained_tokens=report.trained_tokens,
        trained_fraction=round(report.trained_fraction, 6),
        assistant_turns=report.assistant_turns,
        assistant_turns_trained=report.assistant_turns_trained,
        end_markers_trained=report.end_markers_trained,
        end_marker_share=round(end_share, 6),
        double_bos_samples=double_bos,
        pad_token=pad,
        eos_token=eos,
        pad_is_eos=pad is not None and pad == eos,
        eos_trained=eos_trained,
        examples=shown,
    )
    _judge(audit)
    return audit


def _judge(a: SupervisionAudit) -> None:
    if a.samples_kept == 0 or a.trained_tokens == 0:
        a.defects.append(
            "no token is trained: every sample was dropped or fully masked (check the policy, "
            "the template's roles and data.max_length)"
        )
    if a.assistant_turns_trained and a.end_markers_trained == 0:
        a.defects.append(
            "no assistant turn has its end-of-turn marker trained: the model will not learn "
            "to stop (check the template's end_of_turn and the tokenizer's EOS)"
        )
    elif a.assistant_turns_trained and a.end_marker_share < MIN_END_MARKER_SHARE:
        a.warnings.append(
            f"only {a.end_marker_share:.1%} of trained turns include their end marker "
            "(truncation cuts it); raise data.max_length"
        )
    if a.samples_kept and a.double_bos_samples / a.samples_kept > MAX_DOUBLE_BOS_SHARE:
        a.defects.append(
            f"{a.double_bos_samples} samples start with BOS twice: the template writes BOS and "
            "the tokenizer adds another; use a template whose prefix matches the tokenizer"
        )
    dropped = sum(a.dropped.values())
    if a.samples_in and dropped / a.samples_in > MAX_DROPPED_SHARE:
        a.defects.append(
            f"{dropped} of {a.samples_in} samples dropped ({a.dropped}); raise data.max_length "
            "or fix the data"
        )
    elif dropped:
        a.warnings.append(f"{dropped} samples dropped: {a.dropped}")
    if a.pad_is_eos:
        a.warnings.append(
            "pad token == EOS: harmless here (padding is masked by position, not by token id, "
            f"and {a.eos_trained} EOS tokens are trained), but other toolkits would mask EOS"
        )


def enforce(audit: SupervisionAudit, allow_defects: bool, where: str) -> None:
    """Raise on a defect unless explicitly allowed."""
    if audit.ok:
        return
    if allow_defects:
        print(f"audit.allow_defects=true: training despite {len(audit.defects)} defect(s)")
        return
    raise SupervisionDefect(
        "the supervision audit found defects, training not started:\n  - "
        + "\n  - ".join(audit.defects)
        + f"\n(saved in {where}; fix the data or template, or set audit.allow_defects=true)"
    )
