"""Tool calls are validated and never silently dropped (issue 10 item 6).

Readers and ``as_conversation`` reject malformed calls with a reason naming the field;
``tool_call_id``/``name``/``tool_calls`` survive conversion and the dataset row schema; a
template that cannot render a conversation's calls refuses it (a counted encoder drop);
the exported Hugging Face chat templates render calls inside transformers' sandbox.
"""

from __future__ import annotations

import json

import pytest

from sftforge.data.block import RejectSink
from sftforge.data.formats import RecordError, read_source
from sftforge.errors import ConversationError
from sftforge.templates.builtin import BUILTIN_TEMPLATES
from sftforge.types import Conversation, Message, ToolCallError, as_conversation

WEATHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
}
TOOL_MESSAGES = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL]},
    {"role": "tool", "content": '{"temp_c": 18}', "tool_call_id": "call_1", "name": "weather"},
    {"role": "assistant", "content": "18 °C in Paris."},
]


def _with_call(call=None, **function):
    """TOOL_MESSAGES with the call (or its function fields) replaced."""
    if call is None:
        call = {**WEATHER_CALL, "function": function}
    msgs = [dict(m) for m in TOOL_MESSAGES]
    msgs[1] = {**msgs[1], "tool_calls": [call]}
    return msgs


BAD_CALLS = [
    # (call, field, reason pattern)
    (
        _with_call(name="weather", arguments='{"city": '),
        "messages[1].tool_calls[0].function.arguments",
        "not valid JSON",
    ),
    (
        _with_call(name="weather", arguments='["Paris"]'),
        "messages[1].tool_calls[0].function.arguments",
        "not a JSON object",
    ),
    (
        _with_call(name="weather", arguments="42"),
        "messages[1].tool_calls[0].function.arguments",
        "not a JSON object",
    ),
    (
        _with_call(name="weather", arguments=["Paris"]),
        "messages[1].tool_calls[0].function.arguments",
        "not a JSON object",
    ),
    (
        _with_call(name="weather"),
        "messages[1].tool_calls[0].function.arguments",
        "missing",
    ),
    (
        _with_call(arguments='{"city": "Paris"}'),
        "messages[1].tool_calls[0].function.name",
        "function name",
    ),
    (
        _with_call(name="", arguments="{}"),
        "messages[1].tool_calls[0].function.name",
        "non-empty string",
    ),
    (
        _with_call({"id": "call_1", "type": "function"}),
        "messages[1].tool_calls[0].function",
        "missing",
    ),
    (_with_call("weather(city='Paris')"), "messages[1].tool_calls[0]", "must be an object"),
]


# -- item 1: validation ------------------------------------------------------------------------
@pytest.mark.parametrize("messages, field, reason", BAD_CALLS)
def test_as_conversation_rejects_malformed_tool_calls_naming_the_field(messages, field, reason):
    with pytest.raises(ToolCallError, match=reason) as info:
        as_conversation(messages)
    assert info.value.field == field
    assert isinstance(info.value, ConversationError)
    assert f"{field}: " in str(info.value)


@pytest.mark.parametrize("messages, field, reason", BAD_CALLS)
def test_openai_reader_rejects_malformed_tool_calls(tmp_path, messages, field, reason):
    path = tmp_path / "calls.jsonl"
    good = {"messages": TOOL_MESSAGES}
    path.write_text(
        json.dumps(good) + "\n" + json.dumps({"messages": messages}) + "\n", encoding="utf-8"
    )
    sink = RejectSink()
    convs = list(read_source(path, sink=sink))
    assert len(convs) == 1
    counts = sink.stages["read"]
    assert (counts.seen, counts.kept) == (2, 1)
    assert dict(counts.rejected) == {"invalid_tool_call": 1}
    [example] = sink.examples[("read", "invalid_tool_call")]
    assert example["detail"].startswith(f"{field}: "), example
    assert reason in example["detail"]
    with pytest.raises(RecordError, match=reason) as info:
        list(read_source(path, strict=True))
    assert info.value.field == field and info.value.code == "invalid_tool_call"


