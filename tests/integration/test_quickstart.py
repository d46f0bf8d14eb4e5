"""The main job on the embedded default model, shortened to two optimizer steps: data
build, LoRA on SmolLM2-135M-Instruct, evaluation before and after, merge, answers; then
run again with a changed setting, as the README suggests."""

from __future__ import annotations

import json
import struct

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

    # Outputs that travel: the adapter names its base portably, run.json has its digest.
    adapter = json.loads((out / "model" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "smollm2"
    assert len(info["base_model_weights"]["sha256"]) == 64
    # The merged model is in the base's published dtype (a quantised GGUF: bfloat16), not
    # fp32 (517 MB for 135M parameters).
    merged = out / "merged" / "model.safetensors"
    assert merged.stat().st_size < 300_000_000
    header_len = struct.unpack("<Q", merged.read_bytes()[:8])[0]
    header = json.loads(merged.read_bytes()[8 : 8 + header_len])
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"BF16"}

    # A second quickstart with a changed setting trains again from the start, for real
    # (it used to "resume" the finished run for 0 steps and print loss 0.0 / nan).
    assert main(["quickstart", "--output", str(out), "train.max_steps=3"]) == 0
    printed = capsys.readouterr().out
    assert "training again from the start" in printed
    assert "resuming from" not in printed
    info = json.loads((out / "model" / "run.json").read_text())
    assert info["global_step"] == 3 and info["metrics"]["train_loss"] > 0
    assert info["metrics"]["before"]["eval_ppl"] > 1
