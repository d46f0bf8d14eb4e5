"""Records prepared in a build's worker processes, as the main process receives them.

A parallel ``sftforge data build`` reads, validates, cleans and filters every record in
worker processes (``build_worker.py``). Shipping the kept conversations back as pickled
objects, and then hashing, shingling and serialising them again in the one main process,
made that process the bottleneck. Instead a worker sends, per kept record, only what the
serial stages of the main process need, as bytes and numbers:

* the output row, already serialised as a JSON line (the spool and the dataset files take
  it as it is);
* the exact-duplicate digest and the MinHash signature (de-duplication compares these);
* the provenance fields (``duplicate_of`` names the kept sample by them) and the turn code
  (the mixer counts turns);
* the conversation as JSON, decoded only when the record is dropped as a duplicate (its
  reject record carries the whole conversation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sftforge.types import Conversation, as_conversation

__all__ = ["Prepared", "PreparedBatch", "loads"]

try:  # orjson parses several times faster than json; json is the fallback
    import orjson

    loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is a dependency
    import json

    loads = json.loads


class Prepared:
    """One kept record as the main process holds it (see the module doc). The
    de-duplication blocks accept these in place of conversations."""

    __slots__ = ("_json", "code", "empty", "exact", "line", "provenance", "sig", "source")

    def __init__(
        self,
        line: bytes,
        conversation_json: bytes,
        source: int,
        code: int,
        provenance: tuple[Any, ...],
        exact: bytes | None = None,
        sig: np.ndarray | None = None,
        empty: bool = False,
    ) -> None:
        self.line = line
        self._json = conversation_json
        self.source = source
        self.code = code
        self.provenance = provenance
        self.exact = exact
        self.sig = sig
        self.empty = empty

    @property
    def conversation(self) -> Conversation:
        """The conversation, rebuilt from its JSON (equal to the worker's, meta included)."""
        return as_conversation(loads(self._json))


@dataclass
class PreparedBatch:
    """What a worker sends back for one chunk of input: its stage counts, its rejects as
    ``(stage, reason, JSON line)``, and the kept records column by column (a few large
    objects pickle far faster than thousands of small ones)."""

    source: int
    counts: dict[str, dict[str, Any]]
    rejects: list[tuple[str, str, str]]
    lines: list[bytes] = field(default_factory=list)
    conversations: list[bytes] = field(default_factory=list)
    provenance: list[tuple[Any, ...]] = field(default_factory=list)
    codes: bytes = b""
    exact: bytes | None = None  # 16 bytes per record
    sig: np.ndarray | None = None  # records x num_perm
    empty: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def items(self) -> list[Prepared]:
        """The kept records, in input order."""
        n = len(self.lines)
        exact = self.exact
        digests = [exact[16 * i : 16 * i + 16] for i in range(n)] if exact is not None else None
        sig = self.sig
        empty = self.empty.tolist() if self.empty is not None else None
        src = self.source
        return [
            Prepared(
                self.lines[i],
                self.conversations[i],
                src,
                self.codes[i],
                self.provenance[i],
                None if digests is None else digests[i],
                None if sig is None else sig[i],
                False if empty is None else empty[i],
            )
            for i in range(n)
        ]
