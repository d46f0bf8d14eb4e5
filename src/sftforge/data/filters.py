"""Filter blocks: keep a conversation, or drop it with a reason and a detail.

    length        too_short / too_long     characters and/or tokens, per conversation or message
    repetition    repetitive               duplicate word 3-grams (character 10-grams for CJK)
    language      wrong_language           langid on prompt and answer, expected per source
    placeholder   placeholder              leftover ``{{name}}``, ``<PLACEHOLDER>``, ``[INSERT]``
    refusal       refusal                  "As an AI language model", "抱歉，我无法", ...
    echo          echo                     the answer merely repeats its prompt

Each block's stage name is its recipe name, and :func:`build_block` builds any block (these
and the cleaning blocks of :mod:`sftforge.data.clean`) from a name and keyword parameters,
as a recipe gives them, naming an unknown block or parameter in its error.

Per-record work is kept cheap: precompiled regexes, cheap pre-checks before any regex, langid
only on a truncated sample and only when a script check cannot already accept the text,
tokenizers called in batches.

>>> from sftforge.types import Conversation, Message
>>> from sftforge.data.block import RejectSink
>>> conv = Conversation((Message("user", "Who are you?"),
...                      Message("assistant", "As an AI language model, I cannot say.")))
>>> sink = RejectSink()
>>> list(build_block("refusal").run([conv], sink))
[]
>>> sink.to_dict()
{'refusal': {'seen': 1, 'kept': 0, 'rejected': {'refusal': 1}}}
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any

from sftforge.data.block import Filter
from sftforge.data.clean import CLEANERS, BlockConfigError, Transform, check_roles
from sftforge.data.langid_vec import LangId
from sftforge.data.langid_vec import langid as langid_model
from sftforge.types import Conversation, Message

__all__ = [
    "BLOCKS",
    "FILTERS",
    "BlockConfigError",
    "EchoFilter",
    "LanguageFilter",
    "LengthFilter",
    "PlaceholderFilter",
    "RefusalFilter",
    "RepetitionFilter",
    "block_params",
    "build_block",
    "detect_language",
    "language_codes",
    "looks_like_code",
    "repetition_ratio",
    "strip_code",
]

Verdict = tuple[str, str] | None
#: A language judgement: (status, detected language, probability).
Judgement = tuple[str, str | None, float]

# -- shared helpers ----------------------------------------------------------------------------

_FENCED_CODE = re.compile(r"(?:```|~~~).*?(?:```|~~~|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
# CJK ideographs, kana and hangul: scripts written without spaces between words.
_CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK = re.compile(f"[{_CJK_CLASS}]")


def strip_code(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans (cheap when there are none)."""
    if "```" in text or "~~~" in text:
        text = _FENCED_CODE.sub(" ", text)
    if "`" in text:
        text = _INLINE_CODE.sub(" ", text)
    return text


# A line that reads as code: a statement keyword, a call or assignment ending the line, a
# lone brace, a comment marker, or a line ending in ; { } or a Python block colon.
_CODE_LINE = re.compile(
    r"^\s*(?:def |class |import |from \S+ import |return\b|#include|public |private |"
    r"function\b|const |let |var |print\(|console\.|//|/\*|[{}]\s*$)"
    r"|[;{}]\s*$|^\s*(?:if|for|while|elif|else|try|except|with)\b.*:\s*$"
    r"|^\s*[\w.\[\]]+\s*[-+*/]?=\s*\S",
    re.MULTILINE,
)


_CODE_CHARS = re.compile(r"[(){};=:/]")


def looks_like_code(text: str, *, min_share: float = 0.3) -> bool:
    """Whether two or more lines, and at least ``min_share`` of the non-blank lines, of
    ``text`` read as code (unfenced code is common in instruction data)."""
    if not _CODE_CHARS.search(text):
        return False
    hits = len(_CODE_LINE.findall(text))
    if hits < 2:
        return False
    lines = sum(1 for line in text.split("\n") if line.strip())
    return hits >= min_share * lines


def _label(i: int, msg: Message) -> str:
    return f"messages[{i}] ({msg.role})"


def _text_of(msg: Message) -> str:
    return f"{msg.content}\n{msg.input}" if msg.input else msg.content


def _check_number(
    block: str, name: str, value: Any, *, kind: type = int, low: float = 0, optional: bool = False
) -> Any:
    if value is None and optional:
        return None
    ok = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
    if not ok or isinstance(value, bool) or value < low:
        what = "an integer" if kind is int else "a number"
        raise BlockConfigError(f"{block}: {name} must be {what} >= {low}, got {value!r}")
    return value


def _check_ratio(block: str, name: str, value: Any) -> float:
    _check_number(block, name, value, kind=float)
    if value > 1:
        raise BlockConfigError(f"{block}: {name} must be between 0 and 1, got {value!r}")
    return float(value)


def _compile_patterns(block: str, name: str, patterns: Iterable[str]) -> list[str]:
    if isinstance(patterns, str):
        patterns = [patterns]
    out = []
    for p in patterns:
        try:
            re.compile(p)
        except (re.error, TypeError) as exc:
            raise BlockConfigError(f"{block}: {name} entry {p!r} is not a regex: {exc}") from exc
        out.append(p)
    return out


# Fewer texts than this are tokenized one by one rather than in a (multi-threaded) batch.
_MIN_PARALLEL_BATCH = 64

# -- length ------------------------------------------------------------------------------------


