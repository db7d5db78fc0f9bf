"""Reward action-gap diagnostic (ditto_jax/agents/diagnostics.py) for a trained world model.

    python benchmarks/action_gap.py --wm runs/study/wm --expert runs/study/data/expert \
        [--heldout 1] [--horizon 15] [--batch 256] [--out benchmarks/results/action_gap.json]

From held-out expert start states it compares the imagined return of the expert's
actions with one deviating first action (each alternative) and with random actions, for
each latent part (h, z, h+z) and reward (maxcos, cosine, l2), normalised by the advantage
scale. Writes one JSON and prints a table.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def measure(wm_state, held, *, horizon=15, gamma=0.95, batch=256, seed=0, **kw):
    """The action-gap table (diagnostics.action_gap) of a loaded world model on a store of
    held-out expert episodes, from their posterior latents; `kw`: parts, rewards."""
    from ditto_jax.agents import diagnostics
    from ditto_jax.stages.policy_data import encode_store, inference_model
    latents = encode_store(wm_state, held, seed=seed)
    return diagnostics.action_gap(inference_model(wm_state), wm_state.params, latents, held,
                                  horizon=horizon, gamma=gamma, batch=batch, seed=seed, **kw)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--wm", required=True, help="world-model workdir")
    p.add_argument("--wm-step", type=int, default=None, help="checkpoint step (default: last)")
    p.add_argument("--expert", required=True, help="expert RLDS dataset")
    p.add_argument("--heldout", type=int, default=1,
                   help="last N episodes of the dataset used as held-out starts")
    p.add_argument("--horizon", type=int, default=15, help="imagined steps H")
    p.add_argument("--gamma", type=float, default=0.95, help="discount of the returns")
    p.add_argument("--batch", type=int, default=256, help="start states")
    p.add_argument("--seed", type=int, default=0, help="sampling and prior-noise seed")
    p.add_argument("--out", default="benchmarks/results/action_gap.json", help="JSON output")
    args = p.parse_args(argv)

    import ml_collections
    from ditto_jax.agents import diagnostics
    from ditto_jax.stages.policy_data import load_expert
    from ditto_jax.stages.wm_io import load_world_model
    t0 = time.perf_counter()
    wm_state, wm_meta = load_world_model(args.wm, step=args.wm_step)
    cfg = ml_collections.ConfigDict(dict(expert_episodes=0, expert_selection="first",
                                         heldout_episodes=args.heldout, expert_resize=False))
    _, held, info = load_expert(cfg, args.expert, wm_meta)
    if held is None:
        raise SystemExit("no held-out episodes: the dataset needs more than --heldout")
    result = measure(wm_state, held, horizon=args.horizon, gamma=args.gamma, batch=args.batch,
                     seed=args.seed)
    result.update(wm=os.path.abspath(args.wm), wm_step=wm_meta.get("step"),
                  expert=args.expert, heldout_episodes=info["heldout_episodes"],
                  seconds=time.perf_counter() - t0,
                  command="python benchmarks/action_gap.py " + " ".join(
                      argv if argv is not None else sys.argv[1:]))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(diagnostics.format_table(result))
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
