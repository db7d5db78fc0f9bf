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
