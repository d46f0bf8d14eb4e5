#!/usr/bin/env bash
# The prepared GPU check (see bench/gpu_check.py): bf16 LoRA throughput with packing
# (packed SDPA, flash attention if importable), packed == unpacked loss, QLoRA if
# bitsandbytes is importable, peak memory, a 1-GPU ZeRO-2 launch if DeepSpeed is.
# No network; under 8 minutes on one H100/H200. On a machine without CUDA it runs the
# same code as a CPU dry run. Usage: bash bench/gpu_check.sh [--json out.json] [--dry-run]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && PY=.venv/bin/python
exec timeout 480 "$PY" bench/gpu_check.py "$@"
