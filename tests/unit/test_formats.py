"""Readers: format detection, conversion, containers, streaming, and rejects with reasons.

Fixtures are slices of the shared public data (``tests/assets/data``, made by its
``make_slices.py``); one test reads the full shared files when ``../shared/data`` exists.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tracemalloc
import warnings
from pathlib import Path

import pytest

from sftforge.conversation_io import write_conversations
from sftforge.data.block import RejectSink
from sftforge.data.containers import iter_json, read_records
from sftforge.data.formats import (
    FormatError,
    RecordError,
    RejectedRecordsWarning,
    detect_format,
    read_source,
)
from sftforge.errors import SftForgeError

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT / "tests" / "assets" / "data"
SHARED = REPO_ROOT.parent / "shared" / "data"
BAD = DATA / "bad_records.jsonl"

#: Fixture slice -> (detected format, records in the slice).
SLICES = {
    "alpaca/alpaca_en_demo.json": ("alpaca", 5),
    "alpaca/alpaca_zh_demo.json": ("alpaca", 5),
    "alpaca/identity.json": ("alpaca", 5),
    "alpaca/oaast_sft_zh.json": ("alpaca", 12),
    "sharegpt/dummy_conversation.json": ("sharegpt", 5),
    "sharegpt/glaive_toolcall_en_demo.json": ("sharegpt", 5),
    "openai/kto_en_demo.json": ("openai", 6),
    "openai/v1_sft_demo.jsonl": ("openai", 5),
    "openai/generative-ai-for-beginners/training-data.jsonl": ("openai", 3),
    "openai/generative-ai-for-beginners/validation-data.jsonl": ("openai", 2),
    "openai/minicpm/AdvertiseGenChatML/train.json": ("openai", 3),
    "openai/minicpm/AdvertiseGenChatML/dev.json": ("openai", 2),
    "firefly/dummy_data.jsonl": ("firefly", 3),
    "pretrain/c4_demo.jsonl": ("text", 3),
    "pretrain/dummy_pretrain.jsonl": ("text", 3),
}

#: Full shared files -> records, as listed in the shared README.
SHARED_COUNTS = {
    "alpaca/alpaca_en_demo.json": 999,
    "alpaca/alpaca_zh_demo.json": 1000,
    "alpaca/identity.json": 91,
    "alpaca/oaast_sft_zh.json": 689,
    "sharegpt/dummy_conversation.json": 500,
    "sharegpt/glaive_toolcall_en_demo.json": 300,
    "openai/kto_en_demo.json": 300,
    "openai/v1_sft_demo.jsonl": 500,
    "openai/generative-ai-for-beginners/training-data.jsonl": 10,
    "openai/generative-ai-for-beginners/validation-data.jsonl": 5,
    "openai/minicpm/AdvertiseGenChatML/train.json": 9,
    "openai/minicpm/AdvertiseGenChatML/dev.json": 3,
    "firefly/dummy_data.jsonl": 33,
    "pretrain/c4_demo.jsonl": 300,
    "pretrain/dummy_pretrain.jsonl": 45,
}

#: Planted faults in bad_records.jsonl: line -> reason (see tests/assets/data/make_slices.py).
BAD_EXPECTED = {
    2: "invalid_json",
    3: "wrong_type",
    4: "missing_field",
    5: "empty_turn",
    7: "bad_role_order",
    8: "invalid_utf8",
    9: "nul_byte",
    10: "nul_byte",
    11: "field_too_long",
    12: "unknown_role",
    13: "no_assistant",
    16: "wrong_type",
    17: "bad_role_order",
}
BAD_GOOD_LINES = [1, 6, 15]


def read_all(path, **kw):
    """Read with a fresh sink; return (conversations, sink)."""
    sink = RejectSink(max_examples=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sink is given: no summary warning
        convs = list(read_source(path, sink=sink, **kw))
    return convs, sink


def shape(conv):
    """What a conversation says, without where it was read from."""
    d = conv.to_dict()
    d.pop("meta", None)
    return d


# -- the fixture slices ----------------------------------------------------------------------------
def test_every_shared_data_file_has_a_slice():
    """Every instruction/chat/pretraining file of the shared data is sliced here."""
    assert set(SLICES) == set(SHARED_COUNTS)
    for rel in SLICES:
        assert (DATA / rel).is_file(), rel


@pytest.mark.parametrize("rel", sorted(SLICES))
def test_slice_is_detected_and_read(rel):
    fmt, n = SLICES[rel]
    path = DATA / rel
    assert detect_format(path) == fmt
    convs, sink = read_all(str(path))
    counts = sink.stages["read"]
    assert (counts.seen, counts.kept, sum(counts.rejected.values())) == (n, n, 0)
    assert counts.reconciles()
    assert [c.meta["index"] for c in convs] == list(range(n))
    for conv in convs:
        assert conv.meta["source"] == str(path)
        assert conv.meta["format"] == fmt
        assert isinstance(conv.meta["line"], int)
        conv.validate(for_training=conv.kind == "chat")
    if rel.endswith(".jsonl"):  # one record per line
        assert [c.meta["line"] for c in convs] == list(range(1, n + 1))
    else:  # a JSON array: the line where each element starts, increasing
        lines = [c.meta["line"] for c in convs]
        assert lines[0] == 2 and lines == sorted(set(lines))


def test_alpaca_input_goes_to_message_input():
    convs, _ = read_all(DATA / "alpaca/alpaca_en_demo.json")
    raw = json.loads((DATA / "alpaca/alpaca_en_demo.json").read_text(encoding="utf-8"))
    for conv, rec in zip(convs, raw, strict=True):
        user, answer = conv.messages
        assert (user.role, user.content, user.input) == (
            "user",
            rec["instruction"],
            rec["input"] or None,
        )
        assert (answer.role, answer.content) == ("assistant", rec["output"])


def test_alpaca_history_becomes_earlier_turns():
    convs, _ = read_all(DATA / "alpaca/oaast_sft_zh.json")
    raw = json.loads((DATA / "alpaca/oaast_sft_zh.json").read_text(encoding="utf-8"))
    with_history = [(c, r) for c, r in zip(convs, raw, strict=True) if r["history"]]
    assert len(with_history) == 2
    for conv, rec in with_history:
        expected = []
        for user, answer in rec["history"]:
            expected += [("user", user), ("assistant", answer)]
        expected += [("user", rec["instruction"]), ("assistant", rec["output"])]
        assert [(m.role, m.content) for m in conv.messages] == expected


def test_sharegpt_ids_roles_and_json_string_tools():
    convs, _ = read_all(DATA / "sharegpt/dummy_conversation.json")
    assert convs[0].meta["id"] == "identity_0"
    assert [m.role for m in convs[0].messages] == ["user", "assistant", "user", "assistant"]

    convs, _ = read_all(DATA / "sharegpt/glaive_toolcall_en_demo.json")
    first = convs[0]
    assert first.tools is not None and first.tools[0]["name"] == "search_recipes"
    roles = [m.role for m in first.messages]
    assert roles == [
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]
    call = first.messages[3]
    assert json.loads(call.content)["name"] == "search_recipes"  # function_call: the call text
    assert convs[1].tools is None  # tools "[]" -> no tools


def test_openai_label_typed_parts_loss_weight_and_system():
    convs, _ = read_all(DATA / "openai/kto_en_demo.json")
    assert [c.meta["label"] for c in convs] == [True, True, True, True, False, False]

    convs, _ = read_all(DATA / "openai/v1_sft_demo.jsonl")
    user, answer = convs[0].messages
    assert (user.content, user.train) == ("hi", False)  # loss_weight 0.0
    assert answer.content.startswith("Hello! I am {{name}}") and answer.train is True

    convs, _ = read_all(DATA / "openai/minicpm/AdvertiseGenChatML/train.json")
    assert convs[0].system and convs[0].system.startswith("你是一个广告生成助手")


def test_firefly_and_text():
    convs, _ = read_all(DATA / "firefly/dummy_data.jsonl")
    assert convs[0].meta["id"] == 1
    assert [m.role for m in convs[0].messages][:4] == ["user", "assistant", "user", "assistant"]

    convs, _ = read_all(DATA / "pretrain/c4_demo.jsonl")
    assert {c.kind for c in convs} == {"text"}
    assert convs[0].messages[0].content.startswith("Don’t think you need all the bells")


def test_belle_linksoul_instruction_is_the_system_prompt(tmp_path):
    path = tmp_path / "linksoul.jsonl"
    rows = [
        {
            "id": "ls-1",
            "instruction": "You are a helpful assistant.",
            "conversations": [
                {"from": "human", "value": "你好"},
                {"from": "gpt", "value": "你好！"},
            ],
        },
        {
            "id": "ls-2",
            "instruction": "",
            "conversations": [
                {"from": "human", "value": "Hi"},
                {"from": "assistant", "value": "Hello"},
            ],
        },
    ]
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    assert detect_format(path) == "belle"
    convs, _ = read_all(path)
    assert convs[0].system == "You are a helpful assistant."
    assert [m.role for m in convs[0].messages] == ["system", "user", "assistant"]
    assert convs[1].system is None and convs[1].meta["id"] == "ls-2"


def test_openai_tool_calls_and_unified_round_trip(tmp_path):
    convs, _ = read_all(BAD)
    tool_conv = next(c for c in convs if c.meta["line"] == 15)
    assert [m.role for m in tool_conv.messages] == ["user", "assistant", "tool", "assistant"]
    assert tool_conv.messages[1].tool_calls[0]["function"]["name"] == "weather"
    assert tool_conv.tools[0]["function"]["name"] == "weather"

    # sftforge's own JSONL (Conversation.to_json) reads back to the same conversations.
    mixed = (
        read_all(DATA / "alpaca/oaast_sft_zh.json")[0]
        + read_all(DATA / "pretrain/c4_demo.jsonl")[0]
    )
    out = tmp_path / "unified.jsonl"
    write_conversations(mixed, out)
    again, _ = read_all(out)
    assert [shape(c) for c in again] == [shape(c) for c in mixed]
    assert again[0].meta["line"] == 1 and again[-1].kind == "text"


def test_txt_documents_are_blank_line_separated_blocks(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"First doc line 1\r\nline 2\r\n\r\n\n  \nSecond doc\n\nThird\n")
    convs, sink = read_all(path)
    assert [c.messages[0].content for c in convs] == [
        "First doc line 1\nline 2",
        "Second doc",
        "Third",
    ]
    assert [c.meta["line"] for c in convs] == [1, 6, 8]
    assert {c.kind for c in convs} == {"text"} and detect_format(path) == "text"
    assert sink.stages["read"].reconciles()


# -- containers ------------------------------------------------------------------------------------
def test_json_lines_stored_as_json(tmp_path):
    lines = tmp_path / "lines.json"
    shutil.copy(DATA / "firefly/dummy_data.jsonl", lines)
    convs, _ = read_all(lines)
    assert len(convs) == 3 and convs[1].meta["line"] == 2

    # Pretty-printed objects one after another (not an array) are a stream of values.
    stream = tmp_path / "stream.json"
    recs = json.loads((DATA / "alpaca/identity.json").read_text(encoding="utf-8"))
    stream.write_text("\n".join(json.dumps(r, indent=2) for r in recs), encoding="utf-8")
    convs, _ = read_all(stream)
    assert [c.messages[0].content for c in convs] == [r["instruction"] for r in recs]


def _records(rel):
    return json.loads((DATA / rel).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "rel", ["alpaca/oaast_sft_zh.json", "sharegpt/glaive_toolcall_en_demo.json"]
)
def test_parquet_csv_hf_and_column_map_read_the_same(tmp_path, rel):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = _records(rel)
    expected = [shape(c) for c in read_all(DATA / rel)[0]]

    pq.write_table(pa.Table.from_pylist(records), tmp_path / "d.parquet", row_group_size=4)
    convs, _ = read_all(tmp_path / "d.parquet")
    assert [shape(c) for c in convs] == expected
    assert [c.meta["index"] for c in convs] == list(range(len(records)))
    assert "line" not in convs[0].meta

    # CSV: every value is a string; list fields are JSON in their cell.
    with (tmp_path / "d.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        for r in records:
            writer.writerow(
                {
                    k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                    for k, v in r.items()
                }
            )
    convs, _ = read_all(tmp_path / "d.csv")
    assert [shape(c) for c in convs] == expected
    assert convs[0].meta["line"] == 2  # after the header

    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "hf"))
    convs, _ = read_all(tmp_path / "hf")
    assert [shape(c) for c in convs] == expected

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(records[:3]),
            "test": datasets.Dataset.from_list(records[3:]),
        }
    )
    dd.save_to_disk(str(tmp_path / "hf_dict"))
    convs, _ = read_all(tmp_path / "hf_dict")
    assert sorted(map(json.dumps, map(shape, convs))) == sorted(map(json.dumps, expected))
    assert {c.meta["split"] for c in convs} == {"train", "test"}

    # Custom field names, mapped back with column_map (record- and turn-level).
    renames = {
        "instruction": "prompt",
        "output": "response",
        "history": "past",
        "conversations": "dialog",
        "from": "speaker",
        "value": "text",
    }
    mapped = []
    for r in records:
        m = {renames.get(k, k): v for k, v in r.items()}
        if "dialog" in m:
            m["dialog"] = [{renames.get(k, k): v for k, v in t.items()} for t in m["dialog"]]
        mapped.append(m)
    path = tmp_path / "mapped.jsonl"
    path.write_text(
        "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in mapped), encoding="utf-8"
    )
    column_map = {ours: theirs for ours, theirs in renames.items()}
    assert detect_format(path, column_map=column_map) == SLICES[rel][0]
    convs, _ = read_all(path, column_map=column_map)
    assert [shape(c) for c in convs] == expected


def test_directory_of_data_files(tmp_path):
    (tmp_path / "b").mkdir()
    shutil.copy(DATA / "alpaca/identity.json", tmp_path / "a.json")
    shutil.copy(DATA / "firefly/dummy_data.jsonl", tmp_path / "b" / "c.jsonl")
    (tmp_path / "README.md").write_text("not data")
    convs, sink = read_all(str(tmp_path))
    sources = [c.meta["source"] for c in convs]
    assert sources == [str(tmp_path / "a.json")] * 5 + [str(tmp_path / "b" / "c.jsonl")] * 3
    assert [c.meta["format"] for c in convs] == ["alpaca"] * 5 + ["firefly"] * 3
    assert sink.stages["read"].reconciles()


def test_column_map_and_format_names_are_checked():
    with pytest.raises(ValueError, match="unknown field 'prompt'"):
        list(read_source(DATA / "alpaca/identity.json", column_map={"prompt": "instruction"}))
    with pytest.raises(FormatError, match="unknown format 'vicuna'"):
        list(read_source(DATA / "alpaca/identity.json", format="vicuna"))
    with pytest.raises(FormatError, match="column_map"):
        detect_format({"prompt": "q", "completion": "a"})
    assert (
        detect_format(
            {"prompt": "q", "response": "a"},
            column_map={"instruction": "prompt", "output": "response"},
        )
        == "alpaca"
    )


def test_explicit_format_overrides_detection():
    # A KTO file read as "openai" explicitly; a text file forced to alpaca rejects every record.
    convs, _ = read_all(DATA / "openai/kto_en_demo.json", format="openai")
    assert len(convs) == 6
    convs, sink = read_all(DATA / "pretrain/c4_demo.jsonl", format="alpaca")
    assert convs == [] and sink.stages["read"].rejected == {"missing_field": 3}


# -- streaming -------------------------------------------------------------------------------------
class _CountingStream:
    """A binary stream generated on the fly; counts what the reader has pulled."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled = 0
        self._parts = self._gen()
        self._pending = b""

    def _gen(self):
        yield b"[\n"
        for i in range(self.n):
            rec = {"instruction": f"question {i}", "input": "", "output": "answer " * 20}
            yield json.dumps(rec).encode() + (b",\n" if i < self.n - 1 else b"\n")
        yield b"]\n"

    def read(self, size: int = -1) -> bytes:
        while len(self._pending) < size:
            nxt = next(self._parts, None)
            if nxt is None:
                break
            self._pending += nxt
        out, self._pending = self._pending[:size], self._pending[size:]
        self.pulled += len(out)
        return out


