"""Reward ablation: DITTO's latent reward maxcos vs cosine, l2 and sparse (SPEC §7).

`ditto sweep experiments/grids/reward.py[:VARIANT]`; VARIANT as in paper.py, e.g.
  rewards=maxcos+l2,games=breakout+beamrider,seeds=5,ne=125
Data and world models are those of paper.py (`--shared-dir` reuses the paper sweep's).
"""
from ditto_jax.sweep import parse_variant, seeds_list

REWARDS = ("maxcos", "cosine", "l2", "sparse")


def get_grid(variant=""):
    v = parse_variant(variant, rewards=REWARDS, games=("breakout",), seeds=3, ne=1000,
                      rlu_run=0, expert_checkpoints="45-49", wm_checkpoints="0-49",
                      wm_episodes=1000, expert_episodes=1000, preset="paper")
    return dict(
        config=f"experiments/configs/pipeline.py:{v['preset']}",
        overrides={
            "methods": "ditto",
            "expert_episodes": v["ne"],
            "data.source": "rlu",
            "data.rlu_name": "rlu_atari_checkpoints_ordered",
            "data.expert_checkpoints": v["expert_checkpoints"],
            "data.expert_episodes": v["expert_episodes"],
            "data.wm_checkpoints": v["wm_checkpoints"],
            "data.wm_episodes": v["wm_episodes"],
        },
        axes={
            "game": list(v["games"]),
            "seed": [{"seed": s, "data.rlu_run": v["rlu_run"] or s % 5 + 1}
                     for s in seeds_list(v["seeds"])],
            "policy.reward": list(v["rewards"]),
        },
        share_by=("game", "seed"),
        name="{game}_s{seed}_{policy_reward}",
    )
