"""Training-length windows of long text documents, instead of dropping them.

A replay or plain-text document (``kind == "text"``) longer than the window is cut into
consecutive windows, each at most the window long, at the best boundary available near
the end of the window, in this order:

1. a paragraph break (a blank line),
2. a line break,
3. the end of a sentence (``.``, ``!``, ``?``, ``。``, ``！``, ``？``, ``…`` and the like),
4. any whitespace,
5. the window's end (one unbroken run of characters longer than the window).

A boundary only counts when it leaves the window at least half full, so windows are not
cut into slivers; the text between windows (the break itself) is dropped, nothing else.
Each window keeps its document's location (``meta.source``, ``line``, ``index``) and adds
``meta.window`` (0-based). Chat conversations pass unchanged.

The window size comes from the recipe's ``window`` section (``max_chars`` or
``max_tokens``), by default from the ``length`` filter's ``max_chars`` / ``max_tokens``,
so a window is never dropped as ``too_long``. Stage ``window`` counts documents seen,
windows kept and ``added`` (windows beyond the first of each split document).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sftforge.data.block import RejectSink
from sftforge.types import KIND_TEXT, Conversation

__all__ = ["TextWindows", "split_windows", "window_block"]

_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")
_LINE = re.compile(r"\n\s*")
_SENTENCE = re.compile(r"(?<=[.!?;。！？；…])[\"'”’)\]」』]*\s+|(?<=[。！？；…])")
_SPACE = re.compile(r"\s+")
_LEVELS = (_PARAGRAPH, _LINE, _SENTENCE, _SPACE)


def _last_break(text: str, lo: int, hi: int) -> tuple[int, int] | None:
    """The last break (start, end) of the best level inside ``text[lo:hi]``."""
    for pattern in _LEVELS:
        last = None
        for m in pattern.finditer(text, lo, hi):
            if m.start() > lo:
                last = (m.start(), m.end())
        if last is not None:
            return last
    return None


def split_windows(text: str, limit: Callable[[int], int]) -> list[str]:
    """``text`` cut into windows; ``limit(start)`` is the furthest end of the window that
    starts at ``start`` (``start + max_chars`` for character windows)."""
    out: list[str] = []
    start, n = 0, len(text)
    while start < n:
        end = max(limit(start), start + 1)
        if end >= n:
            piece = text[start:].strip()
            if piece:
                out.append(piece)
            break
        cut = _last_break(text, start + (end - start) // 2, end) or (end, end)
        piece = text[start : cut[0]].strip()
        if piece:
            out.append(piece)
        start = cut[1]
    return out


class TextWindows:
    """The block: text documents longer than the window become several windows."""

    name = "window"

    def __init__(
        self, max_chars: int | None = None, max_tokens: int | None = None, tokenizer: Any = None
    ) -> None:
        if max_tokens is not None and tokenizer is None:
            raise ValueError("window.max_tokens needs a tokenizer (the recipe's tokenizer)")
        self.max_chars = max_chars
        self.max_tokens = max_tokens
        self.tokenizer = tokenizer

    def _limits(self, text: str) -> Callable[[int], int] | None:
        """The window-end function for ``text``, or None when it fits in one window."""
        n = len(text)
        char_limit = self.max_chars if self.max_chars is not None else n
        if self.max_tokens is None:
            return None if n <= char_limit else (lambda s: s + char_limit)
        # Every token covers at least one character and at most a few bytes: short texts
        # fit without tokenizing.
        if n <= char_limit and len(text.encode()) < self.max_tokens:
            return None
        enc = self.tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)
        ends = [e for _, e in enc.offsets]
        starts = [s for s, _ in enc.offsets]
        if len(ends) <= self.max_tokens and n <= char_limit:
            return None
        import bisect

        def limit(start: int) -> int:
            first = bisect.bisect_left(starts, start)
            last = first + self.max_tokens - 1  # a margin of one token for the cut's edge
            by_tokens = ends[last - 1] if last - 1 < len(ends) else n
            return min(by_tokens, start + char_limit)

        return limit

    def run(
        self, conversations: Iterable[Conversation], sink: RejectSink
    ) -> Iterator[Conversation]:
        counts = sink.stage(self.name)
        for conv in conversations:
            counts.seen += 1
            if conv.kind != KIND_TEXT:
                counts.kept += 1
                yield conv
                continue
            text = conv.messages[0].content
            limit = self._limits(text)
            pieces = [text] if limit is None else split_windows(text, limit)
            if len(pieces) <= 1:
                counts.kept += 1
                yield conv
                continue
            counts.kept += len(pieces)
            counts.added += len(pieces) - 1
            for k, piece in enumerate(pieces):
                yield Conversation.text(piece, meta={**conv.meta, "window": k})


def window_block(recipe: Any, tokenizer: Any) -> TextWindows | None:
    """The recipe's window block (None: no window size, or turned off)."""
    spec = recipe.window
    if not spec.enabled:
        return None
    max_chars, max_tokens = spec.max_chars, spec.max_tokens
    if max_chars is None and max_tokens is None:
        for block in recipe.filters:
            if block.name == "length":
                max_chars = block.params.get("max_chars")
                max_tokens = block.params.get("max_tokens")
    if max_chars is None and max_tokens is None:
        return None
    if max_tokens is not None and tokenizer is None:
        if not recipe.tokenizer:
            raise ValueError("window.max_tokens needs the recipe's tokenizer")
        from sftforge.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(recipe.tokenizer)
    return TextWindows(max_chars, max_tokens, tokenizer)
