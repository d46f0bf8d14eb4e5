"""Vectorised shingling, MinHash signatures and LSH banding for many texts at once.

Near-duplicate detection spends its time turning text into shingle hashes and shingle
hashes into signatures. Done per shingle in Python (``MinHash.update(shingle.encode())``)
that is the whole cost; here every step works on one numpy array per batch of texts:

1. **Tokens.** The batch is joined into one string and read as UTF-32 code points. Two
   lookup tables fold each code point (NFKC of the single character, then casefold:
   fullwidth ``Ａ`` -> ``a``) and classify it: a *word* character (letters, digits,
   combining marks), a *character token* (scripts written without spaces: CJK ideographs,
   kana, Thai, Lao, Khmer, Myanmar; each such character is a token of its own), or a
   separator (everything else: spaces, punctuation, symbols, emoji). So English is split
   into words and Chinese into characters, decided per character, which also handles mixed
   text. A token's hash is a polynomial hash over its code points, read off prefix sums
   (``(S[end] - S[start]) * P**-start`` mod 2**64), then mixed with murmur3's 64-bit
   finaliser. Work arrays are reused between batches (fresh multi-megabyte arrays cost a
   page fault per 4 KiB).
2. **Shingles.** An n-gram hash is ``fmix(sum_j token[k + j] * Q[j])`` with random odd
   ``Q[j]``: ``n`` shifted multiply-adds over the whole token array; windows that cross a
   document boundary are masked out. A text with fewer than ``n`` tokens is one shingle.
3. **Signatures.** One-permutation hashing (Li, Owen & Zhang, NIPS 2012): each shingle
   hash picks one of ``num_perm`` bins from its high 32 bits and offers its low 32 bits as
   the value; every (text, bin) keeps the minimum, found with one ``np.sort`` of
   ``(text, bin, value)`` keys. A bin no shingle reached stays :data:`EMPTY`. Two texts
   hold the same value in a bin with probability ``Jaccard`` (given the bin is filled in
   either), so the estimate is *equal bins / bins filled in either*: the same accuracy as
   classic MinHash for long texts and close to exact for texts with fewer shingles than
   bins. Classic MinHash evaluates ``num_perm`` hash functions per shingle (128x the work);
   densifying the empty bins (Shrivastava 2017) cost more than everything else here and
   only adds noise to the estimate for short texts, so it is not done.
4. **LSH.** ``b`` bands of ``r`` bins, ``(b, r)`` from datasketch's ``MinHashLSH``
   optimiser for the threshold. Band keys are computed for a whole batch at once (an empty
   bin matches an empty bin; a band with only empty bins is not indexed) and kept in
   :class:`BandIndex`, sorted numpy arrays merged log-structured, so lookups are
   ``np.searchsorted`` calls, not one Python dict operation per band per document.
   Candidates are confirmed with the estimate before anything is called a duplicate.

Why not the libraries' own objects: datasketch's ``MinHash``/``MinHashLSH`` take one
Python call per shingle, document and band (that is the reference loop in
``bench/bench_dedup.py``). rensa computes classic signatures in Rust from flat token hashes
fast (``RMinHash.digest_matrix_from_flat_token_hashes``: 0.09 s for 5.3 M shingles), but hands
them back only as Python lists (``to_rows()``: 0.3 s per 52,000 rows, a third of this whole
pipeline's time), and its matrix LSH returns duplicate *flags* without the matching key, so
neither ``duplicate_of`` nor a Jaccard check of the candidates would be possible. So the
library parts used are datasketch's LSH parameter optimiser (:func:`lsh_params`) and, in the
tests and the benchmark, datasketch's ``MinHash`` as the reference for the estimate.

Everything is deterministic (fixed seeds, no Python ``hash()``), so the same data gives the
same signatures in every process.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "EMPTY",
    "BandIndex",
    "TokenBatch",
    "band_keys",
    "estimate_jaccard",
    "lsh_params",
    "minhash_signatures",
    "ngram_hashes",
    "shingle_hashes",
    "signatures_from_shingles",
    "tokenize",
]

SEP, WORD, CHAR = 0, 1, 2  # code point classes
_U64 = np.uint64
_M1 = _U64(0xFF51AFD7ED558CCD)
_M2 = _U64(0xC4CEB9FE1A85EC53)
_LOW32 = _U64(0xFFFFFFFF)
_P = 0x9E3779B97F4A7C15  # odd: invertible mod 2**64
_P_INV = pow(_P, -1, 1 << 64)
_MAX_NGRAM = 64
_SEED = 0x5F3DD0C1

#: Scripts written without spaces between words: every character is a token.
_CHAR_TOKEN_RANGES = (
    (0x0E00, 0x0F00),  # Thai, Lao
    (0x1000, 0x10A0),  # Myanmar
    (0x1780, 0x1800),  # Khmer
    (0x3040, 0x3130),  # Hiragana, Katakana, Bopomofo
    (0x31A0, 0x3200),  # Bopomofo extended, CJK strokes, Katakana extensions
    (0x3400, 0x4DC0),  # CJK extension A
    (0x4E00, 0xA000),  # CJK unified ideographs
    (0xF900, 0xFB00),  # CJK compatibility ideographs
)
_SUPPLEMENTARY_CJK = (0x20000, 0x40000)  # CJK extensions B..H


def _fmix64(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser, in place on a uint64 array (a bijection)."""
    x ^= x >> 33
    x *= _M1
    x ^= x >> 33
    x *= _M2
    x ^= x >> 33
    return x


