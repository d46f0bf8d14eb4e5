"""Export a built-in template as an Ollama Modelfile (Go-template ``TEMPLATE``).

Ollama renders ``.System`` and ``.Messages`` through Go's text/template. llama.cpp adds
the model's BOS token itself (from the GGUF's ``add_bos_token``), so the template's
leading ``{bos}`` prefix is left out; a ``{bos}`` that opens every later turn (Llama-2)
is kept for turns after the first. The default system prompt becomes ``SYSTEM``; the
template's stop strings become ``PARAMETER stop`` lines.
"""

from __future__ import annotations

import re

from sftforge.templates.base import Template, split_format


def _go(fmt: str, *, bos: str, eos: str, content: str = "", system: str = "") -> str:
    """Go-template text for a format string; braces in literals are escaped."""
    out = []
    for part in re.split(r"(\{(?:content|system|input|bos|eos)\})", fmt):
        if part == "{content}":
            out.append(content)
        elif part == "{system}":
            out.append(system)
        elif part == "{input}":
            out.append("")  # Ollama messages carry no separate input field
        elif part == "{bos}":
            out.append(bos)
        elif part == "{eos}":
            out.append(eos)
        elif part:
            out.append(part.replace("{{", '{{ "{{" }}'))
    return "".join(out)


def to_ollama_template(template: Template) -> str:
    """The Go ``TEMPLATE`` body for a built-in template."""
    t = template
    bos, eos = t.bos_token, t.eos_token
    # Go templates have no trim: contents are used as given (templates with
    # strip_content, llama2 and llama3, expect clients to send stripped messages).
    content = "{{ .Content }}"
    out = [_go(t.prefix.replace("{bos}", ""), bos=bos, eos=eos)]
    if t.system_format is not None:
        before, after = split_format(t.system_format, "{system}")
        out.append("{{ if .System }}" + _go(before, bos=bos, eos=eos) + "{{ .System }}")
        out.append(_go(after, bos=bos, eos=eos) + "{{ end }}")
    # $first marks the first user message (Ollama's .Messages may also hold system
    # messages, so an index test would be wrong).
    out.append("{{ $first := true }}{{ range $i, $_ := .Messages }}")
    out.append("{{ $last := eq (len (slice $.Messages $i)) 1 }}")
    # user
    user_before, user_after = split_format(t.user_format)
    first_user_before = user_before
    if user_before.startswith("{bos}"):
        first_user_before = user_before[len("{bos}") :]
    out.append('{{ if eq .Role "user" }}')
    if t.turn_separator:
        out.append("{{ if not $first }}" + _go(t.turn_separator, bos=bos, eos=eos) + "{{ end }}")
    out.append(
        "{{ if $first }}"
        + _go(first_user_before, bos=bos, eos=eos)
        + "{{ else }}"
        + _go(user_before, bos=bos, eos=eos)
        + "{{ end }}"
    )
    if t.system_format is None:
        merge_before, merge_after = split_format(
            t.system_merge_format.replace("{system}", "\x00"), "{content}"
        )
        pieces = merge_before.split("\x00")
        sys_go = "{{ $.System }}".join(_go(piece, bos=bos, eos=eos) for piece in pieces)
        out.append("{{ if and $first $.System }}" + sys_go + "{{ end }}")
    out.append(content)
    if t.system_format is None and merge_after:
        out.append(
            "{{ if and $first $.System }}" + _go(merge_after, bos=bos, eos=eos) + "{{ end }}"
        )
    out.append(_go(user_after, bos=bos, eos=eos) + "{{ $first = false }}")
    out.append("{{ if $last }}" + _go(t.assistant_header, bos=bos, eos=eos) + "{{ end }}")
    # tool
    if t.tool_format is not None:
        before, after = split_format(t.tool_format)
        out.append('{{ else if eq .Role "tool" }}' + _go(before, bos=bos, eos=eos))
        out.append(content + _go(after, bos=bos, eos=eos))
        out.append("{{ if $last }}" + _go(t.assistant_header, bos=bos, eos=eos) + "{{ end }}")
    # assistant
    before, after = split_format(t.assistant_format)
    out.append(
        '{{ else if eq .Role "assistant" }}'
        + _go(t.assistant_header, bos=bos, eos=eos)
        + _go(before, bos=bos, eos=eos)
    )
    out.append(content + _go(after, bos=bos, eos=eos))
    mid = t.end_of_turn if t.end_of_turn_mid is None else t.end_of_turn_mid
    out.append(
        "{{ if $last }}"
        + _go(t.end_of_turn, bos=bos, eos=eos)
        + "{{ else }}"
        + _go(mid, bos=bos, eos=eos)
        + "{{ end }}"
        + _go(t.after_turn, bos=bos, eos=eos)
    )
    out.append("{{ end }}{{ end }}")
    return "".join(out)


def to_ollama_modelfile(template: Template, model_path: str = "./model.gguf") -> str:
    """A complete Modelfile: FROM, TEMPLATE, SYSTEM (the default) and stop parameters."""
    lines = [f"FROM {model_path}", f'TEMPLATE """{to_ollama_template(template)}"""']
    if template.default_system:
        lines.append(f'SYSTEM """{template.default_system}"""')
    for stop in template.stop_strings():
        lines.append(f"PARAMETER stop {_quote(stop)}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
