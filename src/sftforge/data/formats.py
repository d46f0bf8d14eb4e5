"""Readers: every common SFT data shape in, :class:`~sftforge.types.Conversation` out.

Usage::

    from sftforge.data.block import RejectSink
    from sftforge.data.formats import detect_format, read_source

    detect_format("data/alpaca_en_demo.json")            # -> "alpaca"
    with RejectSink("rejects.jsonl") as sink:             # every bad record, with its reason
        for conv in read_source("data/alpaca_en_demo.json", sink=sink):
            ...                                           # conv.meta: source, line/index, format
    sink.stages["read"]                                   # seen == kept + sum(rejected)

    # Custom field names: map *our* field names to the file's.
    read_source("qa.csv", format="alpaca", column_map={"instruction": "prompt",
                                                       "output": "response"})
    # Stop at the first bad record, with an error naming file:line and field.
    list(read_source("train.jsonl", strict=True))

Formats (:data:`FORMATS`; ``format="auto"`` detects one per file from its first record):

* ``alpaca``: ``instruction``, ``input``, ``output``, optional ``system`` and ``history``
  (``[[user, assistant], ...]`` earlier turns). ``input`` goes to ``Message.input``, not
  into the content: templates with an input slot place it there.
* ``sharegpt``: ``conversations`` of ``{from, value}``; ``human``/``user`` -> user,
  ``gpt``/``assistant``/``chatgpt``/``model`` -> assistant, ``system`` -> system,
  ``function_call`` -> assistant (the call text as content, checked to be the JSON of
  a call ``{"name", "arguments": {...}}`` or a list of them), ``observation``/``tool``/
  ``function`` -> tool. Optional ``system`` field, and ``tools`` (a list, or a JSON string
  as LLaMA-Factory writes it) -> ``Conversation.tools``.
* ``openai``: ``messages`` of ``{role, content}``: content a string or typed parts
  (``[{"type": "text", "text"|"value": ...}]``), ``tool_calls`` (validated: a function
  name, ``arguments`` a JSON object or the JSON string of one, normalised to the object;
  legacy ``function_call`` becomes one call), ``name`` and ``tool_call_id`` kept,
  ``tools`` -> ``Conversation.tools``. Also reads sftforge's own unified JSONL (``train``,
  ``input``, ``kind``, ``meta``), LLaMA-Factory v1's ``loss_weight`` (``> 0`` -> ``train=True``,
  ``0`` -> ``train=False``) and a bare list of messages. A KTO ``label`` is kept as
  ``meta["label"]`` (nothing is filtered here).
* ``firefly``: ``conversation`` of ``{human, assistant}`` pairs; optional ``system``.
* ``belle``: LinkSoul / BELLE style: ``conversations`` of ``{from, value}`` plus an
  ``instruction`` field that is the *system prompt* (as LinkSoul's training code uses it;
  an empty one means no system message).
* ``text``: ``{"text": ...}`` records and ``.txt`` files (one document per blank-line
  separated block, see :func:`sftforge.data.containers.iter_txt`) ->
  ``Conversation.text(...)`` (``kind == "text"``) for replay mixing.

Containers (JSONL, JSON arrays, JSON Lines stored as ``.json``, CSV/TSV, Parquet, a
``datasets.save_to_disk`` directory or a directory of data files) are handled by
:mod:`sftforge.data.containers`; everything streams, so memory stays flat as files grow.

Provenance: each conversation's ``meta`` has ``source`` (the path as given), ``index``
(0-based record number), ``line`` (1-based start line; JSONL, JSON, CSV and text),
``split`` (Hugging Face splits), ``format``, ``id`` (the record's ``id`` or
``conversation_id``) and ``label`` when the record has one.

Validation loses nothing: a bad record is never yielded and never dropped silently; it
goes to the :class:`~sftforge.data.block.RejectSink` as a :class:`~sftforge.data.block.Rejected`
of stage ``"read"`` with ``where`` (``file:line`` or ``file row N``), a reason key
(:data:`REASONS`), a detail naming the field, and the raw record (cut to 2,000 characters).
Without a sink, a warning sums up what was rejected.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sftforge.data.block import Rejected, RejectSink
from sftforge.data.containers import (
    RAW_MAX_CHARS,
    BadRecord,
    Location,
    container_of,
    read_records,
    where,
)
from sftforge.errors import ConversationError, SftForgeError
from sftforge.errors import Location as ErrorLocation
from sftforge.types import (
    KIND_TEXT,
    Conversation,
    Message,
    ToolCallError,
    check_tool_call,
    check_tool_calls,
)

__all__ = [
    "FORMATS",
    "REASONS",
    "STAGE",
    "FormatError",
    "RecordConverter",
    "RecordError",
    "RejectedRecordsWarning",
    "detect_format",
    "read_records",
    "read_source",
]

#: Format names accepted by ``read_source(..., format=...)`` (besides ``"auto"``).
FORMATS = ("alpaca", "sharegpt", "openai", "firefly", "belle", "text")
#: Stage name of the readers in a RejectSink's counts.
STAGE = "read"
#: Reason keys of read rejects (``invalid_csv``: a CSV row that does not fit the header).
REASONS = (
    "invalid_json",
    "invalid_utf8",
    "invalid_csv",
    "nul_byte",
    "wrong_type",
    "missing_field",
    "empty_turn",
    "bad_role_order",
    "field_too_long",
    "unknown_role",
    "no_assistant",
    "invalid_tool_call",
    "unknown_format",
)
#: Records of each file that format detection looks at (the format most of them fit wins,
#: so one stray record at the top does not decide the file).
DETECT_SAMPLE = 32

_ALIASES = {"messages": "openai", "chatml": "openai", "unified": "openai", "linksoul": "belle"}
_USER, _ASSISTANT, _SYSTEM, _TOOL = "user", "assistant", "system", "tool"
_SHAREGPT_ROLES = {
    **dict.fromkeys(("human", "user"), _USER),
    **dict.fromkeys(("gpt", "assistant", "chatgpt", "model", "function_call"), _ASSISTANT),
    **dict.fromkeys(("observation", "tool", "function"), _TOOL),
    "system": _SYSTEM,
}
_OPENAI_ROLES = {
    **dict.fromkeys(("system", "developer"), _SYSTEM),
    **dict.fromkeys(("user", "human"), _USER),
    **dict.fromkeys(("assistant", "gpt"), _ASSISTANT),
    **dict.fromkeys(("tool", "function"), _TOOL),
}
#: Our field names that ``column_map`` may rename: record-level, and turn-level ones.
_RECORD_FIELDS = frozenset(("instruction", "input", "output", "system", "history", "tools"))
_RECORD_FIELDS |= {"conversations", "messages", "conversation", "text", "id", "label"}
_ITEM_FIELDS = frozenset(("from", "value", "role", "content", "human", "assistant"))
_LIST_FIELDS = ("conversations", "messages", "conversation")

# Lone surrogates: bytes that were not UTF-8 (decoded with surrogateescape by the JSON-array
# and CSV readers) or unpaired \\ud800-style escapes. Neither can be written as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")


class FormatError(SftForgeError, ValueError):
    """The format of a source is unknown or cannot be detected."""


class RecordError(ConversationError):
    """A record is invalid (strict mode). ``code`` is the reason key (see :data:`REASONS`)."""

    def __init__(self, message: str, *, code: str, field: str | None, location: ErrorLocation):
        self.code = code
        super().__init__(message, field=field, location=location)


class RejectedRecordsWarning(UserWarning):
    """Records were rejected while reading and no RejectSink was given to keep them."""


class _Bad(Exception):
    """Raised by the converters; becomes a Rejected (or a RecordError when strict)."""

    def __init__(self, reason: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.field = reason, detail, field


# -- field access ------------------------------------------------------------------------------
def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _wrong(field: str, expected: str, value: Any) -> _Bad:
    return _Bad("wrong_type", f"must be {expected}, got {_type(value)}", field)


def _str(rec: Mapping[str, Any], key: str, field: str | None = None) -> str:
    value = rec.get(key)
    if type(value) is str:
        return value
    if value is None:
        raise _Bad("missing_field", "required field is missing", field or key)
    raise _wrong(field or key, "a string", value)


def _opt_str(rec: Mapping[str, Any], key: str, field: str | None = None) -> str | None:
    value = rec.get(key)
    if value is None or type(value) is str:
        return value
    raise _wrong(field or key, "a string", value)


def _json_value(value: str, field: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise _Bad("invalid_json", f"a string that is not valid JSON: {exc}", field) from None


def _list(rec: Mapping[str, Any], key: str) -> list[Any]:
    value = rec.get(key)
    if type(value) is list:
        return value
    if value is None:
        raise _Bad("missing_field", "required field is missing", key)
    if isinstance(value, str):  # a JSON-encoded list (CSV cells, some exports)
        value = _json_value(value, key)
    if isinstance(value, (list, tuple)):
        return list(value)
    raise _wrong(key, "a list", value)


def _tools(value: Any) -> tuple[Mapping[str, Any], ...] | None:
    """Tool schemas: a list, one object, or either as a JSON string (LLaMA-Factory)."""
    if isinstance(value, str):
        value = _json_value(value, "tools") if value.strip() else None
    if not value:
        return None
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise _wrong("tools", "a list of tool schemas", value)
    for j, tool in enumerate(value):
        if not isinstance(tool, Mapping):
            raise _wrong(f"tools[{j}]", "an object", tool)
    return tuple(value)


def _field(path: Any) -> str:
    """Paths stay tuples ``(list_key, j, key)`` until an error needs them as text."""
    return f"{path[0]}[{path[1]}].{path[2]}" if isinstance(path, tuple) else str(path)


def _turn(path: Any) -> str:
    """The whole turn a content path belongs to (for role-order errors)."""
    return f"{path[0]}[{path[1]}]" if isinstance(path, tuple) else str(path)


# -- checks shared by every format ----------------------------------------------------------------
def _check_text(text: str, path: Any, limit: int) -> None:
    if len(text) > limit:
        detail = f"{len(text):,} characters > max_field_chars {limit:,}"
        raise _Bad("field_too_long", detail, _field(path))
    if "\x00" in text:
        raise _Bad("nul_byte", f"NUL character at offset {text.index(chr(0))}", _field(path))
    if not text.isascii() and (bad := _SURROGATE.search(text)) is not None:
        ch = ord(bad.group())
        what = f"byte 0x{ch - 0xDC00:02x}" if ch >= 0xDC80 else f"lone surrogate U+{ch:04X}"
        raise _Bad("invalid_utf8", f"invalid UTF-8 ({what}) at offset {bad.start()}", _field(path))


def _check_turns(messages: list[Message], paths: list[Any], limit: int) -> None:
    """Text checks on every string, then the role order a training conversation needs:
    an optional leading system turn, user first, no two user or assistant turns in a row,
    tool results after an assistant (call) turn, an assistant turn last."""
    prev = None
    has_assistant = False
    for i, m in enumerate(messages):
        role, content = m.role, m.content
        _check_text(content, paths[i], limit)
        if m.input is not None:
            _check_text(m.input, "input", limit)
        order = None
        if role == _SYSTEM:
            if i:
                order = "a system turn is only allowed first"
        elif role == _USER:
            if (not content or content.isspace()) and not m.input:
                raise _Bad("empty_turn", "user turn is empty", _field(paths[i]))
            if prev == _USER:
                order = "two user turns in a row"
        elif role == _ASSISTANT:
            if (not content or content.isspace()) and not m.tool_calls:
                raise _Bad("empty_turn", "assistant turn is empty", _field(paths[i]))
            if prev is None or prev == _ASSISTANT:
                order = "starts with an assistant turn" if prev is None else "two assistant turns"
                order += " in a row" if prev else " (expected user)"
            has_assistant = True
        elif role == _TOOL and prev not in (_ASSISTANT, _TOOL):
            order = f"a tool result must follow an assistant (tool call) turn, not {prev or 'none'}"
        if order:
            raise _Bad("bad_role_order", order, _turn(paths[i]))
        if role != _SYSTEM:
            prev = role
    if not has_assistant:
        raise _Bad("no_assistant", "no assistant turn: nothing to train on")
    if prev != _ASSISTANT:
        detail = f"ends with a {prev} turn; training needs a final assistant answer"
        raise _Bad("bad_role_order", detail, _turn(paths[-1]))


# -- converters: raw record -> Conversation -------------------------------------------------------
Converter = Callable[[Mapping[str, Any], dict[str, Any], int], Conversation]


def _system(rec: Mapping[str, Any], key: str, messages: list[Message], paths: list[Any]) -> None:
    system = _opt_str(rec, key)
    if system:  # an empty system field means none
        messages.append(Message(_SYSTEM, system))
        paths.append(key)


def _from_alpaca(rec: Mapping[str, Any], meta: dict[str, Any], limit: int) -> Conversation:
    instruction, output = _str(rec, "instruction"), _str(rec, "output")
    inp = _opt_str(rec, "input")
    messages: list[Message] = []
    paths: list[Any] = []
    _system(rec, "system", messages, paths)
    if rec.get("history"):
        for j, pair in enumerate(_list(rec, "history")):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise _wrong(f"history[{j}]", "a [user, assistant] pair", pair)
            for k, (role, text) in enumerate(zip((_USER, _ASSISTANT), pair, strict=True)):
                if type(text) is not str:
                    raise _wrong(f"history[{j}][{k}]", "a string", text)
                messages.append(Message(role, text))
                paths.append(f"history[{j}][{k}]")
    messages.append(Message(_USER, instruction, input=inp or None))
    messages.append(Message(_ASSISTANT, output))
    paths += ["instruction", "output"]
    _check_turns(messages, paths, limit)
    return Conversation(tuple(messages), meta=meta)


def _content(value: Any, path: tuple[str, int, str]) -> str:
    """A message content: a string, null (empty), or typed text parts (joined)."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if not isinstance(value, list):
        raise _wrong(_field(path), "a string or a list of text parts", value)
    texts = []
    for k, part in enumerate(value):
        if isinstance(part, Mapping) and part.get("type", "text") == "text":
            part = part.get("text", part.get("value"))
        if type(part) is not str:
            raise _wrong(f"{_field(path)}[{k}]", "a text part ({type: text, text})", part)
        texts.append(part)
    return "".join(texts)


