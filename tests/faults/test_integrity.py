"""Integrity is enforced at load time, not advised: an edited template.json, a swapped
tokenizer or other base weights stop chat, generate, the evals and merge with an error
saying what differs; --allow-mismatch loads anyway and the outputs record it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from sftforge.cli import main
from sftforge.infer.load import TrainServeMismatchError, load_for_inference
from sftforge.models.adapters import BaseModelMismatchError
from sftforge.train.config import load_train_config
from sftforge.train.run import run_training

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TRAIN = ASSETS / "conversations_en.jsonl"


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """A LoRA run whose base sits beside it (so the test can swap the base's weights)."""
    tmp = tmp_path_factory.mktemp("integrity")
    shutil.copytree(tiny_model_dir, tmp / "base")
    config = {
        "output_dir": "run",
        "model": {"path": "base", "template": "chatml"},
        "data": {"path": str(TRAIN), "max_length": 512, "max_samples": 4},
        "train": {"method": "lora", "max_steps": 1, "batch_size": 2, "effective_batch": 2,
                  "gradient_checkpointing": False, "precision": "fp32"},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    }  # fmt: skip
    (tmp / "c.yaml").write_text(yaml.safe_dump(config))
    return run_training(load_train_config(tmp / "c.yaml")).output_dir


@pytest.fixture()
def run_copy(trained, tmp_path):
    """A private copy of the run and its base (tests edit files in it); run.json names the
    base relative to the run folder, so this copy's base is the one found."""
    shutil.copytree(trained.parent / "base", tmp_path / "base")
    shutil.copytree(trained, tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    info["base_model"] = info["base_model_dir"] = "../base"
    (tmp_path / "run" / "run.json").write_text(json.dumps(info))
    return tmp_path / "run"


@pytest.fixture()
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"prompt": "Hello?"}) + "\n")
    return path


def _french(run: Path) -> None:
    data = json.loads((run / "template.json").read_text())
    data["default_system"] = "Always answer in French."
    (run / "template.json").write_text(json.dumps(data))


def test_an_edited_template_is_refused_everywhere(run_copy, prompts, tmp_path, capsys):
    _french(run_copy)
    with pytest.raises(TrainServeMismatchError, match="edited after training"):
        load_for_inference(run_copy, device="cpu")
    commands = {
        "generate": ["generate", str(run_copy), "--input", str(prompts),
                     "--output", str(tmp_path / "g.jsonl")],
        "chat": ["chat", str(run_copy)],
        "eval ppl": ["eval", "ppl", str(run_copy), "--data", str(TRAIN), "--limit", "2",
                     "--output", str(tmp_path / "ppl")],
        "eval consistency": ["eval", "consistency", str(run_copy), "--output",
                             str(tmp_path / "c")],
        "merge": ["merge", str(run_copy), "--output", str(tmp_path / "merged")],
    }  # fmt: skip
    for name, argv in commands.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert "template.json differs" in err and "--allow-mismatch" in err, name
    assert not (tmp_path / "g.jsonl").exists() and not (tmp_path / "merged").exists()


def test_allow_mismatch_loads_and_the_outputs_record_it(run_copy, prompts, tmp_path):
    _french(run_copy)
    out = tmp_path / "g.jsonl"
    with pytest.warns(UserWarning, match="template.json differs"):
        code = main(["generate", str(run_copy), "--input", str(prompts), "--output", str(out),
                     "--max-new-tokens", "2", "--allow-mismatch"])  # fmt: skip
    assert code == 0
    row = json.loads(out.read_text().splitlines()[0])
    assert any("template.json differs" in m for m in row["allowed_mismatches"])
    with pytest.warns(UserWarning):
        assert main(["eval", "ppl", str(run_copy), "--data", str(TRAIN), "--limit", "2",
                     "--output", str(tmp_path / "ppl"), "--allow-mismatch"]) == 0  # fmt: skip
    result = json.loads((tmp_path / "ppl" / "results.json").read_text())
    [integrity] = result["integrity"].values()
    assert integrity["allowed_mismatches"]


def test_a_swapped_tokenizer_is_refused(run_copy):
    config = json.loads((run_copy / "tokenizer_config.json").read_text())
    config["eos_token"] = "<|endoftext|>"  # a different end of sequence than trained with
    (run_copy / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(TrainServeMismatchError, match="tokenizer differs"):
        load_for_inference(run_copy, device="cpu")


def test_other_base_weights_are_refused(run_copy, tmp_path):
    import torch
    from transformers import LlamaForCausalLM

    other = LlamaForCausalLM.from_pretrained(tmp_path / "base")
    torch.manual_seed(1)
    for p in other.parameters():
        p.data.normal_()
    other.save_pretrained(tmp_path / "base")
    with pytest.raises(BaseModelMismatchError, match="differ"):
        load_for_inference(run_copy, device="cpu")
    with pytest.warns(UserWarning, match="differ"):
        loaded = load_for_inference(run_copy, device="cpu", allow_mismatch=True)
    assert loaded.allowed_mismatches


def test_recorded_relative_paths_resolve_against_the_model_folder(run_copy, tmp_path, monkeypatch):
    """A run.json path relative to the folder never picks up what sits in the current
    directory under the same name."""
    elsewhere = tmp_path / "cwd" / "sub"
    elsewhere.mkdir(parents=True)
    (tmp_path / "cwd" / "base").mkdir()  # a decoy "../base" seen from the current directory
    monkeypatch.chdir(elsewhere)
    loaded = load_for_inference(run_copy, device="cpu")
    assert loaded.template.name == "chatml"


@pytest.mark.parametrize("target", ["run", "base"])
def test_merge_never_replaces_its_adapter_or_base(run_copy, tmp_path, capsys, target):
    before = sorted(p.name for p in (tmp_path / target).iterdir())
    assert main(["merge", str(run_copy), "--output", str(tmp_path / target)]) == 2
    assert "would destroy the input" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / target).iterdir()) == before
