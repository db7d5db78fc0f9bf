"""World-model benchmarks. Writes JSON to benchmarks/results/.

  python benchmarks/wm.py                          # speed: paper + small, all decoders
  python benchmarks/wm.py --presets small          # small preset only
  python benchmarks/wm.py --mode parts --presets paper   # where the time goes
  python benchmarks/wm.py --mode recon             # reconstruction loss comparison

speed   train-step frames/s (B*T per second, median of --steps timed steps after one
        warm-up step), compile time, peak RSS, FLOPs per step, achieved FLOP/s as a fraction
        of a big fp32 matmul timed in the same process. Each configuration runs in its own
        subprocess so peak RSS (resource.getrusage; JAX CPU has no memory_stats) is its own.
        FLOPs: XLA's cost analysis of the lowered HLO with the RSSM scan fully unrolled and
        no frame chunking (a compiled while loop's body is counted once); model FLOPs,
        without the rematerialised forward.
parts   encoder, decoder and RSSM-observe forward+backward timed separately at a preset's
        batch shape.
recon   trains a world model on synthetic Pong-like frames (flat background, two 2x8
        paddles, a 2x2 ball) for a fixed number of steps with each reconstruction loss and
        reports held-out squared error on object pixels (ball, paddles) and on background.
The machine's 2 cores are shared: every record carries the 1-minute load average and the
matmul FLOP/s measured next to it; compare numbers from the same run.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "experiments", "configs"))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
OBS = (64, 64, 1)


# ----------------------------------------------------------------------------- data
def synthetic_pong(rng, batch, seq_len, size=64):
    """Pong-like sequences and their object masks.

    Background 87, walls 236 (rows 0-2 and the last 3), left paddle (2x8, value 213) follows
    the ball, right paddle (2x8, value 192) moves by the action (0 stay, 1 up, 2 down),
    ball 2x2 (value 236) bouncing at 2 px/frame. Returns (batch dict, object mask (B,T,H,W,1)).
    """
    obs = np.full((batch, seq_len, size, size, 1), 87, np.uint8)
    obs[:, :, :3] = 236
    obs[:, :, -3:] = 236
    mask = np.zeros(obs.shape, bool)
    action = rng.integers(0, 3, (batch, seq_len)).astype(np.int32)
    for b in range(batch):
        by, bx = rng.uniform(8, size - 8, 2)
        vy, vx = rng.choice([-2.0, -1.5, 1.5, 2.0], 2)
        left, right = rng.uniform(8, size - 16, 2)
        for t in range(seq_len):
            y0, x0, lp, rp = int(by), int(bx), int(left), int(right)
            for (ys, xs, v) in [((lp, lp + 8), (4, 6), 213), ((rp, rp + 8), (size - 6, size - 4), 192),
                                ((y0, y0 + 2), (x0, x0 + 2), 236)]:
                obs[b, t, ys[0]:ys[1], xs[0]:xs[1]] = v
                mask[b, t, ys[0]:ys[1], xs[0]:xs[1]] = True
            by, bx = by + vy, bx + vx
            if not 4 <= by <= size - 6:
                vy = -vy
                by = np.clip(by, 4, size - 6)
            if not 7 <= bx <= size - 9:
                vx = -vx
                bx = np.clip(bx, 7, size - 9)
            left = np.clip(left + np.sign(by - left - 4) * 1.5, 3, size - 11)
            right = np.clip(right + (0, -2, 2)[action[b, t]], 3, size - 11)
    is_first = np.zeros((batch, seq_len), bool)
    is_first[:, 0] = True
    return {"observation": obs, "action": action, "is_first": is_first}, mask


# ----------------------------------------------------------------------------- helpers
def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def matmul_flops(n=2048, reps=3):
    import jax
    import jax.numpy as jnp
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(jnp.dot).lower(a, a).compile()
    f(a, a).block_until_ready()
    best = min(_timed(lambda: f(a, a).block_until_ready()) for _ in range(reps))
    return 2 * n ** 3 / best


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _cost(lowered_or_compiled):
    c = lowered_or_compiled.cost_analysis()
    c = c[0] if isinstance(c, (list, tuple)) else c
    return float(c.get("flops", float("nan")))


def build_config(preset, overrides):
    import wm as wm_configs
    c = wm_configs.get_config(preset)
    for item in overrides:
        key, value = item.split("=", 1)
        group, name = key.split(".")
        old = c[group][name]
        if isinstance(old, bool):
            value = value.lower() in ("1", "true", "yes")
        elif isinstance(old, (int, float)):
            value = type(old)(float(value)) if isinstance(old, int) else float(value)
        elif isinstance(old, tuple):
            value = tuple(int(v) for v in value.split(",") if v)
        c[group][name] = value
    return c


# ----------------------------------------------------------------------------- speed
def speed_worker(spec):
    """Runs in a subprocess: one configuration, returns its record."""
    import jax
    import jax.numpy as jnp
    from ditto_jax.models import init_train_state, train_step
    c = build_config(spec["preset"], spec["overrides"])
    b, t = c.train.batch_size, c.train.seq_len
    rec = dict(spec, batch=[b, t], decoder=c.model.decoder, conv_impl=c.model.conv_impl,
               compute_dtype=c.train.compute_dtype)
    data, _ = synthetic_pong(np.random.default_rng(0), b, t)
    batch = jax.tree.map(jnp.asarray, data)
    state = init_train_state(c, OBS, 6, jax.random.PRNGKey(0))
    rec["params"] = int(sum(x.size for x in jax.tree.leaves(state.params)))
    step = jax.jit(train_step, donate_argnums=0)
    t0 = time.perf_counter()
    lowered = step.lower(state, batch)
    compiled = lowered.compile()
    rec["compile_s"] = time.perf_counter() - t0
    rec["flops_compiled_scan_once"] = _cost(compiled)
    # Count FLOPs properly: lower (no compile) with the RSSM scan fully unrolled and no
    # frame chunking (a compiled while loop's body is counted once). These are model FLOPs:
    # the recomputation of the chunked encoder/decoder forward is not counted.
    cu = build_config(spec["preset"], spec["overrides"] + [f"model.scan_unroll={t}",
                                                           "model.frame_chunk=0"])
    su = jax.eval_shape(lambda k: init_train_state(cu, OBS, 6, k), jax.random.PRNGKey(0))
    rec["flops_per_step"] = _cost(jax.jit(train_step).lower(su, batch))
    state, m = compiled(state, batch)  # warm-up
    jax.block_until_ready(m)
    times = []
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        state, m = compiled(state, batch)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    rec["step_s"] = float(np.median(times))
    rec["step_s_min"] = float(np.min(times))
    rec["step_s_all"] = [round(x, 3) for x in times]
    rec["frames_per_s"] = b * t / rec["step_s"]
    rec["loss"] = float(m["loss"])
    rec["matmul_flops"] = matmul_flops()
    rec["achieved_flops"] = rec["flops_per_step"] / rec["step_s"]
    rec["fraction_of_matmul_peak"] = rec["achieved_flops"] / rec["matmul_flops"]
    rec["peak_rss_gb"] = peak_rss_gb()
    rec["loadavg_1m"] = os.getloadavg()[0]
    return rec


# ----------------------------------------------------------------------------- parts
def parts_worker(spec):
    import jax
    import jax.numpy as jnp
    from ditto_jax.models import WorldModel, get_feat, kl_balanced, make_model
    from ditto_jax.models.world_model import preprocess
    c = build_config(spec["preset"], spec["overrides"])
    b, t = c.train.batch_size, c.train.seq_len
    model = make_model(c, OBS, 6)
    data, _ = synthetic_pong(np.random.default_rng(0), b, t)
    batch = jax.tree.map(jnp.asarray, data)
    key = jax.random.PRNGKey(0)
    prev = jnp.zeros((b, t, model.action_dim))
    params = jax.jit(model.init)(key, batch["observation"], prev, batch["is_first"], key)
    posts = jax.jit(lambda p: model.apply(p, batch["observation"], prev, batch["is_first"],
                                          key)["posts"])(params)
    feat = get_feat(posts)
    embed = jax.jit(lambda p: model.apply(p, batch["observation"], method=WorldModel.encode))(
        params)
    x = preprocess(batch["observation"])

    obs, first = batch["observation"], batch["is_first"]

    # Inputs are arguments, not closed-over constants (XLA would constant-fold them).
    def enc_loss(p, obs):
        return jnp.mean(model.apply(p, obs, method=WorldModel.encode) ** 2)

    def dec_loss(p, feat, x):
        return jnp.mean((model.apply(p, feat, method=WorldModel.decode) - x) ** 2)

    def rssm_loss(p, embed, prev, first):
        po, pr = model.apply(p, embed, prev, first, key, method=lambda m, *a: m.rssm.observe(*a))
        return kl_balanced(po["logits"], pr["logits"])[0] + get_feat(po).mean()

    rec = dict(spec, batch=[b, t], parts={})
    for name, fn, args in [("encoder", enc_loss, (obs,)), ("decoder", dec_loss, (feat, x)),
                           ("rssm_observe", rssm_loss, (embed, prev, first))]:
        g = jax.jit(jax.grad(fn))
        compiled = g.lower(params, *args).compile()
        jax.block_until_ready(compiled(params, *args))
        times = [_timed(lambda: jax.block_until_ready(compiled(params, *args)))
                 for _ in range(spec["steps"])]
        rec["parts"][name] = {"fwd_bwd_s": float(np.min(times)),
                              "flops_compiled": _cost(compiled)}
        print(f"  {name:13s} fwd+bwd {np.min(times):7.3f} s", file=sys.stderr, flush=True)
    rec["matmul_flops"] = matmul_flops()
    rec["peak_rss_gb"] = peak_rss_gb()
    rec["loadavg_1m"] = os.getloadavg()[0]
    return rec


# ----------------------------------------------------------------------------- recon
def recon_worker(spec):
    """Train with one reconstruction loss; held-out error on object vs background pixels."""
    import jax
    import jax.numpy as jnp
    from ditto_jax.models import init_train_state, train_step
    from ditto_jax.models.rssm import get_feat
    from ditto_jax.models.world_model import WorldModel, prev_actions_onehot, preprocess
    recon, *extra = spec["recon"].split("+")  # e.g. object_weighted+model.decoder_kernel=2
    c = build_config(spec["preset"], spec["overrides"] + [f"loss.recon={recon}"] + extra)
    b, t = c.train.batch_size, c.train.seq_len
    rng = np.random.default_rng(spec.get("seed", 0))
    pool = [synthetic_pong(rng, b, t)[0] for _ in range(16)]
    val, val_mask = synthetic_pong(np.random.default_rng(12345), b, t)
    val = jax.tree.map(jnp.asarray, val)
    state = init_train_state(c, OBS, 3, jax.random.PRNGKey(spec.get("seed", 0)))
    step = jax.jit(train_step, donate_argnums=0)

    @jax.jit
    def recon_err(params, batch):
        prev = prev_actions_onehot(batch["action"], batch["is_first"], state.model.action_dim)
        out = state.model.apply(params, batch["observation"], prev, batch["is_first"],
                                jax.random.PRNGKey(1))
        return (out["recon"] - preprocess(batch["observation"])) ** 2

    del WorldModel, get_feat
    mask = jnp.asarray(val_mask)
    curve = []
    t0 = time.perf_counter()
    for i in range(spec["train_steps"] + 1):
        if i % spec["eval_every"] == 0:
            err = recon_err(state.params, val)
            obj = float((err * mask).sum() / mask.sum())
            bg = float((err * ~mask).sum() / (~mask).sum())
            curve.append({"step": i, "object_mse": obj, "background_mse": bg,
                          "time_s": time.perf_counter() - t0})
            print(f"  {spec['recon']:30s} step {i:5d} object {obj:.4f} background {bg:.5f}",
                  file=sys.stderr, flush=True)
        if i < spec["train_steps"]:
            state, m = step(state, jax.tree.map(jnp.asarray, pool[i % len(pool)]))
    # Object error where objects are: a blank (background-only) prediction scores the
    # object-vs-background contrast; report it for scale.
    blank = float(((jnp.float32(87 / 255 - 0.5) - preprocess(val["observation"])) ** 2
                   * mask).sum() / mask.sum())
    return dict(spec, batch=[b, t], curve=curve, final=curve[-1],
                object_mse_of_background_only_prediction=blank,
                loadavg_1m=os.getloadavg()[0])


# ----------------------------------------------------------------------------- driver
WORKERS = {"speed": speed_worker, "parts": parts_worker, "recon": recon_worker}


def run_sub(mode, spec, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", mode, json.dumps(spec)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=timeout, env=env, text=True)
    except subprocess.TimeoutExpired:
        return dict(spec, error=f"timeout after {timeout} s")
    if p.returncode != 0:
        return dict(spec, error=f"exit code {p.returncode}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def print_speed(records):
    print(f"{'preset':6s} {'decoder':15s} {'conv':6s} {'dtype':8s} {'frames/s':>8s} "
          f"{'s/step':>7s} {'compile':>7s} {'RSS GB':>6s} {'TFLOP':>6s} {'GFLOP/s':>7s} "
          f"{'of peak':>7s} {'load':>5s}")
    for r in records:
        if "error" in r:
            print(f"{r['preset']:6s} {r.get('decoder', '?'):15s} ERROR {r['error']}")
            continue
        print(f"{r['preset']:6s} {r['decoder']:15s} {r['conv_impl']:6s} {r['compute_dtype']:8s} "
              f"{r['frames_per_s']:8.1f} {r['step_s']:7.2f} {r['compile_s']:7.1f} "
              f"{r['peak_rss_gb']:6.2f} {r['flops_per_step'] / 1e12:6.3f} "
              f"{r['achieved_flops'] / 1e9:7.1f} {r['fraction_of_matmul_peak']:7.2f} "
              f"{r['loadavg_1m']:5.1f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mode", choices=sorted(WORKERS), default="speed")
    p.add_argument("--presets", default="paper,small")
    p.add_argument("--decoders", default="depth_to_space,upsample,conv_transpose")
    p.add_argument("--conv-impls", default="matmul")
    p.add_argument("--dtypes", default="float32")
    p.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
    p.add_argument("--set", action="append", default=[], metavar="GROUP.NAME=VALUE",
                   help="config override for every configuration, e.g. model.remat=true")
    p.add_argument("--recon", default="mse,object_weighted,motion_weighted,object_motion",
                   help="comma list; an item may add overrides: object_weighted+model.x=y")
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--timeout", type=int, default=3600, help="per configuration, seconds")
    p.add_argument("--out", default=None)
    p.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args._worker:
        mode, spec = args._worker
        rec = WORKERS[mode](json.loads(spec))
        print(json.dumps(rec))
        return

    records = []
    if args.mode == "recon":
        preset = args.presets.split(",")[0] if args.presets != "paper,small" else "small"
        for recon in args.recon.split(","):
            spec = dict(preset=preset, overrides=args.set, recon=recon,
                        train_steps=args.train_steps, eval_every=args.eval_every)
            rec = run_sub("recon", spec, args.timeout)
            records.append(rec)
            if "error" not in rec:
                f = rec["final"]
                print(f"{recon:30s} object_mse {f['object_mse']:.4f} background_mse "
                      f"{f['background_mse']:.5f}  ({f['time_s']:.0f} s)", flush=True)
        out = args.out or os.path.join(RESULTS, "wm_recon.json")
    else:
        for preset in args.presets.split(","):
            for decoder in args.decoders.split(","):
                for impl in args.conv_impls.split(","):
                    for dtype in args.dtypes.split(","):
                        sets = args.set + [f"model.decoder={decoder}", f"model.conv_impl={impl}",
                                           f"train.compute_dtype={dtype}"]
                        spec = dict(preset=preset, overrides=sets, steps=args.steps)
                        print(f"# {args.mode} {preset} {decoder} {impl} {dtype}",
                              file=sys.stderr, flush=True)
                        records.append(run_sub(args.mode, spec, args.timeout))
                        if args.mode == "speed":
                            print_speed(records[-1:])
                        else:
                            print(json.dumps(records[-1]))
        out = args.out or os.path.join(RESULTS, "wm.json" if args.mode == "speed"
                                       else "wm_parts.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"mode": args.mode, "argv": sys.argv[1:], "records": records,
                   "time": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count()},
                  f, indent=1)
    if args.mode == "speed":
        print()
        print_speed(records)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
