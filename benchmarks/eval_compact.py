"""Evaluation with the batch shrinking as episodes finish (issue #20): the wall time of
real evaluations of trained policies with and without it, interleaved round by round.
Writes benchmarks/results/eval_compact.json.

  python benchmarks/eval_compact.py --policies runs/pong_ne/policies/ditto \\
      runs/pong_ne/policies/dbc [--episodes 10] [--envs 10] [--rounds 2] [--greedy]

`evaluation.run_episodes` computes an agent that has `select` only on the envs still
playing (10 -> 4 -> 2 -> 1 rows); "full" hides `select`, so every env is computed to the
end of the longest episode, as before this change. The real game, the policy's own
protocol and cap, evaluation seed 12345, the native vector env, no agreement observer,
the persistent compilation cache on as in `ditto run` (so the smaller batches compile
once per model, not once per policy).
Returns are the same in distribution, not episode for episode: once the batch shrinks, an
env's sampling noise comes from another row of the step's key (greedy with `probs`
latents: the same episodes). The ratio is shrinking / full per round; its median over
rounds and policies is the top-level `ratio_eval`. The two modes alternate in going
first, since the first also compiles the policy at the full batch.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Full:
    """The agent without `select`: every env computed until the loop ends."""

    def __init__(self, agent):
        self.agent = agent

    def init(self, num_envs):
        return self.agent.init(num_envs)

    def act(self, carry, obs, is_first, key):
        carry, actions = self.agent.act(carry, obs, is_first, key)
        self.last_probs = self.agent.last_probs
        return carry, actions


def timed_evaluation(agent, config, meta, observer=None):
    """One real evaluation (seed 12345): its seconds, return, episode lengths, load, and
    the observer's result if there is one."""
    from ditto_jax.stages.policy_agents import evaluate_agent
    t0 = time.perf_counter()
    res = evaluate_agent(agent, config, meta, seed=12345, observer=observer)
    return {"seconds": time.perf_counter() - t0, "return_mean": res["return_mean"],
            "lengths": res["lengths"], **(observer.result() if observer else {}),
            "load_1m": os.getloadavg()[0]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--policies", nargs="+", required=True, help="policy workdirs")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--envs", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/eval_compact.json"))
    args = p.parse_args()
    from ditto_jax.core import parallel
    from ditto_jax.stages.policy_agents import load_policy
    from benchmarks.acting import write_result
    parallel.enable_compilation_cache()  # as `ditto run` does (DITTO_XLA_CACHE)
    result = {"command": "python benchmarks/eval_compact.py " + " ".join(sys.argv[1:]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": []}
    for r in range(args.rounds):
        for workdir in args.policies:
            agent, config, meta = load_policy(workdir, greedy=args.greedy)
            config.eval_episodes, config.eval_envs = args.episodes, args.envs
            row = {"round": r, "policy": os.path.relpath(workdir, os.getcwd())}
            # Alternate which goes first: the first one also compiles the full batch.
            for mode in ("shrinking", "full")[::1 if r % 2 == 0 else -1]:
                played = agent if mode == "shrinking" else _Full(agent)
                row[mode] = timed_evaluation(played, config, meta)
            row["ratio"] = row["shrinking"]["seconds"] / row["full"]["seconds"]
            result["rows"].append(row)
            print(f"round {r + 1}/{args.rounds} {row['policy']}: shrinking "
                  f"{row['shrinking']['seconds']:.1f} s (return {row['shrinking']['return_mean']:.2f}),"
                  f" full {row['full']['seconds']:.1f} s (return {row['full']['return_mean']:.2f}),"
                  f" ratio {row['ratio']:.2f}", flush=True)
    result["ratio_eval"] = statistics.median(row["ratio"] for row in result["rows"])
    write_result(result, args.out)


if __name__ == "__main__":
    main()
