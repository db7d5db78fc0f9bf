"""Imitation-stage speed: DITTO updates/s and acting steps/s. Writes benchmarks/results/policy.json.

  python benchmarks/policy.py [--wm-preset paper] [--policy-preset paper] [--updates 5]

Measures, with a randomly initialised world model of the chosen preset (speed does
not depend on the weights):
  * DITTO updates/s and imagined latent steps/s (B_ac x H per update);
  * real-environment agent steps/s with the policy in the loop (encoder + RSSM
    posterior + actor, jitted), for 1 and 16 native vector environments.
  * the training loop, before/after (`--loop`, on by default): the old host-driven loop
    (indices sampled on the host, one jitted update per host call) against the on-device
    loop of `train_policy.make_advance` (K updates per call, windows sampled on device),
    and 3 seeds vmapped in one program against 3 sequential runs and against 1 seed;
  * compile time with the world-model params as jit ARGUMENTS (now) against closure
    CONSTANTS (before), and persistent-cache hits in a fresh process.
All loop figures come from one run, side by side (this machine is shared and noisy).
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
    from ditto_jax.core.config import load_config
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
    from ditto_jax.agents.acting import WorldModelAgent
    from ditto_jax.stages.train_policy import build_method
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


class _FakeStore:
    """Expert episodes of the right shape for sampling (speed does not depend on content)."""

    def __init__(self, episodes, length, num_actions, seed=0):
        rng = np.random.default_rng(seed)
        self.lengths = np.full(episodes, length, np.int64)
        self.starts = np.arange(episodes, dtype=np.int64) * length
        self.num_steps = episodes * length
        self.action = rng.integers(0, num_actions, self.num_steps)
        self.is_last = np.zeros(self.num_steps, bool)
        self.is_last[self.starts + length - 1] = True


def _fake_latents(wm_state, n, seed):
    from ditto_jax.models.world_model import WorldModel
    one = wm_state.model.apply(wm_state.params, 1, method=WorldModel.initial_state)
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal((n,) + v.shape[1:]).astype(np.float32)
            for k, v in one.items()}


def _timed(fn, repeats):
    out = fn()
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / repeats


def bench_loop(wm_state, policy_cfg, num_actions, k, repeats):
    """updates/s of the old host-driven loop vs the on-device loop; 3 seeds vmapped vs 3
    sequential vs 1. Same config, same fake expert data, one process."""
    import ml_collections
    from ditto_jax.agents.rewards import latent_part
    from ditto_jax.core.parallel import make_mesh
    from ditto_jax.stages.policy_data import make_context
    from ditto_jax.stages.policy_loop import make_advance
    from ditto_jax.stages.train_policy import resolve
    m, cfg = resolve(ml_collections.ConfigDict(policy_cfg.to_dict()), "ditto")
    meta = {"num_actions": num_actions, "obs_shape": list(wm_state.model.obs_shape)}
    ctx = make_context(cfg, wm_state, meta)
    store = _FakeStore(8, 400, num_actions)
    lat = _fake_latents(wm_state, store.num_steps, 0)
    data = m.make_data(cfg, ctx, store, lat)
    params = wm_state.params
    b, h = int(cfg.batch_size), int(cfg.horizon)
    out = {"batch": b, "horizon": h, "updates_per_call": k}

    # Before: indices on the host, one update per host call (the pre-engine loop).
    step = m.train_step(cfg, ctx)
    dlat = jax.device_put(lat)

    @jax.jit
    def old_step(state, index, rng, latents, wm_params):
        start = jax.tree.map(lambda x: x[index[:, 0]], latents)
        batch = {"start": start, "expert": latent_part(
            jax.tree.map(lambda x: x[index], latents), cfg.latent)}
        return step(state, batch, rng, wm_params)

    rng = np.random.default_rng(0)
    state = m.init(cfg, ctx, jax.random.key(0))

    def run_old():
        nonlocal state
        for i in range(k):
            ep = rng.integers(0, 8, b)
            off = rng.integers(0, 400 - h, b)
            index = (store.starts[ep] + off)[:, None] + np.arange(h + 1)[None]
            state, metrics = old_step(state, index, jax.random.key(i), dlat, params)
        return metrics
    old = _timed(run_old, repeats)
    out["before_host_loop_updates_per_s"] = k / old

    mesh = make_mesh()
    axes = jax.tree.map(lambda _: None, data)
    chunk = make_advance(m, cfg, ctx, axes, mesh)

    def seeds_state(n):
        return jax.vmap(lambda kk: m.init(cfg, ctx, kk))(jax.random.split(jax.random.key(0), n))

    def device_run(n):
        st, keys = seeds_state(n), jax.random.split(jax.random.key(1), n)
        holder = {"s": st}

        def go():
            holder["s"], metrics = chunk(holder["s"], keys, data, params, 0, k)
            return metrics
        return go
    one = _timed(device_run(1), repeats)
    out["after_device_loop_updates_per_s"] = k / one
    out["speedup_device_loop"] = old / one
    three = _timed(device_run(3), repeats)
    out["three_seeds_vmapped_s_per_update"] = three / k
    out["three_seeds_sequential_s_per_update"] = 3 * one / k
    out["one_seed_s_per_update"] = one / k
    out["vmapped_vs_sequential"] = (3 * one) / three
    out["vmapped_3_vs_1_cost"] = three / one
    return out


COMPILE_SNIPPET = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import jax, ml_collections
from ditto_jax.core import parallel
parallel.enable_compilation_cache(sys.argv[2])
from benchmarks.policy import _wm_state, _FakeStore, _fake_latents
from ditto_jax.core.config import load_config
from ditto_jax.stages.policy_data import make_context
from ditto_jax.stages.policy_loop import make_advance
from ditto_jax.stages.train_policy import resolve
cfg0 = load_config(os.path.join(sys.argv[1], "experiments/configs/policy.py:" + sys.argv[3]))
m, cfg = resolve(cfg0, "ditto")
wm_state = _wm_state(sys.argv[4], (64, 64, 1), 6)
ctx = make_context(cfg, wm_state, {"num_actions": 6, "obs_shape": [64, 64, 1]})
store = _FakeStore(4, 200, 6)
data = m.make_data(cfg, ctx, store, _fake_latents(wm_state, store.num_steps, 0))
state = jax.vmap(lambda k: m.init(cfg, ctx, k))(jax.random.split(jax.random.key(0), 1))
keys = jax.random.split(jax.random.key(1), 1)
axes = jax.tree.map(lambda _: None, data)
if sys.argv[5] == "constants":   # before: world-model params closed over (constants)
    params = wm_state.params
    step_fn = m.train_step(cfg, ctx)
    def one(st, key, d, start, n):
        def update(i, c):
            kb, ks = jax.random.split(jax.random.fold_in(key, start + i))
            return step_fn(c[0], m.sample(cfg, d, kb), ks, params)
        z = jax.tree.map(lambda x: jax.numpy.zeros(x.shape, x.dtype),
                         jax.eval_shape(lambda c: update(0, (c, None)), st)[1])
        return jax.lax.fori_loop(0, n, update, (st, z))
    fn = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None)))
    args = (state, keys, data, 0, 2)
else:
    fn = make_advance(m, cfg, ctx, axes, parallel.make_mesh())
    args = (state, keys, data, wm_state.params, 0, 2)
t0 = time.perf_counter()
lowered = fn.lower(*args)
compiled = lowered.compile()
print(json.dumps({"compile_s": time.perf_counter() - t0}))
"""


