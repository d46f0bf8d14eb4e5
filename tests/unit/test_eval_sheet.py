"""``sftforge eval sheet``: seeded blinding, the key, importing ratings."""

from __future__ import annotations

import csv
import json

import pytest

from sftforge.cli import main
from sftforge.errors import SftForgeError
from sftforge.eval.sheet import (
    CSV_COLUMNS,
    KEY_FORMAT,
    Answer,
    blind_order,
    sample_prompts,
    summarize_ratings,
    write_sheet,
)


def test_blinding_is_seeded_and_balanced():
    assert blind_order(20, seed=3) == blind_order(20, seed=3)
    orders = {tuple(blind_order(20, seed=s)) for s in range(10)}
    assert len(orders) > 5  # the seed changes the order
    for n in (1, 2, 7, 20):
        for s in range(20):
            firsts = sum(blind_order(n, seed=s))
            assert firsts in (n // 2, n - n // 2)  # each model first for half the prompts
    # the odd one out is decided by the seed, not always the same model
    assert {blind_order(7, seed=s).count(True) for s in range(20)} == {3, 4}


def test_sample_prompts_is_seeded():
    rows = [{"messages": [{"role": "user", "content": str(i)}]} for i in range(50)]
    a = sample_prompts(rows, 5, seed=1)
    assert a == sample_prompts(rows, 5, seed=1) and a != sample_prompts(rows, 5, seed=2)
    assert [rows.index(r) for r in a] == sorted(rows.index(r) for r in a)
    with pytest.raises(SftForgeError, match="only 50"):
        sample_prompts(rows, 51, seed=0)


def _fake_sheet(tmp_path, n=6, seed=0):
    prompts = [{"messages": [{"role": "user", "content": f"question {i}"}], "line": i + 1}
               for i in range(n)]  # fmt: skip
    answers = [[Answer(f"m1 says {i}", "stop", 3) for i in range(n)],
               [Answer(f"m2 says {i}", "stop", 3) for i in range(n)]]  # fmt: skip
    models = [{"source": "/runs/SECRET_BASE", "template": "chatml"},
              {"source": "/runs/SECRET_TUNED", "template": "chatml"}]  # fmt: skip
    return write_sheet(prompts, answers, models, tmp_path / "sheet", seed=seed)


def test_key_unblinds_the_sheet(tmp_path):
    paths = _fake_sheet(tmp_path)
    key = json.loads(paths["key"].read_text())
    page = paths["sheet"].read_text()
    assert "SECRET" not in page and "SECRET" not in paths["ratings"].read_text()
    for i, pid in enumerate(sorted(key["slots"])):
        section = page[page.index(f'id="{pid}"') :]
        first = section.index("Answer 1")
        second = section.index("Answer 2")
        m1, m2 = section.index(f"m1 says {i}<"), section.index(f"m2 says {i}<")
        slot_of_m1 = "Answer 1" if first < m1 < second else "Answer 2"
        assert key["slots"][pid][slot_of_m1] == "model_1"
        assert key["slots"][pid]["Answer 2" if slot_of_m1 == "Answer 1" else "Answer 1"] == (
            "model_2"
        )
        assert (m1 > second) == (slot_of_m1 == "Answer 2") and (m2 > second) != (m1 > second)
    rows = list(csv.reader(paths["ratings"].open()))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 1 + 2 * 6
    assert all(r[2:] == [""] * 5 for r in rows[1:])
    assert {r[1] for r in rows[1:]} == {"Answer 1", "Answer 2"}


KEY = {
    "format": KEY_FORMAT,
    "models": {"model_1": {"source": "base"}, "model_2": {"source": "tuned"}},
    "slots": {
        "p01": {"Answer 1": "model_1", "Answer 2": "model_2"},
        "p02": {"Answer 1": "model_2", "Answer 2": "model_1"},
        "p03": {"Answer 1": "model_1", "Answer 2": "model_2"},
        "p04": {"Answer 1": "model_2", "Answer 2": "model_1"},
    },
}

HAND_FILLED = """prompt_id,answer_slot,instruction_following,correctness,fluency,preferred,comment
p01,Answer 1,5,4,5,1,good
p01,Answer 2,3,3,4,,
p02,Answer 1,2,,3,,"too short, wrong"
p02,Answer 2,4,5,5,2,
p03,Answer 1,3,3,3,tie,
p03,Answer 2,3,3.0,3,tie,
p04,Answer 1,,,,,
"""


def _write(tmp_path, text, key=KEY):
    (tmp_path / "key.json").write_text(json.dumps(key))
    (tmp_path / "ratings.csv").write_text(text)
    return tmp_path / "ratings.csv", tmp_path / "key.json"


def test_import_aggregates_a_hand_filled_sheet(tmp_path):
    summary = summarize_ratings(*_write(tmp_path, HAND_FILLED))
    m1, m2 = summary["models"]["model_1"], summary["models"]["model_2"]
    # model_1 wrote p01/1, p02/2, p03/1; model_2 wrote p01/2, p02/1, p03/2 (p04 unrated)
    assert m1["criteria"]["instruction_following"] == {"mean": 4.0, "n": 3}
    assert m1["criteria"]["correctness"] == {"mean": 4.0, "n": 3}
    assert m1["criteria"]["fluency"]["mean"] == pytest.approx(13 / 3)
    assert m2["criteria"]["instruction_following"]["mean"] == pytest.approx(8 / 3)
    assert m2["criteria"]["correctness"] == {"mean": 3.0, "n": 2}  # p02 left it empty
    assert m2["criteria"]["fluency"]["mean"] == pytest.approx(10 / 3)
    assert (m1["wins"], m1["ties"], m1["losses"]) == (2, 1, 0)
    assert (m2["wins"], m2["ties"], m2["losses"]) == (0, 1, 2)
    assert summary["preferences"] == 3 and summary["rated_rows"] == 7


def test_bad_scores_name_the_csv_line(tmp_path):
    text = (
        HAND_FILLED.replace("p01,Answer 2,3,3,4,,", "p01,Answer 2,3,6,4,,")
        .replace("p03,Answer 1,3,3,3,tie,", "p03,Answer 1,3,3,x,tie,")
        .replace('"too short, wrong"', '"too short,\nwrong"')  # a comment over two lines
    )
    ratings, key = _write(tmp_path, text)
    with pytest.raises(SftForgeError) as exc:
        summarize_ratings(ratings, key)
    msg = str(exc.value)
    assert f"{ratings}:3: correctness must be an integer from 1 to 5, got '6'" in msg
    # line numbers count physical lines, past the two-line comment
    assert f"{ratings}:7: fluency must be an integer from 1 to 5, got 'x'" in msg
    assert "2 problem(s)" in msg


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("p09,Answer 1,3,3,3,,", "unknown prompt_id 'p09'"),
        ("p04,Answer 3,3,3,3,,", "answer_slot must be"),
        ("p01,Answer 1,3,3,3,,", "already rated on line 2"),
        ("p04,Answer 2,3,3,3,maybe,", "preferred must be 1, 2 or tie"),
        ("p03,Answer 2,3,3,3,1,", "preferred differs"),
    ],
)
def test_other_rating_errors_name_the_line(tmp_path, row, message):
    text = HAND_FILLED.replace("p03,Answer 2,3,3.0,3,tie,\n", "") + row + "\n"
    ratings, key = _write(tmp_path, text)
    with pytest.raises(SftForgeError, match=message) as exc:
        summarize_ratings(ratings, key)
    assert f"{ratings}:8:" in str(exc.value)