def _random_odd(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 1 << 63, size=n, dtype=np.uint64) * _U64(2) + _U64(1)


_RNG = np.random.default_rng(_SEED)
_Q = _random_odd(_RNG, _MAX_NGRAM)  # n-gram position weights
_BAND_MUL = _random_odd(_RNG, 256)  # band row weights (r <= 256)
_BAND_SALT = _random_odd(_RNG, 1)[0]


def _is_char_token(cp: int) -> bool:
    lo, hi = _SUPPLEMENTARY_CJK
    return lo <= cp < hi or any(a <= cp < b for a, b in _CHAR_TOKEN_RANGES)


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """``fold[cp]`` (uint64: NFKC + casefold of the character, where that is one BMP
    character) and ``cls[cp]`` (SEP / WORD / CHAR, of the folded character) for every code
    point. Beyond the BMP only CJK ideographs are tokens (each its own); emoji and other
    supplementary symbols separate. Built once per process (~0.1 s, 10 MB)."""
    fold = np.arange(0x110000, dtype=np.uint64)
    cls = np.zeros(0x110000, dtype=np.uint8)
    for cp in range(0x10000):
        if 0xD800 <= cp < 0xE000:
            continue  # surrogates
        ch = chr(cp)
        folded = ch.lower() if cp < 0x80 else unicodedata.normalize("NFKC", ch).casefold()
        if len(folded) == 1:
            fold[cp] = ord(folded)
            ch = folded
        if _is_char_token(ord(ch)):
            cls[cp] = CHAR
        elif ch != "_" and (ch.isalnum() or unicodedata.category(ch).startswith("M")):
            cls[cp] = WORD
    lo, hi = _SUPPLEMENTARY_CJK
    cls[lo:hi] = CHAR
    return fold, cls


class _Powers:
    """``P**i`` and ``P**-i`` mod 2**64 for i < n, grown on demand (swapped in as one
    tuple, so a thread never sees the two tables at different sizes)."""

    def __init__(self) -> None:
        self.tables = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pw, ipw = self.tables
        if len(pw) < n:
            size = max(n, 2 * len(pw), 1 << 16)
            pw = np.full(size, _P, dtype=np.uint64)
            pw[0] = 1
            ipw = np.full(size, _P_INV, dtype=np.uint64)
            ipw[0] = 1
            pw, ipw = np.cumprod(pw, dtype=np.uint64), np.cumprod(ipw, dtype=np.uint64)
            self.tables = (pw, ipw)
        return pw[:n], ipw[:n]


_POWERS = _Powers()


class _Scratch(threading.local):
    """Per-thread work arrays, reused between batches: a fresh multi-megabyte array costs a
    page fault per 4 KiB on first touch, which was a third of the tokenising time."""

    LIMIT = 1 << 24  # elements; bigger requests get a fresh array that is not kept

    def __init__(self) -> None:
        self.bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype: type) -> np.ndarray:
        buf = self.bufs.get(name)
        if buf is None or buf.size < n:
            if n > self.LIMIT:
                return np.empty(n, dtype=dtype)
            buf = self.bufs[name] = np.empty(max(n, 1 << 16), dtype=dtype)
        return buf[:n]


