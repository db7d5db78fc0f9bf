#!/usr/bin/env bash
# One GPU host.
#   launch/gpu_host.sh [--dry-run] run GAME [WORKDIR] [--config.KEY=VALUE ...]
#       the paper preset on one game, on all of this host's GPUs (data-parallel)
#   launch/gpu_host.sh [--dry-run] sweep GRID[:VARIANT] [ditto sweep options ...]
#       a grid, one run per GPU at a time (CUDA_VISIBLE_DEVICES per run)
# RL Unplugged data: export DITTO_RLU_DATA_DIR=/path/to/tfds (passed as data.rlu_data_dir).
# XLA_FLAGS / XLA_PYTHON_CLIENT_MEM_FRACTION can be set by the caller; defaults below.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
MODE="${1:?usage: launch/gpu_host.sh [--dry-run] run GAME [WORKDIR] | sweep GRID [options]}"
shift
# Latency-hiding scheduler overlaps collectives with compute across GPUs; leave 10% of
# GPU memory to cuDNN workspaces and the evaluation envs.
export XLA_FLAGS="${XLA_FLAGS:---xla_gpu_enable_latency_hiding_scheduler=true}"
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.90}"
PY="${PYTHON:-python}"
[[ -z "${PYTHON:-}" && -x "$ROOT/.venv/bin/python" ]] && PY="$ROOT/.venv/bin/python"
RLU=()
[[ -n "${DITTO_RLU_DATA_DIR:-}" ]] && RLU=(--config.data.rlu_data_dir="$DITTO_RLU_DATA_DIR")
if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then GPUS="$CUDA_VISIBLE_DEVICES"
elif command -v nvidia-smi >/dev/null; then
  GPUS="$(nvidia-smi --query-gpu=index --format=csv,noheader | paste -sd, -)"
else GPUS=0; fi
case "$MODE" in
  run)
    GAME="${1:?usage: launch/gpu_host.sh run GAME [WORKDIR]}"; shift
    WORKDIR="runs/${GAME}_paper"
    if [[ $# -gt 0 && "$1" != --* ]]; then WORKDIR="$1"; shift; fi
    CMD=("$PY" -m ditto_jax.cli run --config "$ROOT/experiments/configs/pipeline.py:paper"
         --workdir "$WORKDIR" --config.game="$GAME" "${RLU[@]}" "$@") ;;
  sweep)
    GRID="${1:?usage: launch/gpu_host.sh sweep GRID[:VARIANT] [options]}"; shift
    CMD=("$PY" -m ditto_jax.cli sweep "$GRID" --backend local --visible-devices "$GPUS"
         "${RLU[@]}" "$@") ;;
  *) echo "unknown mode '$MODE' (run | sweep)" >&2; exit 2 ;;
esac
echo "+ XLA_FLAGS='$XLA_FLAGS'" \
  "XLA_PYTHON_CLIENT_MEM_FRACTION=$XLA_PYTHON_CLIENT_MEM_FRACTION ${CMD[*]}"
if [[ $DRY == 1 ]]; then
  # A sweep's dry run lists every command it would run; a single run only its own.
  [[ $MODE == sweep ]] && exec "${CMD[@]}" --dry-run
  exit 0
fi
exec "${CMD[@]}"
