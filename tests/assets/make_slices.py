"""Slice small test fixtures out of the shared sample data (one-off, reproducible).

Usage (from the repository root)::

    .venv/bin/python tests/assets/make_slices.py [DATA_DIR]

``DATA_DIR`` defaults to ``../shared/data`` relative to the repository root (the shared
sample data described in its ``README.md``). The script writes, in sftforge's unified
JSONL format (one :class:`sftforge.types.Conversation` per line, as ``Conversation.to_json``
writes it):

* ``tests/assets/conversations_en.jsonl``: English; ShareGPT multi-turn, OpenAI messages
  (KTO rows with ``label == true``, a system-prompted fine-tuning set), Alpaca with and
  without ``input``, and Glaive tool-call conversations.
* ``tests/assets/conversations_zh.jsonl``: Chinese; Firefly multi-turn, OpenAssistant rows
  with ``history``, Alpaca with and without ``input``, and AdvertiseGen (system prompt).
* ``src/sftforge/resources/sample_conversations.jsonl``: a mixed en+zh set (single and
  multi-turn, no tools) for the quickstart. It takes the rows that come *after* those
  picked for the test slices, so the two sets do not overlap.

Conversion rules:

* ShareGPT ``human`` -> ``user``, ``gpt`` -> ``assistant``, ``function_call`` -> ``assistant``
  (the call JSON as content), ``observation`` -> ``tool``; a ``system`` field becomes the
  leading system message and a ``tools`` JSON string becomes ``Conversation.tools``.
* Alpaca ``instruction`` -> user ``content``, ``input`` -> the message's ``input`` field,
  ``output`` -> assistant; ``history`` pairs become earlier user/assistant turns.
* Firefly ``conversation`` of ``{human, assistant}`` -> alternating user/assistant turns.
* ``meta``: ``source`` is the file's path relative to ``DATA_DIR``; ``index`` is the record's
  0-based position in the file (for JSONL files ``line`` is also set: 1-based line number);
  ``id`` is the record's own id (ShareGPT ``id``, Firefly ``conversation_id``) when it has one.

Selection is deterministic: rows are taken in file order, skipping rows whose total text
(all message contents, inputs and tool schemas) is longer than ``MAX_CHARS`` characters
(long rows are skipped, never truncated) and rows that would not make a valid training
conversation (ending with an assistant turn, user/assistant alternating, tool messages
aside). Every written line is checked with ``as_conversation(...).validate()``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sftforge.types import Conversation, Message, as_conversation

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
OUT_EN = REPO_ROOT / "tests" / "assets" / "conversations_en.jsonl"
OUT_ZH = REPO_ROOT / "tests" / "assets" / "conversations_zh.jsonl"
OUT_SAMPLE = REPO_ROOT / "src" / "sftforge" / "resources" / "sample_conversations.jsonl"

#: Rows with more text than this (characters) are skipped.
MAX_CHARS = 3000
#: Size budget per output file (bytes); the script fails if a file exceeds it.
MAX_BYTES = 150_000

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "assistant",
    "observation": "tool",
    "system": "system",
}

Record = tuple[int, int | None, dict[str, Any]]  # (index, 1-based line or None, record)


# -- reading ---------------------------------------------------------------------------------
def read_records(path: Path) -> list[Record]:
    """Records of a JSON array file or a JSONL file (detected by content, not extension)."""
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        return [(i, None, rec) for i, rec in enumerate(json.loads(text))]
    records: list[Record] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            records.append((len(records), lineno, json.loads(line)))
    return records


def make_meta(source: str, index: int, line: int | None, rec_id: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"source": source, "index": index}
    if line is not None:
        meta["line"] = line
    if rec_id is not None:
        meta["id"] = rec_id
    return meta


# -- converters (record -> Conversation) ------------------------------------------------------
def from_sharegpt(rec: dict[str, Any], meta: dict[str, Any]) -> Conversation:
    messages: list[Message] = []
    if rec.get("system"):
        messages.append(Message("system", rec["system"]))
    for turn in rec["conversations"]:
        role = SHAREGPT_ROLES[turn["from"]]
        if role == "system":
            messages.insert(0, Message("system", turn["value"]))
        else:
            messages.append(Message(role, turn["value"]))
    tools = rec.get("tools")
    if isinstance(tools, str):
        tools = json.loads(tools) if tools.strip() else None
    return Conversation(tuple(messages), tools=tuple(tools) if tools else None, meta=meta)


def from_openai(rec: dict[str, Any], meta: dict[str, Any]) -> Conversation:
    messages = [Message(m["role"], m["content"]) for m in rec["messages"]]
    return Conversation(tuple(messages), meta=meta)


def from_alpaca(rec: dict[str, Any], meta: dict[str, Any]) -> Conversation:
    messages: list[Message] = []
    if rec.get("system"):
        messages.append(Message("system", rec["system"]))
    for user, assistant in rec.get("history") or []:
        messages += [Message("user", user), Message("assistant", assistant)]
    messages.append(Message("user", rec["instruction"], input=rec.get("input") or None))
    messages.append(Message("assistant", rec["output"]))
    return Conversation(tuple(messages), meta=meta)


def from_firefly(rec: dict[str, Any], meta: dict[str, Any]) -> Conversation:
    messages: list[Message] = []
    for turn in rec["conversation"]:
        messages += [Message("user", turn["human"]), Message("assistant", turn["assistant"])]
    return Conversation(tuple(messages), meta=meta)


# -- checks ----------------------------------------------------------------------------------
def total_chars(conv: Conversation) -> int:
    n = sum(len(m.content) + len(m.input or "") for m in conv.messages)
    if conv.tools:
        n += len(json.dumps([dict(t) for t in conv.tools], ensure_ascii=False))
    return n


def alternates(conv: Conversation) -> bool:
    """User/assistant alternate (tool messages aside: a tool result follows an assistant
    call and is followed by an assistant turn), starting with user, ending with assistant."""
    roles = [m.role for m in conv.turns]
    if not roles or roles[0] != "user" or roles[-1] != "assistant":
        return False
    prev = None
    for role in roles:
        if role == "tool":
            if prev not in ("assistant", "tool"):
                return False
        elif role == "user":
            if prev not in (None, "assistant"):
                return False
        elif role == "assistant":
            if prev not in ("user", "tool"):
                return False
        else:
            return False
        prev = role
    return True


def is_good(conv: Conversation) -> bool:
    if total_chars(conv) > MAX_CHARS or not alternates(conv):
        return False
    if any(not m.content.strip() for m in conv.messages):
        return False
    try:
        conv.validate()
    except ValueError:
        return False
    return True


# -- selection -------------------------------------------------------------------------------
class Source:
    """The good conversations of one file, in file order, handed out without repeats."""

    def __init__(
        self,
        data_dir: Path,
        rel: str,
        convert: Callable[[dict[str, Any], dict[str, Any]], Conversation],
        *,
        id_key: str | None = None,
        keep: Callable[[dict[str, Any], Conversation], bool] = lambda rec, conv: True,
    ) -> None:
        self.rel = rel
        self._it = self._iter(data_dir, convert, id_key, keep)

    def _iter(self, data_dir, convert, id_key, keep) -> Iterator[Conversation]:
        for index, line, rec in read_records(data_dir / self.rel):
            meta = make_meta(self.rel, index, line, rec.get(id_key) if id_key else None)
            conv = convert(rec, meta)
            if is_good(conv) and keep(rec, conv):
                yield conv

    def take(self, n: int) -> list[Conversation]:
        out = list(itertools.islice(self._it, n))
        if len(out) < n:
            print(f"warning: {self.rel}: only {len(out)} of {n} rows fit", file=sys.stderr)
        return out


def n_user(conv: Conversation) -> int:
    return sum(1 for m in conv.messages if m.role == "user")


def has_tool(conv: Conversation) -> bool:
    return any(m.role == "tool" for m in conv.messages)


def build(data_dir: Path) -> dict[Path, list[Conversation]]:
    def src(rel, convert, **kw):
        return Source(data_dir, rel, convert, **kw)

    # English sources.
    sharegpt_multi = src(
        "sharegpt/dummy_conversation.json",
        from_sharegpt,
        id_key="id",
        keep=lambda r, c: n_user(c) in (2, 3),
    )
    sharegpt_single = src(
        "sharegpt/dummy_conversation.json",
        from_sharegpt,
        id_key="id",
        keep=lambda r, c: n_user(c) == 1,
    )
    kto = "openai/kto_en_demo.json"
    kto_multi = src(kto, from_openai, keep=lambda r, c: r.get("label") is True and n_user(c) > 1)
    kto_single = src(kto, from_openai, keep=lambda r, c: r.get("label") is True and n_user(c) == 1)
    elle = src("openai/generative-ai-for-beginners/training-data.jsonl", from_openai)
    alpaca_en = "alpaca/alpaca_en_demo.json"
    alpaca_en_input = src(alpaca_en, from_alpaca, keep=lambda r, c: bool(r.get("input")))
    alpaca_en_plain = src(alpaca_en, from_alpaca, keep=lambda r, c: not r.get("input"))
    glaive = "sharegpt/glaive_toolcall_en_demo.json"
    glaive_tools = src(glaive, from_sharegpt, keep=lambda r, c: has_tool(c) and n_user(c) == 1)
    glaive_multi_tools = src(glaive, from_sharegpt, keep=lambda r, c: has_tool(c) and n_user(c) > 1)

    # Chinese sources.
    firefly = src("firefly/dummy_data.jsonl", from_firefly, id_key="conversation_id")
    oaast = "alpaca/oaast_sft_zh.json"
    oaast_history = src(oaast, from_alpaca, keep=lambda r, c: bool(r.get("history")))
    alpaca_zh = "alpaca/alpaca_zh_demo.json"
    alpaca_zh_input = src(alpaca_zh, from_alpaca, keep=lambda r, c: bool(r.get("input")))
    alpaca_zh_plain = src(alpaca_zh, from_alpaca, keep=lambda r, c: not r.get("input"))
    adgen = src("openai/minicpm/AdvertiseGenChatML/train.json", from_openai)

    en = [
        *sharegpt_multi.take(9),
        *kto_multi.take(3),  # multi-turn KTO rows are long: only 3 fit under MAX_CHARS
        *kto_single.take(5),
        *elle.take(5),
        *alpaca_en_plain.take(6),
        *alpaca_en_input.take(6),
        *glaive_tools.take(4),
        *glaive_multi_tools.take(3),
    ]
    zh = [
        *firefly.take(8),
        *oaast_history.take(10),
        *alpaca_zh_plain.take(8),
        *alpaca_zh_input.take(8),
        *adgen.take(6),
    ]
    # The quickstart sample: rows after those used above (no tool conversations).
    sample = [
        *alpaca_en_plain.take(10),
        *alpaca_zh_plain.take(10),
        *alpaca_en_input.take(5),
        *alpaca_zh_input.take(5),
        *sharegpt_multi.take(7),
        *sharegpt_single.take(3),
        *kto_single.take(4),
        *elle.take(4),
        *oaast_history.take(6),
        *firefly.take(3),
        *adgen.take(3),
    ]
    # Interleave the sample so a head of the file already mixes languages and formats.
    sample = _interleave_by_source(sample)
    return {OUT_EN: en, OUT_ZH: zh, OUT_SAMPLE: sample}


def _interleave_by_source(convs: list[Conversation]) -> list[Conversation]:
    groups: dict[str, list[Conversation]] = {}
    for conv in convs:
        groups.setdefault(str(conv.meta["source"]), []).append(conv)
    out: list[Conversation] = []
    queues = list(groups.values())
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


# -- writing ---------------------------------------------------------------------------------
def write_jsonl(path: Path, convs: Iterable[Conversation]) -> int:
    lines = [conv.to_json() for conv in convs]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    # Check what was written, as a reader would load it.
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            conv = as_conversation(json.loads(line)).validate()
            if not alternates(conv):
                raise SystemExit(f"{path}:{lineno}: roles do not alternate")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{path}: {size} bytes, over the {MAX_BYTES}-byte budget")
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "data_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"shared data directory (default: {DEFAULT_DATA_DIR})",
    )
    args = parser.parse_args(argv)
    data_dir: Path = args.data_dir.resolve()
    if not (data_dir / "README.md").is_file():
        parser.error(f"{data_dir} does not look like the shared data dir (no README.md)")
    for path, convs in build(data_dir).items():
        size = write_jsonl(path, convs)
        by_source: dict[str, int] = {}
        for conv in convs:
            by_source[str(conv.meta["source"])] = by_source.get(str(conv.meta["source"]), 0) + 1
        print(f"{path.relative_to(REPO_ROOT)}: {len(convs)} conversations, {size} bytes")
        for source, n in by_source.items():
            print(f"    {n:3d}  {source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
