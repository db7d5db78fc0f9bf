#!/bin/bash
# #9, session 6: pixel BC on the confirmation seeds 3,4,5 (both action rules), added to the
# same workdir as `confirm_ext.sh` so that one table holds every method. The DITTO, DITTO
# (BC init) and D-BC policies and their evaluations are reused (their stamps match).
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-$PWD}"
echo "confirm_bc start $(date)" >> runs/bg.log
ditto run --preset study --workdir runs/confirm \
  --config.paths.data=runs/study/data --config.paths.wm=runs/study/wm \
  --config.wm.train.steps=1000 --config.methods=ditto,ditto_bcinit,dbc,bc --config.seeds=3,4,5 \
  --config.policy.reward=l2 --config.eval.policy=both --config.eval.agreement=true \
  > runs/confirm_bc.log 2>&1
echo "confirm_bc rc=$? $(date)" >> runs/bg.log
