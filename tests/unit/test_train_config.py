"""Training configs: strict typing, unknown keys named by path, overrides, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sftforge.configio import ConfigError, parse_overrides
from sftforge.train.config import (
    DEFAULT_LR,
    RESUME_SAFE_KEYS,
    EpochWarning,
    RunContext,
    config_changes,
    config_from_dict,
    load_train_config,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "configs" / "train").glob("*.yaml"))
ACCELERATE = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_train_configs_validate(path):
    config = load_train_config(path)
    assert config.train.method in ("full", "lora", "qlora")
    lr = RunContext.create(config, 1, "cpu").learning_rate
    if config.train.method == "full":
        assert 1e-5 <= lr <= 5e-5  # the known-good range for full SFT
    assert 1 <= config.train.epochs <= 3


def test_shipped_configs_cover_methods_and_two_stages():
    names = {p.stem for p in SHIPPED}
    assert {"full_sft", "qlora", "lora_smollm2", "stage1_general", "stage2_multiturn"} <= names
    stage2 = load_train_config(ROOT / "configs/train/stage2_multiturn.yaml")
    stage1 = load_train_config(ROOT / "configs/train/stage1_general.yaml")
    # stage 2 starts from stage 1's merged model
    assert (
        Path(stage2.resolve(stage2.model.path))
        == Path(stage1.resolve(stage1.output_dir)) / "merged"
    )


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_configs_parse(path):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(path))
    expected = {"zero2.yaml": ("DEEPSPEED", 2), "zero3.yaml": ("DEEPSPEED", 3)}
    if path.name in expected:
        kind, stage = expected[path.name]
        assert config.distributed_type == kind
        assert config.deepspeed_config["zero_stage"] == stage
    elif path.name == "fsdp.yaml":
        assert config.distributed_type == "FSDP"
        assert config.fsdp_config["fsdp_version"] == 2
    else:
        assert config.use_cpu and config.num_processes == 2


def test_unknown_key_is_named_with_its_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": "x"}, "train": {"lerning_rate": 1e-4}}))
    with pytest.raises(
        ConfigError, match=r"train\.lerning_rate: unknown key; did you mean 'learning_rate'"
    ):
        load_train_config(path)


def test_types_are_checked():
    with pytest.raises(ConfigError, match=r"train\.epochs: expected a number"):
        config_from_dict({"data": {"path": "x"}, "train": {"epochs": "two"}})
    with pytest.raises(ConfigError, match=r"train\.method: expected one of"):
        config_from_dict({"data": {"path": "x"}, "train": {"method": "adapter"}})
    with pytest.raises(ConfigError, match=r"data: required|data\.path: required"):
        config_from_dict({})


def test_overrides_are_typed_and_dotted(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": "d"}}))
    config = load_train_config(path, ["train.epochs=1", "data.packing=false", "lora.r=4",
                                      "train.learning_rate=1e-4"])  # fmt: skip
    assert config.train.epochs == 1.0
    assert config.data.packing is False
    assert config.lora.r == 4
    assert config.train.learning_rate == pytest.approx(1e-4)
    assert Path(config.resolve(config.data.path)) == tmp_path / "d"
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["epochs"])


def test_defaults_are_known_good():
    config = config_from_dict({"data": {"path": "x"}})
    ctx = RunContext.create(config, 1, "cpu")
    assert config.train.method == "lora" and ctx.learning_rate == DEFAULT_LR["lora"]
    assert DEFAULT_LR["full"] == 2e-5
    assert config.train.lr_scheduler == "cosine" and config.train.warmup_ratio > 0
    assert config.train.gradient_checkpointing
    # effective batch 16 from 4 per device: 4 accumulation steps on one device, 2 on two
    assert ctx.gradient_accumulation == 4
    assert RunContext.create(config, 2, "cpu").gradient_accumulation == 2


def test_more_than_three_epochs_warns():
    with pytest.warns(EpochWarning, match="overfit"):
        config_from_dict({"data": {"path": "x"}, "train": {"epochs": 5}})


def test_config_changes_separate_resume_safe_keys():
    old = {
        "train": {"learning_rate": 0.01, "epochs": 1, "save_steps": 5},
        "lora": {"target_modules": ["q_proj"]},
        "data": {"path": "/d", "verify": True},
    }
    new = {
        "train": {"learning_rate": 0.05, "epochs": 2, "save_steps": 5},
        "lora": {"target_modules": ("q_proj",)},
        "data": {"path": "/e", "verify": False},
    }
    unsafe, safe = config_changes(old, new)
    assert unsafe == [("data.path", "/d", "/e"), ("train.learning_rate", 0.01, 0.05)]
    assert safe == [("data.verify", True, False), ("train.epochs", 1, 2)]


def test_resume_safe_keys_are_documented():
    docs = (ROOT / "docs" / "training.md").read_text()
    for key in RESUME_SAFE_KEYS:
        assert f"`{key}`" in docs, key


def test_dataset_verification_is_on_by_default():
    config = config_from_dict({"data": {"path": "x.jsonl"}})
    assert config.data.verify is True
    assert config_from_dict({"data": {"path": "x", "verify": False}}).data.verify is False