def test_json_array_yields_before_the_stream_is_read():
    stream = _CountingStream(100_000)  # ~20 MB if it were materialised
    records = iter_json(stream, "<generated>", chunk_size=1 << 16)
    loc, first = next(records)
    assert first["instruction"] == "question 0" and loc == {
        "source": "<generated>",
        "line": 2,
        "index": 0,
    }
    assert stream.pulled <= 1 << 16
    assert sum(1 for _ in records) == 99_999


def test_json_array_memory_stays_flat(tmp_path):
    path = tmp_path / "big.json"
    row = {
        "instruction": "Explain the water cycle. " * 4,
        "input": "",
        "output": "Water evaporates. " * 50,
    }
    with path.open("w", encoding="utf-8") as fh:
        fh.write("[\n")
        n = 45_000
        for i in range(n):
            fh.write(json.dumps({**row, "id": i}) + (",\n" if i < n - 1 else "\n"))
        fh.write("]\n")
    size = path.stat().st_size
    assert size > 45_000_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_records(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    # The window is a few 1 MiB chunks, whatever the file size (json.load would need > 4x size).
    assert peak < 8_000_000, f"peak {peak:,} bytes while reading a {size:,}-byte array"


def test_json_array_elements_split_across_tiny_chunks(tmp_path):
    path = tmp_path / "a.json"
    values = [1, 22, 333, {"k": "v" * 50}, [4444, 55555], "x" * 100, 666666, {"deep": {"a": [1]}}]
    path.write_text(json.dumps(values, indent=1), encoding="utf-8")
    assert [rec for _, rec in read_records(path, chunk_size=3)] == values
    alpaca = DATA / "alpaca/alpaca_zh_demo.json"  # multi-byte UTF-8 split across chunks
    assert [r for _, r in read_records(alpaca, chunk_size=7)] == _records(
        "alpaca/alpaca_zh_demo.json"
    )


# -- rejects ---------------------------------------------------------------------------------------
def test_bad_records_are_each_rejected_with_reason_and_line(tmp_path):
    side = tmp_path / "rejects.jsonl"
    with RejectSink(side, max_examples=100) as sink, warnings.catch_warnings():
        warnings.simplefilter("error")
        convs = list(read_source(str(BAD), sink=sink))
    assert [c.meta["line"] for c in convs] == BAD_GOOD_LINES
    assert convs[0].meta["id"] == "good-1"

    counts = sink.stages["read"]
    assert counts.seen == len(BAD_EXPECTED) + len(BAD_GOOD_LINES)  # the blank line is no record
    assert counts.kept == len(BAD_GOOD_LINES)
    assert counts.reconciles()

    rejects = [json.loads(line) for line in side.read_text(encoding="utf-8").splitlines()]
    found = {int(r["where"].rsplit(":", 1)[1]): r for r in rejects}
    assert {line: r["reason"] for line, r in found.items()} == BAD_EXPECTED
    for line, r in found.items():
        assert r["where"] == f"{BAD}:{line}" and r["stage"] == "read" and r["detail"]
        raw = r["raw"]
        assert len(raw if isinstance(raw, str) else json.dumps(raw)) <= 2001
    assert "messages[1].content" in found[3]["detail"] and "int" in found[3]["detail"]
    assert found[4]["detail"] == "messages: required field is missing"
    assert "0xff" in found[8]["detail"]
    assert "300,000" in found[11]["detail"] and found[11]["raw"].endswith("…")
    assert "'bot'" in found[12]["detail"] and "messages[1].role" in found[12]["detail"]
    assert "\\xff" in found[8]["raw"]


def test_strict_mode_stops_at_the_first_bad_record_naming_file_line_and_field(tmp_path):
    with pytest.raises(RecordError) as err:
        list(read_source(BAD, strict=True))
    assert err.value.code == "invalid_json"
    assert f"{BAD}:2" in str(err.value)

    path = tmp_path / "one_bad.jsonl"
    lines = BAD.read_bytes().splitlines()
    path.write_bytes(lines[0] + b"\n" + lines[2] + b"\n")
    with pytest.raises(
        RecordError, match=r"one_bad\.jsonl:2 .*messages\[1\]\.content: .*wrong_type"
    ):
        list(read_source(path, strict=True))
    with pytest.raises(SftForgeError, match=r"one_bad\.jsonl:2"):  # a strict sink stops too
        list(read_source(path, sink=RejectSink(strict=True)))


def test_without_a_sink_rejects_are_summed_up_in_a_warning():
    with pytest.warns(RejectedRecordsWarning, match="13 of 16 records rejected"):
        convs = list(read_source(BAD))
    assert len(convs) == 3


def test_json_array_isolates_bad_utf8_and_reports_a_malformed_element(tmp_path):
    good = b'{"instruction": "q", "output": "a"}'
    path = tmp_path / "arr.json"
    path.write_bytes(
        b"[\n" + good + b',\n{"instruction": "b\xffd", "output": "a"},\n' + good + b"\n]\n"
    )
    convs, sink = read_all(path)
    assert [c.meta["line"] for c in convs] == [2, 4]
    example = sink.examples[("read", "invalid_utf8")][0]
    assert example["where"] == f"{path}:3" and "instruction" in example["detail"]

    path.write_bytes(b"[\n" + good + b',\n{"instruction": "q" "output": "a"},\n' + good + b"\n]\n")
    convs, sink = read_all(path)
    assert len(convs) == 1
    assert sink.examples[("read", "invalid_json")][0]["where"] == f"{path}:3"
    assert sink.stages["read"].reconciles()


@pytest.mark.parametrize(
    ("record", "reason", "field"),
    [
        ({"instruction": "q", "input": ""}, "missing_field", "output"),
        ({"instruction": ["q"], "output": "a"}, "wrong_type", "instruction"),
        (
            {"instruction": "q", "output": "a", "history": [["only one"]]},
            "wrong_type",
            "history[0]",
        ),
        ({"instruction": " ", "input": "", "output": "a"}, "empty_turn", "instruction"),
        ({"instruction": "q", "input": 3, "output": "a"}, "wrong_type", "input"),
        ({"instruction": "q", "output": "a" * 11}, "field_too_long", "output"),
    ],
)
def test_alpaca_faults_name_the_field(tmp_path, record, reason, field):
    path = tmp_path / "a.jsonl"
    path.write_text(
        json.dumps({"instruction": "ok", "output": "fine"}) + "\n" + json.dumps(record) + "\n"
    )
    convs, sink = read_all(path, max_field_chars=10)
    assert len(convs) == 1
    [example] = sink.examples[("read", reason)]
    assert example["where"] == f"{path}:2" and example["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        ([{"from": "gpt", "value": "I start"}, {"from": "human", "value": "q"}], "bad_role_order"),
        (
            [{"from": "human", "value": "q"}, {"from": "observation", "value": "{}"}],
            "bad_role_order",
        ),
        ([{"from": "human", "value": "q"}, {"from": "narrator", "value": "x"}], "unknown_role"),
        ([{"from": "human", "value": "q"}, {"from": "gpt"}], "missing_field"),
        ([{"from": "human", "value": "q"}, {"from": "gpt", "value": ""}], "empty_turn"),
        (
            [
                {"from": "human", "value": "q"},
                {"from": "system", "value": "late"},
                {"from": "gpt", "value": "a"},
            ],
            "bad_role_order",
        ),
        ([{"from": "system", "value": "s"}], "no_assistant"),
    ],
)
def test_sharegpt_faults(tmp_path, turns, reason):
    path = tmp_path / "s.json"
    ok = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    path.write_text(json.dumps([ok, {"conversations": turns}], indent=2), encoding="utf-8")
    convs, sink = read_all(path)
    assert len(convs) == 1 and sink.stages["read"].rejected == {reason: 1}


