#!/usr/bin/env bash
# Checkpoint and LoRA switches at SDXL's real size, against their physical marks (issue 15): one command
# on a machine with one CUDA GPU, ~20 GB of free disk and ~40 GB of host memory; fits in 8 minutes.
#
#   bash bench/gpu.sh                 # the figures (bench/gpu_switching.py says what each one is)
#   bash bench/gpu.sh --dry-run       # the same code on the CPU with tiny models: checks it runs, anywhere
#   GPU_BENCH_DIR=/nvme bash bench/gpu.sh   # where the two 6.9 GB checkpoints go (default: a temp folder)
#
# PYTHON picks the interpreter (default: the project's .venv, else python3); it needs a CUDA build of torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
args=("$@")
if [ -n "${GPU_BENCH_DIR:-}" ]; then args+=(--dir "$GPU_BENCH_DIR"); fi
exec timeout 480 "$PY" -m bench.gpu_switching "${args[@]}"
