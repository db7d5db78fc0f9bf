"""Horizon ablation (SPEC §7): DITTO's imagination horizon H on Breakout.

`ditto sweep experiments/grids/horizon.py[:VARIANT]`; VARIANT as in paper.py, e.g.
  horizons=3+9,seeds=5,ne=125,games=breakout+qbert
Data and world models are those of paper.py; pass `--shared-dir SWEEP_OF_PAPER/shared` to
reuse the paper sweep's world models instead of training new ones.
"""
from ditto_jax.sweep import parse_variant, seeds_list

HORIZONS = (3, 9, 15, 21)


def get_grid(variant=""):
    v = parse_variant(variant, horizons=HORIZONS, games=("breakout",), seeds=3, ne=1000,
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
            "policy.horizon": list(v["horizons"]),
        },
        share_by=("game", "seed"),
        name="{game}_s{seed}_h{policy_horizon}",
    )