_SCRATCH = _Scratch()


@dataclass(frozen=True)
class TokenBatch:
    """Token hashes of a batch of texts: text ``i`` owns ``hashes[offsets[i]:offsets[i+1]]``;
    ``char_tokens[i]`` of its tokens are single characters of a space-less script."""

    hashes: np.ndarray
    offsets: np.ndarray
    char_tokens: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def mostly_char_tokens(self) -> np.ndarray:
        """Per text: is it mostly written in a space-less script (Chinese, Japanese...)?"""
        return 2 * self.char_tokens > self.counts


def tokenize(texts: Sequence[str]) -> TokenBatch:
    """Fold, split and hash the tokens of many texts in one pass (see the module doc)."""
    n_docs = len(texts)
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=n_docs)
    char_off = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lens + 1, out=char_off[1:])  # + 1: the separator after each text
    joined = "\x00".join(texts)  # NUL is a separator: no token crosses two texts
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    if cps.size == 0:
        return TokenBatch(
            np.zeros(0, np.uint64), np.zeros(n_docs + 1, np.int64), np.zeros(n_docs, np.int64)
        )
    n = cps.size
    fold, cls_table = _tables()
    scratch = _SCRATCH
    cls = cls_table.take(cps, out=scratch.get("cls", n, np.uint8))
    folded = fold.take(cps, out=scratch.get("folded", n, np.uint64))
    # a token starts at a CHAR character or where a run of WORD characters begins, and ends
    # at a CHAR character or where such a run ends
    word = np.equal(cls, WORD, out=scratch.get("word", n, np.bool_))
    start = np.equal(cls, CHAR, out=scratch.get("start", n, np.bool_))
    end = scratch.get("end", n, np.bool_)
    np.copyto(end, start)
    edge = scratch.get("edge", n, np.bool_)  # word[i] != word[i - 1]
    edge[0] = word[0]
    np.not_equal(word[1:], word[:-1], out=edge[1:])
    tmp = scratch.get("tmp", n, np.bool_)
    np.logical_and(edge[1:], word[:-1], out=tmp[:-1])
    np.logical_or(end[:-1], tmp[:-1], out=end[:-1])
    end[-1] |= word[-1]
    np.logical_and(edge, word, out=edge)
    np.logical_or(start, edge, out=start)
    s = np.flatnonzero(start)
    e = np.flatnonzero(end) + 1
    is_char = cls[s] == CHAR

    pw, ipw = _POWERS.get(n)
    prefix = scratch.get("prefix", n + 1, np.uint64)
    prefix[0] = 0
    np.multiply(folded, pw, out=folded)
    np.cumsum(folded, out=prefix[1:])
    hashes = _fmix64((prefix[e] - prefix[s]) * ipw[s])

    tok_off = np.searchsorted(s, char_off).astype(np.int64)
    char_cum = np.zeros(s.size + 1, dtype=np.int64)
    np.cumsum(is_char, out=char_cum[1:])
    char_tokens = char_cum[tok_off[1:]] - char_cum[tok_off[:-1]]
    return TokenBatch(hashes, tok_off, char_tokens)


