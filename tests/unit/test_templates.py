"""The template library: byte-exact goldens, registry rules, generation prompts."""

from __future__ import annotations

import json

import pytest

from sftforge import ConversationError, TemplateError, get_template, template_names
from sftforge.templates import Template, load_template, save_template, template_from_dict
from sftforge.templates.builtin import BUILTIN_TEMPLATES
from sftforge.templates.registry import _REGISTRY

SYSTEM = "You are a concise assistant."
TURNS = [("What is 2+2?", "4."), ("And 3+3?", "6.")]


def spec_conversation(key: str) -> list[dict]:
    """The spec's worked example for a golden key like 'system_2turn'."""
    msgs = [{"role": "system", "content": SYSTEM}] if key.startswith("system") else []
    n = 1 if key.endswith("1turn") else 2
    for user, answer in TURNS[:n]:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return msgs


GOLDENS = [(t, key, text) for t in BUILTIN_TEMPLATES for key, text in t.golden.items()]


@pytest.mark.parametrize(
    ("template", "key", "golden"), GOLDENS, ids=lambda v: getattr(v, "name", None)
)
def test_golden_strings_are_byte_exact(template, key, golden):
    assert template.render(spec_conversation(key)) == golden


def test_every_required_template_is_registered():
    required = {
        "alpaca", "llama2", "linly", "nous_hermes", "yayi", "stablebeluga2", "guanaco",
        "firefly", "vicuna", "chatml", "llama3", "mistral", "hf",
    }  # fmt: skip
    assert required <= set(template_names())
    for t in BUILTIN_TEMPLATES:
        assert t.golden, f"{t.name} has no golden string"
        assert t.summary and t.source and t.notes
        assert t.stop_strings(), t.name


def test_unknown_template_lists_the_valid_names():
    with pytest.raises(TemplateError) as info:
        get_template("llama-2")
    assert "chatml" in str(info.value) and "alpaca" in str(info.value)


def test_registry_cannot_be_mutated():
    with pytest.raises(TypeError):
        _REGISTRY["chatml"] = _REGISTRY["alpaca"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        get_template("chatml").default_system = "x"  # type: ignore[misc]


def test_hf_template_needs_a_tokenizer():
    with pytest.raises(TemplateError, match="tokenizer"):
        get_template("hf")


CONVERSATIONS = [
    spec_conversation("system_2turn"),
    spec_conversation("no_system_2turn"),
    [
        {"role": "user", "content": "  Use {eos} and {content} verbatim  "},
        {"role": "assistant", "content": "Braces {x} stay."},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！\n有什么可以帮你？"},
        {"role": "user", "content": "Translate", "input": "bonjour"},
        {"role": "assistant", "content": "hello"},
    ],
]


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=lambda t: t.name)
@pytest.mark.parametrize("conv", CONVERSATIONS)
def test_generation_prompt_is_the_prefix_before_each_answer(template, conv):
    """The inference prompt for turn k is exactly the training text before answer k."""
    full = template.render(conv)
    segments = template.render_segments(conv)
    pos = 0
    starts = {}
    for seg in segments:
        if seg.kind == "answer" and seg.message not in starts:
            starts[seg.message] = pos
        pos += len(seg.text)
    assert "".join(s.text for s in segments) == full
    for k, msg in enumerate(conv):
        if msg["role"] != "assistant":
            continue
        prompt = template.render(conv[:k], add_generation_prompt=True)
        assert full.startswith(prompt)
        assert len(prompt) == starts[k], (
            f"{template.name}: answer {k} does not start at the prompt end"
        )


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=lambda t: t.name)
def test_content_is_verbatim(template):
    text = template.render(CONVERSATIONS[2])
    assert "{eos} and {content} verbatim" in text
    assert "Braces {x} stay." in text
    assert "有什么可以帮你？" in text
    assert "bonjour" in text


