"""A run killed with SIGKILL resumes from its last complete checkpoint and ends exactly
where an uninterrupted run ends (tiny model, CPU, deterministic)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _config(tmp_path: Path, model_dir: Path, out: Path) -> Path:
    data = {
        "output_dir": str(out),
        "model": {"path": str(model_dir), "template": "chatml"},
        "data": {"path": str(ASSETS / "conversations_en.jsonl"), "max_length": 512,
                 "max_samples": 16},
        "train": {"method": "lora", "max_steps": 10, "batch_size": 2, "effective_batch": 2,
                  "learning_rate": 1e-2, "logging_steps": 1, "save_steps": 2,
                  "save_total_limit": 3, "gradient_checkpointing": False, "precision": "fp32"},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    }  # fmt: skip
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _train(config: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sftforge", "train", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip


def _losses(out: Path) -> dict[int, float]:
    losses = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            losses[record["step"]] = record["loss"]  # a resumed step overwrites the killed one
    return losses


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tiny_model_dir, tmp_path, sftforge_cache):
    env = {**os.environ, "SFTFORGE_CACHE": str(sftforge_cache), "OMP_NUM_THREADS": "1"}
    reference = _train(_config(tmp_path, tiny_model_dir, tmp_path / "reference"), env)
    out = tmp_path / "killed"
    config = _config(tmp_path, tiny_model_dir, out)

    proc = _train(config, env)
    checkpoints = out / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        done = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
        if done:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "adapter_model.safetensors").exists()  # it really died mid-run

    resumed = _train(config, env)
    log = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, log
    assert "resuming from" in log
    ref_log = reference.communicate(timeout=600)[0]
    assert reference.returncode == 0, ref_log

    ref_losses, got = _losses(tmp_path / "reference"), _losses(out)
    assert sorted(got) == sorted(ref_losses) == list(range(1, 11))
    for step in ref_losses:
        assert got[step] == pytest.approx(ref_losses[step], rel=1e-6), step
    ref_weights = load_file(tmp_path / "reference" / "adapter_model.safetensors")
    weights = load_file(out / "adapter_model.safetensors")
    for name, tensor in ref_weights.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-6)
