"""The conversation type: conversion from plain data, freezing, validation messages."""

from __future__ import annotations

import dataclasses

import pytest

from sftforge import Conversation, ConversationError, Message, as_conversation


def test_openai_style_list_is_a_conversation():
    conv = as_conversation(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    )
    assert isinstance(conv, Conversation)
    assert [m.role for m in conv.messages] == ["user", "assistant"]
    assert conv.system is None


def test_messages_object_with_typed_parts_and_meta():
    conv = as_conversation(
        {
            "messages": [
                {"content": [{"type": "text", "text": "Sys"}], "role": "system"},
                {
                    "role": "user",
                    "content": [{"type": "text", "value": "a"}, {"type": "text", "text": "b"}],
                },
                {"role": "assistant", "content": "ok", "train": False},
            ],
            "meta": {"source": "x.jsonl", "line": 3},
        }
    )
    assert conv.system == "Sys"
    assert conv.messages[1].content == "ab"
    assert conv.messages[2].train is False
    assert str(conv.location) == "x.jsonl:3"


def test_conversation_is_frozen():
    conv = as_conversation([{"role": "user", "content": "Hi"}])
    with pytest.raises(dataclasses.FrozenInstanceError):
        conv.kind = "text"  # type: ignore[misc]
    with pytest.raises(TypeError):
        conv.meta["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("messages", "field", "needle"),
    [
        ([{"role": "bot", "content": "x"}], "messages[0].role", "unknown role 'bot'"),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}],
            "messages[1].content",
            "assistant content is empty",
        ),
        ([{"role": "user", "content": "q"}], "messages[0].role", "training needs a final"),
        (
            [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}],
            "messages[1].role",
            "only allowed as the first",
        ),
        ([{"role": "assistant", "content": "a"}], "messages[0].role", "starts with an assistant"),
    ],
)
def test_invalid_conversations_name_sample_and_field(messages, field, needle):
    conv = as_conversation({"messages": messages, "meta": {"source": "d.jsonl", "line": 7}})
    with pytest.raises(ConversationError) as info:
        conv.validate()
    assert info.value.field == field
    assert needle in str(info.value)
    assert str(info.value).startswith("d.jsonl:7 " + field)


def test_alternation_is_checked_when_asked():
    conv = as_conversation(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
        ]
    )
    conv.validate()  # fine for templates that don't need alternation
    with pytest.raises(ConversationError, match="alternate") as info:
        conv.validate(alternating=True)
    assert info.value.field == "messages[1].role"


def test_bad_shapes_are_rejected_with_the_field():
    with pytest.raises(ConversationError, match="messages must be a list"):
        as_conversation({"messages": "hello"})
    with pytest.raises(ConversationError, match="missing 'role'") as info:
        as_conversation([{"content": "x"}])
    assert info.value.field == "messages[0].role"
    with pytest.raises(ConversationError, match="'train'"):
        as_conversation([{"role": "user", "content": "x", "train": "yes"}])


def test_input_is_appended_for_templates_without_an_input_slot():
    msg = Message("user", "Translate", input="bonjour")
    assert msg.content_with_input == "Translate\n\nbonjour"
    assert Message("user", "Hi").content_with_input == "Hi"


def test_round_trip_through_dict():
    conv = as_conversation(
        {
            "messages": [
                {"role": "user", "content": "q", "input": "i"},
                {"role": "assistant", "content": "a"},
            ]
        }
    )
    again = as_conversation(conv.to_dict())
    assert again.messages == conv.messages