def ngram_hashes(hashes: np.ndarray, offsets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(doc, hash)`` of every token n-gram (a text with 1..n-1 tokens: one shingle of
    all of them; a text without tokens: none). ``offsets`` as in :class:`TokenBatch`."""
    if not 1 <= n <= _MAX_NGRAM:
        raise ValueError(f"n-gram size must be 1..{_MAX_NGRAM}, got {n}")
    n_docs = len(offsets) - 1
    counts = np.diff(offsets)
    total = hashes.size
    doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), counts)
    pos = np.arange(total, dtype=np.int64) - np.repeat(offsets[:-1], counts)
    parts_doc, parts_hash = [], []
    windows = total - n + 1
    if windows > 0:
        acc = hashes[:windows] * _Q[0]
        for j in range(1, n):
            acc += hashes[j : j + windows] * _Q[j]
        fits = pos[:windows] <= (counts - n)[doc_of[:windows]]
        parts_doc.append(doc_of[:windows][fits])
        parts_hash.append(acc[fits])
    short = (counts > 0) & (counts < n)
    if short.any():
        sel = short[doc_of]
        weighted = hashes[sel] * _Q[pos[sel]]
        starts = np.zeros(int(short.sum()), dtype=np.int64)
        np.cumsum(counts[short][:-1], out=starts[1:])
        parts_doc.append(np.flatnonzero(short))
        parts_hash.append(np.add.reduceat(weighted, starts))
    if not parts_doc:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    doc = np.concatenate(parts_doc)
    return doc, _fmix64(np.concatenate(parts_hash))


def shingle_hashes(
    texts: Sequence[str] | TokenBatch, ngram: int = 5, cjk_ngram: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(doc, hash)`` of the shingles of many texts: word ``ngram``-grams, or for a text
    mostly in a space-less script, character ``cjk_ngram``-grams (default: ``ngram``)."""
    batch = texts if isinstance(texts, TokenBatch) else tokenize(texts)
    if cjk_ngram is None or cjk_ngram == ngram:
        return ngram_hashes(batch.hashes, batch.offsets, ngram)
    cjk = batch.mostly_char_tokens()
    counts = batch.counts
    docs, hashes = [], []
    for n, members in ((ngram, ~cjk), (cjk_ngram, cjk)):
        if not members.any():
            continue
        ids = np.flatnonzero(members)
        sub_off = np.zeros(ids.size + 1, dtype=np.int64)
        np.cumsum(counts[ids], out=sub_off[1:])
        sub = batch.hashes[np.repeat(members, counts)]
        d, h = ngram_hashes(sub, sub_off, n)
        docs.append(ids[d])
        hashes.append(h)
    return np.concatenate(docs), np.concatenate(hashes)


#: An empty bin (no shingle of the text hashed there). Real values are at most EMPTY - 1.
EMPTY = np.uint32(0xFFFFFFFF)


def signatures_from_shingles(
    doc: np.ndarray, hashes: np.ndarray, n_docs: int, num_perm: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(signatures, empty)`` from :func:`shingle_hashes` output (see
    :func:`minhash_signatures`)."""
    sig = np.full(n_docs * num_perm, EMPTY, dtype=np.uint32)
    if hashes.size:
        # bin from the high 32 bits (multiply-shift: uniform for any num_perm), value from
        # the low 32 bits; one sort puts the minimum of every (doc, bin) first.
        bins = ((hashes >> 32) * _U64(num_perm)) >> 32
        keys = (doc.astype(np.uint64) * _U64(num_perm) + bins) << 32
        keys |= np.minimum(hashes & _LOW32, _U64(EMPTY - 1))
        keys.sort()
        cell = keys >> 32
        first = np.ones(keys.size, dtype=bool)
        np.not_equal(cell[1:], cell[:-1], out=first[1:])
        sig[cell[first].astype(np.int64)] = keys[first].astype(np.uint32)  # low 32 bits
    sig2d = sig.reshape(n_docs, num_perm)
    return sig2d, (sig2d == EMPTY).all(axis=1)


def minhash_signatures(
    texts: Sequence[str],
    *,
    num_perm: int = 128,
    ngram: int = 5,
    cjk_ngram: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(signatures, empty)``: a ``len(texts) x num_perm`` uint32 matrix, and a mask of the
    texts without any token (their rows mean nothing and must not be compared).

    >>> sig, empty = minhash_signatures(["the quick brown fox jumps over the lazy dog"] * 2)
    >>> estimate_jaccard(sig[0], sig[1])
    1.0
    """
    if num_perm < 1 or num_perm > 1 << 16:
        raise ValueError(f"num_perm must be 1..65536, got {num_perm}")
    doc, hashes = shingle_hashes(texts, ngram, cjk_ngram)
    return signatures_from_shingles(doc, hashes, len(texts), num_perm)


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> float | np.ndarray:
    """Estimated Jaccard similarity of signatures (row-wise on the last axis): bins where
    both hold the same value over bins filled in either (Li, Owen & Zhang's estimator for
    one-permutation hashing). 0.0 where both are empty."""
    a, b = np.asarray(a), np.asarray(b)
    match = ((a == b) & (a != EMPTY)).sum(axis=-1)
    used = ((a != EMPTY) | (b != EMPTY)).sum(axis=-1)
    out = match / np.maximum(used, 1)
    return float(out) if np.ndim(out) == 0 else out


@lru_cache(maxsize=32)
def lsh_params(
    threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)
) -> tuple[int, int]:
    """``(bands, rows)`` for a Jaccard threshold: datasketch ``MinHashLSH``'s optimiser
    (weighted false-positive / false-negative areas under the S-curve)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)
    return int(lsh.b), int(lsh.r)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``n x bands`` uint64 keys; equal keys mean equal bands (band number included, so
    keys of different bands never meet). A band with only empty bins gets key 0, which
    means "no key": such bands say nothing and are neither indexed nor looked up."""
    if rows > _BAND_MUL.size:
        raise ValueError(f"at most {_BAND_MUL.size} rows per band, got {rows}")
    n = signatures.shape[0]
    cube = signatures[:, : bands * rows].reshape(n, bands, rows)
    keys = (cube.astype(np.uint64) * _BAND_MUL[:rows]).sum(axis=2, dtype=np.uint64)
    keys += np.arange(1, bands + 1, dtype=np.uint64) * _BAND_SALT
    keys = _fmix64(keys)
    keys[(cube == EMPTY).all(axis=2)] = 0
    return keys


def _merge_sorted(
    k1: np.ndarray, i1: np.ndarray, k2: np.ndarray, i2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two sorted ``(key, id)`` runs, the first run's entries first among equal keys
    (what a stable sort of the two concatenated gives), in linear time and without the
    sort's temporary arrays (at a million samples the largest merge is of ~12 M keys)."""
    n = k1.size + k2.size
    at2 = np.searchsorted(k1, k2, side="right")  # where each k2 entry lands, after equals
    at2 += np.arange(k2.size, dtype=at2.dtype)
    keys = np.empty(n, dtype=k1.dtype)
    ids = np.empty(n, dtype=np.result_type(i1, i2))
    from1 = np.ones(n, dtype=bool)
    from1[at2] = False
    keys[at2], ids[at2] = k2, i2
    keys[from1], ids[from1] = k1, i1
    return keys, ids


class BandIndex:
    """LSH buckets as sorted ``(key, id)`` arrays, merged log-structured (sizes grow
    geometrically, so ``add`` is amortised ``O(log n)`` per key and a lookup is one
    ``np.searchsorted`` per level). Memory: 16 bytes per stored key."""

    def __init__(self) -> None:
        self._levels: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(k.size for k, _ in self._levels)

    def add(self, keys: np.ndarray, ids: np.ndarray) -> None:
        real = keys != 0  # 0: an all-empty band (see band_keys)
        keys, ids = keys[real], ids[real]
        if keys.size == 0:
            return
        order = np.argsort(keys, kind="stable")
        self._levels.append((keys[order], ids[order]))
        while len(self._levels) > 1 and self._levels[-2][0].size <= 2 * self._levels[-1][0].size:
            k2, i2 = self._levels.pop()
            k1, i1 = self._levels.pop()
            self._levels.append(_merge_sorted(k1, i1, k2, i2))

    def lookup(self, queries: np.ndarray, cap: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """``(query_index, id)`` for every stored key equal to a query (at most ``cap``
        ids per query and level, so a bucket shared by thousands stays cheap)."""
        out_q, out_id = [], []
        if not self._levels or not queries.size:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        order = np.argsort(queries)  # sorted queries make searchsorted cache-friendly
        queries = queries[order]
        for keys, ids in self._levels:
            lo = np.searchsorted(keys, queries, side="left")
            # Most queries match nothing: find the bucket ends only for those that do
            # (the binary searches into levels of millions of keys are the cost here).
            hit = np.flatnonzero(keys[np.minimum(lo, keys.size - 1)] == queries)
            if not hit.size:
                continue
            hi = np.searchsorted(keys, queries[hit], side="right")
            cnt = np.minimum(hi - lo[hit], cap)
            total = int(cnt.sum())
            step = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            out_q.append(order[np.repeat(hit, cnt)])
            out_id.append(ids[np.repeat(lo[hit], cnt) + step])
        if not out_q:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(out_q), np.concatenate(out_id)
