"""The encode report: every drop, truncation and boundary fix, counted."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EncodeReport:
    """Counts that always reconcile: ``samples_in == samples_kept + sum(dropped.values())``."""

    samples_in: int = 0
    samples_kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    truncated_samples: int = 0
    turns_dropped_by_truncation: int = 0
    boundary_merges: int = 0
    turns_untrained_boundary: int = 0
    assistant_turns: int = 0
    assistant_turns_trained: int = 0
    end_markers_trained: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    max_examples: int = 3

    def drop(self, reason: str, where: str = "") -> None:
        self.dropped[reason] += 1
        self.note(reason, where)

    def note(self, reason: str, where: str) -> None:
        """Keep a few locations per reason so a user can look at the samples."""
        if where:
            bucket = self.examples.setdefault(reason, [])
            if len(bucket) < self.max_examples:
                bucket.append(where)

    @property
    def trained_fraction(self) -> float:
        return self.trained_tokens / self.tokens if self.tokens else 0.0

    def merge(self, other: EncodeReport) -> EncodeReport:
        """Add another report's counts (e.g. from a worker process)."""
        for name in (
            "samples_in", "samples_kept", "truncated_samples", "turns_dropped_by_truncation",
            "boundary_merges", "turns_untrained_boundary", "assistant_turns",
            "assistant_turns_trained", "end_markers_trained", "tokens", "trained_tokens",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dropped.update(other.dropped)
        for reason, wheres in other.examples.items():
            for where in wheres:
                self.note(reason, where)
        return self

    def reconciles(self) -> bool:
        return self.samples_in == self.samples_kept + sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples_in": self.samples_in,
            "samples_kept": self.samples_kept,
            "dropped": dict(self.dropped),
            "truncated_samples": self.truncated_samples,
            "turns_dropped_by_truncation": self.turns_dropped_by_truncation,
            "boundary_merges": self.boundary_merges,
            "turns_untrained_boundary": self.turns_untrained_boundary,
            "assistant_turns": self.assistant_turns,
            "assistant_turns_trained": self.assistant_turns_trained,
            "end_markers_trained": self.end_markers_trained,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
            "trained_fraction": round(self.trained_fraction, 6),
            "examples": self.examples,
            "reconciles": self.reconciles(),
        }

    def summary(self) -> str:
        """A few human lines."""
        lines = [
            f"samples: {self.samples_in} in, {self.samples_kept} kept, "
            f"{sum(self.dropped.values())} dropped",
        ]
        for reason, n in sorted(self.dropped.items()):
            lines.append(f"  dropped ({reason}): {n}")
        lines.append(
            f"truncated: {self.truncated_samples} samples, "
            f"{self.turns_dropped_by_truncation} oldest turns dropped"
        )
        lines.append(
            f"assistant turns: {self.assistant_turns}, trained {self.assistant_turns_trained}, "
            f"with end marker {self.end_markers_trained}"
        )
        if self.boundary_merges or self.turns_untrained_boundary:
            lines.append(
                f"prompt/answer boundary merges: {self.boundary_merges} "
                f"(turns left untrained to keep inference consistency: "
                f"{self.turns_untrained_boundary})"
            )
        lines.append(
            f"tokens: {self.tokens}, trained {self.trained_tokens} "
            f"({100 * self.trained_fraction:.1f}%)"
        )
        return "\n".join(lines)
