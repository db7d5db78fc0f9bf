"""Imitation rewards in world-model latent space (SPEC §3, step 4).

Every reward compares the agent's latent after k imagined steps with the
expert's latent at the same offset. All functions take (..., D) arrays and
return (...) rewards.

`LatentReward` is the reward model of DITTO's imagination step (agents/imitation.py):
a fixed function of the agent's and the expert's latents, with no state. D-GAIL plugs a
learned one into the same step instead (agents/discriminator.py). A reward model has
  learned                      False here: `score` exists (used by first_step=all_actions)
  init(state, key, part_dim)   the agent's train state, extended by the model's own
                               part (nothing here)
  rewards(state, agent, expert) -> (state, rewards (H, B), metrics), from the compared
                               latents (H+1, B, D) of s_0..s_H and s^E_t..s^E_{t+H}
"""
import chex
import jax.numpy as jnp

LATENT_REWARDS = ("maxcos", "cosine", "l2", "sparse")
LATENT_PARTS = ("h", "z", "h+z")

_EPS = 1e-8


def maxcos(a, b):
    """(a . b) / max(|a|, |b|)^2: in [-1, 1], and 1 only when a == b.

    Unlike cosine it also penalises a length mismatch, so the agent must match
    the expert's latent, not just its direction.
    """
    dot = jnp.sum(a * b, axis=-1)
    norm = jnp.maximum(jnp.linalg.norm(a, axis=-1), jnp.linalg.norm(b, axis=-1))
    return dot / jnp.maximum(norm ** 2, _EPS)


def cosine(a, b):
    dot = jnp.sum(a * b, axis=-1)
    return dot / jnp.maximum(jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1), _EPS)


def l2(a, b):
    """Negative Euclidean distance."""
    return -jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(a - b), axis=-1), 0.0) + 0.0)


def sparse(a, b, threshold):
    """SQIL-style indicator: 1 when the agent is within `threshold` (L2) of the expert."""
    return (jnp.linalg.norm(a - b, axis=-1) <= threshold).astype(a.dtype)


def latent_part(state, part):
    """Selects the compared part of an RSSM state dict {deter, stoch}: h, z or h+z."""
    h = state["deter"]
    z = state["stoch"].reshape(state["stoch"].shape[:-2] + (-1,))
    if part == "h":
        return h
    if part == "z":
        return z
    if part == "h+z":
        return jnp.concatenate([h, z], axis=-1)
    raise ValueError(f"latent part must be one of {LATENT_PARTS}, got {part!r}")


def imitation_reward(kind, agent, expert, *, threshold=None):
    """The latent reward `kind` (one of LATENT_REWARDS) of agent against expert latents."""
    chex.assert_equal_shape_suffix([agent, expert], 1)  # the same latent part (D)
    if kind == "maxcos":
        return maxcos(agent, expert)
    if kind == "cosine":
        return cosine(agent, expert)
    if kind == "l2":
        return l2(agent, expert)
    if kind == "sparse":
        if threshold is None:
            raise ValueError("the sparse reward needs a threshold")
        return sparse(agent, expert, threshold)
    raise ValueError(f"reward must be one of {LATENT_REWARDS}, got {kind!r}")


class LatentReward:
    """r_k = kind(agent latent at k+1, expert latent at k+1) (SPEC §3, step 4)."""
    learned = False

    def __init__(self, kind, threshold=None):
        if kind not in LATENT_REWARDS:
            raise ValueError(f"reward must be one of {LATENT_REWARDS}, got {kind!r}")
        if kind == "sparse" and threshold is None:
            raise ValueError("the sparse reward needs a threshold")
        self.kind, self.threshold = kind, threshold

    def init(self, state, key, part_dim):
        del key, part_dim
        return state

    def score(self, agent, expert):
        return imitation_reward(self.kind, agent, expert, threshold=self.threshold)

    def rewards(self, state, agent, expert):
        return state, self.score(agent[1:], expert[1:]), {}
