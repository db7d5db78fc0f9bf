#!/usr/bin/env bash
# One local run of a pipeline preset: data, world model, all methods, evaluation, results.
#   launch/local.sh [--dry-run] [PRESET] [GAME] [WORKDIR] [--config.KEY=VALUE ...]
#   launch/local.sh smoke pong               # minutes on a CPU
#   launch/local.sh demo pong runs/demo --config.methods=ditto,bc
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
PRESET="${1:-smoke}"; GAME="${2:-pong}"
shift $(( $# < 2 ? $# : 2 ))
WORKDIR="runs/${GAME}_${PRESET}"
if [[ $# -gt 0 && "$1" != --* ]]; then WORKDIR="$1"; shift; fi
PY="${PYTHON:-python}"
[[ -z "${PYTHON:-}" && -x "$ROOT/.venv/bin/python" ]] && PY="$ROOT/.venv/bin/python"
CMD=("$PY" -m ditto_jax.cli run --config "$ROOT/experiments/configs/pipeline.py:$PRESET"
     --workdir "$WORKDIR" --config.game="$GAME" "$@")
echo "+ ${CMD[*]}"
[[ $DRY == 1 ]] && exit 0
exec "${CMD[@]}"
