"""The policy stage's offline probes (agents/probes.py) on held-out expert starts, logged
with train-policy's metrics every `probe_every` updates and at the last one:

  spread/{maxcos,l2,<reward in use>}/...  per-step imagined rewards of the expert's
        actions, one deviating first action, random actions and the policy's own actions,
        and their margins in pooled-std units (the saturation the DITTO_AV port hit)
  drift_mean, drift_last  the paper's Eq. 7 distance: the policy rolled `drift_length`
        imagined steps from held-out expert starts, mean latent distance to the nearest
        TRAINING expert latent (over the L steps, and at step L)
  drift_expert  the same distance for the held-out expert's own latents: the floor

The starts and all noise are fixed per seed, so the values move only with the policy.
"""
import jax
import jax.numpy as jnp
import numpy as np

from ditto_jax.agents import probes
from ditto_jax.agents import rewards as reward_lib
from ditto_jax.models.rssm import get_feat
from ditto_jax.models.world_model import WorldModel

def spread_rewards(config):
    """maxcos and l2 always (the lead's comparison), plus the latent reward in use."""
    reward = config.get("reward")           # absent for a learned reward (D-GAIL)
    extra = (reward,) if reward in reward_lib.LATENT_REWARDS else ()
    return tuple(dict.fromkeys(probes.SPREAD_REWARDS + extra))


def make_policy_probes(config, ctx, actor_apply, wm_params, train_latents, held_latents,
                       held_store, *, seed=0):
    """`probe(actor_params) -> dict of floats`, or None when nothing is held out, the
    method does not act on latents (`actor_apply` None) or `config.probe_every` is 0.
    One jitted program, compiled on its first call."""
    every = int(config.get("probe_every", 0) or 0)
    if (every <= 0 or actor_apply is None or held_latents is None or held_store is None
            or ctx.wm_model is None):
        return None
    horizon, length = int(config.horizon), int(config.get("drift_length", 50))
    batch = int(config.get("probe_batch", 32))
    rng = np.random.default_rng(seed)
    if int(held_store.lengths.max()) < horizon + 1:
        return None
    index = held_store.sample_expert_windows(rng, batch, horizon, with_observation=False)[
        "index"]                                                          # (B, H+1)
    take = lambda ix: jax.tree.map(lambda x: jnp.asarray(x)[ix], held_latents)  # noqa: E731
    start, expert_next = take(index[:, 0]), take(index[:, 1:])
    expert_actions = jnp.asarray(held_store.action[index[:, :-1]].astype(np.int32))
    bank = reward_lib.latent_part(train_latents, config.latent)
    valid = np.flatnonzero(~held_store.is_last)
    held_part = reward_lib.latent_part(take(valid), config.latent)
    drift_expert = float(probes.nearest_distance(held_part, bank).mean())
    model, rewards = ctx.wm_model, spread_rewards(config)

    @jax.jit
    def run(actor_params, key, wm_params, bank):
        def img_step(s, a, k):
            return model.apply(wm_params, s, a, k, method=WorldModel.img_step)

        def policy(state, k):
            return jax.random.categorical(k, actor_apply(actor_params, get_feat(state)))
        k_spread, k_drift = jax.random.split(key)
        out = probes.reward_spread(img_step, start, expert_actions, expert_next, k_spread,
                                   num_actions=ctx.num_actions, action_dim=ctx.action_dim,
                                   part=config.latent, rewards=rewards, policy=policy,
                                   threshold=config.get("sparse_threshold"))
        curve = probes.drift(img_step, policy, start, bank, k_drift, length=length,
                             action_dim=ctx.action_dim, part=config.latent)
        out.update(drift_mean=curve.mean(), drift_last=curve[-1])
        return out

    key = jax.random.key(seed + 20_000)

    def probe(actor_params):
        out = {k: float(v) for k, v in jax.device_get(
            run(actor_params, key, wm_params, bank)).items()}
        out["drift_expert"] = drift_expert
        return out
    probe.every = every
    return probe
