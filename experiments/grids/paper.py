"""The paper's main grid (SPEC §7): N_E expert episodes x game x seed, all four methods.

`ditto sweep experiments/grids/paper.py[:VARIANT] --config.data.rlu_data_dir=/path/to/tfds`
VARIANT: comma-separated KEY=VALUE, lists joined with `+`, e.g.
  games=breakout+pong,seeds=5,ne=30+125+1000,methods=ditto+bc,rlu_run=0
Data come from RL Unplugged Atari (read from TFDS, never downloaded): the expert set is the
top-return episodes of the late checkpoints, the world model trains on a mixture of all
checkpoints. Seed s reads DQN run s+1 of the dataset (rlu_run=0), or the one run given.
One dataset + world model per (game, seed), shared by all N_E and methods.
"""
from ditto_jax.sweep.grid import parse_variant, seeds_list

GAMES = ("breakout", "beamrider", "spaceinvaders", "mspacman", "qbert")  # + pong: games=...
N_E = (4, 8, 15, 30, 60, 125, 250, 500, 1000)


def get_grid(variant=""):
    v = parse_variant(variant, games=GAMES, seeds=3, ne=N_E,
                      methods=("ditto", "dbc", "dgail", "bc"), rlu_run=0,
                      expert_checkpoints="45-49", wm_checkpoints="0-49",
                      wm_episodes=1000, preset="paper")
    seeds = seeds_list(v["seeds"])
    return dict(
        config=f"experiments/configs/pipeline.py:{v['preset']}",
        overrides={
            "methods": ",".join(v["methods"]),
            "data.source": "rlu",
            "data.rlu_name": "rlu_atari_checkpoints_ordered",
            "data.expert_checkpoints": v["expert_checkpoints"],
            "data.expert_episodes": max(v["ne"]),  # selected once; each run sees the first N_E
            "data.wm_checkpoints": v["wm_checkpoints"],
            "data.wm_episodes": v["wm_episodes"],
        },
        axes={
            "game": list(v["games"]),
            "seed": [{"seed": s, "data.rlu_run": v["rlu_run"] or s % 5 + 1} for s in seeds],
            "expert_episodes": list(v["ne"]),
        },
        share_by=("game", "seed"),
        name="{game}_s{seed}_ne{expert_episodes}",
    )
