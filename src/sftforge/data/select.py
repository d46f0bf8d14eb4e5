"""Diversity-aware selection: choose ``n`` samples from a larger pool to cover it well.

Two methods, both on unit-length feature vectors (cosine distance ``1 - x·y``):

* ``"kcenter"``: k-center greedy (farthest-point traversal). Start at the most typical
  sample (the one nearest the pool's mean direction), then repeatedly take the sample
  farthest from everything taken so far. It minimises the coverage radius within a factor
  of two of the optimum, so every region of the pool gets a representative; the price is
  that isolated outliers are picked early.
* ``"cluster"``: spherical k-means into ``n_clusters`` groups, a per-cluster quota
  (``allocation="balanced"``: equal shares, capped by cluster size, i.e. round-robin;
  ``"proportional"``: one per cluster, the rest in proportion to cluster size), and inside
  a cluster the best-scored samples first when ``score`` is given (skipping any within
  ``min_distance`` of one already taken, so near-duplicates of a long answer do not fill
  the quota), else a farthest-point order inside the cluster.

Features: ``"minilm"`` (sentence embeddings from the bundled all-MiniLM-L6-v2, see
:mod:`sftforge.data.embed`; semantic, a few hundred texts per second on a CPU) or
``"hashing"`` (no model: hashed word uni/bigrams plus CJK character uni/bigrams, TF-IDF,
a sparse random projection and a PCA to 128 dimensions; 5-10k texts per second).
:class:`HashingFeatures` and :class:`MiniLMFeatures` take options; any callable
``texts -> matrix`` works too.

Diversity is reported before (the pool) and after (the selection), and for a random
subset of the same size under the same seed, so "high diversity" can be checked, not
assumed: mean pairwise cosine distance (exact, over all pairs), coverage radius (max
and mean distance from a pool sample to its nearest selected sample) and how many
clusters of a reference k-means of the pool the selection touches.

>>> from sftforge.types import Conversation
>>> pool = [Conversation.text(f"topic {t} note {i}") for t in "abc" for i in range(20)]
>>> result = select_diverse(pool, 3, features="hashing")
>>> len(result.selected), result.after["clusters_covered"]
(3, 3)
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from sftforge.data.block import RejectSink, conversation_text
from sftforge.errors import SftForgeError
from sftforge.types import Conversation

METHODS = ("kcenter", "cluster")
FEATURES = ("minilm", "hashing")
ALLOCATIONS = ("balanced", "proportional")

Featurizer = Callable[[Sequence[str]], np.ndarray]
ScoreFn = Callable[[Conversation], float]


class SelectionError(SftForgeError, ValueError):
    """A selection option is invalid."""


# -- scores -------------------------------------------------------------------------------------
def answer_length(conversation: Conversation) -> float:
    """Characters of assistant text: a cheap quality proxy (longer answers, more substance)."""
    return float(sum(len(m.content) for m in conversation.messages if m.role == "assistant"))


SCORES: dict[str, ScoreFn] = {"answer_length": answer_length}


# -- features -----------------------------------------------------------------------------------
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_WORD = re.compile(rf"[^\W{_CJK}]+")
_CJK_RUN = re.compile(rf"[{_CJK}]+")


@dataclass(frozen=True)
class HashingFeatures:
    """Model-free features: hashed TF-IDF, projected to ``dims`` dense unit vectors.

    Tokens are lower-cased words (and word bigrams when ``bigrams``) plus, for Chinese,
    Japanese and Korean script (no spaces between words), single characters and character
    bigrams. Only the first ``max_chars`` characters of a text count. The hashed TF-IDF
    matrix (``n_features`` columns) goes through a sparse random projection to
    ``projection`` dimensions (each column adds to ``per_column`` of them with hashed
    signs), then PCA (uncentred, like LSA) to ``dims``. A TruncatedSVD straight on a
    million hashed columns, or scikit-learn's ``SparseRandomProjection`` with a usable
    density, costs tens of seconds more on 50k texts.
    """

    dims: int = 128
    projection: int = 512
    per_column: int = 8
    n_features: int = 2**20
    bigrams: bool = True
    max_chars: int = 2000

    def analyze(self, text: str) -> list[str]:
        text = text[: self.max_chars].lower()
        words = _WORD.findall(text)
        tokens = words + [f"{a} {b}" for a, b in pairwise(words)] if self.bigrams else words
        if not text.isascii():
            for run in _CJK_RUN.findall(text):
                tokens.extend(run)  # characters
                tokens.extend(map(str.__add__, run, run[1:]))  # character bigrams
        return tokens

    def __call__(self, texts: Sequence[str], *, seed: int = 0) -> np.ndarray:
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        counts = HashingVectorizer(
            analyzer=self.analyze, n_features=self.n_features,
            alternate_sign=False, norm=None, dtype=np.float32,
        ).transform(texts)  # fmt: skip
        tfidf = TfidfTransformer(sublinear_tf=True).fit_transform(counts)
        width = min(self.projection, self.n_features)
        projected = _hashed_projection(tfidf, width, self.per_column, seed)
        if self.dims < width:
            # Uncentred PCA through the small Gram matrix: fast and deterministic.
            gram = projected.T.astype(np.float64) @ projected.astype(np.float64)
            with one_blas_thread():  # threaded LAPACK here is 20x slower next to torch
                _, vectors = np.linalg.eigh(gram)
            basis = vectors[:, ::-1][:, : self.dims]
            # Fix each axis' sign so the result does not depend on the eigensolver.
            signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(basis.shape[1])])
            basis = (basis * np.where(signs == 0, 1, signs)).astype(np.float32)
            projected = projected @ basis
        return _unit_rows(projected)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-mixed 64-bit hash of each element."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hashed_projection(matrix: Any, width: int, per_column: int, seed: int) -> np.ndarray:
    """``matrix @ R`` for a sparse random sign matrix ``R`` whose rows are hashed from the
    column index and ``seed``: only the columns that occur are built, so the cost is
    ``nnz * per_column``, not ``n_features * width``."""
    from scipy.sparse import csr_matrix

    matrix = csr_matrix(matrix, dtype=np.float32)
    n = matrix.shape[0]
    present = np.zeros(matrix.shape[1], dtype=bool)
    present[matrix.indices] = True
    used = np.flatnonzero(present)
    local = (np.cumsum(present, dtype=np.int64) - 1)[matrix.indices]  # column -> compact id
    compact = csr_matrix((matrix.data, local, matrix.indptr), shape=(n, len(used)))
    salt = _mix64(np.array([seed & 0xFFFFFFFF], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        keys = used.astype(np.uint64)[:, None] * np.uint64(per_column) + np.arange(
            per_column, dtype=np.uint64
        )
        h = _mix64(keys ^ salt)
    dims = (h % np.uint64(width)).astype(np.int64).ravel()
    signs = np.where((h >> np.uint64(40)) & np.uint64(1), 1.0, -1.0).astype(np.float32).ravel()
    signs /= np.float32(np.sqrt(per_column))
    proj = csr_matrix(
        (signs, dims, np.arange(0, len(used) * per_column + 1, per_column)),
        shape=(len(used), width),
    )
    out = np.empty((n, width), dtype=np.float32)
    for start in range(0, n, 8192):
        out[start : start + 8192] = (compact[start : start + 8192] @ proj).toarray()
    return out


@dataclass(frozen=True)
class MiniLMFeatures:
    """Sentence embeddings from all-MiniLM-L6-v2 (offline; see :func:`embed_texts`)."""

    model_dir: str | Path | None = None
    batch_size: int = 64
    max_length: int = 256
    progress: bool = False

    def __call__(self, texts: Sequence[str], *, seed: int = 0) -> np.ndarray:
        from sftforge.data.embed import embed_texts

        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return embed_texts(
            texts, model_dir=self.model_dir, batch_size=self.batch_size,
            max_length=self.max_length, progress=self.progress,
        )  # fmt: skip


def featurize(
    texts: Sequence[str],
    features: str | HashingFeatures | MiniLMFeatures | Featurizer = "minilm",
    *,
    seed: int = 0,
) -> np.ndarray:
    """Unit-length float32 feature rows for ``texts`` (cosine similarity = dot product)."""
    if isinstance(features, str):
        if features == "minilm":
            features = MiniLMFeatures()
        elif features == "hashing":
            features = HashingFeatures()
        else:
            raise SelectionError(
                f"features: unknown featuriser {features!r} (expected one of "
                f"{', '.join(FEATURES)}, or a callable texts -> matrix)"
            )
    if isinstance(features, (HashingFeatures, MiniLMFeatures)):
        matrix = features(texts, seed=seed)
    elif callable(features):
        matrix = features(texts)
    else:
        raise SelectionError(f"features: expected a name or a callable, got {features!r}")
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(texts):
        raise SelectionError(
            f"features: expected a matrix with {len(texts)} rows, got shape {matrix.shape}"
        )
    return _unit_rows(matrix)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _features_name(features: object) -> str:
    if isinstance(features, str):
        return features
    if isinstance(features, HashingFeatures):
        return "hashing"
    if isinstance(features, MiniLMFeatures):
        return "minilm"
    return getattr(features, "__name__", type(features).__name__)


# -- selection algorithms -------------------------------------------------------------------------
def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """Limit BLAS to one thread: the sequential loops here make many small products, and
    waking BLAS threads for each costs more than the product (measured 2-8x slower on two
    busy cores). ``threadpoolctl`` comes with scikit-learn; without it, only speed differs.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def kcenter_greedy(
    x: np.ndarray, n: int, *, first: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Farthest-point traversal on unit rows of ``x``.

    Returns the picked row indices in pick order and every row's cosine distance to its
    nearest picked row (0 for picked rows). ``first`` defaults to the row nearest the mean
    direction. Cost: one matrix-vector product with ``x`` per pick (about 0.2 ms for
    50k x 128 float32; pruning with the triangle inequality was measured slower: its
    bookkeeping costs more than the product it saves).
    """
    with one_blas_thread():
        return _kcenter(x, n, first)


def _kcenter(x: np.ndarray, n: int, first: int | None) -> tuple[np.ndarray, np.ndarray]:
    m = x.shape[0]
    n = min(n, m)
    if n <= 0:
        return np.zeros(0, dtype=np.int64), np.full(m, np.inf, dtype=np.float32)
    if first is None:
        first = int(np.argmax(x @ x.mean(axis=0)))
    order = np.empty(n, dtype=np.int64)
    order[0] = first
    nearest = 1.0 - x @ x[first]
    nearest[first] = -1.0  # picked: below any distance, so argmax never returns it again
    for i in range(1, n):
        pick = int(np.argmax(nearest))
        order[i] = pick
        np.minimum(nearest, 1.0 - x @ x[pick], out=nearest)
        nearest[pick] = -1.0
    return order, np.clip(nearest, 0.0, None)


def spherical_kmeans(
    x: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    n_init: int = 3,
    iterations: int = 15,
    fit_sample: int = 20000,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means on unit rows with cosine similarity: labels and unit centres.

    ``n_init`` greedy k-means++ seedings, each refined on a small seeded sample (at most
    ``max(2000, 20 k)`` rows); the one with the lowest inertia is refined on at most
    ``fit_sample`` rows, then every row goes to its nearest centre. Deterministic under
    ``seed``. Plain numpy matrix products: several times faster than scikit-learn's
    ``MiniBatchKMeans`` for the few hundred clusters used here.
    """
    m = x.shape[0]
    k = max(1, min(k, m))
    rng = np.random.default_rng(seed)
    fit = x if m <= fit_sample else x[np.sort(rng.choice(m, fit_sample, replace=False))]
    small = max(2000, 20 * k)
    trial = fit if len(fit) <= small else fit[np.sort(rng.choice(len(fit), small, replace=False))]
    best_centres, best_inertia = None, np.inf
    for _ in range(max(1, n_init)):
        with one_blas_thread():
            seeds = _kmeans_pp(trial, k, rng)
        centres, inertia = _lloyd(trial, seeds, iterations)
        if inertia < best_inertia:
            best_centres, best_inertia = centres, inertia
    assert best_centres is not None
    if trial is not fit:
        best_centres, _ = _lloyd(fit, best_centres, iterations)
    return _assign(x, best_centres), best_centres


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn does): of a few candidates drawn in
    proportion to squared distance, keep the one that lowers the total most. Squared
    Euclidean distance on the sphere is ``2 - 2 cos``."""
    f = x.shape[0]
    trials = 2 + int(np.log(k))
    chosen = [int(rng.integers(f))]
    d2 = np.clip(2.0 - 2.0 * (x @ x[chosen[0]]), 0.0, None)
    for _ in range(1, k):
        total = float(d2.sum(dtype=np.float64))
        if total <= 0.0:  # fewer distinct points than clusters
            break
        cumulative = np.cumsum(d2, dtype=np.float64)
        candidates = np.minimum(np.searchsorted(cumulative, rng.random(trials) * total), f - 1)
        cand_d2 = np.minimum(d2[:, None], np.clip(2.0 - 2.0 * (x @ x[candidates].T), 0, None))
        best = int(np.argmin(cand_d2.sum(axis=0, dtype=np.float64)))
        chosen.append(int(candidates[best]))
        d2 = np.ascontiguousarray(cand_d2[:, best])
    return x[chosen].copy()


def _lloyd(x: np.ndarray, centres: np.ndarray, iterations: int) -> tuple[np.ndarray, float]:
    """Lloyd iterations (spherical: centres are normalised means); returns the centres and
    the inertia (sum of squared distances to the nearest centre)."""
    centres = centres.copy()
    labels = np.full(x.shape[0], -1, dtype=np.int64)
    for _ in range(iterations):
        new = _assign(x, centres)
        if np.array_equal(new, labels):
            break
        labels = new
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, x)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        keep = norms[:, 0] > 0  # an emptied cluster keeps its old centre
        centres[keep] = sums[keep] / norms[keep]
    sims = np.einsum("ij,ij->i", x, centres[_assign(x, centres)])
    return centres, float(np.sum(2.0 - 2.0 * sims, dtype=np.float64))


def _assign(x: np.ndarray, centres: np.ndarray, chunk: int = 8192) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=np.int64)
    for start in range(0, x.shape[0], chunk):
        out[start : start + chunk] = np.argmax(x[start : start + chunk] @ centres.T, axis=1)
    return out


def default_clusters(pool_size: int, n: int) -> int:
    """Clusters for cluster-balanced selection and for the coverage figure: at most ``n``
    (so every cluster can be covered) and at most ``sqrt(pool)`` (so clusters mean
    something)."""
    return max(1, min(n, round(float(np.sqrt(pool_size)))))


def allocate(sizes: np.ndarray, n: int, how: str = "balanced") -> np.ndarray:
    """How many to take from each cluster so the total is ``min(n, sizes.sum())``.

    ``balanced``: equal shares capped by cluster size, leftovers to the larger clusters
    (the round-robin result). ``proportional``: one per cluster first (the floor; the
    largest clusters first if ``n`` is smaller than the number of clusters), the rest in
    proportion to what each cluster has left (largest remainder).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(min(n, sizes.sum()))
    alloc = np.zeros_like(sizes)
    by_size = np.lexsort((np.arange(len(sizes)), -sizes))  # largest first, ties by label
    if how == "balanced":
        remaining = n
        while remaining > 0:
            room = sizes - alloc
            active = by_size[room[by_size] > 0]
            share = remaining // len(active)
            if share == 0:
                alloc[active[:remaining]] += 1
                break
            add = np.minimum(room[active], share)
            alloc[active] += add
            remaining -= int(add.sum())
        return alloc
    if how == "proportional":
        floor = by_size[sizes[by_size] > 0][:n]
        alloc[floor] = 1
        rest = n - len(floor)
        room = sizes - alloc
        if rest > 0 and room.sum() > 0:
            exact = rest * room / room.sum()
            base = np.floor(exact).astype(np.int64)
            alloc += base
            left = rest - int(base.sum())
            order = np.lexsort((np.arange(len(sizes)), -(exact - base)))
            alloc[order[:left]] += 1
        return alloc
    raise SelectionError(f"allocation: unknown {how!r} (expected one of {', '.join(ALLOCATIONS)})")


