"""The spool of ``sftforge data build``: kept records on disk, addressed by integer id,
and the light references the mixer works on."""

from __future__ import annotations

import json
import mmap
from pathlib import Path

import numpy as np

from sftforge.data.mix import MULTI, SINGLE, TEXT
from sftforge.data.writer import conversation_from_row, row_line
from sftforge.types import Conversation

__all__ = ["Ref", "Spool", "ref_pool"]


# -- the spool: kept records on disk, an index in memory ----------------------------------------
class Spool:
    """Kept conversations as JSON lines in a file, addressed by integer id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = path.open("wb")
        self.offsets: list[int] = []
        self.sources: list[int] = []
        self.codes: list[int] = []
        self._pos = 0
        self._map: mmap.mmap | None = None

    def add(self, conv: Conversation, source: int, code: int, source_name: str) -> None:
        # Stored as the output row, so writing the dataset is a copy, not a re-encode.
        self.add_line(row_line(conv, source_name), source, code)

    def add_line(self, line: bytes, source: int, code: int) -> None:
        """Add a row already serialised by :func:`~sftforge.data.writer.row_line`."""
        self._fh.write(line)
        self.offsets.append(self._pos)
        self._pos += len(line)
        self.sources.append(source)
        self.codes.append(code)

    def seal(self) -> None:
        self._fh.close()
        self.offsets.append(self._pos)
        if self._pos:
            with self.path.open("rb") as fh:
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)

    def __len__(self) -> int:
        return len(self.sources)

    def line(self, i: int) -> str:
        return self.raw(i).decode("utf-8")

    def raw(self, i: int) -> bytes:
        """Record ``i``'s row as stored: one UTF-8 JSON line, newline included."""
        assert self._map is not None
        return self._map[self.offsets[i] : self.offsets[i + 1]]

    def get(self, i: int) -> Conversation:
        return conversation_from_row(json.loads(self.line(i)))

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


class _Assistant:
    __slots__ = ()
    role = "assistant"


_A = _Assistant()
#: Stand-in messages by turn code (text, single, multi), enough for the mixer to count turns.
_STAND_IN = {TEXT: ("text", ()), SINGLE: ("chat", (_A,)), MULTI: ("chat", (_A, _A))}


class Ref:
    """A spooled record as the mixer sees it: its id, kind and number of assistant turns,
    without loading the conversation (a million of these take about 100 MB)."""

    __slots__ = ("id", "kind", "messages")

    def __init__(self, record_id: int, code: int) -> None:
        self.id = record_id
        self.kind, self.messages = _STAND_IN[code]


def ref_pool(ids: np.ndarray, codes: np.ndarray) -> list[Ref]:
    return [Ref(int(i), int(c)) for i, c in zip(ids, codes, strict=True)]
