#!/bin/bash
# Reward ablation on the study's world model (README "Reward ablation"): DITTO (H 5,
# eta 0.3), policy seed 0, 20 sampled-action episodes per reward, the same expert and
# random references. Needs runs/study from the study command (its DITTO row is maxcos).
# Results: runs/study_reward_<reward>/results.{md,json} (committed copies in
# benchmarks/results/pong_study_reward_ablation_s0/reward_<reward>.json).
cd "$(dirname "$0")/.."
COMMON="--config.wm.train.steps=1000 --config.policy.steps=1000 --config.policy.horizon=5
  --config.policy.entropy=0.3 --config.policy.bc_init_steps=400
  --config.policy.critic_warmup_steps=100"
for r in cosine l2 sparse; do
  W=runs/study_reward_$r
  mkdir -p $W/eval  # the study's references, measured under identical settings
  cp runs/study/eval/expert.json runs/study/eval/random.json $W/eval/
  ditto run --preset study --workdir $W $COMMON \
    --config.paths.data=runs/study/data --config.paths.wm=runs/study/wm \
    --config.methods=ditto --config.seeds=0 --config.eval.policy=sample \
    --config.eval.agreement=false --config.policy.reward=$r > runs/study_reward_$r.log 2>&1
  echo "reward $r rc=$? $(date)" >> runs/reward_ablation.log
done
