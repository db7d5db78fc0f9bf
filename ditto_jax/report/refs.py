"""Reference data for `ditto report`: the paper's numbers (SPEC §7), the expert/random
reference rows, and the order in which methods are listed (`_method_key`, from the
`ditto_jax.methods` registry).
"""

# SPEC §7: raw returns read off the paper's plots (no tables were published),
# game -> method -> {N_E: return}; "~45" is entered as 45.
PAPER_RETURNS = {
    "breakout": {
        "ditto": {30: 224, 125: 320, 1000: 391},
        "dbc": {30: 45, 125: 180, 1000: 358},
        "dgail": {30: 150, 125: 285, 1000: 301},
        "bc": {30: 41, 125: 49, 1000: 117},
    },
    "beamrider": {
        "ditto": {30: 3410, 125: 4870, 1000: 5815},
        "bc": {30: 2130, 125: 2215, 1000: 2960},
    },
    "spaceinvaders": {
        "ditto": {30: 920, 125: 966, 1000: 1119},
        "bc": {30: 530, 125: 719, 1000: 908},
    },
}
# SPEC §7: the paper's expert returns ("Breakout (~389)").
PAPER_EXPERT = {"breakout": 389, "beamrider": 3470, "spaceinvaders": 965}
# SPEC §3: the setting the paper's main results use (`ditto run` records both keys).
PAPER_SETTING = {"horizon": 15, "reward": "maxcos"}
# SPEC §7: DITTO's horizon ablation on Breakout (N_E not stated), horizon -> return.
PAPER_HORIZON_BREAKOUT = {3: 276, 9: 357, 21: 255}

# Reference rows: shown in the tables and plots, never aggregated as methods.
REFERENCE_METHODS = ("expert", "random")


def _method_key(m):
    """Registered methods in their report order, then unknown names, then references."""
    from ditto_jax import methods  # jax: imported on use, never by --help
    if m in REFERENCE_METHODS:
        return (2, REFERENCE_METHODS.index(m), m)
    if m in methods.names():
        return (0, methods.get(m).order, m)
    return (1, 0, m)