def test_validate_refuses_malformed_calls_built_directly():
    conv = Conversation(
        (
            Message("user", "hi"),
            Message("assistant", "", tool_calls=({"function": {"name": "f", "arguments": "{"}},)),
        )
    )
    with pytest.raises(ToolCallError) as info:
        conv.validate()
    assert info.value.field == "messages[1].tool_calls[0].function.arguments"
    # A call on a user message would never be rendered: refused, not ignored.
    with pytest.raises(ToolCallError, match="only allowed on assistant"):
        as_conversation([{"role": "user", "content": "x", "tool_calls": [WEATHER_CALL]}])
    with pytest.raises(ToolCallError, match="only allowed on tool"):
        as_conversation([{"role": "user", "content": "x", "tool_call_id": "call_1"}])


def test_json_string_arguments_are_normalised_and_round_trip_stable(tmp_path):
    conv = as_conversation(TOOL_MESSAGES)
    call = conv.messages[1].tool_calls[0]
    assert call["function"]["arguments"] == {"city": "Paris"}
    assert call["id"] == "call_1" and call["type"] == "function"
    again = as_conversation(json.loads(conv.to_json()))
    assert again == conv and again.to_json() == conv.to_json()
    # Object arguments and string arguments give the same conversation.
    as_object = _with_call(name="weather", arguments={"city": "Paris"})
    as_object[1]["tool_calls"][0]["id"] = "call_1"
    assert as_conversation(as_object) == conv
    # The flat {"name", "arguments"} shape is accepted too (and validated).
    flat = as_conversation(_with_call({"name": "weather", "arguments": "{}"}))
    assert flat.messages[1].tool_calls[0] == {"name": "weather", "arguments": {}}
    with pytest.raises(ToolCallError) as info:
        as_conversation(_with_call({"name": "weather", "arguments": "[]"}))
    assert info.value.field == "messages[1].tool_calls[0].arguments"


def test_legacy_function_call_is_a_call_not_silently_ignored(tmp_path):
    legacy = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None,
         "function_call": {"name": "weather", "arguments": '{"city": "Paris"}'}},
        {"role": "function", "name": "weather", "content": '{"temp_c": 18}'},
        {"role": "assistant", "content": "18 °C."},
    ]  # fmt: skip
    calls = as_conversation(legacy[:2]).messages[1].tool_calls
    expected = {"name": "weather", "arguments": {"city": "Paris"}}
    assert calls == ({"type": "function", "function": expected},)
    path = tmp_path / "legacy.jsonl"
    bad = [dict(m) for m in legacy]
    bad[1]["function_call"] = "weather(city='Paris')"
    path.write_text(
        json.dumps({"messages": legacy}) + "\n" + json.dumps({"messages": bad}) + "\n",
        encoding="utf-8",
    )
    sink = RejectSink()
    [conv] = list(read_source(path, sink=sink))
    assert conv.messages[1].tool_calls[0]["function"]["arguments"] == {"city": "Paris"}
    assert conv.messages[2].name == "weather"
    assert dict(sink.stages["read"].rejected) == {"wrong_type": 1}
    [example] = sink.examples[("read", "wrong_type")]
    assert example["detail"].startswith("messages[1].function_call: ")


def _sharegpt(call_value):
    return {
        "conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {"from": "function_call", "value": call_value},
            {"from": "observation", "value": '{"temp_c": 18}'},
            {"from": "gpt", "value": "18 °C in Paris."},
        ],
        "tools": '[{"name": "weather", "parameters": {}}]',
    }


@pytest.mark.parametrize(
    "value, field, reason",
    [
        ('{"name": "weather", "arguments": {"city": "Paris"', "conversations[1].value",
         "not valid JSON"),
        ("I will call the weather tool", "conversations[1].value", "not valid JSON"),
        ('{"name": "weather", "arguments": "[1]"}', "conversations[1].value.arguments",
         "not a JSON object"),
        ('{"name": "weather", "arguments": "{\\"city\\": "}', "conversations[1].value.arguments",
         "not valid JSON"),
        ('{"arguments": {"city": "Paris"}}', "conversations[1].value.function", "missing"),
        ('[{"name": "weather", "arguments": {}}, {"name": "", "arguments": {}}]',
         "conversations[1].value[1].name", "non-empty string"),
        ('"weather"', "conversations[1].value", "must be an object"),
    ],
)  # fmt: skip
def test_sharegpt_function_call_turns_are_checked(tmp_path, value, field, reason):
    good = _sharegpt('{"name": "weather", "arguments": {"city": "Paris"}}')
    path = tmp_path / "glaive.json"
    path.write_text(json.dumps([good, _sharegpt(value)]), encoding="utf-8")
    sink = RejectSink()
    [conv] = list(read_source(path, sink=sink))
    # The good call stays the turn's text (as before), untouched.
    assert conv.messages[1].content == good["conversations"][1]["value"]
    assert dict(sink.stages["read"].rejected) == {"invalid_tool_call": 1}
    [example] = sink.examples[("read", "invalid_tool_call")]
    assert example["detail"].startswith(f"{field}: "), example
    assert reason in example["detail"]


