"""Jinja interop: exported chat templates match render() through transformers itself."""

from __future__ import annotations

import re

import pytest

from sftforge import get_template
from sftforge.templates import to_hf_chat_template, to_ollama_modelfile
from sftforge.templates.builtin import BUILTIN_TEMPLATES

from .test_templates import spec_conversation

CONVERSATIONS = [
    spec_conversation("system_2turn"),
    [
        {"role": "user", "content": "  padded {eos} text  "},
        {"role": "assistant", "content": " 你好！\n第二行 "},
    ],
    [
        {"role": "user", "content": "Translate", "input": "bonjour"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "hi"},
    ],
]
TOOL_CONVERSATION = [
    {"role": "user", "content": "weather in Paris?"},
    {"role": "assistant", "content": '{"name": "weather", "arguments": {"city": "Paris"}}'},
    {"role": "tool", "content": '{"temp": 21}'},
    {"role": "assistant", "content": "It is 21 degrees."},
]


def _cases(template):
    convs = list(CONVERSATIONS)
    if template.tool_format is not None:
        convs.append(TOOL_CONVERSATION)
    for conv in convs:
        yield conv, False
        for k, msg in enumerate(conv):
            if msg["role"] == "assistant":
                yield conv[:k], True


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=lambda t: t.name)
def test_exported_chat_template_renders_like_render(template, smollm2_tokenizer):
    tok = smollm2_tokenizer
    jinja = to_hf_chat_template(template)
    for conv, gen in _cases(template):
        ours = template.render(conv, add_generation_prompt=gen, tokenizer=tok)
        theirs = tok.apply_chat_template(
            conv, tokenize=False, add_generation_prompt=gen, chat_template=jinja
        )
        assert theirs == ours, (template.name, conv, gen)


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=lambda t: t.name)
def test_exported_template_supports_assistant_masks(template, mistral_tokenizer):
    tok = mistral_tokenizer
    out = tok.apply_chat_template(
        CONVERSATIONS[0][1:3],
        chat_template=to_hf_chat_template(template),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    decoded = tok.decode(masked)
    assert "4." in decoded
    end = template.stop_strings(tok)[0]
    assert decoded.rstrip().endswith(end), (decoded, end)


def test_hf_template_renders_like_transformers(smollm2_tokenizer):
    tok = smollm2_tokenizer
    hf = get_template("hf", tokenizer=tok)
    for conv, gen in _cases(get_template("chatml")):
        # A foreign jinja template has no input slot: sftforge folds `input` into the content
        # instead of dropping it as transformers would.
        folded = [
            {"role": m["role"], "content": f"{m['content']}\n\n{m['input']}"} if "input" in m else m
            for m in conv
        ]
        assert hf.render(conv, add_generation_prompt=gen, tokenizer=tok) == tok.apply_chat_template(
            folded, tokenize=False, add_generation_prompt=gen
        )
    segs = hf.render_segments(CONVERSATIONS[0], tokenizer=tok)
    answers = [(s.text, s.kind) for s in segs if s.kind in ("answer", "end")]
    assert answers == [
        ("4.", "answer"),
        ("<|im_end|>", "end"),
        ("6.", "answer"),
        ("<|im_end|>", "end"),
    ]


def test_hf_template_round_trips_through_template_json(smollm2_tokenizer, tmp_path):
    from sftforge.templates import load_template, save_template

    hf = get_template("hf", tokenizer=smollm2_tokenizer)
    again = load_template(save_template(hf, tmp_path / "template.json"))
    assert again.render(CONVERSATIONS[0]) == hf.render(CONVERSATIONS[0])


def test_non_prefix_stable_jinja_is_refused():
    from sftforge.errors import TemplateError
    from sftforge.templates import JinjaChatTemplate

    # Renders only the last message: history is rewritten, so no training sequence exists.
    src = "{{ messages[-1]['content'] }}{% if add_generation_prompt %}>{% endif %}"
    with pytest.raises(TemplateError, match="prefix-stable"):
        JinjaChatTemplate(src).render_segments(CONVERSATIONS[0])


def test_jinja_sandbox_blocks_attribute_escapes():
    from sftforge.errors import TemplateError
    from sftforge.templates import JinjaChatTemplate

    evil = "{{ messages.__class__.__mro__ }}"
    with pytest.raises(TemplateError):
        JinjaChatTemplate(evil).render(CONVERSATIONS[1])


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=lambda t: t.name)
def test_ollama_modelfile(template):
    modelfile = to_ollama_modelfile(template, "./sft.gguf")
    assert modelfile.startswith('FROM ./sft.gguf\nTEMPLATE """')
    for stop in template.stop_strings():
        assert f"PARAMETER stop {stop!r}".replace("'", '"') in modelfile or stop in modelfile
    body = modelfile.split('"""')[1]
    opens = len(re.findall(r"\{\{ ?(if|range)\b", body))
    ends = len(re.findall(r"\{\{-? ?end ?\}\}", body))
    assert opens == ends, "unbalanced Go template blocks"
    assert "{{ .Content }}" in body
    if template.default_system:
        assert f'SYSTEM """{template.default_system}"""' in modelfile


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=lambda t: t.name)
def test_ollama_template_executes_like_render(template):
    """Run the exported Go template (tiny evaluator) and compare with render().

    Ollama's llama.cpp adds BOS itself, so the rendered text is compared without the
    template's leading BOS; the system prompt in effect is passed as .System, as the
    Modelfile's SYSTEM default or a request's system message would be.
    """
    from sftforge.templates.ollama import to_ollama_template

    from .gotemplate import render_go

    body = to_ollama_template(template)
    for conv, gen in _cases(template):
        unstripped = any(m["content"] != m["content"].strip() for m in conv)
        if any(m.get("input") for m in conv) or (template.strip_content and unstripped):
            continue  # Ollama messages have no input field; Go templates cannot trim
        system = conv[0]["content"] if conv and conv[0]["role"] == "system" else None
        messages = [m for m in conv if m["role"] != "system"]
        expected = template.render(conv, add_generation_prompt=gen)
        if template.prefix == "{bos}" or template.user_format.startswith("{bos}"):
            expected = expected.removeprefix(template.bos_token)
        effective = system if system is not None else (template.default_system or "")
        assert render_go(body, effective, messages) == expected, (template.name, conv, gen)
