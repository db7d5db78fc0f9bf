"""Reward ablation: DITTO's latent reward maxcos vs cosine, l2 and sparse (SPEC §7).

`ditto sweep experiments/grids/reward.py[:VARIANT]`; VARIANT as in paper.py, e.g.
  rewards=maxcos+l2,games=breakout+beamrider,seeds=5,ne=125
Data and world models are those of paper.py (`--shared-dir` reuses the paper sweep's).
"""
from ditto_jax.sweep.grid import rlu_ablation_grid

REWARDS = ("maxcos", "cosine", "l2", "sparse")


def get_grid(variant=""):
    return rlu_ablation_grid(variant, axis="rewards", values=REWARDS, config_key="policy.reward",
                             name="{game}_s{seed}_{policy_reward}")
