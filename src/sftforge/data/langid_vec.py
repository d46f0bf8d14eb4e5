"""langid.py's classifier over many texts at once, with numpy instead of a byte loop.

langid.py (Lui & Baldwin 2012) scores a text by counting byte n-grams of its feature list
and taking a naive Bayes dot product. It finds the n-grams with an Aho-Corasick automaton
stepped one byte at a time in Python (about 100 µs per 500-character text), which was the
largest single cost of a dataset build. The features are byte strings of 1 to 4 bytes,
and the automaton reports, at each byte, every feature ending there; so the same counts
come from looking up the 1-, 2-, 3- and 4-byte windows ending at every position, which
numpy does for a whole batch of texts in a few array operations:

* The feature strings are not stored in the model; they are recovered from the automaton
  (a breadth-first walk from the start state labels each state with the shortest byte
  string reaching it, its trie path; a feature is the shortest label among the states
  that report it). This is checked against the model when the tables are built.
* Windows of 1-3 bytes are looked up in direct tables (256, 65,536 and 16.7 M entries);
  4-byte windows, only where the first 3 bytes begin some 4-byte feature, by binary search.
* Texts are joined with the byte 0xFF between them: it never occurs in UTF-8 and in no
  feature, so no window across two texts matches anything.
* Counts become a sparse (texts x features) matrix, multiplied by the model's log
  probabilities.

Results equal langid's ``classify`` with normalised probabilities (the same language;
probabilities equal up to floating-point summation order), tested in
``tests/unit/test_filters.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = ["LangId", "langid"]

_SEP = b"\xff"  # never in UTF-8, in no langid feature


def _feature_strings(nextmove: np.ndarray, output: dict[int, tuple[int, ...]]) -> dict[int, bytes]:
    """Feature index -> byte string, recovered from the automaton (see the module doc)."""
    n_states = nextmove.shape[0]
    parent = np.full(n_states, -1, dtype=np.int64)
    via = np.zeros(n_states, dtype=np.int64)
    seen = np.zeros(n_states, dtype=bool)
    seen[0] = True
    frontier = np.zeros(1, dtype=np.int64)
    levels = []
    while frontier.size:  # breadth first: the first path to a state is its shortest
        targets = nextmove[frontier].ravel()
        sources = np.repeat(frontier, 256)
        byte = np.tile(np.arange(256), frontier.size)
        new = ~seen[targets]
        targets, sources, byte = targets[new], sources[new], byte[new]
        found, first = np.unique(targets, return_index=True)
        parent[found], via[found], seen[found] = sources[first], byte[first], True
        levels.append(found)
        frontier = found
    labels = {0: b""}
    for level in levels:
        for s in level.tolist():
            labels[s] = labels[int(parent[s])] + bytes((int(via[s]),))
    features: dict[int, bytes] = {}
    for state, indices in output.items():
        label = labels[state]
        for i in indices:
            if i not in features or len(label) < len(features[i]):
                features[i] = label
    return features


class LangId:
    """langid.py's model (``norm_probs=True``), classifying batches of texts."""

    def __init__(self) -> None:
        from langid.langid import LanguageIdentifier, model

        ident = LanguageIdentifier.from_modelstring(model, norm_probs=True)
        moves = ident.tk_nextmove
        nextmove = np.frombuffer(moves, dtype=np.dtype(moves.typecode)).reshape(-1, 256)
        self.ptc = np.asarray(ident.nb_ptc, dtype=np.float64)
        self.pc = np.asarray(ident.nb_pc, dtype=np.float64)
        self.classes = [str(c) for c in ident.nb_classes]
        n_feat = self.ptc.shape[0]
        features = _feature_strings(nextmove, ident.tk_output)
        if len(features) != n_feat or max(map(len, features.values())) > 4:
            raise RuntimeError("unexpected langid model: features are not 1-4 byte n-grams")
        keys = np.zeros(n_feat, dtype=np.int64)
        sizes = np.zeros(n_feat, dtype=np.int64)
        for i, f in features.items():
            keys[i], sizes[i] = int.from_bytes(f, "big"), len(f)
        self._direct = []
        for n in (1, 2, 3):
            table = np.full(1 << (8 * n), -1, dtype=np.int16)  # 7,480 features fit int16
            mask = sizes == n
            table[keys[mask]] = np.flatnonzero(mask)
            self._direct.append(table)
        mask = sizes == 4
        order = np.argsort(keys[mask])
        self._keys4 = keys[mask][order]
        self._ids4 = np.flatnonzero(mask)[order]
        self._prefix4 = np.zeros(1 << 24, dtype=bool)  # 3-byte prefixes of 4-byte features
        self._prefix4[self._keys4 >> 8] = True
        self.n_features = n_feat

    def _hits(self, data: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(end position, feature)`` of every feature occurrence, per n-gram size, each
        sorted by position."""
        t1, t2, t3 = self._direct
        out = []
        f = t1[data]
        at = np.flatnonzero(f >= 0)
        out.append((at, f[at]))
        if data.size >= 2:
            c2 = (data[:-1] << 8) | data[1:]
            f = t2[c2]
            at = np.flatnonzero(f >= 0)
            out.append((at + 1, f[at]))
        if data.size >= 3:
            c3 = (c2[:-1] << 8) | data[2:]
            f = t3[c3]
            at = np.flatnonzero(f >= 0)
            out.append((at + 2, f[at]))
            if data.size >= 4 and self._keys4.size:
                cand = np.flatnonzero(self._prefix4[c3[:-1]])
                c4 = (c3[cand] << 8) | data[3:][cand]
                j = np.minimum(np.searchsorted(self._keys4, c4), self._keys4.size - 1)
                ok = np.flatnonzero(self._keys4[j] == c4)
                out.append((cand[ok] + 3, self._ids4[j[ok]]))
        return out

    def log_probs(self, texts: Sequence[str]) -> np.ndarray:
        """``len(texts) x languages`` unnormalised log probabilities (langid's ``pdc``)."""
        import scipy.sparse as sparse

        n = len(texts)
        encoded = [t.encode("utf-8", "replace") for t in texts]  # "replace": lone surrogates
        data = np.frombuffer(_SEP.join(encoded), dtype=np.uint8).astype(np.int64)
        logp = np.tile(self.pc, (n, 1))
        if n == 1:  # one text: a dense count vector is cheaper than a sparse matrix
            feats = np.concatenate([f for _, f in self._hits(data)])
            counts = np.bincount(feats, minlength=self.n_features)
            idx = np.flatnonzero(counts)
            logp[0] += counts[idx].astype(np.float64) @ self.ptc[idx]
            return logp
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=n) + 1, out=starts[1:])
        for at, feats in self._hits(data):
            indptr = np.searchsorted(at, starts)  # hits are sorted, so rows are contiguous
            indptr[-1] = at.size
            ones = np.ones(at.size, dtype=np.float64)
            counts = sparse.csr_matrix((ones, feats, indptr), shape=(n, self.n_features))
            logp += counts @ self.ptc
        return logp

    def classify_batch(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """``(language, normalised probability)`` per text, as langid's ``classify``."""
        if not texts:
            return []
        logp = self.log_probs(texts)
        best = logp.argmax(axis=1)
        top = logp[np.arange(len(texts)), best][:, None]
        with np.errstate(over="ignore"):
            prob = 1.0 / np.exp(logp - top).sum(axis=1)
        classes = self.classes
        return [(classes[i], p) for i, p in zip(best.tolist(), prob.tolist(), strict=True)]

    def classify(self, text: str) -> tuple[str, float]:
        return self.classify_batch([text])[0]


@lru_cache(maxsize=1)
def langid() -> LangId:
    """The model, loaded once per process (about 1 s; tables of about 70 MB)."""
    return LangId()
