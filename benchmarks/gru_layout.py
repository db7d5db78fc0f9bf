"""The RSSM's Dense layout at acting time (issue #20): ours with the trained (in, out)
kernels against transposed (out, in) copies (`WorldModelAgent(dense_layout=...)`,
`networks.DenseOutIn`), interleaved round by round in one process, so the machine's load
hits both alike. Writes benchmarks/results/acting_gru_layout.json.

  python benchmarks/gru_layout.py [--rounds 3] [--steps 100]

Two measurements per round:
- the GRU layer alone, (B, 2024) -> (B, 3072): `nn.Dense` (x @ W) against
  `networks.DenseOutIn` on the transposed copy, at B = 1, 16 and 512 (acting; the
  update's batch);
- `WorldModelAgent.act` (encoder, posterior step, actor, sample: one jitted call) on the
  `paper` world model and actor, 1 and 16 envs, fresh random frames every step, as
  `benchmarks/acting.py` times it.
Ratios are out_in / in_out per round (below 1: the transposed copy is faster), and their
medians over rounds are the top-level `ratio_*` keys.
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


def matmul_ms(batch, n):
    """The GRU layer as the RSSM builds it: `nn.Dense` against `DenseOutIn`."""
    import flax.linen as nn
    from ditto_jax.models.networks import DenseOutIn, out_in_params
    x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, 2024), np.float32))
    dense = nn.Dense(3072, use_bias=False)
    params = dense.init(jax.random.key(0), x)["params"]
    in_out = jax.jit(lambda p, x: dense.apply({"params": p}, x))
    out_in = jax.jit(lambda p, x: DenseOutIn(3072, use_bias=False).apply({"params": p}, x))
    t_params = out_in_params(params)
    np.testing.assert_allclose(np.asarray(in_out(params, x)), np.asarray(out_in(t_params, x)),
                               rtol=1e-4, atol=1e-4)
    from benchmarks.update_profile import _median_time
    return {"in_out": _median_time(in_out, (params, x), n) * 1e3,
            "out_in": _median_time(out_in, (t_params, x), n) * 1e3}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=100, help="timed acting steps per figure")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/"
                                                       "acting_gru_layout.json"))
    args = p.parse_args()
    from benchmarks.acting import _agent, time_policy, write_result
    agents = {layout: _agent("paper", "paper", "default", dense_layout=layout)
              for layout in ("in_out", "out_in")}
    # Same maths: the same actions and probabilities on the same frames and keys.
    frames = np.random.default_rng(1).integers(0, 256, (16, 64, 64, 1)).astype(np.uint8)
    outs = {}
    for layout, agent in agents.items():
        carry = agent.init(16)
        _, act = agent.act(carry, frames, np.ones(16, bool), jax.random.key(3))
        outs[layout] = (act, np.asarray(agent.last_probs))
    np.testing.assert_array_equal(outs["in_out"][0], outs["out_in"][0])
    np.testing.assert_allclose(outs["in_out"][1], outs["out_in"][1], rtol=1e-5, atol=1e-6)
    result = {"command": "python benchmarks/gru_layout.py " + " ".join(sys.argv[1:]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": {"cpus": os.cpu_count(), "jax": jax.__version__},
              "rounds": []}
    for r in range(args.rounds):
        row = {"matmul_ms": {}, "act_ms": {}, "load_1m": os.getloadavg()[0]}
        for batch in (1, 16, 512):
            row["matmul_ms"][str(batch)] = matmul_ms(batch, 50 if batch == 512 else 300)
        for envs in (1, 16):
            row["act_ms"][str(envs)] = {
                layout: time_policy(agent, envs, args.steps)["ms_median"]
                for layout, agent in agents.items()}
        result["rounds"].append(row)
        print(f"round {r + 1}/{args.rounds}: " + json.dumps(
            {k: {b: {lay: round(v, 3) for lay, v in d.items()} for b, d in row[k].items()}
             for k in ("matmul_ms", "act_ms")}), flush=True)

    def ratio(kind, key):
        return statistics.median(row[kind][key]["out_in"] / row[kind][key]["in_out"]
                                 for row in result["rounds"])
    for batch in ("1", "16", "512"):
        result[f"ratio_matmul_{batch}"] = ratio("matmul_ms", batch)
    for envs in ("1", "16"):
        result[f"ratio_act_{envs}"] = ratio("act_ms", envs)
    write_result(result, args.out)


if __name__ == "__main__":
    main()
