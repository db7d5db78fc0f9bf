"""Where the time of one DITTO update goes: each part jitted and timed on its own.

  python benchmarks/update_profile.py [--repeats 3] [--authors authors_ditto.json]

At B_ac 512, H 15 with the paper world model (deter 1024, hidden 1000, 32x32 latents)
and the paper actor/critic (8 x 256), random weights (speed does not depend on them).
Parts, each its own jitted function, timed as the median of `--repeats` calls after one
compile call:
  prior_steps            15 world-model prior steps under a fixed action (the floor)
  imagine                the imagination scan: actor forward + sample + prior step
  actor_in_scan          imagine - prior_steps
  rewards                latent part, maxcos reward and the latent distance
  target_critic_fwd      target critic on the (H+1) x B features
  lambda_returns         the reverse scan
  loss_fwd               actor and critic losses, forward only (given the trajectory)
  loss_grad              the same with value_and_grad (forward + backward)
  optimizer              clip + Adam for actor and critic, apply_updates
  (the update since #20 takes the actor's gradient through the scan's logits:)
  rollout_vjp            the imagination scan under jax.vjp plus its backward pass for a
                         given cotangent of the logits (actor forward once, in the scan)
  loss_grad_from_logits  losses from the logits, value_and_grad in (logits, critic)
  update                 the whole jitted update (donated state), as the training loop
The authors' `parts_once` (their harness, --what ditto) gives their prior steps and
their actor + critic + target forward in the scan; pass its JSON with --authors.
Writes benchmarks/results/update_profile.json.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _median_time(fn, args, repeats):
    out = fn(*args)
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def setup(wm_preset="paper", policy_preset="paper", num_actions=6, **overrides):
    """(wm_state, policy config, method, ctx, state, batch) for a DITTO update; `overrides`
    are policy config fields (e.g. imagine_matmul="bfloat16")."""
    from benchmarks.policy import _wm_state
    from ditto_jax.agents.rewards import latent_part
    from ditto_jax.core.config import load_config
    from ditto_jax.models.world_model import WorldModel
    from ditto_jax.stages.policy_data import policy_method
    from ditto_jax.stages.train_policy import resolve
    cfg = load_config(os.path.join(REPO, f"experiments/configs/policy.py:{policy_preset}"))
    cfg.update(overrides)
    method, cfg = resolve(cfg, "ditto")
    wm_state = _wm_state(wm_preset, (64, 64, 1), num_actions)
    meta = {"num_actions": num_actions, "obs_shape": [64, 64, 1]}
    method, ctx = policy_method("ditto", cfg, wm_state, meta)
    state = method.init(cfg, ctx, jax.random.key(1))
    b, h = int(cfg.batch_size), int(cfg.horizon)
    start = wm_state.model.apply(wm_state.params, b, method=WorldModel.initial_state)
    start = jax.tree.map(lambda x: x + 0.1, start)
    expert = latent_part(start, cfg.latent)[:, None].repeat(h + 1, 1)
    return wm_state, cfg, method, ctx, state, {"start": start, "expert": expert}


def profile(repeats=3, wm_preset="paper", policy_preset="paper"):
    from ditto_jax.agents import rewards as reward_lib
    from ditto_jax.agents.actor_critic import (Actor, Critic, actor_critic_losses, imagine,
                                               losses_from_logits, rollout)
    from ditto_jax.agents.returns import lambda_returns
    from ditto_jax.models.rssm import get_feat
    from ditto_jax.models.world_model import WorldModel
    wm_state, cfg, method, ctx, state, batch = setup(wm_preset, policy_preset)
    model, wm_params = wm_state.model, wm_state.params
    b, h = int(cfg.batch_size), int(cfg.horizon)
    actor = Actor(ctx.num_actions, cfg.actor_units, cfg.actor_layers)
    critic = Critic(cfg.critic_units, cfg.critic_layers)
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(cfg.lr, eps=cfg.eps))

    def img_step(s, a, k):
        return model.apply(wm_params, s, a, k, method=WorldModel.img_step)

    parts = {}

    @jax.jit
    def prior_steps(start, key):
        onehot = jax.nn.one_hot(jnp.zeros(b, jnp.int32), ctx.action_dim)

        def body(s, k):
            s = img_step(s, onehot, k)
            return s, None
        return jax.lax.scan(body, start, jax.random.split(key, h))[0]
    parts["prior_steps"] = _median_time(prior_steps, (batch["start"], jax.random.key(0)),
                                        repeats)

    @jax.jit
    def imag(actor_params, start, key):
        return imagine(actor.apply, actor_params, img_step, get_feat, start, h,
                       ctx.num_actions, ctx.action_dim, key)
    parts["imagine"] = _median_time(imag, (state.actor, batch["start"], jax.random.key(0)),
                                    repeats)
    parts["actor_in_scan"] = parts["imagine"] - parts["prior_steps"]
    states, feats, actions = imag(state.actor, batch["start"], jax.random.key(0))
    expert_tm = jnp.swapaxes(batch["expert"], 0, 1)

    @jax.jit
    def rewards_fn(states, expert_tm):
        agent = reward_lib.latent_part(states, cfg.latent)
        r = reward_lib.imitation_reward(cfg.reward, agent[1:], expert_tm[1:])
        return r, 1.0 - reward_lib.maxcos(agent[1:], expert_tm[1:]).mean()
    parts["rewards"] = _median_time(rewards_fn, (states, expert_tm), repeats)
    rewards, _ = rewards_fn(states, expert_tm)

    tfwd = jax.jit(lambda p, f: critic.apply(p, f))
    parts["target_critic_fwd"] = _median_time(tfwd, (state.target_critic, feats), repeats)
    values = tfwd(state.target_critic, feats)
    lret = jax.jit(lambda r, v: lambda_returns(r, v[:-1], v[-1], gamma=cfg.gamma,
                                               lam=cfg.lam))
    parts["lambda_returns"] = _median_time(lret, (rewards, values), repeats)

    def loss_fn(params, target, feats, actions, rewards):
        a_loss, c_loss, m = actor_critic_losses(params[0], params[1], target, actor.apply,
                                                critic.apply, feats, actions, rewards, cfg)
        return a_loss + c_loss, m
    params = (state.actor, state.critic)
    args = (params, state.target_critic, feats, actions, rewards)
    parts["loss_fwd"] = _median_time(jax.jit(loss_fn), args, repeats)
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    parts["loss_grad"] = _median_time(grad_fn, args, repeats)
    _, (ga, gc) = grad_fn(*args)

    @jax.jit
    def rollout_vjp(actor_params, start, key):
        logits, vjp, aux = jax.vjp(lambda p: rollout(actor.apply, p, img_step, get_feat, start,
                                                     h, ctx.action_dim, key),
                                   actor_params, has_aux=True)
        return vjp(jnp.ones_like(logits) * 1e-3), aux
    parts["rollout_vjp"] = _median_time(rollout_vjp, (state.actor, batch["start"],
                                                      jax.random.key(0)), repeats)
    logits = rollout(actor.apply, state.actor, img_step, get_feat, batch["start"], h,
                     ctx.action_dim, jax.random.key(0))[0]

    def loss_logits(logits, critic_params, target, feats, actions, rewards):
        a_loss, c_loss, m = losses_from_logits(logits, critic_params, target, critic.apply,
                                               feats, actions, rewards, cfg)
        return a_loss + c_loss, m
    parts["loss_grad_from_logits"] = _median_time(
        jax.jit(jax.value_and_grad(loss_logits, argnums=(0, 1), has_aux=True)),
        (logits, state.critic, state.target_critic, feats, actions, rewards), repeats)

    @jax.jit
    def optimise(actor_p, critic_p, actor_opt, critic_opt, ga, gc):
        ua, actor_opt = opt.update(ga, actor_opt, actor_p)
        uc, critic_opt = opt.update(gc, critic_opt, critic_p)
        return (optax.apply_updates(actor_p, ua), optax.apply_updates(critic_p, uc),
                actor_opt, critic_opt)
    parts["optimizer"] = _median_time(
        optimise, (state.actor, state.critic, state.actor_opt, state.critic_opt, ga, gc),
        repeats)

    step = jax.jit(method.train_step(cfg, ctx), donate_argnums=0)
    holder = {"s": state, "i": 0}

    def update():
        holder["i"] += 1
        holder["s"], m = step(holder["s"], batch, jax.random.key(holder["i"]), wm_params)
        return m
    jax.block_until_ready(update())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(update())
        times.append(time.perf_counter() - t0)
    parts["update"] = statistics.median(times)
    parts["update_all_s"] = times
    parts["sum_of_parts_two_forwards"] = sum(parts[k] for k in (
        "imagine", "rewards", "loss_grad", "optimizer"))
    parts["sum_of_parts_one_forward"] = sum(parts[k] for k in (
        "rollout_vjp", "rewards", "loss_grad_from_logits", "optimizer"))
    return {"batch": b, "horizon": h, "parts_s": parts}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--wm-preset", default="paper")
    p.add_argument("--policy-preset", default="paper")
    p.add_argument("--authors", default="", help="JSON line of authors_bench.py --what ditto")
    p.add_argument("--label", default="", help="what code this is (e.g. 'before', 'after')")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/update_profile.json"))
    args = p.parse_args()
    result = {"command": "python " + " ".join(sys.argv), "label": args.label,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "jax": jax.__version__, "load_avg_1min_at_start": os.getloadavg()[0]},
              "ours": profile(args.repeats, args.wm_preset, args.policy_preset)}
    result["machine"]["load_avg_1min_at_end"] = os.getloadavg()[0]
    if args.authors:
        with open(args.authors) as f:
            theirs = json.loads(f.read().strip().splitlines()[-1])
        result["authors"] = {"update_s": theirs["update_s"], "update_s_all":
                             theirs.get("update_s_all"), "parts_once": theirs["parts_once"],
                             "loadavg_1m": theirs.get("loadavg_1m")}
    for k, v in result["ours"]["parts_s"].items():
        if not isinstance(v, list):
            print(f"{k:>20}: {v:.3f} s")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
