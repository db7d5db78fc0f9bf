"""Ours against the authors' PyTorch code, interleaved in one run (issue #20).

  python benchmarks/authors_side_by_side.py [--passes 2] [--quick]
      [--authors-src /work/authors_ditto/src] [--torch-python /work/torchvenv/bin/python]

Each figure runs in its own fresh process, ours then theirs, figure by figure, for
`--passes` passes (the world-model step in pass 1 only: it is slow). Both sides use 2
threads and fp32; only the ratios ours/theirs count (this machine is shared).
  update   one DITTO update, B_ac 512, H 15, paper world model and actor/critic:
           ours the jitted method step (donated state) as the training loop runs it,
           theirs `authors_bench.py --what ditto` (unroll_policy, lambda_return, losses,
           backward, Adam). Ours twice: the default config (`ratio_update`, float32
           like theirs) and with `imagine_matmul=bfloat16` (`ratio_update_bf16`: the
           world model's matmuls in imagination with bfloat16 operands, an opt-in
           change of the maths; theirs stays float32, as their code ships).
  act      acting latency at 1 and 16 envs, policy only (no env step): ours the public
           agent (`WorldModelAgent.act`: encoder, posterior step, actor, sample, one
           jitted call), theirs `--what act` (their WmEnv.prep_obs + get_action2 path,
           `policy_ms_median`; their minimal encoder + cell + actor path is recorded too).
           Ours twice: float32 (`ratio_act_16`, `ratio_act_1`) and with bfloat16 acting
           products (`WorldModelAgent(matmul_dtype="bfloat16")`, `ditto eval
           --act-matmul bfloat16`: `ratio_act_16_bf16`, `ratio_act_1_bf16`; opt-in).
  wm       one world-model training step, paper size, B 50 x T 50 (pass 1 only).
Writes benchmarks/results/authors_side_by_side.json with top-level ratio_update,
ratio_act_16, ratio_act_1 and ratio_wm (ours/theirs, medians over passes), every pass's
raw numbers, the machine, the load average and the command; then refreshes
benchmarks/results/policy.json with benchmarks/policy.py (--no-loop) unless --no-policy.
`--quick`: one pass, tiny shapes on both sides, no world-model step, results to /tmp:
a check that everything runs, not a measurement.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
AUTHORS_BENCH = "/work/shared/tools/authors_bench.py"
NUM_ACTIONS = 6
OBS = (64, 64, 1)


def _threads_env():
    """Our processes: XLA's CPU client uses one thread per core, 2 here (the authors'
    side gets torch.set_num_threads(2)); refused on a machine with more cores."""
    if os.cpu_count() != 2:
        raise SystemExit(f"this comparison assumes 2 cores (XLA's default thread count); "
                         f"this machine has {os.cpu_count()}")
    return dict(os.environ, PYTHONPATH=REPO)


# ----------------------------------------------------------------------- our workers
def _stats(times):
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times),
            "min_s": min(times), "all_s": [round(t, 4) for t in times]}


def worker_update(spec):
    import jax
    from benchmarks.update_profile import setup
    wm_state, cfg, method, ctx, state, batch = setup(
        spec["wm_preset"], spec["policy_preset"],
        imagine_matmul=spec.get("imagine_matmul", "float32"))
    step = jax.jit(method.train_step(cfg, ctx), donate_argnums=0)
    t0 = time.perf_counter()
    state, m = step(state, batch, jax.random.key(0), wm_state.params)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    wall, cpu = [], []
    for i in range(spec["steps"]):
        t0, c0 = time.perf_counter(), time.process_time()
        state, m = step(state, batch, jax.random.key(i + 1), wm_state.params)
        jax.block_until_ready(m)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return dict(_stats(wall), cpu_s_median=statistics.median(cpu), compile_s=compile_s,
                batch=int(cfg.batch_size), horizon=int(cfg.horizon))


def worker_act(spec):
    import jax
    import numpy as np
    from benchmarks.policy import _wm_state
    from ditto_jax.core.config import load_config
    from ditto_jax.agents.acting import WorldModelAgent
    from ditto_jax.stages.policy_data import policy_method
    from ditto_jax.stages.train_policy import resolve
    cfg = load_config(os.path.join(REPO, f"experiments/configs/policy.py:{spec['policy_preset']}"))
    method, cfg = resolve(cfg, "ditto")
    wm_state = _wm_state(spec["wm_preset"], OBS, NUM_ACTIONS)
    method, ctx = policy_method("ditto", cfg, wm_state,
                                {"num_actions": NUM_ACTIONS, "obs_shape": list(OBS)})
    state = method.init(cfg, ctx, jax.random.key(1))
    agent = WorldModelAgent(wm_state, method.actor_apply(cfg, ctx), state.actor,
                            matmul_dtype=spec.get("act_matmul", "float32"))
    out = []
    for n in spec["envs"]:
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, (spec["steps"] + 1, n) + OBS).astype(np.uint8)
        carry = agent.init(n)
        key = jax.random.key(0)
        carry, a = agent.act(carry, frames[0], np.ones(n, bool), key)   # compile
        not_first = np.zeros(n, bool)
        times = []
        for i in range(spec["steps"]):
            t0 = time.perf_counter()
            carry, a = agent.act(carry, frames[i + 1], not_first, jax.random.fold_in(key, i))
            np.asarray(a)  # the action on the host, as an env step needs it
            times.append(time.perf_counter() - t0)
        s = _stats(times)
        out.append({"envs": n, "policy_ms_median": s["median_s"] * 1e3,
                    "policy_ms_mean": s["mean_s"] * 1e3, "policy_ms_min": s["min_s"] * 1e3})
    return {"by_batch": out}


def worker_wm(spec):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from benchmarks.wm import synthetic_pong
    from ditto_jax.core.config import load_config
    from ditto_jax.models import init_train_state, train_step
    c = load_config(os.path.join(REPO, f"experiments/configs/wm.py:{spec['wm_preset']}"))
    data, _ = synthetic_pong(np.random.default_rng(0), c.train.batch_size, c.train.seq_len)
    batch = jax.tree.map(jnp.asarray, data)
    state = init_train_state(c, OBS, NUM_ACTIONS, jax.random.PRNGKey(0))
    step = jax.jit(train_step, donate_argnums=0)
    t0 = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        state, m = step(state, batch)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    return dict(_stats(times), compile_s=compile_s,
                batch=[int(c.train.batch_size), int(c.train.seq_len)])


WORKERS = {"update": worker_update, "act": worker_act, "wm": worker_wm}


# ----------------------------------------------------------------------- the driver
def _run(cmd, env, timeout):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=env, timeout=timeout, cwd="/tmp")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{p.stderr[-3000:]}")
    rec = json.loads(p.stdout.strip().splitlines()[-1])
    rec["process_wall_s"] = time.perf_counter() - t0
    rec["process_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rec["loadavg_after"] = os.getloadavg()
    return rec


def ours(what, spec, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", what, json.dumps(spec)]
    return _run(cmd, _threads_env(), timeout)


def theirs(args, what, steps, timeout):
    cmd = [args.torch_python, AUTHORS_BENCH, "--src", args.authors_src, "--what", what,
           "--steps", str(steps), "--threads", "2"] + (["--tiny"] if args.quick else [])
    rec = _run(cmd, dict(os.environ), timeout)
    rec.pop("profile_top_ops", None)
    return rec


def _act_ms(rec, n, key="policy_ms_median"):
    return next(b[key] for b in rec["by_batch"] if b["envs"] == n)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--update-steps", type=int, default=3)
    p.add_argument("--act-steps", type=int, default=200)
    p.add_argument("--wm-steps", type=int, default=2)
    p.add_argument("--no-wm", action="store_true")
    p.add_argument("--no-bf16", action="store_true",
                   help="skip our update with imagine_matmul=bfloat16 and our acting with "
                        "bfloat16 products")
    p.add_argument("--no-policy", action="store_true",
                   help="do not refresh benchmarks/results/policy.json")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--authors-src", default="/work/authors_ditto/src")
    p.add_argument("--torch-python", default="/work/torchvenv/bin/python")
    p.add_argument("--timeout", type=int, default=1800, help="per process, seconds")
    p.add_argument("--out", default=None)
    p.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._worker:
        what, spec = args._worker
        print(json.dumps(WORKERS[what](json.loads(spec))))
        return
    preset = "tiny" if args.quick else "paper"
    passes = 1 if args.quick else args.passes
    upd_steps = 1 if args.quick else args.update_steps
    act_steps = 20 if args.quick else args.act_steps
    out_path = args.out or (os.path.join("/tmp", "authors_side_by_side_quick.json")
                            if args.quick else
                            os.path.join(REPO, "benchmarks/results/authors_side_by_side.json"))
    spec = {"wm_preset": preset, "policy_preset": preset}
    result = {"command": "python " + " ".join([os.path.relpath(__file__, REPO)] + sys.argv[1:]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(),
                          "loadavg_at_start": os.getloadavg()},
              "threads": 2, "passes": []}
    for i in range(passes):
        rec = {"pass": i + 1, "loadavg_at_start": os.getloadavg()}
        print(f"pass {i + 1}: update", flush=True)
        rec["ours_update"] = ours("update", dict(spec, steps=upd_steps), args.timeout)
        rec["theirs_update"] = theirs(args, "ditto", upd_steps, args.timeout)
        if not args.no_bf16:
            rec["ours_update_bf16"] = ours("update", dict(spec, steps=upd_steps,
                                                          imagine_matmul="bfloat16"),
                                           args.timeout)
        print(f"  ours {rec['ours_update']['median_s']:.3f} s"
              + (f" (bfloat16 imagination {rec['ours_update_bf16']['median_s']:.3f} s)"
                 if "ours_update_bf16" in rec else "")
              + f", theirs {rec['theirs_update']['update_s']:.3f} s; act", flush=True)
        rec["ours_act"] = ours("act", dict(spec, steps=act_steps, envs=[1, 16]), args.timeout)
        rec["theirs_act"] = theirs(args, "act", act_steps, args.timeout)
        if not args.no_bf16:
            rec["ours_act_bf16"] = ours("act", dict(spec, steps=act_steps, envs=[1, 16],
                                                    act_matmul="bfloat16"), args.timeout)
        for n in (1, 16):
            print(f"  act {n:>2}: ours {_act_ms(rec['ours_act'], n):.2f} ms"
                  + (f" (bfloat16 {_act_ms(rec['ours_act_bf16'], n):.2f} ms)"
                     if "ours_act_bf16" in rec else "")
                  + f", theirs {_act_ms(rec['theirs_act'], n):.2f} ms", flush=True)
        if i == 0 and not (args.no_wm or args.quick):
            print("  wm", flush=True)
            rec["ours_wm"] = ours("wm", dict(spec, steps=args.wm_steps), args.timeout)
            rec["theirs_wm"] = theirs(args, "wm", args.wm_steps, args.timeout)
            print(f"  ours {rec['ours_wm']['median_s']:.1f} s, theirs "
                  f"{rec['theirs_wm']['step_s']:.1f} s", flush=True)
        rec["ratio_update"] = rec["ours_update"]["median_s"] / rec["theirs_update"]["update_s"]
        if "ours_update_bf16" in rec:
            rec["ratio_update_bf16"] = (rec["ours_update_bf16"]["median_s"]
                                        / rec["theirs_update"]["update_s"])
        for n in (1, 16):
            rec[f"ratio_act_{n}"] = _act_ms(rec["ours_act"], n) / _act_ms(rec["theirs_act"], n)
            rec[f"ratio_act_{n}_vs_their_minimal"] = (
                _act_ms(rec["ours_act"], n) / _act_ms(rec["theirs_act"], n, "minimal_ms_median"))
            if "ours_act_bf16" in rec:
                rec[f"ratio_act_{n}_bf16"] = (_act_ms(rec["ours_act_bf16"], n)
                                              / _act_ms(rec["theirs_act"], n))
        if "ours_wm" in rec:
            rec["ratio_wm"] = rec["ours_wm"]["median_s"] / rec["theirs_wm"]["step_s"]
        rec["loadavg_at_end"] = os.getloadavg()
        result["passes"].append(rec)
    keys = ("ratio_update", "ratio_update_bf16", "ratio_act_16", "ratio_act_16_bf16",
            "ratio_act_1", "ratio_act_1_bf16", "ratio_wm")
    for key in keys:
        values = [r[key] for r in result["passes"] if key in r]
        result[key] = statistics.median(values) if values else None
        result[f"{key}_per_pass"] = values
    result["loadavg_at_end"] = os.getloadavg()
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
    print({k: result[k] for k in keys})
    print(f"wrote {out_path}")
    if not (args.no_policy or args.quick):
        print("refreshing benchmarks/results/policy.json", flush=True)
        refresh_policy_json(args)


def refresh_policy_json(args):
    """benchmarks/policy.py --no-loop, merged into policy.json: its update and acting
    sections are replaced, the loop and compile sections of an earlier full run are kept
    (and marked as such)."""
    path = os.path.join(REPO, "benchmarks/results/policy.json")
    fresh = os.path.join("/tmp", f"policy_fresh_{os.getpid()}.json")
    subprocess.run([sys.executable, os.path.join(REPO, "benchmarks/policy.py"), "--no-loop",
                    "--updates", str(args.update_steps), "--act-steps", str(args.act_steps),
                    "--out", fresh], check=True, env=_threads_env(), cwd=REPO)
    with open(fresh) as f:
        new = json.load(f)
    old = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    kept = [k for k in ("loop", "compile") if k in old]
    for k in kept:
        new[k] = old[k]
    new["refreshed_by"] = {"command": "python benchmarks/authors_side_by_side.py (policy.py "
                                      "--no-loop)", "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "kept_from_an_earlier_run": kept}
    with open(path, "w") as f:
        json.dump(new, f, indent=2)
    os.remove(fresh)


if __name__ == "__main__":
    main()
