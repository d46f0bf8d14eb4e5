"""Token-by-token previews (terminal and HTML), checked against the encoder's own labels."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from rich.console import Console

from sftforge.encode import IGNORE_INDEX, Encoder, EncodeReport
from sftforge.encode.preview import preview_html, preview_terminal, trained_fraction
from sftforge.templates import get_template

CONVERSATIONS = [
    {
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris is the capital of France."},
        ],
        "meta": {"source": "demo.jsonl", "line": 1},
    },
    {
        "messages": [
            {"role": "user", "content": "你好，世界"},
            {"role": "assistant", "content": "你好！很高兴认识你。"},
            {"role": "user", "content": 'Escape <b>this</b> & "that"'},
            {"role": "assistant", "content": "def f():\n    return 1\n\n\tdone"},
        ],
        "meta": {"source": "demo.jsonl", "line": 2},
    },
    {"messages": [{"role": "user", "content": "no answer"}]},  # invalid: dropped
]

# The readable stand-ins the preview uses, reversed, to rebuild the decoded text.
_UNVISIBLE = {"↵\n": "\n", "⇥": "\t", "␍": "\r", "␣": " "}


class _Page(HTMLParser):
    """Collects token spans and checks that every element is closed in order."""

    VOID = frozenset({"meta", "br", "hr", "img", "link", "input"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tokens: list[dict] = []
        self.text: list[str] = []
        self._in_token = False

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        self.stack.append(tag)
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        if tag == "span" and "tok" in classes:
            self.tokens.append({"classes": classes, "title": a.get("title", ""), "text": ""})
            self._in_token = True

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        self._in_token = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_token:
            self.tokens[-1]["text"] += data


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.stack == [], f"unclosed elements: {parser.stack}"
    return parser


def _encode(tokenizer):
    report = EncodeReport()
    samples = Encoder(get_template("chatml"), tokenizer).encode_batch(
        CONVERSATIONS, errors="drop", report=report
    )
    return samples, report


@pytest.fixture(scope="module")
def encoded(smollm2_tokenizer):
    return _encode(smollm2_tokenizer)


@pytest.fixture(scope="module")
def page(encoded, smollm2_tokenizer, tmp_path_factory):
    samples, report = encoded
    path = preview_html(
        samples, smollm2_tokenizer, tmp_path_factory.mktemp("preview") / "p.html", report=report
    )
    return path.read_text(encoding="utf-8")


def test_html_has_one_span_per_token_with_its_label(encoded, page):
    samples, _ = encoded
    kept = [s for s in samples if not s.dropped]
    assert len(kept) == 2
    spans = _parse(page).tokens
    assert len(spans) == sum(len(s.input_ids) for s in kept)

    trained = [t for t in spans if "trained" in t["classes"]]
    masked = [t for t in spans if "masked" in t["classes"]]
    assert len(trained) == sum(s.num_trained for s in kept) > 0
    assert len(masked) == sum(len(s.input_ids) - s.num_trained for s in kept) > 0
    assert not [t for t in spans if {"trained", "masked"} <= t["classes"]]

    # The spans follow the samples token by token; each tooltip names id, position, label.
    expected = [(s, i) for s in kept for i in range(len(s.input_ids))]
    for span, (sample, i) in zip(spans, expected, strict=True):
        label = sample.labels[i]
        assert span["title"].startswith(f"id {sample.input_ids[i]} · position {i} · label ")
        if label == IGNORE_INDEX:
            assert "masked" in span["classes"]
            assert f"label {IGNORE_INDEX} (not trained)" in span["title"]
        else:
            assert "trained" in span["classes"]
            assert f"label {label} ·" in span["title"]


def _shown_text(spans: list[dict]) -> str:
    """The text the token spans show, continuation marks dropped and stand-ins undone."""
    shown = "".join(t["text"] for t in spans if "cont" not in t["classes"])
    for visible, real in _UNVISIBLE.items():
        shown = shown.replace(visible, real)
    return shown


def test_html_escapes_special_tokens_and_user_markup(page):
    assert "&lt;|im_end|&gt;" in page
    assert "<|im_end|>" not in page
    assert "<b>" not in page and "</b>" not in page and "&lt;/" in page
    assert "<script" not in page and 'href="http' not in page  # self-contained
    spans = _parse(page).tokens
    specials = [t for t in spans if "special" in t["classes"]]
    assert {t["text"] for t in specials} == {"<|im_start|>", "<|im_end|>"}
    assert 'Escape <b>this</b> & "that"' in _shown_text(spans)  # unescaped by the parser


def test_html_keeps_chinese_and_rebuilds_the_decoded_text(encoded, page, smollm2_tokenizer):
    assert '<meta charset="utf-8">' in page
    assert "你" in page and "&#" not in page.replace("&#x27;", "")  # raw UTF-8, not entities
    samples, _ = encoded
    kept = [s for s in samples if not s.dropped]
    spans = _parse(page).tokens
    # Byte-level BPE splits a CJK character over tokens: the rest are continuation marks.
    assert any("cont" in t["classes"] and "completes" in t["title"] for t in spans)
    start = 0
    for sample in kept:
        own = spans[start : start + len(sample.input_ids)]
        start += len(sample.input_ids)
        assert _shown_text(own) == smollm2_tokenizer.decode(sample.input_ids)
    assert "你好，世界" in _shown_text(spans) and "很高兴认识你" in _shown_text(spans)


def test_sentencepiece_tokens_rebuild_the_decoded_text(mistral_tokenizer, tmp_path):
    samples, _ = _encode(mistral_tokenizer)
    kept = [s for s in samples if not s.dropped]
    page = preview_html(samples, mistral_tokenizer, tmp_path / "p.html").read_text("utf-8")
    spans = _parse(page).tokens
    assert len(spans) == sum(len(s.input_ids) for s in kept)
    shown = _shown_text(spans)
    decoded = "".join(mistral_tokenizer.decode(s.input_ids) for s in kept)
    assert shown == decoded
    assert "你好" in shown and "Paris is the capital" in shown


def test_html_summary_shows_counts_and_report(encoded, page):
    samples, report = encoded
    text = " ".join(_parse(page).text)
    assert f"{100 * trained_fraction(samples):.1f}%" in text
    assert "invalid_conversation: 1" in text  # from the report
    assert f"{report.samples_in} in, {report.samples_kept} kept" in text
    assert "Dropped samples" in text
    assert "Sample 1 — demo.jsonl:1" in text and "Sample 2 — demo.jsonl:2" in text


def test_html_max_samples_and_title(encoded, smollm2_tokenizer, tmp_path):
    samples, _ = encoded
    path = preview_html(samples, smollm2_tokenizer, tmp_path / "sub" / "one.html",
                        title="A <b>title</b>", max_samples=1)  # fmt: skip
    page = path.read_text(encoding="utf-8")
    assert len(_parse(page).tokens) == len(samples[0].input_ids)
    assert "<title>A &lt;b&gt;title&lt;/b&gt;</title>" in page


def test_terminal_preview_shows_answers_and_fraction(encoded, smollm2_tokenizer):
    samples, _ = encoded
    console = Console(record=True, width=120)
    preview_terminal(samples, smollm2_tokenizer, console=console)
    out = console.export_text()
    assert "Paris is the capital of France." in out
    assert "你·好·！" in out  # each character once, its other byte-level tokens as "·"
    assert "<|im_end|>" in out
    assert "↵\n" in out and "⇥done" in out
    assert f"{100 * trained_fraction(samples):.1f}%" in out
    assert "demo.jsonl:1" in out and "invalid_conversation ×1" in out


def test_terminal_preview_respects_max_samples(encoded, smollm2_tokenizer):
    samples, _ = encoded
    console = Console(record=True, width=120)
    preview_terminal(samples, smollm2_tokenizer, console=console, max_samples=1)
    out = console.export_text()
    assert "Paris" in out and "⇥done" not in out
    assert "showing 1 of 2 kept samples" in out


def test_trained_fraction_matches_report(encoded):
    samples, report = encoded
    trained = sum(1 for s in samples for label in s.labels if label != IGNORE_INDEX)
    tokens = sum(len(s.input_ids) for s in samples)
    assert trained_fraction(samples) == pytest.approx(trained / tokens)
    assert trained_fraction(samples) == pytest.approx(report.trained_fraction)
    assert trained_fraction([]) == 0.0