def _turn_fields(turn: Mapping[str, Any], field: str, role: str) -> dict[str, Any]:
    """The optional per-turn fields: train (or v1 ``loss_weight``), tool calls (validated,
    see :func:`sftforge.types.check_tool_call`), input, name, tool_call_id."""
    train = turn.get("train")
    if train is not None and type(train) is not bool:
        raise _wrong(f"{field}.train", "true, false or absent", train)
    if train is None and "loss_weight" in turn:
        weight = turn["loss_weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise _wrong(f"{field}.loss_weight", "a number", weight)
        train = weight > 0
    calls = turn.get("tool_calls")
    legacy = turn.get("function_call")
    if calls is None and legacy is not None:  # legacy OpenAI: one call, no id
        if not isinstance(legacy, Mapping):
            raise _wrong(f"{field}.function_call", "an object", legacy)
        calls = [{"type": "function", "function": legacy}]
    if isinstance(calls, str):  # a JSON-encoded list (Parquet rows, CSV cells)
        calls = _json_value(calls, f"{field}.tool_calls") if calls.strip() else None
    if calls is not None and not isinstance(calls, list):
        raise _wrong(f"{field}.tool_calls", "a list of tool calls", calls)
    inp, name, call_id = turn.get("input"), turn.get("name"), turn.get("tool_call_id")
    for key, value in (("input", inp), ("name", name), ("tool_call_id", call_id)):
        if value is not None and type(value) is not str:
            raise _wrong(f"{field}.{key}", "a string", value)
    if calls and role != _ASSISTANT:
        detail = f"tool calls are only allowed on assistant turns, not {role}"
        raise _Bad("invalid_tool_call", detail, f"{field}.tool_calls")
    if call_id is not None and role != _TOOL:
        detail = f"tool_call_id is only allowed on tool turns, not {role}"
        raise _Bad("invalid_tool_call", detail, f"{field}.tool_call_id")
    try:
        calls = check_tool_calls(calls, f"{field}.tool_calls")
    except ToolCallError as exc:
        raise _Bad("invalid_tool_call", exc.reason, exc.field) from None
    return {
        "train": train,
        "tool_calls": calls,
        "input": inp or None,
        "name": name,
        "tool_call_id": call_id,
    }


def _role_turns(
    turns: list[Any],
    list_key: str,
    role_map: Mapping[str, str],
    messages: list[Message],
    paths: list[Any],
) -> None:
    """ShareGPT ``{from, value}`` and OpenAI ``{role, content}`` turns (either key style)."""
    for j, turn in enumerate(turns):
        field = f"{list_key}[{j}]"
        if not isinstance(turn, Mapping):
            raise _wrong(field, "an object", turn)
        role_key, value_key = ("from", "value") if "from" in turn else ("role", "content")
        raw_role = turn.get(role_key)
        if type(raw_role) is not str:
            if raw_role is None:
                raise _Bad("missing_field", "turn has no 'from' or 'role'", f"{field}.{role_key}")
            raise _wrong(f"{field}.{role_key}", "a string", raw_role)
        role = role_map.get(raw_role) or role_map.get(raw_role.lower())
        if role is None:
            known = ", ".join(sorted(role_map))
            detail = f"unknown role {raw_role!r} (expected one of {known})"
            raise _Bad("unknown_role", detail, f"{field}.{role_key}")
        if value_key not in turn:  # mixed key styles: {"from", "content"} / {"role", "value"}
            value_key = "value" if "value" in turn else "content"
        extra = _turn_fields(turn, field, role)
        path = (list_key, j, value_key)
        if value_key not in turn and not extra["tool_calls"]:
            raise _Bad("missing_field", "required field is missing", _field(path))
        content = _content(turn.get(value_key), path)
        if raw_role.lower() == "function_call":
            _check_call_text(content, _field(path))
        messages.append(Message(role, content, **extra))
        paths.append(path)


def _check_call_text(text: str, field: str) -> None:
    """A ShareGPT ``function_call`` turn's value: the JSON of one call ``{"name",
    "arguments"}`` (or a list of them), kept as the turn's text but checked like any
    tool call, so a malformed call is rejected here rather than trained as text."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _Bad("invalid_tool_call", f"function_call is not valid JSON: {exc}", field) from None
    calls = value if isinstance(value, list) else [value]
    if not calls:
        raise _Bad("invalid_tool_call", "function_call is an empty list", field)
    for k, call in enumerate(calls):
        try:
            check_tool_call(call, f"{field}[{k}]" if isinstance(value, list) else field)
        except ToolCallError as exc:
            raise _Bad("invalid_tool_call", exc.reason, exc.field) from None


def _from_sharegpt(
    rec: Mapping[str, Any], meta: dict[str, Any], limit: int, system_key: str = "system"
) -> Conversation:
    turns = _list(rec, "conversations")
    messages: list[Message] = []
    paths: list[Any] = []
    _system(rec, system_key, messages, paths)
    _role_turns(turns, "conversations", _SHAREGPT_ROLES, messages, paths)
    _check_turns(messages, paths, limit)
    if isinstance(rec.get("tools"), str):
        _check_text(rec["tools"], "tools", limit)
    return Conversation(tuple(messages), tools=_tools(rec.get("tools")), meta=meta)


def _from_belle(rec: Mapping[str, Any], meta: dict[str, Any], limit: int) -> Conversation:
    return _from_sharegpt(rec, meta, limit, system_key="instruction")


def _from_openai(rec: Mapping[str, Any], meta: dict[str, Any], limit: int) -> Conversation:
    turns = _list(rec, "messages")
    messages: list[Message] = []
    paths: list[Any] = []
    _system(rec, "system", messages, paths)
    _role_turns(turns, "messages", _OPENAI_ROLES, messages, paths)
    own_meta = rec.get("meta")
    if isinstance(own_meta, Mapping) and own_meta:  # sftforge JSONL: keep it, under ours
        meta = {**own_meta, **meta}
    if rec.get("kind") == KIND_TEXT:
        text = messages[0].content if messages else ""
        if not text or text.isspace():
            raise _Bad("empty_turn", "text document is empty", "messages[0].content")
        _check_text(text, paths[0], limit)
        return Conversation.text(text, meta=meta)
    _check_turns(messages, paths, limit)
    return Conversation(tuple(messages), tools=_tools(rec.get("tools")), meta=meta)


def _from_firefly(rec: Mapping[str, Any], meta: dict[str, Any], limit: int) -> Conversation:
    turns = _list(rec, "conversation")
    messages: list[Message] = []
    paths: list[Any] = []
    _system(rec, "system", messages, paths)
    for j, turn in enumerate(turns):
        if not isinstance(turn, Mapping):
            raise _wrong(f"conversation[{j}]", "an object", turn)
        for role, key in ((_USER, "human"), (_ASSISTANT, "assistant")):
            path = ("conversation", j, key)
            messages.append(Message(role, _str(turn, key, _field(path))))
            paths.append(path)
    _check_turns(messages, paths, limit)
    return Conversation(tuple(messages), meta=meta)


def _from_text(rec: Mapping[str, Any], meta: dict[str, Any], limit: int) -> Conversation:
    text = _str(rec, "text")
    if not text or text.isspace():
        raise _Bad("empty_turn", "text document is empty", "text")
    _check_text(text, "text", limit)
    return Conversation.text(text, meta=meta)


_CONVERTERS: dict[str, Converter] = {
    "alpaca": _from_alpaca,
    "sharegpt": _from_sharegpt,
    "openai": _from_openai,
    "firefly": _from_firefly,
    "belle": _from_belle,
    "text": _from_text,
}


# -- detection ------------------------------------------------------------------------------------
def _canonical(fmt: str) -> str:
    name = _ALIASES.get(fmt, fmt)
    if name not in FORMATS:
        expected = ", ".join(FORMATS)
        raise FormatError(f"unknown format {fmt!r} (expected 'auto' or one of {expected})")
    return name


def _detect_record(record: Any) -> str | None:
    if isinstance(record, list):  # a bare list of OpenAI messages
        is_messages = record and all(isinstance(m, Mapping) and "role" in m for m in record)
        return "openai" if is_messages else None
    if not isinstance(record, Mapping):
        return None
    if "messages" in record:
        return "openai"
    if "conversations" in record:
        return "belle" if "instruction" in record and "output" not in record else "sharegpt"
    if "conversation" in record:
        return "firefly"
    if "instruction" in record or ("output" in record and "input" in record):
        return "alpaca"
    if "text" in record:
        return "text"
    return None


def _shape(record: Any) -> str:
    if isinstance(record, Mapping):
        return "fields " + ", ".join(repr(k) for k in list(record)[:12])
    return f"a JSON {_type(record)}"


def _undetected(record: Any, at: str) -> FormatError:
    shape = _shape(record)
    return FormatError(
        f"{at}: cannot detect the format of a record with {shape}. Expected alpaca "
        "(instruction/input/output), sharegpt (conversations of from/value), openai "
        "(messages of role/content), firefly (conversation of human/assistant), belle "
        "(instruction + conversations) or text (text). Pass format=... and, for other field "
        "names, column_map={our_name: file_name}, e.g. {'instruction': 'prompt', "
        "'output': 'response'}."
    )


def detect_format(
    record_or_path: Any, *, column_map: Mapping[str, str] | None = None, container: str = "auto"
) -> str:
    """The format name (one of :data:`FORMATS`) of a record, or of a file/directory from its
    first decodable record. Raises :class:`FormatError` when no format fits.

    >>> detect_format({"instruction": "Say hi", "input": "", "output": "Hi"})
    'alpaca'
    >>> detect_format({"conversations": [{"from": "human", "value": "Hi"}]})
    'sharegpt'
    """
    top, items = _split_column_map(column_map)
    if not isinstance(record_or_path, (str, os.PathLike)):
        record = _apply_column_map(record_or_path, top, items)
        fmt = _detect_record(record)
        if fmt is None:
            raise _undetected(record, "record")
        return fmt
    source = os.fspath(record_or_path)
    kind = container_of(source) if container == "auto" else container
    if kind == "txt":
        return "text"
    convert = RecordConverter(column_map=column_map, sink=RejectSink(max_examples=0))
    convert.in_dir = kind == "dir"  # a directory: a file in no known format is skipped
    for loc, _ in _detecting(read_records(source, container=container), convert):
        if convert._detected_for == loc["source"] and convert.format is not None:
            return convert.format
    if convert.in_dir and convert._undetectable:
        raise FormatError(
            f"{source}: no file in the directory holds records in a known format (tried "
            f"{', '.join(convert._undetectable)})"
        )
    raise FormatError(f"{source}: no readable record to detect the format from")


def _vote(records: list[Any], top: _Pairs, items: _Pairs) -> str | None:
    """The format most of ``records`` fit (ties: the earliest record's), or None."""
    votes = Counter(
        fmt
        for rec in records
        if (fmt := _detect_record(_apply_column_map(rec, top, items))) is not None
    )
    return votes.most_common(1)[0][0] if votes else None


def _detecting(
    records: Iterator[tuple[Location, Any]], convert: RecordConverter, size: int = DETECT_SAMPLE
) -> Iterator[tuple[Location, Any]]:
    """``records`` unchanged, with ``convert``'s format detected for each source file from
    its first ``size`` records before any of them is converted."""
    buf: list[tuple[Location, Any]] = []
    for item in records:
        source = item[0]["source"]
        if buf and source != buf[0][0]["source"]:
            convert.detect(buf)
            yield from buf
            buf = []
        if not buf and source == convert._detected_for:
            yield item
            continue
        buf.append(item)
        if len(buf) >= size:
            convert.detect(buf)
            yield from buf
            buf = []
    if buf:
        convert.detect(buf)
        yield from buf


# -- column maps ----------------------------------------------------------------------------------
_Pairs = list[tuple[str, str]]


def _split_column_map(column_map: Mapping[str, str] | None) -> tuple[_Pairs, _Pairs]:
    """``{our_name: file_name}`` -> (record-level renames, turn-level renames)."""
    if not column_map:
        return [], []
    for ours in column_map:
        if ours not in _RECORD_FIELDS and ours not in _ITEM_FIELDS:
            known = ", ".join(sorted(_RECORD_FIELDS | _ITEM_FIELDS))
            raise ValueError(
                f"column_map: unknown field {ours!r}; keys are sftforge's field names "
                f"({known}), values the file's"
            )
    pairs = [(ours, theirs) for ours, theirs in column_map.items() if ours != theirs]
    return [p for p in pairs if p[0] in _RECORD_FIELDS], [p for p in pairs if p[0] in _ITEM_FIELDS]


def _rename(rec: Mapping[str, Any], pairs: _Pairs) -> dict[str, Any]:
    out = dict(rec)
    for ours, theirs in pairs:
        if theirs in out:
            out[ours] = out.pop(theirs)
    return out


def _apply_column_map(rec: Any, top: _Pairs, items: _Pairs) -> Any:
    if not (top or items) or not isinstance(rec, Mapping):
        return rec
    out = _rename(rec, top)
    for key in _LIST_FIELDS if items else ():
        turns = out.get(key)
        if isinstance(turns, list):
            out[key] = [_rename(t, items) if isinstance(t, Mapping) else t for t in turns]
    return out


# -- reading --------------------------------------------------------------------------------------
def _raw_for(record: Any) -> Any:
    """The record for a Rejected: itself when small, else its JSON text cut to 2,000
    characters; always writable as UTF-8 JSON."""
    if isinstance(record, BadRecord):
        return record.raw
    try:
        text, plain = json.dumps(record, ensure_ascii=False), True
    except (TypeError, ValueError):
        text, plain = json.dumps(record, ensure_ascii=False, default=repr), False
    if _SURROGATE.search(text):
        text, plain = (
            text.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace"),
            False,
        )
    if plain and len(text) <= RAW_MAX_CHARS:
        return record
    return text if len(text) <= RAW_MAX_CHARS else text[:RAW_MAX_CHARS] + "…"


def _record_id(rec: Mapping[str, Any]) -> Any:
    for key in ("id", "conversation_id"):
        value = rec.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return value
    return None


class RecordConverter:
    """The per-record half of :func:`read_source`: validate one raw record and convert it,
    counting it in ``sink``'s ``read`` stage (a bad record goes to the sink, or raises
    :class:`RecordError` when strict). The build pipeline runs this in worker processes on
    lines its main process has only split, so it is the one implementation of the rules.

    With ``format="auto"`` the format is detected for each source file (``loc["source"]``)
    from a sample of its first records (:meth:`detect`, the format most of them fit; from
    the first record alone when nobody called it) and kept for the rest of that file. With
    ``in_dir`` (the files of a directory) a file in no known format (a ``config.json`` next
    to the data) does not stop the directory: its records are rejected as
    ``unknown_format``.
    """

    def __init__(
        self,
        *,
        format: str = "auto",
        column_map: Mapping[str, str] | None = None,
        sink: RejectSink,
        strict: bool = False,
        max_field_chars: int = 200_000,
    ) -> None:
        self.fixed = None if format == "auto" else _canonical(format)
        self.top, self.items = _split_column_map(column_map)
        self.sink = sink
        self.strict = strict or sink.strict
        self.counts = sink.stage(STAGE)
        self.max_field_chars = max_field_chars
        self.format = self.fixed
        self._convert = _CONVERTERS[self.fixed] if self.fixed else None
        self._detected_for: Any = None  # auto-detection runs once per source file
        self.in_dir = False
        self._undetectable: list[str] = []  # files of a directory in no known format

    def detect(self, sample: list[tuple[Location, Any]]) -> None:
        """Detect the format of the file ``sample`` (its first records) comes from.

        Raises :class:`FormatError` when no decodable record fits a format (unless
        ``in_dir``: then the file's records are rejected as ``unknown_format``); does
        nothing when the sample holds no decodable record (the next records decide)."""
        if self.fixed is not None:
            return
        decoded = [(loc, rec) for loc, rec in sample if type(rec) is not BadRecord]
        if not decoded:
            return
        source = decoded[0][0]["source"]
        fmt = _vote([rec for _, rec in decoded], self.top, self.items)
        if fmt is None and not self.in_dir:
            loc, rec = decoded[0]
            raise _undetected(_apply_column_map(rec, self.top, self.items), where(loc))
        self._detected_for, self.format = source, fmt
        self._convert = None if fmt is None else _CONVERTERS[fmt]
        if fmt is None:
            self._undetectable.append(source)

    def __call__(self, loc: Location, rec: Any) -> Conversation | None:
        """The conversation of one record, or ``None`` when it was rejected."""
        if type(rec) is BadRecord:
            self.counts.seen += 1
            _reject(self.sink, self.strict, rec.reason, rec.detail, None, loc, rec.raw)
            return None
        if self.fixed is None and loc["source"] != self._detected_for:
            self.detect([(loc, rec)])  # nothing judged yet if it raises
        self.counts.seen += 1
        raw = rec
        rec = _apply_column_map(rec, self.top, self.items)
        fmt = self.format
        if fmt is None:  # a file of a directory in no known format
            detail = (
                f"{_shape(rec)} fit no known format (the file's first records fit none "
                "either: not a data file?); the file is skipped"
            )
            _reject(self.sink, self.strict, "unknown_format", detail, None, loc, raw)
            return None
        if fmt == "openai" and isinstance(rec, list):
            rec = {"messages": rec}
        if not isinstance(rec, Mapping):
            detail = f"a record must be a JSON object, got {_type(rec)}"
            _reject(self.sink, self.strict, "wrong_type", detail, None, loc, raw)
            return None
        meta = loc  # a fresh dict per record
        meta["format"] = fmt
        if (rid := _record_id(rec)) is not None:
            meta["id"] = rid
        if "label" in rec:
            meta["label"] = rec["label"]
        try:
            conv = self._convert(rec, meta, self.max_field_chars)  # type: ignore[misc]
        except _Bad as bad:
            _reject(self.sink, self.strict, bad.reason, bad.detail, bad.field, loc, raw)
            return None
        except RecursionError:  # a JSON string field holding a too deeply nested value
            detail = "a value is nested too deeply to read"
            _reject(self.sink, self.strict, "invalid_json", detail, None, loc, "")
            return None
        self.counts.kept += 1
        return conv


def read_source(
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    column_map: Mapping[str, str] | None = None,
    sink: RejectSink | None = None,
    strict: bool = False,
    max_field_chars: int = 200_000,
    container: str = "auto",
) -> Iterator[Conversation]:
    """Stream the conversations of one source (file or directory), validating each record.

    ``format`` is ``"auto"`` (detected per file from its first decodable record) or one of
    :data:`FORMATS`; ``column_map`` maps our field names to the file's; ``container``
    overrides the container detection (see :mod:`sftforge.data.containers`).

    Bad records go to ``sink`` (stage ``"read"``, counted so that ``seen == kept +
    rejected``). With ``strict=True``, or a ``RejectSink(strict=True)``, the first bad
    record raises :class:`RecordError` naming file, line and field instead.
    """
    if format == "auto" and (
        container == "txt"
        or (container == "auto" and os.path.isfile(path) and container_of(path) == "txt")
    ):
        format = "text"  # plain text has no fields to detect a format from
    own_sink = sink is None
    sink = RejectSink() if sink is None else sink
    convert = RecordConverter(
        format=format,
        column_map=column_map,
        sink=sink,
        strict=strict,
        max_field_chars=max_field_chars,
    )
    counts = convert.counts
    rejected_before = sum(counts.rejected.values())
    records = read_records(path, container=container)
    if convert.fixed is None:
        convert.in_dir = container == "dir" or (
            container == "auto" and os.path.isdir(path) and container_of(path) == "dir"
        )
        records = _detecting(records, convert)
    for loc, rec in records:
        conv = convert(loc, rec)
        if conv is not None:
            yield conv

    new = sum(counts.rejected.values()) - rejected_before
    if own_sink and new:
        reasons = ", ".join(f"{k}: {v}" for k, v in counts.rejected.most_common())
        warnings.warn(
            f"{os.fspath(path)}: {new} of {counts.seen} records rejected ({reasons}); pass "
            "sink=RejectSink('rejects.jsonl') to keep them with reasons, or strict=True to "
            "stop at the first",
            RejectedRecordsWarning,
            stacklevel=2,
        )


def _reject(
    sink: RejectSink,
    strict: bool,
    reason: str,
    detail: str,
    field: str | None,
    loc: Location,
    raw: Any,
) -> None:
    if strict:
        location = ErrorLocation(
            source=loc.get("source"),
            line=loc.get("line"),
            index=loc.get("index"),
            sample_id=None if loc.get("id") is None else str(loc["id"]),
        )
        raise RecordError(f"{detail} [{reason}]", code=reason, field=field, location=location)
    text = f"{field}: {detail}" if field else detail
    index = loc.get("index")
    sink.reject(Rejected(reason, STAGE, text, where=where(loc), raw=_raw_for(raw), index=index))
