"""Training under faults: a SIGKILL in the middle of a checkpoint write, reruns into
unfinished and finished runs (changed config, --overwrite, --resume), and a dataset cut
short by a killed build. Tiny random model on CPU; every run is a few optimizer steps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from sftforge.cli import main
from sftforge.data.manifest import MANIFEST_FILE, describe_outputs

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TRAIN = ASSETS / "conversations_en.jsonl"
VAL = ASSETS / "train" / "validation_zh.jsonl"


def write_config(folder: Path, model_dir: Path, data: Path, **train) -> Path:
    config = {
        "name": "faults",
        "output_dir": "run",  # relative to the config file
        "model": {"path": str(model_dir), "template": "chatml"},
        "data": {"path": str(data), "validation": str(VAL), "max_length": 512,
                 "max_samples": 8, "max_val_samples": 4},
        "train": {"method": "lora", "max_steps": 4, "batch_size": 2, "effective_batch": 2,
                  "learning_rate": 1e-2, "logging_steps": 1, "save_steps": 2,
                  "save_total_limit": 3, "gradient_checkpointing": False, "precision": "fp32",
                  "warmup_ratio": 0.0, **train},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def loss_steps(out: Path) -> list[int]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if "loss" in r]


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst / "train.yaml"


#: Run in a subprocess: training that SIGKILLs itself in the middle of writing the
#: checkpoint at step 4 (model and optimizer written, RNG state and trainer state not).
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import transformers

    original = transformers.Trainer._save_optimizer_and_scheduler

    def save_then_die(self, output_dir):
        original(self, output_dir)
        if self.state.global_step == 4:
            os.kill(os.getpid(), signal.SIGKILL)

    transformers.Trainer._save_optimizer_and_scheduler = save_then_die
    from sftforge.cli import main
    sys.exit(main(["train", sys.argv[1], "train.max_steps=6"]))
    """
)


