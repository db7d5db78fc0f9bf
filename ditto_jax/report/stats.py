"""Statistics for `ditto report`: mean ± standard error over seeds (`mean_se`), the
stratified bootstrap (`stratified_bootstrap_ci`, rliable's percentile method in numpy) and
IQM with 95% CIs plus performance profiles (`aggregate`).
"""
import numpy as np


def mean_se(values):
    """(mean, standard error over seeds); s.e. is None for a single seed."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if x.size == 0:
        return None, None
    se = float(np.std(x, ddof=1) / np.sqrt(x.size)) if x.size > 1 else None
    return float(np.mean(x)), se


def stratified_bootstrap_ci(per_game, func, *, reps, rng, size=0.95):
    """Percentile CI of `func(pooled scores)`, resampling seeds within each game.

    The same procedure as rliable's `StratifiedIndependentBootstrap` (percentile
    method): games are the strata, so every replicate keeps each game's number of
    runs, and games may have different numbers of seeds. Done here in numpy because
    rliable 1.2's bootstrap breaks with current `arch`: arch <= 7.2 does not import
    under pandas 3, arch 8 rejects the `random_state` argument rliable passes.
    Returns (point estimate, (low, high)), each an array like `func`'s output.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in per_game]
    point = np.asarray(func(np.concatenate(arrays)), dtype=np.float64)
    stats = np.empty((reps,) + point.shape)
    for i in range(reps):
        stats[i] = func(np.concatenate([a[rng.integers(0, a.size, a.size)]
                                        for a in arrays]))
    alpha = 100 * (1 - size) / 2
    low, high = np.percentile(stats, [alpha, 100 - alpha], axis=0)
    return point, (low, high)


def aggregate(score_lists, *, reps, seed, tau):
    """IQM with stratified-bootstrap 95% CIs and performance profiles (score distributions).

    `score_lists`: key -> list of 1-D arrays, one per game (the seeds' scores).
    IQM is rliable's `aggregate_iqm` (25% trimmed mean over all runs of all games);
    the profile at tau is the fraction of runs scoring above tau.
    """
    from rliable import metrics
    tau = np.asarray(tau, dtype=np.float64)

    def iqm(x):
        return np.array([metrics.aggregate_iqm(x)])

    def profile(x):
        return (x[:, None] > tau[None, :]).mean(axis=0)

    out = {}
    for k, per_game in score_lists.items():
        if not per_game:
            continue
        rng = np.random.default_rng(seed)
        point, (lo, hi) = stratified_bootstrap_ci(per_game, iqm, reps=reps, rng=rng)
        prof, (plo, phi) = stratified_bootstrap_ci(per_game, profile, reps=reps, rng=rng)
        out[k] = {"iqm": float(point[0]), "ci": [float(lo[0]), float(hi[0])],
                  "runs": int(sum(len(a) for a in per_game)), "games": len(per_game),
                  "profile": [float(v) for v in prof],
                  "profile_ci": [[float(v) for v in plo], [float(v) for v in phi]]}
    return out


def iqm_ci(per_seed, *, reps=2000, seed=0):
    """(IQM, [low, high]) over seeds x episodes, episodes resampled within each seed."""
    from rliable import metrics  # scipy: imported on use, not by `ditto report --help`
    per_seed = [np.asarray(x, np.float64) for x in per_seed if len(x)]
    if not per_seed:
        return None, None
    point, (lo, hi) = stratified_bootstrap_ci(
        per_seed, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps,
        rng=np.random.default_rng(seed))
    return float(point[0]), [float(lo[0]), float(hi[0])]


def probability_of_improvement(x, y, *, reps=2000, seed=0):
    """P(X > Y) + P(X = Y) / 2 over episode returns (rliable's definition, one task), with
    a 95% bootstrap CI."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if not len(x) or not len(y):
        return None

    def p(a, b):
        return float(((a[:, None] > b[None]).mean() + 0.5 * (a[:, None] == b[None]).mean()))

    rng = np.random.default_rng(seed)
    stats = [p(x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))])
             for _ in range(reps)]
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return {"p": p(x, y), "ci": [float(lo), float(hi)]}
