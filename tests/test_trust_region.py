"""DITTO (BC trust region), `ditto_bctr`: its loss term against hand-computed references
on the toy latent world of test_imitation_steps, and a tiny end-to-end run."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ditto_jax import methods
from ditto_jax.agents import imitation
from ditto_jax.methods.trust_region import expert_nll
from tests.conftest import REPO, run_cli
from tests.test_imitation_steps import (ACTION_DIM, NUM_ACTIONS, _config, _expert_batch,
                                        feat, img_step, init_state, latent_reward)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _steps(config):
    """(DITTO's step, ditto_bctr's step) on the toy world, jitted."""
    kw = dict(img_step=img_step, feat=feat, num_actions=NUM_ACTIONS, action_dim=ACTION_DIM)
    return (jax.jit(imitation.make_imagination_step(config, reward_model=latent_reward(config),
                                                    **kw)),
            jax.jit(methods.get("ditto_bctr").make_step(config, **kw)))


def _batch(seed, size=32, horizon=5):
    rng = np.random.default_rng(seed)
    batch = _expert_batch(rng, size, horizon)
    batch["action"] = jnp.asarray(rng.integers(0, NUM_ACTIONS, size), jnp.int32)
    return batch


def test_expert_nll_and_its_gradient_match_a_hand_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    actions = np.array([0, 3, 1, 1, 2])
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    nll = -np.log(p[np.arange(5), actions]).mean()
    assert float(expert_nll(jnp.asarray(logits), jnp.asarray(actions))) == pytest.approx(
        nll, rel=1e-5)
    grad = jax.grad(expert_nll)(jnp.asarray(logits), jnp.asarray(actions))
    np.testing.assert_allclose(grad, (p - np.eye(4)[actions]) / 5, rtol=1e-5, atol=1e-7)


def test_bc_weight_zero_is_ditto_update_for_update():
    config = _config(bc_weight=0.0, bc_init_steps=0, critic_warmup_steps=0)
    ditto, bctr = _steps(config)
    a = b = init_state(config)
    for i in range(4):
        batch = _batch(i)
        a, ma = ditto(a, {k: batch[k] for k in ("start", "expert")}, jax.random.key(i))
        b, mb = bctr(b, batch, jax.random.key(i))
        for x, y in zip(_leaves(a), _leaves(b)):
            np.testing.assert_array_equal(x, y)
        for k in ma:
            np.testing.assert_array_equal(ma[k], mb[k], err_msg=k)
    assert int(mb["phase"]) == 2 and np.isfinite(float(mb["trust_nll"]))


def test_the_trust_region_adds_bc_weight_times_the_gradient_of_minus_log_pi():
    """One update with Adam's eps >> |g| moves each parameter by -g: the actor's move with
    weight w minus its move with weight 0 is -w * grad of -log pi(a_E | s_E), computed here
    from softmax probabilities; the critic's update does not change."""
    w = 0.7
    batch = _batch(3)
    moves, metrics, critics = {}, {}, {}
    for weight in (0.0, w):
        config = _config(bc_weight=weight, bc_init_steps=0, critic_warmup_steps=0,
                         lr=1e3, eps=1e3, clip=1e9)
        state = init_state(config)
        _, bctr = _steps(config)
        new, metrics[weight] = bctr(state, batch, jax.random.key(5))
        moves[weight] = jax.tree.map(lambda n, o: n - o, new.actor, state.actor)
        critics[weight] = new.critic
    apply = imitation.policy_logits(config, NUM_ACTIONS)

    def minus_log_pi(params):
        probs = jax.nn.softmax(apply(params, feat(batch["start"])))
        return -jnp.log(probs[jnp.arange(32), batch["action"]]).mean()
    nll, grad = jax.value_and_grad(minus_log_pi)(state.actor)
    assert float(metrics[w]["trust_nll"]) == pytest.approx(float(nll), rel=1e-5)
    got = jax.tree.map(lambda a, b: -(a - b) / w, moves[w], moves[0.0])
    for g, ref in zip(_leaves(got), _leaves(grad)):
        np.testing.assert_allclose(g, ref, rtol=2e-2, atol=2e-5)
    assert max(float(np.abs(r).max()) for r in _leaves(grad)) > 1e-3   # not a zero test
    for x, y in zip(_leaves(critics[0.0]), _leaves(critics[w])):
        np.testing.assert_array_equal(x, y)