def test_sharegpt_function_call_with_json_string_arguments_is_accepted(tmp_path):
    value = '{"name": "weather", "arguments": "{\\"city\\": \\"Paris\\"}"}'
    path = tmp_path / "glaive.json"
    path.write_text(json.dumps([_sharegpt(value)]), encoding="utf-8")
    [conv] = list(read_source(path, strict=True))
    assert conv.messages[1].content == value


# -- item 2: nothing lost in conversion and in the dataset rows --------------------------------
def _tool_fields(conv):
    return [(m.role, m.content, m.name, m.tool_call_id, m.tool_calls) for m in conv.messages]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_data_convert_keeps_tool_call_ids_names_and_calls(tmp_path, suffix, capsys):
    from sftforge.cli import main

    src = tmp_path / "src.jsonl"
    src.write_text(json.dumps({"messages": TOOL_MESSAGES}) + "\n", encoding="utf-8")
    out = tmp_path / f"unified{suffix}"
    assert main(["data", "convert", str(src), "--output", str(out), "--strict"]) == 0
    [original] = list(read_source(src, strict=True))
    [again] = list(read_source(out, strict=True))
    assert again.messages[2].tool_call_id == "call_1"
    assert again.messages[2].name == "weather"
    assert again.messages[1].tool_calls == ({**WEATHER_CALL, "function": {
        "name": "weather", "arguments": {"city": "Paris"}}},)  # fmt: skip
    assert _tool_fields(again) == _tool_fields(original)
    # ... and once more: converting the unified file again changes nothing.
    out2 = tmp_path / f"again{suffix}"
    assert main(["data", "convert", str(out), "--output", str(out2), "--strict"]) == 0
    [third] = list(read_source(out2, strict=True))
    assert _tool_fields(third) == _tool_fields(original)


def test_dataset_rows_keep_tool_calls_and_ids(tmp_path):
    import pyarrow.parquet as pq

    from sftforge.data.writer import SplitWriter, conversation_from_row, row, row_line

    conv = as_conversation({"messages": TOOL_MESSAGES, "tools": [{"name": "weather"}]})
    r = row(conv, "src")
    assert conversation_from_row(r).messages == conv.messages
    assert conversation_from_row(json.loads(row_line(conv, "src"))).messages == conv.messages
    for raw in (False, True):  # rows as dicts, and as the spool's JSON lines
        writer = SplitWriter(tmp_path, f"train{int(raw)}")
        if raw:
            writer.write_raw(row_line(conv, "src"))
        else:
            writer.write([r])
        writer.close()
        table = pq.read_table(writer.parquet_path).to_pylist()
        back = conversation_from_row(table[0])
        assert back.messages == conv.messages and back.tools == conv.tools
        lines = writer.jsonl_path.read_text(encoding="utf-8").splitlines()
        assert conversation_from_row(json.loads(lines[0])).messages == conv.messages


# -- item 3: a template that cannot render the calls refuses, never trains an empty answer -----
CALL_CONVERSATION = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": [
            WEATHER_CALL,
            {"id": "call_2", "type": "function",
             "function": {"name": "weather", "arguments": {"city": "Rome", "unit": "°C"}}},
        ]},
        {"role": "tool", "content": '{"temp_c": 18}', "tool_call_id": "call_1", "name": "weather"},
        {"role": "tool", "content": '{"temp_c": 24}', "tool_call_id": "call_2", "name": "weather"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_3", "type": "function",
             "function": {"name": "forecast", "arguments": "{}"}}]},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_3"},
        {"role": "assistant", "content": "Paris 18 °C, Rome 24 °C, sunny."},
    ],
    "tools": [{"type": "function", "function": {"name": "weather", "parameters": {}}}],
}  # fmt: skip
PLAIN = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


