"""Offline probes (agents/probes.py): reward spread and the Eq. 7 drift meter, on the toy
latent world of test_imitation_steps and against brute-force numpy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ditto_jax.agents import probes
from tests.test_imitation_steps import ACTION_DIM, D, NUM_ACTIONS, _MOVES, img_step


def _expert(batch, horizon, seed=0):
    """Expert windows of the toy world (it always takes action 1): start states, actions
    (B, H) and the posteriors after 1..H steps, which the prior reproduces exactly."""
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(batch, D)).astype(np.float32)
    start = {"deter": jnp.asarray(h), "stoch": jnp.zeros((batch, 2, 2))}
    traj = []
    for _ in range(horizon):
        h = 0.9 * h + _MOVES[1]
        traj.append(h)
    nxt = {"deter": jnp.asarray(np.stack(traj, 1)), "stoch": jnp.zeros((batch, horizon, 2, 2))}
    return start, jnp.ones((batch, horizon), jnp.int32), nxt


def _always(action):
    return lambda state, key: jnp.full(state["deter"].shape[:1], action, jnp.int32)


def test_reward_spread_identity_case():
    """Expert actions reproduce the expert's latents: maxcos is 1 at every step and l2 is 0;
    a policy that takes the expert's action has margin 0; deviations score lower."""
    start, actions, nxt = _expert(16, 4)
    fn = jax.jit(lambda key: probes.reward_spread(
        img_step, start, actions, nxt, key, num_actions=NUM_ACTIONS, action_dim=ACTION_DIM,
        policy=_always(1)))
    m = jax.device_get(fn(jax.random.key(0)))
    for k, v in m.items():
        assert np.isfinite(v), k
    for stat in ("mean", "q10", "q50", "q90"):
        assert m[f"spread/maxcos/expert_{stat}"] == pytest.approx(1.0, abs=1e-6)
        assert m[f"spread/l2/expert_{stat}"] == pytest.approx(0.0, abs=1e-5)
        assert m[f"spread/maxcos/policy_{stat}"] == pytest.approx(1.0, abs=1e-6)
    assert m["spread/maxcos/expert_std"] == pytest.approx(0.0, abs=1e-6)
    for name in ("maxcos", "l2"):
        assert m[f"spread/{name}/margin_policy"] == pytest.approx(0.0, abs=1e-6)
        assert m[f"spread/{name}/margin_deviate"] > 0 and m[f"spread/{name}/margin_random"] > 0
        assert m[f"spread/{name}/deviate_mean"] < m[f"spread/{name}/expert_mean"]


def test_reward_spread_statistics_match_numpy():
    """A policy that always deviates (action 0): its per-step rewards recomputed in numpy
    give the logged mean, std, quantiles and the pooled-std margin."""
    start, actions, nxt = _expert(8, 3, seed=2)
    m = jax.device_get(probes.reward_spread(
        img_step, start, actions, nxt, jax.random.key(1), num_actions=NUM_ACTIONS,
        action_dim=ACTION_DIM, policy=_always(0), rewards=("l2",)))
    h = np.asarray(start["deter"])
    r = []
    for k in range(3):
        h = 0.9 * h + _MOVES[0]
        r.append(-np.linalg.norm(h - np.asarray(nxt["deter"][:, k]), axis=-1))
    r = np.stack(r)
    assert m["spread/l2/policy_mean"] == pytest.approx(r.mean(), rel=1e-4)
    assert m["spread/l2/policy_std"] == pytest.approx(r.std(), rel=1e-4)
    assert m["spread/l2/policy_q50"] == pytest.approx(np.quantile(r, 0.5), rel=1e-4)
    assert m["spread/l2/policy_q90"] == pytest.approx(np.quantile(r, 0.9), rel=1e-4)
    pooled = np.sqrt((0.0 + r.var()) / 2)       # the expert's l2 rewards are all 0
    assert m["spread/l2/margin_policy"] == pytest.approx((0.0 - r.mean()) / pooled, rel=1e-3)


