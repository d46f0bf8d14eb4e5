"""Templates render a conversation as ordered segments; masks are born here.

A template never returns just a string: it returns :class:`Segment` objects, each a piece
of text with the message it belongs to and its kind (``answer``, ``end``, ``user`` ...).
The encoder decides which segments are trained from their kind and the policy, so the
loss mask is never recovered afterwards by searching the text or the token ids.

Two kinds of template implement :class:`ChatTemplate`:

* :class:`Template`: a built-in, declarative format (format strings with ``{content}``,
  ``{system}``, ``{input}``, ``{bos}``, ``{eos}`` placeholders), see ``builtin.py``;
* :class:`sftforge.templates.jinja.JinjaChatTemplate`: any tokenizer's jinja
  ``chat_template``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sftforge.errors import ConversationError, Location, TemplateError
from sftforge.types import KIND_TEXT, Conversation, ConversationLike, Message, as_conversation

# Segment kinds. ``answer`` and ``end`` of assistant messages are what the model learns.
PREFIX, SYSTEM, SEP, USER, TOOL, HEADER, ANSWER, END, AFTER, TEXT = (
    "prefix", "system", "sep", "user", "tool", "header", "answer", "end", "after", "text",
)  # fmt: skip
#: Kinds a message's own ``train`` override switches on: the message text itself.
CONTENT_KINDS = frozenset({USER, TOOL, SYSTEM, ANSWER, TEXT})


#: Reason keys of :class:`UnrenderableConversation` (counted by the encoder as drops).
TEMPLATE_WITHOUT_TOOLS = "template_without_tools"
TOOL_CALLS_NOT_RENDERED = "tool_calls_not_rendered"
CONTENT_NOT_RENDERED = "content_not_rendered"


class UnrenderableConversation(ConversationError):
    """This template cannot render part of this conversation (its tool calls, say).

    The sample is refused, never trained with that part missing: the encoder counts it
    as a drop under ``code`` (:data:`TEMPLATE_WITHOUT_TOOLS`, :data:`TOOL_CALLS_NOT_RENDERED`,
    :data:`CONTENT_NOT_RENDERED`)."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        field: str | None = None,
        location: Location | None = None,
    ) -> None:
        self.code = code
        super().__init__(message, field=field, location=location)

    def at(self, location: Location) -> UnrenderableConversation:
        return UnrenderableConversation(
            self.reason, code=self.code, field=self.field, location=location
        )


@dataclass(frozen=True)
class Segment:
    """A piece of rendered text.

    ``message`` is the index in ``conversation.messages`` the piece belongs to (``None``
    for template scaffolding such as a BOS prefix). ``is_content`` marks the message's own
    text as opposed to the template markup around it.
    """

    text: str
    kind: str
    message: int | None = None
    is_content: bool = False

    @property
    def is_answer_part(self) -> bool:
        """Part of what an assistant turn generates: its answer text and end marker."""
        return self.kind in (ANSWER, END)


@dataclass(frozen=True)
class SpecialTokens:
    """The BOS/EOS strings placed into the text.

    Without a tokenizer a template uses its conventional strings; with one, the tokenizer's
    own ``bos_token`` / ``eos_token`` (so ids come out as the real special ids).
    """

    bos: str
    eos: str

    @classmethod
    def resolve(cls, template: ChatTemplate, tokenizer: Any | None = None) -> SpecialTokens:
        if tokenizer is None:
            return cls(template.bos_token, template.eos_token)
        bos = getattr(tokenizer, "bos_token", None) or ""
        eos = getattr(tokenizer, "eos_token", None) or template.eos_token
        # A template whose format has no BOS must not gain one from the tokenizer.
        return cls(bos if template.bos_token else "", eos)