@pytest.fixture(scope="module")
def killed_run(tiny_model_dir, tmp_path_factory, sftforge_cache) -> Path:
    """A run killed while writing its step-4 checkpoint (max_steps=6): unfinished."""
    folder = tmp_path_factory.mktemp("killed")
    config = write_config(folder, tiny_model_dir, TRAIN)
    env = {**os.environ, "SFTFORGE_CACHE": str(sftforge_cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(config)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    return folder


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A finished 4-step run with validation."""
    folder = tmp_path_factory.mktemp("finished")
    assert main(["train", str(write_config(folder, tiny_model_dir, TRAIN))]) == 0
    return folder


def test_sigkill_mid_checkpoint_then_rerun_resumes_from_the_complete_one(
    killed_run, tmp_path, capsys
):
    out = killed_run / "run"
    checkpoints = out / "checkpoints"
    assert (checkpoints / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (checkpoints / "checkpoint-4").exists()  # only its staged, partial copy
    assert (checkpoints / ".staging" / "checkpoint-4").is_dir()
    assert not (out / "run.json").exists()

    config = copy_run(killed_run, tmp_path / "copy")
    assert main(["train", str(config), "train.max_steps=6"]) == 0
    printed = capsys.readouterr().out
    assert "resuming from" in printed and printed.split("resuming from")[1].split()[0].endswith(
        "checkpoint-2"
    )
    out = tmp_path / "copy" / "run"
    info = json.loads((out / "run.json").read_text())
    assert info["global_step"] == 6
    assert loss_steps(out) == [1, 2, 3, 4, 5, 6]  # the killed steps 3-4 are not repeated
    assert not (out / "checkpoints" / ".staging").exists()
    assert info["metrics"]["before"]["eval_ppl"] > 0  # measured by the killed run, kept
    assert info["metrics"]["train_loss"] > 0


def test_changed_config_into_an_unfinished_run_is_refused_naming_the_key(
    killed_run, tmp_path, capsys
):
    config = copy_run(killed_run, tmp_path / "copy")
    recorded = (tmp_path / "copy" / "run" / "checkpoints" / "train_config.yaml").read_bytes()
    code = main(["train", str(config), "train.max_steps=6", "train.learning_rate=0.05"])
    assert code == 2
    err = capsys.readouterr().err
    assert "train.learning_rate: 0.01 -> 0.05" in err
    assert "--overwrite" in err
    out = tmp_path / "copy" / "run"
    assert (out / "checkpoints" / "train_config.yaml").read_bytes() == recorded
    assert not (out / "run.json").exists()


def test_rerun_into_a_finished_run_is_refused_with_the_choices(finished_run, tmp_path, capsys):
    config = copy_run(finished_run, tmp_path / "copy")
    out = tmp_path / "copy" / "run"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # README's second quickstart: a changed setting used to "resume" 0 steps (loss 0.0).
    assert main(["train", str(config), "train.epochs=2", "train.max_steps=-1"]) == 2
    err = capsys.readouterr().err
    assert "finished run" in err
    for choice in ("--output", "--overwrite", "--resume"):
        assert choice in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_overwrite_starts_over(finished_run, tmp_path, capsys):
    config = copy_run(finished_run, tmp_path / "copy")
    out = tmp_path / "copy" / "run"
    old = json.loads((out / "run.json").read_text())
    assert main(["train", "--overwrite", str(config), "train.learning_rate=0.02"]) == 0
    printed = capsys.readouterr().out
    assert "over" in printed and "resuming" not in printed
    info = json.loads((out / "run.json").read_text())
    assert info["global_step"] == 4 and info["resumed_from"] is None
    assert info["finished_at"] >= old["finished_at"]
    assert info["metrics"]["train_loss"] > 0
    assert loss_steps(out) == [1, 2, 3, 4]
    saved = yaml.safe_load((out / "checkpoints" / "train_config.yaml").read_text())
    assert saved["train"]["learning_rate"] == 0.02
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".sftforge-tmp")]
    assert leftovers == []  # the set-aside previous run is gone once this one finished


def test_resume_extends_a_finished_run_without_repeating_steps(finished_run, tmp_path, capsys):
    config = copy_run(finished_run, tmp_path / "copy")
    out = tmp_path / "copy" / "run"
    old = json.loads((out / "run.json").read_text())
    # Same length: nothing to train, said so (no 0-step "training").
    assert main(["train", str(config), "--resume"]) == 2
    assert "nothing is left to train" in capsys.readouterr().err

    assert main(["train", "--resume", str(config), "train.max_steps=6"]) == 0
    printed = capsys.readouterr().out
    assert "resuming from" in printed and "train.max_steps 4 -> 6" in printed
    info = json.loads((out / "run.json").read_text())
    assert info["global_step"] == 6
    steps = loss_steps(out)
    assert steps == [1, 2, 3, 4, 5, 6] and len(steps) == len(set(steps))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum("train_runtime" in r for r in records) == 1  # the first session's summary dropped
    # Metrics cover the whole run: before training is the first session's measurement...
    assert info["metrics"]["before"] == old["metrics"]["before"]
    # ...and the train loss is the mean over all six steps, not the last two.
    losses = [r["loss"] for r in records if "loss" in r]
    assert info["metrics"]["train_loss"] == pytest.approx(sum(losses) / 6, rel=1e-5)
    saved = yaml.safe_load((out / "checkpoints" / "train_config.yaml").read_text())
    assert saved["train"]["max_steps"] == 6


def _built_dataset(folder: Path) -> Path:
    """A dataset folder as `data build` leaves it: splits, then manifest.json last."""
    folder.mkdir(parents=True)
    lines = TRAIN.read_text().splitlines()
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "validation.jsonl").write_text(VAL.read_text())
    manifest = {"outputs": describe_outputs(folder)}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    return folder


def test_truncated_dataset_is_refused_and_no_verify_is_recorded(tiny_model_dir, tmp_path, capsys):
    data = _built_dataset(tmp_path / "data")
    train = data / "train.jsonl"
    lines = train.read_text().splitlines()
    train.write_text("\n".join(lines[: len(lines) // 2]) + "\n")  # a killed build's cut
    config = write_config(tmp_path / "cfg", tiny_model_dir, data)
    cfg = yaml.safe_load(config.read_text())
    cfg["data"].pop("validation")  # the folder's own split
    config.write_text(yaml.safe_dump(cfg))

    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "does not match its manifest.json" in err and "train.jsonl" in err
    assert "--no-verify" in err
    assert not (tmp_path / "cfg" / "run").exists()  # refused before writing anything

    assert main(["train", str(config), "train.max_steps=1", "--no-verify"]) == 0
    info = json.loads((tmp_path / "cfg" / "run" / "run.json").read_text())
    verification = info["dataset"]["verification"]
    assert verification["verified"] is False and verification["skipped"] == "--no-verify"


def test_intact_dataset_is_verified_and_recorded(tiny_model_dir, tmp_path):
    data = _built_dataset(tmp_path / "data")
    config = write_config(tmp_path / "cfg", tiny_model_dir, data, max_steps=1)
    cfg = yaml.safe_load(config.read_text())
    cfg["data"].pop("validation")
    config.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(config)]) == 0
    info = json.loads((tmp_path / "cfg" / "run" / "run.json").read_text())
    verification = info["dataset"]["verification"]
    assert verification["verified"] is True
    assert {"train.jsonl", "validation.jsonl"} <= set(verification["files"])
