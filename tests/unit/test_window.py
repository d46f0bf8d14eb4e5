"""Long text documents cut into windows at the best boundary (data/window.py)."""

from __future__ import annotations

from sftforge.data.block import RejectSink
from sftforge.data.window import TextWindows, split_windows
from sftforge.types import Conversation, Message


def chars(n: int):
    return lambda start: start + n


def test_windows_prefer_paragraphs_then_lines_then_sentences_then_spaces():
    para = ("word " * 30).strip()  # 149 chars
    text = f"{para}\n\n{para}\n\n{para}"
    assert split_windows(text, chars(320)) == [f"{para.strip()}\n\n{para.strip()}", para.strip()]
    lines = "\n".join(["x" * 90] * 5)
    assert split_windows(lines, chars(200)) == ["x" * 90 + "\n" + "x" * 90] * 2 + ["x" * 90]
    sentences = "One two three. " * 20
    out = split_windows(sentences, chars(100))
    assert all(w.endswith(".") and len(w) <= 100 for w in out)
    assert split_windows("a" * 250, chars(100)) == ["a" * 100, "a" * 100, "a" * 50]


def test_block_counts_documents_windows_and_added():
    sink = RejectSink()
    convs = [
        Conversation.text("p " * 100, meta={"source": "s", "index": 0}),
        Conversation.text("short", meta={"source": "s", "index": 1}),
        Conversation((Message("user", "hi"), Message("assistant", "x " * 500))),
    ]
    out = list(TextWindows(max_chars=50).run(convs, sink))
    c = sink.stages["window"]
    assert c.seen == 3 and c.kept == len(out) and c.added == len(out) - 3
    assert c.reconciles()
    assert [o.meta.get("window") for o in out[:2]] == [0, 1]
    assert all(o.meta["index"] == 0 for o in out if "window" in o.meta)
