"""Which actions do the learners take in the real game, against the expert's recorded ones?

    python benchmarks/action_histogram.py --game breakout \\
        --expert runs/breakout_ne/data/expert --expert-episodes 1 \\
        --policies runs/breakout_ne/policies --episodes 3 \\
        --out benchmarks/results/breakout_breakout_ne_s0-2/action_histogram.json

For the expert, the fraction of each action over its first `--expert-episodes` recorded
episodes (the N_E = k training set). For every policy workdir under `--policies`, the
fraction of each action it took over `--episodes` real-game episodes (the `ditto`
protocol, sampled actions, `--max-steps` cap, evaluation seed `--seed`), and the mean
episode length. A diagnostic of what a cloner learned about rare actions such as
Breakout's FIRE (pressed about once per life by the expert).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


class _Counter:
    """`run_episodes` observer: counts the actions taken in counted steps."""

    def __init__(self, num_actions):
        self.counts = np.zeros(num_actions, np.int64)

    def observe(self, obs, is_first, actions, counted, probs=None):
        del obs, is_first, probs
        np.add.at(self.counts, np.asarray(actions)[np.asarray(counted)], 1)


def _fractions(counts, names):
    total = max(int(counts.sum()), 1)
    return {n: round(float(c) / total, 4) for n, c in zip(names, counts)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--game", required=True)
    p.add_argument("--expert", required=True, help="the recorded expert dataset folder")
    p.add_argument("--expert-episodes", type=int, default=1)
    p.add_argument("--policies", required=True, help="a folder of policy workdirs")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=5_000)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--skip", default="-ne", help="skip policy folders containing this "
                   "(default: cells of other N_E, named METHOD-neN)")
    p.add_argument("--only", default="", help="comma-separated policy folder names")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    from ditto_jax.data.reader import load_episodes
    from ditto_jax.envs.atari import action_meanings
    from ditto_jax.envs.vector import make_vector_env
    from ditto_jax.stages.evaluation import run_episodes
    from ditto_jax.stages.policy_agents import load_policy

    names = action_meanings(args.game)
    eps = load_episodes(args.expert, selection=f"first:{args.expert_episodes}")
    acts = np.concatenate([np.asarray(e.action)[:-1] for e in eps])  # last: padding
    out = {"command": "python benchmarks/action_histogram.py " + " ".join(sys.argv[1:]),
           "game": args.game, "actions": names,
           "expert": {"episodes": len(eps), "steps": int(len(acts)),
                      "fractions": _fractions(np.bincount(acts, minlength=len(names)),
                                              names)},
           "policies": {}}
    print(f"expert ({len(eps)} episodes, {len(acts)} steps): {out['expert']['fractions']}")
    for name in sorted(os.listdir(args.policies)):
        workdir = os.path.join(args.policies, name)
        if args.only and name not in args.only.split(","):
            continue
        if (args.skip and args.skip in name) or not os.path.isdir(
                os.path.join(workdir, "checkpoints")):
            continue
        agent, _, _ = load_policy(workdir)
        counter = _Counter(len(names))
        returns, lengths, _ = run_episodes(
            lambda n: make_vector_env(args.game, n, "ditto"), agent,
            episodes=args.episodes, num_envs=args.episodes, seed=args.seed,
            max_steps=args.max_steps, observer=counter)
        out["policies"][name] = {"episodes": len(returns), "returns": returns,
                                 "length_mean": float(np.mean(lengths)),
                                 "fractions": _fractions(counter.counts, names)}
        print(f"{name}: length {np.mean(lengths):.0f}, {out['policies'][name]['fractions']}",
              flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
