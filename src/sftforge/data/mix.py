"""Mixing sources into one training set, and a train/validation split stratified by source.

A :class:`MixPlan` says how much of each source goes into the mix:

* ``count``: exactly that many samples (fewer, with a warning, if the pool is smaller and
  ``allow_repeat`` is off; with it on, samples repeat as evenly as possible);
* ``weight``: a share of what ``total`` leaves after the counts (weights are relative and
  need not sum to 1);
* neither: every sample of the source, once.

``multi_turn_share`` asks for that fraction of the sampled chat data to have more than one
assistant turn; ``replay_ratio`` asks for that fraction of the whole mix to be plain-text
replay documents from the sources marked ``replay`` (their weights, if any, split the
replay part between them; without weights, in proportion to pool size). Both are met as
well as the pools allow, and the :class:`MixReport` says what was achieved. If ``total``
is not given it is the largest size the weights allow without repeating a sample.

Sampling is deterministic: every source draws from its own generator seeded by
``(seed, crc32(name))``, so adding a source does not change what the others draw, and the
final order is one seeded permutation. Samples not drawn go to the sink as
``not_sampled`` (stage ``mix``), so ``seen == unique kept + not_sampled``; repeats are
counted separately (``len(mixed) == unique kept + repeated``).

>>> from sftforge.types import Conversation
>>> pools = {"a": [Conversation.text(f"a{i}") for i in range(100)],
...          "b": [Conversation.text(f"b{i}") for i in range(100)]}
>>> plan = MixPlan((SourceMix("a", weight=3), SourceMix("b", weight=1)), total=40)
>>> mixed, report = mix(pools, plan)
>>> [s.achieved for s in report.sources]
[30, 10]
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

from sftforge.data.block import RejectSink
from sftforge.data.select import reject_many
from sftforge.errors import SftForgeError
from sftforge.types import KIND_TEXT, Conversation

STAGE = "mix"


class MixPlanError(SftForgeError, ValueError):
    """A mix plan or split option is invalid; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class MixWarning(UserWarning):
    """A mix could not be made exactly as planned (a pool too small, a share not met)."""


def source_of(conversation: Conversation) -> str:
    """The source name a conversation came from: ``meta["source_name"]`` (set by recipe
    builds), else ``meta["source"]``, else ``"?"``."""
    meta = conversation.meta
    return str(meta.get("source_name") or meta.get("source") or "?")


# -- the plan -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceMix:
    """How much of one source goes into the mix (see the module docstring)."""

    name: str
    weight: float | None = None
    count: int | None = None
    allow_repeat: bool = False
    replay: bool = False

    def validate(self, where: str = "source") -> SourceMix:
        if not isinstance(self.name, str) or not self.name:
            raise MixPlanError(f"{where}.name", f"expected a non-empty string, got {self.name!r}")
        if self.weight is not None and self.count is not None:
            raise MixPlanError(where, "give either weight or count, not both")
        if self.weight is not None:
            w = self.weight
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
                raise MixPlanError(f"{where}.weight", f"expected a number, got {w!r}")
            if w < 0:
                raise MixPlanError(f"{where}.weight", f"must be >= 0, got {w!r}")
        if self.count is not None:
            c = self.count
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
                raise MixPlanError(f"{where}.count", f"expected an integer, got {c!r}")
            if c < 0:
                raise MixPlanError(f"{where}.count", f"must be >= 0, got {c!r}")
        for key in ("allow_repeat", "replay"):
            if not isinstance(getattr(self, key), bool):
                raise MixPlanError(
                    f"{where}.{key}", f"expected true or false, got {getattr(self, key)!r}"
                )
        return self