def test_nearest_distance_matches_brute_force_in_chunks():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(37, 5)).astype(np.float32) * 3 + 10
    queries = np.concatenate([rng.normal(size=(6, 5)).astype(np.float32) * 3 + 10,
                              bank[[4, 30]]])        # two queries ON bank rows
    ref = np.sqrt(((queries[:, None] - bank[None]) ** 2).sum(-1)).min(-1)
    for chunk in (1, 8, 37, 100):                   # padding, exact fit, one chunk
        got = np.asarray(probes.nearest_distance(jnp.asarray(queries), jnp.asarray(bank),
                                                 chunk=chunk))
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-3)
    assert got[-1] < 2e-3 and got[-2] < 2e-3


def test_drift_matches_a_numpy_rollout():
    """Policy fixed at action 2 from 3 starts for L = 6 steps; the bank is the expert's
    states; the curve is the per-step mean nearest distance computed by brute force."""
    start, _, nxt = _expert(3, 6, seed=4)
    bank = np.asarray(nxt["deter"]).reshape(-1, D)
    curve = jax.jit(lambda key: probes.drift(img_step, _always(2), start, jnp.asarray(bank),
                                             key, length=6, action_dim=ACTION_DIM, chunk=5))(
        jax.random.key(0))
    h, ref = np.asarray(start["deter"]), []
    for _ in range(6):
        h = 0.9 * h + _MOVES[2]
        ref.append(np.sqrt(((h[:, None] - bank[None]) ** 2).sum(-1)).min(-1).mean())
    np.testing.assert_allclose(np.asarray(curve), ref, rtol=1e-4, atol=1e-3)
    # The expert's own action stays on the bank: drift 0 (up to float32).
    on = probes.drift(img_step, _always(1), start, jnp.asarray(bank), jax.random.key(0),
                      length=6, action_dim=ACTION_DIM)
    assert float(jnp.max(on)) < 2e-3 < float(np.min(ref))


@pytest.mark.parametrize("d_exp,d_agent,collapsed,dominant", [
    (0.79, 0.19, 0, 1),      # the demo's silent failure (SPEC §11): now raised
    (0.995, 0.005, 1, 1),    # saturated
    (0.5, 0.5, 1, 0),        # learns nothing
    (0.62, 0.41, 0, 0),      # a contested game: no alarm
    (0.55, 0.48, 0, 0),
])
def test_dgail_alarms(d_exp, d_agent, collapsed, dominant):
    from ditto_jax import methods
    m = methods.get("dgail").host_metrics(None, {"disc_expert": d_exp, "disc_agent": d_agent})
    assert (m["disc_collapsed"], m["disc_dominant"]) == (collapsed, dominant)
    assert m["disc_alarm"] == float(collapsed or dominant)
    assert m["disc_gap"] == pytest.approx(d_exp - d_agent)


def test_dgail_dominance_fires_when_the_policy_does_not_imitate():
    """A constructed failure in the toy world: the actor is frozen at its random init
    (train_actor False), so its imagined transitions never become the expert's; the real
    discriminator learns to separate them without saturating, and the alarm rises."""
    from ditto_jax import methods
    from tests.test_imitation_steps import (_config, _expert_batch, discriminator,
                                            imagination_step, init_state)
    config = _config(disc_lr=3e-3)
    state = init_state(config, discriminator)
    step = imagination_step(config, discriminator)
    rng = np.random.default_rng(0)
    alarms = []
    for i in range(120):
        batch = dict(_expert_batch(rng, 64, config.horizon), train_actor=False)
        state, m = step(state, batch, jax.random.key(i))
        if i in (0, 119):
            alarms.append(methods.get("dgail").host_metrics(config, jax.device_get(m)))
    assert alarms[0]["disc_alarm"] == 0.0          # an untrained discriminator: silent
    assert alarms[-1]["disc_dominant"] == 1.0 and alarms[-1]["disc_collapsed"] == 0.0