def test_csv_bad_rows_are_isolated(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b'instruction,output\nq1,a1\nq2,a2,extra\n"q\xff3",a3\nq4,a4\n')
    convs, sink = read_all(path)
    assert [c.messages[0].content for c in convs] == ["q1", "q4"]
    assert sink.stages["read"].rejected == {"invalid_csv": 1, "invalid_utf8": 1}
    assert sink.examples[("read", "invalid_csv")][0]["where"] == f"{path}:3"


def test_raw_line_text_of_undecodable_records_is_kept():
    sink = RejectSink()
    list(read_source(BAD, sink=sink))
    [bad_json] = sink.examples[("read", "invalid_json")]
    assert bad_json["raw"] == '{"messages": [{"role": "user", "content": "unclosed"}'


def test_read_records_yields_locations_and_raw_records():
    pairs = list(read_records(DATA / "openai/generative-ai-for-beginners/validation-data.jsonl"))
    assert [loc["line"] for loc, _ in pairs] == [1, 2]
    assert all("messages" in rec for _, rec in pairs)
    stream = io.BytesIO(b"[]")
    assert list(iter_json(stream, "empty")) == []


# -- the full shared data (only where it is checked out next to the repository) --------------------
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")
@pytest.mark.parametrize("rel", sorted(SHARED_COUNTS))
def test_full_shared_files_read_completely(rel):
    path = SHARED / rel
    convs, sink = read_all(path)
    counts = sink.stages["read"]
    assert (counts.seen, counts.kept) == (SHARED_COUNTS[rel], SHARED_COUNTS[rel]), sink.examples
    assert detect_format(path) == SLICES[rel][0]
    if rel == "openai/kto_en_demo.json":
        assert sum(c.meta["label"] is True for c in convs) == 150
    if rel == "alpaca/oaast_sft_zh.json":
        assert sum(len(c.messages) > 2 for c in convs) == 390
    if rel == "sharegpt/glaive_toolcall_en_demo.json":
        assert sum(c.tools is not None for c in convs) == 300 - 109


