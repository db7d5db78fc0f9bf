"""World-model levers at CPU-demo scale: object error against updates, side by side.

Trains the `small` world model on a recorded Pong dataset once per configuration, for the
same number of updates, and reports the squared error on object pixels (pixels unlike the
batch's median frame: paddles, ball, score), the image loss and the KL, every `--log-every`
updates. This is the measurement behind the demo preset's world-model settings.

  python benchmarks/wm_levers.py --data runs/pong_demo/data/expert,runs/pong_demo/data/noisy,runs/pong_demo/data/random \
      --steps 800 --configs baseline,levers

Configurations (each is a list of `--config.KEY=VALUE` overrides of wm.py:small):
  baseline  the DreamerV2 recipe: sampled latents, plain decoder, lr 3e-4
  levers    learned background + zero-init decoder output, relaxed latents, lr 1e-3
  pixel_bias / probs / lr  one lever at a time (with lr 1e-3 for the first two)
Also: `--from-workdirs NAME=DIR,...` only reads the metrics of finished runs.
"""
import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {
    "baseline": [],
    "levers": ["model.decoder_pixel_bias=true", "model.latent=probs", "optim.lr=1e-3"],
    "pixel_bias": ["model.decoder_pixel_bias=true", "optim.lr=1e-3"],
    "probs": ["model.latent=probs", "optim.lr=1e-3"],
    "lr": ["optim.lr=1e-3"],
}


def read_curve(workdir):
    curve = []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if "recon_mse_fg" in r:
                curve.append({k: r[k] for k in ("step", "recon_mse_fg", "recon_mse",
                                                "image_loss", "kl_prior") if k in r})
    return curve


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="comma-separated RLDS datasets (as for ditto train-wm)")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--configs", default="baseline,levers")
    p.add_argument("--workdir", default="/tmp/ditto_wm_levers")
    p.add_argument("--from-workdirs", default="", help="NAME=DIR,... of finished runs")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/wm_levers.json"))
    args = p.parse_args()
    runs = {}
    if args.from_workdirs:
        for item in args.from_workdirs.split(","):
            name, _, workdir = item.partition("=")
            runs[name] = {"workdir": workdir, "curve": read_curve(workdir)}
    else:
        for name in args.configs.split(","):
            workdir = os.path.join(args.workdir, name)
            cmd = [sys.executable, "-m", "ditto_jax.cli", "train-wm", "--config",
                   os.path.join(REPO, "experiments/configs/wm.py:small"), "--data", args.data,
                   "--workdir", workdir, "--steps", str(args.steps), "--quiet",
                   f"--config.train.log_every={args.log_every}", "--config.train.eval_every=0",
                   "--config.train.val_episodes=0", "--config.train.strip_every=0",
                   *[f"--config.{o}" for o in CONFIGS[name]]]
            print(" ".join(cmd), flush=True)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            runs[name] = {"overrides": CONFIGS[name], "seconds": time.perf_counter() - t0,
                          "curve": read_curve(workdir)}
    print(f"{'step':>6} " + " ".join(f"{n:>22}" for n in runs))
    steps = sorted({c["step"] for r in runs.values() for c in r["curve"]})
    for s in steps:
        cells = []
        for r in runs.values():
            c = next((c for c in r["curve"] if c["step"] == s), None)
            cells.append(f"{c['recon_mse_fg']:.4f} / KL {c['kl_prior']:.2f}" if c else "")
        print(f"{s:>6} " + " ".join(f"{x:>22}" for x in cells))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"argv": sys.argv[1:], "metric": "recon_mse_fg: squared error on object "
                   "pixels ([0,1] scale), training batches", "runs": runs}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