class ChatTemplate(ABC):
    """What every template offers: one render path for training and inference."""

    name: str
    bos_token: str
    eos_token: str

    @abstractmethod
    def render_segments(
        self,
        conversation: ConversationLike,
        *,
        add_generation_prompt: bool = False,
        tokenizer: Any | None = None,
        validate: bool = True,
    ) -> list[Segment]:
        """The conversation as ordered segments."""

    @abstractmethod
    def stop_strings(self, tokenizer: Any | None = None) -> tuple[str, ...]:
        """Strings that end a generated answer (the end-of-turn marker first)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The full, JSON-serialisable definition (written as ``template.json``)."""

    def render(
        self,
        conversation: ConversationLike,
        *,
        add_generation_prompt: bool = False,
        tokenizer: Any | None = None,
    ) -> str:
        """The exact text: the training text, or with ``add_generation_prompt`` the prompt
        inference feeds (everything up to where the assistant starts writing)."""
        segs = self.render_segments(
            conversation, add_generation_prompt=add_generation_prompt, tokenizer=tokenizer
        )
        return "".join(s.text for s in segs)


_PLACEHOLDER = re.compile(r"\{(content|system|input|bos|eos)\}")


def fill(fmt: str, **values: str) -> str:
    """Substitute ``{name}`` placeholders in one pass.

    One pass matters: message content may itself contain ``{eos}`` or braces, and must
    come out verbatim (``str.format`` would choke on braces in user text).
    """

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise TemplateError(f"placeholder {{{key}}} has no value in format {fmt!r}")
        return values[key]

    return _PLACEHOLDER.sub(sub, fmt)


def split_format(fmt: str, placeholder: str = "{content}") -> tuple[str, str]:
    """Split a block format around its single content placeholder."""
    if fmt.count(placeholder) != 1:
        raise TemplateError(f"format {fmt!r} must contain {placeholder} exactly once")
    before, after = fmt.split(placeholder)
    return before, after