def test_rows_without_lines_are_located_by_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"instruction": "q", "output": "a"}, {"instruction": "q", "output": None}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    convs, sink = read_all(tmp_path / "d.parquet")
    assert len(convs) == 1
    [example] = sink.examples[("read", "missing_field")]
    assert example["where"] == f"{tmp_path / 'd.parquet'} row 1"
    with pytest.raises(RecordError, match=r"d\.parquet sample 1 output: "):
        list(read_source(tmp_path / "d.parquet", strict=True))


def test_txt_breaks_on_cr_and_unicode_blank_lines_and_caps_blocks(tmp_path):
    from sftforge.data.containers import iter_txt

    def docs(data: bytes, **kw) -> list:
        import io

        return [(loc["line"], rec) for loc, rec in iter_txt(io.BytesIO(data), "x", **kw)]

    assert docs(b"a\rb\r\rc\r") == [(1, {"text": "a\nb"}), (4, {"text": "c"})]  # old Mac
    assert docs("a\n\u00a0\nb\n\u3000\nc".encode()) == [
        (1, {"text": "a"}), (3, {"text": "b"}), (5, {"text": "c"}),
    ]  # fmt: skip
    # no blank line at all: cut at line boundaries, not one record of the whole file
    parts = docs(b"0123456789\n" * 30, max_block_chars=50)
    assert [line for line, _ in parts[:3]] == [1, 5, 9]
    assert all(len(rec["text"]) <= 50 for _, rec in parts)
    assert "".join(rec["text"].replace("\n", "") for _, rec in parts) == "0123456789" * 30
