"""The one signature of the data pipeline: a block takes conversations and yields the ones
it keeps; everything it drops goes to a :class:`RejectSink` *with a reason*.

    block.run(conversations, sink) -> iterator of kept conversations

Counts always reconcile, per stage: ``in == kept + sum(rejected)``. The sink can write
every reject (with reason, detail, location and, for duplicates, which sample it
duplicated) to a JSONL side file, so nothing is lost silently.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, TextIO

from sftforge.types import Conversation


@dataclass(frozen=True)
class Rejected:
    """Why a record or conversation was dropped, and where it came from.

    ``reason`` is a short key (``too_short``, ``near_duplicate``); ``detail`` says it for a
    person (``3 tokens < min_tokens 8``); ``duplicate_of`` names the kept sample a
    duplicate matched (its source location or id).
    """

    reason: str
    stage: str
    detail: str = ""
    conversation: Conversation | None = None
    where: str = ""
    raw: Any = None
    duplicate_of: str | None = None
    #: The record's 0-based number in its source file, for read rejects (``where`` gives
    #: the line, which is the same for every element of a one-line JSON array).
    index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stage": self.stage, "reason": self.reason, "detail": self.detail}
        out["where"] = self.where or (str(self.conversation.location) if self.conversation else "")
        if self.index is not None:
            out["index"] = self.index
        if self.duplicate_of is not None:
            out["duplicate_of"] = self.duplicate_of
        if self.conversation is not None:
            out["conversation"] = self.conversation.to_dict()
        elif self.raw is not None:
            out["raw"] = self.raw if isinstance(self.raw, (str, dict, list)) else repr(self.raw)
        return out


@dataclass
class StageCounts:
    """What one stage saw: ``seen + added == kept + sum(rejected.values())``.

    ``added`` is zero except for a stage that makes several records of one (text
    windows: a long document becomes ``1 + added`` windows); it is only written out when
    non-zero."""

    seen: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    added: int = 0

    def reconciles(self) -> bool:
        return self.seen + self.added == self.kept + sum(self.rejected.values())

    def to_dict(self) -> dict[str, Any]:
        out = {"seen": self.seen, "kept": self.kept, "rejected": dict(self.rejected)}
        if self.added:
            out["added"] = self.added
        return out


class RejectSink:
    """Collects rejects: counts per stage and reason, a few examples, and optionally a
    JSONL side file with every reject. ``strict=True`` raises on the first reject."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        strict: bool = False,
        max_examples: int = 5,
        atomic: bool = False,
    ) -> None:
        self.strict = strict
        self.max_examples = max_examples
        self.stages: dict[str, StageCounts] = {}
        self.examples: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._fh: TextIO | None = None
        self._publish: contextlib.ExitStack | None = None
        #: What a person must see though nothing was rejected (a shortfall allowed by
        #: the recipe): the build puts these in the manifest and its summary.
        self.warnings: list[str] = []
        self.path = Path(path) if path is not None else None
        if self.path is not None and atomic:
            # Written to a temporary sibling; close() renames it into place, abort()
            # removes it (a failed command leaves the previous file as it was).
            from sftforge.fsutil import atomic_open

            self._publish = contextlib.ExitStack()
            self._fh = self._publish.enter_context(atomic_open(self.path, "w"))
        elif self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")

    def stage(self, name: str) -> StageCounts:
        counts = self.stages.get(name)
        if counts is None:
            counts = self.stages[name] = StageCounts()
        return counts

    def reject(self, rejected: Rejected) -> None:
        if self.strict:
            from sftforge.errors import SftForgeError

            where = rejected.where or (
                str(rejected.conversation.location) if rejected.conversation else ""
            )
            raise SftForgeError(
                f"{where}: rejected by {rejected.stage}: {rejected.reason}"
                + (f" ({rejected.detail})" if rejected.detail else "")
            )
        self.stage(rejected.stage).rejected[rejected.reason] += 1
        bucket = self.examples.setdefault((rejected.stage, rejected.reason), [])
        record = None
        if len(bucket) < self.max_examples or self._fh is not None:
            record = rejected.to_dict()
        if len(bucket) < self.max_examples and record is not None:
            bucket.append(record)
        if self._fh is not None and record is not None:
            self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def add_record(self, record: dict[str, Any]) -> None:
        """Take a reject already turned into a dict and counted elsewhere (a worker
        process): keep it as an example and write it to the side file."""
        bucket = self.examples.setdefault((record["stage"], record["reason"]), [])
        if len(bucket) < self.max_examples:
            bucket.append(record)
        if self._fh is not None:
            self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def add_line(self, stage: str, reason: str, line: str) -> None:
        """Take a reject already counted and serialised as a JSON line elsewhere (a worker
        process): write it as it is; only the few kept as examples are parsed back."""
        bucket = self.examples.setdefault((stage, reason), [])
        if len(bucket) < self.max_examples:
            bucket.append(json.loads(line))
        if self._fh is not None:
            self._fh.write(line + "\n")

    def close(self) -> None:
        """Finish the side file (an atomic sink publishes it now)."""
        if self._publish is not None:
            stack, self._publish, self._fh = self._publish, None, None
            stack.close()
        elif self._fh is not None:
            self._fh.close()
            self._fh = None

    def abort(self) -> None:
        """Drop an atomic sink's unpublished side file (a plain one is just closed)."""
        if self._publish is not None:
            stack, self._publish, self._fh = self._publish, None, None
            cancel = _Aborted()
            stack.__exit__(type(cancel), cancel, None)
        else:
            self.close()

    def __enter__(self) -> RejectSink:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def total_rejected(self) -> int:
        return sum(sum(s.rejected.values()) for s in self.stages.values())

    def to_dict(self) -> dict[str, Any]:
        return {name: counts.to_dict() for name, counts in self.stages.items()}