def test_cli_sheet_round_trip(tmp_path, tiny_model_dir, capsys):
    prompts = tmp_path / "prompts.jsonl"
    lines = [{"prompt": f"Say {i}."} for i in range(4)] + [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    ]
    prompts.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "sheet"
    model = str(tiny_model_dir)
    argv = ["eval", "sheet", "--models", model, model, "--prompts", str(prompts), "-n", "3",
            "--seed", "1", "--output", str(out), "--template", "chatml",
            "--max-new-tokens", "4"]  # fmt: skip
    assert main(argv) == 0
    assert "key.json" in capsys.readouterr().out
    key = json.loads((out / "key.json").read_text())
    assert len(key["slots"]) == 3 and key["models"]["model_1"]["template"] == "chatml"
    assert "<style>" in (out / "sheet.html").read_text()
    # fill every row: model_1 scores 5, model_2 scores 2 and model_1 is always preferred
    rows = list(csv.DictReader((out / "ratings.csv").open()))
    for r in rows:
        mk = key["slots"][r["prompt_id"]][r["answer_slot"]]
        score = "5" if mk == "model_1" else "2"
        r.update(instruction_following=score, correctness=score, fluency=score,
                 preferred=r["answer_slot"][-1] if mk == "model_1" else "")  # fmt: skip
    with (out / "ratings.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    argv = ["eval", "sheet", "--import", str(out / "ratings.csv"), "--key", str(out / "key.json")]
    assert main(argv) == 0
    assert "wins" in capsys.readouterr().out
    summary = json.loads((out / "ratings_summary.json").read_text())
    m1, m2 = summary["models"]["model_1"], summary["models"]["model_2"]
    assert m1["criteria"]["fluency"]["mean"] == 5.0 and m2["criteria"]["fluency"]["mean"] == 2.0
    assert (m1["wins"], m2["losses"]) == (3, 3)


def test_cli_sheet_needs_its_arguments(tmp_path, capsys):
    assert main(["eval", "sheet", "--models", "a", "b"]) == 2
    assert "--prompts" in capsys.readouterr().err
    assert main(["eval", "sheet", "--import", str(tmp_path / "r.csv")]) == 2
    assert "--key" in capsys.readouterr().err


def test_a_new_sheet_never_overwrites_filled_ratings(tmp_path):
    paths = _fake_sheet(tmp_path)
    _fake_sheet(tmp_path)  # an unfilled sheet may be made again
    filled = paths["ratings"].read_text().replace("Answer 1,,,,,", "Answer 1,5,4,5,1,good", 1)
    paths["ratings"].write_text(filled)
    with pytest.raises(SftForgeError, match="filled in"):
        _fake_sheet(tmp_path)
    assert paths["ratings"].read_text() == filled
