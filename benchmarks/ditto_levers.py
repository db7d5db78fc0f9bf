"""Offline screening of DITTO's policy levers on one world model (issue 9, item 3).

    python benchmarks/ditto_levers.py --wm runs/study/wm --expert runs/study/data/expert \
        [--steps 800] [--seed 100] [--only h5,h5_all] [--out benchmarks/results/ditto_levers.json]

Trains each variant with `train_policy` and records, over training, the diagnostics that
need no real-environment return: policy entropy, and on held-out expert episodes the
greedy accuracy and E[pi(a_E|s_E)]. Nothing here plays the game, so choosing the study's
DITTO settings from this table is not tuning on the evaluation that is reported. The seed
(100) is not one of the study's policy seeds (0, 1, 2).

Results are written after every variant, so a killed run keeps what it measured.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> (method, policy-config overrides). Every variant starts from the `small` preset.
VARIANTS = {
    "paper": ("ditto", {}),                                      # H 15, eta 0.05, std. adv.
    "h1": ("ditto", {"horizon": 1}),
    "h3": ("ditto", {"horizon": 3}),
    "h5": ("ditto", {"horizon": 5}),
    "h9": ("ditto", {"horizon": 9}),
    "h5_eta0.3": ("ditto", {"horizon": 5, "entropy": 0.3}),
    "h5_eta_sched": ("ditto", {"horizon": 5, "entropy": 0.5, "entropy_final": 0.05,
                               "entropy_decay_steps": -1}),   # -1: decay over all steps
    "h5_unstd_eta1e-3": ("ditto", {"horizon": 5, "standardize_advantages": False,
                                   "entropy": 1e-3}),
    "h5_all_actions": ("ditto", {"horizon": 5, "first_step": "all_actions"}),
    "h15_all_actions": ("ditto", {"first_step": "all_actions"}),
    "h5_bcinit": ("ditto_bcinit", {"horizon": 5, "bc_init_steps": -1,
                                   "critic_warmup_steps": -1}),  # -1: 3/8 and 1/8 of steps
    "dbc": ("dbc", {}),
    # Reward ablation on the study's DITTO settings (H 5, eta 0.3).
    "h5_eta0.3_cosine": ("ditto", {"horizon": 5, "entropy": 0.3, "reward": "cosine"}),
    "h5_eta0.3_l2": ("ditto", {"horizon": 5, "entropy": 0.3, "reward": "l2"}),
    "h5_eta0.3_sparse": ("ditto", {"horizon": 5, "entropy": 0.3, "reward": "sparse"}),
    # BC trust-region weight (issue 18, part 4) on the demo's DITTO (BC init, l2) settings;
    # bc_weight 0 is DITTO (BC init, l2) itself.
    **{f"demo_bctr{w}": ("ditto_bctr", {"horizon": 5, "entropy": 0.3, "reward": "l2",
                                        "bc_init_steps": -1, "critic_warmup_steps": -1,
                                        "bc_weight": w}) for w in (0.0, 0.1, 0.3, 1.0, 3.0)},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--wm", required=True, help="world-model workdir")
    p.add_argument("--expert", required=True, help="expert RLDS dataset")
    p.add_argument("--steps", type=int, default=800, help="updates per variant")
    p.add_argument("--seed", type=int, default=100, help="policy seed (not a study seed)")
    p.add_argument("--only", default="", help="comma-separated subset of the variants")
    p.add_argument("--expert-episodes", type=int, default=0,
                   help="train on the first N_E recorded expert episodes (0 = all but the "
                        "held-out ones), as `ditto run --config.expert_episodes`")
    p.add_argument("--workdir", default="runs/ditto_levers", help="policy workdirs")
    p.add_argument("--out", default="benchmarks/results/ditto_levers.json", help="JSON output")
    args = p.parse_args(argv)

    from ditto_jax.core.config import load_config
    from ditto_jax.core.resources import config_path
    from ditto_jax.stages.train_policy import train_policy
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    results = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f).get("variants", {})
    for name in names:
        method, overrides = VARIANTS[name]
        config = load_config(config_path("policy.py") + ":small")
        config.update(dict(steps=args.steps, seed=args.seed, eval_every=0,
                           save_every=args.steps, log_every=max(args.steps // 16, 1),
                           expert_episodes=args.expert_episodes))
        for k, v in overrides.items():
            if v == -1 and k == "entropy_decay_steps":
                v = args.steps
            if v == -1 and k == "bc_init_steps":
                v = 3 * args.steps // 8
            if v == -1 and k == "critic_warmup_steps":
                v = args.steps // 8
            config[k] = v
        workdir = os.path.join(args.workdir, name)
        t0 = time.perf_counter()
        train_policy(config, method=method, wm=args.wm, expert=args.expert, workdir=workdir,
                     progress=False, log=lambda *_: None)
        seconds = time.perf_counter() - t0
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            ms = [json.loads(line) for line in f if line.strip()]
        curve = [{k: m.get(k) for k in ("step", "entropy", "heldout_action_accuracy",
                                         "heldout_expert_prob", "heldout_entropy", "reward",
                                         "first_q_gap", "trust_nll")} for m in ms]
        last = curve[-1]
        results[name] = {"method": method, "overrides": overrides, "seconds": seconds,
                         "final": last, "curve": curve}
        print(f"{name:18s} acc {last['heldout_action_accuracy']:.3f}  "
              f"E[pi(a_E)] {last['heldout_expert_prob']:.3f}  "
              f"held-out entropy {last['heldout_entropy']:.3f}  ({seconds:.0f} s)", flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"wm": args.wm, "expert": args.expert, "steps": args.steps,
                       "expert_episodes": args.expert_episodes,
                       "seed": args.seed, "command": "python benchmarks/ditto_levers.py "
                       + " ".join(argv if argv is not None else sys.argv[1:]),
                       "variants": results}, f, indent=2)


if __name__ == "__main__":
    main()
