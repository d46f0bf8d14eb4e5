"""File containers: a path in, a stream of ``(location, raw record)`` out.

This is the layer below :mod:`sftforge.data.formats`: it knows how records are *stored*
(JSON Lines, JSON arrays, CSV, Parquet, plain text, a Hugging Face ``datasets`` directory),
not what they mean. Every reader streams, so memory stays flat however large the file is:

* ``jsonl``: one JSON value per line, parsed from bytes line by line (``orjson`` when it is
  installed), so one malformed or non-UTF-8 line is reported and the rest of the file read.
* ``json``: a JSON array, parsed element by element with :meth:`json.JSONDecoder.raw_decode`
  over a sliding buffer (never ``json.load`` of the whole file). A ``.json`` file that does
  not start with ``[`` is JSON Lines (some upstream ``.json`` files are) or, if its first
  line is not a complete value, a stream of concatenated (pretty-printed) JSON values.
* ``csv`` / ``tsv``: header row, then one record per row (every value a string).
* ``parquet``: ``pyarrow`` row batches.
* ``txt``: one document per block of lines separated by blank lines (see :func:`iter_txt`).
* ``hf``: a directory written by ``datasets.Dataset.save_to_disk`` (every split of a
  ``DatasetDict``), read in Arrow batches. Any other directory is read as the sorted list of
  the data files under it.

``.gz`` is accepted on top of the line and JSON containers (``train.jsonl.gz``).

A location is a small dict: ``source`` (the path as given, or the data file inside a
directory), ``index`` (0-based record number in that source), ``line`` (1-based line where
the record starts, for JSONL, JSON, CSV and text) and ``split`` (Hugging Face splits). A
record that cannot even be decoded comes through as a :class:`BadRecord`, so the caller
counts and reports it instead of losing it:

>>> import json, tempfile, os
>>> with tempfile.TemporaryDirectory() as d:
...     p = os.path.join(d, "x.jsonl")
...     with open(p, "w") as f:
...         _ = f.write('{"a": 1}\\n{oops\\n')
...     [(loc["line"], type(rec).__name__) for loc, rec in read_records(p)]
[(1, 'dict'), (2, 'BadRecord')]
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sftforge.errors import SftForgeError

try:  # orjson is several times faster than json for line-by-line parsing
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is a normal dependency of the environment

    def _loads(line: bytes) -> Any:
        return json.loads(line.decode("utf-8"))


__all__ = [
    "CONTAINERS",
    "RAW_MAX_CHARS",
    "BadRecord",
    "DataFileError",
    "Location",
    "container_of",
    "iter_json",
    "iter_jsonl",
    "iter_txt",
    "jsonl_lines",
    "open_binary",
    "parse_jsonl_line",
    "read_records",
    "where",
]

#: Container names accepted by ``read_records(..., container=...)``.
CONTAINERS = ("jsonl", "json", "csv", "tsv", "parquet", "txt", "hf", "dir")
#: Raw text kept with a rejected record is cut to this many characters.
RAW_MAX_CHARS = 2000
#: File suffixes read when a directory of data files is given.
DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt")

_CHUNK = 1 << 20
_BOM = b"\xef\xbb\xbf"
_WS = re.compile(r"[ \t\n\r]*")

Location = dict[str, Any]

#: Errors a damaged file raises while it is decompressed or decoded (a truncated or corrupt
#: gzip stream, bad CRC, garbage after the last member, an undecodable CSV stream).
_FILE_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError)


class DataFileError(SftForgeError, ValueError):
    """A data file cannot be read at all from some point on (corrupt compression, a
    damaged Parquet file, an unreadable file); the message names the file and, where it
    is known, the line or record it stopped at."""


@dataclass(frozen=True)
class BadRecord:
    """A record that could not be decoded: ``reason`` is ``invalid_json``, ``invalid_utf8``,
    ``nul_byte`` or ``invalid_csv``; ``raw`` is its text, cut to :data:`RAW_MAX_CHARS`."""

    reason: str
    detail: str
    raw: str = ""


def where(loc: Location) -> str:
    """``file:line`` when the line is known, else ``file row N`` (``file [split] row N``)."""
    source = loc.get("source", "")
    if loc.get("line") is not None:
        return f"{source}:{loc['line']}"
    split = loc.get("split")
    return (
        f"{source} [{split}] row {loc.get('index')}"
        if split
        else f"{source} row {loc.get('index')}"
    )


def _cut(text: str) -> str:
    return text if len(text) <= RAW_MAX_CHARS else text[:RAW_MAX_CHARS] + "…"


# -- container detection ------------------------------------------------------------------
def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def container_of(path: str | os.PathLike[str]) -> str:
    """The container of ``path`` from its kind and suffix (``.json`` stays ``json``: whether
    it holds an array or lines is decided from its first bytes when it is read)."""
    p = Path(path)
    if p.is_dir():
        return "hf" if _is_saved_dataset(p) else "dir"
    suffix = _suffix(p)
    found = {
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "json",
        ".csv": "csv",
        ".tsv": "tsv",
        ".parquet": "parquet",
        ".pq": "parquet",
        ".txt": "txt",
        ".text": "txt",
    }.get(suffix)
    if found is None:
        raise ValueError(
            f"{path}: cannot tell the container from the suffix {suffix or '(none)'!r}; "
            f"pass container= one of {', '.join(CONTAINERS)}"
        )
    return found


def _is_saved_dataset(p: Path) -> bool:
    """A ``save_to_disk`` folder: ``dataset_dict.json``, or ``state.json`` beside Arrow
    files. A ``dataset_info.json`` alone (a metadata file next to JSON data) is not one."""
    if (p / "dataset_dict.json").is_file():
        return True
    return (p / "state.json").is_file() and any(p.glob("*.arrow"))


def open_binary(path: Path) -> IO[bytes]:
    """A file for reading bytes, decompressed on the fly when it ends in ``.gz``."""
    if path.suffix.lower() == ".gz":
        if path.stat().st_size == 0:  # not even a gzip header: `gzip -t` fails on it too
            raise DataFileError(
                f"{path}: empty file, not a gzip stream (an interrupted download or copy?)"
            )
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb", buffering=_CHUNK)


# -- the public entry point ---------------------------------------------------------------
def read_records(
    path: str | os.PathLike[str], *, container: str = "auto", chunk_size: int = _CHUNK
) -> Iterator[tuple[Location, Any]]:
    """Stream ``(location, record)`` from a file or directory.

    ``container="auto"`` picks the container from the suffix (see :func:`container_of`); pass
    one of :data:`CONTAINERS` to override it. Records are yielded as parsed (a dict for
    every sane source); undecodable ones as :class:`BadRecord`.
    """
    source = os.fspath(path)
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"{source}: no such file or directory")
    kind = container_of(p) if container == "auto" else container
    if kind not in CONTAINERS:
        raise ValueError(
            f"unknown container {container!r} (expected one of {', '.join(CONTAINERS)})"
        )
    if kind == "hf":
        yield from _iter_hf(p, source)
    elif kind == "dir":
        yield from _iter_dir(p, source, chunk_size)
    elif kind == "parquet":
        yield from _iter_parquet(p, source)
    elif kind in ("csv", "tsv"):
        yield from guard_file(_iter_csv(p, source, "\t" if kind == "tsv" else ","), source)
    else:
        with open_binary(p) as fh:
            if kind == "jsonl":
                records = iter_jsonl(fh, source)
            elif kind == "txt":
                records = iter_txt(fh, source)
            else:
                records = _iter_json_file(fh, source, chunk_size)
            yield from guard_file(records, source)


def guard_file(items: Iterator[Any], source: str) -> Iterator[Any]:
    """``items`` as they are, but a damaged file (corrupt or truncated gzip, garbage after
    the stream, a read error) ends as one :class:`DataFileError` naming the file and the
    last record read, not as a decompressor's traceback."""
    last: Any = None
    try:
        for item in items:
            last = item
            yield item
    except (*_FILE_ERRORS, OSError) as exc:
        if isinstance(exc, (SftForgeError, FileNotFoundError)):
            raise
        after = ""
        if isinstance(last, tuple) and last:
            head = last[0]
            if isinstance(head, dict):  # a location
                after = f" after {where(head)}"
            elif isinstance(head, int):  # (line number, raw line)
                after = f" after line {head}"
        gz = " (gzip)" if source.lower().endswith(".gz") else ""
        detail = str(exc) or type(exc).__name__
        raise DataFileError(
            f"{source}: cannot read the file{gz}{after}: {detail}; the file is damaged or "
            "truncated (re-download or re-create it)"
        ) from None


