"""Actor-critic in imagination: DITTO and D-GAIL share it (SPEC §3, §4).

Pure maths: the world model enters only as two functions,
`img_step(state, action_onehot, key) -> state` (a prior step) and
`feat(state) -> (B, F)`, so this module never touches jit, devices or files.

Time alignment. From the expert's posterior state s_0 = s^E_t the agent acts
a_k ~ pi(.|s_k) and the prior gives s_{k+1}, k = 0..H-1. The reward for a_k
compares s_{k+1} with the expert latent at the same offset, e_{k+1} =
s^E_{t+k+1}. With r_k, v_k = v(s_k) and bootstrap v(s_H):
  V_k = r_k + gamma ((1 - lam) v_{k+1} + lam V_{k+1}),
  actor loss  -log pi(a_k|s_k) sg(V_k - v_k) - eta H[pi(.|s_k)],
  critic loss 0.5 (v_k - sg(V_k))^2,
with the bootstrap values taken from a target critic.
"""
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from ditto_jax.agents.returns import lambda_returns


class MLP(nn.Module):
    """`layers` x `units` hidden layers (ReLU in the authors' code) and a linear head."""
    units: int
    layers: int
    out: int
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x):
        for _ in range(self.layers):
            x = self.act(nn.Dense(self.units)(x))
        return nn.Dense(self.out)(x)


class Actor(nn.Module):
    num_actions: int
    units: int = 256
    layers: int = 8

    @nn.compact
    def __call__(self, feat):
        return MLP(self.units, self.layers, self.num_actions)(feat)  # logits


class Critic(nn.Module):
    units: int = 256
    layers: int = 8

    @nn.compact
    def __call__(self, feat):
        return MLP(self.units, self.layers, 1)(feat)[..., 0]


def entropy_from_logits(logits):
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def reinforce_loss(logits, actions, advantages, eta):
    """Mean of -log pi(a|s) sg(A) - eta H[pi(.|s)]; also returns the entropy."""
    logp = jax.nn.log_softmax(logits)
    logp_a = jnp.take_along_axis(logp, actions[..., None], axis=-1)[..., 0]
    ent = entropy_from_logits(logits)
    loss = -logp_a * jax.lax.stop_gradient(advantages) - eta * ent
    return loss.mean(), ent.mean()


def standardize(x, eps=1e-8):
    return (x - x.mean()) / (x.std() + eps)


def rollout(actor_apply, actor_params, img_step, feat, start, horizon, action_dim, key):
    """Rolls the policy for `horizon` prior steps with `lax.scan`, keeping its logits.

    Returns (logits (H, B, A), (states, feats (H+1, B, F), actions (H, B))), time-major;
    states is a dict of (H+1, B, ...) arrays including the start state. The logits are
    differentiable in `actor_params` (the actor's inputs and the prior steps are not):
    an update takes its actor gradient through them with `jax.vjp`, so the actor runs
    forward once per update, here, and not again in the loss.
    """

    def step(carry, step_key):
        state = carry
        act_key, dyn_key = jax.random.split(step_key)
        logits = actor_apply(actor_params, jax.lax.stop_gradient(feat(state)))
        action = jax.random.categorical(act_key, jax.lax.stop_gradient(logits))
        onehot = jax.nn.one_hot(action, action_dim)  # padded to the world model's input
        next_state = jax.tree.map(jax.lax.stop_gradient, img_step(state, onehot, dyn_key))
        return next_state, (next_state, action, logits)

    keys = jax.random.split(key, horizon)
    _, (states, actions, logits) = jax.lax.scan(step, start, keys)
    states = jax.tree.map(lambda s0, s: jnp.concatenate([s0[None], s], 0), start, states)
    feats = jax.vmap(feat)(states)
    return logits, (states, feats, actions)


def imagine(actor_apply, actor_params, img_step, feat, start, horizon, num_actions, action_dim,
            key):
    """`rollout` without the logits: (states, feats (H+1, B, F), actions (H, B))."""
    del num_actions
    _, (states, feats, actions) = rollout(actor_apply, actor_params, img_step, feat, start,
                                          horizon, action_dim, key)
    return states, feats, actions