@dataclass(frozen=True)
class Template(ChatTemplate):
    """A built-in conversation format, as data.

    Rendering, in order:

    ``prefix`` (once) -> system block (``system_format``; without a slot the system text is
    merged into the first user message with ``system_merge_format``) -> for each message:
    user block (``turn_separator`` before every user block but the first), tool block
    (``tool_format``; a template without one refuses tool results and assistant tool
    calls with :class:`UnrenderableConversation`, code ``template_without_tools``), or
    ``assistant_header`` + ``assistant_format`` (the answer) + ``end_of_turn`` (trained end
    marker; ``end_of_turn_mid`` when more turns follow) + ``after_turn`` (untrained). A
    generation prompt is the ``assistant_header``.
    """

    name: str
    summary: str
    source: str
    notes: str = ""
    bos_token: str = ""
    eos_token: str = "</s>"
    prefix: str = ""
    system_format: str | None = None
    system_merge_format: str = "{system}\n\n{content}"
    default_system: str | None = None
    default_system_with_input: str | None = None
    user_format: str = "{content}"
    user_input_format: str | None = None
    turn_separator: str = ""
    assistant_header: str = ""
    assistant_format: str = "{content}"
    end_of_turn: str = "{eos}"
    end_of_turn_mid: str | None = None
    continuation_marker: str | None = None
    after_turn: str = ""
    tool_format: str | None = None
    strip_content: bool = False
    requires_alternation: bool = True
    extra_stop_strings: tuple[str, ...] = ()
    golden: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for attr in ("user_format", "assistant_format"):
            split_format(getattr(self, attr))
        if self.user_input_format is not None:
            split_format(self.user_input_format)
        if self.tool_format is not None:
            split_format(self.tool_format)
        if self.system_format is not None:
            split_format(self.system_format, "{system}")
        if self.continuation_marker is not None and not self.user_format.startswith(
            self.continuation_marker
        ):
            raise TemplateError(
                f"{self.name}: continuation_marker must start user_format "
                f"({self.continuation_marker!r} vs {self.user_format!r})"
            )

    # -- properties ------------------------------------------------------------------------
    @property
    def has_system_slot(self) -> bool:
        return self.system_format is not None

    def stop_strings(self, tokenizer: Any | None = None) -> tuple[str, ...]:
        tokens = SpecialTokens.resolve(self, tokenizer)
        stops: list[str] = []
        for candidate in (self.end_of_turn, self.end_of_turn_mid, self.continuation_marker):
            if candidate:
                text = fill(candidate, bos=tokens.bos, eos=tokens.eos).strip()
                if text and text not in stops:
                    stops.append(text)
        for s in (*self.extra_stop_strings, tokens.eos):
            if s and s not in stops:
                stops.append(s)
        return tuple(stops)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["golden"] = dict(self.golden)
        data["extra_stop_strings"] = list(self.extra_stop_strings)
        data["type"] = "builtin"
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Template:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known - {"type"}
        if unknown:
            raise TemplateError(f"unknown template field(s): {', '.join(sorted(unknown))}")
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["extra_stop_strings"] = tuple(kwargs.get("extra_stop_strings", ()))
        return cls(**kwargs)

    # -- rendering ---------------------------------------------------------------------------
    def _content(self, text: str) -> str:
        return text.strip() if self.strip_content else text

    def _system_text(self, conv: Conversation) -> str | None:
        """The system prompt in effect: the conversation's, else the default (if any).

        An explicit empty system message means "no system prompt".
        """
        if conv.system is not None:
            return conv.system or None
        turns = conv.turns
        first_user = next((m for m in turns if m.role == "user"), None)
        if first_user is not None and first_user.input and self.default_system_with_input:
            return self.default_system_with_input
        return self.default_system

    def render_segments(
        self,
        conversation: ConversationLike,
        *,
        add_generation_prompt: bool = False,
        tokenizer: Any | None = None,
        validate: bool = True,
    ) -> list[Segment]:
        conv = as_conversation(conversation)
        tokens = SpecialTokens.resolve(self, tokenizer)
        if conv.kind == KIND_TEXT:
            return self._render_text(conv, tokens)
        if self.tool_format is None:
            self._refuse_tools(conv)
        if validate:
            conv.validate(
                for_training=not add_generation_prompt, alternating=self.requires_alternation
            )
        p = _compile(self, tokens)
        segs: list[Segment] = []

        def emit(text: str, kind: str, message: int | None = None, content: bool = False) -> None:
            if text:
                segs.append(Segment(text, kind, message, content))

        emit(p.prefix, PREFIX)
        offset = 1 if conv.system is not None else 0
        system = self._system_text(conv)
        pending_system = None
        if system:
            if p.system is not None:
                sys_index = 0 if offset else None
                emit(p.system[0], SYSTEM, sys_index)
                emit(self._content(system), SYSTEM, sys_index, content=True)
                emit(p.system[1], SYSTEM, sys_index)
            else:
                pending_system = system

        turns = conv.turns
        seen_user = False
        for j, msg in enumerate(turns):
            index = j + offset
            role = msg.role
            if role == "user":
                content = msg.content
                with_input = bool(msg.input) and p.user_input is not None
                if msg.input and not with_input:
                    content = msg.content_with_input
                if pending_system is not None:
                    content = fill(self.system_merge_format, system=pending_system, content=content)
                    pending_system = None
                content = self._content(content)
                if seen_user:
                    emit(p.turn_separator, SEP)
                before, mid, after = p.user_input if with_input else p.user  # type: ignore[misc]
                if segs and segs[-1].kind == ANSWER and p.marker:
                    # The marker that opens the next turn is what ends the previous answer
                    # (Guanaco has no end token between turns): train it with that answer.
                    emit(p.marker, END, segs[-1].message)
                    before = before[len(p.marker) :]
                emit(before, USER, index)
                emit(content, USER, index, content=True)
                if with_input:
                    emit(mid, USER, index)
                    emit(self._content(msg.input or ""), USER, index, content=True)
                emit(after, USER, index)
                seen_user = True
            elif role == "assistant":
                emit(p.assistant_header, HEADER, index)
                emit(p.assistant[0], ANSWER, index)
                emit(self._content(_assistant_text(msg)), ANSWER, index, content=True)
                emit(p.assistant[1], ANSWER, index)
                is_last = j == len(turns) - 1
                emit(p.end_of_turn if is_last else p.end_of_turn_mid, END, index)
                emit(p.after_turn, AFTER, index)
            elif role == "tool":
                if p.tool is None:
                    raise UnrenderableConversation(
                        f"template {self.name!r} has no tool role; use a template with one "
                        "(chatml, llama3) or convert tool results to user messages",
                        code=TEMPLATE_WITHOUT_TOOLS,
                        field=f"messages[{index}].role",
                        location=conv.location,
                    )
                emit(p.tool[0], TOOL, index)
                emit(self._content(msg.content), TOOL, index, content=True)
                emit(p.tool[1], TOOL, index)
            else:  # pragma: no cover - validate() rejects other roles
                raise ConversationError(
                    f"role {role!r} cannot be rendered",
                    field=f"messages[{index}].role",
                    location=conv.location,
                )
        if pending_system is not None:
            raise ConversationError(
                f"template {self.name!r} merges the system prompt into the first user "
                "message, but the conversation has none",
                field="messages",
                location=conv.location,
            )
        if add_generation_prompt:
            emit(p.assistant_header, HEADER)
        return segs

    def _refuse_tools(self, conv: Conversation) -> None:
        """A template without a tool convention refuses tool calls and tool results
        (before the role-order checks, so the reason says what is missing)."""
        for i, msg in enumerate(conv.messages):
            if msg.tool_calls or msg.role == "tool":
                what = "tool calls" if msg.tool_calls else "tool results"
                raise UnrenderableConversation(
                    f"template {self.name!r} has no tool convention, so it cannot render "
                    f"{what}; use a template with one (chatml, llama3, or the model's own "
                    "'hf' template if it renders tool calls), or convert tool results to "
                    "user messages",
                    code=TEMPLATE_WITHOUT_TOOLS,
                    field=f"messages[{i}].tool_calls" if msg.tool_calls else f"messages[{i}].role",
                    location=conv.location,
                )

    def _render_text(self, conv: Conversation, tokens: SpecialTokens) -> list[Segment]:
        """Plain-text replay documents: BOS (if the format has one), text, EOS."""
        segs = []
        if self.bos_token and tokens.bos:
            segs.append(Segment(tokens.bos, PREFIX))
        segs.append(Segment(conv.messages[0].content, TEXT, 0, True))
        segs.append(Segment(tokens.eos, END, 0))
        return segs


