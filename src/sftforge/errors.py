"""Error types that say what went wrong, where, and how to fix it.

Every error that concerns a sample carries its location (source file, line or row, sample
index) and the offending field, so a message reads like a compiler diagnostic:
``data/train.jsonl:17 messages[2].role: unknown role 'bot' (expected one of ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where a sample came from. Every part is optional; ``str()`` shows what is known."""

    source: str | None = None
    line: int | None = None
    index: int | None = None
    sample_id: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.source:
            parts.append(self.source if self.line is None else f"{self.source}:{self.line}")
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.index is not None:
            parts.append(f"sample {self.index}")
        if self.sample_id:
            parts.append(f"id={self.sample_id}")
        return " ".join(parts) if parts else "<unknown sample>"


class SftForgeError(Exception):
    """Base class of every error sftforge raises on purpose."""


class ConversationError(SftForgeError, ValueError):
    """A conversation is invalid. Names the sample and the field."""

    def __init__(self, message: str, *, field: str | None = None, location: Location | None = None):
        self.reason = message
        self.field = field
        self.location = location or Location()
        where = str(self.location)
        field_part = f" {field}" if field else ""
        super().__init__(f"{where}{field_part}: {message}")

    def at(self, location: Location) -> ConversationError:
        """The same error, located at ``location`` (used when a caller knows more)."""
        return ConversationError(self.reason, field=self.field, location=location)


class TemplateError(SftForgeError, ValueError):
    """A template is unknown, malformed, or cannot render a conversation."""


class EncodingError(SftForgeError, ValueError):
    """Encoding a conversation failed (a tokenizer problem, not a data problem)."""


class TokenizerLoadError(SftForgeError, OSError):
    """A tokenizer could not be loaded from the given source."""
