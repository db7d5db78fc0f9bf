"""Does the imitation reward rank behaviour? The reward action-gap diagnostic.

From held-out expert start states s^E_t (posterior latents, never trained on by a policy),
the world model's prior is rolled out for H steps under three kinds of action sequence:

  expert     the expert's own actions a_t .. a_{t+H-1}
  deviate    one different FIRST action a' != a_t (each alternative), then the expert's
  random     uniform random actions at every step

Step k's reward compares the imagined state after k+1 steps with the expert's posterior
latent s^E_{t+k+1} (SPEC §3 alignment), and a rollout's imagined return is
G = sum_k gamma^k r_k. Every rollout from the same start uses the same prior noise (common
random numbers), so differences come from the actions alone.

Reported per (latent part, reward):
  gap_deviate       mean over starts and alternatives of G_expert - G_deviate
  gap_random        mean over starts of G_expert - G_random
  rank_deviate      fraction of (start, alternative) pairs with G_expert > G_deviate
  *_norm            the gaps divided by the advantage scale the actor would see: the std
                    over starts of G_random - mean(G_random) (how much returns vary across
                    states under an untrained policy)
  step_gap          per imagined step k, the mean reward gap expert - deviate (where the
                    signal lives: a wrong first action should cost most at k = 0)
"""
import jax
import jax.numpy as jnp
import numpy as np

from ditto_jax.agents import rewards as reward_lib
from ditto_jax.models.world_model import WorldModel

PARTS = ("h", "z", "h+z")
REWARDS = ("maxcos", "cosine", "l2")


def rollouts(model, params, start, actions, key):
    """Prior rollouts of action sequences: start (B, ...) state dict, actions (V, B, H) ->
    states dict of (V, H, B, ...). Every variant v uses the same per-step keys."""
    horizon = actions.shape[-1]
    keys = jax.random.split(key, horizon)

    def one(acts):
        def step(state, x):
            a, k = x
            nxt = model.apply(params, state, jax.nn.one_hot(a, model.action_dim), k,
                              method=WorldModel.img_step)
            return nxt, nxt
        _, states = jax.lax.scan(step, start, (jnp.swapaxes(acts, 0, 1), keys))
        return states
    return jax.vmap(one)(actions)


def action_gap(model, params, latents, store, *, horizon=15, gamma=0.95, batch=256,
               seed=0, parts=PARTS, rewards=REWARDS):
    """The action-gap table for held-out expert episodes in `store` (latents from
    `stages/policy_data.encode_store`)."""
    rng = np.random.default_rng(seed)
    num_actions = store.num_actions
    win = store.sample_expert_windows(rng, batch, horizon, with_observation=False)
    index = win["index"]                                       # (B, H+1)
    expert_actions = store.action[index[:, :-1]].astype(np.int32)  # (B, H)
    variants = [expert_actions]
    alt_first = []
    for shift in range(1, num_actions):   # alternative a' = (a_t + shift) mod A
        acts = expert_actions.copy()
        acts[:, 0] = (acts[:, 0] + shift) % num_actions
        variants.append(acts)
        alt_first.append(acts[:, 0])
    variants.append(rng.integers(0, num_actions, expert_actions.shape).astype(np.int32))
    actions = jnp.asarray(np.stack(variants))                  # (V, B, H)
    start = jax.tree.map(lambda x: x[index[:, 0]], latents)
    states = jax.jit(rollouts, static_argnums=0)(model, params, start, actions,
                                                jax.random.key(seed))
    expert_next = jax.tree.map(lambda x: x[index[:, 1:]], latents)   # (B, H, ...)
    discount = gamma ** np.arange(horizon)
    out = {"horizon": horizon, "gamma": gamma, "starts": int(batch),
           "alternatives": num_actions - 1, "results": {}}
    for part in parts:
        agent = np.asarray(reward_lib.latent_part(states, part))          # (V, H, B, D)
        target = np.asarray(reward_lib.latent_part(expert_next, part))   # (B, H, D)
        target = np.swapaxes(target, 0, 1)[None]                           # (1, H, B, D)
        for name in rewards:
            r = np.asarray(reward_lib.imitation_reward(name, jnp.asarray(agent),
                                                       jnp.asarray(target)))  # (V, H, B)
            g = np.einsum("vhb,h->vb", r, discount)
            g_exp, g_dev, g_rand = g[0], g[1:-1], g[-1]
            scale = float(np.std(g_rand)) or 1e-8
            gap_dev = g_exp[None] - g_dev
            out["results"][f"{part}/{name}"] = {
                "return_expert": float(g_exp.mean()), "return_random": float(g_rand.mean()),
                "gap_deviate": float(gap_dev.mean()),
                "gap_deviate_median": float(np.median(gap_dev)),
                "gap_random": float((g_exp - g_rand).mean()),
                "rank_deviate": float((gap_dev > 0).mean()),
                "rank_random": float((g_exp > g_rand).mean()),
                "advantage_scale": scale,
                "gap_deviate_norm": float(gap_dev.mean() / scale),
                "gap_random_norm": float((g_exp - g_rand).mean() / scale),
                "step_gap": [float(x) for x in (r[0][None] - r[1:-1]).mean((0, 2))],
            }
    return out


def format_table(result):
    lines = [f"reward action gap: H={result['horizon']}, gamma={result['gamma']}, "
             f"{result['starts']} held-out expert starts, {result['alternatives']} "
             "alternative first actions",
             f"{'part/reward':<14} {'G_expert':>9} {'gap dev':>8} {'/scale':>7} "
             f"{'rank dev':>8} {'gap rand':>8} {'/scale':>7} {'step-1 gap':>10}"]
    for k, r in result["results"].items():
        lines.append(f"{k:<14} {r['return_expert']:9.3f} {r['gap_deviate']:8.4f} "
                     f"{r['gap_deviate_norm']:7.2f} {r['rank_deviate']:8.3f} "
                     f"{r['gap_random']:8.3f} {r['gap_random_norm']:7.2f} "
                     f"{r['step_gap'][0]:10.4f}")
    return "\n".join(lines)
