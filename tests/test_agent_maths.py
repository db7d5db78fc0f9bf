"""Imitation rewards and lambda-returns against direct references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ditto_jax.agents import rewards
from ditto_jax.agents.returns import lambda_returns


def test_maxcos_range_symmetry_and_identity():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1000, 16)).astype(np.float32)
    b = rng.normal(size=(1000, 16)).astype(np.float32) * rng.uniform(0.1, 3, size=(1000, 1))
    r = np.asarray(rewards.maxcos(a, b))
    assert np.all(r >= -1 - 1e-6) and np.all(r <= 1 + 1e-6)
    np.testing.assert_allclose(r, np.asarray(rewards.maxcos(b, a)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(rewards.maxcos(a, a)), 1.0, rtol=1e-6)
    assert np.all(r < 1 - 1e-4)
    # Same direction, different length: cosine says 1, maxcos does not.
    assert float(rewards.cosine(a[0], 2 * a[0])) == pytest.approx(1.0, abs=1e-6)
    assert float(rewards.maxcos(a[0], 2 * a[0])) == pytest.approx(0.5, abs=1e-6)
    ref = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)) ** 2
    np.testing.assert_allclose(r, ref, rtol=1e-4, atol=1e-6)


def test_l2_sparse_and_latent_parts():
    a = jnp.array([[0.0, 0.0], [3.0, 4.0]])
    b = jnp.zeros((2, 2))
    np.testing.assert_allclose(rewards.l2(a, b), [0.0, -5.0], atol=1e-6)
    np.testing.assert_allclose(rewards.sparse(a, b, 1.0), [1.0, 0.0])
    state = {"deter": jnp.ones((2, 3)), "stoch": jnp.zeros((2, 4, 5))}
    assert rewards.latent_part(state, "h").shape == (2, 3)
    assert rewards.latent_part(state, "z").shape == (2, 20)
    assert rewards.latent_part(state, "h+z").shape == (2, 23)
    with pytest.raises(ValueError, match="latent part"):
        rewards.latent_part(state, "x")


def test_lambda_returns_match_numpy_loop():
    rng = np.random.default_rng(1)
    horizon, batch, gamma, lam = 15, 7, 0.95, 0.95
    r = rng.normal(size=(horizon, batch)).astype(np.float32)
    v = rng.normal(size=(horizon, batch)).astype(np.float32)
    d = (rng.uniform(size=(horizon, batch)) > 0.1).astype(np.float32)
    boot = rng.normal(size=(batch,)).astype(np.float32)
    got = np.asarray(jax.jit(lambda *x: lambda_returns(*x[:3], discounts=x[3], gamma=gamma,
                                                       lam=lam))(r, v, boot, d))
    ref = np.zeros_like(r)
    nxt = boot
    for k in reversed(range(horizon)):
        next_value = v[k + 1] if k + 1 < horizon else boot
        nxt = r[k] + gamma * d[k] * ((1 - lam) * next_value + lam * nxt)
        ref[k] = nxt
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # lam = 0 is one-step TD; lam = 1 is the discounted Monte-Carlo sum + bootstrap.
    td = np.asarray(lambda_returns(r, v, boot, gamma=gamma, lam=0.0))
    np.testing.assert_allclose(td, r + gamma * np.concatenate([v[1:], boot[None]]), rtol=1e-5)
    mc = np.asarray(lambda_returns(r, v, boot, gamma=gamma, lam=1.0))
    disc = gamma ** np.arange(horizon)
    np.testing.assert_allclose(mc[0], (disc[:, None] * r).sum(0) + gamma ** horizon * boot,
                               rtol=1e-4)



def test_maths_refuse_mismatched_shapes_with_chex():
    """The returns, rewards and RSSM steps check their shapes (chex), naming them."""
    from ditto_jax.agents.rewards import imitation_reward
    r = jnp.zeros((5, 3))
    with pytest.raises(AssertionError, match="shape"):
        lambda_returns(r, jnp.zeros((5, 4)), jnp.zeros(3), gamma=0.9, lam=0.9)
    with pytest.raises(AssertionError, match="shape"):
        lambda_returns(r, r, jnp.zeros(4), gamma=0.9, lam=0.9)
    with pytest.raises(AssertionError):
        imitation_reward("maxcos", jnp.zeros((2, 8)), jnp.zeros((2, 9)))
    # Broadcasting over leading axes stays allowed (benchmarks/action_gap.py relies on it).
    assert imitation_reward("l2", jnp.zeros((4, 2, 8)), jnp.zeros((1, 2, 8))).shape == (4, 2)

def test_entropy_and_reinforce_match_hand_computed_values():
    from ditto_jax.agents.actor_critic import entropy_from_logits, reinforce_loss
    logits = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    ent = np.asarray(entropy_from_logits(logits))
    np.testing.assert_allclose(ent, [-(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25)),
                                     -(2 * 0.1 * np.log(0.1) + 0.8 * np.log(0.8))], rtol=1e-5)
    actions = jnp.array([0, 2])
    adv = jnp.array([2.0, -1.0])
    loss, mean_ent = reinforce_loss(logits, actions, adv, eta=0.05)
    hand = np.mean([-np.log(0.5) * 2.0, -np.log(0.8) * -1.0]) - 0.05 * ent.mean()
    np.testing.assert_allclose(float(loss), hand, rtol=1e-5)
    # The advantage is a constant: its gradient flows only through log pi.
    g = jax.grad(lambda a: reinforce_loss(logits, actions, a, 0.05)[0])(adv)
    np.testing.assert_allclose(np.asarray(g), 0.0)


def test_imagination_scan_equals_python_loop():
    from ditto_jax.agents.actor_critic import imagine
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    dyn = jnp.asarray(rng.normal(size=(4 + 5, 4)) * 0.3, jnp.float32)

    def actor_apply(params, feat):
        return feat @ params

    def img_step(state, onehot, key):
        noise = jax.random.normal(key, state["deter"].shape) * 0.01
        x = jnp.concatenate([state["deter"], onehot], -1)
        return {"deter": jnp.tanh(x @ dyn) + noise, "stoch": state["stoch"] + 1}

    def feat(state):
        return jnp.concatenate([state["deter"], state["stoch"]], -1)

    start = {"deter": jnp.asarray(rng.normal(size=(5, 4)), jnp.float32),
             "stoch": jnp.zeros((5, 2))}
    key = jax.random.key(3)
    states, feats, actions = imagine(actor_apply, w, img_step, feat, start, 7, 3, 5, key)
    assert feats.shape == (8, 5, 6) and actions.shape == (7, 5)
    state, ref_feats, ref_actions = start, [feat(start)], []
    for step_key in jax.random.split(key, 7):
        act_key, dyn_key = jax.random.split(step_key)
        action = jax.random.categorical(act_key, actor_apply(w, feat(state)))
        state = img_step(state, jax.nn.one_hot(action, 5), dyn_key)
        ref_feats.append(feat(state))
        ref_actions.append(action)
    np.testing.assert_array_equal(np.asarray(actions), np.stack(ref_actions))
    np.testing.assert_allclose(np.asarray(feats), np.stack(ref_feats), rtol=1e-5, atol=1e-6)
