"""Show what the model will learn, token by token, in a terminal or an HTML page.

Every token is shown as the text it adds to the sample, so a reader sees the real token
boundaries and, by colour, which tokens carry a label (trained) and which are masked:

>>> preview_terminal(samples, tokenizer)                          # doctest: +SKIP
>>> preview_html(samples, tokenizer, "preview.html", report=rep)  # doctest: +SKIP

How a token's text is found: decoding one token at a time breaks in two common cases, a
character split over several byte-level tokens (most CJK text with GPT-2 style BPE: each
piece decodes to U+FFFD) and SentencePiece's word-boundary marker (a lone ``▁ok`` decodes
to ``ok``). So the text is decoded *incrementally*, as streaming inference does: a token's
text is what it adds to the decoded text of the tokens before it, and tokens that only
complete a character together are grouped; the group's first token shows the character(s)
and the others show a continuation mark.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from sftforge.encode.encoder import IGNORE_INDEX, Encoded
from sftforge.encode.report import EncodeReport
from sftforge.errors import Location

__all__ = ["preview_html", "preview_terminal", "trained_fraction"]

#: Shown for a token that only completes a character shown on the token before it.
CONTINUATION = "·"
#: Readable stand-ins for characters that would otherwise be invisible.
_VISIBLE = {"\n": "↵", "\t": "⇥", "\r": "␍"}
_SPACE = "␣"
#: A longer run of tokens that never decodes cleanly is invalid UTF-8 in the data, not a
#: split character (UTF-8 needs at most 4 bytes); stop waiting and show what decodes.
_MAX_GROUP = 8

_TRAINED_STYLES = ("bold black on green3", "bold black on pale_green3")  # alternate: boundaries
_UNTRAINED_STYLE = "dim"
_SPECIAL_STYLE = "dim magenta"


@dataclass(frozen=True)
class _Token:
    """One token as displayed: ``text`` is its readable form (a newline is ``↵`` + ``\\n``)."""

    id: int
    pos: int
    label: int
    raw: str  # the vocabulary entry (convert_ids_to_tokens), for the tooltip
    text: str
    special: bool
    continues: str | None = None  # the character(s) this token helps complete

    @property
    def trained(self) -> bool:
        return self.label != IGNORE_INDEX


# -- public API ----------------------------------------------------------------------------
def trained_fraction(encoded_samples: Sequence[Encoded]) -> float:
    """Trained tokens over all tokens of ``encoded_samples`` (dropped samples add nothing)."""
    tokens = sum(len(e.input_ids) for e in encoded_samples)
    trained = sum(e.num_trained for e in encoded_samples)
    return trained / tokens if tokens else 0.0


def preview_terminal(
    encoded_samples: Sequence[Encoded],
    tokenizer: Any,
    console: Console | None = None,
    max_samples: int = 3,
) -> None:
    """Print the first ``max_samples`` kept samples token by token, then the trained fraction.

    Trained tokens are highlighted (two shades of green, alternating so token boundaries
    show), masked tokens are dim. Dropped samples teach nothing and are only counted.
    """
    console = console or Console()
    kept = [e for e in encoded_samples if not e.dropped]
    console.print(
        Text.assemble(
            ("trained", _TRAINED_STYLES[0]), (" tokens", _TRAINED_STYLES[1]),
            " (shades alternate at token boundaries)  ", ("masked", _UNTRAINED_STYLE),
            ("  <|special|>", _SPECIAL_STYLE), "  ↵ newline  ␣ space  · rest of a character",
        )
    )  # fmt: skip
    for number, sample in enumerate(kept[:max_samples], start=1):
        console.print()
        console.print(Text(_header(number, sample), style="bold"))
        console.print(_render_text(_tokens(sample, tokenizer)))
    console.print()
    if len(kept) > max_samples:
        console.print(Text(f"showing {max_samples} of {len(kept)} kept samples", style="dim"))
    dropped = Counter(e.drop_reason for e in encoded_samples if e.dropped)
    if dropped:
        reasons = ", ".join(f"{reason} ×{n}" for reason, n in sorted(dropped.items()))
        console.print(Text(f"dropped samples (not shown): {reasons}", style="yellow"))
    console.print(Text(_overall(encoded_samples), style="bold"))


def preview_html(
    encoded_samples: Sequence[Encoded],
    tokenizer: Any,
    path: str | os.PathLike[str],
    report: EncodeReport | None = None,
    title: str = "sftforge preview: what the model learns",
    *,
    max_samples: int | None = None,
) -> Path:
    """Write a self-contained HTML page (inline CSS, UTF-8) showing every token; return its path.

    Each token is a ``<span class="tok trained">`` or ``<span class="tok masked">`` whose
    tooltip gives its id, position, label and vocabulary entry. ``report`` adds the
    drop and truncation counts to the summary. ``max_samples`` limits the samples drawn
    (all by default); the summary always covers every sample given.
    """
    kept = [e for e in encoded_samples if not e.dropped]
    shown = kept if max_samples is None else kept[:max_samples]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style></head>",
        "<body>",
        f"<h1>{_esc(title)}</h1>",
        _html_summary(encoded_samples, report, len(shown)),
        _HTML_LEGEND,
    ]
    for number, sample in enumerate(shown, start=1):
        parts.append(_html_sample(number, sample, _tokens(sample, tokenizer)))
    dropped = [e for e in encoded_samples if e.dropped]
    if dropped:
        items = "".join(
            f"<li>{_esc(_where(e) or 'sample')}: {_esc(e.drop_reason or 'unknown')}"
            + (f" — {_esc(e.meta['error'])}" if e.meta.get("error") else "")
            + "</li>"
            for e in dropped
        )
        parts.append(f'<section class="box"><h2>Dropped samples</h2><ul>{items}</ul></section>')
    parts.append("</body></html>\n")
    from sftforge.fsutil import atomic_write_text

    return atomic_write_text(Path(path), "\n".join(parts))


# -- tokens --------------------------------------------------------------------------------
def _special_ids(tokenizer: Any) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", None) or ())
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(i for i, tok in added.items() if getattr(tok, "special", False))
    return ids


def _tokens(sample: Encoded, tokenizer: Any) -> list[_Token]:
    """The sample's tokens with the text each adds (see the module docstring)."""
    ids = list(sample.input_ids)
    raw = tokenizer.convert_ids_to_tokens(ids)
    special = _special_ids(tokenizer)
    out: list[_Token] = []

    def decode(start: int, end: int) -> str:
        # No clean-up: it rewrites " ." to "." and would shift the text between tokens.
        return tokenizer.decode(
            ids[start:end], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def emit(start: int, end: int, text: str) -> None:
        """Tokens ``[start, end)`` together add ``text``: the first shows it."""
        for pos in range(start, end):
            is_special = ids[pos] in special
            if is_special:  # the vocabulary entry is the honest, visible form
                shown, continues = raw[pos], None
            elif pos == start:
                shown = _visible(text) if text else raw[pos]
                continues = None
            else:
                shown, continues = CONTINUATION, text
            label = sample.labels[pos]
            out.append(_Token(ids[pos], pos, label, raw[pos], shown, is_special, continues))

    context = group = 0  # decode from `context`; tokens from `group` are not shown yet
    for i in range(len(ids)):
        if ids[i] in special and group < i:  # never fold a special token into a group
            emit(group, i, decode(context, i)[len(decode(context, group)) :])
            context = group = i
        before = decode(context, group)
        after = decode(context, i + 1)
        if after.endswith("\ufffd") and i + 1 - group < _MAX_GROUP and ids[i] not in special:
            continue  # a character is split over tokens: wait for its last byte
        emit(group, i + 1, after[len(before) :])
        context, group = group, i + 1  # the last group is context enough for the next
    if group < len(ids):
        emit(group, len(ids), decode(context, len(ids))[len(decode(context, group)) :])
    return out


def _visible(text: str) -> str:
    """Readable form of a token's text: a newline shows as ``↵`` and still breaks the line."""
    if not text.strip():  # a whitespace-only token: make its spaces visible too
        text = text.replace(" ", _SPACE)
    return "".join(_VISIBLE.get(ch, ch) + ("\n" if ch == "\n" else "") for ch in text)


# -- text pieces ---------------------------------------------------------------------------
def _where(sample: Encoded) -> str:
    m = sample.meta
    if not any(m.get(k) is not None for k in ("source", "line", "index", "id")):
        return ""
    sample_id = None if m.get("id") is None else str(m.get("id"))
    return str(Location(m.get("source"), m.get("line"), m.get("index"), sample_id))


def _stats(sample: Encoded) -> str:
    n, trained = len(sample.input_ids), sample.num_trained
    line = f"{n} tokens · {trained} trained ({_pct(trained, n)})"
    if sample.truncated:
        line += f" · truncated ({sample.turns_dropped} oldest turns dropped)"
    return line


def _header(number: int, sample: Encoded) -> str:
    where = _where(sample)
    return f"#{number}{'  ' + where if where else ''}  {_stats(sample)}"


def _overall(samples: Sequence[Encoded]) -> str:
    tokens = sum(len(e.input_ids) for e in samples)
    trained = sum(e.num_trained for e in samples)
    return (
        f"trained fraction: {100 * trained_fraction(samples):.1f}% "
        f"({trained} of {tokens} tokens, {len(samples)} samples)"
    )


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0.0%"


# -- terminal ------------------------------------------------------------------------------
def _render_text(tokens: Sequence[_Token]) -> Text:
    text = Text()
    shade = 0
    for tok in tokens:
        if tok.trained:
            style = _TRAINED_STYLES[shade]
            shade ^= 1
        else:
            style = _SPECIAL_STYLE if tok.special else _UNTRAINED_STYLE
        text.append(tok.text, style=style)
    return text


# -- html ----------------------------------------------------------------------------------
def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _html_summary(samples: Sequence[Encoded], report: EncodeReport | None, shown: int) -> str:
    tokens = sum(len(e.input_ids) for e in samples)
    trained = sum(e.num_trained for e in samples)
    kept = sum(1 for e in samples if not e.dropped)
    rows: list[tuple[str, str]] = [
        ("samples", f"{len(samples)} ({kept} kept, {shown} shown below)"),
        ("tokens", f"{tokens:,}"),
        ("trained tokens", f"{trained:,}"),
        ("trained fraction", f"{100 * trained_fraction(samples):.1f}%"),
    ]
    if report is not None:
        dropped = sum(report.dropped.values())
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(report.dropped.items()))
        rows += [
            ("report: samples", f"{report.samples_in} in, {report.samples_kept} kept"),
            ("report: dropped", f"{dropped}" + (f" ({reasons})" if reasons else "")),
            (
                "report: truncated",
                f"{report.truncated_samples} samples, "
                f"{report.turns_dropped_by_truncation} oldest turns dropped",
            ),
            ("report: boundary merges", str(report.boundary_merges)),
            (
                "report: trained fraction",
                f"{100 * report.trained_fraction:.1f}% of {report.tokens:,} tokens",
            ),
        ]
    cells = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in rows)
    return f'<section class="box summary"><h2>Summary</h2><dl>{cells}</dl></section>'