def _encode_counted(template, tok, convs):
    from sftforge.encode.encoder import Encoder
    from sftforge.encode.report import EncodeReport

    report = EncodeReport()
    out = Encoder(template, tok).encode_batch(convs, errors="drop", report=report)
    assert report.reconciles()
    return out, report


def test_hf_template_without_tool_support_refuses_call_turns(smollm2_tokenizer):
    from sftforge import get_template
    from sftforge.templates.base import UnrenderableConversation

    tok = smollm2_tokenizer
    hf = get_template("hf", tokenizer=tok)  # SmolLM2's own template: prints content only
    # What it does with a call-only turn: an empty answer (this was trained before).
    call_only = as_conversation(TOOL_MESSAGES)
    assert "<|im_start|>assistant\n<|im_end|>" in hf.render_messages(
        [m.to_dict() for m in call_only.messages], tokens=hf_tokens(tok)
    )
    for messages, field in ((TOOL_MESSAGES, "messages[1].tool_calls[0]"),
                            (CALL_CONVERSATION, "messages[2].tool_calls[0]")):  # fmt: skip
        with pytest.raises(UnrenderableConversation) as info:
            hf.render_segments(messages, tokenizer=tok)
        assert info.value.code == "tool_calls_not_rendered"
        assert info.value.field == field and "weather" in str(info.value)
    out, report = _encode_counted(hf, tok, [TOOL_MESSAGES, PLAIN, CALL_CONVERSATION])
    assert [e.drop_reason for e in out] == [
        "tool_calls_not_rendered",
        None,
        "tool_calls_not_rendered",
    ]
    assert dict(report.dropped) == {"tool_calls_not_rendered": 2}
    assert report.samples_kept == 1 and "weather" in report.examples["tool_calls_not_rendered"][0]
    # Encoding one sample (errors="raise") raises instead.
    from sftforge.encode.encoder import encode

    with pytest.raises(UnrenderableConversation):
        encode(TOOL_MESSAGES, hf, tok)


def hf_tokens(tok):
    from sftforge.templates.base import SpecialTokens

    return SpecialTokens(tok.bos_token or "", tok.eos_token or "")


def test_jinja_template_that_drops_content_is_refused(smollm2_tokenizer):
    from sftforge.templates import JinjaChatTemplate
    from sftforge.templates.base import UnrenderableConversation

    src = (
        "{% for m in messages %}{% if m.role == 'user' %}U: {{ m.content }}\n"
        "{% else %}A:{{ eos_token }}\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}A:{% endif %}"
    )
    template = JinjaChatTemplate(src, eos_token="</s>")
    with pytest.raises(UnrenderableConversation) as info:
        template.render_segments(PLAIN)
    assert (info.value.code, info.value.field) == ("content_not_rendered", "messages[1].content")
    _, report = _encode_counted(template, smollm2_tokenizer, [PLAIN])
    assert dict(report.dropped) == {"content_not_rendered": 1}


def test_jinja_template_that_drops_an_argument_is_refused():
    from sftforge.templates import JinjaChatTemplate
    from sftforge.templates.base import UnrenderableConversation

    # Renders the call's name but not its arguments.
    src = (
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}"
        "{% for c in m.tool_calls or [] %}[{{ c.function.name }}]{% endfor %}</s>"
        "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    with pytest.raises(UnrenderableConversation, match="'city'") as info:
        JinjaChatTemplate(src).render_segments(TOOL_MESSAGES)
    assert info.value.code == "tool_calls_not_rendered"
    # With the arguments rendered, the same turn is accepted and its call is the answer.
    src = src.replace("{{ c.function.name }}", "{{ c.function | tojson }}")
    segs = JinjaChatTemplate(src).render_segments(TOOL_MESSAGES)
    answer = "".join(s.text for s in segs if s.message == 1 and s.kind == "answer")
    assert '"name": "weather"' in answer and '"city": "Paris"' in answer


TOOLLESS = [t for t in BUILTIN_TEMPLATES if t.tool_format is None]
WITH_TOOLS = [t for t in BUILTIN_TEMPLATES if t.tool_format is not None]