def cluster_select(
    x: np.ndarray,
    n: int,
    labels: np.ndarray,
    *,
    scores: np.ndarray | None = None,
    allocation: str = "balanced",
    min_distance: float = 0.05,
) -> np.ndarray:
    """Per-cluster quotas from :func:`allocate`, then inside each cluster:

    * with ``scores``: highest score first (ties by index), skipping samples within
      ``min_distance`` (cosine) of one already taken from the cluster; skipped samples
      fill the quota, best first, only if the cluster has nothing else left;
    * without: farthest-point order from the member nearest the cluster mean.
    """
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    sizes = np.bincount(labels)
    quota = allocate(sizes, n, allocation)
    picked = []
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    with one_blas_thread():
        for c in np.flatnonzero(quota):
            members = order[bounds[c] : bounds[c + 1]]
            q = int(quota[c])
            if scores is None:
                local, _ = _kcenter(x[members], q, None)
            else:
                local = _best_spread(x[members], scores[members], q, min_distance)
            picked.append(members[local])
    return np.concatenate(picked)


def _best_spread(x: np.ndarray, scores: np.ndarray, q: int, min_distance: float) -> np.ndarray:
    ranked = np.lexsort((np.arange(len(scores)), -scores))
    if q >= len(ranked):
        return ranked
    nearest = np.full(len(ranked), np.inf, dtype=np.float32)
    taken: list[int] = []
    for j in ranked.tolist():
        if nearest[j] < min_distance:
            continue
        taken.append(j)
        if len(taken) == q:
            return np.asarray(taken, dtype=np.int64)
        np.minimum(nearest, 1.0 - x @ x[j], out=nearest)
    chosen = set(taken)
    taken += [j for j in ranked.tolist() if j not in chosen][: q - len(taken)]
    return np.asarray(taken, dtype=np.int64)


