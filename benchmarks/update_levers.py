"""The DITTO update's speed levers, measured side by side in one process (issue #20).

  python benchmarks/update_levers.py [--rounds 3] [--preset paper]

Variants of one update at B_ac 512, H 15, paper world model, each jitted once, then
timed round-robin (variant A, B, C, ... then again) so that the machine's load hits all
alike:
  two_forwards    the update before #20: the imagination scan runs the actor (no
                  gradient), and the loss runs it again on all H x B states to take the
                  gradient (`imagine` + `actor_critic_losses`)
  one_forward     the update now (`make_imagination_step`): the scan's logits carry the
                  actor's gradient (`jax.vjp`), no second forward
  no_donation     one_forward without donating the train state to the jitted call
  k4_per_call     one_forward, 4 updates in one jitted `lax.fori_loop` (as engine/fit.py)
Reported per update: median wall time and median process CPU time (the CPU time is the
steadier figure on a loaded machine). Writes benchmarks/results/update_levers.json.
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


def two_forwards_step(cfg, ctx, reward_model):
    """The pre-#20 update (same maths; metrics trimmed to the losses)."""
    from ditto_jax.agents import rewards as reward_lib
    from ditto_jax.agents.actor_critic import Actor, Critic, actor_critic_losses, imagine
    from ditto_jax.models.rssm import get_feat
    from ditto_jax.models.world_model import WorldModel
    actor = Actor(ctx.num_actions, cfg.actor_units, cfg.actor_layers)
    critic = Critic(cfg.critic_units, cfg.critic_layers)
    opt = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(cfg.lr, eps=cfg.eps))
    h = int(cfg.horizon)

    def step(state, batch, rng, wm_params):
        def img_step(s, a, k):
            return ctx.wm_model.apply(wm_params, s, a, k, method=WorldModel.img_step)
        imag_key, _ = jax.random.split(rng)
        states, feats, actions = imagine(actor.apply, state.actor, img_step, get_feat,
                                         batch["start"], h, ctx.num_actions, ctx.action_dim,
                                         imag_key)
        agent = reward_lib.latent_part(states, cfg.latent)
        _, rewards, _ = reward_model.rewards(state, agent, jnp.swapaxes(batch["expert"], 0, 1))

        def loss_fn(params):
            a, c, m = actor_critic_losses(params[0], params[1], state.target_critic,
                                          actor.apply, critic.apply, feats, actions,
                                          jax.lax.stop_gradient(rewards), cfg)
            return a + c, m
        (_, m), (ga, gc) = jax.value_and_grad(loss_fn, has_aux=True)(
            (state.actor, state.critic))
        ua, actor_opt = opt.update(ga, state.actor_opt, state.actor)
        uc, critic_opt = opt.update(gc, state.critic_opt, state.critic)
        return state.replace(step=state.step + 1, actor=optax.apply_updates(state.actor, ua),
                             critic=optax.apply_updates(state.critic, uc),
                             actor_opt=actor_opt, critic_opt=critic_opt), m
    return step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--preset", default="paper")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/update_levers.json"))
    args = p.parse_args()
    from benchmarks.update_profile import setup
    wm_state, cfg, method, ctx, state0, batch = setup(args.preset, args.preset)
    params = wm_state.params
    step = method.train_step(cfg, ctx)

    def k_updates(state, key):
        def body(i, carry):
            return step(carry[0], batch, jax.random.fold_in(key, i), params)
        z = jax.eval_shape(lambda s: step(s, batch, key, params), state)[1]
        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), z)
        return jax.lax.fori_loop(0, 4, body, (state, zeros))

    variants = {
        "two_forwards": (jax.jit(two_forwards_step(cfg, ctx, method.reward_model(cfg)),
                                 donate_argnums=0), 1),
        "one_forward": (jax.jit(step, donate_argnums=0), 1),
        "no_donation": (jax.jit(step), 1),
        "k4_per_call": (jax.jit(lambda s, b, k, w: k_updates(s, k), donate_argnums=0), 4),
    }
    states, times = {}, {v: {"wall": [], "cpu": []} for v in variants}
    for name, (fn, _) in variants.items():   # compile + warm
        states[name] = jax.tree.map(jnp.copy, state0)
        states[name], m = fn(states[name], batch, jax.random.key(0), params)
        jax.block_until_ready(m)
    for r in range(args.rounds):
        for name, (fn, per_call) in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            states[name], m = fn(states[name], batch, jax.random.key(r + 1), params)
            jax.block_until_ready(m)
            times[name]["wall"].append((time.perf_counter() - t0) / per_call)
            times[name]["cpu"].append((time.process_time() - c0) / per_call)
        print(r, {n: round(t["wall"][-1], 3) for n, t in times.items()}, flush=True)
    base = statistics.median(times["two_forwards"]["wall"])
    base_cpu = statistics.median(times["two_forwards"]["cpu"])
    result = {"command": "python " + " ".join(sys.argv), "preset": args.preset,
              "batch": int(cfg.batch_size), "horizon": int(cfg.horizon),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "jax": jax.__version__, "loadavg_at_end": os.getloadavg()},
              "variants": {}}
    for name, t in times.items():
        wall, cpu = statistics.median(t["wall"]), statistics.median(t["cpu"])
        result["variants"][name] = {"wall_s_per_update": wall, "cpu_s_per_update": cpu,
                                    "wall_vs_two_forwards": wall / base,
                                    "cpu_vs_two_forwards": cpu / base_cpu,
                                    "wall_all": [round(x, 3) for x in t["wall"]],
                                    "cpu_all": [round(x, 3) for x in t["cpu"]]}
        print(f"{name:>14}: {wall:.3f} s wall ({wall / base:.2f}x), {cpu:.3f} s CPU "
              f"({cpu / base_cpu:.2f}x)")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
