"""``sftforge eval mcq``: CSV readers, k-shot prompts through the template, letter scoring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sftforge.cli import main
from sftforge.errors import SftForgeError
from sftforge.eval.mcq import (
    INSTRUCTIONS,
    build_conversation,
    evaluate_mcq,
    format_question,
    letter_ids,
    score_options,
    select_shots,
)
from sftforge.eval.mcq_data import detect_format, load_benchmark, read_mcq_csv
from sftforge.infer.generate import prompt_ids
from sftforge.templates import get_template

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "eval"


# -- readers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rel", "fmt", "answers", "lines"),
    [
        ("mmlu/dev/college_biology_dev.csv", "mmlu", "BDCBB", [1, 2, 3, 4, 5]),
        ("mmlu/dev/high_school_geography_dev.csv", "mmlu", "ABDBC", [1, 2, 3, 4, 5]),
        # explanations span lines: records start on lines 2, 4, 5, 6, 7
        ("ceval/dev/computer_network_dev.csv", "ceval", "AACDC", [2, 4, 5, 6, 7]),
        ("ceval/dev/high_school_physics_dev.csv", "ceval", "BDBDB", None),
        ("cmmlu/dev/agronomy.csv", "cmmlu", "CDBBC", [2, 3, 4, 5, 6]),
        ("cmmlu/dev/nutrition.csv", "cmmlu", "BCBDD", [2, 3, 4, 5, 6]),
    ],
)
def test_readers_parse_each_format(rel, fmt, answers, lines):
    got_fmt, items = read_mcq_csv(ASSETS / rel)
    assert got_fmt == fmt
    assert "".join(i.answer for i in items) == answers
    assert all(len(i.options) == 4 and all(i.options) and i.question for i in items)
    assert items[0].subject == Path(rel).stem.removesuffix("_dev")
    if lines:
        assert [i.line for i in items] == lines


def test_reader_keeps_fields_exact():
    _, items = read_mcq_csv(ASSETS / "cmmlu/dev/nutrition.csv")
    assert items[1].question == "鱼类食物中含有较为丰富的无机盐是"
    assert items[1].options == ("铁，碘", "钙，铁", "钙，碘", "钙，镁")
    _, items = read_mcq_csv(ASSETS / "mmlu/dev/college_biology_dev.csv")
    assert items[0].options[3] == "They lack paired, jointed appendages."


def test_detect_format():
    assert detect_format(["id", "question", "A", "B", "C", "D", "answer", "explanation"]) == "ceval"
    assert detect_format(["", "Question", "A", "B", "C", "D", "Answer"]) == "cmmlu"
    assert detect_format(["What is 2+2?", "3", "4", "5", "6", "B"]) == "mmlu"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('q1,a,b,c,d,A\n"multi\nline q",a,b,c,d,B\nq3,a,b,c,d,E\n', 4, "answer must be"),
        ("q1,a,b,c,d,A\nq2,a,b,c,A\n", 2, "expected 6 columns"),
        ("id,question,A,B,C,D,answer\n0,q,a,b,c,d,A\n1,q,a,b\n", 3, "at least 7 columns"),
        (",Question,A,B,C,D,Answer\n0,q,a,b,c,d,A\n\n1,,a,b,c,d,B\n", 4, "empty question"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad_dev.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SftForgeError, match=message) as exc:
        read_mcq_csv(path)
    assert f"{path}:{line}:" in str(exc.value)


@pytest.fixture()
def bench_root(tmp_path):
    """mmlu and ceval with dev + val (val = the dev rows, renamed), cmmlu with dev only."""
    root = tmp_path / "eval"
    shutil.copytree(ASSETS, root, ignore=shutil.ignore_patterns("*.md"))
    for bench in ("mmlu", "ceval"):
        (root / bench / "val").mkdir()
        for f in (root / bench / "dev").glob("*.csv"):
            shutil.copy(f, root / bench / "val" / f.name.replace("_dev", "_val"))
    return root


def test_missing_split_falls_back_to_dev(bench_root):
    cmmlu = load_benchmark(bench_root / "cmmlu", "val")
    assert [s.subject for s in cmmlu] == ["agronomy", "nutrition"]
    assert all(s.fallback and s.split == "dev" and s.items is s.dev for s in cmmlu)
    mmlu = load_benchmark(bench_root / "mmlu", "val")
    assert not any(s.fallback for s in mmlu) and mmlu[0].split == "val"
    assert mmlu[0].language == "en" and cmmlu[0].language == "zh"


# -- prompting -------------------------------------------------------------------------------
def test_question_is_never_its_own_shot(bench_root):
    [subj, _] = load_benchmark(bench_root / "cmmlu", "val")
    for item in subj.items:
        shots = select_shots(item, subj.dev, 5)
        assert item not in shots and len(shots) == 4  # the 4 other dev rows
        assert not any(s.same_question(item) for s in shots)
    # val rows that repeat a dev question (here: all of them) are never shown as a shot
    [val_subj, _] = load_benchmark(bench_root / "mmlu", "val")
    for item in val_subj.items:
        assert not any(s.same_question(item) for s in select_shots(item, val_subj.dev, 5))


def test_k_shot_conversation_renders_shots_as_earlier_turns(smollm2_tokenizer):
    _, dev = read_mcq_csv(ASSETS / "ceval/dev/computer_network_dev.csv")
    item, shots = dev[4], dev[:2]
    conv = build_conversation(item, shots, "zh")
    assert [m["role"] for m in conv] == ["user", "assistant", "user", "assistant", "user"]
    assert [conv[1]["content"], conv[3]["content"]] == ["A", "A"]
    assert conv[0]["content"] == format_question(shots[0], "zh")
    assert (
        conv[-1]["content"].endswith(INSTRUCTIONS["zh"]) and "\nC. 80Mbps\n" in conv[-1]["content"]
    )
    tpl = get_template("chatml")
    text = tpl.render(conv, add_generation_prompt=True, tokenizer=smollm2_tokenizer)
    expected = (
        "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conv)
        + "<|im_start|>assistant\n"
    )
    assert text.endswith(expected)
    assert text.index(shots[0].question) < text.index(shots[1].question) < text.index(item.question)


def test_scored_prompt_ids_are_the_inference_prompt(bench_root, tiny_model_dir, monkeypatch):
    import sftforge.eval.mcq as mcq
    from sftforge.infer.load import load_for_inference

    loaded = load_for_inference(str(tiny_model_dir), template="chatml")
    seen: list[list[int]] = []
    real = mcq.score_options

    def spy(model, prompts, continuations, **kw):
        seen.extend(list(p) for p in prompts)
        assert continuations == [loaded.tokenizer(c, add_special_tokens=False).input_ids
                                 for c in "ABCD"]  # fmt: skip
        return real(model, prompts, continuations, **kw)

    monkeypatch.setattr(mcq, "score_options", spy)
    result = evaluate_mcq(loaded, bench_root / "cmmlu", shots=2, progress=False)
    subjects = load_benchmark(bench_root / "cmmlu", "val")
    expected = [
        prompt_ids(loaded.template, loaded.tokenizer,
                   build_conversation(i, select_shots(i, s.dev, 2), "zh"))
        for s in subjects for i in s.items
    ]  # fmt: skip
    assert seen == expected
    assert [q["prompt_tokens"] for q in result["questions"]] == [len(p) for p in expected]
    assert all(q["shots"] == 2 for q in result["questions"])
    assert any("cmmlu: no val split" in n for n in result["notes"])


# -- scoring ---------------------------------------------------------------------------------
def test_letters_are_single_tokens_and_match_training_tokenization(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ids = letter_ids(tok)
    assert all(len(v) == 1 for v in ids.values()) and len({v[0] for v in ids.values()}) == 4
    # prompt ids + letter ids is how the answer tokenizes inside the rendered conversation
    tpl = get_template("chatml")
    _, items = read_mcq_csv(ASSETS / "mmlu/dev/college_biology_dev.csv")
    conv = build_conversation(items[1], items[:1], "en")
    for letter in "ABCD":
        full = tpl.render([*conv, {"role": "assistant", "content": letter}], tokenizer=tok)
        full_ids = tok(full, add_special_tokens=False).input_ids
        prompt = prompt_ids(tpl, tok, conv)
        assert full_ids[: len(prompt) + 1] == prompt + ids[letter]


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model_dir):
    from sftforge.infer.load import load_for_inference

    return load_for_inference(str(tiny_model_dir), template="chatml")


def _manual_logprob(model, prompt, cont):
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + cont])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[len(prompt) - 1 + t, tok] for t, tok in enumerate(cont)))


def test_batched_scores_equal_one_by_one(tiny_loaded):
    tok, model = tiny_loaded.tokenizer, tiny_loaded.model
    _, items = read_mcq_csv(ASSETS / "mmlu/dev/high_school_geography_dev.csv")
    prompts = [prompt_ids(tiny_loaded.template, tok, build_conversation(i, [], "en"))
               for i in items]  # fmt: skip
    assert len({len(p) for p in prompts}) > 1  # padding is exercised
    single = [[i] for i in (49, 50, 51, 52)]
    multi = [[49, 30], [50], [51, 52, 53], [52, 30]]  # multi-token "letters": summed
    for conts in (single, multi):
        batched = score_options(model, prompts, conts, batch_size=3)
        for p, row in zip(prompts, batched, strict=True):
            manual = [_manual_logprob(model, p, c) for c in conts]
            assert row == pytest.approx(manual, abs=1e-4)


def test_rigged_model_always_picks_b(bench_root, tiny_loaded):
    import torch

    model, tok = tiny_loaded.model, tiny_loaded.tokenizer
    b_id = letter_ids(tok)["B"][0]
    bias = torch.zeros(model.config.vocab_size)
    bias[b_id] = 100.0  # a huge logit for "B", whatever the hidden state
    handle = model.lm_head.register_forward_hook(lambda mod, args, out: out + bias)
    try:
        result = evaluate_mcq(tiny_loaded, [bench_root / "mmlu", bench_root / "cmmlu"],
                              shots=2, progress=False)  # fmt: skip
    finally:
        handle.remove()
    qs = result["questions"]
    assert len(qs) == 20 and all(q["prediction"] == "B" for q in qs)
    for bench, data in result["benchmarks"].items():
        for subject, s in data["subjects"].items():
            rows = [q for q in qs if (q["benchmark"], q["subject"]) == (bench, subject)]
            assert s["accuracy"] == sum(q["answer"] == "B" for q in rows) / len(rows)
        accs = [s["accuracy"] for s in data["subjects"].values()]
        assert data["macro_accuracy"] == pytest.approx(sum(accs) / len(accs))
        assert data["micro_accuracy"] == data["correct"] / data["n"]
    # mmlu: BDCBB + ABDBC -> 5 B of 10; cmmlu: CDBBC + BCBDD -> 4 B of 10
    assert result["overall"]["micro_accuracy"] == pytest.approx(9 / 20)
    assert result["benchmarks"]["mmlu"]["subjects"]["college_biology"]["accuracy"] == 0.6
    assert result["benchmarks"]["mmlu"]["predicted_letters"] == {"A": 0, "B": 10, "C": 0, "D": 0}
    assert result["benchmarks"]["mmlu"]["answer_letters"] == {"A": 1, "B": 5, "C": 2, "D": 2}


def test_limit_and_template_override(bench_root, tiny_loaded):
    result = evaluate_mcq(tiny_loaded, bench_root / "mmlu", limit=2, template="alpaca",
                          progress=False)  # fmt: skip
    assert result["template"] == "alpaca" and result["template_origin"] == "override"
    assert result["overall"]["n"] == 4


# -- CLI -------------------------------------------------------------------------------------
def test_cli_eval_mcq(bench_root, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["eval", "mcq", str(tiny_model_dir), "--data", str(bench_root / "mmlu"),
            "--data", str(bench_root / "cmmlu"), "--template", "chatml", "--shots", "1",
            "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "college_biology" in printed and "(macro" in printed and "note: cmmlu" in printed
    assert "mmlu: predicted A:" in printed
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert result["overall"]["n"] == 20 and len(result["questions"]) == 20
    assert result["benchmarks"]["cmmlu"]["subjects"]["agronomy"]["fallback_to_dev"] is True
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<table>" in page and "data:image/png;base64," in page and "nutrition" in page


def test_cli_eval_mcq_reports_bad_csv(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "b" / "val").mkdir(parents=True)
    bad = tmp_path / "b" / "val" / "x_val.csv"
    bad.write_text("q,a,b,c,d,A\nq,a,b,c,d,Z\n")
    argv = ["eval", "mcq", str(tiny_model_dir), "--data", str(tmp_path / "b"),
            "--template", "chatml", "--output", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    assert f"{bad}:2:" in capsys.readouterr().err