def bench_compile(policy_preset, wm_preset):
    """Compile time of the chunk: params as arguments (now) vs constants (before); each
    compiled twice in fresh processes sharing one new persistent cache (the 2nd = hit)."""
    import subprocess
    import tempfile
    out = {}
    for mode in ("arguments", "constants"):
        cache = tempfile.mkdtemp(prefix="ditto_bench_cache_")
        times = []
        for _ in range(2):
            proc = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET, REPO, cache,
                                   policy_preset, wm_preset, mode], capture_output=True,
                                  text=True, cwd=REPO)
            if proc.returncode:
                raise RuntimeError(proc.stderr[-2000:])
            times.append(json.loads(proc.stdout.strip().splitlines()[-1])["compile_s"])
        files = sum(len(f) for _, _, f in os.walk(cache))
        out[mode] = {"first_compile_s": times[0], "second_process_compile_s": times[1],
                     "cache_entries": files}
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--wm-preset", default="paper")
    p.add_argument("--policy-preset", default="paper")
    p.add_argument("--updates", type=int, default=5)
    p.add_argument("--act-steps", type=int, default=200)
    p.add_argument("--loop-preset", default="small",
                   help="policy and world-model preset of the loop comparison")
    p.add_argument("--loop-k", type=int, default=20, help="updates per host call")
    p.add_argument("--no-loop", action="store_true", help="skip the loop comparison")
    p.add_argument("--no-act", action="store_true", help="skip acting")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/policy.json"))
    args = p.parse_args()
    from ditto_jax.core.config import load_config
    policy_cfg = load_config(os.path.join(REPO,
                                          f"experiments/configs/policy.py:{args.policy_preset}"))
    num_actions = 6
    wm_state = _wm_state(args.wm_preset, (64, 64, 1), num_actions)
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "jax": jax.__version__, "backend": jax.default_backend(),
                          "load_avg_1min_at_start": os.getloadavg()[0]},
              "wm_preset": args.wm_preset, "policy_preset": args.policy_preset,
              "reference_pytorch": REFERENCE}
    result["update"] = bench_update(wm_state, policy_cfg, num_actions, args.updates)
    result["acting"] = [] if args.no_act else [
        bench_acting(wm_state, policy_cfg, num_actions, n, args.act_steps) for n in (1, 16)]
    if not args.no_loop:
        loop_cfg = load_config(os.path.join(
            REPO, f"experiments/configs/policy.py:{args.loop_preset}"))
        loop_wm = _wm_state(args.loop_preset, (64, 64, 1), num_actions)
        result["loop"] = dict(preset=args.loop_preset, **bench_loop(
            loop_wm, loop_cfg, num_actions, args.loop_k, 2))
        result["compile"] = bench_compile(args.loop_preset, args.loop_preset)
        lp, c = result["loop"], result["compile"]
        print(f"loop ({args.loop_preset}, B={lp['batch']}, H={lp['horizon']}, K="
              f"{lp['updates_per_call']}): before {lp['before_host_loop_updates_per_s']:.2f} "
              f"updates/s, after {lp['after_device_loop_updates_per_s']:.2f} "
              f"({lp['speedup_device_loop']:.2f}x)")
        print(f"3 seeds: vmapped {lp['three_seeds_vmapped_s_per_update']:.3f} s/update, "
              f"sequential {lp['three_seeds_sequential_s_per_update']:.3f}, 1 seed "
              f"{lp['one_seed_s_per_update']:.3f} (vmapped is {lp['vmapped_vs_sequential']:.2f}x "
              f"faster than sequential)")
        for mode, v in c.items():
            print(f"compile, wm params as {mode}: {v['first_compile_s']:.1f} s, fresh process "
                  f"with the cache {v['second_process_compile_s']:.1f} s")
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
