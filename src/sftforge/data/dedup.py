"""De-duplication blocks: exact, near (MinHash LSH) and semantic (embeddings).

Each is a pipeline block (``run(conversations, sink) -> iterator``, see ``block.py``): it
streams, keeps the first sample of every duplicate group, and reports each dropped one to
the sink with the kept sample it duplicates (``duplicate_of``, the kept sample's location or
id). After ``run`` the block's :attr:`clusters` summarise the duplicate groups for the
report (at most ``max_clusters`` with examples; all of them counted).

>>> from sftforge.data.block import RejectSink
>>> from sftforge.types import as_conversation
>>> a = as_conversation([{"role": "user", "content": "Hi  there"},
...                      {"role": "assistant", "content": "Hello"}], meta={"index": 0})
>>> b = as_conversation([{"role": "user", "content": "hi there"},
...                      {"role": "assistant", "content": "Hello"}], meta={"index": 1})
>>> sink = RejectSink()
>>> [c.meta["index"] for c in ExactDedup().run([a, b], sink)]
[0]
>>> sink.examples["exact_dedup", "exact_duplicate"][0]["duplicate_of"]
'sample 0'

Which block for what:

* :class:`ExactDedup`: the same conversation after Unicode normalisation (NFKC), case
  folding and whitespace collapsing, role by role (the same question with a different answer
  is *not* a duplicate). One 128-bit hash per kept sample.
* :class:`NearDedup`: shingle Jaccard similarity >= ``threshold``, found with MinHash LSH
  (``minhash.py``: vectorised shingling and signatures, datasketch's LSH parameters) and
  confirmed with the signatures' Jaccard estimate before anything is dropped.
* :class:`SemanticDedup`: cosine similarity of sentence embeddings (all-MiniLM-L6-v2) >=
  ``threshold``; catches paraphrases, costs an embedding per sample.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from sftforge.data.block import Rejected, RejectSink, chunks, conversation_text
from sftforge.data.minhash import (
    BandIndex,
    band_keys,
    estimate_jaccard,
    lsh_params,
    shingle_hashes,
    signatures_from_shingles,
    tokenize,
)
from sftforge.data.prepared import Prepared
from sftforge.errors import SftForgeError
from sftforge.types import Conversation

__all__ = [
    "TEXT_FIELDS",
    "DuplicateCluster",
    "DuplicateClusters",
    "ExactDedup",
    "NearDedup",
    "SemanticDedup",
    "exact_digest",
    "exact_key",
    "text_selector",
]

TextField = str | Callable[[Conversation], str]


# -- which text a block compares ---------------------------------------------------------------
def _join(conv: Conversation, roles: tuple[str, ...]) -> str:
    return "\n".join(m.content_with_input for m in conv.messages if m.role in roles)


def _first_user(conv: Conversation) -> str:
    for m in conv.messages:
        if m.role == "user":
            return m.content_with_input
    return ""


def _last_assistant(conv: Conversation) -> str:
    for m in reversed(conv.messages):
        if m.role == "assistant":
            return m.content
    return ""


#: The named text fields: all message text, the user turns, the first user turn (the
#: instruction), the assistant turns, the last assistant turn.
TEXT_FIELDS: dict[str, Callable[[Conversation], str]] = {
    "all": conversation_text,
    "user": lambda c: _join(c, ("user",)),
    "first_user": _first_user,
    "assistant": lambda c: _join(c, ("assistant",)),
    "last_assistant": _last_assistant,
}


def text_selector(field: TextField) -> Callable[[Conversation], str]:
    """A field name from :data:`TEXT_FIELDS`, or any ``Conversation -> str`` function."""
    if callable(field):
        return field
    try:
        return TEXT_FIELDS[field]
    except KeyError:
        raise SftForgeError(
            f"unknown text field {field!r} (expected one of {', '.join(TEXT_FIELDS)}, "
            "or a function of a conversation)"
        ) from None


# -- where a sample is, for duplicate_of ---------------------------------------------------------
_LOCATION_KEYS = ("source", "line", "index", "id")


def _provenance(meta: Any) -> tuple[Any, ...]:
    """Just the location fields of a kept sample's meta: what ``duplicate_of`` needs.
    Keeping the whole meta mapping alive for every kept sample costs hundreds of MB per
    million samples."""
    return tuple(meta.get(k) for k in _LOCATION_KEYS)


def _where(meta: Any, position: int) -> str:
    """The sample's location (as ``str(conv.location)``), or its position in this block's
    input when the conversation carries no provenance."""
    if isinstance(meta, tuple):
        meta = {k: v for k, v in zip(_LOCATION_KEYS, meta, strict=True) if v is not None}
    text = str(Conversation((), meta=meta).location)
    return text if text != "<unknown sample>" else f"input #{position}"


def _snippet(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- cluster summary ----------------------------------------------------------------------------
@dataclass
class DuplicateCluster:
    """One kept sample and (up to a limit) the samples dropped as its duplicates."""

    kept: str
    snippet: str
    removed: list[str] = field(default_factory=list)
    removed_count: int = 0
    scores: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kept": self.kept,
            "snippet": self.snippet,
            "removed": list(self.removed),
            "removed_count": self.removed_count,
        }
        if self.scores:
            out["scores"] = [round(s, 4) for s in self.scores]
        return out


class DuplicateClusters:
    """Duplicate groups seen by a block: every group and drop is counted; the first
    ``max_clusters`` groups keep examples (kept location, up to ``max_members`` removed
    locations, a text snippet)."""

    def __init__(self, max_clusters: int = 50, max_members: int = 10) -> None:
        self.max_clusters = max_clusters
        self.max_members = max_members
        self.examples: list[DuplicateCluster] = []
        self.total = 0
        self.removed = 0
        self._stored: dict[Hashable, DuplicateCluster] = {}
        self._counted: set[Hashable] = set()

    def add(
        self,
        key: Hashable,
        kept: str | Callable[[], str],
        removed: Conversation,
        position: int,
        text: str,
        score: float | None = None,
    ) -> None:
        """Record that ``removed`` (at ``position`` in the block's input; ``text`` is what
        was compared) was dropped as a duplicate of the kept sample ``key``. ``kept`` (its
        location) may be a function: it is only called for groups that keep examples."""
        self.removed += 1
        cluster = self._stored.get(key)
        if cluster is None:
            if key in self._counted:
                return
            self._counted.add(key)
            self.total += 1
            if len(self.examples) >= self.max_clusters:
                return
            cluster = DuplicateCluster(kept if isinstance(kept, str) else kept(), _snippet(text))
            self._stored[key] = cluster
            self.examples.append(cluster)
        cluster.removed_count += 1
        if len(cluster.removed) < self.max_members:
            cluster.removed.append(_where(removed.meta, position))
            if score is not None:
                cluster.scores.append(float(score))

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[DuplicateCluster]:
        return iter(self.examples)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clusters": self.total,
            "removed": self.removed,
            "examples": [c.to_dict() for c in self.examples],
        }


# -- exact ---------------------------------------------------------------------------------------
def _normalise(text: str) -> str:
    if not text.isascii():  # NFKC leaves ASCII as it is; isascii is far cheaper to ask
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.casefold().split())


def exact_key(conv: Conversation) -> str:
    """The text exact de-duplication compares: kind, tools and every message (role, name,
    content, input, tool calls), each normalised (NFKC, casefold, whitespace collapsed)."""
    parts = [conv.kind]
    if conv.tools:
        parts.append(json.dumps([dict(t) for t in conv.tools], sort_keys=True, default=str))
    for m in conv.messages:
        calls = (
            json.dumps([dict(c) for c in m.tool_calls], sort_keys=True, default=str)
            if m.tool_calls
            else ""
        )
        parts.append(
            f"{m.role}\x1f{m.name or ''}\x1f{_normalise(m.content)}\x1f"
            f"{_normalise(m.input or '')}\x1f{calls}"
        )
    return "\x1e".join(parts)


def exact_digest(conv: Conversation) -> bytes:
    """The 128-bit xxh3 digest of :func:`exact_key`: what :class:`ExactDedup` compares
    (computed in the build's worker processes, or by the block itself)."""
    return xxhash.xxh3_128_digest(exact_key(conv).encode("utf-8", "surrogatepass"))


def _conversation(item: Any) -> Conversation:
    """The conversation of a stream item: itself, or a prepared record's, rebuilt (only
    rejects need it)."""
    return item.conversation if type(item) is Prepared else item


def _item_provenance(item: Any) -> tuple[Any, ...]:
    return item.provenance if type(item) is Prepared else _provenance(item.meta)


class ExactDedup:
    """Drop conversations equal to an earlier kept one after normalisation (see
    :func:`exact_key`). Streaming; memory: one 128-bit xxh3 hash (plus a reference to the
    sample's metadata, for ``duplicate_of``) per kept sample."""

    name = "exact_dedup"

    def __init__(self, *, max_clusters: int = 50) -> None:
        self.max_clusters = max_clusters
        self.clusters = DuplicateClusters(max_clusters)

    def run(
        self, conversations: Iterable[Conversation], sink: RejectSink
    ) -> Iterator[Conversation]:
        counts = sink.stage(self.name)
        self.clusters = clusters = DuplicateClusters(self.max_clusters)
        first: dict[bytes, int] = {}  # digest -> position of the kept sample
        metas: dict[int, Any] = {}  # position -> meta (of kept samples only)
        for pos, item in enumerate(conversations):
            counts.seen += 1
            # prepared records (parallel builds) carry the digest their worker computed
            h = item.exact if type(item) is Prepared else exact_digest(item)
            kept_pos = first.get(h)
            if kept_pos is None:
                first[h] = pos
                metas[pos] = _item_provenance(item)
                counts.kept += 1
                yield item
                continue
            conv = _conversation(item)
            kept_where = _where(metas[kept_pos], kept_pos)
            sink.reject(
                Rejected(
                    "exact_duplicate",
                    self.name,
                    "same text as an earlier sample after normalisation",
                    conversation=conv,
                    duplicate_of=kept_where,
                )
            )
            clusters.add(kept_pos, kept_where, conv, pos, conversation_text(conv))


# -- near ----------------------------------------------------------------------------------------
class _SignatureStore:
    """Signatures of the kept (indexed) samples, for checking LSH candidates. Stored in
    fixed-size blocks: growing one array by doubling held the old and the new copy at once
    (768 MB at a million samples of 128 bins), the peak memory of a build."""

    BLOCK = 1 << 16  # rows per block (32 MB at 128 bins)

    def __init__(self, num_perm: int) -> None:
        self.num_perm = num_perm
        self.blocks: list[np.ndarray] = []
        self.size = 0

    def extend(self, rows: np.ndarray) -> np.ndarray:
        """Append rows; returns their ids."""
        ids = np.arange(self.size, self.size + rows.shape[0], dtype=np.int64)
        done = 0
        while done < rows.shape[0]:
            at = self.size % self.BLOCK
            if at == 0:
                self.blocks.append(np.empty((self.BLOCK, self.num_perm), dtype=np.uint32))
            take = min(self.BLOCK - at, rows.shape[0] - done)
            self.blocks[-1][at : at + take] = rows[done : done + take]
            done += take
            self.size += take
        return ids

    def take(self, ids: np.ndarray) -> np.ndarray:
        """The rows of ``ids``."""
        out = np.empty((ids.size, self.num_perm), dtype=np.uint32)
        block_of = ids // self.BLOCK
        for b in np.unique(block_of).tolist():
            sel = block_of == b
            out[sel] = self.blocks[b][ids[sel] % self.BLOCK]
        return out


def _jaccard_rows(a: np.ndarray, b: np.ndarray, batch: int = 1 << 14) -> np.ndarray:
    """Row-wise :func:`~sftforge.data.minhash.estimate_jaccard`, in batches."""
    out = np.empty(a.shape[0], dtype=np.float64)
    for s in range(0, a.shape[0], batch):
        out[s : s + batch] = estimate_jaccard(a[s : s + batch], b[s : s + batch])
    return out


class NearDedup:
    """Drop conversations whose shingle Jaccard similarity with an earlier kept one is at
    least ``threshold``.

    Shingles are word ``ngram``-grams; a text written mostly in a space-less script (Chinese,
    Japanese, Thai...) is shingled into character ``cjk_ngram``-grams instead (default: the
    same n), decided per text. Text is NFKC-folded and case-folded per character first;
    punctuation and whitespace only separate tokens.

    Candidates come from MinHash LSH (``num_perm`` bins; bands and rows from datasketch's
    optimiser for ``threshold`` with ``lsh_weights`` = (false positive, false negative)
    weights). Every candidate is confirmed with the signatures' Jaccard estimate before a
    sample is dropped, so a false candidate costs one comparison while a false negative is a
    missed duplicate: the default weights (0.1, 0.9) favour recall (14 bands of 9 for 0.8:
    a pair at Jaccard 0.85 becomes a candidate with probability 0.975, at 0.9 0.999; with
    datasketch's default (0.5, 0.5), 9 bands of 13, it is 0.69 and 0.93). ``duplicate_of``
    is the earliest kept sample that passes (the estimate is in the reject's detail). Only
    kept samples are indexed, so a chain a~b~c with a !~ c keeps c when b was dropped.
    Texts without any token are kept and never compared.

    Works on chunks of ``chunk_size`` conversations (all numpy), still yielding them in
    order. Memory per kept sample: its signature (``4 * num_perm`` bytes) and its band keys
    (16 bytes per band).
    """

    name = "near_dedup"

    def __init__(
        self,
        threshold: float = 0.8,
        *,
        num_perm: int = 128,
        ngram: int = 5,
        cjk_ngram: int | None = None,
        field: TextField = "all",
        chunk_size: int = 2048,
        max_candidates: int = 64,
        lsh_weights: tuple[float, float] = (0.1, 0.9),
        max_clusters: int = 50,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise SftForgeError(f"near_dedup threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        self.ngram = ngram
        self.cjk_ngram = cjk_ngram
        self.field = field
        self._text = text_selector(field)
        self.chunk_size = chunk_size
        self.max_candidates = max_candidates
        self.max_clusters = max_clusters
        self.bands, self.rows = lsh_params(threshold, num_perm, tuple(lsh_weights))
        self._cut = threshold - 1e-9  # estimates are ratios of small integers
        self.clusters = DuplicateClusters(max_clusters)

    def signatures(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(signatures, empty)`` of texts, as this block computes them."""
        batch = tokenize(texts)
        doc, hashes = shingle_hashes(batch, self.ngram, self.cjk_ngram)
        return signatures_from_shingles(doc, hashes, len(texts), self.num_perm)

    def signatures_of(self, conversations: Sequence[Conversation]) -> tuple[np.ndarray, np.ndarray]:
        """``(signatures, empty)`` of conversations (of this block's text field): what a
        build's worker processes compute for the block."""
        return self.signatures([self._text(c) for c in conversations])

    def run(
        self, conversations: Iterable[Conversation], sink: RejectSink
    ) -> Iterator[Conversation]:
        counts = sink.stage(self.name)
        self.clusters = clusters = DuplicateClusters(self.max_clusters)
        index = BandIndex()
        store = _SignatureStore(self.num_perm)
        kept_meta: list[Any] = []  # by kept id
        kept_pos: list[int] = []
        where_cache: dict[int, str] = {}

        def kept_where(kid: int) -> str:
            w = where_cache.get(kid)
            if w is None:
                w = where_cache[kid] = _where(kept_meta[kid], kept_pos[kid])
            return w

        offset = 0
        for chunk in chunks(conversations, self.chunk_size):
            texts: list[str] | None = None
            if type(chunk[0]) is Prepared:  # signatures computed by the worker processes
                sig = np.stack([c.sig for c in chunk])
                empty = np.fromiter((c.empty for c in chunk), dtype=bool, count=len(chunk))
            else:
                texts = [self._text(c) for c in chunk]
                sig, empty = self.signatures(texts)
            dup_of, score, new_ids = self._judge(sig, empty, index, store)
            for local in new_ids:
                kept_meta.append(_item_provenance(chunk[local]))
                kept_pos.append(offset + local)
            for i, item in enumerate(chunk):
                counts.seen += 1
                kid = dup_of[i]
                if kid < 0:
                    counts.kept += 1
                    yield item
                    continue
                conv = _conversation(item)
                j = score[i]
                target = kept_where(kid)
                sink.reject(
                    Rejected(
                        "near_duplicate",
                        self.name,
                        f"estimated Jaccard {j:.3f} >= {self.threshold}",
                        conversation=conv,
                        duplicate_of=target,
                    )
                )
                text = texts[i] if texts is not None else self._text(conv)
                clusters.add(kid, target, conv, offset + i, text, score=j)
            offset += len(chunk)

    def _judge(
        self, sig: np.ndarray, empty: np.ndarray, index: BandIndex, store: _SignatureStore
    ) -> tuple[list[int], list[float], list[int]]:
        """For one chunk's signatures: the kept id each text duplicates (-1: keep it), the
        estimated Jaccard, and the chunk positions of the newly indexed texts (in id order)."""
        n, b = sig.shape[0], self.bands
        keys = band_keys(sig, b, self.rows)
        dup = np.full(n, -1, dtype=np.int64)  # global kept id
        dup_local = np.full(n, -1, dtype=np.int64)  # an earlier row of this chunk
        score = np.zeros(n, dtype=np.float64)
        valid = np.flatnonzero(~empty)

        # 1. candidates among the samples kept from earlier chunks
        qi, ids = index.lookup(keys[valid].reshape(-1), self.max_candidates)
        if qi.size:
            pairs = np.unique((valid[qi // b] << 32) | ids)  # sorted by row, then id
            rows, ids = pairs >> 32, pairs & 0xFFFFFFFF
            jac = _jaccard_rows(store.take(ids), sig[rows])
            ok = jac >= self._cut
            rows, ids, jac = rows[ok], ids[ok], jac[ok]
            first = np.ones(rows.size, dtype=bool)
            first[1:] = rows[1:] != rows[:-1]  # the earliest kept id of each row
            dup[rows[first]] = ids[first]
            score[rows[first]] = jac[first]

        # 2. candidates within the chunk, for the rows still undecided: in order, against
        # the chunk's rows kept so far (only rows sharing a band key with another one).
        open_rows = valid[dup[valid] < 0]
        if open_rows.size > 1:
            self._within_chunk(open_rows, keys, sig, dup_local, score)

        kept = np.flatnonzero((dup < 0) & (dup_local < 0) & ~empty)
        new_ids = store.extend(sig[kept])
        index.add(keys[kept].reshape(-1), np.repeat(new_ids.astype(np.uint32), b))  # 4 B an id
        local_to_id = dict(zip(kept.tolist(), new_ids.tolist(), strict=True))
        out = dup.tolist()
        for row in np.flatnonzero(dup_local >= 0).tolist():
            out[row] = local_to_id[int(dup_local[row])]
        return out, score.tolist(), kept.tolist()

    def _within_chunk(
        self,
        rows: np.ndarray,
        keys: np.ndarray,
        sig: np.ndarray,
        dup_local: np.ndarray,
        score: np.ndarray,
    ) -> None:
        """Rows of one chunk against the chunk's earlier rows: candidate pairs (sharing a
        band key; each row paired with at most ``max_candidates`` earlier rows per key)
        are checked all at once; only the confirmed pairs are resolved in order, so that
        a row is dropped only for a partner that is itself kept."""
        b, cap = self.bands, self.max_candidates
        flat = keys[rows].reshape(-1)
        owner = np.repeat(rows, b)
        real = flat != 0
        flat, owner = flat[real], owner[real]
        order = np.argsort(flat, kind="stable")  # rows stay ascending within a key
        flat, owner = flat[order], owner[order]
        if flat.size < 2:
            return
        new_group = np.ones(flat.size, dtype=bool)
        np.not_equal(flat[1:], flat[:-1], out=new_group[1:])
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(flat.size), 0))
        rank = np.arange(flat.size) - group_start  # position within the key's group
        n_partners = np.minimum(rank, cap)
        total = int(n_partners.sum())
        if total == 0:
            return
        later = np.repeat(np.arange(flat.size), n_partners)
        step = np.arange(total) - np.repeat(np.cumsum(n_partners) - n_partners, n_partners)
        earlier = group_start[later] + step
        pairs = np.unique((owner[later] << 32) | owner[earlier])  # (row, partner), sorted
        row_of, partner = pairs >> 32, pairs & 0xFFFFFFFF
        jac = _jaccard_rows(sig[partner], sig[row_of])
        ok = jac >= self._cut
        if not ok.any():
            return
        dropped: set[int] = set()
        for row, part, j in zip(
            row_of[ok].tolist(), partner[ok].tolist(), jac[ok].tolist(), strict=True
        ):
            if row in dropped or part in dropped:
                continue  # already decided, or the partner is not kept
            dropped.add(row)  # partners come in ascending order: the earliest kept one
            dup_local[row] = part
            score[row] = j


# -- semantic ------------------------------------------------------------------------------------
Embedder = Callable[[Sequence[str]], np.ndarray]


class SemanticDedup:
    """Drop conversations whose embedding has cosine similarity >= ``threshold`` with an
    already kept one (``duplicate_of``: the most similar; the cosine is in the detail).

    Embeddings come from :func:`sftforge.data.embed.embed_texts` (all-MiniLM-L6-v2, offline)
    unless ``embed`` is given (texts -> unit-length rows). Chunks of ``chunk_size`` are
    compared with one matrix product against the kept embeddings (in blocks of
    ``block_rows``) and with each other, so ~100k samples are fine; memory: one float32
    embedding (384 values) per kept sample.
    """

    name = "semantic_dedup"

    def __init__(
        self,
        threshold: float = 0.95,
        *,
        field: TextField = "all",
        embed: Embedder | None = None,
        model_dir: str | None = None,
        chunk_size: int = 1024,
        block_rows: int = 65536,
        max_clusters: int = 50,
    ) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise SftForgeError(f"semantic_dedup threshold must be in [-1, 1], got {threshold}")
        self.threshold = threshold
        self.field = field
        self._text = text_selector(field)
        self._embed = embed
        self.model_dir = model_dir
        self.chunk_size = chunk_size
        self.block_rows = block_rows
        self.max_clusters = max_clusters
        self.clusters = DuplicateClusters(max_clusters)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._embed is not None:
            out = np.asarray(self._embed(texts), dtype=np.float32)
        else:
            from sftforge.data.embed import embed_texts

            out = embed_texts(texts, model_dir=self.model_dir)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def run(
        self, conversations: Iterable[Conversation], sink: RejectSink
    ) -> Iterator[Conversation]:
        counts = sink.stage(self.name)
        self.clusters = clusters = DuplicateClusters(self.max_clusters)
        kept_vecs: np.ndarray | None = None
        kept_size = 0
        kept_meta: list[Any] = []
        kept_pos: list[int] = []
        offset = 0
        for chunk in chunks(conversations, self.chunk_size):
            texts = [self._text(c) for c in chunk]
            vecs = self.embed(texts)
            n = len(chunk)
            best = np.full(n, -np.inf, dtype=np.float32)
            best_id = np.full(n, -1, dtype=np.int64)
            for s in range(0, kept_size, self.block_rows):  # against earlier chunks
                assert kept_vecs is not None
                sims = vecs @ kept_vecs[s : min(s + self.block_rows, kept_size)].T
                arg = sims.argmax(axis=1)
                top = sims[np.arange(n), arg]
                better = top > best
                best[better], best_id[better] = top[better], arg[better] + s
            inner = vecs @ vecs.T  # within the chunk, in order
            kept_here: list[int] = []
            verdict: list[tuple[int, float] | None] = []
            for i in range(n):
                kid, sim = int(best_id[i]), float(best[i])
                if kept_here:
                    row = inner[i, kept_here]
                    a = int(row.argmax())
                    if row[a] > sim:
                        kid, sim = kept_size + a, float(row[a])
                if kid >= 0 and sim >= self.threshold:
                    verdict.append((kid, sim))
                else:
                    verdict.append(None)
                    kept_here.append(i)
            if kept_here:
                add = vecs[kept_here]
                need = kept_size + len(kept_here)
                if kept_vecs is None or need > kept_vecs.shape[0]:
                    grown = np.zeros((max(need, 2 * kept_size, 1024), vecs.shape[1]), np.float32)
                    if kept_vecs is not None:
                        grown[:kept_size] = kept_vecs[:kept_size]
                    kept_vecs = grown
                kept_vecs[kept_size:need] = add
                kept_size = need
                for i in kept_here:
                    kept_meta.append(_provenance(chunk[i].meta))
                    kept_pos.append(offset + i)
            for i, conv in enumerate(chunk):
                counts.seen += 1
                v = verdict[i]
                if v is None:
                    counts.kept += 1
                    yield conv
                    continue
                kid, sim = v
                target = _where(kept_meta[kid], kept_pos[kid])
                sink.reject(
                    Rejected(
                        "semantic_duplicate",
                        self.name,
                        f"cosine similarity {sim:.3f} >= {self.threshold}",
                        conversation=conv,
                        duplicate_of=target,
                    )
                )
                clusters.add(kid, target, conv, offset + i, texts[i], score=sim)
            offset += n
