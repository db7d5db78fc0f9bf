#!/bin/bash
# #9, session 6: does offline checkpoint selection help? On fresh policy seeds 6,7,8 (never
# used before), DITTO and DITTO (BC init) with the study's settings (l2 reward) are each
# evaluated twice: the final policy and the checkpoint with the best held-out E[pi(a_E|s_E)]
# (no real-game return involved). Same data and world model as the study; sampled actions
# (the authors' rule), 20 episodes per seed; the expert row is the recorded demonstrations.
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-$PWD}"
echo "select start $(date)" >> runs/bg.log
ditto run --preset study --workdir runs/select \
  --config.paths.data=runs/study/data --config.paths.wm=runs/study/wm \
  --config.wm.train.steps=1000 --config.methods=ditto,ditto_bcinit --config.seeds=6,7,8 \
  --config.policy.reward=l2 --config.eval.policy=sample --config.eval.checkpoint=both \
  --config.eval.agreement=false --config.eval.expert=demos \
  > runs/select.log 2>&1
echo "select rc=$? $(date)" >> runs/bg.log
