"""The encoder's forward convolutions at acting time (issue #20), and what they and the
RSSM's Dense layout do to `WorldModelAgent.act`. Interleaved round by round in one
process, so the machine's load hits every variant alike. Writes
benchmarks/results/conv_forward.json.

  python benchmarks/conv_forward.py [--rounds 3] [--steps 100]

Per round:
- each of the paper encoder's four k4 s2 VALID layers (64x64x1 -> 48, 31x31x48 -> 96,
  14x14x96 -> 192, 6x6x192 -> 384) alone, forward, as `networks.conv2d` with
  `lax` (XLA's convolution), `matmul` (space-to-depth im2col, what training uses) and
  `strided` (im2col from strided views, one matmul), at 1, 4 and 16 frames;
- `WorldModelAgent.act` (encoder, posterior step, actor, sample; one jitted call) with the
  paper world model and actor, 1 and 16 envs, fresh random frames every step as
  `benchmarks/acting.py` times it, for the encoder rule (`conv_impl` lax / acting) crossed
  with the RSSM's Dense layout (`dense_layout` in_out / out_in).
Ratios are medians over rounds: `ratio_conv_{layer}_{batch}` strided / lax;
`ratio_act_{envs}_conv` (acting, out_in) / (lax, out_in), the encoder rule alone;
`ratio_act_{envs}_dense` (lax, out_in) / (lax, in_out), the layout alone;
`ratio_act_{envs}_both` (acting, out_in) / (lax, in_out).
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ((64, 1, 48), (31, 48, 96), (14, 96, 192), (6, 192, 384))  # (size, Cin, Cout)
IMPLS = ("lax", "matmul", "strided")
AGENTS = (("lax", "in_out"), ("lax", "out_in"), ("acting", "out_in"))


def conv_fns(batch):
    """{layer: (inputs, {impl: jitted conv})}, checked equal to XLA's convolution."""
    from ditto_jax.models.networks import conv2d
    rng = np.random.default_rng(0)
    out = {}
    for i, (h, c, o) in enumerate(LAYERS):
        x = jnp.asarray(rng.standard_normal((batch, h, h, c)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((4, 4, c, o)) * 0.1, jnp.float32)
        fns = {impl: jax.jit(lambda x, w, impl=impl: conv2d(x, w, 2, "VALID", impl))
               for impl in IMPLS}
        want = np.asarray(fns["lax"](x, w))
        for impl in IMPLS[1:]:
            np.testing.assert_allclose(np.asarray(fns[impl](x, w)), want, rtol=1e-4,
                                       atol=1e-3)
        out[i] = ((x, w), fns)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=100, help="timed acting steps per figure")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/conv_forward.json"))
    args = p.parse_args()
    from benchmarks.acting import _agent, time_policy, write_result
    from benchmarks.update_profile import _median_time
    convs = {b: conv_fns(b) for b in (1, 4, 16)}
    agents = {f"{c}/{d}": _agent("paper", "paper", c, dense_layout=d) for c, d in AGENTS}
    # Same maths: the same actions and probabilities on the same frames and keys.
    frames = np.random.default_rng(1).integers(0, 256, (16, 64, 64, 1)).astype(np.uint8)
    outs = {}
    for name, agent in agents.items():
        _, act = agent.act(agent.init(16), frames, np.ones(16, bool), jax.random.key(3))
        outs[name] = (act, np.asarray(agent.last_probs))
    for name, (act, probs) in outs.items():
        np.testing.assert_array_equal(act, outs["lax/in_out"][0], err_msg=name)
        np.testing.assert_allclose(probs, outs["lax/in_out"][1], rtol=1e-5, atol=1e-6)
    result = {"command": "python benchmarks/conv_forward.py " + " ".join(sys.argv[1:]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": {"cpus": os.cpu_count(), "jax": jax.__version__},
              "layers": [list(x) for x in LAYERS], "rounds": []}
    for r in range(args.rounds):
        row = {"conv_ms": {}, "act_ms": {}, "load_1m": os.getloadavg()[0]}
        for batch, layers in convs.items():
            for i, (inputs, fns) in layers.items():
                row["conv_ms"][f"{i}_{batch}"] = {
                    impl: _median_time(fn, inputs, 200 if batch < 16 else 100) * 1e3
                    for impl, fn in fns.items()}
        for envs in (1, 16):
            row["act_ms"][str(envs)] = {
                name: time_policy(agent, envs, args.steps)["ms_median"]
                for name, agent in agents.items()}
        result["rounds"].append(row)
        print(f"round {r + 1}/{args.rounds}: load {row['load_1m']:.2f} " + json.dumps(
            {k: {b: {m: round(v, 3) for m, v in d.items()} for b, d in row[k].items()}
             for k in ("conv_ms", "act_ms")}), flush=True)

    def ratio(kind, key, num, den):
        return statistics.median(row[kind][key][num] / row[kind][key][den]
                                 for row in result["rounds"])
    for key in result["rounds"][0]["conv_ms"]:
        result[f"ratio_conv_{key}"] = ratio("conv_ms", key, "strided", "lax")
    for envs in ("1", "16"):
        result[f"ratio_act_{envs}_conv"] = ratio("act_ms", envs, "acting/out_in",
                                                 "lax/out_in")
        result[f"ratio_act_{envs}_dense"] = ratio("act_ms", envs, "lax/out_in", "lax/in_out")
        result[f"ratio_act_{envs}_both"] = ratio("act_ms", envs, "acting/out_in",
                                                 "lax/in_out")
    write_result(result, args.out)


if __name__ == "__main__":
    main()
