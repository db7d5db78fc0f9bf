"""A sweep small enough for a CPU laptop: the `smoke` preset on Pong with scripted experts.

`ditto sweep experiments/grids/local.py --workers 2` -> 2 world-model jobs (one per seed),
then 4 runs (2 seeds x N_E in {2, 3}), each training DITTO and BC.
VARIANT e.g. seeds=1,ne=2,methods=ditto
"""
from ditto_jax.sweep.grid import parse_variant, seeds_list


def get_grid(variant=""):
    v = parse_variant(variant, seeds=2, ne=(2, 3), methods=("ditto", "bc"), game="pong",
                      preset="smoke")
    return dict(
        config=f"experiments/configs/pipeline.py:{v['preset']}",
        overrides={
            "game": v["game"],
            "methods": ",".join(v["methods"]),
            "data.source": "scripted",
            # One more than the largest N_E: the policy stage holds one episode out
            # (policy.heldout_episodes) for its action-accuracy diagnostic.
            "data.expert_episodes": max(v["ne"]) + 1,
        },
        axes={
            "seed": list(seeds_list(v["seeds"])),
            "expert_episodes": list(v["ne"]),
        },
        share_by=("game", "seed"),
        name="{game}_s{seed}_ne{expert_episodes}",
    )