def _html_sample(number: int, sample: Encoded, tokens: Sequence[_Token]) -> str:
    where = _where(sample)
    heading = f"Sample {number}" + (f" — {where}" if where else "")
    spans = []
    for tok in tokens:
        classes = ["tok", "trained" if tok.trained else "masked"]
        if tok.special:
            classes.append("special")
        if tok.continues is not None:
            classes.append("cont")
        label = str(tok.label) if tok.trained else f"{IGNORE_INDEX} (not trained)"
        tip = f"id {tok.id} · position {tok.pos} · label {label} · token {tok.raw!r}"
        if tok.continues is not None:
            tip += f" · completes {tok.continues!r}"
        spans.append(
            f'<span class="{" ".join(classes)}" title="{_esc(tip)}">{_esc(tok.text)}</span>'
        )
    return (
        f'<section class="sample"><h2>{_esc(heading)}</h2>'
        f'<p class="stats">{_esc(_stats(sample))}</p>'
        f'<div class="tokens">{"".join(spans)}</div></section>'
    )


_HTML_LEGEND = (
    '<section class="box legend"><span class="swatch trained">trained</span> '
    "the model learns to predict these tokens (they carry labels) "
    '<span class="swatch masked">masked</span> context only (label -100) '
    '<span class="swatch special">&lt;|special|&gt;</span> special token. '
    "↵ newline, ␣ space (where a token is only whitespace), "
    "· the rest of a character split over several tokens. "
    "Hover a token for its id, position and label.</section>"
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC",
  "PingFang SC", "Microsoft YaHei", sans-serif; max-width: 1100px; margin: 2em auto;
  padding: 0 1em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin: 0 0 .4em; }
.box { border: 1px solid #d0d7de; border-radius: 6px; padding: .8em 1em; margin: 1em 0;
  background: #f6f8fa; }
.summary dl { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1.2em; margin: 0; }
.summary dt { color: #57606a; } .summary dd { margin: 0; font-weight: 600; }
.legend { line-height: 2; }
.sample { margin: 1.5em 0; } .stats { color: #57606a; margin: 0 0 .5em; }
.tokens { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Noto Sans Mono CJK SC",
  monospace; white-space: pre-wrap; word-break: break-all; line-height: 1.9;
  border: 1px solid #d0d7de; border-radius: 6px; padding: .6em; }
.tok, .swatch { border: 1px solid #c8ccd0; border-radius: 3px; padding: 0 1px; margin-right: 1px; }
.masked { background: #eceff1; color: #6e7781; }
.trained { background: #a6e3a1; color: #0b3d0b; border-color: #5cb85c; }
.special { font-style: italic; color: #8250df; }
.trained.special { color: #3b1d8f; }
.cont { opacity: .75; }
"""
