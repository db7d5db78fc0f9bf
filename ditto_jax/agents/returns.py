"""Lambda-returns as a reverse `lax.scan` (SPEC §3, step 5)."""
import chex
import jax
import jax.numpy as jnp


def lambda_returns(rewards, values, bootstrap, *, gamma, lam, discounts=None):
    """V_k = r_k + gamma d_k ((1 - lam) v_{k+1} + lam V_{k+1}), with V_H = bootstrap.

    rewards, values: (H, B) time-major, values[k] = v(s_k); bootstrap: (B,) = v(s_H).
    discounts: optional (H, B) continuation flags (1 = continue). Returns (H, B).
    """
    chex.assert_rank(rewards, 2)
    chex.assert_equal_shape([rewards, values])
    chex.assert_shape(bootstrap, rewards.shape[1:])
    if discounts is None:
        discounts = jnp.ones_like(rewards)
    chex.assert_equal_shape([rewards, discounts])
    next_values = jnp.concatenate([values[1:], bootstrap[None]], axis=0)

    def step(next_return, inputs):
        reward, discount, next_value = inputs
        ret = reward + gamma * discount * ((1 - lam) * next_value + lam * next_return)
        return ret, ret

    _, returns = jax.lax.scan(step, bootstrap, (rewards, discounts, next_values), reverse=True)
    return returns
