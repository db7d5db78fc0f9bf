#!/usr/bin/env bash
# Prepares the GPU shot here, on a CPU (issue #17): records/exports the data, downloads
# the wheels the GPU host lacks, checks the payload and prints the device call.
#   launch/device_prepare.sh [--games "pong breakout"] [--no-record] [--no-wheels] [--tiny]
# See launch/device_prepare.py for every option.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
[[ -z "${PYTHON:-}" && -x "$ROOT/.venv/bin/python" ]] && PY="$ROOT/.venv/bin/python"
cd "$ROOT"
exec "$PY" "$ROOT/launch/device_prepare.py" "$@"