@pytest.mark.parametrize("template", TOOLLESS, ids=lambda t: t.name)
def test_builtin_templates_without_tool_convention_refuse_tool_calls(template, smollm2_tokenizer):
    from sftforge.templates.base import UnrenderableConversation

    call_then_user = [*TOOL_MESSAGES[:2], {"role": "user", "content": "ok?"},
                      {"role": "assistant", "content": "Yes."}]  # fmt: skip
    for messages, field in ((TOOL_MESSAGES, "messages[1].tool_calls"),
                            (call_then_user, "messages[1].tool_calls"),
                            (CALL_CONVERSATION, "messages[2].tool_calls")):  # fmt: skip
        with pytest.raises(UnrenderableConversation) as info:
            template.render(messages)
        assert (info.value.code, info.value.field) == ("template_without_tools", field)
        assert "no tool convention" in str(info.value)
    assert "No tool convention" in template.notes
    out, report = _encode_counted(template, smollm2_tokenizer, [TOOL_MESSAGES, PLAIN])
    assert dict(report.dropped) == {"template_without_tools": 1}
    assert out[1].drop_reason is None


@pytest.mark.parametrize("template", WITH_TOOLS, ids=lambda t: t.name)
def test_builtin_tool_templates_render_the_calls(template):
    text = template.render(CALL_CONVERSATION)
    assert text.count('"name": "weather"') == 2 and '"name": "forecast"' in text
    assert '"arguments": {"city": "Paris"}' in text  # the normalised object


def test_chatml_trains_the_calls(smollm2_tokenizer):
    from sftforge import get_template

    tok = smollm2_tokenizer  # a ChatML tokenizer: every turn stays trainable
    out, report = _encode_counted(get_template("chatml"), tok, [CALL_CONVERSATION])
    assert not report.dropped and report.assistant_turns_trained == 3
    trained = tok.decode([t for t in out[0].labels if t != -100])
    assert trained.count('"name": "weather"') == 2 and '"name": "forecast"' in trained
    assert '"arguments": {"city": "Paris"}' in trained


# -- item 4: the exported chat_template renders calls inside transformers' sandbox -------------
@pytest.mark.parametrize("template", WITH_TOOLS, ids=lambda t: t.name)
def test_exported_chat_template_renders_tool_calls_in_transformers(template, smollm2_tokenizer):
    import copy

    from sftforge.templates import to_hf_chat_template

    tok = copy.deepcopy(smollm2_tokenizer)
    tok.chat_template = to_hf_chat_template(template)
    conv = as_conversation(CALL_CONVERSATION)
    messages = conv.to_dict()["messages"]
    tools = [dict(t) for t in conv.tools]
    ours = template.render(conv, tokenizer=tok)
    assert tok.apply_chat_template(messages, tools=tools, tokenize=False) == ours
    assert '"arguments": {"city": "Rome", "unit": "°C"}}' in ours
    # Every generation prompt along the way, too.
    for k, msg in enumerate(messages):
        if msg["role"] == "assistant":
            theirs = tok.apply_chat_template(
                messages[:k], tools=tools, tokenize=False, add_generation_prompt=True
            )
            assert theirs == template.render(messages[:k], add_generation_prompt=True,
                                             tokenizer=tok)  # fmt: skip
    # The raw messages (arguments still JSON strings) render the same once normalised.
    assert tok.apply_chat_template(conv.to_dict()["messages"], tokenize=False) == template.render(
        CALL_CONVERSATION["messages"], tokenizer=tok
    )


@pytest.mark.parametrize("template", TOOLLESS, ids=lambda t: t.name)
def test_exported_toolless_chat_template_refuses_tool_calls(template, smollm2_tokenizer):
    from sftforge.templates import to_hf_chat_template

    more = [{"role": "user", "content": "ok?"}, {"role": "assistant", "content": "Yes."}]
    conv = as_conversation([*TOOL_MESSAGES[:2], *more])
    with pytest.raises(Exception, match="has no tool-call convention"):
        smollm2_tokenizer.apply_chat_template(
            conv.to_dict()["messages"],
            tokenize=False,
            chat_template=to_hf_chat_template(template),
        )
