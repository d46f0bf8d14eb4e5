"""The parallel build's fast paths agree with the plain ones: what a worker prepares
(exact digests, MinHash signatures, rebuilt conversations) gives the same de-duplication
as the blocks computing it themselves, the vectorised langid gives langid.py's verdicts,
and raw-line reading equals ``read_source``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sftforge.data.block import RejectSink
from sftforge.data.build_worker import LineSink, prepare
from sftforge.data.containers import jsonl_lines, parse_jsonl_line
from sftforge.data.dedup import ExactDedup, NearDedup, exact_digest
from sftforge.data.formats import RecordConverter, read_source
from sftforge.data.langid_vec import langid
from sftforge.types import Conversation, Message

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DATA = ASSETS / "data"


def _conversations() -> list[Conversation]:
    """Real rows of the in-repo slices, plus planted exact and near duplicates."""
    convs: list[Conversation] = []
    for name in (
        "alpaca/alpaca_en_demo.json",
        "alpaca/alpaca_zh_demo.json",
        "alpaca/oaast_sft_zh.json",
        "sharegpt/glaive_toolcall_en_demo.json",
        "sharegpt/dummy_conversation.json",
        "firefly/dummy_data.jsonl",
        "openai/kto_en_demo.json",
        "../conversations_en.jsonl",
        "../conversations_zh.jsonl",
    ):
        convs += read_source(str(DATA / name), sink=RejectSink())
    rng = random.Random(7)
    planted = []
    for conv in rng.sample(convs, min(40, len(convs) // 2)):
        msgs = list(conv.messages)
        last = msgs[-1]
        planted.append(conv.with_messages([*msgs[:-1], Message(last.role, last.content.upper())]))
        words = last.content.split(" ")
        if len(words) > 20:
            words[len(words) // 2] = "indeed"
            near = Message(last.role, " ".join(words), tool_calls=last.tool_calls)
            planted.append(conv.with_messages([*msgs[:-1], near]))
    return convs + planted


def _reject_dicts(sink: RejectSink) -> list[dict]:
    return [r for (stage, _), rs in sorted(sink.examples.items()) for r in rs]


def test_prepared_records_deduplicate_like_conversations():
    convs = _conversations()
    exact, near = ExactDedup(), NearDedup(threshold=0.7)
    plain_sink = RejectSink(max_examples=10_000)
    plain = list(near.run(exact.run(convs, plain_sink), plain_sink))

    # the worker side: in chunks of uneven size, as the pool would send them
    items, start = [], 0
    for size in (1, 30, 7, 100, 10_000):
        chunk = convs[start : start + size]
        start += size
        batch = prepare(chunk, 0, LineSink(), "src", True, NearDedup(threshold=0.7))
        items += batch.items()
    assert start >= len(convs)
    for item, conv in zip(items, convs, strict=True):
        assert item.exact == exact_digest(conv)  # worker-side digest = the block's own
        assert item.conversation.to_dict() == conv.to_dict()  # faithful rebuild, tool calls too
    prepared_sink = RejectSink(max_examples=10_000)
    exact2, near2 = ExactDedup(), NearDedup(threshold=0.7)
    kept = list(near2.run(exact2.run(items, prepared_sink), prepared_sink))

    assert [k.provenance for k in kept] == [
        (c.meta.get("source"), c.meta.get("line"), c.meta.get("index"), c.meta.get("id"))
        for c in plain
    ]
    assert prepared_sink.to_dict() == plain_sink.to_dict()
    assert (
        prepared_sink.stages["exact_dedup"].rejected and prepared_sink.stages["near_dedup"].rejected
    )
    assert _reject_dicts(prepared_sink) == _reject_dicts(plain_sink)  # duplicate_of included
    assert near2.clusters.to_dict() == near.clusters.to_dict()
    assert exact2.clusters.to_dict() == exact.clusters.to_dict()


def test_signatures_do_not_depend_on_the_batch():
    convs = _conversations()
    block = NearDedup()
    whole, empty = block.signatures_of(convs)
    for i in (0, 1, len(convs) // 2, len(convs) - 1):
        one, one_empty = block.signatures_of([convs[i]])
        assert (one[0] == whole[i]).all() and one_empty[0] == empty[i]


def test_raw_lines_read_like_read_source(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"instruction": "Hi", "input": "", "output": "Hello"}\n\n'
        b'{oops\n{"instruction": "", "output": "x"}\n'
        b'{"instruction": "Q", "input": "ctx", "output": "A", "id": 3}\n'
    )
    ref_sink = RejectSink(max_examples=10)
    ref = list(read_source(str(path), sink=ref_sink))
    sink = RejectSink(max_examples=10)
    convert = RecordConverter(format="alpaca", sink=sink)
    got = []
    with path.open("rb") as fh:
        for index, (lineno, line) in enumerate(jsonl_lines(fh)):
            loc = {"source": str(path), "line": lineno, "index": index}
            conv = convert(loc, parse_jsonl_line(line))
            if conv is not None:
                got.append(conv)
    assert [c.to_dict() for c in got] == [c.to_dict() for c in ref]
    assert sink.to_dict() == ref_sink.to_dict()
    assert sink.examples == ref_sink.examples


def _fixture_texts() -> list[str]:
    texts = []
    for name in ("conversations_en.jsonl", "conversations_zh.jsonl"):
        for line in (ASSETS / name).read_text(encoding="utf-8").splitlines():
            for m in json.loads(line)["messages"]:
                texts.append(m["content"][:500])
    short = ["", "a", "ab", "abc", "abcd", "Das ist ein kurzer deutscher Satz."]
    return [*texts, *short, "lone \udc80 surrogate", "ça va? très bien, merci beaucoup"]


def test_vectorised_langid_matches_langid_py():
    from langid.langid import LanguageIdentifier, model

    reference = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    texts = _fixture_texts()
    assert len(texts) > 50
    batch = langid().classify_batch(texts)
    for text, (lang, prob) in zip(texts, batch, strict=True):
        # langid.py cannot encode lone surrogates; ours replaces them, as "?"
        ref_lang, ref_prob = reference.classify(text.encode("utf-8", "replace").decode())
        assert lang == ref_lang, text
        assert prob == pytest.approx(ref_prob, rel=1e-6, abs=1e-12)
        one_lang, one_prob = langid().classify(text)  # a batch of one: the dense path
        assert one_lang == lang and one_prob == pytest.approx(prob, rel=1e-9)


def test_split_writer_raw_lines_equal_rows(tmp_path):
    """Rows written as JSON lines (parsed by Arrow) give the same files as rows written as
    dicts, across batches, with odd rows (an extra meta key, tools) included."""
    import pyarrow.parquet as pq

    from sftforge.data.writer import SplitWriter, row, row_line

    convs = _conversations()
    odd = convs[len(convs) // 2]
    meta = {**odd.meta, "late_key": "x"}
    convs[len(convs) // 2] = Conversation(odd.messages, odd.tools, meta, odd.kind)
    rows = [row(c, "src") for c in convs]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = SplitWriter(tmp_path / "a", "train", batch_rows=7)
    for r in rows:
        plain.write_line(json.dumps(r, ensure_ascii=False) + "\n", r)
    plain.close()
    raw = SplitWriter(tmp_path / "b", "train", batch_rows=7)
    for c in convs:
        raw.write_raw(row_line(c, "src"))
    raw.close()
    a = pq.read_table(tmp_path / "a" / "train.parquet")
    b = pq.read_table(tmp_path / "b" / "train.parquet")
    assert a.schema.equals(b.schema)
    assert a.to_pylist() == b.to_pylist()
    assert any(r["meta"]["extra"] for r in b.to_pylist())  # the late key, folded as before
    lines = (tmp_path / "b" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows
