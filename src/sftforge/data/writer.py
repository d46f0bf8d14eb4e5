"""Write a built dataset: JSONL and Parquet splits that ``datasets.load_dataset`` reads
directly, plus helpers for the manifest (file hashes, versions).

Rows have one fixed schema in both formats, so Arrow never has to reconcile types across
sources::

    {"messages": [{"role", "content", "input", "train", "name",
                   "tool_calls": <JSON string or null>, "tool_call_id"}],
     "kind": "chat"|"text",
     "source": <recipe source name>, "tools": <JSON string or null>,
     "meta": {"source", "line", "index", "id", ...}}

``meta`` values other than ``line`` and ``index`` are written as strings.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sftforge.types import Conversation, as_conversation

_MESSAGE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("input", pa.string()),
        ("train", pa.bool_()),
        ("name", pa.string()),
        ("tool_calls", pa.string()),
        ("tool_call_id", pa.string()),
    ]
)
_META_INTS = ("line", "index")


def row(conv: Conversation, source_name: str) -> dict[str, Any]:
    """The fixed-schema row for one conversation."""
    meta: dict[str, Any] = {}
    for key, value in conv.meta.items():
        if key in _META_INTS and isinstance(value, int):
            meta[key] = value
        elif value is not None:
            meta[key] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return {
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "input": m.input,
                "train": m.train,
                "name": m.name,
                "tool_calls": json.dumps([dict(c) for c in m.tool_calls], ensure_ascii=False)
                if m.tool_calls
                else None,
                "tool_call_id": m.tool_call_id,
            }
            for m in conv.messages
        ],
        "kind": conv.kind,
        "source": source_name,
        "tools": json.dumps([dict(t) for t in conv.tools], ensure_ascii=False)
        if conv.tools
        else None,
        "meta": meta,
    }


try:  # orjson serialises rows several times faster than json
    import orjson

    _loads = orjson.loads

    def _dumps(obj: Any) -> bytes:
        try:
            return orjson.dumps(obj)
        except TypeError:  # what orjson refuses (huge ints, lone surrogates): as json does it
            return json.dumps(obj, ensure_ascii=False).encode("utf-8")

except ImportError:  # pragma: no cover - orjson is a dependency
    _loads = json.loads

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def row_line(conv: Conversation, source_name: str) -> bytes:
    """:func:`row` as one JSON line (UTF-8, ending in a newline): the spool and the JSONL
    files hold exactly these bytes, whichever process made them."""
    return _dumps(row(conv, source_name)) + b"\n"


def conversation_from_row(data: dict[str, Any]) -> Conversation:
    """Inverse of :func:`row` (what training reads back)."""
    messages = [{k: v for k, v in m.items() if v is not None} for m in data["messages"]]
    for m in messages:
        if isinstance(m.get("tool_calls"), str):  # a JSON string, as row() writes it
            m["tool_calls"] = json.loads(m["tool_calls"])
    tools = json.loads(data["tools"]) if data.get("tools") else None
    meta = {k: v for k, v in (data.get("meta") or {}).items() if v is not None}
    meta.setdefault("source_name", data.get("source"))
    return as_conversation(
        {"messages": messages, "tools": tools, "kind": data.get("kind", "chat"), "meta": meta}
    )


class SplitWriter:
    """Streams rows of one split to ``NAME.jsonl`` and ``NAME.parquet``.

    Rows come as dicts (:meth:`write`, :meth:`write_line`) or as the JSON lines of
    :func:`row_line` (:meth:`write_raw`, what a build writes from its spool): those are
    copied to the JSONL file as they are and parsed for Parquet by Arrow's JSON reader, a
    batch at a time, instead of one ``json.loads`` and one Python dict per row.
    """

    def __init__(
        self,
        out_dir: Path,
        name: str,
        batch_rows: int = 5000,
        *,
        jsonl: bool = True,
        parquet_path: Path | None = None,
    ) -> None:
        self.jsonl_path = out_dir / f"{name}.jsonl"
        self.parquet_path = parquet_path or out_dir / f"{name}.parquet"
        self._jsonl = self.jsonl_path.open("wb") if jsonl else None
        self._rows: list[dict[str, Any]] = []
        self._raw: list[bytes] = []  # rows as JSON lines (pending rows are of one kind)
        self._batch_rows = batch_rows
        self._parquet: pq.ParquetWriter | None = None
        self._meta_keys: list[str] | None = None
        self.count = 0

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for r in rows:
            line = json.dumps(r, ensure_ascii=False) + "\n" if self._jsonl is not None else ""
            self.write_line(line, r)

    def write_line(self, line: str, parsed: dict[str, Any]) -> None:
        """Write a row already serialised as a JSON line (``parsed`` is the same row)."""
        if self._raw:
            self._flush()
        if self._jsonl is not None:
            self._jsonl.write(line.encode("utf-8"))
        self._rows.append(parsed)
        self.count += 1
        if len(self._rows) >= self._batch_rows:
            self._flush()

    def write_raw(self, line: bytes) -> None:
        """Write a row given as one UTF-8 JSON line of :func:`row`'s schema (ending in a
        newline), e.g. from :func:`row_line`."""
        if self._rows:
            self._flush()
        self._raw.append(line)
        self.count += 1
        if len(self._raw) >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self._raw:
            data = b"".join(self._raw)
            self._raw = []
            if self._jsonl is not None:
                self._jsonl.write(data)
            table = self._arrow_table(data) if self._meta_keys is not None else None
            if table is not None:
                self._write_table(table)
                return
            # the first batch fixes the meta keys; rows that do not fit: as dicts
            self._rows = [_loads(line) for line in data.splitlines()]
        if not self._rows:
            return
        self._write_table(pa.Table.from_pylist(self._normalise(self._rows), schema=self._schema()))
        self._rows = []

    def _arrow_table(self, data: bytes) -> pa.Table | None:
        """The rows of ``data`` parsed by Arrow with the file's schema, or ``None`` when
        they do not fit it as they are (meta keys beyond the fixed ones go to ``extra``,
        which only the dict path does)."""
        import pyarrow.json as pj

        schema = self._schema()
        options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
        try:
            table = pj.read_json(
                pa.BufferReader(data),
                read_options=pj.ReadOptions(block_size=max(len(data), 1 << 20)),
                parse_options=options,
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
        return table if table.schema.equals(schema) else None

    def _write_table(self, table: pa.Table) -> None:
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.parquet_path, table.schema)
        self._parquet.write_table(table)

    def _schema(self) -> pa.Schema:
        assert self._meta_keys is not None
        meta = pa.struct(
            [(k, pa.int64() if k in _META_INTS else pa.string()) for k in self._meta_keys]
        )
        return pa.schema(
            [
                ("messages", pa.list_(_MESSAGE)),
                ("kind", pa.string()),
                ("source", pa.string()),
                ("tools", pa.string()),
                ("meta", meta),
            ]
        )

    def _normalise(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Parquet needs one schema for the whole file: fix the meta keys at the first
        # batch; keys that appear later are folded into 'extra' as JSON.
        if self._meta_keys is None:
            keys = sorted({k for r in rows for k in r["meta"]} | {"source", "line", "index"})
            self._meta_keys = [*keys, "extra"] if "extra" not in keys else keys
        out = []
        for r in rows:
            meta = {k: r["meta"].get(k) for k in self._meta_keys}
            extra = {k: v for k, v in r["meta"].items() if k not in self._meta_keys}
            if extra:
                meta["extra"] = json.dumps(extra, ensure_ascii=False)
            out.append({**r, "meta": meta})
        return out

    def close(self) -> None:
        if self._meta_keys is None and not self._rows and not self._raw:
            self._meta_keys = ["source", "line", "index", "extra"]
        self._flush()
        if self._jsonl is not None:
            self._jsonl.close()
        if self._parquet is None:  # an empty split still gets a readable file
            pq.write_table(pa.Table.from_pylist([], schema=self._schema()), self.parquet_path)
        else:
            self._parquet.close()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        with f.open("rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in (
        "sftforge",
        "datasets",
        "pyarrow",
        "transformers",
        "tokenizers",
        "datasketch",
        "rensa",
        "ftfy",
        "langid",
        "numpy",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