# -- diversity figures ----------------------------------------------------------------------------
def mean_pairwise_distance(x: np.ndarray) -> float:
    """Mean cosine distance over all distinct pairs of unit rows, exactly, in ``O(m d)``:
    ``sum_{i != j} x_i . x_j = |sum_i x_i|^2 - sum_i |x_i|^2``."""
    m = x.shape[0]
    if m < 2:
        return 0.0
    s = x.sum(axis=0, dtype=np.float64)
    sq = float(np.einsum("ij,ij->", x, x, dtype=np.float64))
    return float(1.0 - (float(s @ s) - sq) / (m * (m - 1)))


def nearest_distance(x: np.ndarray, chosen: np.ndarray, *, chunk: int = 4096) -> np.ndarray:
    """Each row's cosine distance to its nearest row in ``chosen`` (chunked matrix product)."""
    out = np.empty(x.shape[0], dtype=np.float32)
    if len(chosen) == 0:
        out.fill(np.inf)
        return out
    centres = x[chosen].T
    for start in range(0, x.shape[0], chunk):
        sims = x[start : start + chunk] @ centres
        out[start : start + chunk] = 1.0 - sims.max(axis=1)
    return np.clip(out, 0.0, None)


def _subset_figures(
    x: np.ndarray,
    chosen: np.ndarray,
    labels: np.ndarray,
    nearest: np.ndarray | None = None,
) -> dict[str, Any]:
    if nearest is None:
        nearest = nearest_distance(x, chosen)
    has = len(chosen) > 0
    return {
        "n": len(chosen),
        "mean_pairwise_distance": mean_pairwise_distance(x[chosen]),
        "coverage_radius_max": float(nearest.max()) if has and len(nearest) else None,
        "coverage_radius_mean": float(nearest.mean()) if has and len(nearest) else None,
        "clusters_covered": len(np.unique(labels[chosen])),
        "clusters": len(np.unique(labels)),
    }


