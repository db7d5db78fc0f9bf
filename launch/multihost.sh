#!/usr/bin/env bash
# World-model training over several hosts (TPU pod slices, multi-node GPU) via
# jax.distributed. Start it once per host, with the same arguments except --process-id.
#   launch/multihost.sh [--dry-run] --coordinator HOST:PORT --num-processes N --process-id I \
#       -- --config experiments/configs/wm.py:paper --data DATA --workdir WM
#   launch/multihost.sh [--dry-run] --auto -- ARGS...     # peers found by jax itself:
#       SLURM:   srun --nodes=N --ntasks-per-node=1 launch/multihost.sh --auto -- ARGS...
#       TPU pod: gcloud compute tpus tpu-vm ssh TPU --worker=all \
#                  --command="cd ditto && launch/multihost.sh --auto -- ARGS..."
# ARGS are those of `ditto train-wm`; WORKDIR must be on a filesystem all hosts share.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
DRY=0; DIST=(); ENV=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY=1; shift ;;
    --auto) ENV=(DITTO_DISTRIBUTED=auto); shift ;;
    --coordinator|--num-processes|--process-id) DIST+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
if [[ ${#ENV[@]} -eq 0 && ${#DIST[@]} -ne 6 ]]; then
  echo "give --auto, or all of --coordinator, --num-processes and --process-id" >&2; exit 2
fi
PY="${PYTHON:-python}"
[[ -z "${PYTHON:-}" && -x "$ROOT/.venv/bin/python" ]] && PY="$ROOT/.venv/bin/python"
CMD=(env "${ENV[@]}" "$PY" -m ditto_jax.cli train-wm "${DIST[@]}" "$@")
echo "+ ${CMD[*]}"
[[ $DRY == 1 ]] && exit 0
exec "${CMD[@]}"
