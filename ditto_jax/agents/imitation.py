"""Train steps of the world-model imitation methods: DITTO (and D-GAIL) and D-BC.

Each `make_*_step` returns a pure `(state, batch, rng) -> (state, metrics)`;
the stage module jits and shards it. The world model enters as
`img_step(state, action_onehot, key)` and `feat(state)` with its params closed
over (frozen: imitation never changes the world model).

The imagination step is DITTO's actor-critic with a REWARD MODEL plugged in: a latent
reward (agents/rewards.py `LatentReward`: DITTO) or a discriminator with its own
parameters and optimiser (agents/discriminator.py: D-GAIL). The step never asks which.

Train states, one per kind of method, with no empty parts:
  ActorState        D-BC: the actor and its optimiser
  ActorCriticState  DITTO and its variants: + critic, target critic, critic optimiser
  (a reward model may extend it: D-GAIL's `AdversarialState` adds the discriminator)

Batches (built by the stage from the encoded expert episodes):
  DITTO / D-GAIL: {"start": RSSM state dict (B, ...) = expert posterior s^E_t,
                   "expert": (B, H+1, D) compared latent part of s^E_t..s^E_{t+H}}
  D-BC:           {"feat": (B, F) expert features, "action": (B,) expert actions}
"""
import dataclasses

import flax
import jax
import jax.numpy as jnp
import optax

from ditto_jax.agents import rewards as reward_lib
from ditto_jax.agents.actor_critic import (Actor, Critic, entropy_coef, losses_from_logits,
                                           reinforce_loss, rollout)

FIRST_STEP = ("sample", "all_actions")


# Checkpoints written before the per-method train states (ditto_jax <= e052609) hold one
# layout for every method: these eight fields, the unused ones None.
LEGACY_FIELDS = ("step", "actor", "actor_opt", "critic", "target_critic", "critic_opt",
                 "disc", "disc_opt")


@flax.struct.dataclass
class ActorState:
    """D-BC's train state."""
    step: jax.Array
    actor: dict
    actor_opt: optax.OptState

    def legacy_tree(self):
        """This state in the one-layout-for-all checkpoint format of ditto_jax <= e052609
        (engine/checkpoint.py restores old checkpoints through it)."""
        tree = {name: None for name in LEGACY_FIELDS}
        tree.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        return tree

    def from_legacy(self, tree):
        """The inverse of `legacy_tree`: a state of this class from an old checkpoint."""
        return self.replace(**{f.name: tree[f.name] for f in dataclasses.fields(self)})


@flax.struct.dataclass
class ActorCriticState(ActorState):
    """The imagination actor-critic's train state (DITTO)."""
    critic: dict
    target_critic: dict
    critic_opt: optax.OptState


def _optimizer(lr, eps, clip):
    return optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr, eps=eps))


def networks(config, num_actions):
    actor = Actor(num_actions, config.actor_units, config.actor_layers)
    critic = Critic(config.critic_units, config.critic_layers)
    return actor, critic


def init_actor_state(config, feat_dim, num_actions, key):
    actor_net, _ = networks(config, num_actions)
    actor_params = actor_net.init(jax.random.split(key, 3)[0], jnp.zeros((1, feat_dim)))
    opt = _optimizer(config.lr, config.eps, config.clip)
    return ActorState(step=jnp.zeros((), jnp.int32), actor=actor_params,
                      actor_opt=opt.init(actor_params))


def init_imagination_state(config, feat_dim, part_dim, num_actions, key, reward_model):
    """Actor, critic and target critic, extended by the reward model's own state."""
    _, critic_net = networks(config, num_actions)
    _, kc, kr = jax.random.split(key, 3)          # the first is the actor's
    base = init_actor_state(config, feat_dim, num_actions, key)
    critic_params = critic_net.init(kc, jnp.zeros((1, feat_dim)))
    opt = _optimizer(config.lr, config.eps, config.clip)
    state = ActorCriticState(
        step=base.step, actor=base.actor, actor_opt=base.actor_opt, critic=critic_params,
        critic_opt=opt.init(critic_params),
        target_critic=jax.tree.map(jnp.copy, critic_params))  # own buffers: donatable
    return reward_model.init(state, kr, part_dim)


def policy_logits(config, num_actions):
    actor, _ = networks(config, num_actions)
    return actor.apply