@dataclass(frozen=True)
class MixPlan:
    """Sources and their shares, the target size and the multi-turn and replay targets."""

    sources: tuple[SourceMix, ...]
    total: int | None = None
    multi_turn_share: float | None = None
    replay_ratio: float | None = None
    seed: int = 0
    shuffle: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))

    def validate(self) -> MixPlan:
        """Raise :class:`MixPlanError` naming the field of the first bad value."""
        if not self.sources:
            raise MixPlanError("sources", "at least one source is required")
        seen: dict[str, int] = {}
        for i, s in enumerate(self.sources):
            if not isinstance(s, SourceMix):
                raise MixPlanError(f"sources[{i}]", f"expected a SourceMix, got {s!r}")
            s.validate(f"sources[{i}]")
            if s.name in seen:
                raise MixPlanError(
                    f"sources[{i}].name", f"{s.name!r} is already sources[{seen[s.name]}]"
                )
            seen[s.name] = i
        if self.total is not None and (
            isinstance(self.total, bool)
            or not isinstance(self.total, (int, np.integer))
            or self.total < 0
        ):
            raise MixPlanError("total", f"expected a non-negative integer, got {self.total!r}")
        for key in ("multi_turn_share", "replay_ratio"):
            v = getattr(self, key)
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1
            ):
                raise MixPlanError(key, f"must be between 0 and 1, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise MixPlanError("seed", f"expected an integer, got {self.seed!r}")
        if self.replay_ratio is not None:
            self._validate_replay()
        elif self.total is not None:
            counts = sum(s.count or 0 for s in self.sources)
            if counts > self.total:
                raise MixPlanError(
                    "total", f"{self.total} is smaller than the sum of counts ({counts})"
                )
        return self

    def _validate_replay(self) -> None:
        ratio = float(self.replay_ratio or 0.0)
        replay = [(i, s) for i, s in enumerate(self.sources) if s.replay]
        if ratio > 0 and not replay:
            raise MixPlanError(
                "replay_ratio", "is set but no source has replay: true (mark the text sources)"
            )
        for i, s in replay:
            if s.count is not None:
                raise MixPlanError(
                    f"sources[{i}].count",
                    "a replay source takes its size from replay_ratio; give it a weight "
                    "(its share of the replay part) or nothing",
                )
        weighted = [s.weight is not None for _, s in replay]
        if any(weighted) and not all(weighted):
            i = replay[weighted.index(False)][0]
            raise MixPlanError(f"sources[{i}].weight", "give every replay source a weight, or none")
        others = [
            (i, s) for i, s in enumerate(self.sources)
            if not s.replay and (s.weight is None or s.weight > 0) and s.count != 0
        ]  # fmt: skip
        if ratio == 1 and others:
            raise MixPlanError(
                "replay_ratio",
                f"1 leaves no room for non-replay sources (sources[{others[0][0]}] "
                f"{others[0][1].name!r})",
            )
        if self.total is not None:
            room = self.total - round(ratio * self.total)
            counts = sum(s.count or 0 for s in self.sources if not s.replay)
            if counts > room:
                raise MixPlanError(
                    "total",
                    f"{self.total} leaves {room} non-replay samples after replay_ratio "
                    f"{ratio:g}, fewer than the sum of counts ({counts})",
                )


# -- the report ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceReport:
    """One source in a mix: requested and achieved sizes, and why they differ."""

    name: str
    available: int
    requested: int
    achieved: int
    unique: int
    repeated: int
    capped: int
    multi_turn: int
    chat: int
    replay_docs: int
    replay: bool

    @property
    def not_sampled(self) -> int:
        return self.available - self.unique

    def to_dict(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "requested": self.requested,
            "achieved": self.achieved,
            "unique": self.unique,
            "repeated": self.repeated,
            "capped": self.capped,
            "not_sampled": self.not_sampled,
            "multi_turn": self.multi_turn,
            "chat": self.chat,
            "replay": self.replay,
            "replay_docs": self.replay_docs,
        }


@dataclass(frozen=True)
class MixReport:
    """Requested vs achieved, per source and overall.

    ``multi_turn_share`` is over chat samples (not text documents); ``replay_share`` is the
    fraction of the mix made of text documents from replay sources. ``labels`` holds, for
    every mixed sample, the index of its source in ``sources`` (for :func:`split_train_val`
    use :meth:`output_sources`).
    """

    sources: tuple[SourceReport, ...]
    total_requested: int
    total: int
    multi_turn_share_requested: float | None
    multi_turn_share: float | None
    replay_ratio_requested: float | None
    replay_share: float
    seed: int
    warnings: tuple[str, ...] = ()
    labels: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int32), repr=False, compare=False
    )

    @property
    def not_sampled(self) -> int:
        return sum(s.not_sampled for s in self.sources)

    @property
    def repeated(self) -> int:
        return sum(s.repeated for s in self.sources)

    @property
    def capped(self) -> int:
        return sum(s.capped for s in self.sources)

    def source(self, name: str) -> SourceReport:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    def output_sources(self) -> list[str]:
        """The source name of every mixed sample, in mix order."""
        names = np.array([s.name for s in self.sources], dtype=object)
        return names[self.labels].tolist()

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_requested": self.total_requested,
            "total": self.total,
            "multi_turn_share": {
                "requested": self.multi_turn_share_requested,
                "achieved": self.multi_turn_share,
            },
            "replay_share": {
                "requested": self.replay_ratio_requested,
                "achieved": self.replay_share,
            },
            "not_sampled": self.not_sampled,
            "repeated": self.repeated,
            "capped": self.capped,
            "seed": self.seed,
            "sources": {s.name: s.to_dict() for s in self.sources},
            "warnings": list(self.warnings),
        }


