"""A scripted expert's live return, measured exactly as `ditto run` measures its expert row.

    python benchmarks/expert_live.py --game breakout --policy tracker --episodes 10 \
        --max-steps 5000 --out benchmarks/results/breakout_tracker.json

Plays `--policy` (expert | tracker | module:factory) and uniform random play through
`evaluation.reference_returns`: the learners' loop, `sync` vector envs, 64x64 frames,
the given protocol (default `ditto`: no sticky actions, up to 30 no-op starts, game over
ends the episode) and a cap of --max-steps agent steps per episode. Seeds: the evaluation
seed of `ditto run` policy seed --seed (12,345 + 1,000 seed), so the figure is the one a
run's expert row would show. Writes mean return, its standard error, every return and
episode length, the number of distinct (return, length) pairs, and random play's figures.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--game", default="breakout")
    p.add_argument("--policy", default="tracker", help="expert | tracker | module:factory")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=5_000, help="agent steps per episode")
    p.add_argument("--protocol", default="ditto", choices=["ditto", "machado"])
    p.add_argument("--seed", type=int, default=0, help="`ditto run` policy seed")
    p.add_argument("--envs", type=int, default=10)
    p.add_argument("--out", default="benchmarks/results/breakout_tracker.json")
    args = p.parse_args(argv)
    from ditto_jax.core import provenance
    from ditto_jax.stages.evaluation import reference_returns
    t0 = time.perf_counter()
    seed = 12_345 + 1_000 * args.seed  # pipeline/run_eval.py's evaluation seed
    refs = reference_returns(args.game, protocol=args.protocol, max_steps=args.max_steps,
                             episodes=args.episodes, seed=seed, num_envs=args.envs,
                             expert_spec=args.policy)
    result = {"command": "python benchmarks/expert_live.py " + " ".join(
                  argv if argv is not None else sys.argv[1:]),
              "git": provenance.git_info(), "policy": args.policy, "eval_seed": seed,
              "expert": refs["expert"], "random": refs["random"],
              # Under `ditto` a deterministic game repeats: distinct (return, length) pairs.
              "expert_distinct_episodes": len(set(zip(refs["expert"]["returns"],
                                                      refs["expert"]["lengths"]))),
              "seconds": time.perf_counter() - t0}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    for name in ("expert", "random"):
        r = refs[name]
        print(f"{name:7s} return {r['return_mean']:.1f} +- {r['return_se']:.1f} (s.e.), "
              f"lengths {min(r['lengths'])}-{max(r['lengths'])} (mean {r['length_mean']:.0f}), "
              f"{r['capped_episodes']} of {r['episodes']} at the {args.max_steps}-step cap")
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
