"""Offline probes of the imitation reward and of the policy inside the world model
(issue #18, parts 4 and 5). Pure jax: the world model enters as
`img_step(state, action_onehot, key) -> state`, the policy as `policy(state, key) ->
actions (B,)`, as in actor_critic.py; callers jit.

reward_spread  Does the latent reward separate the expert from a deviation, in units of
               its own spread? (The DITTO_AV driving port found maxcos ~0.9 for any
               plausible state: a saturated reward.) From expert start states s^E_t the
               prior is rolled for H steps under
                 expert   the expert's actions a_t .. a_{t+H-1}
                 deviate  one different FIRST action (each alternative), then the expert's
                 random   uniform random actions
                 policy   the policy's own sampled actions (when a policy is given)
               with common random numbers. Step k's reward compares the state after k+1
               steps with s^E_{t+k+1} (SPEC §3). Per group: mean, std and quantiles of the
               per-step rewards over (start, step); margins (mean_E - mean_X) / pooled std,
               pooled std = sqrt((var_E + var_X) / 2).
drift          The paper's Eq. 7 distance: from expert starts, roll the policy for L >> H
               steps and take, at every step, the Euclidean distance of the compared latent
               part to the NEAREST expert latent of the training set (all of it, in chunks).
"""
import jax
import jax.numpy as jnp

from ditto_jax.agents import rewards as reward_lib

QUANTILES = (0.1, 0.5, 0.9)
SPREAD_REWARDS = ("maxcos", "l2")


def rollout(img_step, start, key, horizon, action_dim, *, actions=None, policy=None):
    """Prior states after 1..horizon steps, dict of (horizon, B, ...), under fixed `actions`
    (B, horizon) or `policy(state, key)`. Step k's world-model noise is split from
    split(key, horizon)[k] the same way for both, so rollouts differ by their actions."""
    keys = jax.random.split(key, horizon)

    def step(state, x):
        t, k = x
        act_key, dyn_key = jax.random.split(k)
        a = policy(state, act_key) if actions is None else actions[:, t]
        nxt = img_step(state, jax.nn.one_hot(a, action_dim), dyn_key)
        return nxt, nxt
    _, states = jax.lax.scan(step, start, (jnp.arange(horizon), keys))
    return states


def _summary(r):
    """mean, std and quantiles of an array of rewards."""
    r = r.reshape(-1)
    q = jnp.quantile(r, jnp.asarray(QUANTILES))
    out = {"mean": r.mean(), "std": r.std()}
    out.update({f"q{int(round(p * 100))}": q[i] for i, p in enumerate(QUANTILES)})
    return out


def _margin(a, b):
    pooled = jnp.sqrt((a.var() + b.var()) / 2)
    return (a.mean() - b.mean()) / jnp.maximum(pooled, 1e-8)


def reward_spread(img_step, start, expert_actions, expert_next, key, *, num_actions,
                  action_dim, part="h", rewards=SPREAD_REWARDS, policy=None,
                  threshold=None):
    """Flat metrics `spread/{reward}/{group}_{stat}` and `spread/{reward}/margin_{group}`
    (see the module doc). start: RSSM state dict (B, ...); expert_actions (B, H) int;
    expert_next: state dict of the expert's posteriors s^E_{t+1..t+H}, leaves (B, H, ...).
    `margin_deviate_first` is the margin at the first imagined step only, where a wrong
    first action should cost most."""
    horizon = expert_actions.shape[1]
    variants = [expert_actions]
    for shift in range(1, num_actions):          # alternative a' = (a_t + shift) mod A
        variants.append(expert_actions.at[:, 0].set((expert_actions[:, 0] + shift)
                                                    % num_actions))
    rand_key, dyn_key = jax.random.split(key)
    variants.append(jax.random.randint(rand_key, expert_actions.shape, 0, num_actions))
    states = jax.vmap(lambda acts: rollout(img_step, start, dyn_key, horizon, action_dim,
                                           actions=acts))(jnp.stack(variants))
    agent = reward_lib.latent_part(states, part)                       # (V, H, B, D)
    target = jnp.swapaxes(reward_lib.latent_part(expert_next, part), 0, 1)   # (H, B, D)
    policy_part = None
    if policy is not None:
        policy_part = reward_lib.latent_part(
            rollout(img_step, start, dyn_key, horizon, action_dim, policy=policy), part)
    out = {}
    for name in rewards:
        def reward(x):
            return reward_lib.imitation_reward(name, x, target, threshold=threshold)
        r = reward(agent)                                               # (V, H, B)
        groups = {"expert": r[0], "deviate": r[1:-1], "random": r[-1]}
        if policy_part is not None:
            groups["policy"] = reward(policy_part)
        for g, values in groups.items():
            for stat, v in _summary(values).items():
                out[f"spread/{name}/{g}_{stat}"] = v
            if g != "expert":
                out[f"spread/{name}/margin_{g}"] = _margin(groups["expert"], values)
        out[f"spread/{name}/margin_deviate_first"] = _margin(r[0, 0], r[1:-1, 0])
    return out


def nearest_distance(queries, bank, *, chunk=4096):
    """Euclidean distance of each query (Q, D) to its nearest row of `bank` (N, D), scanning
    the bank in chunks of `chunk` rows (memory O(Q * chunk)); the bank is padded with
    copies of its first row, which never changes a minimum."""
    n = bank.shape[0]
    # |q - b|^2 = |q|^2 - 2 q.b + |b|^2, on data centred at the bank's mean: smaller norms,
    # less float32 cancellation for queries close to a bank row.
    centre = bank.mean(0)
    queries, bank = queries - centre, bank - centre
    chunk = min(int(chunk), n)
    pad = (-n) % chunk
    bank = jnp.concatenate([bank, jnp.broadcast_to(bank[:1], (pad, bank.shape[1]))])
    q_sq = jnp.sum(jnp.square(queries), -1)[:, None]

    def best(acc, rows):
        d2 = q_sq - 2.0 * queries @ rows.T + jnp.sum(jnp.square(rows), -1)[None]
        return jnp.minimum(acc, d2.min(-1)), None
    init = jnp.full(queries.shape[:1], jnp.inf, queries.dtype)
    d2, _ = jax.lax.scan(best, init, bank.reshape(-1, chunk, bank.shape[1]))
    return jnp.sqrt(jnp.maximum(d2, 0.0))


def drift(img_step, policy, start, bank, key, *, length, action_dim, part="h", chunk=4096):
    """The Eq. 7 drift curve: (length,) mean over starts of the distance from the policy's
    compared latent after k+1 imagined steps to the nearest row of `bank` (N, D), the
    training set's expert latents (same part)."""
    states = rollout(img_step, start, key, length, action_dim, policy=policy)
    latents = reward_lib.latent_part(states, part)                     # (L, B, D)
    dist = nearest_distance(latents.reshape(-1, latents.shape[-1]), bank, chunk=chunk)
    return dist.reshape(latents.shape[:2]).mean(-1)
