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
