#!/bin/bash
# Reward ablation on the study's world model: DITTO (H 5, eta 0.3), policy seed 0,
# 20 sampled-action episodes per reward. maxcos is the study's own DITTO row (seed 0).
cd "$(dirname "$0")/.."
for r in cosine l2 sparse; do
  ditto run --preset study --workdir runs/study_reward_$r --quiet \
    --config.paths.data=runs/study/data --config.paths.wm=runs/study/wm \
    --config.wm.train.steps=1000 --config.methods=ditto --config.seeds=0 \
    --config.eval.policy=sample --config.policy.steps=1000 --config.policy.horizon=5 \
    --config.policy.entropy=0.3 --config.policy.reward=$r > runs/study_reward_$r.log 2>&1
  echo "reward $r done $(date)" >> runs/reward_ablation.log
done
