"""Jinja interop: render a tokenizer's own ``chat_template`` (the ``hf`` template) in a
sandbox, and export any built-in template as a Hugging Face ``chat_template``.

Segments of a jinja template are found by rendering successive prefixes of the
conversation: the text before assistant turn k is ``render(messages[:k],
add_generation_prompt=True)``, which is by definition what inference feeds. A template
whose renders are not prefixes of each other (some templates rewrite history, e.g. strip
reasoning from earlier turns) cannot give one training sequence that is consistent with
inference for every turn; that raises a :class:`TemplateError` naming the turn.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.ext import Extension

from sftforge.errors import TemplateError
from sftforge.templates.base import (
    AFTER,
    ANSWER,
    CONTENT_NOT_RENDERED,
    END,
    HEADER,
    TOOL_CALLS_NOT_RENDERED,
    USER,
    ChatTemplate,
    Segment,
    SpecialTokens,
    Template,
    UnrenderableConversation,
    split_format,
)
from sftforge.templates.sandbox import (
    compile_bounded,
    make_environment,
    one_deadline,
    render_bounded,
)
from sftforge.types import KIND_TEXT, ConversationLike, as_conversation


class _GenerationTag(Extension):
    """Accept ``{% generation %}...{% endgeneration %}`` (HF assistant-mask markers).

    Rendering ignores them: our masks come from segments, not from these markers.
    """

    tags = frozenset({"generation"})

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body).set_lineno(lineno)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:  # fmt: skip
    # Same as transformers: no HTML escaping, options exposed. (The sandbox bounds indent.)
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


@lru_cache(maxsize=64)
def compile_chat_template(source: str, origin: str = "") -> jinja2.Template:
    """Compile in the bounded sandbox (:mod:`sftforge.templates.sandbox`), configured like
    ``transformers`` (trim_blocks, lstrip_blocks, ``tojson``, ``raise_exception``)."""
    env = make_environment(
        extensions=[_GenerationTag],
        filters={"tojson": _tojson},
        globals_={
            "raise_exception": _raise_exception,
            "strftime_now": lambda fmt: datetime.now().strftime(fmt),
        },
    )
    return compile_bounded(env, source, origin)


#: Strings that close a turn in common chat templates (looked for after an answer).
_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                "<｜end▁of▁sentence｜>", "</s>", "<|end_of_text|>")  # fmt: skip


class JinjaChatTemplate(ChatTemplate):
    """A jinja ``chat_template`` (a tokenizer's own, or any other) as a sftforge template."""

    def __init__(
        self,
        source: str,
        *,
        bos_token: str = "",
        eos_token: str = "</s>",
        name: str = "hf",
        origin: str = "",
    ) -> None:
        if not isinstance(source, str) or not source.strip():
            raise TemplateError("chat_template is empty")
        self.source = source
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.origin = origin
        self._compiled = compile_chat_template(source, origin or name)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> JinjaChatTemplate:
        source = getattr(tokenizer, "chat_template", None)
        if isinstance(source, Mapping):  # named templates: take the default one
            source = source.get("default") or next(iter(source.values()), None)
        if not source:
            raise TemplateError(
                "template 'hf': this tokenizer has no chat_template; name a built-in template "
                "instead (sftforge templates list)"
            )
        return cls(
            source,
            bos_token=tokenizer.bos_token or "",
            eos_token=tokenizer.eos_token or "",
            origin=getattr(tokenizer, "name_or_path", "") or "",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "jinja",
            "name": self.name,
            "chat_template": self.source,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "origin": self.origin,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JinjaChatTemplate:
        return cls(
            data["chat_template"],
            bos_token=data.get("bos_token", ""),
            eos_token=data.get("eos_token", "</s>"),
            name=data.get("name", "hf"),
            origin=data.get("origin", ""),
        )

    def stop_strings(self, tokenizer: Any | None = None) -> tuple[str, ...]:
        tokens = SpecialTokens.resolve(self, tokenizer)
        stops = [m for m in _END_MARKERS if m in self.source and m != tokens.eos]
        return tuple(dict.fromkeys([*stops, tokens.eos]))

    def render_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = False,
        tokens: SpecialTokens,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        return render_bounded(
            self._compiled,
            self.origin or self.name,
            messages=list(messages),
            add_generation_prompt=add_generation_prompt,
            bos_token=tokens.bos,
            eos_token=tokens.eos,
            tools=list(tools) if tools else None,
        )

    def render_segments(
        self,
        conversation: ConversationLike,
        *,
        add_generation_prompt: bool = False,
        tokenizer: Any | None = None,
        validate: bool = True,
    ) -> list[Segment]:
        conv = as_conversation(conversation)
        tokens = SpecialTokens(
            (tokenizer.bos_token or "") if tokenizer is not None else self.bos_token,
            (tokenizer.eos_token or "") if tokenizer is not None else self.eos_token,
        )
        if conv.kind == KIND_TEXT:
            return [Segment(conv.messages[0].content, "text", 0, True), Segment(tokens.eos, END, 0)]
        if validate:
            conv.validate(for_training=not add_generation_prompt)
        msgs = [m.to_dict() for m in conv.messages]
        keeps_input = "'input'" in self.source  # templates exported by sftforge use it
        for m, message in zip(msgs, conv.messages, strict=True):
            m.pop("train", None)  # our own key, not part of the jinja message schema
            if message.input and not keeps_input:
                m["content"] = message.content_with_input
                m.pop("input", None)

        def render(upto: int, gen: bool) -> str:
            return self.render_messages(msgs[:upto], add_generation_prompt=gen, tokens=tokens,
                                        tools=conv.tools)  # fmt: skip

        with one_deadline(self.origin or self.name):  # one budget for all its renders
            segs = self._segments(conv, msgs, render, add_generation_prompt, tokens)
        _check_rendered(segs, conv, tokens)
        return segs

    def _segments(
        self,
        conv: Any,
        msgs: list[dict[str, Any]],
        render: Any,
        add_generation_prompt: bool,
        tokens: SpecialTokens,
    ) -> list[Segment]:
        full = render(len(msgs), add_generation_prompt)
        segs: list[Segment] = []
        pos = 0
        for k, msg in enumerate(conv.messages):
            if msg.role != "assistant":
                continue
            prompt = render(k, True)
            through = render(k + 1, False)
            if not (through.startswith(prompt) and full.startswith(through)):
                raise TemplateError(
                    f"chat_template is not prefix-stable at messages[{k}]: the prompt for "
                    "this turn is not a prefix of the rendered conversation, so no single "
                    "training sequence matches inference for every turn"
                )
            if len(prompt) > pos:
                segs.append(Segment(full[pos : len(prompt)], USER, None))
            segs.extend(_split_answer(through[len(prompt) :], msg.content, k, tokens))
            pos = len(through)
        if pos < len(full):
            segs.append(Segment(full[pos:], HEADER, None))
        return segs


def _check_rendered(segs: list[Segment], conv: Any, tokens: SpecialTokens) -> None:
    """Refuse a conversation whose assistant turn the template rendered without its tool
    calls or content (:class:`UnrenderableConversation`, counted by the encoder)."""
    for index, msg in enumerate(conv.messages):
        if msg.role == "assistant" and (msg.tool_calls or msg.content.strip()):
            region = "".join(s.text for s in segs if s.message == index)
            _check_turn(region, msg, index, conv, tokens)


def _check_turn(region: str, msg: Any, index: int, conv: Any, tokens: SpecialTokens) -> None:
    """Refuse an assistant turn the template rendered without its tool calls or content.

    A chat template without a tool convention (SmolLM2's, say) prints only
    ``message['content']``: a call-only turn would train an empty answer. A call counts
    as rendered when its function name and every argument name appear in the turn's
    region; content when the region holds any text besides end markers."""
    for j, call in enumerate(msg.tool_calls or ()):
        fn = call.get("function", call) if isinstance(call, Mapping) else {}
        args = fn.get("arguments")
        names = [str(fn.get("name", ""))]
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                args = None
        if isinstance(args, Mapping):
            names += [str(key) for key in args]
        missing = [n for n in names if n not in region]
        if missing:
            raise UnrenderableConversation(
                "this chat_template does not render the assistant's tool call (no "
                f"{missing[0]!r} in its answer); it would be trained without it. Use a "
                "template with a tool-call convention (chatml, llama3, or a model's own "
                "template that supports tools)",
                code=TOOL_CALLS_NOT_RENDERED,
                field=f"messages[{index}].tool_calls[{j}]",
                location=conv.location,
            )
    if msg.content.strip():
        text = region
        for marker in (tokens.eos, *_END_MARKERS):
            if marker:
                text = text.replace(marker, "")
        if not text.strip():
            raise UnrenderableConversation(
                "this chat_template renders the assistant's content as nothing; it would be "
                "trained as an empty answer",
                code=CONTENT_NOT_RENDERED,
                field=f"messages[{index}].content",
                location=conv.location,
            )


def _split_answer(region: str, content: str, index: int, tokens: SpecialTokens) -> list[Segment]:
    """Split an answer region into answer text, trained end marker and untrained rest."""
    core = content.strip()
    start = region.find(core) if core else 0
    content_end = start + len(core) if start >= 0 else 0
    markers = [m for m in (tokens.eos, *_END_MARKERS) if m]
    hits = [(region.find(m, content_end), m) for m in markers]
    hits = [(i, m) for i, m in hits if i >= 0]
    if hits:
        i, marker = min(hits)
        answer, end, rest = region[:i], marker, region[i + len(marker) :]
    else:  # no end token: the answer runs to the trailing whitespace
        stripped = region.rstrip()
        answer, end, rest = stripped, "", region[len(stripped) :]
    out = [Segment(answer, ANSWER, index, True)]
    if end:
        out.append(Segment(end, END, index))
    if rest:
        out.append(Segment(rest, AFTER, index))
    return out


# -- export: built-in template -> Hugging Face chat_template ---------------------------------
def _lit(text: str) -> str:
    """A jinja expression printing ``text`` exactly (escaped as a string literal)."""
    return "{{ " + json.dumps(text) + " }}" if text else ""


def _fmt_expr(fmt: str, values: Mapping[str, str]) -> str:
    """Jinja code printing a format string; placeholders become jinja expressions."""
    out = []
    for part in re.split(r"(\{(?:content|system|input|bos|eos)\})", fmt):
        if not part:
            continue
        key = part[1:-1] if part.startswith("{") and part.endswith("}") else None
        if key in values:
            out.append("{{ " + values[key] + " }}")
        else:
            out.append(_lit(part))
    return "".join(out)


def to_hf_chat_template(template: Template) -> str:
    """Export a built-in template as a Hugging Face jinja ``chat_template``.

    Answers are wrapped in ``{% generation %}`` markers so that
    ``apply_chat_template(..., return_assistant_tokens_mask=True)`` works. The output is a
    single line (no whitespace outside tags), so ``trim_blocks``/``lstrip_blocks`` change
    nothing.
    """
    t = template
    tok = {"bos": "bos_token", "eos": "eos_token"}

    def expr(fmt: str, **extra: str) -> str:
        return _fmt_expr(fmt, {**tok, **extra})

    strip = " | trim" if t.strip_content else ""
    parts: list[str] = []
    add = parts.append
    add(expr(t.prefix))
    # System prompt in effect.
    add("{% if messages and messages[0]['role'] == 'system' %}")
    add("{% set system = messages[0]['content'] %}{% set loop_messages = messages[1:] %}")
    add("{% else %}{% set loop_messages = messages %}")
    default = json.dumps(t.default_system or "")
    if t.default_system_with_input:
        add("{% if loop_messages and loop_messages[0].get('input') %}")
        add("{% set system = " + json.dumps(t.default_system_with_input) + " %}")
        add("{% else %}{% set system = " + default + " %}{% endif %}")
    else:
        add("{% set system = " + default + " %}")
    add("{% endif %}")
    if t.system_format is not None:
        before, after = split_format(t.system_format, "{system}")
        add("{% if system %}" + expr(before) + "{{ system" + strip + " }}" + expr(after))
        add("{% endif %}")
        add("{% set ns = namespace(pending='', seen_user=false, prev_answer=false) %}")
    else:
        add("{% set ns = namespace(pending=system, seen_user=false, prev_answer=false) %}")
    cont_active = (
        bool(t.continuation_marker)
        and not t.after_turn
        and (t.end_of_turn_mid == "" or (t.end_of_turn_mid is None and t.end_of_turn == ""))
    )
    add("{% for message in loop_messages %}")
    # -- user
    add("{% if message['role'] == 'user' %}{% set content = message['content'] %}")
    add("{% set has_input = message.get('input') %}")
    if t.user_input_format is None:
        add("{% if has_input %}{% set content = content + '\\n\\n' + message['input'] %}")
        add("{% endif %}")
    if t.system_format is None:
        merged = _fmt_expr_as_concat(t.system_merge_format)
        add("{% if ns.pending %}{% set content = " + merged + " %}{% set ns.pending = '' %}")
        add("{% endif %}")
    if t.strip_content:
        add("{% set content = content | trim %}")
    add("{% if ns.seen_user %}" + expr(t.turn_separator) + "{% endif %}")

    def user_block(fmt: str) -> str:
        before, after = split_format(fmt)
        code = ""
        if cont_active:
            marker = t.continuation_marker or ""
            code += (
                "{% if ns.prev_answer %}{% generation %}"
                + expr(marker)
                + "{% endgeneration %}"
                + expr(before[len(marker) :])
                + "{% else %}"
                + expr(before)
                + "{% endif %}"
            )
        else:
            code += expr(before)
        code += "{{ content }}"
        if "{input}" in after:
            in_before, in_after = split_format(after, "{input}")
            code += expr(in_before) + "{{ message['input']" + strip + " }}" + expr(in_after)
        else:
            code += expr(after)
        return code

    if t.user_input_format is not None:
        add("{% if has_input %}" + user_block(t.user_input_format) + "{% else %}")
        add(user_block(t.user_format) + "{% endif %}")
    else:
        add(user_block(t.user_format))
    add("{% set ns.seen_user = true %}{% set ns.prev_answer = false %}")
    # -- tool
    if t.tool_format is not None:
        before, after = split_format(t.tool_format)
        add("{% elif message['role'] == 'tool' %}" + expr(before))
        add("{{ message['content']" + strip + " }}" + expr(after))
        add("{% set ns.prev_answer = false %}")
    # -- assistant
    before, after = split_format(t.assistant_format)
    add("{% elif message['role'] == 'assistant' %}" + expr(t.assistant_header))
    add("{% set content = message['content'] %}")
    if t.tool_format is not None:
        # One JSON object per call, joined by newlines, after the content (no list
        # mutation: transformers' ImmutableSandboxedEnvironment forbids calls.append).
        add("{% if message.get('tool_calls') %}")
        add("{% set calls = message['tool_calls'] | map('tojson') | join('\\n') %}")
        add("{% set content = (content + '\\n' + calls) if content else calls %}{% endif %}")
    else:  # no tool convention: refuse, as render() does
        add("{% if message.get('tool_calls') %}{{ raise_exception('template " + t.name)
        add(" has no tool-call convention') }}{% endif %}")
    add("{% generation %}" + expr(before) + "{{ content" + strip + " }}" + expr(after))
    if t.end_of_turn_mid is not None:
        add("{% if loop.last %}" + expr(t.end_of_turn) + "{% else %}" + expr(t.end_of_turn_mid))
        add("{% endif %}")
    else:
        add(expr(t.end_of_turn))
    add("{% endgeneration %}" + expr(t.after_turn) + "{% set ns.prev_answer = true %}")
    add("{% else %}{{ raise_exception('template " + t.name + " cannot render role ' + ")
    add("message['role']) }}{% endif %}{% endfor %}")
    add("{% if add_generation_prompt %}" + expr(t.assistant_header) + "{% endif %}")
    return "".join(parts)


def _fmt_expr_as_concat(fmt: str) -> str:
    """A jinja expression (string concatenation) for the system-merge format."""
    pieces = []
    for part in re.split(r"(\{(?:system|content)\})", fmt):
        if not part:
            continue
        if part == "{system}":
            pieces.append("ns.pending")
        elif part == "{content}":
            pieces.append("content")
        else:
            pieces.append(json.dumps(part))
    return " + ".join(pieces)
