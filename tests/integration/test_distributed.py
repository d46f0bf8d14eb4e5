"""Two processes (gloo, CPU) launched through ``accelerate launch`` with the shipped config
train exactly like one process with the same global batch: same losses, same weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "tests" / "assets"


def _config(tmp_path: Path, model_dir: Path, name: str) -> Path:
    data = {
        "output_dir": str(tmp_path / name),
        "model": {"path": str(model_dir), "template": "chatml"},
        "data": {"path": str(ASSETS / "conversations_en.jsonl"), "max_length": 512,
                 "max_samples": 16},
        # global batch 8 = 2 per device x 4 accumulation (1 process) or x 2 (2 processes)
        "train": {"method": "lora", "epochs": 1, "batch_size": 2, "effective_batch": 8,
                  "learning_rate": 1e-2, "logging_steps": 1, "save_steps": 100,
                  "gradient_checkpointing": False, "precision": "fp32", "warmup_ratio": 0.0},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(out: Path) -> list[float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"loss"' in line]


@pytest.mark.slow
def test_two_processes_match_one(tiny_model_dir, tmp_path, sftforge_cache):
    env = {**os.environ, "SFTFORGE_CACHE": str(sftforge_cache), "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "sftforge", "train", str(_config(tmp_path, tiny_model_dir, "one"))],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stdout + single.stderr
    launch = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "--main_process_port", str(_free_port()),
        "-m", "sftforge", "train", str(_config(tmp_path, tiny_model_dir, "two")),
    ]  # fmt: skip
    double = subprocess.run(launch, capture_output=True, text=True, env=env, timeout=600)
    assert double.returncode == 0, double.stdout + double.stderr
    assert "2 process(es) on cpu" in double.stdout

    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 2
    assert two == pytest.approx(one, rel=1e-5)
    info = json.loads((tmp_path / "two" / "run.json").read_text())
    assert info["context"]["world_size"] == 2 and info["context"]["gradient_accumulation"] == 2
    a = load_file(tmp_path / "one" / "adapter_model.safetensors")
    b = load_file(tmp_path / "two" / "adapter_model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-6)
