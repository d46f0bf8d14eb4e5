"""The one data unit: frozen ``Message`` and ``Conversation``.

Every source format converts *into* these types; every later stage (templates, encoding,
training, evaluation) reads them. OpenAI-style lists of ``{"role": ..., "content": ...}``
dicts are accepted wherever a conversation is (see :func:`as_conversation`).

>>> conv = as_conversation([{"role": "user", "content": "Hi"},
...                         {"role": "assistant", "content": "Hello!"}])
>>> conv.messages[1].role
'assistant'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from sftforge.errors import ConversationError, Location

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

#: A plain-text document (pretraining replay) rather than a chat: rendered as-is and
#: trained on every token.
KIND_TEXT = "text"
KIND_CHAT = "chat"


class ToolCallError(ConversationError):
    """A tool call is malformed (no function name, arguments that are not a JSON object).

    ``code`` is the reason key readers and the encoder count it under."""

    code = "invalid_tool_call"

    def at(self, location: Location) -> ToolCallError:
        return ToolCallError(self.reason, field=self.field, location=location)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def check_tool_call(call: Any, field: str, *, location: Location | None = None) -> dict[str, Any]:
    """One validated tool call, with its ``arguments`` parsed to a JSON object.

    Accepted shapes: OpenAI's ``{"id"?, "type"?, "function": {"name", "arguments"}}``, and
    the flat ``{"name", "arguments"}`` that some data and chat templates use. ``arguments``
    is an object, or a string holding the JSON of one (normalised to the object, so that a
    conversation written out and read back is the same). Anything else raises
    :class:`ToolCallError` naming the field (``field`` is the call's own path, e.g.
    ``messages[2].tool_calls[0]``): a call without a function name, arguments that are
    missing, not valid JSON, or JSON that is not an object.
    """
    loc = location or Location()
    if not isinstance(call, Mapping):
        raise ToolCallError(f"a tool call must be an object, got {_kind(call)}", field=field,
                            location=loc)  # fmt: skip
    flat = "function" not in call and "name" in call
    if not flat:
        fn = call.get("function")
        where = f"{field}.function"
        if fn is None:
            raise ToolCallError(
                'missing: a tool call needs {"function": {"name": ..., "arguments": {...}}}',
                field=where,
                location=loc,
            )
        if not isinstance(fn, Mapping):
            raise ToolCallError(f"must be an object, got {_kind(fn)}", field=where, location=loc)
    else:  # flat {"name", "arguments"}
        fn, where = call, field
    name = fn.get("name")
    if name is None:
        raise ToolCallError("missing: a tool call needs a function name", field=f"{where}.name",
                            location=loc)  # fmt: skip
    if not isinstance(name, str) or not name.strip():
        raise ToolCallError(f"must be a non-empty string, got {_kind(name)} {name!r}",
                            field=f"{where}.name", location=loc)  # fmt: skip
    args_field = f"{where}.arguments"
    if "arguments" not in fn:
        raise ToolCallError("missing (a call without arguments has {})", field=args_field,
                            location=loc)  # fmt: skip
    args = fn["arguments"]
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError as exc:
            raise ToolCallError(f"not valid JSON ({exc})", field=args_field,
                                location=loc) from None  # fmt: skip
    if not isinstance(args, Mapping):
        raise ToolCallError(f"not a JSON object (got {_kind(args)})", field=args_field,
                            location=loc)  # fmt: skip
    fn = {**fn, "arguments": dict(args)}
    return fn if flat else {**call, "function": fn}


def check_tool_calls(
    calls: Any, field: str, *, location: Location | None = None
) -> tuple[dict[str, Any], ...] | None:
    """A message's ``tool_calls`` validated with :func:`check_tool_call` (``None`` when
    empty); ``field`` is the list's path, e.g. ``messages[2].tool_calls``."""
    if calls is None:
        return None
    if isinstance(calls, (str, bytes, Mapping)) or not isinstance(calls, Sequence):
        raise ToolCallError(f"must be a list of tool calls, got {_kind(calls)}", field=field,
                            location=location or Location())  # fmt: skip
    out = tuple(check_tool_call(c, f"{field}[{j}]", location=location) for j, c in enumerate(calls))
    return out or None


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class Message:
    """One turn.

    ``tool_calls`` (assistant messages) are OpenAI-style calls ``{"id"?, "type"?,
    "function": {"name", "arguments"}}`` with ``arguments`` a JSON object (see
    :func:`check_tool_calls`); ``tool_call_id`` and ``name`` say which call a ``tool``
    message answers.

    ``train`` overrides the encoding policy for this message: ``True`` trains its content
    (and end marker) whatever the role, ``False`` never trains it, ``None`` follows the
    policy. ``input`` carries the supplementary context of instruction-style data (Alpaca's
    ``input`` field): templates with an input slot (``alpaca``, ``nous_hermes``, ``yayi``)
    place it there; every other template appends it to ``content`` after a blank line.
    """

    role: str
    content: str
    train: bool | None = None
    input: str | None = None
    name: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] | None = None
    tool_call_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.train is not None:
            out["train"] = self.train
        if self.input:
            out["input"] = self.input
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [dict(c) for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out

    @property
    def content_with_input(self) -> str:
        """The content as a template without an input slot shows it."""
        if self.input:
            return f"{self.content}\n\n{self.input}" if self.content else self.input
        return self.content


@dataclass(frozen=True)
class Conversation:
    """An ordered list of messages, optional tool schemas and provenance metadata.

    ``kind`` is ``"chat"`` for conversations and ``"text"`` for plain documents used as
    pretraining replay (one message holding the text).
    """

    messages: tuple[Message, ...]
    tools: tuple[Mapping[str, Any], ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    kind: str = KIND_CHAT

    def __post_init__(self) -> None:
        # Freeze containers so a Conversation can be shared between stages safely.
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "meta", _frozen_mapping(self.meta))
        if self.tools is not None:
            object.__setattr__(self, "tools", tuple(self.tools))

    def __reduce__(self) -> tuple:
        # MappingProxyType does not pickle; rebuild from a plain dict (worker processes).
        return (Conversation, (self.messages, self.tools, dict(self.meta), self.kind))

    # -- views -------------------------------------------------------------------------
    @property
    def system(self) -> str | None:
        """The system prompt if the first message is a system message."""
        if self.messages and self.messages[0].role == "system":
            return self.messages[0].content
        return None

    @property
    def turns(self) -> tuple[Message, ...]:
        """Messages after the leading system message."""
        return self.messages[1:] if self.system is not None else self.messages

    @property
    def location(self) -> Location:
        m = self.meta
        return Location(
            source=m.get("source"),
            line=m.get("line"),
            index=m.get("index"),
            sample_id=None if m.get("id") is None else str(m.get("id")),
        )

    def with_messages(self, messages: Iterable[Message]) -> Conversation:
        return Conversation(tuple(messages), tools=self.tools, meta=self.meta, kind=self.kind)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"messages": [m.to_dict() for m in self.messages]}
        if self.tools:
            out["tools"] = [dict(t) for t in self.tools]
        if self.kind != KIND_CHAT:
            out["kind"] = self.kind
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def text(cls, text: str, meta: Mapping[str, Any] | None = None) -> Conversation:
        """A plain-text document for replay mixing."""
        return cls((Message("assistant", text),), meta=meta or {}, kind=KIND_TEXT)

    # -- validation ----------------------------------------------------------------------
    def validate(self, *, for_training: bool = True, alternating: bool = False) -> Conversation:
        """Raise :class:`ConversationError` naming the sample and field if invalid.

        ``for_training`` requires an assistant turn at the end; ``alternating`` requires
        strict user/assistant alternation (templates such as ``llama2`` need it).
        """
        loc = self.location
        if not self.messages:
            raise ConversationError("conversation has no messages", field="messages", location=loc)
        for i, msg in enumerate(self.messages):
            where = f"messages[{i}]"
            if msg.role not in ROLES:
                raise ConversationError(
                    f"unknown role {msg.role!r} (expected one of {', '.join(ROLES)})",
                    field=f"{where}.role",
                    location=loc,
                )
            if not isinstance(msg.content, str):
                raise ConversationError(
                    f"content must be a string, got {type(msg.content).__name__}",
                    field=f"{where}.content",
                    location=loc,
                )
            if msg.role == "system" and i != 0:
                raise ConversationError(
                    "a system message is only allowed as the first message",
                    field=f"{where}.role",
                    location=loc,
                )
            if msg.role == "assistant" and not msg.content.strip() and not msg.tool_calls:
                raise ConversationError(
                    "assistant content is empty", field=f"{where}.content", location=loc
                )
            _check_tool_fields(msg, where, loc)
        if self.kind == KIND_TEXT:
            return self
        offset = 1 if self.system is not None else 0
        turns = self.turns
        if not turns:
            raise ConversationError(
                "conversation has only a system message", field="messages", location=loc
            )
        if alternating:
            for j, msg in enumerate(turns):
                expected = "user" if j % 2 == 0 else "assistant"
                if msg.role != expected:
                    raise ConversationError(
                        f"roles must alternate user/assistant; expected {expected!r}, "
                        f"got {msg.role!r}",
                        field=f"messages[{j + offset}].role",
                        location=loc,
                    )
        elif turns[0].role == "assistant":
            raise ConversationError(
                "conversation starts with an assistant turn (expected user)",
                field=f"messages[{offset}].role",
                location=loc,
            )
        if for_training and turns[-1].role != "assistant":
            raise ConversationError(
                f"conversation ends with a {turns[-1].role!r} turn; training needs a final "
                "assistant answer",
                field=f"messages[{len(self.messages) - 1}].role",
                location=loc,
            )
        return self


