"""Pixel BC training speed: convolutions as XLA's (`lax`, before) against im2col matmuls
(`matmul`, now the CPU default), with a profile of the update. Writes
benchmarks/results/pixel_bc.json.

  python benchmarks/pixel_bc.py [--preset small] [--passes 2] [--updates 4]

The study preset's pixel BC (policy.py:small: batch 256, 4 stacked 64x64 frames, depth
16) on 10 fake expert episodes of 500 steps (speed does not depend on the content). Per
conv choice, interleaved in each pass:
  update    s per update through the training loop itself (`policy_loop.make_advance`,
            sampling on device included), wall and process CPU time;
  sample    the data path alone (uniform steps, frame stacking), jitted;
  forward   the loss alone; forward_backward: loss and gradients.
Wall time on this shared 2-core machine follows the load (recorded); CPU seconds per
update are the steadier figure. Same maths either way (tests/test_acting.py pins it).
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
import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _store(episodes=10, length=500, seed=0):
    from ditto_jax.data.store import EpisodeStore
    rng = np.random.default_rng(seed)
    n = episodes * length
    starts = np.arange(episodes) * length
    first, last = np.zeros(n, bool), np.zeros(n, bool)
    first[starts], last[starts + length - 1] = True, True
    return EpisodeStore(rng.integers(0, 256, (n, 64, 64, 1)).astype(np.uint8),
                        rng.integers(0, 6, n).astype(np.int32), np.zeros(n, np.float32),
                        np.ones(n, np.float32), first, last, np.zeros(n, bool), starts,
                        np.full(episodes, length), num_actions=6)


def _timed(fn, repeats):
    jax.block_until_ready(fn())
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu)}


class _BC:
    """The pixel-BC method with its training convolutions forced to `impl`."""

    def __init__(self, impl):
        from ditto_jax import methods
        self.base, self.impl = methods.get("bc"), impl

    def __getattr__(self, name):
        return getattr(self.base, name)

    def train_step(self, config, ctx):
        from ditto_jax.agents.bc import make_bc
        _, _, step = make_bc(config, ctx.num_actions, conv_impl=self.impl)
        return lambda state, batch, rng, wm_params: step(state, batch, rng)


def bench(impl, cfg, ctx, data, updates):
    import optax
    from ditto_jax.core import parallel
    from ditto_jax.agents.bc import PixelPolicy
    from ditto_jax.stages.policy_loop import make_advance
    m = _BC(impl)
    axes = jax.tree.map(lambda _: None, data)
    advance = make_advance(m, cfg, ctx, axes, parallel.make_mesh())
    state = jax.vmap(lambda k: m.init(cfg, ctx, k))(jax.random.split(jax.random.key(0), 1))
    keys = jax.random.split(jax.random.key(1), 1)
    box = {"state": state, "s": 0}

    def chunk():
        box["state"], metrics = advance(box["state"], keys, data, None, box["s"], updates)
        box["s"] += updates
        return metrics
    out = {"update": {k: v / updates for k, v in _timed(chunk, 2).items()}}
    sample = jax.jit(lambda d, k: m.sample(cfg, d, k))
    batch = sample(data, jax.random.key(0))
    out["sample"] = _timed(lambda: sample(data, jax.random.key(0)), 5)
    net = PixelPolicy(6, cfg.bc_depth, conv_impl=impl)
    params = jax.tree.map(lambda x: x[0], box["state"].params)

    def loss(p):
        logits = net.apply(p, batch["frames"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["action"]).mean()
    fwd, grad = jax.jit(loss), jax.jit(jax.value_and_grad(loss))
    out["forward"] = _timed(lambda: fwd(params), 3)
    out["forward_backward"] = _timed(lambda: grad(params), 3)
    cost = grad.lower(params).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    out["forward_backward_gflop"] = float(cost.get("flops", 0.0)) / 1e9
    out["load_1m"] = os.getloadavg()[0]
    return out


def per_layer(impl, cfg, batch_size):
    """CPU seconds of each conv layer's forward + backward (weights; inputs after layer 1)
    and its GFLOP, at the training batch."""
    from ditto_jax.agents.bc import _same_pad
    from ditto_jax.models.networks import conv2d
    rng = np.random.default_rng(0)
    h, c, rows = 64, int(cfg.bc_frame_stack), []
    for i in range(4):
        o = int(cfg.bc_depth) * 2 ** i
        x = _same_pad(jnp.asarray(rng.standard_normal((batch_size, h, h, c)), jnp.float32))
        w = jnp.asarray(rng.standard_normal((4, 4, c, o)) * 0.05, jnp.float32)
        wrt = (1,) if i == 0 else (0, 1)
        f = jax.jit(jax.grad(lambda x, w: jnp.sum(jax.nn.relu(conv2d(x, w, 2, "VALID", impl))),
                             argnums=wrt))
        cost = f.lower(x, w).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        rows.append({"layer": i + 1, "in": [h, h, c], "out_channels": o,
                     "gflop": float(cost.get("flops", 0.0)) / 1e9,
                     **_timed(lambda: f(x, w), 3)})
        h, c = h // 2, o
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--updates", type=int, default=4, help="updates per timed loop call")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/pixel_bc.json"))
    args = p.parse_args()
    from ditto_jax import methods
    from ditto_jax.core.config import load_config
    from ditto_jax.methods.base import Context
    cfg = load_config(os.path.join(REPO, f"experiments/configs/policy.py:{args.preset}"))
    ctx = Context(num_actions=6, obs_shape=(64, 64, 1))
    data = jax.device_put(methods.get("bc").make_data(cfg, ctx, _store(), None))
    out = {"command": "python " + " ".join([os.path.relpath(__file__, REPO)] + sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "jax": jax.__version__, "backend": jax.default_backend()},
           "preset": args.preset, "batch": int(cfg.bc_batch_size),
           "frame_stack": int(cfg.bc_frame_stack), "depth": int(cfg.bc_depth),
           "passes": []}
    for _ in range(args.passes):
        row = {impl: bench(impl, cfg, ctx, data, args.updates) for impl in ("lax", "matmul")}
        for impl in ("lax", "matmul"):
            row[impl]["conv_layers"] = per_layer(impl, cfg, int(cfg.bc_batch_size))
        out["passes"].append(row)
        print(json.dumps(row), flush=True)
    for unit in ("wall_s", "cpu_s"):
        out[f"speedup_update_{unit[:-2]}"] = statistics.median(
            r["lax"]["update"][unit] / r["matmul"]["update"][unit] for r in out["passes"])
        for impl in ("lax", "matmul"):
            out[f"updates_per_s_{impl}_{unit[:-2]}"] = statistics.median(
                1 / r[impl]["update"][unit] for r in out["passes"])
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps({k: v for k, v in out.items() if k.startswith(("speedup", "updates"))}))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