class _Aborted(Exception):
    """Thrown into an atomic side file's writer to discard it."""


class Block(Protocol):
    """A pipeline stage. ``name`` keys its counts and rejects."""

    name: str

    def run(
        self, conversations: Iterable[Conversation], sink: RejectSink
    ) -> Iterator[Conversation]:
        """Yield the kept conversations; report every drop to ``sink``."""
        ...


class Filter:
    """A block that judges one conversation at a time: override :meth:`check`.

    ``check`` returns ``None`` to keep, or ``(reason, detail)`` to drop. Filters whose work
    is cheaper in bulk (one tokenizer or langid call for many texts) override
    :meth:`check_batch` and return a :meth:`judged_per_call` above 1.
    """

    name = "filter"

    def check(self, conversation: Conversation) -> tuple[str, str] | None:  # pragma: no cover
        raise NotImplementedError

    def check_batch(self, conversations: Sequence[Conversation]) -> list[tuple[str, str] | None]:
        return [self.check(c) for c in conversations]

    def judged_per_call(self) -> int:
        """How many conversations :meth:`check_batch` judges at once (1: one by one)."""
        return 1

    def _verdicts(
        self, conversations: Iterable[Conversation]
    ) -> Iterator[tuple[Conversation, tuple[str, str] | None]]:
        size = self.judged_per_call()
        if size <= 1:
            for conv in conversations:
                yield conv, self.check(conv)
            return
        for chunk in chunks(conversations, size):
            yield from zip(chunk, self.check_batch(chunk), strict=True)

    def run(
        self, conversations: Iterable[Conversation], sink: RejectSink
    ) -> Iterator[Conversation]:
        counts = sink.stage(self.name)
        for conv, verdict in self._verdicts(conversations):
            counts.seen += 1
            if verdict is None:
                counts.kept += 1
                yield conv
            else:
                reason, detail = verdict
                sink.reject(Rejected(reason, self.name, detail, conversation=conv))


def run_blocks(
    blocks: Iterable[Block], conversations: Iterable[Conversation], sink: RejectSink
) -> Iterator[Conversation]:
    """Chain blocks lazily (streaming): each block's output feeds the next."""
    stream: Iterable[Conversation] = conversations
    for block in blocks:
        stream = block.run(stream, sink)
    yield from stream


def chunks(items: Iterable[Conversation], size: int) -> Iterator[list[Conversation]]:
    """Consecutive lists of ``size`` items (the last may be shorter), streamed."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def conversation_text(conversation: Conversation) -> str:
    """All message text of a conversation, for filters and de-duplication."""
    parts = []
    for m in conversation.messages:
        parts.append(m.content)
        if m.input:
            parts.append(m.input)
    return "\n".join(parts)