def entropy_coef(config, step):
    """eta at update `step`: `entropy`, or linear from `entropy` to `entropy_final` over
    `entropy_decay_steps` updates (entropy_final < 0: constant)."""
    eta0 = float(config.entropy)
    final = float(config.get("entropy_final", -1.0))
    decay = int(config.get("entropy_decay_steps", 0))
    if final < 0 or decay <= 0:
        return jnp.asarray(eta0, jnp.float32)
    frac = jnp.minimum(step.astype(jnp.float32) / decay, 1.0)
    return eta0 + (final - eta0) * frac


def actor_critic_losses(actor_params, critic_params, target_params, actor_apply, critic_apply,
                        feats, actions, rewards, config, *, eta=None, first_q=None):
    """Losses and metrics given an imagined trajectory and its rewards (time-major).

    feats (H+1, B, F), actions (H, B), rewards (H, B). The actor runs on feats[:-1];
    `losses_from_logits` has the maths (and `first_q`).
    """
    logits = actor_apply(actor_params, jax.lax.stop_gradient(feats[:-1]))
    return losses_from_logits(logits, critic_params, target_params, critic_apply, feats,
                              actions, rewards, config, eta=eta, first_q=first_q)


def losses_from_logits(logits, critic_params, target_params, critic_apply, feats, actions,
                       rewards, config, *, eta=None, first_q=None):
    """Actor loss, critic loss and metrics from the actor's logits (H, B, A) at s_0..s_{H-1}.

    feats (H+1, B, F), actions (H, B), rewards (H, B). `first_q` (B, A), when given, holds
    one-step action values Q(s_0, a) = r(a) + gamma v(s_1^a) of EVERY action at the first
    imagined step; the actor then takes the exact expected gradient there,
    -sum_a pi(a|s_0) sg(Q(s_0, a) - sum_a' pi(a'|s_0) Q(s_0, a')), instead of REINFORCE
    on the one sampled action. Both terms share the advantage scale (standardisation).
    """
    eta = config.entropy if eta is None else eta
    feats = jax.lax.stop_gradient(feats)
    values_target = critic_apply(target_params, feats)          # (H+1, B)
    returns = lambda_returns(rewards, values_target[:-1], values_target[-1],
                             gamma=config.gamma, lam=config.lam)  # (H, B)
    values = critic_apply(critic_params, feats[:-1])
    critic_loss = 0.5 * jnp.mean(jnp.square(values - jax.lax.stop_gradient(returns)))
    raw_adv = returns - values_target[:-1]
    scale = raw_adv.std() + 1e-8 if config.standardize_advantages else 1.0
    advantages = (raw_adv - raw_adv.mean()) / scale if config.standardize_advantages \
        else raw_adv
    if first_q is None:
        actor_loss, ent = reinforce_loss(logits, actions, advantages, eta)
    else:
        # Steps k >= 1 by REINFORCE, step 0 by the exact expectation over actions.
        horizon = logits.shape[0]
        pg, ent_all = _reinforce_terms(logits[1:], actions[1:], advantages[1:])
        probs0 = jax.nn.softmax(logits[0])
        q = jax.lax.stop_gradient(first_q)
        adv0 = (q - jnp.sum(jax.lax.stop_gradient(probs0) * q, -1, keepdims=True)) / scale
        pg0 = -jnp.sum(probs0 * adv0, -1)                               # (B,)
        ent0 = entropy_from_logits(logits[0])
        ent = (ent0.sum() + ent_all.sum()) / (horizon * ent0.shape[0])
        actor_loss = (pg0.sum() + pg.sum()) / (horizon * ent0.shape[0]) - eta * ent
    metrics = {
        "actor_loss": actor_loss, "critic_loss": critic_loss, "entropy": ent,
        "return_mean": returns.mean(), "value_mean": values.mean(),
        "advantage_std": raw_adv.std(), "eta": jnp.asarray(eta, jnp.float32),
    }
    return actor_loss, critic_loss, metrics


def _reinforce_terms(logits, actions, advantages):
    """Per-step -log pi(a|s) sg(A) and entropies, unreduced."""
    logp = jax.nn.log_softmax(logits)
    logp_a = jnp.take_along_axis(logp, actions[..., None], axis=-1)[..., 0]
    return -logp_a * jax.lax.stop_gradient(advantages), entropy_from_logits(logits)
