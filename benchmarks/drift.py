"""Offline drift meter (issue 18, part 5): the paper's Eq. 7 distance for trained policies.

    python benchmarks/drift.py --policies runs/confirm/policies [--only a,b] [--length 50] \\
        [--batch 32] [--agreement benchmarks/results/study/onpolicy_errors.json] \\
        [--out benchmarks/results/drift.json]

For every policy workdir in --policies (methods acting on world-model latents; pixel BC is
skipped): from held-out expert starts (the policy's own held-out episodes, the same starts
and world-model noise for every policy), roll the policy `--length` imagined steps and take
the mean latent distance to the nearest expert latent of the policy's training set
(stages/policy_probes.py). The JSON also holds the reward spread of the same probe.
Given an on-policy agreement JSON (benchmarks/onpolicy_errors.py), prints the Spearman
correlation of -drift with on-policy expert agreement over the policies in both: a drift
meter that sees covariate shift ranks them the same way (rho near 1).
Writes the JSON after every policy.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def score(workdir, *, length, batch, cache):
    """Drift and reward-spread probe of one trained policy (None for pixel policies)."""
    from ditto_jax import methods
    from ditto_jax.stages.policy_agents import load_pinned_world_model, load_policy
    from ditto_jax.stages.policy_data import encode_store, load_expert, make_context
    from ditto_jax.stages.policy_probes import make_policy_probes
    agent, config, meta = load_policy(workdir)
    if not hasattr(agent, "actor_params"):
        return None
    wm_state, wm_meta = load_pinned_world_model(meta, workdir)
    key = (meta["world_model"]["workdir"], meta["world_model"]["step"],
           meta["expert"]["source"], int(config.expert_episodes), int(config.heldout_episodes))
    if key not in cache:   # encode each (world model, expert subset) once, seed 0
        store, held, _ = load_expert(config, meta["expert"]["source"], wm_meta)
        cache[key] = (store, held, encode_store(wm_state, store),
                      encode_store(wm_state, held) if held else None)
    _, held, latents, held_latents = cache[key]
    config.probe_every, config.drift_length, config.probe_batch = 1, length, batch
    ctx = make_context(config, wm_state, wm_meta)
    actor_apply = methods.get(meta["method"]).actor_apply(config, ctx)
    probe = make_policy_probes(config, ctx, actor_apply, wm_state.params, latents,
                               held_latents, held)
    if probe is None:
        raise SystemExit(f"{workdir}: no held-out expert episode long enough to probe")
    out = probe(agent.actor_params)
    out.update(method=meta["method"], seed=int(config.seed),
               expert_episodes=meta["expert"]["episodes"], step=meta["checkpoint"]["step"])
    return out


def read_agreement(path):
    """{policy name: on-policy expert agreement} from an onpolicy_errors.py JSON, or from a
    `ditto run` workdir's eval/ folder (its eval/NAME.json files, named as the policies)."""
    from ditto_jax.errors import DittoError
    if os.path.isdir(path):
        out = {}
        for fname in sorted(os.listdir(path)):
            if not fname.endswith(".json"):
                continue
            with open(os.path.join(path, fname)) as f:
                r = json.load(f)
            if isinstance(r, dict) and r.get("expert_agreement") is not None:
                out[fname[:-len(".json")]] = float(r["expert_agreement"])
        if not out:
            raise DittoError("No evaluation with on-policy agreement in the folder",
                             path=path, expected="eval/NAME.json files with expert_agreement "
                             "(ditto run with --config.eval.agreement=true)")
        return out
    with open(path) as f:
        return {n: r["expert_agreement"] for n, r in json.load(f)["policies"].items()}


def spearman(drift, agreement):
    """Spearman's rho (and p) of -drift against agreement; names in both."""
    from scipy.stats import spearmanr
    names = sorted(set(drift) & set(agreement))
    if len(names) < 3:
        return {"n": len(names), "rho": None, "p": None}
    rho, p = spearmanr([-drift[n] for n in names], [agreement[n] for n in names])
    return {"n": len(names), "rho": float(rho), "p": float(p), "policies": names}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--policies", required=True, help="folder of policy workdirs")
    p.add_argument("--only", default="", help="comma-separated workdir names (default: all)")
    p.add_argument("--length", type=int, default=50, help="imagined policy steps L")
    p.add_argument("--batch", type=int, default=32, help="held-out expert starts")
    p.add_argument("--agreement", default="",
                   help="benchmarks/onpolicy_errors.py JSON, or a `ditto run` workdir's "
                        "eval/ folder: Spearman against their expert_agreement")
    p.add_argument("--out", default="benchmarks/results/drift.json", help="JSON output")
    args = p.parse_args(argv)
    if not os.path.isdir(args.policies):
        raise SystemExit(f"--policies {args.policies}: not a folder of policy workdirs")
    names = [n for n in args.only.split(",") if n] or sorted(
        n for n in os.listdir(args.policies)
        if os.path.isdir(os.path.join(args.policies, n, "checkpoints")))
    out = {"command": "python benchmarks/drift.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "length": args.length,
        "batch": args.batch, "policies": {}}
    cache = {}
    for i, name in enumerate(names):
        t0 = time.perf_counter()
        r = score(os.path.join(args.policies, name), length=args.length, batch=args.batch,
                  cache=cache)
        if r is None:
            print(f"[{i + 1}/{len(names)}] {name}: pixel policy, skipped", flush=True)
            continue
        r["seconds"] = time.perf_counter() - t0
        out["policies"][name] = r
        print(f"[{i + 1}/{len(names)}] {name:18s} drift {r['drift_mean']:.3f} (last "
              f"{r['drift_last']:.3f}, expert floor {r['drift_expert']:.3f})  ({r['seconds']:.0f} s)",
              flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
    if args.agreement:
        agreement = read_agreement(args.agreement)
        drift = {n: r["drift_mean"] for n, r in out["policies"].items()}
        out["spearman"] = spearman(drift, agreement)
        print(f"Spearman rho(-drift, on-policy agreement) = {out['spearman']['rho']} "
              f"over {out['spearman']['n']} policies (p = {out['spearman']['p']})")
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    from ditto_jax.errors import DittoError
    try:
        main()
    except DittoError as e:
        raise SystemExit(f"drift: {e}")