# -- public API -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)  # numpy fields: compare by identity
class SelectionResult:
    """What :func:`select_diverse` chose, and how diverse pool, selection and a random
    subset of the same size are.

    ``selected`` and ``indices`` (sorted pool positions) keep pool order; ``pick_order``
    is the order the method chose them in (for k-center: most representative first, so a
    prefix of it is itself a good smaller selection).
    """

    selected: list[Conversation]
    indices: np.ndarray
    pick_order: np.ndarray
    method: str
    features: str
    before: dict[str, Any]
    after: dict[str, Any]
    random: dict[str, Any] | None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self, *, timings: bool = False) -> dict[str, Any]:
        """Plain data for a manifest or report (no conversations, no indices). Timings
        only on request, so the same build gives the same manifest."""
        out = {
            "method": self.method,
            "features": self.features,
            "pool": self.before.get("n", 0),
            "selected": len(self.selected),
            "diversity": {"before": self.before, "after": self.after, "random": self.random},
        }
        if timings:
            out["seconds"] = {k: round(v, 3) for k, v in self.seconds.items()}
        return out


def select_diverse(
    conversations: Sequence[Conversation],
    n: int,
    *,
    method: str = "kcenter",
    features: str | HashingFeatures | MiniLMFeatures | Featurizer = "minilm",
    seed: int = 0,
    score: ScoreFn | str | None = None,
    n_clusters: int | None = None,
    allocation: str = "balanced",
    min_distance: float = 0.05,
    text: Callable[[Conversation], str] = conversation_text,
    compare_random: bool = True,
    vectors: np.ndarray | None = None,
) -> SelectionResult:
    """Choose ``n`` of ``conversations`` to cover the pool (see the module docstring).

    ``score`` (a callable, or ``"answer_length"``) ranks samples inside a cluster for
    ``method="cluster"``; for ``"kcenter"`` it only picks the starting sample (use
    ``"cluster"`` to prefer quality throughout). ``n_clusters`` defaults to
    :func:`default_clusters`; the same clustering gives the ``clusters_covered`` figure.
    ``vectors`` (unit rows, one per conversation) skips featurisation, e.g. to reuse
    embeddings from semantic de-duplication. Deterministic: same inputs and seed, same
    result. If ``n`` is at least the pool size, everything is selected.
    """
    if method not in METHODS:
        raise SelectionError(f"method: unknown {method!r} (expected one of {', '.join(METHODS)})")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise SelectionError(f"n: expected a non-negative integer, got {n!r}")
    if allocation not in ALLOCATIONS:
        raise SelectionError(
            f"allocation: unknown {allocation!r} (expected one of {', '.join(ALLOCATIONS)})"
        )
    if isinstance(score, str):
        if score not in SCORES:
            raise SelectionError(f"score: unknown {score!r} (expected one of {', '.join(SCORES)})")
        score = SCORES[score]
    pool = list(conversations)
    m = len(pool)
    seconds: dict[str, float] = {}
    rng = np.random.default_rng(seed)

    t0 = time.perf_counter()
    if vectors is not None:
        x = _unit_rows(np.asarray(vectors))
        if x.shape[0] != m:
            raise SelectionError(f"vectors: expected {m} rows, got {x.shape[0]}")
    else:
        x = featurize([text(c) for c in pool], features, seed=seed)
    seconds["features"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    k = n_clusters if n_clusters is not None else default_clusters(m, n)
    if k < 1:
        raise SelectionError(f"n_clusters: must be at least 1, got {k}")
    labels = spherical_kmeans(x, k, seed=seed)[0] if m else np.zeros(0, dtype=np.int64)
    seconds["clusters"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    scores = np.array([score(c) for c in pool], dtype=np.float64) if score is not None else None
    nearest = None
    if n >= m:
        order = np.arange(m, dtype=np.int64)
    elif method == "kcenter":
        first = int(np.lexsort((np.arange(m), -scores))[0]) if scores is not None else None
        order, nearest = kcenter_greedy(x, n, first=first)
    else:
        order = cluster_select(
            x, n, labels, scores=scores, allocation=allocation, min_distance=min_distance
        )
    seconds["select"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    indices = np.sort(order)
    before = {
        "n": m,
        "mean_pairwise_distance": mean_pairwise_distance(x),
        "clusters": len(np.unique(labels)),
    }
    after = _subset_figures(x, indices, labels, nearest)
    baseline = None
    if compare_random:
        random_idx = np.sort(rng.choice(m, len(indices), replace=False))
        baseline = _subset_figures(x, random_idx, labels)
    seconds["figures"] = time.perf_counter() - t0

    return SelectionResult(
        selected=[pool[i] for i in indices.tolist()],
        indices=indices,
        pick_order=order,
        method=method,
        features=_features_name(features) if vectors is None else "vectors",
        before=before,
        after=after,
        random=baseline,
        seconds=seconds,
    )


class DiverseSelect:
    """Block form of :func:`select_diverse`: keeps the ``n`` most diverse conversations.

    **It buffers its whole input** (selection needs the whole pool), so it ends the
    streaming part of a pipeline: nothing comes out until the input is exhausted. Kept
    conversations come out in input order; the rest go to the sink as ``not_selected``.
    The last :class:`SelectionResult` (with the diversity figures) is ``self.result``.
    """

    name = "select"

    def __init__(
        self,
        n: int,
        *,
        method: str = "kcenter",
        features: str | HashingFeatures | MiniLMFeatures | Featurizer = "minilm",
        seed: int = 0,
        score: ScoreFn | str | None = None,
        n_clusters: int | None = None,
        allocation: str = "balanced",
        min_distance: float = 0.05,
        text: Callable[[Conversation], str] = conversation_text,
        compare_random: bool = True,
    ) -> None:
        if method not in METHODS:
            raise SelectionError(
                f"method: unknown {method!r} (expected one of {', '.join(METHODS)})"
            )
        if isinstance(features, str) and features not in FEATURES:
            raise SelectionError(
                f"features: unknown {features!r} (expected one of {', '.join(FEATURES)})"
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise SelectionError(f"n: expected a non-negative integer, got {n!r}")
        self.n = n
        self.options: dict[str, Any] = {
            "method": method, "features": features, "seed": seed, "score": score,
            "n_clusters": n_clusters, "allocation": allocation,
            "min_distance": min_distance, "text": text,
            "compare_random": compare_random,
        }  # fmt: skip
        self.result: SelectionResult | None = None

    def run(
        self, conversations: Iterable[Conversation], sink: RejectSink
    ) -> Iterator[Conversation]:
        pool = list(conversations)
        counts = sink.stage(self.name)
        counts.seen += len(pool)
        self.result = result = select_diverse(pool, self.n, **self.options)
        dropped = np.ones(len(pool), dtype=bool)
        dropped[result.indices] = False
        detail = (
            f"{result.method} selection on {result.features} features kept "
            f"{len(result.indices)} of {len(pool)}"
        )
        reject_many(sink, self.name, "not_selected", pool, np.flatnonzero(dropped), detail)
        counts.kept += len(result.selected)
        yield from result.selected


def reject_many(
    sink: RejectSink,
    stage: str,
    reason: str,
    conversations: Sequence[Conversation],
    indices: Sequence[int] | np.ndarray,
    detail: str = "",
) -> None:
    """Report ``conversations[i]`` for each ``i`` in ``indices`` as dropped.

    Same result as one ``sink.reject`` per sample, without the per-sample cost when it
    makes no difference: if the sink writes a side file, every reject goes through
    ``sink.reject``; otherwise the first ``max_examples`` do (keeping examples and strict
    mode) and the rest are only counted.
    """
    from sftforge.data.block import Rejected

    idx = np.asarray(indices, dtype=np.int64)
    if len(idx) == 0:
        return
    full = sink.path is not None
    head = idx if full else idx[: max(1, sink.max_examples)]
    for i in head.tolist():
        sink.reject(Rejected(reason, stage, detail, conversation=conversations[i]))
    if not full:
        sink.stage(stage).rejected[reason] += len(idx) - len(head)
