"""Read and write conversations in sftforge's unified format.

One conversation per JSONL line (or a JSON array of them), each ``{"messages": [...]}``
or a bare list of OpenAI-style messages. Every conversation gets provenance in its
``meta`` (source file, line, index), and every parse error names file and line.
Readers for other shapes (Alpaca, ShareGPT, ...) live in the data pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from sftforge.errors import ConversationError, Location
from sftforge.types import Conversation, as_conversation


def read_conversations(path: str | Path) -> Iterator[Conversation]:
    """Stream conversations from a ``.jsonl`` or ``.json`` file in the unified format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a .jsonl or .json file)")
    try:
        yield from _read(path, str(path))
    except UnicodeDecodeError as exc:  # where the line is not known (the first bytes, arrays)
        raise ConversationError(
            f"invalid UTF-8 (byte 0x{exc.object[exc.start]:02x})", location=Location(str(path))
        ) from None


def _read(path: Path, source: str) -> Iterator[Conversation]:
    with path.open(encoding="utf-8") as fh:
        first = ""
        while not first:
            ch = fh.read(1)
            if not ch:
                return
            first = ch.strip()
        fh.seek(0)
        if first == "[" and path.suffix == ".json":
            try:
                records = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ConversationError(
                    f"invalid JSON: {exc.msg}", location=Location(source, exc.lineno)
                ) from exc
            except RecursionError:
                raise ConversationError(
                    "invalid JSON: a value is nested too deeply to read", location=Location(source)
                ) from None
            except ValueError as exc:  # invalid UTF-8, an integer past the int-string limit
                raise ConversationError(f"cannot read: {exc}", location=Location(source)) from None
            for index, record in enumerate(records):
                meta = {"source": source, "index": index}
                yield as_conversation(record, meta=meta)
            return
        index = 0
        for lineno, line in enumerate(_lines(fh, source), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConversationError(
                    f"invalid JSON: {exc.msg} (column {exc.colno})",
                    location=Location(source, lineno),
                ) from exc
            except (RecursionError, ValueError) as exc:
                why = "a value is nested too deeply" if isinstance(exc, RecursionError) else exc
                raise ConversationError(
                    f"invalid JSON: {why}", location=Location(source, lineno)
                ) from None
            meta = {"source": source, "line": lineno, "index": index}
            yield as_conversation(record, meta=meta)
            index += 1


def _lines(fh: Iterable[str], source: str) -> Iterator[str]:
    """The file's lines; bytes that are not UTF-8 end as an error naming the file."""
    lineno = 0
    try:
        for line in fh:
            lineno += 1
            yield line
    except UnicodeDecodeError as exc:
        raise ConversationError(
            f"invalid UTF-8 (byte 0x{exc.object[exc.start]:02x})",
            location=Location(source, lineno + 1),
        ) from None


def write_conversations(conversations: Iterable[Conversation], path: str | Path) -> int:
    """Write conversations as JSONL; returns how many were written."""
    n = 0
    from sftforge.fsutil import atomic_open

    with atomic_open(path) as fh:
        for conv in conversations:
            fh.write(conv.to_json() + "\n")
            n += 1
    return n
