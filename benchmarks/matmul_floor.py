"""The GRU layer's matmul, XLA against torch, on this CPU (issue #20's floor): the DITTO
update's 15 prior steps are mostly (512 x 2024) x (2024 x 3072) products, the same in
both codes. Interleaved rounds, 2 threads each (torch in a subprocess), fp32.
Writes benchmarks/results/matmul_floor.json.

  python benchmarks/matmul_floor.py [--torch-python /work/torchvenv/bin/python] [--rounds 2]

Per shape (B x 2024 x 3072 for B = 512, 16, 1): median ms and GFLOP/s of ours (`x @ W`,
jitted) and theirs (`torch.nn.functional.linear`, their layout: W stored (out, in)).
`ratio_512` etc.: ours / theirs, median over rounds. Under load torch's OpenMP threads
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
        x = torch.tensor(rng.standard_normal((m, k), np.float32))
        w = torch.tensor(rng.standard_normal((n, k), np.float32))
        reps = 30 if m >= 512 else 300
        torch.nn.functional.linear(x, w)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter(); torch.nn.functional.linear(x, w)
            times.append(time.perf_counter() - t0)
        out[str(m)] = statistics.median(times) * 1e3
print(json.dumps(out))
"""


def ours():
    import jax
    from benchmarks.update_profile import _median_time
    import jax.numpy as jnp
    import numpy as np
    out = {}
    for m, k, n in SHAPES:
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal((m, k), np.float32))
        w = jnp.asarray(rng.standard_normal((k, n), np.float32))
        reps = 30 if m >= 512 else 300
        out[str(m)] = _median_time(jax.jit(lambda x, w: x @ w), (x, w), reps) * 1e3
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
        row["gflops"] = {who: {b: 2 * int(b) * 2024 * 3072 / ms / 1e6
                               for b, ms in row[f"{who}_ms"].items()}
                         for who in ("ours", "theirs")}
        result["rounds"].append(row)
        print(f"round {r + 1}/{args.rounds}: " + json.dumps(
            {b: [round(row["ours_ms"][b], 3), round(row["theirs_ms"][b], 3)]
             for b in row["ours_ms"]}), flush=True)
    for m, _, _ in SHAPES:
        result[f"ratio_{m}"] = statistics.median(
            row["ours_ms"][str(m)] / row["theirs_ms"][str(m)] for row in result["rounds"])
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print({k: round(v, 3) for k, v in result.items() if k.startswith("ratio_")})


if __name__ == "__main__":
    main()
