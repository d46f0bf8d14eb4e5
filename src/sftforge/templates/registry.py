"""The template registry: named, immutable, never mutated at run time."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sftforge.errors import TemplateError
from sftforge.templates.base import ChatTemplate, Template
from sftforge.templates.builtin import BUILTIN_TEMPLATES

_REGISTRY: Mapping[str, Template] = MappingProxyType({t.name: t for t in BUILTIN_TEMPLATES})

#: The name that means "the tokenizer's own jinja chat_template".
HF_TEMPLATE_NAME = "hf"


def template_names() -> list[str]:
    """Every name :func:`get_template` accepts."""
    return [*_REGISTRY, HF_TEMPLATE_NAME]


def get_template(name: str, tokenizer: Any | None = None) -> ChatTemplate:
    """A template by name. ``"hf"`` takes the tokenizer's own ``chat_template``.

    >>> get_template("chatml").name
    'chatml'
    """
    if name == HF_TEMPLATE_NAME:
        from sftforge.templates.jinja import JinjaChatTemplate

        if tokenizer is None:
            raise TemplateError(
                "template 'hf' uses the tokenizer's chat_template: give a tokenizer"
            )
        return JinjaChatTemplate.from_tokenizer(tokenizer)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TemplateError(
            f"unknown template {name!r}; known templates: {', '.join(template_names())}"
        ) from None


def template_from_dict(data: Mapping[str, Any]) -> ChatTemplate:
    """Rebuild a template from its ``to_dict()`` form (what ``template.json`` holds)."""
    if not isinstance(data, Mapping):
        raise TemplateError(f"a template definition is a JSON object, not {type(data).__name__}")
    kind = data.get("type", "builtin")
    try:
        if kind == "builtin":
            return Template.from_dict(data)
        if kind == "jinja":
            from sftforge.templates.jinja import JinjaChatTemplate

            return JinjaChatTemplate.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, TemplateError):
            raise
        raise TemplateError(f"malformed {kind} template definition: {exc!r}") from None
    raise TemplateError(f"unknown template type {kind!r} (expected 'builtin' or 'jinja')")


def save_template(template: ChatTemplate, path: str | Path) -> Path:
    """Write the full template definition as JSON (not just its name)."""
    from sftforge.fsutil import atomic_write_text

    return atomic_write_text(
        Path(path), json.dumps(template.to_dict(), ensure_ascii=False, indent=2) + "\n"
    )


def load_template(path: str | Path) -> ChatTemplate:
    """Read a ``template.json`` written by :func:`save_template`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise TemplateError(f"{path}: cannot read template definition: {exc}") from None
    try:
        return template_from_dict(data)
    except TemplateError as exc:
        raise TemplateError(f"{path}: {exc}") from None
