#!/usr/bin/env bash
# The prepared GPU shot (issue #17): benchmarks/device_study.py under one clock deadline.
#   OUT=DIR launch/device_study.sh [--tiny]
# Run from the source tree on the GPU host after launch/device_prepare.sh's wheels are
# installed into /tmp/site (the printed call does both). --tiny: the same path on a CPU,
# tiny sizes and budgets, with TensorFlow/TFDS blocked (launch/no_tf) as on the host.
# Budgets and sizes: DEVICE_STUDY_* (see benchmarks/device_study.py).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
: "${OUT:?set OUT to the folder for the result files}"
TINY=0
for a in "$@"; do [[ $a == --tiny ]] && TINY=1; done
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [[ $TINY == 1 || ${DEVICE_STUDY_BLOCK_TF:-0} == 1 ]]; then
  export PYTHONPATH="$ROOT/launch/no_tf:$PYTHONPATH"
fi
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
if [[ $TINY == 1 ]]; then
  # A plumbing check: compile without LLVM's expensive passes (timings mean nothing).
  export XLA_FLAGS="${XLA_FLAGS:---xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true}"
else
  # One GPU: the latency-hiding scheduler; 85% of GPU memory to XLA's allocator up front,
  # the rest to cuDNN workspaces; the parts run one after another, each in its own process.
  export XLA_FLAGS="${XLA_FLAGS:---xla_gpu_enable_latency_hiding_scheduler=true}"
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.85}"
fi
PY="${PYTHON:-python3}"
echo "+ XLA_FLAGS='$XLA_FLAGS' $PY benchmarks/device_study.py --out $OUT $*"
exec "$PY" "$ROOT/benchmarks/device_study.py" --out "$OUT" "$@"
