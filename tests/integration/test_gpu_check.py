"""bench/gpu_check.sh stays runnable between GPU sessions: its CPU dry run runs the same
code (model build, LoRA steps on packed rows, packed == unpacked loss, the table)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_prints_its_table(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(["bash", str(ROOT / "bench/gpu_check.sh"), "--dry-run", "--json",
                           str(out)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| check | trained tok/s | peak GiB | result |" in done.stdout
    rows = {r["check"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["LoRA packed, packed SDPA"]["trained_tok_s"] > 0
    assert rows["packed loss == unpacked"]["ok"] is True
    assert all("error" not in r for r in rows.values())