@dataclass(frozen=True)
class _Parts:
    """A template's static text with BOS/EOS filled in, split around placeholders."""

    prefix: str
    system: tuple[str, str] | None
    user: tuple[str, str, str]
    user_input: tuple[str, str, str] | None
    turn_separator: str
    marker: str
    assistant_header: str
    assistant: tuple[str, str]
    end_of_turn: str
    end_of_turn_mid: str
    after_turn: str
    tool: tuple[str, str] | None


@lru_cache(maxsize=256)
def _compile(t: Template, tokens: SpecialTokens) -> _Parts:
    """Fill a template's static strings once per (template, special tokens)."""

    def f(fmt: str) -> str:
        return fill(fmt, bos=tokens.bos, eos=tokens.eos)

    def around(fmt: str, placeholder: str = "{content}") -> tuple[str, str]:
        before, after = split_format(fmt, placeholder)
        return f(before), f(after)

    user_input = None
    if t.user_input_format is not None:
        before, rest = split_format(t.user_input_format)
        mid, after = split_format(rest, "{input}")
        user_input = (f(before), f(mid), f(after))
    user_before, user_after = around(t.user_format)
    end = f(t.end_of_turn)
    return _Parts(
        prefix=f(t.prefix),
        system=around(t.system_format, "{system}") if t.system_format is not None else None,
        user=(user_before, "", user_after),
        user_input=user_input,
        turn_separator=f(t.turn_separator),
        marker=f(t.continuation_marker) if t.continuation_marker else "",
        assistant_header=f(t.assistant_header),
        assistant=around(t.assistant_format),
        end_of_turn=end,
        end_of_turn_mid=end if t.end_of_turn_mid is None else f(t.end_of_turn_mid),
        after_turn=f(t.after_turn),
        tool=around(t.tool_format) if t.tool_format is not None else None,
    )


def _assistant_text(msg: Message) -> str:
    """An assistant message's text; tool calls are rendered as JSON after the content."""
    if not msg.tool_calls:
        return msg.content
    calls = "\n".join(json.dumps(dict(c), ensure_ascii=False) for c in msg.tool_calls)
    return f"{msg.content}\n{calls}" if msg.content else calls
