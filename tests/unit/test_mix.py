"""Mixing and splitting: deterministic under a seed, weights and counts respected,
multi-turn share and replay ratio met when the pools allow, counts reconcile, and a
validation split that keeps every source."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from sftforge.data.block import RejectSink
from sftforge.data.mix import (
    Mix,
    MixPlan,
    MixPlanError,
    MixWarning,
    SourceMix,
    is_multi_turn,
    mix,
    split_train_val,
    turn_codes,
)
from sftforge.types import Conversation, Message


def chat(source: str, i: int, turns: int = 1) -> Conversation:
    messages = []
    for t in range(turns):
        messages += [Message("user", f"{source} q{i}.{t}"), Message("assistant", f"a{i}.{t}")]
    return Conversation(tuple(messages), meta={"source_name": source, "index": i})


def pool(source: str, n: int, multi_every: int = 0) -> list[Conversation]:
    """``n`` chats; every ``multi_every``-th one has two assistant turns."""
    return [chat(source, i, 2 if multi_every and i % multi_every == 0 else 1) for i in range(n)]


def texts(source: str, n: int) -> list[Conversation]:
    return [Conversation.text(f"{source} doc {i}", meta={"source_name": source}) for i in range(n)]


@pytest.fixture
def pools() -> dict[str, list[Conversation]]:
    return {"a": pool("a", 1000, 4), "b": pool("b", 600, 2), "c": pool("c", 300)}


def ids(conversations: list[Conversation]) -> list[int]:
    return [id(c) for c in conversations]


# -- determinism ----------------------------------------------------------------------------------
def test_same_seed_same_output_order(pools):
    def plan(seed: int) -> MixPlan:
        sources = (SourceMix("a", weight=2), SourceMix("b", weight=1), SourceMix("c", count=20))
        return MixPlan(sources, total=520, multi_turn_share=0.3, seed=seed)

    first, r1 = mix(pools, plan(7))
    again, r2 = mix(pools, plan(7))
    assert ids(first) == ids(again)
    assert r1.to_dict() == r2.to_dict()
    other, _ = mix(pools, plan(8))
    assert ids(other) != ids(first)
    assert r1.output_sources() == _sources(first)


def _sources(conversations: list[Conversation]) -> list[str]:
    return [c.meta["source_name"] for c in conversations]


def test_a_new_source_does_not_change_what_others_draw(pools):
    one, _ = mix(
        {"a": pools["a"], "b": pools["b"]},
        MixPlan((SourceMix("a", count=100), SourceMix("b", count=0)), seed=1),
    )
    two, _ = mix(pools, MixPlan((SourceMix("a", count=100), SourceMix("b", count=0),
                                 SourceMix("c", count=50)), seed=1))  # fmt: skip
    assert set(ids(one)) == {id(c) for c in two if c.meta["source_name"] == "a"}


def test_unshuffled_output_is_source_by_source_in_pool_order(pools):
    plan = MixPlan(
        (SourceMix("a", count=10), SourceMix("b", count=5), SourceMix("c", count=0)),
        shuffle=False,
    )
    mixed, _ = mix(pools, plan)
    assert _sources(mixed) == ["a"] * 10 + ["b"] * 5
    index = [c.meta["index"] for c in mixed]
    assert index[:10] == sorted(index[:10]) and index[10:] == sorted(index[10:])


# -- sizes ----------------------------------------------------------------------------------------
def test_weights_are_respected(pools):
    plan = MixPlan(
        (SourceMix("a", weight=0.5), SourceMix("b", weight=0.3), SourceMix("c", weight=0.2)),
        total=1000,
    )
    mixed, report = mix(pools, plan)
    got = Counter(_sources(mixed))
    assert len(mixed) == 1000 == report.total == report.total_requested
    for name, w in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert abs(got[name] / 1000 - w) <= 0.001
        assert report.source(name).achieved == got[name]
    assert not report.warnings


def test_counts_are_exact_and_weights_share_the_rest(pools):
    plan = MixPlan(
        (SourceMix("a", count=123), SourceMix("b", weight=3), SourceMix("c", weight=1)),
        total=523,
    )
    mixed, report = mix(pools, plan)
    got = Counter(_sources(mixed))
    assert got == {"a": 123, "b": 300, "c": 100}
    assert report.source("a").requested == 123


def test_no_weight_and_no_count_takes_the_whole_source(pools):
    mixed, report = mix(pools, MixPlan((SourceMix("a"), SourceMix("b"), SourceMix("c"))))
    assert len(mixed) == 1900 and report.not_sampled == 0
    assert set(ids(mixed)) == {id(c) for p in pools.values() for c in p}


def test_total_inferred_from_weights_without_repeats(pools):
    plan = MixPlan((SourceMix("a", weight=1), SourceMix("c", weight=1), SourceMix("b", count=0)))
    mixed, report = mix(pools, plan)
    assert Counter(_sources(mixed)) == {"a": 300, "c": 300}  # c (300) limits the size
    assert report.total_requested == 600


def test_small_pool_is_capped_with_a_warning(pools):
    plan = MixPlan((SourceMix("c", count=500), SourceMix("a", count=10), SourceMix("b", count=0)))
    with pytest.warns(MixWarning, match="'c': 500 requested, only 300 available"):
        mixed, report = mix(pools, plan)
    c = report.source("c")
    assert (c.requested, c.achieved, c.capped, c.repeated) == (500, 300, 200, 0)
    assert report.capped == 200 and len(mixed) == 310
    assert any("allow_repeat" in w for w in report.warnings)


def test_upsampling_repeats_evenly_only_when_allowed(pools):
    plan = MixPlan(
        (SourceMix("c", count=750, allow_repeat=True), SourceMix("a", count=0),
         SourceMix("b", count=0)),
    )  # fmt: skip
    mixed, report = mix(pools, plan)
    assert len(mixed) == 750
    copies = Counter(ids(mixed))
    assert len(copies) == 300 and set(copies.values()) == {2, 3}
    c = report.source("c")
    assert (c.achieved, c.unique, c.repeated, c.capped) == (750, 300, 450, 0)


# -- multi-turn and replay ------------------------------------------------------------------------
def test_multi_turn_share_is_met_when_the_pool_allows(pools):
    # a: 25% multi-turn, b: 50%, c: none. Ask for 60% of 800.
    plan = MixPlan(
        (SourceMix("a", weight=1), SourceMix("b", weight=1), SourceMix("c", count=0)),
        total=800, multi_turn_share=0.6,
    )  # fmt: skip
    mixed, report = mix(pools, plan)
    share = sum(map(is_multi_turn, mixed)) / len(mixed)
    assert share == pytest.approx(0.6, abs=1 / 800)
    assert report.multi_turn_share == pytest.approx(share)
    assert Counter(_sources(mixed)) == {"a": 400, "b": 400}  # weights still hold
    assert not report.warnings


def test_multi_turn_share_as_close_as_the_pool_allows(pools):
    plan = MixPlan((SourceMix("c"), SourceMix("a", count=100), SourceMix("b", count=0)),
                   multi_turn_share=0.9)  # fmt: skip
    with pytest.warns(MixWarning, match="multi_turn_share"):
        _, report = mix(pools, plan)
    # c has no multi-turn chats and is taken whole; a gives all 100 from its multi-turn part
    assert report.source("a").multi_turn == 100
    assert report.multi_turn_share == pytest.approx(100 / 400)


def test_multi_turn_share_is_reported_when_not_requested(pools):
    _, report = mix(pools, MixPlan((SourceMix("a"), SourceMix("b"), SourceMix("c"))))
    assert report.multi_turn_share == pytest.approx((250 + 300) / 1900)
    assert report.multi_turn_share_requested is None


def test_replay_ratio_is_met(pools):
    data = pools | {"web": texts("web", 500)}
    plan = MixPlan(
        (SourceMix("a", weight=1), SourceMix("b", weight=1), SourceMix("c", count=0),
         SourceMix("web", replay=True)),
        total=1000, replay_ratio=0.2,
    )  # fmt: skip
    mixed, report = mix(data, plan)
    assert len(mixed) == 1000
    assert sum(c.kind == "text" for c in mixed) == 200
    assert report.replay_share == pytest.approx(0.2)
    assert Counter(_sources(mixed)) == {"a": 400, "b": 400, "web": 200}


def test_replay_weights_split_the_replay_part(pools):
    data = {"a": pools["a"], "web": texts("web", 500), "books": texts("books", 500)}
    plan = MixPlan(
        (SourceMix("a", count=600), SourceMix("web", weight=3, replay=True),
         SourceMix("books", weight=1, replay=True)),
        replay_ratio=0.4,
    )  # fmt: skip
    mixed, report = mix(data, plan)
    assert report.total_requested == 1000  # 600 chats are 60% of the mix
    assert Counter(_sources(mixed)) == {"a": 600, "web": 300, "books": 100}
    assert report.replay_share == pytest.approx(0.4)


def test_replay_short_of_documents_is_reported(pools):
    data = {"a": pools["a"], "web": texts("web", 50)}
    plan = MixPlan((SourceMix("a", count=900), SourceMix("web", replay=True)),
                   total=1000, replay_ratio=0.1)  # fmt: skip
    with pytest.warns(MixWarning):
        _, report = mix(data, plan)
    assert report.replay_share == pytest.approx(50 / 950)
    assert report.source("web").capped == 50


# -- reconciliation -------------------------------------------------------------------------------
def test_counts_reconcile_through_the_sink(pools):
    sink = RejectSink()
    plan = MixPlan((SourceMix("a", weight=1), SourceMix("b", weight=1), SourceMix("c", count=7)),
                   total=507)  # fmt: skip
    mixed, report = mix(pools, plan, sink)
    counts = sink.stage("mix")
    assert counts.seen == 1900
    assert counts.seen == len(mixed) + counts.rejected["not_sampled"]
    assert counts.reconciles() and counts.kept == len(mixed)
    assert report.not_sampled == counts.rejected["not_sampled"]
    example = sink.examples[("mix", "not_sampled")][0]
    assert example["stage"] == "mix" and "sampled" in example["detail"]


def test_counts_reconcile_with_repeats(pools):
    sink = RejectSink()
    plan = MixPlan((SourceMix("c", count=400, allow_repeat=True), SourceMix("a", count=10),
                    SourceMix("b", count=0)))  # fmt: skip
    mixed, report = mix(pools, plan, sink)
    counts = sink.stage("mix")
    assert counts.reconciles()
    assert counts.seen == counts.kept + counts.rejected["not_sampled"]
    assert len(mixed) == counts.kept + report.repeated


def test_side_file_gets_every_not_sampled(tmp_path, pools):
    path = tmp_path / "rejects.jsonl"
    with RejectSink(path) as sink:
        mix(pools, MixPlan((SourceMix("a", count=990), SourceMix("b", count=600),
                            SourceMix("c", count=295))), sink)  # fmt: skip
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 15 and {x["reason"] for x in lines} == {"not_sampled"}


def test_block_groups_by_source_name(pools):
    stream = [c for p in pools.values() for c in p]
    sink = RejectSink()
    block = Mix(
        MixPlan((SourceMix("a", count=5), SourceMix("b", count=6), SourceMix("c", count=7)))
    )
    mixed = list(block.run(iter(stream), sink))
    assert Counter(_sources(mixed)) == {"a": 5, "b": 6, "c": 7}
    assert block.report is not None and sink.stage("mix").reconciles()


# -- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plan", "field"),
    [
        (MixPlan((SourceMix("a", weight=-1),)), "sources[0].weight"),
        (MixPlan((SourceMix("a", weight=1, count=2),)), "sources[0]"),
        (MixPlan((SourceMix("a", count=-3),)), "sources[0].count"),
        (MixPlan((SourceMix("a", count=1.5),)), "sources[0].count"),  # type: ignore[arg-type]
        (MixPlan((SourceMix(""),)), "sources[0].name"),
        (MixPlan((SourceMix("a"), SourceMix("a"))), "sources[1].name"),
        (MixPlan((SourceMix("a"),), multi_turn_share=1.5), "multi_turn_share"),
        (MixPlan((SourceMix("a", replay=True),), replay_ratio=-0.1), "replay_ratio"),
        (MixPlan((SourceMix("a"),), replay_ratio=0.2), "replay_ratio"),
        (MixPlan((SourceMix("a", replay=True, count=5),), replay_ratio=0.2), "sources[0].count"),
        (
            MixPlan((SourceMix("a", replay=True, weight=1), SourceMix("b", replay=True)),
                    replay_ratio=0.2),
            "sources[1].weight",
        ),
        (MixPlan((SourceMix("a", count=10),), total=5), "total"),
        (MixPlan((SourceMix("a", count=10), SourceMix("t", replay=True)), total=11,
                 replay_ratio=0.5), "total"),
        (MixPlan((SourceMix("a"), SourceMix("t", replay=True)), replay_ratio=1.0), "replay_ratio"),
        (MixPlan((SourceMix("a"),), total=-1), "total"),
        (MixPlan(()), "sources"),
    ],
)  # fmt: skip
def test_validate_names_the_field(plan, field):
    with pytest.raises(MixPlanError) as err:
        plan.validate()
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


def test_pools_must_match_the_plan(pools):
    with pytest.raises(MixPlanError, match=r"^sources\[0\]\.name: no data for source 'x'"):
        mix(pools, MixPlan((SourceMix("x"),)))
    with pytest.raises(MixPlanError, match="has no entry in the mix plan"):
        mix(pools, MixPlan((SourceMix("a"), SourceMix("b"))))
    with pytest.raises(MixPlanError, match=r"^total: required"):
        mix(pools, MixPlan((SourceMix("a", weight=1, allow_repeat=True), SourceMix("b"),
                            SourceMix("c"))))  # fmt: skip


def test_turn_codes():
    convs = [chat("s", 0), chat("s", 1, 3), Conversation.text("doc")]
    assert turn_codes(convs).tolist() == [1, 2, 0]


# -- split ----------------------------------------------------------------------------------------
def test_stratified_split_keeps_every_source_in_val():
    data = pool("big", 1000) + pool("small", 2) + pool("tiny", 1) + pool("mid", 40)
    train, val, counts = split_train_val(data, val_ratio=0.05, seed=0)
    assert counts["big"].val == 50 and counts["mid"].val == 2
    assert counts["small"].val == 1 and counts["small"].train == 1  # min 1, keeps 1 to train
    assert counts["tiny"].val == 0 and counts["tiny"].train == 1
    assert len(train) + len(val) == len(data)
    assert set(ids(train)).isdisjoint(ids(val))
    assert {c.meta["source_name"] for c in val} == {"big", "small", "mid"}
    positions = {id(c): i for i, c in enumerate(data)}
    assert [positions[id(c)] for c in val] == sorted(positions[id(c)] for c in val)


def test_split_is_deterministic_under_a_seed():
    data = pool("a", 300) + pool("b", 100)
    a = split_train_val(data, val_ratio=0.1, seed=5)
    b = split_train_val(data, val_ratio=0.1, seed=5)
    c = split_train_val(data, val_ratio=0.1, seed=6)
    assert ids(a.val) == ids(b.val) and ids(a.train) == ids(b.train)
    assert ids(a.val) != ids(c.val)


def test_split_by_val_count_is_proportional_with_a_floor():
    data = pool("a", 900) + pool("b", 90) + pool("c", 10)
    _, val, counts = split_train_val(data, val_count=50)
    assert len(val) == 50
    assert (counts["a"].val, counts["b"].val, counts["c"].val) == (45, 4, 1)
    _, val, counts = split_train_val(data, val_count=2)  # floor wins: one per source
    assert [counts[s].val for s in "abc"] == [1, 1, 1]


def test_split_keeps_repeats_on_one_side(pools):
    plan = MixPlan((SourceMix("c", count=900, allow_repeat=True), SourceMix("a", count=0),
                    SourceMix("b", count=0)))  # fmt: skip
    mixed, report = mix(pools, plan)
    train, val, counts = split_train_val(mixed, val_ratio=0.1, groups=report.output_sources())
    assert set(ids(train)).isdisjoint(ids(val))
    assert counts["c"].val == 90  # 30 distinct samples, 3 copies each


def test_split_errors():
    with pytest.raises(MixPlanError, match=r"^val_ratio: give exactly one"):
        split_train_val([], val_ratio=0.1, val_count=3)
    with pytest.raises(MixPlanError, match=r"^val_ratio: must be in"):
        split_train_val([], val_ratio=1.0)
    with pytest.raises(MixPlanError, match=r"^groups:"):
        split_train_val(pool("a", 3), val_ratio=0.5, groups=["a"])