def test_bad_bc_weight_is_named(tmp_path):
    from ditto_jax.core.config import load_config
    from ditto_jax.errors import DittoError
    from ditto_jax.stages.train_policy import resolve
    config = load_config(os.path.join(REPO, "experiments/configs/policy.py:tiny"),
                         ["--config.bc_weight=-1.0"])
    with pytest.raises(DittoError, match="bc_weight"):
        resolve(config, "ditto_bctr")
    assert methods.label("ditto_bctr") == "DITTO (BC trust region)"


@pytest.mark.slow  # 6-7 min here; the update maths is pinned by the tests above
def test_ditto_bctr_trains_end_to_end(tiny_wm, pong_dataset, tmp_path):
    """Also exercises the offline probes in train-policy and the two probe scripts."""
    root, tmp_path = tmp_path, tmp_path / "policies" / "bctr"
    proc = run_cli("train-policy", "--method", "ditto_bctr", "--config",
                   os.path.join(REPO, "experiments/configs/policy.py:tiny"), "--wm", tiny_wm,
                   "--expert", pong_dataset, "--workdir", tmp_path, "--steps", 8, "--quiet",
                   "--config.eval_every=0", "--config.log_every=1", "--config.bc_init_steps=2",
                   "--config.critic_warmup_steps=2", "--config.bc_weight=0.5",
                   "--config.probe_every=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    train = {r["step"]: r for r in rows if "phase" in r}
    assert [int(train[s]["phase"]) for s in range(1, 9)] == [0, 0, 1, 1, 2, 2, 2, 2]
    for s in (5, 8):    # the trust region is on in the DITTO phase, for the whole of it
        assert np.isfinite(train[s]["trust_nll"]) and train[s]["trust_nll"] > 0
    assert json.load(open(tmp_path / "config.json"))["config"]["bc_weight"] == 0.5
    # The offline probes (stages/policy_probes.py) at every 4th update: reward spread for
    # maxcos and l2 (the tiny preset's reward is maxcos) and the Eq. 7 drift.
    for s in (4, 8):
        probe = {k: v for k, v in train[s].items() if k.startswith(("spread/", "drift_"))}
        for name in ("maxcos", "l2"):
            for key in ("expert_mean", "expert_std", "deviate_q50", "random_q90",
                        "policy_mean", "margin_deviate", "margin_random", "margin_policy"):
                assert np.isfinite(probe[f"spread/{name}/{key}"]), (s, name, key)
        assert -1 <= probe["spread/maxcos/expert_mean"] <= 1
        assert probe["spread/l2/expert_mean"] <= 0
        assert probe["drift_mean"] >= 0 and probe["drift_last"] >= 0
        assert probe["drift_expert"] >= 0
    assert not any(k.startswith("spread/") for k in train[3])
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "drift.py"),
                           "--policies", str(root / "policies"), "--length", "6", "--batch",
                           "4", "--out", str(root / "drift.json")],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scored = json.load(open(root / "drift.json"))["policies"]["bctr"]
    assert scored["method"] == "ditto_bctr" and scored["drift_mean"] >= 0
    assert np.isfinite(scored["spread/l2/margin_policy"])
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks",
                                                        "reward_spread.py"),
                           "--wm", tiny_wm, "--expert", pong_dataset, "--horizon", "3",
                           "--batch", "8", "--out", str(root / "spread.json")],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    spread = json.load(open(root / "spread.json"))["results"]
    assert set(spread) == {"maxcos", "l2"} and spread["l2"]["expert_mean"] <= 0
    assert all(np.isfinite(v) for r in spread.values() for v in r.values())
    proc = run_cli("train-policy", "--method", "ditto_bctr", "--config",
                   os.path.join(REPO, "experiments/configs/policy.py:tiny"), "--wm", tiny_wm,
                   "--expert", pong_dataset, "--workdir", tmp_path / "bad", "--steps", 2,
                   "--quiet", "--config.bc_weight=-2.0")
    assert proc.returncode == 2 and "bc_weight" in proc.stderr and "Traceback" not in proc.stderr