def make_imagination_step(config, *, img_step, feat, num_actions, action_dim, reward_model,
                          actor_extra_loss=None):
    """The actor-critic in imagination, rewarded by `reward_model` (see the module doc).

    `actor_extra_loss(actor_params, batch) -> (scalar, metrics)`, when given, is added to
    the actor's loss in the same gradient step (e.g. the BC trust region of
    methods/trust_region.py); its metrics join the step's.
    """
    actor, critic = networks(config, num_actions)
    opt = _optimizer(config.lr, config.eps, config.clip)
    horizon = int(config.horizon)
    first_step = str(config.get("first_step", "sample"))
    if first_step not in FIRST_STEP:
        raise ValueError(f"first_step must be one of {FIRST_STEP}, got {first_step!r}")
    if first_step == "all_actions" and reward_model.learned:
        raise ValueError("first_step=all_actions needs a latent reward, not a learned one")

    def compared(states):
        return reward_lib.latent_part(states, config.latent)

    def first_step_values(state, start, expert_1, key):
        """Q(s_0, a) = r(s_1^a) + gamma v_target(s_1^a) for every action a: (B, A).

        Every action's successor uses the same prior key (common random numbers), so the
        differences between actions are not blurred by different latent samples.
        """
        def one(a):
            onehot = jnp.broadcast_to(jax.nn.one_hot(a, action_dim),
                                      (expert_1.shape[0], action_dim))
            nxt = img_step(start, onehot, key)
            r = reward_model.score(compared(nxt), expert_1)
            return r + config.gamma * critic.apply(state.target_critic, feat(nxt))
        q = jax.vmap(one)(jnp.arange(num_actions))                   # (A, B)
        return jax.lax.stop_gradient(jnp.swapaxes(q, 0, 1))

    def train_step(state, batch, rng):
        expert = batch["expert"]
        assert expert.shape[1] == horizon + 1, (
            f"expert windows must hold H+1={horizon + 1} steps, got {expert.shape}")
        imag_key, q_key = jax.random.split(rng)
        # The actor runs forward once, in the scan; its gradient comes back through the
        # scan's logits (`actor_vjp`), the prior steps being outside the gradient.
        logits, actor_vjp, (states, feats, actions) = jax.vjp(
            lambda p: rollout(actor.apply, p, img_step, feat, batch["start"], horizon,
                              action_dim, imag_key), state.actor, has_aux=True)
        agent_latents = compared(states)                       # (H+1, B, D)
        expert_tm = jnp.swapaxes(expert, 0, 1)                  # (H+1, B, D)
        new_state, rewards, metrics = reward_model.rewards(state, agent_latents, expert_tm)
        # Latent distance is reported for every reward (the paper's diagnostic).
        metrics["latent_distance"] = 1.0 - reward_lib.maxcos(agent_latents[1:],
                                                             expert_tm[1:]).mean()
        rewards = jax.lax.stop_gradient(rewards)
        first_q = (first_step_values(state, batch["start"], expert_tm[1], q_key)
                   if first_step == "all_actions" else None)
        if first_q is not None:
            # How far apart the actions' one-step values are: the signal the actor sees.
            metrics["first_q_gap"] = (first_q.max(-1) - first_q.min(-1)).mean()
        eta = entropy_coef(config, state.step)
        train_actor = batch.get("train_actor", True)

        def loss_fn(logits, critic_params):
            a_loss, c_loss, m = losses_from_logits(
                logits, critic_params, state.target_critic, critic.apply, feats, actions,
                rewards, config, eta=eta, first_q=first_q)
            return a_loss + c_loss, m

        (_, m), (logit_grads, c_grads) = jax.value_and_grad(
            loss_fn, argnums=(0, 1), has_aux=True)(logits, state.critic)
        a_grads, = actor_vjp(logit_grads)
        if actor_extra_loss is not None:
            (_, extra_m), extra_grads = jax.value_and_grad(actor_extra_loss, has_aux=True)(
                state.actor, batch)
            a_grads = jax.tree.map(jnp.add, a_grads, extra_grads)
            m = dict(m, **extra_m)
        a_updates, actor_opt = opt.update(a_grads, state.actor_opt, state.actor)
        c_updates, critic_opt = opt.update(c_grads, state.critic_opt, state.critic)
        actor_params = optax.apply_updates(state.actor, a_updates)
        if train_actor is not True:  # critic warm-up (DITTO with BC init): actor frozen
            actor_params, actor_opt = jax.tree.map(
                lambda new, old: jnp.where(train_actor, new, old),
                (actor_params, actor_opt), (state.actor, state.actor_opt))
        critic_params = optax.apply_updates(state.critic, c_updates)
        step = state.step + 1
        # The target critic is a copy refreshed every `target_every` updates.
        refresh = step % config.target_every == 0
        target = jax.tree.map(lambda new, old: jnp.where(refresh, new, old), critic_params,
                              state.target_critic)
        metrics.update(m)
        metrics.update(reward=rewards.mean(), reward_last=rewards[-1].mean(),
                       actor_grad_norm=optax.global_norm(a_grads),
                       critic_grad_norm=optax.global_norm(c_grads))
        new_state = new_state.replace(step=step, actor=actor_params, critic=critic_params,
                                      target_critic=target, actor_opt=actor_opt,
                                      critic_opt=critic_opt)
        return new_state, metrics

    return train_step


