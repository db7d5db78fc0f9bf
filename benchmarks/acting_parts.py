"""Where an acting step's time goes, and the floor it sets (issue #20's 1-env target).

    python benchmarks/acting_parts.py [--rounds 3] [--reps 200]

The paper world model (experiments/configs/wm.py:paper) and the paper actor, random
weights, random uint8 64x64 frames, at 1 and 16 envs, each part jitted alone exactly as
`WorldModelAgent` runs it (acting's conv choice and RSSM layout):
  encode    the encoder on the frames
  posterior the RSSM posterior step from an embedding (img_in, GRU, obs_h/obs_e, logits)
  actor     the actor on the posterior features
  act       the whole `WorldModelAgent.act` (one jitted call, action back on the host)
  encode_bf16, posterior_bf16, act_bf16  the same with bfloat16 products
            (`WorldModelAgent(matmul_dtype="bfloat16")`, opt-in: the encoder's matmul-form
            convs and the RSSM's matmuls, its RSSM kernels cast once)
and, per batch, the bytes of the RSSM posterior path's weights: at batch 1 every weight
is read once per step for a handful of FLOPs, so `weights_mb / posterior_ms` is the rate
the step streams its weights at, and `weights_mb` at the best rate measured for one
matrix on this machine (`benchmarks/results/matmul_floor.json`, the GRU's 25 MB at
batch 1, either library) is the posterior's floor. Rounds are interleaved; medians over
rounds. Writes benchmarks/results/acting_parts.json.
"""
import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

POSTERIOR_LAYERS = ("img_in", "gru", "obs_h", "obs_e", "obs_logits")


def _median_ms(fn, args, reps):
    from benchmarks.update_profile import _median_time
    return _median_time(fn, args, reps) * 1e3


def parts(agent, agent_bf16, n, reps):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from ditto_jax.models.rssm import get_feat
    from benchmarks.acting import time_policy
    from ditto_jax.models.world_model import WorldModel, bf16_rssm_kernels
    model, params = agent.model, agent.params
    rng = np.random.default_rng(0)
    obs = jnp.asarray(rng.integers(0, 256, (n, 64, 64, 1)).astype(np.uint8))
    encode = jax.jit(lambda p, o: model.apply(p, o, method=WorldModel.encode))
    embed = encode(params, obs)
    state = model.apply(params, n, method=WorldModel.initial_state)
    state = dict(state, deter=jnp.tanh(jax.random.normal(jax.random.key(2),
                                                         state["deter"].shape)))
    prev = jnp.zeros((n, model.action_dim))
    first = jnp.zeros((n,), bool)
    posterior = jax.jit(lambda p, s, a, e, f, k: model.apply(
        p, s, a, e, f, k, method=lambda m, *x: m.rssm.obs_step(*x))[0])
    post = posterior(params, state, prev, embed, first, jax.random.key(0))
    actor = jax.jit(lambda p, s: agent.actor_apply(p, get_feat(s)))
    low = model.clone(matmul_dtype="bfloat16")
    encode_bf16 = jax.jit(lambda p, o: low.apply(p, o, method=WorldModel.encode))
    posterior_bf16 = jax.jit(lambda p, s, a, e, f, k: low.apply(
        p, s, a, e, f, k, method=lambda m, *x: m.rssm.obs_step(*x))[0])
    args = (state, prev, embed, first, jax.random.key(0))
    params_bf16 = bf16_rssm_kernels(params)   # cast once, as the bf16 agent keeps them
    return {"encode_ms": _median_ms(encode, (params, obs), reps),
            "encode_bf16_ms": _median_ms(encode_bf16, (params, obs), reps),
            "posterior_ms": _median_ms(posterior, (params,) + args, reps),
            "posterior_bf16_ms": _median_ms(posterior_bf16, (params_bf16,) + args, reps),
            "actor_ms": _median_ms(actor, (agent.actor_params, post), reps),
            "act_ms": time_policy(agent, n, reps)["ms_median"],
            "act_bf16_ms": time_policy(agent_bf16, n, reps)["ms_median"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/acting_parts.json"))
    args = p.parse_args()
    import jax
    import numpy as np
    from benchmarks.acting import _agent, write_result
    agent = _agent("paper", "paper", "default")     # acting's defaults
    agent_bf16 = _agent("paper", "paper", "default", matmul_dtype="bfloat16")
    rssm = agent.params["params"]["rssm"]
    weights_mb = sum(int(np.prod(layer["kernel"].shape)) * 4 for name, layer in rssm.items()
                     if name in POSTERIOR_LAYERS) / 1e6
    result = {"command": "python benchmarks/acting_parts.py " + " ".join(sys.argv[1:]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "backend": jax.default_backend(),
              "posterior_weights_mb": weights_mb, "rounds": []}
    for r in range(args.rounds):
        row = {"load_1m": os.getloadavg()[0]}
        for n in (1, 16):
            row[str(n)] = parts(agent, agent_bf16, n, args.reps)
        result["rounds"].append(row)
        print(f"round {r + 1}/{args.rounds}: " + json.dumps(
            {n: {k: round(v, 3) for k, v in row[n].items()} for n in ("1", "16")}), flush=True)
    for n in ("1", "16"):
        result[n] = {k: statistics.median(row[n][k] for row in result["rounds"])
                     for k in result["rounds"][0][n]}
    result["1"]["posterior_weight_stream_gb_s"] = weights_mb / result["1"]["posterior_ms"]
    floor_path = os.path.join(REPO, "benchmarks/results/matmul_floor.json")
    if os.path.exists(floor_path):
        with open(floor_path) as f:
            floor = json.load(f)
        best_ms = min(min(row["ours_ms"]["1"], row["theirs_ms"]["1"])
                      for row in floor["rounds"])
        gru_mb = 2024 * 3072 * 4 / 1e6
        result["best_gemv_gb_s"] = gru_mb / best_ms
        result["posterior_floor_ms_at_best_gemv"] = weights_mb / result["best_gemv_gb_s"]
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=1))
    write_result(result, args.out)


if __name__ == "__main__":
    main()