def _iter_dir(p: Path, source: str, chunk_size: int) -> Iterator[tuple[Location, Any]]:
    files = sorted(
        f
        for f in p.rglob("*")
        if f.is_file()
        and not any(part.startswith(".") for part in f.relative_to(p).parts)
        and _suffix(f) in DATA_SUFFIXES
    )
    if not files:
        raise ValueError(
            f"{source}: directory holds no data files ({', '.join(DATA_SUFFIXES)}) and is not "
            "a saved Hugging Face dataset"
        )
    for f in files:
        yield from read_records(os.path.join(source, str(f.relative_to(p))), chunk_size=chunk_size)


# -- JSON Lines -----------------------------------------------------------------------------
def _bad_line(line: bytes, exc: ValueError) -> BadRecord:
    """Say why a line did not parse: bad UTF-8, a raw NUL byte, or bad JSON."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raw = line.decode("utf-8", "backslashreplace").rstrip("\r\n")
        return BadRecord(
            "invalid_utf8",
            f"invalid UTF-8: byte 0x{line[err.start]:02x} at byte offset {err.start} "
            f"({err.reason})",
            _cut(raw),
        )
    text = text.rstrip("\r\n")
    nul = text.find("\x00")
    if nul >= 0:
        return BadRecord(
            "nul_byte", f"raw NUL byte at column {nul + 1}", _cut(text.replace("\x00", "\\x00"))
        )
    msg = getattr(exc, "msg", str(exc))
    at = getattr(exc, "pos", None)
    return BadRecord(
        "invalid_json",
        f"invalid JSON: {msg}" + (f" (at character {at})" if at is not None else ""),
        _cut(text),
    )


def jsonl_lines(fh: IO[bytes], *, first_line: int = 1) -> Iterator[tuple[int, bytes]]:
    """``(line number, raw line)`` of the non-blank lines of a JSON Lines stream (a leading
    BOM removed), unparsed: the build pipeline parses them in its worker processes."""
    for lineno, line in enumerate(fh, first_line):
        if line.isspace():
            continue
        if lineno == first_line and line.startswith(_BOM):
            line = line[3:]
        yield lineno, line


def parse_jsonl_line(line: bytes) -> Any:
    """One JSON Lines record, or a :class:`BadRecord` saying why it does not parse."""
    try:
        return _loads(line)
    except ValueError as exc:  # orjson and json errors, and UnicodeDecodeError
        return _bad_line(line, exc)


def iter_jsonl(
    fh: IO[bytes], source: str, *, first_line: int = 1
) -> Iterator[tuple[Location, Any]]:
    """JSON Lines from a binary stream; blank lines are skipped (and not counted)."""
    for index, (lineno, line) in enumerate(jsonl_lines(fh, first_line=first_line)):
        yield {"source": source, "line": lineno, "index": index}, parse_jsonl_line(line)


# -- JSON (arrays and value streams) --------------------------------------------------------
def _iter_json_file(fh: IO[bytes], source: str, chunk_size: int) -> Iterator[tuple[Location, Any]]:
    """A ``.json`` file: an array, JSON Lines, or concatenated values, told apart by content."""
    head = fh.read(chunk_size)
    start = head[3:] if head.startswith(_BOM) else head
    stripped = start.lstrip()
    if not stripped:
        return
    if stripped[:1] == b"[":
        yield from iter_json(_Prefixed(head, fh), source, chunk_size=chunk_size)
        return
    # JSON Lines stored as .json, unless the first line is not a complete value (then it is
    # pretty-printed JSON: read it as a stream of values).
    if b"\n" not in stripped:  # a first line longer than the chunk: complete it
        rest = fh.readline()
        head, stripped = head + rest, stripped + rest
    first = stripped.split(b"\n", 1)[0]
    try:
        _loads(first)
        is_lines = True
    except ValueError:
        is_lines = False
    stream = _Prefixed(head, fh)
    if is_lines:
        yield from iter_jsonl(stream, source)
    else:
        yield from iter_json(stream, source, array=False, chunk_size=chunk_size)


class _Prefixed:
    """A binary stream that first returns ``head`` (already read), then the rest of ``fh``."""

    def __init__(self, head: bytes, fh: IO[bytes]) -> None:
        self._head: bytes | None = head
        self._fh = fh

    def read(self, n: int = -1) -> bytes:
        if self._head is not None:
            head, self._head = self._head, None
            if head:
                return head
        return self._fh.read(n)

    def __iter__(self) -> Iterator[bytes]:
        head, self._head = self._head or b"", None
        rest = self._fh.readline() if head and not head.endswith(b"\n") else b""
        if head:
            lines = (head + rest).splitlines(keepends=True)
            yield from lines
        yield from self._fh


def _json_error(exc: json.JSONDecodeError, buf: str, pos: int, line: int) -> str:
    # exc.lineno counts lines of the buffer, not the file: count from the element's start.
    err_line = line + buf.count("\n", pos, exc.pos)
    return f"invalid JSON: {exc.msg} (line {err_line}); the rest of the file is not read"


def iter_json(
    fh: Any, source: str, *, array: bool = True, chunk_size: int = _CHUNK
) -> Iterator[tuple[Location, Any]]:
    """Stream the elements of a JSON array (or, with ``array=False``, a sequence of
    whitespace-separated JSON values) from a binary stream with a ``read(n)`` method.

    Only a window of the file is held: a chunk, or one element if an element is larger.
    Invalid UTF-8 bytes are decoded with ``surrogateescape`` (lone surrogates in the record's
    strings, which :mod:`sftforge.data.formats` reports as ``invalid_utf8`` naming the field),
    so one bad byte does not end the file. A malformed element does end it: the array cannot
    be resynchronised reliably, so it is reported once, as ``invalid_json`` at its line, and
    the elements after it are not read.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    raw_decode = json.JSONDecoder().raw_decode
    ws = _WS.match
    buf = ""
    pos = 0
    line = 1
    eof = False
    index = 0

    def more(n: int) -> str:
        nonlocal eof
        data = fh.read(n)
        if not data:
            eof = True
            return decoder.decode(b"", final=True)
        return decoder.decode(data)

    def bad(detail: str, at: int) -> tuple[Location, BadRecord]:
        loc = {"source": source, "line": line, "index": index}
        return loc, BadRecord("invalid_json", detail, _cut(buf[at : at + RAW_MAX_CHARS + 1]))

    buf = more(chunk_size).lstrip("\ufeff")
    # State: "open" (expect "["), "value" (expect a value, or "]" right after "["),
    # "sep" (expect "," or "]" in an array; any value in a stream).
    state = "open" if array else "value"
    first = True
    while True:
        m = ws(buf, pos)
        end = m.end()
        if end != pos:
            line += buf.count("\n", pos, end)
            pos = end
        if pos >= len(buf):
            if eof:
                if array and state != "done":
                    yield bad("invalid JSON: the array is not closed with ']'", pos)
                return
            if pos > chunk_size:
                buf, pos = buf[pos:], 0
            buf += more(chunk_size)
            continue
        ch = buf[pos]
        if state == "done":
            yield bad(
                f"invalid JSON: unexpected data after the closing ']': {buf[pos : pos + 40]!r}", pos
            )
            return
        if state == "open":
            if ch != "[":
                yield bad(f"invalid JSON: expected a JSON array ('['), found {ch!r}", pos)
                return
            pos += 1
            state = "value"
            continue
        if array and ch == "]" and (state == "sep" or first):
            pos += 1
            state = "done"
            continue
        if array and state == "sep":
            if ch != ",":
                yield bad(
                    f"invalid JSON: expected ',' or ']' after element {index - 1}, found {ch!r}",
                    pos,
                )
                return
            pos += 1
            state = "value"
            continue
        # A value starts here; parse it, reading more while it is cut off by the buffer end.
        unreadable = ""
        try:
            obj, end = raw_decode(buf, pos)
            truncated = end >= len(buf) and not eof  # a number may continue in the next chunk
        except json.JSONDecodeError as exc:
            truncated = not eof and (
                exc.pos >= len(buf) - 8 or exc.msg.startswith("Unterminated string")
            )
            if not truncated:
                yield bad(_json_error(exc, buf, pos, line), pos)
                return
        except RecursionError:  # valid JSON that Python cannot hold: skip this element only
            unreadable = "invalid JSON: the value is nested too deeply to read"
        except ValueError as exc:  # e.g. an integer past Python's int-string limit
            unreadable = f"invalid JSON: {exc}"
        if unreadable:
            end = _value_end(buf, pos)
            truncated = not eof and (end < 0 or end >= len(buf))
            if not truncated:
                if end < 0:
                    yield bad(unreadable + "; the rest of the file is not read", pos)
                    return
                yield bad(unreadable, pos)
                index += 1
                first = False
                line += buf.count("\n", pos, end)
                pos = end
                state = "sep" if array else "value"
                continue
        if truncated:
            if pos:
                buf, pos = buf[pos:], 0
            # Grow geometrically so one huge element costs O(size), not O(size^2 / chunk).
            buf += more(max(chunk_size, len(buf)))
            continue
        yield {"source": source, "line": line, "index": index}, obj
        index += 1
        first = False
        line += buf.count("\n", pos, end)
        pos = end
        state = "sep" if array else "value"
        if pos > chunk_size:
            buf, pos = buf[pos:], 0