# -- mixing -------------------------------------------------------------------------------------
TEXT, SINGLE, MULTI = 0, 1, 2


def turn_code(conversation: Conversation) -> int:
    """``TEXT``, ``SINGLE`` or ``MULTI`` (see :func:`turn_codes`)."""
    if conversation.kind == KIND_TEXT:
        return TEXT
    seen = False
    for m in conversation.messages:
        if m.role == "assistant":
            if seen:
                return MULTI
            seen = True
    return SINGLE


def is_multi_turn(conversation: Conversation) -> bool:
    """A chat with more than one assistant turn."""
    return turn_code(conversation) == MULTI


def turn_codes(conversations: Sequence[Conversation]) -> np.ndarray:
    """Per conversation: ``TEXT`` (a plain document), ``SINGLE`` (a chat with at most one
    assistant turn) or ``MULTI``. One cheap pass (about 0.2 s per million)."""
    return np.fromiter(map(turn_code, conversations), dtype=np.int8, count=len(conversations))


def _take(seq: Sequence[Conversation], idx: np.ndarray) -> list[Conversation]:
    """``[seq[i] for i in idx]``, through ``itemgetter`` (about twice as fast)."""
    if len(idx) == 0:
        return []
    if len(idx) == 1:
        return [seq[int(idx[0])]]
    return list(itemgetter(*idx.tolist())(seq))


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, *keys])


def _name_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _largest_remainder(budget: int, weights: Sequence[float]) -> list[int]:
    """Integers proportional to ``weights`` that sum to ``budget`` (ties to the first)."""
    total = float(sum(weights))
    if budget <= 0 or total <= 0:
        return [0] * len(weights)
    exact = [budget * w / total for w in weights]
    base = [math.floor(e) for e in exact]
    left = budget - sum(base)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - base[i]), i))
    for i in order[:left]:
        base[i] += 1
    return base