def _check_tool_fields(msg: Message, where: str, loc: Location) -> None:
    """Tool calls only on assistant messages, and well formed; ``tool_call_id`` only on
    tool results; ``name`` and ``tool_call_id`` strings."""
    if msg.tool_calls:
        if msg.role != "assistant":
            raise ToolCallError(
                f"tool calls are only allowed on assistant messages, not {msg.role!r}",
                field=f"{where}.tool_calls",
                location=loc,
            )
        check_tool_calls(msg.tool_calls, f"{where}.tool_calls", location=loc)
    for key in ("name", "tool_call_id"):
        value = getattr(msg, key)
        if value is not None and not isinstance(value, str):
            raise ConversationError(
                f"must be a string, got {_kind(value)}", field=f"{where}.{key}", location=loc
            )
    if msg.tool_call_id is not None and msg.role != "tool":
        raise ToolCallError(
            f"tool_call_id is only allowed on tool messages, not {msg.role!r}",
            field=f"{where}.tool_call_id",
            location=loc,
        )


# -- conversion from plain data -------------------------------------------------------------
ConversationLike = Conversation | Sequence[Mapping[str, Any]] | Mapping[str, Any]


def _message_from_mapping(obj: Mapping[str, Any], i: int, loc: Location) -> Message:
    if not isinstance(obj, Mapping):
        raise ConversationError(
            f"message must be an object with 'role' and 'content', got {type(obj).__name__}",
            field=f"messages[{i}]",
            location=loc,
        )
    if "role" not in obj:
        raise ConversationError("missing 'role'", field=f"messages[{i}].role", location=loc)
    content = obj.get("content")
    if content is None:
        content = ""
    if isinstance(content, list):  # OpenAI typed content parts: keep the text parts
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, Mapping) and part.get("type", "text") == "text":
                texts.append(str(part.get("text", part.get("value", ""))))
            else:
                raise ConversationError(
                    "only text content parts are supported",
                    field=f"messages[{i}].content[{j}]",
                    location=loc,
                )
        content = "".join(texts)
    train = obj.get("train")
    if train is not None and not isinstance(train, bool):
        raise ConversationError(
            f"'train' must be true, false or absent, got {train!r}",
            field=f"messages[{i}].train",
            location=loc,
        )
    tool_calls = obj.get("tool_calls")
    legacy = obj.get("function_call")
    if tool_calls is None and legacy is not None:  # legacy OpenAI: one call, no id
        if not isinstance(legacy, Mapping):
            raise ToolCallError(
                f"must be an object, got {_kind(legacy)}",
                field=f"messages[{i}].function_call",
                location=loc,
            )
        tool_calls = [{"type": "function", "function": legacy}]
    msg = Message(
        role=str(obj["role"]),
        content=content,
        train=train,
        input=obj.get("input") or None,
        name=obj.get("name"),
        tool_calls=check_tool_calls(tool_calls, f"messages[{i}].tool_calls", location=loc),
        tool_call_id=obj.get("tool_call_id"),
    )
    _check_tool_fields(msg, f"messages[{i}]", loc)
    return msg


def as_conversation(
    obj: ConversationLike, *, meta: Mapping[str, Any] | None = None
) -> Conversation:
    """Accept a Conversation, a list of OpenAI-style message dicts, or ``{"messages": [...]}``."""
    if isinstance(obj, Conversation):
        return obj
    loc = Location(**{k: v for k, v in (meta or {}).items() if k in ("source", "line", "index")})
    tools = None
    kind = KIND_CHAT
    extra_meta: dict[str, Any] = dict(meta or {})
    if isinstance(obj, Mapping):
        if "messages" not in obj:
            raise ConversationError(
                "expected an object with a 'messages' list", field="messages", location=loc
            )
        tools = obj.get("tools")
        kind = obj.get("kind", KIND_CHAT)
        extra_meta = {**dict(obj.get("meta") or {}), **extra_meta}
        obj = obj["messages"]
    if isinstance(obj, (str, bytes)) or not isinstance(obj, Sequence):
        raise ConversationError(
            f"messages must be a list, got {type(obj).__name__}", field="messages", location=loc
        )
    messages = tuple(_message_from_mapping(m, i, loc) for i, m in enumerate(obj))
    return Conversation(messages, tools=tuple(tools) if tools else None, meta=extra_meta, kind=kind)