def make_dbc_step(config, *, num_actions):
    """Behaviour cloning on world-model latents: -log pi(a|s^E) - eta_bc H[pi]."""
    actor, _ = networks(config, num_actions)
    opt = _optimizer(config.lr, config.eps, config.clip)

    def train_step(state, batch, rng):
        del rng

        def loss_fn(params):
            logits = actor.apply(params, batch["feat"])
            loss, ent = reinforce_loss(logits, batch["action"],
                                       jnp.ones(batch["action"].shape), config.dbc_entropy)
            acc = (jnp.argmax(logits, -1) == batch["action"]).mean()
            return loss, {"bc_loss": loss, "entropy": ent, "accuracy": acc}

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.actor)
        updates, actor_opt = opt.update(grads, state.actor_opt, state.actor)
        actor_params = optax.apply_updates(state.actor, updates)
        metrics["actor_grad_norm"] = optax.global_norm(grads)
        return state.replace(step=state.step + 1, actor=actor_params,
                             actor_opt=actor_opt), metrics

    return train_step


def make_bcinit_ditto_step(config, *, img_step, feat, num_actions, action_dim, reward_model,
                           actor_extra_loss=None):
    """DITTO initialised by behaviour cloning on the world-model latents (SPEC §9 lever).

    Three phases by update index t, one jitted step (`lax.cond` picks the phase):
      t < bc_init_steps                      the actor is fit with the D-BC objective on
                                             the window start states and their expert
                                             actions (the critic is untouched);
      t < bc_init_steps + critic_warmup     DITTO's critic learns the values of that
                                             fixed actor (actor frozen);
      later                                  plain DITTO.
    Batch: the DITTO batch plus "action" (B,), the expert action at each start state.
    Reported as its own method ("DITTO (BC init)"), never as DITTO. `actor_extra_loss`
    is passed to the DITTO phase (see `make_imagination_step`); it sees the whole batch.
    """
    ditto = make_imagination_step(config, img_step=img_step, feat=feat,
                                  num_actions=num_actions, action_dim=action_dim,
                                  reward_model=reward_model,
                                  actor_extra_loss=actor_extra_loss)
    dbc = make_dbc_step(config, num_actions=num_actions)
    bc_steps = int(config.bc_init_steps)
    warmup = int(config.critic_warmup_steps)

    def train_step(state, batch, rng):
        def bc_phase(state):
            new, m = dbc(state, {"feat": feat(batch["start"]), "action": batch["action"]},
                         rng)
            return new, m

        def ac_phase(state):
            b = dict(batch, train_actor=state.step >= bc_steps + warmup)
            return ditto(state, b, rng)

        # Both branches must return the same metric keys: fill the other's with NaN-free 0s.
        _, m_bc = jax.eval_shape(bc_phase, state)
        _, m_ac = jax.eval_shape(ac_phase, state)
        keys = sorted(set(m_bc) | set(m_ac))

        def padded(fn):
            def run(state):
                new, m = fn(state)
                return new, {k: jnp.asarray(m.get(k, 0.0), jnp.float32) for k in keys}
            return run

        new, metrics = jax.lax.cond(state.step < bc_steps, padded(bc_phase),
                                    padded(ac_phase), state)
        metrics["phase"] = jnp.where(state.step < bc_steps, 0,
                                     jnp.where(state.step < bc_steps + warmup, 1, 2))
        return new, metrics

    return train_step
