"""Cleaning blocks: transform the text of every message, never judge it.

A cleaning block keeps every conversation (``in == kept``) except one whose message text
becomes empty because of the cleaning (reason ``empty_after_cleaning``). Each block counts
the conversations it changed (``block.changed``) and what it changed (``block.changes``,
a counter by kind), so a report can say "mojibake repaired in 12 samples".

    unicode           NFC (or NFKC) normalisation and conservative mojibake repair (ftfy)
    whitespace        \\r\\n, trailing spaces, 3+ blank lines, zero-width and control chars
    placeholder_fill  substitute template placeholders such as ``{{name}}`` with given values

Per-record work is kept cheap: pure-ASCII text skips the Unicode work entirely, ftfy runs
only on text holding a character pair that mojibake is made of, and each block decides with
cheap searches whether a string needs work at all.

>>> from sftforge.types import Conversation, Message
>>> from sftforge.data.block import RejectSink
>>> conv = Conversation((Message("user", "Caf\\u00c3\\u00a9?  \\r\\n"),
...                      Message("assistant", "Oui.")))
>>> [m.content for m in next(UnicodeClean().run([conv], RejectSink())).messages]
['Café?  \\r\\n', 'Oui.']
>>> [m.content for m in next(WhitespaceClean().run([conv], RejectSink())).messages]
['CafÃ©?', 'Oui.']
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import ftfy
import ftfy.bad_codecs  # registers the sloppy-windows-* codecs used below
from ftfy.badness import is_bad

from sftforge.data.block import Rejected, RejectSink
from sftforge.errors import SftForgeError
from sftforge.types import ROLES, Conversation, Message

__all__ = [
    "CLEANERS",
    "BlockConfigError",
    "PlaceholderFill",
    "Transform",
    "UnicodeClean",
    "WhitespaceClean",
    "fix_mojibake",
]


class BlockConfigError(SftForgeError, ValueError):
    """A block was asked for by an unknown name, or given an unknown or invalid parameter."""


def check_roles(block: str, roles: Iterable[str] | None) -> frozenset[str] | None:
    """Validate a ``roles`` parameter: ``None`` (all roles) or a list of known roles."""
    if roles is None:
        return None
    if isinstance(roles, str):
        roles = [roles]
    out = frozenset(roles)
    unknown = sorted(out - set(ROLES))
    if unknown or not out:
        raise BlockConfigError(
            f"{block}: roles has unknown role(s) {unknown} (expected some of {', '.join(ROLES)})"
            if unknown
            else f"{block}: roles must name at least one role"
        )
    return out


class Transform:
    """A block that rewrites message text. Override :meth:`clean_text`.

    ``clean_text(text, kinds)`` returns the new text and adds a short key to ``kinds`` for
    each kind of change it made. The base class applies it to ``content`` and ``input`` of
    the messages whose role is in ``roles`` (all when ``None``), builds a new conversation
    only when something changed, and drops it (``empty_after_cleaning``) when a message that
    had text has none left. An emptied ``input`` just becomes ``None``.
    """

    name = "transform"

    def __init__(self, *, roles: Sequence[str] | None = None) -> None:
        self.roles = check_roles(self.name, roles)
        #: Conversations changed by this block (this process only).
        self.changed = 0
        #: Conversations changed, per kind of change.
        self.changes: Counter[str] = Counter()

    def clean_text(self, text: str, kinds: set[str]) -> str:  # pragma: no cover
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        return {"changed": self.changed, "changes": dict(self.changes)}

    def apply(self, conversation: Conversation) -> tuple[Conversation, set[str]]:
        """The cleaned conversation (the same object when nothing changed) and change kinds."""
        kinds: set[str] = set()
        new_messages: list[Message] | None = None
        clean = self.clean_text
        roles = self.roles
        for i, msg in enumerate(conversation.messages):
            if roles is not None and msg.role not in roles:
                continue
            content = clean(msg.content, kinds) if msg.content else msg.content
            inp = clean(msg.input, kinds) if msg.input else msg.input
            if content is msg.content and inp is msg.input:
                continue
            if content == msg.content and inp == msg.input:
                continue
            if new_messages is None:
                new_messages = list(conversation.messages)
            new_messages[i] = replace(msg, content=content, input=inp or None)
        if new_messages is None:
            return conversation, kinds
        return conversation.with_messages(new_messages), kinds

    def run(
        self, conversations: Iterable[Conversation], sink: RejectSink
    ) -> Iterator[Conversation]:
        counts = sink.stage(self.name)
        for conv in conversations:
            counts.seen += 1
            new, kinds = self.apply(conv)
            if new is not conv:
                self.changed += 1
                self.changes.update(kinds)
                emptied = _emptied(conv, new)
                if emptied is not None:
                    sink.reject(
                        Rejected("empty_after_cleaning", self.name, emptied, conversation=conv)
                    )
                    continue
            counts.kept += 1
            yield new


def _emptied(before: Conversation, after: Conversation) -> str | None:
    for i, (old, new) in enumerate(zip(before.messages, after.messages, strict=True)):
        if old.content.strip() and not new.content.strip():
            return f"messages[{i}] ({old.role}) had {len(old.content)} chars, none left"
    return None


# -- unicode -----------------------------------------------------------------------------------

# ftfy, configured to repair mojibake and nothing else: no width folding (it would turn
# Chinese full-width punctuation "，" into ","), no quote uncurling, no ligature folding, no
# HTML unescaping. Line breaks and control characters belong to the whitespace block, and
# normalisation is done (and counted) separately.
_FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    fix_encoding=True,
    restore_byte_a0=True,
    replace_lossy_sequences=True,
    decode_inconsistent_utf8=True,
    fix_c1_controls=True,
    fix_latin_ligatures=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    fix_surrogates=True,
    remove_control_chars=False,
    normalization=None,
    explain=False,
)


def _mojibake_re() -> re.Pattern[str]:
    """A necessary condition for ftfy (as configured) to change text, as one cheap search.

    ftfy repairs mojibake by re-encoding text with one of its single-byte codecs and
    decoding the bytes as UTF-8, which changes something only where a UTF-8 lead byte
    (0xC2-0xF4) is followed by a continuation byte (0x80-0xBF), a space (a lost 0xA0) or a
    ``?``/0x1A (a lossy sequence). So unless the text holds a character some codec encodes
    as a lead byte followed by one it encodes as a continuation byte (or a space, ``?``),
    or else a C1 control, U+001A, U+FFFD or a surrogate (the other repairs), ftfy leaves
    it alone. Plain accented text ("café", curly quotes) mostly fails this test, and CJK
    text always does.
    """
    leads: set[str] = set()
    conts: set[str] = set()
    for encoding in ftfy.chardata.CHARMAP_ENCODINGS:
        leads.update(bytes(range(0xC2, 0xF5)).decode(encoding, errors="ignore"))
        conts.update(bytes(range(0x80, 0xC0)).decode(encoding, errors="ignore"))

    def char_class(chars: set[str]) -> str:
        return "".join(re.escape(c) for c in sorted(chars) if not c.isascii())

    return re.compile(
        f"[{char_class(leads)}][{char_class(conts)} ?\x1a]|[\x1a\x80-\x9f\ufffd\ud800-\udfff]"
    )


_MOJIBAKE = _mojibake_re()
_C1_OR_SURROGATE = re.compile("[\x80-\x9f\ud800-\udfff]")


def fix_mojibake(text: str) -> str:
    """``text`` with mojibake repaired (``"cafÃ©"`` -> ``"café"``), conservatively."""
    if text.isascii() or not _MOJIBAKE.search(text):
        return text
    if not is_bad(text) and not _C1_OR_SURROGATE.search(text):
        return text  # ftfy would leave it as is (it repairs only text that looks bad)
    return ftfy.fix_text(text, _FTFY_CONFIG)


class UnicodeClean(Transform):
    """Unicode normalisation (NFC, or NFKC) and mojibake repair.

    Args:
        form: ``"NFC"`` (default: composes accents, changes no meaning) or ``"NFKC"`` (also
            folds compatibility characters: full-width letters, ligatures, superscripts).
            ``None`` skips normalisation.
        fix_mojibake: repair UTF-8 text decoded with the wrong codec (``ftfy``, conservative
            settings: no width folding, quote uncurling or HTML unescaping).
        roles: roles to clean (default: all).

    Change kinds: ``mojibake``, ``normalization``.
    """

    name = "unicode"

    def __init__(
        self,
        *,
        form: str | None = "NFC",
        fix_mojibake: bool = True,
        roles: Sequence[str] | None = None,
    ) -> None:
        super().__init__(roles=roles)
        if form is not None and form not in ("NFC", "NFKC"):
            raise BlockConfigError(f"unicode: form must be 'NFC', 'NFKC' or null, got {form!r}")
        self.form = form
        self.fix_mojibake = bool(fix_mojibake)

    def clean_text(self, text: str, kinds: set[str]) -> str:
        if text.isascii():  # ASCII is already NFC/NFKC and cannot hold mojibake
            return text
        if self.fix_mojibake:
            fixed = fix_mojibake(text)
            if fixed != text:
                kinds.add("mojibake")
                text = fixed
        if self.form is not None and not unicodedata.is_normalized(self.form, text):
            kinds.add("normalization")
            text = unicodedata.normalize(self.form, text)
        return text


# -- whitespace --------------------------------------------------------------------------------

_ZERO_WIDTH = "\u200b\u2060\ufeff\u180e"  # zero-width space, word joiner, BOM, Mongolian vs
_JOINERS = "\u200c\u200d"  # ZWNJ, ZWJ: meaningful in emoji sequences and Indic/Persian text
# C0 controls except \t and \n (\r is normalised first), DEL and C1 controls.
_CONTROL = "\x00-\x08\x0b-\x1f\x7f-\x9f"


class WhitespaceClean(Transform):
    """Whitespace and invisible-character cleanup that never touches indentation.

    In order: ``\\r\\n`` and lone ``\\r`` become ``\\n``; zero-width characters (U+200B,
    U+2060, U+FEFF, U+180E; also ZWJ/ZWNJ when ``keep_joiners=False``) and control
    characters except ``\\n`` and ``\\t`` are removed; trailing whitespace is stripped from
    every line; runs of more than ``max_blank_lines`` blank lines are collapsed to that
    many; with ``strip_ends``, blank lines before the text and whitespace after it go.
    Leading spaces and tabs of a line (code indentation) are never changed.

    Args:
        max_blank_lines: longest run of blank lines kept (default 2).
        keep_joiners: keep ZWJ/ZWNJ (default True: emoji sequences and Persian/Indic
            scripts need them).
        strip_ends: remove leading blank lines and trailing whitespace of each text.
        roles: roles to clean (default: all).

    Change kinds: ``newlines``, ``invisible``, ``trailing_space``, ``blank_lines``, ``ends``.
    """

    name = "whitespace"

    def __init__(
        self,
        *,
        max_blank_lines: int = 2,
        keep_joiners: bool = True,
        strip_ends: bool = True,
        roles: Sequence[str] | None = None,
    ) -> None:
        super().__init__(roles=roles)
        if not isinstance(max_blank_lines, int) or max_blank_lines < 0:
            raise BlockConfigError(
                f"whitespace: max_blank_lines must be an integer >= 0, got {max_blank_lines!r}"
            )
        self.max_blank_lines = max_blank_lines
        self.keep_joiners = bool(keep_joiners)
        self.strip_ends = bool(strip_ends)
        invisible = _ZERO_WIDTH + ("" if self.keep_joiners else _JOINERS)
        self._invisible = re.compile(f"[{invisible}{_CONTROL}]+")
        self._trailing = re.compile(r"[^\S\n]+$", re.MULTILINE)
        self._blank_run = re.compile(f"\n{{{max_blank_lines + 2},}}")
        self._blank_keep = "\n" * (max_blank_lines + 1)
        self._blank_marker = "\n" * (max_blank_lines + 2)
        # Trailing whitespace other than " " and "\t" before a line end (NBSP, U+3000...).
        self._unicode_trailing = re.compile(r"[^\S\n \t]\n")

    def _needs_work(self, text: str) -> bool:
        """Cheap checks (substring searches, one character-class scan) that say whether
        ``text`` can change at all; most text needs no work."""
        return (
            " \n" in text
            or "\t\n" in text
            or self._blank_marker in text
            or text[-1:].isspace()
            or (self.strip_ends and text[:1].isspace())
            or self._invisible.search(text) is not None
            or "\r" in text
            or (not text.isascii() and self._unicode_trailing.search(text) is not None)
        )

    def clean_text(self, text: str, kinds: set[str]) -> str:
        if not self._needs_work(text):
            return text
        if "\r" in text:
            kinds.add("newlines")
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        new = self._invisible.sub("", text)
        if new != text:
            kinds.add("invisible")
            text = new
        new = self._trailing.sub("", text)
        if new != text:
            kinds.add("trailing_space")
            text = new
        new = self._blank_run.sub(self._blank_keep, text)
        if new != text:
            kinds.add("blank_lines")
            text = new
        if self.strip_ends:
            new = _strip_ends(text)
            if new != text:
                kinds.add("ends")
                text = new
        return text


def _strip_ends(text: str) -> str:
    """Drop leading blank lines (not the first line's indentation) and trailing whitespace."""
    text = text.rstrip()
    stripped = text.lstrip()
    if stripped == text:
        return text
    # Keep the indentation of the first non-blank line.
    start = text.rfind("\n", 0, len(text) - len(stripped)) + 1
    return text[start:]


# -- placeholder fill --------------------------------------------------------------------------

DEFAULT_FILL_PATTERN = r"\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}"


class PlaceholderFill(Transform):
    """Substitute template placeholders with given values.

    ``values`` maps a placeholder name to its text: with the default pattern
    ``{"name": "Forge", "author": "sftforge"}`` turns ``"I am {{name}}"`` into
    ``"I am Forge"``. Placeholders without a value are left as they are (the
    ``placeholder`` filter can then drop them).

    Args:
        values: placeholder name -> replacement text (required, non-empty).
        pattern: regular expression whose group 1 is the placeholder name (default
            ``{{ name }}``, spaces inside the braces allowed).
        roles: roles to fill (default: all).

    Change kind: ``filled``.
    """

    name = "placeholder_fill"

    def __init__(
        self,
        *,
        values: Mapping[str, Any],
        pattern: str = DEFAULT_FILL_PATTERN,
        roles: Sequence[str] | None = None,
    ) -> None:
        super().__init__(roles=roles)
        if not isinstance(values, Mapping) or not values:
            raise BlockConfigError(
                "placeholder_fill: values must be a non-empty mapping of placeholder name "
                f"to text, e.g. {{name: Forge}}; got {values!r}"
            )
        self.values = {str(k): str(v) for k, v in values.items()}
        try:
            self._pattern = re.compile(pattern)
        except re.error as exc:
            raise BlockConfigError(f"placeholder_fill: pattern is not a regex: {exc}") from exc
        if self._pattern.groups < 1:
            raise BlockConfigError(
                "placeholder_fill: pattern needs a group capturing the placeholder name"
            )
        self.pattern = pattern
        # A literal substring every match must contain, for a cheap pre-check.
        self._marker = "{{" if pattern == DEFAULT_FILL_PATTERN else None

    def _replace(self, match: re.Match[str]) -> str:
        return self.values.get(match.group(1), match.group(0))

    def clean_text(self, text: str, kinds: set[str]) -> str:
        if self._marker is not None and self._marker not in text:
            return text
        new = self._pattern.sub(self._replace, text)
        if new != text:
            kinds.add("filled")
        return new


#: Transforming blocks by recipe name.
CLEANERS: dict[str, type[Transform]] = {
    UnicodeClean.name: UnicodeClean,
    WhitespaceClean.name: WhitespaceClean,
    PlaceholderFill.name: PlaceholderFill,
}
