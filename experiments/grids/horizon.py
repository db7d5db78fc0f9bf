"""Horizon ablation (SPEC §7): DITTO's imagination horizon H on Breakout.

`ditto sweep experiments/grids/horizon.py[:VARIANT]`; VARIANT as in paper.py, e.g.
  horizons=3+9,seeds=5,ne=125,games=breakout+qbert
Data and world models are those of paper.py; pass `--shared-dir SWEEP_OF_PAPER/shared` to
reuse the paper sweep's world models instead of training new ones.
"""
from ditto_jax.sweep.grid import rlu_ablation_grid

HORIZONS = (3, 9, 15, 21)


def get_grid(variant=""):
    return rlu_ablation_grid(variant, axis="horizons", values=HORIZONS, config_key="policy.horizon",
                             name="{game}_s{seed}_h{policy_horizon}")