_SCAN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]|[^"\[\]{}]+')
_SCALAR = re.compile(r"[^,\]}\s]+")


def _value_end(buf: str, pos: int) -> int:
    """Where the JSON value starting at ``pos`` ends, found by matching brackets outside
    strings (no recursion, so any depth); ``-1`` when it does not end inside ``buf``."""
    if buf[pos] not in "[{":
        m = (_SCAN if buf[pos] == '"' else _SCALAR).match(buf, pos)
        return -1 if m is None or m.group()[0] not in '"-0123456789tfn' else m.end()
    depth = 0
    i, n = pos, len(buf)
    while i < n:
        m = _SCAN.match(buf, i)
        if m is None:  # a string that does not end in the buffer
            return -1
        tok = m.group()
        if tok == "[" or tok == "{":
            depth += 1
        elif tok == "]" or tok == "}":
            depth -= 1
            if depth == 0:
                return m.end()
        i = m.end()
    return -1


# -- plain text -----------------------------------------------------------------------------
#: A block of lines without a blank line is cut into documents of about this many
#: characters, at line boundaries (a file with no blank lines is not one huge record).
TXT_MAX_BLOCK_CHARS = 100_000


def iter_txt(
    fh: IO[bytes], source: str, max_block_chars: int = TXT_MAX_BLOCK_CHARS
) -> Iterator[tuple[Location, Any]]:
    """Plain text: one document per block of non-blank lines.

    * Line breaks are ``\\n``, ``\\r\\n`` and a lone ``\\r`` (old Mac files), and the
      Unicode line separators ``str.splitlines`` knows.
    * A blank line is empty or holds only whitespace, Unicode whitespace included (a
      no-break or ideographic space, a form feed); one or more end a document.
    * A document is its lines joined with ``"\\n"``, yielded as ``{"text": ...}`` at
      the line where it starts.
    * A block that grows past ``max_block_chars`` without a blank line (a file with none:
      one paragraph per line) is cut at the line boundary before the limit: each part is a
      document (one line longer than the limit stays whole, and the format layer judges
      it). Long documents are then cut into training-length windows by the build (see
      :mod:`sftforge.data.window`).
    * A block with an undecodable line is reported as one ``invalid_utf8`` record.
    """
    index = 0
    lines: list[str] = []
    size = 0
    start = 0
    bad: BadRecord | None = None

    def flush() -> tuple[Location, Any]:
        loc = {"source": source, "line": start, "index": index}
        return loc, bad if bad is not None else {"text": "\n".join(lines)}

    lineno = 0
    for raw_line in fh:
        if lineno == 0 and raw_line.startswith(_BOM):
            raw_line = raw_line[3:]
        try:
            parts = raw_line.decode("utf-8").splitlines() or [""]
        except UnicodeDecodeError as err:
            lineno += 1
            if bad is None:
                if not lines:
                    start = lineno
                bad = BadRecord(
                    "invalid_utf8",
                    f"invalid UTF-8 on line {lineno}: byte 0x{raw_line[err.start]:02x} at byte "
                    f"offset {err.start}",
                    _cut(raw_line.decode("utf-8", "backslashreplace")),
                )
            continue
        for text in parts:
            lineno += 1
            if not text or text.isspace():
                if lines or bad is not None:
                    yield flush()
                    index += 1
                    lines, bad, size = [], None, 0
                continue
            if lines and bad is None and size + len(text) > max_block_chars:
                yield flush()
                index += 1
                lines, size = [], 0
            if not lines and bad is None:
                start = lineno
            lines.append(text)
            size += len(text) + 1
    if lines or bad is not None:
        yield flush()


# -- CSV ------------------------------------------------------------------------------------
def _iter_csv(p: Path, source: str, delimiter: str) -> Iterator[tuple[Location, Any]]:
    # Long fields are judged by the format layer (field_too_long), not cut off by csv.
    if csv.field_size_limit() < 2**31 - 1:
        csv.field_size_limit(2**31 - 1)
    opener = gzip.open if p.suffix.lower() == ".gz" else open
    # surrogateescape: a bad byte turns into a lone surrogate in that row's values, which the
    # format layer reports as invalid_utf8 for that row only.
    with opener(p, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ValueError(f"{source}:1: cannot read the CSV header: {exc}") from exc
        width = len(header)
        index = 0
        prev = reader.line_num
        while True:
            start = prev + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                prev = reader.line_num
                yield (
                    {"source": source, "line": start, "index": index},
                    BadRecord("invalid_csv", f"CSV error: {exc}"),
                )
                index += 1
                continue
            prev = reader.line_num
            if not row:
                continue
            loc = {"source": source, "line": start, "index": index}
            index += 1
            if len(row) != width:
                yield (
                    loc,
                    BadRecord(
                        "invalid_csv",
                        f"row has {len(row)} fields, the header has {width}",
                        _cut(delimiter.join(row)),
                    ),
                )
                continue
            yield loc, dict(zip(header, row, strict=True))


# -- Parquet and Hugging Face datasets --------------------------------------------------------
def _iter_parquet(p: Path, source: str, batch_size: int = 1024) -> Iterator[tuple[Location, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    index = 0
    try:
        pf = pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(f"{source}: not a readable Parquet file: {exc}") from None
    try:
        batches = pf.iter_batches(batch_size=batch_size)
        while True:
            try:
                rows = next(batches).to_pylist()
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as exc:
                raise DataFileError(
                    f"{source}: cannot read Parquet rows from row {index} on: {exc}"
                ) from None
            for rec in rows:
                yield {"source": source, "index": index}, rec
                index += 1
    finally:
        pf.close()


def _iter_hf(p: Path, source: str, batch_size: int = 1024) -> Iterator[tuple[Location, Any]]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError(
            f"{source}: reading a Hugging Face dataset directory needs `pip install datasets`"
        ) from exc
    loaded = datasets.load_from_disk(str(p))
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    for split, ds in splits:
        index = 0
        # Arrow batches are memory-mapped: only one batch is turned into Python objects.
        for table in ds.with_format("arrow").iter(batch_size=batch_size):
            for rec in table.to_pylist():
                loc: Location = {"source": source, "index": index}
                if split is not None:
                    loc["split"] = split
                yield loc, rec
                index += 1
