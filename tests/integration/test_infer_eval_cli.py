"""chat, generate and the eval commands through the CLI, on a tiny model trained here."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml

from sftforge.cli import main
from sftforge.infer.load import TrainServeMismatchWarning, load_for_inference
from sftforge.train.config import load_train_config
from sftforge.train.run import run_training

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TRAIN = ASSETS / "conversations_en.jsonl"


@pytest.fixture(scope="module")
def tuned(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tuned")
    config = {
        "output_dir": str(tmp / "run"),
        "model": {"path": str(tiny_model_dir), "template": "chatml"},
        "data": {"path": str(TRAIN), "max_length": 512, "max_samples": 8},
        "train": {"method": "lora", "max_steps": 2, "batch_size": 2, "effective_batch": 2,
                  "gradient_checkpointing": False, "precision": "fp32"},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    }  # fmt: skip
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return run_training(load_train_config(path)).output_dir


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    rows = [{"prompt": "Name three colors of the rainbow."},
            {"messages": [{"role": "user", "content": "What is the capital of France?"},
                          {"role": "assistant", "content": "Paris."}]}]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_generate_writes_answers_with_stop_reasons(tuned, prompts, tmp_path):
    out = tmp_path / "out.jsonl"
    assert main(["generate", str(tuned), "--input", str(prompts), "--output", str(out),
                 "--max-new-tokens", "5", "--temperature", "0.7", "--top-p", "0.9",
                 "--top-k", "20", "--repetition-penalty", "1.1", "--seed", "1"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2
    assert all(r["finish_reason"] in ("stop", "length") and r["new_tokens"] <= 5 for r in rows)
    assert rows[1]["reference"] == "Paris."  # the final assistant turn is not part of the prompt
    assert rows[0]["template"] == "chatml"


def test_chat_session_commands(tuned, monkeypatch, capsys):
    lines = iter(["Hello there", "/system Be brief.", "Hi", "/reset", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", str(tuned), "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "template chatml (from template.json)" in out
    assert out.count("assistant> ") == 2
    assert "system prompt set" in out and "history cleared" in out


def test_a_different_template_warns_loudly(tuned):
    with pytest.warns(TrainServeMismatchWarning, match="differs from the template"):
        load_for_inference(str(tuned), template="vicuna")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainServeMismatchWarning)
        load_for_inference(str(tuned))  # the training template: silent


def test_eval_commands_write_results_and_pages(tuned, prompts, tmp_path, capsys):
    runs = {
        "ppl": ["eval", "ppl", str(tuned), "--data", str(TRAIN), "--limit", "4"],
        "health": ["eval", "health", str(tuned), "--prompts", str(prompts),
                   "--max-new-tokens", "4"],
        "consistency": ["eval", "consistency", str(tuned), "--data", str(TRAIN), "--limit", "5"],
        "ablation": ["eval", "ablation", str(tuned), "--data", str(TRAIN), "--prompts",
                     str(prompts), "--limit", "3", "--max-new-tokens", "3"],
        "forgetting": ["eval", "forgetting", "--base", str(tuned), "--tuned", str(tuned),
                       "--replay", str(ASSETS / "data/pretrain/c4_demo.jsonl"), "--limit", "3"],
    }  # fmt: skip
    for name, argv in runs.items():
        out = tmp_path / name
        assert main([*argv, "--output", str(out)]) == 0, name
        assert json.loads((out / "results.json").read_text())["kind"] == name
        assert (out / "report.html").read_text().startswith("<!doctype html>")
    printed = capsys.readouterr().out
    assert "verdict: pass" in printed and "verdict: no regression" in printed
    assert main(["eval", "compare", str(tmp_path / "ppl"), str(tmp_path / "ppl"),
                 "--output", str(tmp_path / "cmp")]) == 0  # fmt: skip
    rows = json.loads((tmp_path / "cmp" / "results.json").read_text())["rows"]
    assert any(r["metric"] == "overall.ppl" and r["B - A"] == 0 for r in rows)


@pytest.fixture()
def built(tmp_path):
    """A dataset folder as `data build` leaves it, with a replay text row in validation."""
    from sftforge.data.manifest import describe_outputs

    ds = tmp_path / "ds"
    ds.mkdir()
    rows = [json.loads(line) for line in TRAIN.read_text().splitlines()[:6]]
    long_answer = {"messages": [{"role": "user", "content": "Say a lot."},
                                {"role": "assistant", "content": "word " * 400}]}  # fmt: skip
    text_row = {"text": "Plain replay text about rivers and mountains."}
    (ds / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    val = [*rows[:3], long_answer, text_row]
    (ds / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in val))
    (ds / "manifest.json").write_text(json.dumps({"outputs": describe_outputs(ds)}))
    return ds


def test_eval_ppl_prints_the_samples_it_could_not_score(tuned, built, tmp_path, capsys):
    out = tmp_path / "ppl"
    assert main(["eval", "ppl", str(tuned), "--data", str(built), "--max-length", "128",
                 "--output", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "1 of 5 samples not scored: too_long 1" in printed
    result = json.loads((out / "results.json").read_text())
    assert result["dropped"] == {"too_long": 1} and result["verification"]["verified"]
    assert "samples not scored" in (out / "report.html").read_text()


def test_eval_consistency_skips_plain_text_rows_with_a_count(tuned, built, tmp_path, capsys):
    out = tmp_path / "cons"
    assert main(["eval", "consistency", str(tuned), "--data", str(built),
                 "--output", str(out)]) == 0  # fmt: skip
    assert "1 plain-text rows" in capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    assert result["skipped_plain_text"] == 1 and result["turns_checked"] >= 4


def test_evals_refuse_a_dataset_that_does_not_match_its_manifest(tuned, built, tmp_path, capsys):
    lines = (built / "validation.jsonl").read_text().splitlines(keepends=True)
    (built / "validation.jsonl").write_text("".join(lines[:2]))  # a killed build's leftovers
    for argv in (["eval", "ppl", str(tuned), "--data", str(built)],
                 ["eval", "consistency", str(tuned), "--data", str(built)]):  # fmt: skip
        assert main([*argv, "--output", str(tmp_path / "x")]) == 2
        assert "does not match its manifest.json" in capsys.readouterr().err
    out = tmp_path / "forced"
    assert main(["eval", "ppl", str(tuned), "--data", str(built), "--no-verify",
                 "--output", str(out)]) == 0  # fmt: skip
    assert json.loads((out / "results.json").read_text())["verification"]["skipped"]


def test_eval_output_onto_a_file_is_a_clear_error(tuned, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    assert main(["eval", "ppl", str(tuned), "--data", str(TRAIN), "--limit", "2",
                 "--output", str(taken)]) == 2  # fmt: skip
    assert "is a file" in capsys.readouterr().err and taken.read_text() == "keep me"
