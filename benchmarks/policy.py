"""Imitation-stage speed: DITTO updates/s and acting steps/s. Writes benchmarks/results/policy.json.

  python benchmarks/policy.py [--wm-preset paper] [--policy-preset paper] [--updates 5]

Measures, with a randomly initialised world model of the chosen preset (speed does
not depend on the weights):
  * DITTO updates/s and imagined latent steps/s (B_ac x H per update);
  * real-environment agent steps/s with the policy in the loop (encoder + RSSM
    posterior + actor, jitted), for 1 and 16 native vector environments.
Reference (authors' PyTorch code on the same kind of 2-core machine): 1.44 s per
DITTO update at B_ac 512 (~5.3k imagined steps/s); acting 4.9 ms/step for 1 env
and 12 ms for 16.
"""
import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = {"update_s": 1.44, "imagined_steps_per_s": 5300, "act_ms_1env": 4.9,
             "act_ms_16env": 12.0}


def _wm_state(preset, obs_shape, num_actions):
    from ditto_jax import models as wm
    from ditto_jax.configs import load_config
    config = load_config(os.path.join(REPO, f"experiments/configs/wm.py:{preset}"))
    return wm.init_train_state(config, obs_shape, num_actions, jax.random.key(0))


def bench_update(wm_state, policy_cfg, num_actions, updates):
    from ditto_jax.agents.rewards import latent_part
    from ditto_jax.stages.train_policy import build_method
    from ditto_jax.models.world_model import WorldModel
    meta = {"num_actions": num_actions, "obs_shape": list(wm_state.model.obs_shape)}
    state, step, _ = build_method(policy_cfg, "ditto", wm_state, meta, key=jax.random.key(1))
    b, h = int(policy_cfg.batch_size), int(policy_cfg.horizon)
    start = wm_state.model.apply(wm_state.params, b, method=WorldModel.initial_state)
    start = jax.tree.map(lambda x: x + 0.1, start)
    expert = latent_part(start, policy_cfg.latent)[:, None].repeat(h + 1, 1)
    batch = {"start": start, "expert": expert}
    jstep = jax.jit(step, donate_argnums=0)
    t0 = time.perf_counter()
    state, m = jstep(state, batch, jax.random.key(0), wm_state.params)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(updates):
        state, m = jstep(state, batch, jax.random.key(i + 1), wm_state.params)
    jax.block_until_ready(m)
    per = (time.perf_counter() - t0) / updates
    return {"batch": b, "horizon": h, "update_s": per, "updates_per_s": 1 / per,
            "imagined_steps_per_s": b * h / per, "compile_s": compile_s}


def bench_acting(wm_state, policy_cfg, num_actions, num_envs, steps):
    from ditto_jax.envs.vector import make_vector_env
    from ditto_jax.stages.train_policy import WorldModelAgent, build_method
    meta = {"num_actions": num_actions, "obs_shape": list(wm_state.model.obs_shape)}
    state, _, actor_apply = build_method(policy_cfg, "ditto", wm_state, meta,
                                         key=jax.random.key(1))
    agent = WorldModelAgent(wm_state, actor_apply, state.actor)
    env = make_vector_env("pong", num_envs, "ditto", seed=0)
    obs, _ = env.reset(seed=0)
    carry = agent.init(num_envs)
    first = np.ones(num_envs, bool)
    key = jax.random.key(0)
    carry, a = agent.act(carry, obs, first, key)  # compile
    # Policy only (no env) and the full loop, timed separately.
    t0 = time.perf_counter()
    for i in range(steps):
        carry, a = agent.act(carry, obs, first, jax.random.fold_in(key, i))
    policy_ms = (time.perf_counter() - t0) / steps * 1e3
    t0 = time.perf_counter()
    for i in range(steps):
        carry, a = agent.act(carry, obs, first, jax.random.fold_in(key, i))
        obs, _, term, trunc, _ = env.step(a)
        first = np.zeros(num_envs, bool)
    loop_ms = (time.perf_counter() - t0) / steps * 1e3
    env.close()
    return {"envs": num_envs, "policy_ms_per_step": policy_ms, "loop_ms_per_step": loop_ms,
            "agent_steps_per_s": num_envs / loop_ms * 1e3}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--wm-preset", default="paper")
    p.add_argument("--policy-preset", default="paper")
    p.add_argument("--updates", type=int, default=5)
    p.add_argument("--act-steps", type=int, default=200)
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/policy.json"))
    args = p.parse_args()
    from ditto_jax.configs import load_config
    policy_cfg = load_config(os.path.join(REPO,
                                          f"experiments/configs/policy.py:{args.policy_preset}"))
    num_actions = 6
    wm_state = _wm_state(args.wm_preset, (64, 64, 1), num_actions)
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "jax": jax.__version__, "backend": jax.default_backend()},
              "wm_preset": args.wm_preset, "policy_preset": args.policy_preset,
              "reference_pytorch": REFERENCE}
    result["update"] = bench_update(wm_state, policy_cfg, num_actions, args.updates)
    result["acting"] = [bench_acting(wm_state, policy_cfg, num_actions, n, args.act_steps)
                        for n in (1, 16)]
    u = result["update"]
    print(f"DITTO update (B={u['batch']}, H={u['horizon']}, wm={args.wm_preset}): "
          f"{u['update_s']:.3f} s/update, {u['imagined_steps_per_s']:.0f} imagined steps/s "
          f"(reference 1.44 s; speed-up {REFERENCE['update_s'] / u['update_s']:.2f}x); "
          f"compile {u['compile_s']:.1f} s")
    for a in result["acting"]:
        ref = REFERENCE["act_ms_1env" if a["envs"] == 1 else "act_ms_16env"]
        print(f"acting, {a['envs']:>2} env(s): policy {a['policy_ms_per_step']:.2f} ms/step, "
              f"policy+env {a['loop_ms_per_step']:.2f} ms/step "
              f"({a['agent_steps_per_s']:.0f} agent steps/s; reference {ref} ms)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
