"""Study helpers: the authors' image scale, results aggregation (IQM CIs, P(X > Y))."""
import numpy as np
import pytest

from ditto_jax.core.config import load_config
from ditto_jax.core.resources import config_path


class _Store:
    def __init__(self, frames):
        self.observation = frames


def test_authors_image_scale_is_255_over_sigma_squared():
    from ditto_jax.stages.wm_data import _apply_image_scale
    c = load_config(config_path("wm.py") + ":tiny")
    c.loss.image_scale = "authors"
    _apply_image_scale(c, "Pong", _Store(np.zeros((4, 8, 8, 1), np.uint8)), None)
    assert c.loss.image_weight == pytest.approx((255 / 47) ** 2)       # ~29.4 (SPEC §2)
    assert c.loss.image_scale == "none"   # resolved once: a resume does not apply it twice
    # A game outside the authors' table: sigma from the frames themselves.
    c = load_config(config_path("wm.py") + ":tiny")
    c.loss.image_scale = "authors"
    frames = np.random.default_rng(0).integers(0, 256, (1000, 8, 8, 1)).astype(np.uint8)
    _apply_image_scale(c, "asterix", _Store(frames), None)
    sigma = np.std(frames[::97])
    assert c.loss.image_weight == pytest.approx((255 / sigma) ** 2)


def test_probability_of_improvement_matches_pairwise_count():
    from ditto_jax.report.stats import probability_of_improvement
    x, y = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 0.0])
    pairs = [(a > b) + 0.5 * (a == b) for a in x for b in y]
    p = probability_of_improvement(x, y, reps=200)
    assert p["p"] == pytest.approx(np.mean(pairs))
    assert 0.0 <= p["ci"][0] <= p["ci"][1] <= 1.0


def test_iqm_ci_brackets_the_iqm_and_resamples_within_seeds():
    from ditto_jax.report.stats import iqm_ci
    from scipy import stats
    rng = np.random.default_rng(0)
    seeds = [rng.normal(m, 1.0, 20) for m in (0.0, 1.0, 2.0)]
    point, (lo, hi) = iqm_ci(seeds, reps=500)
    assert point == pytest.approx(stats.trim_mean(np.concatenate(seeds), 0.25))
    assert lo < point < hi
    same, ci = iqm_ci([np.full(20, 3.0)] * 3, reps=100)
    assert same == 3.0 and ci == [3.0, 3.0]
