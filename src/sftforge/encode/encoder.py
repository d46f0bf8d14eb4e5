"""Encode conversations into ``input_ids`` and ``labels`` with exact loss masks.

How a sample is built (the guarantees are tested for every built-in template and several
real tokenizers):

1. The template renders segments; the policy decides which are trained (by default the
   answer and end marker of every assistant turn). Adjacent trained segments form a run.
2. For every trained run starting at character ``a``, the ids before it are exactly
   ``tokenizer(text[:a], add_special_tokens=False).input_ids``, i.e. what inference feeds
   (**P1**). They extend the ids built so far.
3. The run itself is tokenized as a *continuation* of that prompt (see
   :meth:`Encoder._continuation`), so it decodes to the answer and its end marker (**P2**),
   and only those tokens carry labels (**P3**).
4. Where a tokenizer merges characters across the prompt/answer boundary (a prompt
   ending in a space, say), the prompt side keeps inference's tokens (P1 wins) and the
   merge is counted. If a later turn's prompt tokenizes an earlier answer differently
   than that answer was trained, the earlier turn is left untrained and counted, so no
   trained token ever conditions on ids inference would not produce.
5. Text after the last trained token carries no signal and is not encoded.

Truncation to ``max_length`` keeps the system prompt and drops the oldest whole turns;
a turn is never kept without its end marker. A sample with no trained token left is
dropped with a counted reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sftforge.encode.pieces import PieceKey, PieceTokenizer
from sftforge.encode.report import EncodeReport
from sftforge.errors import ConversationError, EncodingError
from sftforge.templates.base import CONTENT_KINDS, END, TEXT, ChatTemplate, Segment
from sftforge.types import KIND_TEXT, Conversation, ConversationLike, as_conversation

IGNORE_INDEX = -100
POLICIES = ("all_assistant", "last_assistant", "all_tokens")

#: Texts put before an answer so it tokenizes as a continuation, not as the start of a
#: text (SentencePiece would otherwise prepend a word-boundary '▁'). Tried in order; one
#: that merges with the answer's first characters is skipped.
_ANCHORS = ("\n", "a", "。", "#")
#: Characters either side of a prompt/answer boundary checked for a cross-boundary merge.
_BOUNDARY_WINDOW = 16


@dataclass(frozen=True)
class TrainedSpan:
    """Token range ``[start, end)`` trained for one message (an assistant turn, usually)."""

    message: int | None
    start: int
    end: int
    has_end_marker: bool
    role: str | None = None


@dataclass(frozen=True)
class Encoded:
    """One encoded sample. ``labels`` are -100 where not trained (no shift: the model
    shifts). A dropped sample has empty ids and a ``drop_reason``."""

    input_ids: list[int]
    labels: list[int]
    spans: tuple[TrainedSpan, ...] = ()
    drop_reason: str | None = None
    truncated: bool = False
    turns_dropped: int = 0
    boundary_merges: int = 0
    turns_untrained_boundary: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dropped(self) -> bool:
        return self.drop_reason is not None

    @property
    def num_trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)

    def to_dict(self) -> dict[str, Any]:
        return {"input_ids": self.input_ids, "labels": self.labels}


@dataclass
class _Run:
    start: int
    end: int
    message: int | None
    has_end: bool


@dataclass
class _Plan:
    conv: Conversation
    text: str
    runs: list[_Run]
    assistant_messages: list[int]


class Encoder:
    """Encodes conversations with one template and tokenizer; batches tokenizer calls.

    >>> enc = Encoder(get_template("chatml"), tokenizer, max_length=2048)  # doctest: +SKIP
    >>> sample = enc.encode(conversation)                                  # doctest: +SKIP
    """

    def __init__(
        self,
        template: ChatTemplate,
        tokenizer: Any,
        *,
        max_length: int | None = None,
        policy: str = "all_assistant",
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}")
        self.template = template
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.policy = policy
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        self._batch = getattr(self._backend, "encode_batch_fast", None) or getattr(
            self._backend, "encode_batch", None
        )
        self._anchor_ids = [self._tokenize([a])[0] for a in _ANCHORS]
        self._pieces = PieceTokenizer(tokenizer, self._tokenize)
        for problem in template_tokenizer_problems(template, tokenizer):
            warnings.warn(problem, TemplateMismatchWarning, stacklevel=2)

    # -- public API ------------------------------------------------------------------------
    def encode(self, conversation: ConversationLike) -> Encoded:
        """Encode one conversation. Invalid conversations raise ConversationError."""
        return self.encode_batch([conversation], errors="raise")[0]

    def encode_batch(
        self,
        conversations: Sequence[ConversationLike],
        *,
        errors: str = "raise",
        report: EncodeReport | None = None,
    ) -> list[Encoded]:
        """Encode many conversations with one batched tokenizer call.

        ``errors="drop"`` turns invalid conversations into dropped samples instead of
        raising: reason ``invalid_conversation``, or the error's own ``code`` where it has
        one (``invalid_tool_call`` for a malformed tool call; ``template_without_tools``,
        ``tool_calls_not_rendered``, ``content_not_rendered`` for a conversation the
        template cannot render whole, see
        :class:`~sftforge.templates.base.UnrenderableConversation`). Results are in input order and
        include dropped samples; ``report`` (if given) is updated.
        """
        plans: list[_Plan | Encoded] = []
        for i, conv_like in enumerate(conversations):
            try:
                plans.append(self._plan(as_conversation(conv_like)))
            except ConversationError as exc:
                if errors == "raise":
                    raise
                meta = {"error": str(exc), "index": i}
                # A specific reason where the error has one (invalid_tool_call,
                # template_without_tools, tool_calls_not_rendered, ...).
                reason = getattr(exc, "code", None) or "invalid_conversation"
                plans.append(Encoded([], [], drop_reason=reason, meta=meta))
        results = self._assemble_all([p for p in plans if isinstance(p, _Plan)])
        out: list[Encoded] = []
        it = iter(results)
        for p in plans:
            out.append(next(it) if isinstance(p, _Plan) else p)
        if self.max_length is not None:
            out = [
                self._fit(enc, p) if isinstance(p, _Plan) else enc
                for enc, p in zip(out, plans, strict=True)
            ]
        if report is not None:
            for enc, p in zip(out, plans, strict=True):
                self._count(report, enc, p if isinstance(p, _Plan) else None)
        return out

    def encode_many(
        self,
        conversations: Iterable[ConversationLike],
        *,
        batch_size: int = 512,
        errors: str = "drop",
        report: EncodeReport | None = None,
    ) -> Iterator[Encoded]:
        """Stream kept samples; drops are counted in ``report``, never yielded."""
        batch: list[ConversationLike] = []
        for conv in conversations:
            batch.append(conv)
            if len(batch) >= batch_size:
                yield from (e for e in self.encode_batch(batch, errors=errors, report=report)
                            if not e.dropped)  # fmt: skip
                batch = []
        if batch:
            yield from (e for e in self.encode_batch(batch, errors=errors, report=report)
                        if not e.dropped)  # fmt: skip

    # -- planning --------------------------------------------------------------------------
    def _is_trained(self, seg: Segment, conv: Conversation, last_assistant: int | None) -> bool:
        if conv.kind == KIND_TEXT or seg.kind == TEXT or self.policy == "all_tokens":
            return True
        msg = conv.messages[seg.message] if seg.message is not None else None
        if msg is not None and msg.train is not None:
            if msg.role == "assistant":
                return msg.train and seg.is_answer_part
            return msg.train and seg.is_content and seg.kind in CONTENT_KINDS
        if not seg.is_answer_part or msg is None or msg.role != "assistant":
            return False
        return self.policy == "all_assistant" or seg.message == last_assistant

    def _plan(self, conv: Conversation) -> _Plan:
        segs = self.template.render_segments(conv, tokenizer=self.tokenizer)
        assistant = [i for i, m in enumerate(conv.messages) if m.role == "assistant"]
        last_assistant = assistant[-1] if assistant else None
        runs: list[_Run] = []
        pos = 0
        for seg in segs:
            start, pos = pos, pos + len(seg.text)
            if not self._is_trained(seg, conv, last_assistant):
                continue
            is_end = seg.kind == END
            if runs and runs[-1].end == start:
                runs[-1].end = pos
                runs[-1].has_end = runs[-1].has_end or is_end
            else:
                runs.append(_Run(start, pos, seg.message, is_end))
        text = "".join(s.text for s in segs)
        return _Plan(conv, text, runs, assistant if conv.kind != KIND_TEXT else [])

    # -- tokenization ----------------------------------------------------------------------
    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Exactly ``tokenizer(texts, add_special_tokens=False).input_ids``, batched."""
        if not texts:
            return []
        if self._batch is not None:
            encs = self._batch(list(texts), add_special_tokens=False)
            return [e.ids for e in encs]
        return list(self.tokenizer(list(texts), add_special_tokens=False)["input_ids"])

    def _continuations(
        self, texts: Sequence[str], first_try: Sequence[list[int]] | None = None
    ) -> list[list[int]]:
        """Tokenize each text as it reads after other text (no start-of-text effects).

        ``anchor + text`` is tokenized and the anchor's tokens removed; an anchor whose
        tokens change in front of this text (it merged) is skipped for the next one.
        ``first_try`` holds the encodings with the first anchor when already computed.
        """
        out: list[list[int] | None] = [None] * len(texts)
        pending = list(range(len(texts)))
        for a, (anchor, anchor_ids) in enumerate(zip(_ANCHORS, self._anchor_ids, strict=True)):
            if not pending:
                break
            n = len(anchor_ids)
            if a == 0 and first_try is not None:
                encoded = list(first_try)
            else:
                encoded = self._tokenize([anchor + texts[i] for i in pending])
            still = []
            for i, ids in zip(pending, encoded, strict=True):
                if ids[:n] == anchor_ids:
                    out[i] = ids[n:]
                else:
                    still.append(i)
            pending = still
        if pending:  # no anchor stayed separate: tokenize on its own
            for i, ids in zip(pending, self._tokenize([texts[i] for i in pending]), strict=True):
                out[i] = ids
        return [ids if ids is not None else [] for ids in out]

    # -- assembly --------------------------------------------------------------------------
    def _assemble_all(self, plans: Sequence[_Plan]) -> list[Encoded]:
        # Everything to tokenize goes into one batched call (the tokenizer parallelises it).
        prefixes: dict[str, int] = {}
        conts: dict[str, int] = {}
        windows: dict[str, int] = {}
        for p in plans:
            for r in p.runs:
                if r.start == 0:
                    prefixes.setdefault(p.text[: r.end], len(prefixes))
                    continue
                prefixes.setdefault(p.text[: r.start], len(prefixes))
                conts.setdefault(p.text[r.start : r.end], len(conts))
                left = p.text[max(0, r.start - _BOUNDARY_WINDOW) : r.start]
                right = p.text[r.start : r.start + _BOUNDARY_WINDOW]
                windows.setdefault(left, len(windows))
                windows.setdefault(left + right, len(windows))
        anchor = _ANCHORS[0]
        texts = [*(anchor + c for c in conts), *windows]
        prefix_ids, encoded = self._prefix_ids(list(prefixes), texts)
        n_cont = len(conts)
        cont_ids = self._continuations(list(conts), encoded[:n_cont])
        window_ids = encoded[n_cont:]
        return [
            self._assemble(p, prefixes, prefix_ids, conts, cont_ids, windows, window_ids)
            for p in plans
        ]

    def _prefix_ids(
        self, prompts: list[str], extra: list[str]
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Exact ids of every prompt text, and of the ``extra`` texts tokenized in the same
        batch. Prompts are tokenized piecewise between added tokens when that is exact
        (see ``pieces.py``): multi-turn prompts then share their history's pieces."""
        if self._pieces.enabled:
            pieces: dict[PieceKey, int] = {}
            parts = [self._pieces.parts(text, pieces) for text in prompts]
            keys = list(pieces)
            encoded = self._tokenize([context + piece for context, piece in keys] + extra)
            table = self._pieces.strip_contexts(keys, encoded[: len(keys)])
            if table is not None:
                return [self._pieces.join(p, table) for p in parts], encoded[len(keys) :]
            self._pieces.enabled = False  # the split property failed: tokenize whole texts
        encoded = self._tokenize(prompts + extra)
        return encoded[: len(prompts)], encoded[len(prompts) :]

    def _assemble(
        self,
        plan: _Plan,
        prefixes: Mapping[str, int],
        prefix_ids: Sequence[list[int]],
        conts: Mapping[str, int],
        cont_ids: Sequence[list[int]],
        windows: Mapping[str, int],
        window_ids: Sequence[list[int]],
    ) -> Encoded:
        ids: list[int] = []
        labels: list[int] = []
        spans: list[TrainedSpan] = []
        merges = untrained = 0
        text = plan.text
        for r in plan.runs:
            if r.start == 0:
                answer = prefix_ids[prefixes[text[: r.end]]]
            else:
                prompt = prefix_ids[prefixes[text[: r.start]]]
                common = _common_prefix(ids, prompt)
                if common < len(ids):
                    # This prompt tokenizes an earlier answer differently than it was
                    # trained: inference wins, the earlier turn(s) are not trained.
                    kept = []
                    for s in spans:
                        if s.end > common:
                            labels[s.start : min(s.end, common)] = [IGNORE_INDEX] * max(
                                0, min(s.end, common) - s.start
                            )
                            untrained += 1
                        else:
                            kept.append(s)
                    spans = kept
                    del ids[common:], labels[common:]
                ids.extend(prompt[len(ids) :])
                labels.extend([IGNORE_INDEX] * (len(ids) - len(labels)))
                answer = cont_ids[conts[text[r.start : r.end]]]
                left = text[max(0, r.start - _BOUNDARY_WINDOW) : r.start]
                right = text[r.start : r.start + _BOUNDARY_WINDOW]
                left_ids = window_ids[windows[left]]
                if window_ids[windows[left + right]][: len(left_ids)] != left_ids:
                    merges += 1
            role = plan.conv.messages[r.message].role if r.message is not None else None
            spans.append(TrainedSpan(r.message, len(ids), len(ids) + len(answer), r.has_end, role))
            ids.extend(answer)
            labels.extend(answer)
        reason = None if any(label != IGNORE_INDEX for label in labels) else "no_trained_tokens"
        return Encoded(
            ids if reason is None else [],
            labels if reason is None else [],
            spans=tuple(spans) if reason is None else (),
            drop_reason=reason,
            boundary_merges=merges,
            turns_untrained_boundary=untrained,
            meta=dict(plan.conv.meta),
        )

    # -- truncation ------------------------------------------------------------------------
    def _fit(self, enc: Encoded, plan: _Plan) -> Encoded:
        """Fit ``max_length``: drop the oldest whole turns, keep the system prompt."""
        limit = self.max_length
        assert limit is not None
        if enc.dropped or len(enc.input_ids) <= limit:
            return enc
        conv = plan.conv
        if conv.kind == KIND_TEXT:  # a replay document: keep its beginning
            return Encoded(
                enc.input_ids[:limit], enc.labels[:limit],
                spans=tuple(s for s in enc.spans if s.start < limit),
                truncated=True, meta=enc.meta,
            )  # fmt: skip
        head = conv.messages[:1] if conv.system is not None else ()
        turns = conv.turns
        starts = [j for j, m in enumerate(turns) if m.role == "user"]
        for dropped, start in enumerate(starts[1:], start=1):
            shorter = conv.with_messages((*head, *turns[start:]))
            candidate = self._assemble_all([self._plan(shorter)])[0]
            if candidate.dropped:
                break
            if len(candidate.input_ids) <= limit:
                return Encoded(
                    candidate.input_ids, candidate.labels, spans=candidate.spans,
                    truncated=True, turns_dropped=dropped,
                    boundary_merges=candidate.boundary_merges,
                    turns_untrained_boundary=candidate.turns_untrained_boundary, meta=enc.meta,
                )  # fmt: skip
        return Encoded([], [], drop_reason="too_long", meta=enc.meta)

    # -- reporting -------------------------------------------------------------------------
    def _count(self, report: EncodeReport, enc: Encoded, plan: _Plan | None) -> None:
        report.samples_in += 1
        where = str(plan.conv.location) if plan is not None else str(enc.meta.get("error", ""))
        if enc.dropped:
            report.drop(enc.drop_reason or "unknown", where)
            return
        report.samples_kept += 1
        if enc.truncated:
            report.truncated_samples += 1
            report.turns_dropped_by_truncation += enc.turns_dropped
            report.note("truncated", where)
        if enc.boundary_merges:
            report.boundary_merges += enc.boundary_merges
            report.note("boundary_merge", where)
        if enc.turns_untrained_boundary:
            report.turns_untrained_boundary += enc.turns_untrained_boundary
            report.note("turn_untrained_boundary", where)
        if plan is not None:
            report.assistant_turns += len(plan.assistant_messages)
            # Only chat turns: a replay text is stored as one assistant message but is not
            # an assistant turn (it has no end-of-turn marker to learn).
            turns = set(plan.assistant_messages)
            trained = [s for s in enc.spans if s.role == "assistant" and s.message in turns]
            report.assistant_turns_trained += len(trained)
            report.end_markers_trained += sum(1 for s in trained if s.has_end_marker)
        report.tokens += len(enc.input_ids)
        report.trained_tokens += enc.num_trained


class TemplateMismatchWarning(UserWarning):
    """The template's markers are not special tokens of this tokenizer."""


def template_tokenizer_problems(template: ChatTemplate, tokenizer: Any) -> list[str]:
    """Why this template and tokenizer are a poor pair (empty when they fit).

    A template whose end-of-turn marker is plain text to the tokenizer (Llama-3's
    ``<|eot_id|>`` with a ChatML tokenizer, say) teaches the model to spell the marker
    piece by piece; generation then rarely stops on it, and later prompts may tokenize
    it differently (such turns are left untrained and counted).
    """
    special = set(getattr(tokenizer, "all_special_tokens", None) or ())
    added = getattr(tokenizer, "get_added_vocab", None)
    if callable(added):
        special |= set(added())
    problems = []
    stops = template.stop_strings(tokenizer)
    marker = stops[0] if stops else ""
    if marker.startswith("<") and marker.endswith(">") and marker not in special:
        problems.append(
            f"template {template.name!r}: end-of-turn marker {marker!r} is not a special token "
            f"of this tokenizer; use the model's own template ('hf') or one whose markers the "
            "tokenizer knows"
        )
    return problems


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def encode(
    conversation: ConversationLike,
    template: ChatTemplate,
    tokenizer: Any,
    *,
    max_length: int | None = None,
    policy: str = "all_assistant",
) -> Encoded:
    """Encode one conversation (see :class:`Encoder` for batches and reports)."""
    if tokenizer is None:
        raise EncodingError("encode needs a tokenizer")
    return Encoder(template, tokenizer, max_length=max_length, policy=policy).encode(conversation)