class LengthFilter(Filter):
    """Drop conversations whose text is too short or too long, in characters and/or tokens.

    Args:
        min_chars, max_chars: bounds on characters (``None``: no bound).
        min_tokens, max_tokens: bounds on tokens of ``tokenizer``, counted on message text
            alone (no template markup, no special tokens).
        tokenizer: a loaded tokenizer, or anything :func:`sftforge.tokenizer.load_tokenizer`
            accepts (``"smollm2"``, a directory, a ``tokenizer.json``...). Required with token
            bounds.
        scope: ``"conversation"`` (default) bounds the total over the judged messages;
            ``"message"`` bounds each judged message (user and assistant turns; an assistant
            turn holding only tool calls is skipped).
        answer_only: judge only assistant messages.
        byte_bounds: decide token bounds from the text's size in bytes when that suffices,
            without tokenizing: a token covers at least one byte, and at most as many
            non-blank bytes as the longest vocabulary entry. True of byte-level BPE,
            SentencePiece and WordPiece tokenizers unless a normalizer lengthens text; set
            false to tokenize every text.
        batch_size: conversations tokenized per batch call.

    Reasons ``too_short`` / ``too_long``; the detail names the unit and the numbers, e.g.
    ``messages[1] (assistant): 3 tokens < min_tokens 8``. Characters are checked first, so a
    conversation rejected on characters is never tokenized.
    """

    name = "length"

    def __init__(
        self,
        *,
        min_chars: int | None = None,
        max_chars: int | None = None,
        min_tokens: int | None = None,
        max_tokens: int | None = None,
        tokenizer: Any = None,
        scope: str = "conversation",
        answer_only: bool = False,
        byte_bounds: bool = True,
        batch_size: int = 512,
    ) -> None:
        n = self.name
        self.min_chars = _check_number(n, "min_chars", min_chars, optional=True)
        self.max_chars = _check_number(n, "max_chars", max_chars, optional=True)
        self.min_tokens = _check_number(n, "min_tokens", min_tokens, optional=True)
        self.max_tokens = _check_number(n, "max_tokens", max_tokens, optional=True)
        self.batch_size = _check_number(n, "batch_size", batch_size, low=1)
        for lo, hi in (("min_chars", "max_chars"), ("min_tokens", "max_tokens")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise BlockConfigError(f"{n}: {lo} ({a}) is greater than {hi} ({b})")
        if all(v is None for v in (min_chars, max_chars, min_tokens, max_tokens)):
            raise BlockConfigError(
                f"{n}: give at least one of min_chars, max_chars, min_tokens, max_tokens"
            )
        if scope not in ("conversation", "message"):
            raise BlockConfigError(f"{n}: scope must be 'conversation' or 'message', got {scope!r}")
        self.scope = scope
        self.answer_only = bool(answer_only)
        self.uses_tokens = min_tokens is not None or max_tokens is not None
        if self.uses_tokens and tokenizer is None:
            raise BlockConfigError(
                f"{n}: min_tokens/max_tokens need a tokenizer (e.g. tokenizer: smollm2)"
            )
        if isinstance(tokenizer, str):
            from sftforge.tokenizer import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
        if tokenizer is not None and not hasattr(tokenizer, "backend_tokenizer"):
            raise BlockConfigError(
                f"{n}: tokenizer must be a fast (Rust-backed) tokenizer, got "
                f"{type(tokenizer).__name__}"
            )
        self.tokenizer = tokenizer
        self.byte_bounds = bool(byte_bounds)
        # The most non-blank bytes one token can cover: a text with B non-blank bytes has at
        # least B / max_token_bytes tokens.
        self._max_token_bytes = (
            _max_token_bytes(tokenizer) if self.uses_tokens and self.byte_bounds else 0
        )

    def _decided_by_bytes(self, texts: list[str]) -> bool:
        """Whether the token bounds hold for ``texts`` whatever the tokenizer does: each text
        has at most one token per byte (plus one, for a prefix space) and at least one per
        ``max_token_bytes`` non-blank bytes, rounded up."""
        size = least = 0
        longest = self._max_token_bytes
        for t in texts:
            n = len(t) if t.isascii() else len(t.encode())
            size += n
            nonblank = n - t.count(" ") - t.count("\n") - t.count("\t") - t.count("\r")
            least += -(-nonblank // longest)  # ceil: each text is tokenized on its own
        if self.max_tokens is not None and size + len(texts) > self.max_tokens:
            return False
        return self.min_tokens is None or least >= self.min_tokens

    # Units: (label, texts) pairs whose summed length is bounded.
    def _units(self, conv: Conversation) -> list[tuple[str, list[str]]]:
        roles = ("assistant",) if self.answer_only else None
        if self.scope == "conversation":
            texts = []
            for m in conv.messages:
                if roles is None or m.role in roles:
                    texts.append(m.content)
                    if m.input:
                        texts.append(m.input)
            return [("answers" if self.answer_only else "conversation", texts)]
        units = []
        for i, m in enumerate(conv.messages):
            if m.role not in (roles or ("user", "assistant")):
                continue
            if m.tool_calls and not m.content.strip():
                continue
            units.append((_label(i, m), [m.content, m.input] if m.input else [m.content]))
        return units

    def _bounds(self, label: str, n: int, unit: str, lo: int | None, hi: int | None) -> Verdict:
        if lo is not None and n < lo:
            return "too_short", f"{label}: {n} {unit} < min_{unit} {lo}"
        if hi is not None and n > hi:
            return "too_long", f"{label}: {n} {unit} > max_{unit} {hi}"
        return None

    def _token_counts(self, texts: list[str]) -> list[int]:
        backend = self.tokenizer.backend_tokenizer
        if len(texts) < _MIN_PARALLEL_BATCH:
            # A batch call wakes the tokenizer's thread pool, whose threads then spin for a
            # while and slow down the Python blocks running next; a few texts are encoded
            # as fast one by one.
            return [len(backend.encode(t, add_special_tokens=False).ids) for t in texts]
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [len(e.ids) for e in encode(texts, add_special_tokens=False)]

    def check_batch(self, conversations: Sequence[Conversation]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        pending: list[tuple[int, list[tuple[str, list[str]]]]] = []
        for k, conv in enumerate(conversations):
            units = self._units(conv)
            verdict = None
            if self.min_chars is not None or self.max_chars is not None:
                for label, texts in units:
                    n = sum(map(len, texts))
                    verdict = self._bounds(label, n, "chars", self.min_chars, self.max_chars)
                    if verdict:
                        break
            verdicts.append(verdict)
            if verdict is None and self.uses_tokens:
                if self.byte_bounds:
                    units = [u for u in units if not self._decided_by_bytes(u[1])]
                if units:
                    pending.append((k, units))
        if pending:
            flat = [t for _, units in pending for _, texts in units for t in texts]
            counts = iter(self._token_counts(flat))
            for k, units in pending:
                for label, texts in units:
                    n = sum(next(counts) for _ in texts)
                    verdict = self._bounds(label, n, "tokens", self.min_tokens, self.max_tokens)
                    if verdict and verdicts[k] is None:
                        verdicts[k] = verdict
        return verdicts

    def check(self, conversation: Conversation) -> Verdict:
        return self.check_batch([conversation])[0]

    def judged_per_call(self) -> int:
        # Batches pay off only for the tokenizer; character bounds are judged one by one.
        return self.batch_size if self.uses_tokens else 1


_MAX_TOKEN_BYTES: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _max_token_bytes(tokenizer: Any) -> int:
    """Cached :func:`_compute_max_token_bytes` (decoding a large vocabulary takes a while)."""
    try:
        return _MAX_TOKEN_BYTES[tokenizer]
    except KeyError:
        value = _MAX_TOKEN_BYTES[tokenizer] = _compute_max_token_bytes(tokenizer)
        return value
    except TypeError:  # not weak-referenceable
        return _compute_max_token_bytes(tokenizer)


def _compute_max_token_bytes(tokenizer: Any) -> int:
    """The most non-blank UTF-8 bytes any token of ``tokenizer`` decodes to (blank: space,
    newline, tab, carriage return). Partial-character tokens decode to U+FFFD, 3 bytes, which
    only overestimates."""
    backend = tokenizer.backend_tokenizer
    size = backend.get_vocab_size(with_added_tokens=True)
    pieces = backend.decode_batch([[i] for i in range(size)], skip_special_tokens=False)
    longest = 1
    for piece in pieces:
        data = piece.encode()
        nonblank = len(data) - sum(data.count(c) for c in (b" ", b"\n", b"\t", b"\r"))
        longest = max(longest, nonblank)
    return longest


# -- repetition --------------------------------------------------------------------------------


def repetition_ratio(
    text: str, *, ngram: int = 3, cjk_ngram: int = 10, min_ngrams: int = 0
) -> tuple[float, int, str]:
    """``(ratio, total, unit)``: the fraction of ``ngram``-word n-grams (words split on
    whitespace, lowercased) that repeat an earlier one (``unit="word"``), or of
    ``cjk_ngram``-character n-grams over the non-space characters when at least 30% of them
    are CJK (``unit="char"``, judged on the first 200); ``total`` is the number of n-grams.
    With fewer than ``min_ngrams`` n-grams the ratio is not computed (0.0).

    >>> repetition_ratio("the cat sat " * 5)[0]
    0.7692307692307693
    """
    chars = "" if text.isascii() else "".join(text.split())
    probe = chars[:200]
    if probe and len(probe) - len(_CJK.sub("", probe)) >= 0.3 * len(probe):
        n, unit = cjk_ngram, "char"
        total = len(chars) - n + 1
        if total < max(min_ngrams, 1):
            return 0.0, max(total, 0), unit
        unique = len({chars[i : i + n] for i in range(total)})
    else:
        n, unit = ngram, "word"
        words = text.lower().split()
        total = len(words) - n + 1
        if total < max(min_ngrams, 1):
            return 0.0, max(total, 0), unit
        unique = len(set(zip(*(words[i:] for i in range(n)), strict=False)))
    return (total - unique) / total, total, unit


class RepetitionFilter(Filter):
    """Drop degenerate, repetitive text: the share of repeated n-grams in a message.

    The measure (after Gopher's and RefinedWeb's duplicate n-gram rules) is the fraction of
    word ``ngram``-grams that repeat an earlier n-gram of the same message; text that is at
    least 30% CJK uses character ``cjk_ngram``-grams instead, since it has no spaces. Code
    blocks are left out first (code repeats by nature).

    Args:
        ngram: word n-gram size (default 3).
        max_ratio: highest repeated-n-gram fraction kept, word n-grams (default 0.35).
        cjk_ngram: character n-gram size for CJK text (default 10).
        cjk_max_ratio: the same for CJK text (default 0.3).
        min_ngrams: texts with fewer n-grams are not judged (default 20).
        roles: roles judged, each message on its own (default: assistant).
        skip_code: leave fenced and inline code out of the measure (default True).

    The defaults were set on the shared sample data: answers repeating a whole paragraph
    scored 0.34 to 0.67 and a looping sentence scores over 0.9, while the 99th percentile
    of Alpaca answers is 0.23 (English, word 3-grams) and 0.14 (Chinese, character
    10-grams); of the 2,000 Alpaca en/zh demo rows only a receipt template repeating
    ``[价格] [小计价格]`` is dropped.

    Reason ``repetitive``; detail like ``messages[1] (assistant): 0.62 of 150 word 3-grams
    repeat (max 0.3)``.
    """

    name = "repetition"

    def __init__(
        self,
        *,
        ngram: int = 3,
        max_ratio: float = 0.35,
        cjk_ngram: int = 10,
        cjk_max_ratio: float = 0.3,
        min_ngrams: int = 20,
        roles: Sequence[str] = ("assistant",),
        skip_code: bool = True,
    ) -> None:
        n = self.name
        self.ngram = _check_number(n, "ngram", ngram, low=1)
        self.cjk_ngram = _check_number(n, "cjk_ngram", cjk_ngram, low=1)
        self.max_ratio = _check_ratio(n, "max_ratio", max_ratio)
        self.cjk_max_ratio = _check_ratio(n, "cjk_max_ratio", cjk_max_ratio)
        self.min_ngrams = _check_number(n, "min_ngrams", min_ngrams, low=1)
        self.roles = check_roles(n, roles)
        self.skip_code = bool(skip_code)

    def check(self, conversation: Conversation) -> Verdict:
        for i, m in enumerate(conversation.messages):
            if self.roles is not None and m.role not in self.roles:
                continue
            text = strip_code(m.content) if self.skip_code else m.content
            ratio, total, unit = repetition_ratio(
                text, ngram=self.ngram, cjk_ngram=self.cjk_ngram, min_ngrams=self.min_ngrams
            )
            if total < self.min_ngrams:
                continue
            limit = self.cjk_max_ratio if unit == "char" else self.max_ratio
            if ratio > limit:
                size = self.cjk_ngram if unit == "char" else self.ngram
                return "repetitive", (
                    f"{_label(i, m)}: {ratio:.2f} of {total} {unit} {size}-grams repeat "
                    f"(max {limit})"
                )
        return None


# -- language ----------------------------------------------------------------------------------


def _langid() -> LangId:
    return langid_model()


def language_codes() -> list[str]:
    """The language codes langid can detect (ISO 639-1, e.g. ``en``, ``zh``)."""
    return list(_langid().classes)


def detect_language(text: str, *, max_chars: int = 500) -> tuple[str, float]:
    """``(language, probability)`` by langid.py (offline) on the first ``max_chars`` chars.

    The language is an ISO 639-1 code (``"en"``, ``"zh"``); the probability is langid's
    normalised probability. Short texts and lists of names are unreliable: judge those
    together with their context, as :class:`LanguageFilter` does.

    >>> detect_language("Le chat est assis sur le tapis, et il regarde la pluie tomber.")[0]
    'fr'
    """
    return _langid().classify(text[:max_chars])


# Frequent English words that are not (frequent) words of other Latin-script languages
# ("a", "in", "is", "to", "on", "die", "do", "so" are left out): text largely made of them is
# English without asking langid.
_EN_WORDS = frozenset(
    re.findall(
        r"\S+",
        "the and of that for with are this you from have your which will they their these has "
        "been were would should could there what how about into than also such them when it "
        "its not be by or can more other some any only our we he she his her who "
        "use used using make making time help given following create sentence list provide "
        "between people world each important while work way generate may like where had take "
        "example different out improve need many most then here find both describe first often "
        "include including well words word name identify being however good high write better "
        "add made learn able great one two three new up all through if but does did explain "
        "without always another my it's i'm don't can't should just get got know want",
    )
)
_ASCII_WORD = re.compile(r"[a-z']+")
_NON_LETTER = re.compile(r"[\W\d_]+")
_TRANSLATION = re.compile(
    r"(?i)translat|译|\b(?:in|into|to) (?:english|chinese|mandarin|spanish|french|german|"
    r"italian|portuguese|russian|japanese|korean|arabic|hindi|dutch|latin)\b|"
    r"用(?:英|中|汉|日|法|德|韩|俄|西班牙)(?:文|语)"
)
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile("[\u3040-\u30ff]")


class LanguageFilter(Filter):
    """Drop conversations not in the language(s) expected for their source.

    The expected languages come from ``languages``, a mapping of glob patterns over
    ``meta["source"]`` to language codes (first matching pattern wins; a pattern also
    matches a path suffix, so ``alpaca_zh*.json`` matches ``data/alpaca_zh_demo.json``),
    else from ``default``. A source with no expectation (``default: null``) is not judged.

    Two parts are judged: the user prompts (message content, not Alpaca ``input``, which
    often holds text to translate or quote) and the assistant answers, with code blocks and
    inline code left out. ``mode`` says how they combine:

    - ``"all"`` (default): the prompt and the answer must each be in an expected language,
      so an English answer to a Chinese prompt (or the reverse) is dropped too. Answers to
      translation requests (``translate``, ``翻译``, ``in French``, ``用英文``...) are not
      judged.
    - ``"any"``: one expected part suffices.
    - ``"combined"``: one verdict on a sample of both parts joined.

    A part with fewer than ``min_letters`` letters, whose non-space characters are less than
    ``min_letter_ratio`` letters (math, tables), or that reads as code (unfenced code
    included, see :func:`looks_like_code`), is not judged: langid guesses on such text. A
    detection below ``min_confidence`` is not trusted; the part passes. Obvious cases skip
    langid: text without CJK made largely of English function words is English, and text
    mostly of Han characters without kana is Chinese. Every rejection is langid's own
    verdict (see :func:`detect_language`) on the first ``sample_chars`` characters.

    Conversations are judged ``batch_size`` at a time, with one vectorised langid call for
    all the texts of a batch that the cheap checks leave open.

    Reason ``wrong_language``; detail like ``answer: detected fr (p=0.99), expected en``.
    """

    name = "language"

    def __init__(
        self,
        *,
        languages: Mapping[str, Sequence[str] | str] | None = None,
        default: Sequence[str] | str | None = ("en",),
        mode: str = "all",
        min_confidence: float = 0.95,
        min_letters: int = 40,
        min_letter_ratio: float = 0.5,
        skip_translations: bool = True,
        sample_chars: int = 500,
        batch_size: int = 512,
    ) -> None:
        n = self.name
        known = set(language_codes())

        def codes(where: str, value: Sequence[str] | str | None) -> frozenset[str] | None:
            if value is None:
                return None
            if isinstance(value, str):
                value = [value]
            out = frozenset(str(v) for v in value)
            bad = sorted(out - known)
            if bad or not out:
                raise BlockConfigError(
                    f"{n}: {where} has unknown language code(s) {bad}; expected ISO 639-1 "
                    f"codes langid knows, e.g. en, zh, fr (all: {', '.join(sorted(known))})"
                    if bad
                    else f"{n}: {where} lists no language"
                )
            return out

        if languages is not None and not isinstance(languages, Mapping):
            raise BlockConfigError(
                f"{n}: languages must map source globs to language codes, got {languages!r}"
            )
        self.languages = {
            str(k): codes(f"languages[{k!r}]", v) for k, v in (languages or {}).items()
        }
        self.default = codes("default", default)
        if mode not in ("all", "any", "combined"):
            raise BlockConfigError(f"{n}: mode must be 'all', 'any' or 'combined', got {mode!r}")
        self.mode = mode
        self.min_confidence = _check_ratio(n, "min_confidence", min_confidence)
        self.min_letters = _check_number(n, "min_letters", min_letters)
        self.min_letter_ratio = _check_ratio(n, "min_letter_ratio", min_letter_ratio)
        self.skip_translations = bool(skip_translations)
        self.sample_chars = _check_number(n, "sample_chars", sample_chars, low=20)
        self.batch_size = _check_number(n, "batch_size", batch_size, low=1)
        self._by_source: dict[Any, frozenset[str] | None] = {}

    def expected_for(self, source: Any) -> frozenset[str] | None:
        """The expected languages for a ``meta["source"]`` value (cached per source)."""
        try:
            return self._by_source[source]
        except KeyError:
            pass
        found = self.default
        if source is not None:
            path = str(source).replace("\\", "/")
            for pattern, langs in self.languages.items():
                if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, "*/" + pattern):
                    found = langs
                    break
        self._by_source[source] = found
        return found

    def judge(self, text: str, expected: frozenset[str]) -> tuple[str, str | None, float]:
        """``(status, lang, prob)`` for one text: status ``"unjudged"`` (too short, code-like
        or an uncertain detection), ``"expected"`` or ``"wrong"``."""
        screened = self._screen(text, expected)
        if screened is not None:
            return screened
        return self._decide(*detect_language(text, max_chars=self.sample_chars), expected)

    def _screen(self, text: str, expected: frozenset[str]) -> Judgement | None:
        """:meth:`judge` without langid: the judgement, or ``None`` when only langid can
        tell (then on the first ``sample_chars`` characters)."""
        text = text[: self.sample_chars]
        non_space = len(text) - text.count(" ") - text.count("\n") - text.count("\t")
        words = None
        han = 0
        rest = ""  # the letters that are not Han characters
        if text.isascii():
            words = _ASCII_WORD.findall(text.lower())
            letters = sum(map(len, words))
            has_cjk = False
        else:
            letter_chars = _NON_LETTER.sub("", text)
            letters = len(letter_chars)
            rest = _HAN.sub("", letter_chars)
            han = letters - len(rest)
            has_cjk = han > 0 or _CJK.search(rest) is not None
        if letters < self.min_letters or letters < self.min_letter_ratio * non_space:
            return "unjudged", None, 0.0
        # Cheap script checks first: they only ever accept.
        if "en" in expected and not has_cjk:
            if words is None:
                words = _ASCII_WORD.findall(text.lower())
            if len(words) >= 6 and sum(map(_EN_WORDS.__contains__, words)) >= 0.2 * len(words):
                return "expected", "en", 1.0
        if "zh" in expected and han >= 0.5 * letters and not _KANA.search(rest):
            return "expected", "zh", 1.0
        if looks_like_code(text):
            return "unjudged", None, 0.0
        return None

    def _decide(self, lang: str, prob: float, expected: frozenset[str]) -> Judgement:
        if lang in expected:
            return "expected", lang, prob
        if prob < self.min_confidence:
            return "unjudged", lang, prob
        return "wrong", lang, prob

    def _parts(self, conv: Conversation) -> tuple[str, str, bool]:
        limit = self.sample_chars
        prompt, answer = [], []
        translation = False
        for m in conv.messages:
            if m.role == "user":
                prompt.append(strip_code(m.content)[:limit])
                if self.skip_translations and _TRANSLATION.search(m.content):
                    translation = True
            elif m.role == "assistant" and not m.tool_calls:
                answer.append(strip_code(m.content)[:limit])
        return "\n".join(prompt), "\n".join(answer), translation

    def check(self, conversation: Conversation) -> Verdict:
        return self.check_batch([conversation])[0]

    def check_batch(self, conversations: Sequence[Conversation]) -> list[Verdict]:
        """Verdicts for many conversations, with one langid call for every text the cheap
        checks leave open (langid is vectorised over texts, see ``langid_vec.py``)."""
        plans: list[tuple[frozenset[str], list[tuple[str, Judgement | int]]] | None] = []
        open_texts: list[str] = []
        for conv in conversations:
            expected = self.expected_for(conv.meta.get("source"))
            if expected is None:
                plans.append(None)
                continue
            prompt, answer, translation = self._parts(conv)
            if self.mode == "combined":
                half = self.sample_chars // 2
                head = prompt[: max(half, self.sample_chars - len(answer))]
                parts = [("prompt+answer", f"{head}\n{answer}")]
            else:
                parts = [("prompt", prompt)] + ([] if translation else [("answer", answer)])
            entries: list[tuple[str, Judgement | int]] = []
            for name, text in parts:
                screened = self._screen(text, expected)
                if screened is None:  # an index into the texts langid will judge
                    entries.append((name, len(open_texts)))
                    open_texts.append(text[: self.sample_chars])
                else:
                    entries.append((name, screened))
            plans.append((expected, entries))
        detected = _langid().classify_batch(open_texts)
        verdicts: list[Verdict] = []
        for plan in plans:
            if plan is None:
                verdicts.append(None)
                continue
            expected, entries = plan
            results = [
                (name, *(self._decide(*detected[j], expected) if isinstance(j, int) else j))
                for name, j in entries
            ]
            verdicts.append(self._verdict(results, expected))
        return verdicts

    def _verdict(
        self, results: list[tuple[str, str, str | None, float]], expected: frozenset[str]
    ) -> Verdict:
        wrong = [r for r in results if r[1] == "wrong"]
        if not wrong or (self.mode == "any" and any(r[1] == "expected" for r in results)):
            return None
        detail = "; ".join(
            f"{name}: detected {lang} (p={prob:.2f})" for name, _, lang, prob in wrong
        )
        return "wrong_language", f"{detail}, expected {'/'.join(sorted(expected))}"

    def judged_per_call(self) -> int:
        return self.batch_size


# -- placeholders ------------------------------------------------------------------------------

# Built-in placeholder shapes. "brace" ({name}) is judged with extra care, see below.
PLACEHOLDER_PATTERNS: dict[str, str] = {
    # {{name}}, {{ author }}: mustache/jinja variables left unrendered.
    "mustache": r"\{\{\s*[A-Za-z_][\w.\- ]{0,40}?\s*\}\}",
    # <PLACEHOLDER>, <INSERT NAME>, <YOUR_NAME>; Alpaca's <noinput> / <nooutput>.
    "angle": r"(?i:<\s*(?:placeholder|insert\b[^<>\n]{0,40}|your[ _-][^<>\n]{1,30}|"
    r"no\s*(?:input|output))\s*>)",
    # [INSERT ...], [PLACEHOLDER], [Insert date here], [ENTER NAME] (not the key [Enter]).
    "bracket": r"(?i:\[\s*(?:(?:insert|placeholder)\b[^\[\]\n]{0,60}|"
    r"(?:enter|add)\s+\w[^\[\]\n]{0,50})\])",
    # [Your Name], [Company Name]: letter templates; off by default (often the requested
    # output is a template).
    "template_field": r"\[(?:Your|Recipient(?:['’]s)?|Company|Customer(?:['’]s)?)\s[A-Z]\w*\]",
    # {name}: a lone identifier in single braces in prose, not code, LaTeX, JSON or ${x}.
    "brace": r"(?<![\w\\$^_{}])\{[a-z_][a-z0-9_]{1,30}\}(?![}\w])",
}
DEFAULT_PLACEHOLDER_KINDS = ("mustache", "angle", "bracket", "brace")
# Signs that a message is code or math even without fences: then {x} is syntax.
_CODE_HINTS = re.compile(r"[;=$]|\\[a-zA-Z]|\w\(|\b(?:def|function|const|import)\b")
# A prompt asking for a template: its answer may hold placeholders on purpose.
_TEMPLATE_REQUEST = re.compile(r"(?i)\btemplat(?:e|es|ing)\b|placeholder|fill[- ]in|模板|模版|占位")
# A text that talks about templating: its {{x}} are examples, not leftovers.
_TEMPLATE_TALK = re.compile(r"(?i)\btemplat(?:e|es|ing)\b|jinja|handlebars|mustache|模板|模版")


class PlaceholderFilter(Filter):
    """Drop conversations holding template placeholders that were never filled.

    Args:
        kinds: built-in shapes to look for (default ``mustache``, ``angle``, ``bracket``,
            ``brace``; also available: ``template_field`` for ``[Your Name]``-style fields):

            - ``mustache``: ``{{name}}``, ``{{ author }}``
            - ``angle``: ``<PLACEHOLDER>``, ``<INSERT NAME>``, ``<YOUR_NAME>``, ``<noinput>``
            - ``bracket``: ``[INSERT ...]``, ``[PLACEHOLDER]``, ``[Enter name]``
            - ``brace``: ``{name}``, only when obviously unfilled: a lowercase identifier in
              an answer's prose (the answer shows no sign of code or math) that its prompt
              does not contain too (then the conversation is *about* the placeholder).
        extra_patterns: further regular expressions; a match is a placeholder.
        roles: roles searched (default: all).

    Code blocks and inline code are never searched, nor is a text that talks about
    templating (``template``, ``Jinja``, ``mustache``, ``模板``), nor an answer to a prompt
    asking for a template or placeholders: there the placeholders are meant.

    Reason ``placeholder``; detail like ``messages[1] (assistant): '{{name}}'``. The shared
    ``identity.json`` data holds ``{{name}}``/``{{author}}`` on purpose: run
    ``placeholder_fill`` before this filter.
    """

    name = "placeholder"

    def __init__(
        self,
        *,
        kinds: Sequence[str] = DEFAULT_PLACEHOLDER_KINDS,
        extra_patterns: Sequence[str] = (),
        roles: Sequence[str] | None = None,
    ) -> None:
        n = self.name
        if isinstance(kinds, str):
            kinds = [kinds]
        unknown = [k for k in kinds if k not in PLACEHOLDER_PATTERNS]
        if unknown:
            raise BlockConfigError(
                f"{n}: unknown kind(s) {unknown}; "
                f"expected some of {', '.join(PLACEHOLDER_PATTERNS)}"
            )
        self.kinds = tuple(kinds)
        self.extra_patterns = _compile_patterns(n, "extra_patterns", extra_patterns)
        self.roles = check_roles(n, roles)
        plain = [PLACEHOLDER_PATTERNS[k] for k in self.kinds if k != "brace"]
        plain += [f"(?:{p})" for p in self.extra_patterns]
        self._plain = re.compile("|".join(plain)) if plain else None
        self._brace = re.compile(PLACEHOLDER_PATTERNS["brace"]) if "brace" in self.kinds else None
        # Cheap pre-check: built-in shapes all need one of these characters.
        self._triggers = None if self.extra_patterns else ("{", "<", "[")

    def _find(self, text: str, prompt: str | None) -> str | None:
        if self._triggers is not None and not any(t in text for t in self._triggers):
            return None
        text = strip_code(text)
        if _TEMPLATE_TALK.search(text):
            return None
        if self._plain is not None:
            match = self._plain.search(text)
            if match:
                return match.group(0)
        if (
            self._brace is not None
            and prompt is not None
            and "{" in text
            and not _CODE_HINTS.search(text)
        ):
            for match in self._brace.finditer(text):
                if match.group(0) not in prompt:
                    return match.group(0)
        return None

    def check(self, conversation: Conversation) -> Verdict:
        prompt = ""
        template_request = False
        for i, m in enumerate(conversation.messages):
            judged = self.roles is None or m.role in self.roles
            if judged and not (template_request and m.role == "assistant"):
                # {name} is judged in answers only, against their prompt.
                context = prompt if m.role == "assistant" else None
                for text in (m.content, m.input):
                    found = self._find(text, context) if text else None
                    if found is not None:
                        return "placeholder", f"{_label(i, m)}: {found!r}"
            if m.role == "user":
                prompt = _text_of(m)
                template_request = _TEMPLATE_REQUEST.search(prompt) is not None
        return None


# -- refusals ----------------------------------------------------------------------------------

_APOS = "['’]"
_I_AM = rf"i(?:{_APOS}m| am)"
_CANT = rf"(?:cannot|can{_APOS}?t|can not|am unable to|{_APOS}m unable to|am not able to)"
_DONT = rf"(?:don{_APOS}?t|do not)"
_ZH_COMMA = r"[，,、\s]*"
REFUSAL_PATTERNS: tuple[str, ...] = (
    # AI-identity boilerplate
    r"\bas an? (?:ai|artificial intelligence)(?: (?:language )?model| assistant,? i "
    rf"{_CANT})",
    r"\bas an? (?:large )?language model\b",
    rf"\b{_I_AM} (?:just |only )?an? (?:ai|artificial intelligence)(?: language)? model\b",
    rf"\b{_I_AM} (?:just |only )an ai\b",
    # refusals
    rf"\b(?:{_I_AM}|i apologi[sz]e|sorry)[,.!]? (?:sorry[,.!]? )?(?:but )?(?:as an ai,? )?"
    rf"i {_CANT}\b",
    rf"\bi {_CANT} (?:fulfill|comply with|assist with|help with|provide assistance)",
    rf"\bi{_APOS}?m not able to (?:provide|fulfill|assist)",
    rf"\bi {_DONT} have (?:personal )?(?:opinions|feelings|emotions|beliefs|preferences)\b",
    rf"\bi {_DONT} have personal (?:experiences|views)\b",
    rf"\bi {_DONT} have (?:access to )?real-time\b",
    r"\bmy knowledge cut-?off\b",
    r"\b(?:against|not within) my programming\b",
    r"\bit(?:'s| is) not appropriate for me to\b",
    # Chinese
    rf"(?<![你您他她它])作为一?[个名]?{_ZH_COMMA}(?:人工智能|ai|AI|语言模型|大型语言模型)",
    r"我(?:只)?是一?[个名]?(?:人工智能|ai|AI)?语言模型",
    rf"(?:抱歉|对不起|不好意思){_ZH_COMMA}(?:但是?)?{_ZH_COMMA}我(?:无法|不能|没有办法)",
    r"我(?:没有|不具备)(?:个人的?)(?:观点|意见|情感|感情|偏好|喜好)",
    r"我无法(?:满足|完成|提供)(?:您|你)的(?:这个)?(?:请求|要求)",
)
# Every text a built-in pattern matches holds one of these (lowercased) within the match:
# the regex only searches a window around each occurrence, and most answers hold none.
_WINDOW = 120
_REFUSAL_TRIGGERS_EN = (
    "an ai",
    "a ai",
    "artificial intelligence",
    "language model",
    "cannot",
    "can't",
    "cant",
    "can not",
    "unable to",
    "not able to",
    "don't have",
    "dont have",
    "do not have",
    "knowledge cut",
    "my programming",
    "appropriate for me",
)
_REFUSAL_TRIGGERS = (
    *_REFUSAL_TRIGGERS_EN,
    "can’t",
    "don’t have",
    "作为",
    "语言模型",
    "抱歉",
    "对不起",
    "不好意思",
    "我没有",
    "我不具备",
    "我无法",
)


class RefusalFilter(Filter):
    """Drop conversations whose answers refuse, or carry AI-assistant boilerplate.

    The built-in patterns (case-insensitive, English and Chinese) cover "As an AI language
    model", "I'm sorry, but I cannot", "I don't have personal opinions", "my knowledge
    cutoff", "作为一个人工智能", "抱歉，我无法", "我没有个人观点" and close variants.
    Identity answers ("I am Forge, an AI assistant") do not match.

    Args:
        extra_patterns: further regular expressions (matched case-insensitively).
        use_defaults: include the built-in patterns (default True).
        roles: roles searched (default: assistant).

    Reason ``refusal``; detail like ``messages[1] (assistant): 'As an AI language model'``.
    """

    name = "refusal"

    def __init__(
        self,
        *,
        extra_patterns: Sequence[str] = (),
        use_defaults: bool = True,
        roles: Sequence[str] = ("assistant",),
    ) -> None:
        n = self.name
        self.extra_patterns = _compile_patterns(n, "extra_patterns", extra_patterns)
        self.use_defaults = bool(use_defaults)
        if not self.use_defaults and not self.extra_patterns:
            raise BlockConfigError(f"{n}: no patterns (use_defaults is false, no extra_patterns)")
        self._defaults = (
            re.compile("|".join(f"(?:{p})" for p in REFUSAL_PATTERNS), re.IGNORECASE)
            if self.use_defaults
            else None
        )
        self._extra = (
            re.compile("|".join(f"(?:{p})" for p in self.extra_patterns), re.IGNORECASE)
            if self.extra_patterns
            else None
        )
        self.roles = check_roles(n, roles)

    def find(self, text: str) -> str | None:
        """A refusal phrase in ``text``, or ``None``."""
        if self._defaults is not None:
            found = self._find_default(text)
            if found is not None:
                return found
        if self._extra is not None:
            match = self._extra.search(text)
            if match:
                return match.group(0)
        return None

    def _find_default(self, text: str) -> str | None:
        # Every built-in match holds a trigger and spans well under _WINDOW characters, so
        # searching a window around each trigger finds a match wherever there is one.
        low = text.lower()
        if len(low) != len(text):  # lowercasing moved positions (rare): search it all
            match = self._defaults.search(text)
            return match.group(0) if match else None
        for trigger in _REFUSAL_TRIGGERS_EN if low.isascii() else _REFUSAL_TRIGGERS:
            at = low.find(trigger)
            while at != -1:
                match = self._defaults.search(
                    text, max(0, at - _WINDOW), at + len(trigger) + _WINDOW
                )
                if match:
                    return match.group(0)
                at = low.find(trigger, at + 1)
        return None

    def check(self, conversation: Conversation) -> Verdict:
        for i, m in enumerate(conversation.messages):
            if self.roles is not None and m.role not in self.roles:
                continue
            found = self.find(m.content)
            if found is not None:
                return "refusal", f"{_label(i, m)}: {found!r}"
        return None


# -- echoes ----------------------------------------------------------------------------------

# Echo tokens: word runs, single punctuation marks, line breaks, and each CJK character on
# its own. Punctuation and line breaks count, so an answer that fixes punctuation or splits
# text into lines is not the prompt "repeated".
_ECHO_TOKEN = re.compile(f"\n+|[{_CJK_CLASS}]|[^\\W{_CJK_CLASS}]+|[^\\w\\s]")


def _echo_tokens(text: str) -> list[str]:
    return _ECHO_TOKEN.findall(text.strip().lower())


class EchoFilter(Filter):
    """Drop conversations where an answer merely repeats its prompt.

    Each assistant answer is compared with the user message right before it, taken three
    ways: its content, its ``input``, and both together. Texts are compared as lowercase
    tokens: words, punctuation marks and line breaks (each CJK character a token), so
    spacing and case do not matter but a punctuation fix, a reordering or a line split is a
    real answer. An answer is an echo when

    - its tokens appear in the prompt part as one run covering at least ``min_coverage`` of
      it (``"hi"`` -> ``"hi"``, a sentence returned unchanged; an extracted phrase is short
      and does not count), or
    - it is a near-copy: the sets of token bigrams of answer and prompt part have a
      Jaccard similarity above ``max_jaccard`` (both having at least ``min_bigrams``
      distinct bigrams), and the token sequences a similarity (difflib ratio) above
      ``max_sequence_similarity``. Bigrams and the sequence check make the rule order-aware:
      a sorted list or reordered sentences are answers, not echoes (a plain token-set
      Jaccard calls them echoes).

    Args:
        max_jaccard: bigram-set Jaccard above which an answer may be an echo (default 0.9).
        max_sequence_similarity: token-sequence similarity above which it is (default 0.9).
        min_coverage: share of the prompt part a contained answer must cover (default 0.8).
        min_bigrams: smallest bigram-set size for the near-copy rule (default 5).

    An answer far longer or shorter than a prompt part (in characters, beyond what either
    rule allows, with a 2x slack) is not compared with it, which skips the tokenizing for
    nearly every conversation.

    Reason ``echo``; detail like ``messages[1] (assistant): answer repeats the prompt's
    input (coverage 1.00)`` or ``... near-copy of the prompt (bigram Jaccard 0.95,
    sequence similarity 0.97)``.
    """

    name = "echo"

    def __init__(
        self,
        *,
        max_jaccard: float = 0.9,
        max_sequence_similarity: float = 0.9,
        min_coverage: float = 0.8,
        min_bigrams: int = 5,
    ) -> None:
        n = self.name
        self.max_jaccard = _check_ratio(n, "max_jaccard", max_jaccard)
        self.max_sequence_similarity = _check_ratio(
            n, "max_sequence_similarity", max_sequence_similarity
        )
        self.min_coverage = _check_ratio(n, "min_coverage", min_coverage)
        self.min_bigrams = _check_number(n, "min_bigrams", min_bigrams, low=1)
        # Length pre-checks (in characters, with a 2x slack for characters per token): a
        # contained answer has at least min_coverage of the prompt's tokens, and a sequence
        # similarity above s needs token counts within a factor (2 - s) / s of each other.
        sim = self.max_sequence_similarity
        near = (2 - sim) / sim if sim > 0 else float("inf")
        cover = 1 / self.min_coverage if self.min_coverage > 0 else float("inf")
        self._longer = 2 * near
        self._shorter = 2 * max(cover, near)

    def _echo(self, answer: str, prompt: Message) -> str | None:
        length = len(answer)
        parts = [("prompt", prompt.content)]
        if prompt.input:
            parts += [("prompt's input", prompt.input), ("prompt", _text_of(prompt))]
        parts = [
            (name, text)
            for name, text in parts
            if length <= self._longer * len(text) + 20 and len(text) <= self._shorter * length + 20
        ]
        if not parts:
            return None  # the common case: an answer far longer (or shorter) than its prompt
        a_tokens = _echo_tokens(answer)
        if not a_tokens:
            return None
        # Joined with a separator no token holds, so containment is token-aligned.
        a_norm = "\x00" + "\x00".join(a_tokens) + "\x00"
        a_grams = set(pairwise(a_tokens))
        for name, text in parts:
            p_tokens = _echo_tokens(text)
            if not p_tokens:
                continue
            if len(a_tokens) >= self.min_coverage * len(p_tokens):
                p_norm = "\x00" + "\x00".join(p_tokens) + "\x00"
                if a_norm in p_norm:
                    coverage = len(a_tokens) / len(p_tokens)
                    return f"answer repeats the {name} (coverage {coverage:.2f})"
            if len(a_grams) >= self.min_bigrams:
                p_grams = set(pairwise(p_tokens))
                if len(p_grams) >= self.min_bigrams:
                    jaccard = len(a_grams & p_grams) / len(a_grams | p_grams)
                    if jaccard > self.max_jaccard:  # rare: only now the costlier check
                        similarity = difflib.SequenceMatcher(
                            None, p_tokens, a_tokens, autojunk=False
                        ).ratio()
                        if similarity > self.max_sequence_similarity:
                            return (
                                f"near-copy of the {name} (bigram Jaccard {jaccard:.2f}, "
                                f"sequence similarity {similarity:.2f})"
                            )
        return None

    def check(self, conversation: Conversation) -> Verdict:
        messages = conversation.messages
        for i in range(1, len(messages)):
            m, prev = messages[i], messages[i - 1]
            if m.role != "assistant" or prev.role != "user" or not m.content:
                continue
            found = self._echo(m.content, prev)
            if found is not None:
                return "echo", f"{_label(i, m)}: {found}"
        return None


# -- registry ----------------------------------------------------------------------------------

#: Keep/drop blocks by recipe name.
FILTERS: dict[str, type[Filter]] = {
    LengthFilter.name: LengthFilter,
    RepetitionFilter.name: RepetitionFilter,
    LanguageFilter.name: LanguageFilter,
    PlaceholderFilter.name: PlaceholderFilter,
    RefusalFilter.name: RefusalFilter,
    EchoFilter.name: EchoFilter,
}

#: Every block :func:`build_block` can build: cleaning blocks, then filters.
BLOCKS: dict[str, type[Transform] | type[Filter]] = {**CLEANERS, **FILTERS}


def block_params(name: str) -> dict[str, Any]:
    """The parameters of block ``name`` and their defaults (``inspect.Parameter.empty`` for
    required ones)."""
    cls = _block_class(name)
    sig = inspect.signature(cls.__init__)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _block_class(name: str) -> type[Transform] | type[Filter]:
    try:
        return BLOCKS[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), BLOCKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BlockConfigError(
            f"unknown block {name!r}{hint}; expected one of {', '.join(BLOCKS)}"
        ) from None


def build_block(name: str, **params: Any) -> Transform | Filter:
    """Build the block registered as ``name`` with keyword ``params`` (as a recipe gives them).

    Raises:
        BlockConfigError: unknown block name, unknown parameter (named as written, with the
            valid ones), missing required parameter, or an invalid value.

    >>> build_block("length", max_chars=4000).max_chars
    4000
    >>> build_block("length", max_char=4000)
    Traceback (most recent call last):
    ...
    sftforge.data.clean.BlockConfigError: length: unknown parameter 'max_char' (did you mean \
'max_chars'?); valid parameters: min_chars, max_chars, min_tokens, max_tokens, tokenizer, \
scope, answer_only, byte_bounds, batch_size
    """
    cls = _block_class(name)
    valid = block_params(name)
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise BlockConfigError(
                f"{name}: unknown parameter {key!r}{hint}; valid parameters: {', '.join(valid)}"
            )
    missing = [k for k, v in valid.items() if v is inspect.Parameter.empty and k not in params]
    if missing:
        raise BlockConfigError(f"{name}: missing required parameter(s) {', '.join(missing)}")
    return cls(**params)
