"""The main job on the embedded default model, shortened to two optimizer steps: data
build, LoRA on SmolLM2-135M-Instruct, evaluation before and after, merge, answers."""

from __future__ import annotations

import json

import pytest

from sftforge.cli import main


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path, capsys, smollm2_tokenizer):
    out = tmp_path / "quickstart"
    assert main(["quickstart", "--output", str(out), "train.max_steps=2"]) == 0
    printed = capsys.readouterr().out
    for path in ("data/train.jsonl", "data/validation.jsonl", "data/report.html",
                 "model/adapter_model.safetensors", "model/template.json", "model/audit.json",
                 "model/loss.png", "merged/model.safetensors", "merged/template.json"):  # fmt: skip
        assert (out / path).is_file(), path
    info = json.loads((out / "model" / "run.json").read_text())
    assert info["method"] == "lora" and info["dataset"]["train_samples"] > 50
    assert info["metrics"]["before"]["eval_ppl"] > 1 and info["metrics"]["after"]["eval_ppl"] > 1
    assert "validation perplexity (trained tokens only): before" in printed
    assert printed.count("\n> ") == 3  # three prompts answered by the tuned model
    assert "merged model" in printed
