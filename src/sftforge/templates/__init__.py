"""Prompt templates: a registry of immutable, byte-exact formats plus jinja interop."""

from sftforge.templates.base import ChatTemplate, Segment, SpecialTokens, Template
from sftforge.templates.jinja import JinjaChatTemplate, to_hf_chat_template
from sftforge.templates.ollama import to_ollama_modelfile
from sftforge.templates.registry import (
    get_template,
    load_template,
    save_template,
    template_from_dict,
    template_names,
)

__all__ = [
    "ChatTemplate",
    "JinjaChatTemplate",
    "Segment",
    "SpecialTokens",
    "Template",
    "get_template",
    "load_template",
    "save_template",
    "template_from_dict",
    "template_names",
    "to_hf_chat_template",
    "to_ollama_modelfile",
]