def test_system_without_a_slot_is_merged_into_the_first_user_message():
    t = get_template("mistral")
    text = t.render(spec_conversation("system_2turn"))
    assert text.startswith("<s>[INST] You are a concise assistant.\n\nWhat is 2+2? [/INST]4.</s> ")
    assert (
        get_template("firefly")
        .render(spec_conversation("system_2turn"))
        .startswith("<s>You are a concise assistant.\n\nWhat is 2+2?</s>4.</s>")
    )


def test_default_system_and_explicit_empty_system():
    chatml = get_template("chatml")
    no_system = chatml.render(spec_conversation("no_system_2turn"))
    assert no_system.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    empty = [{"role": "system", "content": ""}, *spec_conversation("no_system_2turn")]
    assert chatml.render(empty).startswith("<|im_start|>user\n")


def test_alpaca_uses_the_input_preamble_and_slot():
    t = get_template("alpaca")
    text = t.render(
        [
            {"role": "user", "content": "Translate", "input": "bonjour"},
            {"role": "assistant", "content": "hello"},
        ]
    )
    assert text == (
        "<s>Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nTranslate\n\n### Input:\nbonjour\n\n### Response:hello</s>"
    )


def test_tokenizer_special_tokens_replace_conventional_ones(smollm2_tokenizer):
    text = get_template("alpaca").render(
        spec_conversation("no_system_1turn"), tokenizer=smollm2_tokenizer
    )
    assert text.endswith("### Response:4.<|im_end|>")
    # chatml has no BOS in its format, so a tokenizer's BOS is never added
    assert (
        get_template("chatml")
        .render(spec_conversation("system_2turn"), tokenizer=smollm2_tokenizer)
        .startswith("<|im_start|>system")
    )


def test_tool_role_needs_a_template_with_one():
    conv = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": '{"name": "get_weather"}'},
        {"role": "tool", "content": '{"temp": 21}'},
        {"role": "assistant", "content": "21 degrees"},
    ]
    assert '<|im_start|>tool\n{"temp": 21}<|im_end|>\n' in get_template("chatml").render(conv)
    with pytest.raises(ConversationError) as info:
        get_template("vicuna").render(conv)
    assert info.value.field == "messages[2].role"


def test_alternation_templates_reject_broken_order():
    conv = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
    ]
    with pytest.raises(ConversationError, match="alternate"):
        get_template("llama2").render(conv)
    get_template("chatml").render(conv)


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=lambda t: t.name)
def test_template_json_round_trip(template, tmp_path):
    path = save_template(template, tmp_path / "template.json")
    data = json.loads(path.read_text())
    assert data["name"] == template.name and data["type"] == "builtin"
    again = load_template(path)
    assert again == template
    assert again.render(CONVERSATIONS[0]) == template.render(CONVERSATIONS[0])


def test_template_from_dict_rejects_unknown_fields():
    data = get_template("chatml").to_dict()
    data["sytem_format"] = "oops"
    with pytest.raises(TemplateError, match="sytem_format"):
        template_from_dict(data)


def test_stop_strings_start_with_the_end_marker():
    assert get_template("chatml").stop_strings()[0] == "<|im_end|>"
    assert get_template("guanaco").stop_strings()[:2] == ("</s>", "### Human:")
    assert "<|End|>" in get_template("yayi").stop_strings()


def test_plain_text_documents_render_without_chat_markup():
    from sftforge import Conversation

    doc = Conversation.text("Some web text.")
    assert get_template("alpaca").render(doc) == "<s>Some web text.</s>"
    assert get_template("chatml").render(doc) == "Some web text.<|im_end|>"
    assert isinstance(get_template("chatml"), Template)


def test_docs_are_in_sync_with_the_registry():
    from pathlib import Path

    from sftforge.templates.docs import render_docs

    docs = Path(__file__).resolve().parents[2] / "docs" / "templates.md"
    assert docs.read_text(encoding="utf-8") == render_docs(), (
        "docs/templates.md is stale: python -m sftforge.templates.docs > docs/templates.md"
    )
