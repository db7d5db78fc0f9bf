"""The GRU layer's matmul, XLA against torch, on this CPU (issue #20's floor): the DITTO
update's 15 prior steps are mostly (512 x 2024) x (2024 x 3072) products, the same in
both codes. Interleaved rounds, 2 threads each (torch in a subprocess), fp32, and bf16 operands
(`imagine_matmul=bfloat16`'s product: ours `networks.bf16_dot_general`, float32 result;
theirs `linear` on bf16 tensors, bf16 result), for context: this CPU has AMX-BF16.
Writes benchmarks/results/matmul_floor.json.

  python benchmarks/matmul_floor.py [--torch-python /work/torchvenv/bin/python] [--rounds 2]

Per shape (B x 2024 x 3072 for B = 512, 16, 1): median ms and GFLOP/s of ours (`x @ W`,
jitted) and theirs (`torch.nn.functional.linear`, their layout: W stored (out, in)).
`ratio_512` etc.: ours / theirs, median over rounds; `ratio_bf16_512` etc. the same in
bf16, and `bf16_speedup_ours_512` etc. our float32 time / our bf16 time. Under load torch's OpenMP threads
spin-wait and its small-batch figures suffer most, so read the batch-512 ratio.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SHAPES = ((512, 2024, 3072), (16, 2024, 3072), (1, 2024, 3072))

TORCH = r"""
import json, statistics, sys, time, numpy as np, torch
torch.set_num_threads(2)
out = {}
with torch.inference_mode():
    for m, k, n in json.loads(sys.argv[1]):
        rng = np.random.default_rng(0)
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.tensor(rng.standard_normal((m, k), np.float32)).to(dtype)
            w = torch.tensor(rng.standard_normal((n, k), np.float32)).to(dtype)
            reps = 30 if m >= 512 else 300
            torch.nn.functional.linear(x, w)
            times = []
            for _ in range(reps):
                t0 = time.perf_counter(); torch.nn.functional.linear(x, w)
                times.append(time.perf_counter() - t0)
            key = str(m) if dtype == torch.float32 else f"bf16_{m}"
            out[key] = statistics.median(times) * 1e3
print(json.dumps(out))
"""


def ours():
    import jax
    from benchmarks.update_profile import _median_time
    import jax.numpy as jnp
    import numpy as np
    from ditto_jax.models.networks import bf16_dot_general
    bf16 = lambda x, w: bf16_dot_general(x, w, (((1,), (0,)), ((), ())))
    out = {}
    for m, k, n in SHAPES:
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((m, k), np.float32))
        w = jnp.asarray(rng.standard_normal((k, n), np.float32))
        reps = 30 if m >= 512 else 300
        out[str(m)] = _median_time(jax.jit(lambda x, w: x @ w), (x, w), reps) * 1e3
        out[f"bf16_{m}"] = _median_time(jax.jit(bf16), (x, w.astype(jnp.bfloat16)),
                                        reps) * 1e3
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--torch-python", default="/work/torchvenv/bin/python")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/matmul_floor.json"))
    args = p.parse_args()
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    result = {"command": "python benchmarks/matmul_floor.py " + " ".join(sys.argv[1:]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "shapes": SHAPES, "rounds": []}
    for r in range(args.rounds):
        row = {"load_1m": os.getloadavg()[0], "ours_ms": ours()}
        proc = subprocess.run([args.torch_python, "-c", TORCH, json.dumps(SHAPES)],
                              capture_output=True, text=True, check=True)
        row["theirs_ms"] = json.loads(proc.stdout.strip().splitlines()[-1])
        row["gflops"] = {who: {b: 2 * int(b.split("_")[-1]) * 2024 * 3072 / ms / 1e6
                               for b, ms in row[f"{who}_ms"].items()}
                         for who in ("ours", "theirs")}
        result["rounds"].append(row)
        print(f"round {r + 1}/{args.rounds}: " + json.dumps(
            {b: [round(row["ours_ms"][b], 3), round(row["theirs_ms"][b], 3)]
             for b in row["ours_ms"]}), flush=True)
    med = lambda f: statistics.median(f(row) for row in result["rounds"])
    for m, _, _ in SHAPES:
        result[f"ratio_{m}"] = med(lambda r: r["ours_ms"][str(m)] / r["theirs_ms"][str(m)])
        result[f"ratio_bf16_{m}"] = med(
            lambda r: r["ours_ms"][f"bf16_{m}"] / r["theirs_ms"][f"bf16_{m}"])
        result[f"bf16_speedup_ours_{m}"] = med(
            lambda r: r["ours_ms"][str(m)] / r["ours_ms"][f"bf16_{m}"])
        result[f"bf16_speedup_theirs_{m}"] = med(
            lambda r: r["theirs_ms"][str(m)] / r["theirs_ms"][f"bf16_{m}"])
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print({k: round(v, 3) for k, v in result.items() if k.startswith(("ratio_", "bf16_"))})


if __name__ == "__main__":
    main()