def _draw(
    idx: np.ndarray, k: int, allow_repeat: bool, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """``k`` of ``idx`` without replacement; past the pool size, whole copies of the pool
    plus a sample of the rest when repeats are allowed, else the whole pool (capped).
    Returns the draw and how many distinct samples it holds."""
    p = len(idx)
    if k <= 0 or p == 0:
        return idx[:0], 0
    if k == p:
        return idx, p
    if k < p:
        return idx[rng.choice(p, k, replace=False)], k
    if not allow_repeat:
        return idx, p
    whole, rest = divmod(k, p)
    return np.concatenate([np.tile(idx, whole), idx[rng.choice(p, rest, replace=False)]]), p


def _split_multi_turn(
    quotas: list[int], multi: list[int], other: list[int], repeat: list[bool], share: float
) -> list[int]:
    """How many multi-turn samples each source contributes, so the total is as close to
    ``share`` of all quotas as the pools allow (each source near ``share`` of its own)."""
    lo, hi = [], []
    for q, mt, ot, rep in zip(quotas, multi, other, repeat, strict=True):
        if rep:
            hi.append(q if mt > 0 else 0)
            lo.append(0 if ot > 0 else q)
        else:
            hi.append(min(q, mt))
            lo.append(max(0, q - ot))
    target = round(share * sum(quotas))
    take = [min(max(round(share * q), a), b) for q, a, b in zip(quotas, lo, hi, strict=True)]
    diff = target - sum(take)
    for i in range(len(take)):
        if diff == 0:
            break
        step = min(diff, hi[i] - take[i]) if diff > 0 else max(diff, lo[i] - take[i])
        take[i] += step
        diff -= step
    return take


def mix(
    pools: Mapping[str, Sequence[Conversation]],
    plan: MixPlan,
    sink: RejectSink | None = None,
) -> tuple[list[Conversation], MixReport]:
    """Sample ``pools`` (source name -> conversations) by ``plan``.

    Returns the mixed conversations (one seeded shuffle, or source by source in pool order
    if ``plan.shuffle`` is false) and a :class:`MixReport`. Every pool must have a source
    in the plan and vice versa. Samples not drawn go to ``sink`` as ``not_sampled``.
    """
    plan.validate()
    names = [s.name for s in plan.sources]
    for i, s in enumerate(plan.sources):
        if s.name not in pools:
            raise MixPlanError(
                f"sources[{i}].name",
                f"no data for source {s.name!r} (have: {', '.join(map(repr, pools)) or 'none'})",
            )
    extra = [k for k in pools if k not in set(names)]
    if extra:
        raise MixPlanError(
            "sources",
            f"data for {extra[0]!r} has no entry in the mix plan (add it, with a weight or "
            "count, or leave it out of the inputs)",
        )
    pool = [pools[n] for n in names]
    sizes = [len(p) for p in pool]
    notes: list[str] = []
    ratio = plan.replay_ratio
    replay_mode = ratio is not None
    in_replay = [replay_mode and s.replay for s in plan.sources]

    # 1. Requested sizes: counts and take-all first, weights share what total leaves.
    requested = [0] * len(names)
    weighted = []
    for i, s in enumerate(plan.sources):
        if in_replay[i]:
            continue
        if s.count is not None:
            requested[i] = int(s.count)
        elif s.weight is not None:
            weighted.append(i)
        else:
            requested[i] = sizes[i]
    fixed = sum(requested)
    weights = [float(plan.sources[i].weight or 0.0) for i in weighted]
    if plan.total is not None:
        total = int(plan.total)
        replay_budget = round(ratio * total) if replay_mode else 0
        room = total - replay_budget - fixed
        if room < 0:
            notes.append(
                f"total {total}: counts and whole sources already need {fixed} non-replay "
                f"samples, more than the {total - replay_budget} available; weighted sources "
                "get none"
            )
            room = 0
        elif room > 0 and not weighted:
            notes.append(f"total {total}: no weighted source to fill the remaining {room} samples")
            room = 0
        elif room > 0 and sum(weights) == 0:
            notes.append(f"total {total}: all weights are 0, {room} samples stay unfilled")
            room = 0
    else:
        limits = [
            math.floor(sizes[i] * sum(weights) / w)
            for i, w in zip(weighted, weights, strict=True)
            if w > 0 and not plan.sources[i].allow_repeat
        ]
        if weighted and sum(weights) > 0 and not limits:
            raise MixPlanError("total", "required when every weighted source allows repeats")
        room = min(limits) if limits else 0
        non_replay = fixed + room
        if not replay_mode:
            replay_budget = 0
        elif ratio < 1:
            replay_budget = round(non_replay * ratio / (1 - ratio))
        else:
            replay_budget = sum(sz for sz, r in zip(sizes, in_replay, strict=True) if r)
        total = non_replay + replay_budget
    for i, q in zip(weighted, _largest_remainder(room, weights), strict=True):
        requested[i] = q
    replay_idx = [i for i in range(len(names)) if in_replay[i]]
    if replay_idx:
        has_weights = plan.sources[replay_idx[0]].weight is not None
        shares = [
            float(plan.sources[i].weight or 0.0) if has_weights else float(sizes[i])
            for i in replay_idx
        ]
        for i, q in zip(replay_idx, _largest_remainder(replay_budget, shares), strict=True):
            requested[i] = q

    # 2. Caps: a pool too small for its quota, without repeats.
    quotas = []
    for i, s in enumerate(plan.sources):
        q = requested[i]
        if q > sizes[i] and (not s.allow_repeat or sizes[i] == 0):
            notes.append(
                f"source {s.name!r}: {q} requested, only {sizes[i]} available "
                "(set allow_repeat: true to upsample, or lower the share)"
            )
            q = sizes[i]
        quotas.append(q)

    # 3. Multi-turn: split each chat source's quota between multi- and single-turn pools.
    chat_idx = [i for i in range(len(names)) if not plan.sources[i].replay]
    codes: dict[int, np.ndarray] = {}  # per pool: TEXT / SINGLE / MULTI, when needed
    multi_take: dict[int, int] = {}
    share = plan.multi_turn_share
    if share is not None and chat_idx:
        for i in chat_idx:
            codes[i] = turn_codes(pool[i])
        counts_mt = [int((codes[i] == MULTI).sum()) for i in chat_idx]
        takes = _split_multi_turn(
            [quotas[i] for i in chat_idx],
            counts_mt,
            [sizes[i] - c for i, c in zip(chat_idx, counts_mt, strict=True)],
            [plan.sources[i].allow_repeat for i in chat_idx],
            float(share),
        )
        multi_take = dict(zip(chat_idx, takes, strict=True))

    # 4. Draw.
    drawn: list[np.ndarray] = []
    uniques: list[int] = []
    for i, s in enumerate(plan.sources):
        rng = _rng(plan.seed, _name_key(s.name))
        everything = np.arange(sizes[i], dtype=np.int64)
        if i in multi_take:
            flags = codes[i] == MULTI
            a, ua = _draw(everything[flags], multi_take[i], s.allow_repeat, rng)
            b, ub = _draw(everything[~flags], quotas[i] - multi_take[i], s.allow_repeat, rng)
            picked, unique = np.concatenate([a, b]), ua + ub
        else:
            picked, unique = _draw(everything, quotas[i], s.allow_repeat, rng)
        # Pool order within a source: memory-friendly access; shuffling is one global pass.
        drawn.append(np.sort(picked))
        uniques.append(unique)

    # 5. Assemble, in one seeded order.
    parts = [_take(pool[i], d) for i, d in enumerate(drawn)]
    labels = np.concatenate(
        [np.full(len(d), i, dtype=np.int32) for i, d in enumerate(drawn)] or [np.zeros(0, np.int32)]
    )
    combined = list(chain.from_iterable(parts))
    if plan.shuffle and combined:
        perm = _rng(plan.seed, 1 << 32).permutation(len(combined))
        combined = _take(combined, perm)
        labels = labels[perm]

    # 6. Report and rejects.
    reports = []
    n_chat = n_multi = n_replay = 0
    for i, s in enumerate(plan.sources):
        part_codes = codes[i][drawn[i]] if i in codes else turn_codes(parts[i])
        tally = np.bincount(part_codes, minlength=3)
        chat, multi = int(tally[SINGLE] + tally[MULTI]), int(tally[MULTI])
        replay_docs = int(tally[TEXT]) if s.replay else 0
        n_chat += chat
        n_multi += multi
        n_replay += replay_docs
        reports.append(
            SourceReport(
                name=s.name, available=sizes[i], requested=requested[i], achieved=len(parts[i]),
                unique=uniques[i], repeated=len(parts[i]) - uniques[i],
                capped=max(0, requested[i] - len(parts[i])), multi_turn=multi, chat=chat,
                replay_docs=replay_docs, replay=s.replay,
            )
        )  # fmt: skip
    multi_share = (n_multi / n_chat) if n_chat else None
    replay_share = (n_replay / len(combined)) if combined else 0.0
    if share is not None and multi_share is not None and abs(multi_share - share) > 0.01:
        notes.append(
            f"multi_turn_share: {share:g} requested, {multi_share:.3f} achieved "
            "(not enough multi- or single-turn samples)"
        )
    if ratio is not None and combined and abs(replay_share - ratio) > 0.01:
        notes.append(
            f"replay_ratio: {ratio:g} requested, {replay_share:.3f} achieved "
            "(not enough replay text documents)"
        )
    for note in notes:
        warnings.warn(note, MixWarning, stacklevel=2)
    report = MixReport(
        sources=tuple(reports),
        total_requested=total,
        total=len(combined),
        multi_turn_share_requested=share,
        multi_turn_share=multi_share,
        replay_ratio_requested=ratio,
        replay_share=replay_share,
        seed=int(plan.seed),
        warnings=tuple(notes),
        labels=labels,
    )

    if sink is not None:
        counts = sink.stage(STAGE)
        counts.seen += sum(sizes)
        counts.kept += sum(uniques)
        for i, s in enumerate(plan.sources):
            left = np.ones(sizes[i], dtype=bool)
            left[drawn[i]] = False
            detail = f"source {s.name!r}: {uniques[i]} of {sizes[i]} sampled"
            reject_many(sink, STAGE, "not_sampled", pool[i], np.flatnonzero(left), detail)
    return combined, report


class Mix:
    """Block form of :func:`mix`: groups its input by ``key`` (default :func:`source_of`)
    and mixes by ``plan``. **It buffers its whole input.** The last report is
    ``self.report``."""

    name = STAGE

    def __init__(self, plan: MixPlan, *, key: Callable[[Conversation], str] = source_of) -> None:
        self.plan = plan.validate()
        self.key = key
        self.report: MixReport | None = None

    def run(
        self, conversations: Iterable[Conversation], sink: RejectSink
    ) -> Iterator[Conversation]:
        pools: dict[str, list[Conversation]] = {s.name: [] for s in self.plan.sources}
        for conv in conversations:
            pools.setdefault(self.key(conv), []).append(conv)
        mixed, self.report = mix(pools, self.plan, sink)
        yield from mixed


# -- splitting ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitCounts:
    train: int
    val: int


class SplitResult(NamedTuple):
    """``train, val, counts = split_train_val(...)``; ``counts`` is per source."""

    train: list[Conversation]
    val: list[Conversation]
    counts: dict[str, SplitCounts]


def _bounded_shares(budget: int, sizes: list[int], lo: list[int], hi: list[int]) -> list[int]:
    """``budget`` spread in proportion to ``sizes`` within ``[lo, hi]`` per group: groups
    whose share falls outside are pinned to the bound, the rest share what is left (largest
    remainder). Floors win if they alone exceed the budget."""
    take = [0] * len(sizes)
    free = list(range(len(sizes)))
    left = budget
    while free:
        mass = sum(sizes[g] for g in free)
        exact = {g: left * sizes[g] / mass if mass else 0.0 for g in free}
        pinned = [g for g in free if exact[g] < lo[g] or exact[g] > hi[g]]
        if not pinned:
            break
        for g in pinned:
            take[g] = lo[g] if exact[g] < lo[g] else hi[g]
            left -= take[g]
        free = [g for g in free if g not in pinned]
    for g, q in zip(free, _largest_remainder(max(left, 0), [sizes[g] for g in free]), strict=True):
        take[g] = q
    return take


def split_train_val(
    conversations: Sequence[Conversation],
    *,
    val_ratio: float | None = None,
    val_count: int | None = None,
    seed: int = 0,
    groups: Sequence[str] | None = None,
    key: Callable[[Conversation], str] = source_of,
) -> SplitResult:
    """A validation split stratified by source.

    Give ``val_ratio`` (each source's share) or ``val_count`` (a total, spread over sources
    in proportion to their size). Every source with at least 2 distinct samples gets at
    least 1 validation sample and keeps at least 1 for training; this floor wins over
    ``val_count`` when there are more sources than ``val_count``. The source of each
    sample is ``groups[i]`` (e.g. :meth:`MixReport.output_sources`) or ``key(sample)``.
    Repeats of the same object (upsampled by :func:`mix`) land on the same side, so
    validation never sees a training sample. Both parts keep input order; deterministic
    under ``seed``.
    """
    if (val_ratio is None) == (val_count is None):
        raise MixPlanError("val_ratio", "give exactly one of val_ratio or val_count")
    if val_ratio is not None and (
        isinstance(val_ratio, bool)
        or not isinstance(val_ratio, (int, float))
        or not 0 <= val_ratio < 1
    ):
        raise MixPlanError("val_ratio", f"must be in [0, 1), got {val_ratio!r}")
    if val_count is not None and (
        isinstance(val_count, bool) or not isinstance(val_count, (int, np.integer)) or val_count < 0
    ):
        raise MixPlanError("val_count", f"expected a non-negative integer, got {val_count!r}")
    items = list(conversations)
    if groups is None:
        labels_raw = [key(c) for c in items]
    else:
        labels_raw = list(groups)
        if len(labels_raw) != len(items):
            raise MixPlanError(
                "groups", f"expected {len(items)} labels (one per sample), got {len(labels_raw)}"
            )
    names: dict[str, int] = {}
    labels = np.fromiter(
        (names.setdefault(g, len(names)) for g in labels_raw), dtype=np.int64, count=len(items)
    )
    # Distinct samples (repeats are the same object), numbered in order of first
    # appearance: np.unique sorts by id(), i.e. by memory address, which differs between
    # runs, and the split must not.
    ident = np.fromiter(map(id, items), dtype=np.uint64, count=len(items))
    _, first, inverse = np.unique(ident, return_index=True, return_inverse=True)
    by_appearance = np.argsort(first, kind="stable")
    rank = np.empty_like(by_appearance)
    rank[by_appearance] = np.arange(len(by_appearance))
    inverse = rank[inverse.reshape(-1)]
    first = first[by_appearance]
    uniq_group = labels[first]
    group_names = list(names)
    members = [np.flatnonzero(uniq_group == g) for g in range(len(group_names))]
    sizes = [len(m) for m in members]

    lo_floor = (val_ratio or 0) > 0 or (val_count or 0) > 0
    lo = [1 if lo_floor and n >= 2 else 0 for n in sizes]
    hi = [max(0, n - 1) for n in sizes]
    if val_ratio is not None:
        take = [min(max(round(val_ratio * n), a), b) for n, a, b in zip(sizes, lo, hi, strict=True)]
    else:
        take = _bounded_shares(int(val_count or 0), sizes, lo, hi)

    in_val = np.zeros(len(first), dtype=bool)
    for g, name in enumerate(group_names):
        if take[g]:
            rng = _rng(seed, _name_key(name), 1)
            in_val[members[g][rng.choice(sizes[g], take[g], replace=False)]] = True
    val_mask = in_val[inverse]
    train, val = [], []
    for conv, v in zip(items, val_mask.tolist(), strict=True):
        (val if v else train).append(conv)
    n_val = np.bincount(labels[val_mask], minlength=len(group_names))
    n_all = np.bincount(labels, minlength=len(group_names))
    counts = {
        name: SplitCounts(train=int(n_all[g] - n_val[g]), val=int(n_val[g]))
        for g, name in enumerate(group_names)
    }
    return SplitResult(train, val, counts)
