#!/bin/bash
# #9, session 5: on the confirmation seeds 3,4,5 (same data, world model, l2 reward), add
# ONE pre-registered variant, DITTO (BC init) with the l2 reward, and greedy rows for all
# three methods. 
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-$PWD}"
echo "ext start $(date)" >> runs/bg.log
ditto run --preset study --workdir runs/confirm \
  --config.paths.data=runs/study/data --config.paths.wm=runs/study/wm \
  --config.wm.train.steps=1000 --config.methods=ditto,ditto_bcinit,dbc --config.seeds=3,4,5 \
  --config.policy.reward=l2 --config.eval.policy=both --config.eval.agreement=true \
  > runs/ext.log 2>&1
echo "ext rc=$? $(date)" >> runs/bg.log