def test_drift_script_spearman():
    """benchmarks/drift.py ranks by -drift: less drift with more agreement is rho = 1."""
    import importlib.util
    import os
    from tests.conftest import REPO
    spec = importlib.util.spec_from_file_location(
        "drift_script", os.path.join(REPO, "benchmarks", "drift.py"))
    drift = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(drift)
    d = {"a": 1.0, "b": 2.0, "c": 3.0, "x": 9.0}
    assert drift.spearman(d, {"a": 0.9, "b": 0.8, "c": 0.7})["rho"] == pytest.approx(1.0)
    assert drift.spearman(d, {"a": 0.7, "b": 0.8, "c": 0.9})["rho"] == pytest.approx(-1.0)
    assert drift.spearman(d, {"a": 0.7, "b": 0.8})["rho"] is None


def test_drift_script_reads_agreement_from_a_runs_eval_folder(tmp_path):
    """`--agreement RUN/eval`: each policy's eval file, references and rows without
    agreement skipped; an empty folder is a clear error."""
    import importlib.util
    import json
    import os

    from ditto_jax.errors import DittoError
    from tests.conftest import REPO
    spec = importlib.util.spec_from_file_location(
        "drift_script", os.path.join(REPO, "benchmarks", "drift.py"))
    drift = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(drift)
    for name, r in {"dbc": {"expert_agreement": 0.8}, "ditto-s1": {"expert_agreement": 0.7},
                    "expert": {"return_mean": 3.0}, "bc": {"expert_agreement": None}}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
    (tmp_path / "notes.txt").write_text("x")
    assert drift.read_agreement(str(tmp_path)) == {"dbc": 0.8, "ditto-s1": 0.7}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DittoError, match="No evaluation with on-policy agreement"):
        drift.read_agreement(str(empty))


def test_dgail_alarm_is_judged_over_the_collapse_window_and_reported():
    """The demo's D-GAIL played at random level with no report anywhere: the alarm was in
    metrics.jsonl only, judged per logged update. Now a row carries, per seed, the
    fraction of alarmed logs in the last `collapse_window` updates, and results.md says
    so; a method that logs no alarm carries none."""
    from ditto_jax.pipeline.results import windowed_alarm
    ms = [{"step": s, "disc_alarm": a} for s, a in
          [(50, 0.0), (100, 0.0), (150, 1.0), (200, 1.0), (250, 0.0), (300, 1.0)]]
    assert windowed_alarm(ms, 300, 100) == pytest.approx(1 / 2)   # logs at 250 and 300
    assert windowed_alarm(ms, 300, 160) == pytest.approx(3 / 4)   # 150, 200, 250, 300
    assert windowed_alarm(ms, 300, 0) == 1.0                       # the last log alone
    assert windowed_alarm([{"step": 10, "entropy": 1.0}], 10, 50) is None
    assert windowed_alarm(ms, None, 50) is None


def test_results_md_names_a_failed_adversarial_run():
    from ditto_jax.report.run_results import results_markdown
    row = {"method": "dgail", "base_method": "dgail", "label": "D-GAIL", "rule": "sample",
           "checkpoint": "final", "seeds": [0, 1], "episodes": 4, "returns": [-20.0] * 4,
           "return_mean": -20.0, "return_se": 0.0, "length_mean": 900.0, "iqm": -20.0,
           "iqm_ci": [-20.0, -20.0], "expert_normalized_iqm": 0.0,
           "expert_normalized_ci": [0.0, 0.0], "disc_alarm": [1.0, 0.0]}
    ref = dict(row, method="expert", base_method="expert", label="Expert",
               source="tracker", disc_alarm=None)
    results = {"game": "pong", "preset": "smoke", "seeds": [0, 1], "expert_episodes": 0,
               "protocol": "ditto", "max_steps": 100, "episodes_per_seed": 2,
               "rows": [ref, row], "wall_time_s": 60.0, "stage_seconds": {"eval": 60.0}}
    md = results_markdown(results)
    assert "**Adversarial training failed**" in md
    assert "- D-GAIL (sample): seeds 0 1.00, 1 0.00" in md
    row["disc_alarm"] = [0.0, 0.0]
    assert "Adversarial training failed" not in results_markdown(results)
