"""A real training run end to end on a tiny model: the model directory contract, LoRA
touching only adapter weights, merge, a second stage from the merged model, full
fine-tuning, the audit's refusal, and QLoRA's clear error without a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from sftforge import get_template
from sftforge.data.writer import sha256_file
from sftforge.models.adapters import MethodUnavailableError, load_with_adapter
from sftforge.tokenizer import load_tokenizer, tokenizer_fingerprint
from sftforge.train import artifacts
from sftforge.train.audit import SupervisionDefect
from sftforge.train.commands import merge_run
from sftforge.train.config import RunContext, config_from_dict, load_train_config
from sftforge.train.run import build_model, make_trainer, run_training

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TRAIN = ASSETS / "conversations_en.jsonl"
VAL = ASSETS / "train" / "validation_zh.jsonl"  # short zh conversations (lines 9-16)


def tiny_config(model_dir, out, **train):
    return {
        "name": "tiny",
        "output_dir": str(out),
        "model": {"path": str(model_dir), "template": "chatml"},
        "data": {"path": str(TRAIN), "validation": str(VAL), "max_length": 512,
                 "max_samples": 12, "max_val_samples": 6},
        "train": {"method": "lora", "epochs": 1, "batch_size": 2, "effective_batch": 4,
                  "learning_rate": 1e-3, "logging_steps": 1, "save_steps": 2,
                  "gradient_checkpointing": False, "precision": "fp32", **train},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    }  # fmt: skip


def write_config(tmp_path, data):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora_run")
    config = load_train_config(write_config(tmp, tiny_config(tiny_model_dir, tmp / "run")))
    result = run_training(config)
    return result


def test_model_directory_contract(lora_run):
    out = lora_run.output_dir
    for name in (*artifacts.CONTRACT_FILES, "adapter_model.safetensors", "adapter_config.json"):
        assert (out / name).is_file(), name
    assert not (out / "model.safetensors").exists()  # LoRA saves the adapter only
    info = json.loads((out / artifacts.RUN_FILE).read_text())
    assert info["dataset"]["manifest_sha256"] == sha256_file(TRAIN)
    # A unified JSONL file has no manifest to check: recorded as such.
    assert info["dataset"]["verification"]["verified"] is False
    assert info["dataset"]["verification"]["skipped"] == "not a built dataset (no manifest)"
    tok = load_tokenizer(out)
    assert info["tokenizer_sha256"] == tokenizer_fingerprint(tok)
    assert info["template"]["name"] == "chatml"
    assert info["metrics"]["before"]["eval_ppl"] > 0 and info["metrics"]["after"]["eval_ppl"] > 0
    records = [json.loads(line) for line in (out / artifacts.METRICS_FILE).read_text().splitlines()]
    assert any("loss" in r for r in records) and any("eval_ppl" in r for r in records)
    assert (out / artifacts.LOSS_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / artifacts.AUDIT_FILE).read_text())["verdict"] == "ok"
    saved = yaml.safe_load((out / artifacts.CONFIG_FILE).read_text())
    assert saved["train"]["method"] == "lora" and saved["lora"]["r"] == 4
    checkpoints = out / "checkpoints"
    assert [p.name for p in checkpoints.iterdir() if p.name.startswith(".")] == []


def test_saved_chat_template_renders_the_training_template(lora_run):
    """transformers users (and vLLM, which reads the same field) get the training template."""
    tok = load_tokenizer(lora_run.output_dir)
    template = get_template("chatml")
    with open(TRAIN, encoding="utf-8") as fh:
        convs = [json.loads(line)["messages"] for line in fh][:5]
    for messages in convs:
        assert tok.apply_chat_template(messages, tokenize=False) == template.render(messages)
        prompt = messages[:1]
        assert tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) == (
            template.render(prompt, add_generation_prompt=True)
        )


def test_loss_decreased(lora_run):
    records = lora_run.output_dir / artifacts.METRICS_FILE
    losses = [json.loads(line)["loss"] for line in records.read_text().splitlines()
              if '"loss"' in line]  # fmt: skip
    assert all(torch.isfinite(torch.tensor(losses)))
    assert lora_run.metrics_after["eval_loss"] < lora_run.metrics_before["eval_loss"]


def test_lora_changes_only_adapter_weights(tiny_model_dir, tmp_path):
    config = config_from_dict(tiny_config(tiny_model_dir, tmp_path, max_steps=3, warmup_ratio=0.0))
    ctx = RunContext.create(config, 1, "cpu")
    model = build_model(config, tiny_model_dir, ctx)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    from sftforge.encode import Encoder
    from sftforge.train.data import encode_split

    enc = Encoder(get_template("chatml"), load_tokenizer(tiny_model_dir), max_length=256)
    samples, _ = encode_split(enc, TRAIN, 12)
    trainer = make_trainer(config, ctx, model, enc.tokenizer, samples, [], tmp_path)
    trainer.train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed, "training changed nothing"
    assert all("lora_" in n for n in changed), sorted(changed)[:5]
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)


@pytest.fixture(scope="module")
def merged_dir(lora_run):
    return merge_run(lora_run.output_dir)


def test_merge_gives_a_plain_transformers_model(lora_run, merged_dir, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    assert (merged_dir / "model.safetensors").is_file()
    assert (merged_dir / artifacts.TEMPLATE_FILE).is_file()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    adapted = load_with_adapter(lora_run.output_dir, str(tiny_model_dir)).eval()
    ids = torch.tensor([[1, 200, 300, 400, 500, 2]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, rtol=1e-4, atol=1e-4)
    assert json.loads((merged_dir / artifacts.RUN_FILE).read_text())["method"] == "merged"


def test_second_stage_starts_from_the_merged_model(merged_dir, tmp_path):
    data = tiny_config(merged_dir, tmp_path / "stage2", max_steps=1)
    data["model"]["template"] = "hf"  # the merged tokenizer's chat template is stage 1's
    result = run_training(config_from_dict(data))
    info = json.loads((result.output_dir / artifacts.RUN_FILE).read_text())
    assert info["base_model_dir"] == str(merged_dir)
    # Stage 2 read its template from the merged tokenizer: it renders as stage 1's chatml.
    from sftforge.templates import load_template

    stage2 = load_template(result.output_dir / artifacts.TEMPLATE_FILE)
    with open(TRAIN, encoding="utf-8") as fh:
        for line in list(fh)[:5]:
            messages = json.loads(line)["messages"]
            assert stage2.render(messages) == get_template("chatml").render(messages)


def test_full_fine_tuning_saves_a_full_model(tiny_model_dir, tmp_path):
    data = tiny_config(tiny_model_dir, tmp_path / "full", max_steps=1, method="full",
                       learning_rate=2e-5)  # fmt: skip
    data["data"].pop("validation")
    result = run_training(config_from_dict(data))
    assert (result.output_dir / "model.safetensors").is_file()
    assert (result.output_dir / "config.json").is_file()
    assert not (result.output_dir / "adapter_config.json").exists()


def test_training_refuses_on_a_supervision_defect(tiny_model_dir, tmp_path):
    data = tiny_config(tiny_model_dir, tmp_path / "bad")
    data["data"]["max_length"] = 16  # every sample is too long: nothing would be trained
    with pytest.raises(SupervisionDefect, match="no token is trained"):
        run_training(config_from_dict(data))
    audit = json.loads((tmp_path / "bad" / artifacts.AUDIT_FILE).read_text())
    assert audit["verdict"] == "defect"


def test_qlora_without_a_gpu_says_why(tiny_model_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    config = config_from_dict(tiny_config(tiny_model_dir, tmp_path, method="qlora"))
    with pytest.raises(MethodUnavailableError, match="CUDA"):
        build_model(config, tiny_model_dir, RunContext.create(config, 1, "cpu"))


def test_model_folder_files_have_normal_modes_and_no_leftovers(lora_run):
    from sftforge.fsutil import TMP_PREFIX, default_file_mode

    out = lora_run.output_dir
    for path in out.iterdir():
        assert not path.name.startswith(TMP_PREFIX), path
        if path.is_file():
            assert path.stat().st_mode & 0o777 == default_file_mode(), path.name


def test_model_folder_json_is_replaced_whole_or_not_at_all(tmp_path):
    """A write that fails midway (here: text the encoder rejects) leaves the previous file."""
    artifacts.write_run_info(tmp_path, {"finished": True})
    with pytest.raises(UnicodeEncodeError):
        artifacts.write_run_info(tmp_path, {"finished": True, "note": "\ud800"})
    assert json.loads((tmp_path / artifacts.RUN_FILE).read_text()) == {"finished": True}
    assert [p.name for p in tmp_path.iterdir()] == [artifacts.RUN_FILE]


def test_merge_writes_the_base_dtype_or_the_one_asked_for(lora_run, merged_dir, tmp_path):
    from sftforge.models.load import base_float_dtype

    assert base_float_dtype(merged_dir) == "float32"  # the tiny base is fp32
    assert json.loads((merged_dir / artifacts.RUN_FILE).read_text())["dtype"] == "float32"
    half = merge_run(lora_run.output_dir, tmp_path / "bf16", dtype="bfloat16")
    assert _safetensors_dtypes(half / "model.safetensors") == {"BF16"}
    assert json.loads((half / artifacts.RUN_FILE).read_text())["dtype"] == "bfloat16"
    assert (half / "model.safetensors").stat().st_size < (
        merged_dir / "model.safetensors"
    ).stat().st_size * 0.6
    assert [p.name for p in tmp_path.iterdir()] == ["bf16"]  # published whole, no temp left


def _safetensors_dtypes(path):
    import struct

    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def test_adapter_base_travels_with_the_folder(tiny_model_dir, tmp_path):
    """The adapter names its base as the config gave it, run.json records the weights'
    digest; moved to another place with its base, it loads and merges without --base, and
    a different base under the same name is flagged."""
    import shutil
    import warnings

    from sftforge.infer.load import load_for_inference
    from sftforge.models.adapters import BaseModelMismatchError, BaseModelMismatchWarning

    project = tmp_path / "A"
    shutil.copytree(tiny_model_dir, project / "base")
    data = tiny_config("base", "run", max_steps=1)  # both relative to the config file
    result = run_training(load_train_config(write_config(project, data)))
    adapter = json.loads((result.output_dir / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "base"  # as given, not this machine's path
    info = json.loads((result.output_dir / artifacts.RUN_FILE).read_text())
    assert info["base_model_weights"]["files"]["model.safetensors"]["sha256"] == sha256_file(
        tiny_model_dir / "model.safetensors"
    )

    moved = tmp_path / "B"
    project.rename(moved)  # another machine, another folder: the recorded paths are gone
    with warnings.catch_warnings():
        warnings.simplefilter("error", BaseModelMismatchWarning)
        loaded = load_for_inference(moved / "run", device="cpu")
        assert loaded.template.name == "chatml"
        merged = merge_run(moved / "run", moved / "merged")
    assert (merged / "model.safetensors").is_file()

    from transformers import LlamaForCausalLM

    other = LlamaForCausalLM.from_pretrained(moved / "base")
    torch.manual_seed(1)
    for p in other.parameters():
        p.data.normal_()
    other.save_pretrained(moved / "base")
    with pytest.raises(BaseModelMismatchError, match="differ"):  # enforced, not advised
        load_for_inference(moved / "run", device="cpu")
    with pytest.warns(BaseModelMismatchWarning, match="differ"):
        load_for_inference(moved / "run", device="cpu", allow_mismatch=True)
