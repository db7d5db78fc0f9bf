"""Evaluation with the emulators overlapped with the device (issue #20): the wall time of
real evaluations of trained policies with on-policy expert agreement, the envs played as
two groups taking turns against one group, interleaved round by round. Writes
benchmarks/results/eval_overlap.json.

  python benchmarks/eval_overlap.py --policies runs/pong_ne2/policies/ditto \\
      runs/pong_ne2/policies/dbc [--episodes 10] [--envs 10] [--rounds 2]

Agreement needs the `sync` vector env (the scripted expert reads each emulator), whose
emulators step in Python on one core; `evaluate_agent` then plays the envs as two groups
(`run_episodes(overlap=True)`): while the device computes one group's actions, the other
group's emulators step. "one group" is the loop before this change. The real game, the
policy's own protocol and cap, evaluation seed 12345, the persistent compilation cache on
as in `ditto run`. With as many envs as episodes each env plays the same episode either
way up to the sampling noise (each group has its own keys), so returns are the same in
distribution; both are recorded. The ratio is two groups / one group per round; its
median over rounds and policies is the top-level `ratio_eval`. The modes alternate in
going first.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--policies", nargs="+", required=True, help="policy workdirs")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--envs", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--expert", default="tracker", help="scripted expert for agreement")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/eval_overlap.json"))
    args = p.parse_args()
    from ditto_jax.core import parallel
    from ditto_jax.envs import atari
    from ditto_jax.stages import evaluation
    from ditto_jax.stages import policy_agents
    from ditto_jax.stages.policy_agents import load_policy
    from benchmarks.eval_compact import timed_evaluation
    from benchmarks.acting import write_result
    parallel.enable_compilation_cache()  # as `ditto run` does (DITTO_XLA_CACHE)
    result = {"command": "python benchmarks/eval_overlap.py " + " ".join(sys.argv[1:]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": []}
    plain_run_episodes = policy_agents.run_episodes
    for r in range(args.rounds):
        for workdir in args.policies:
            agent, config, meta = load_policy(workdir)
            config.eval_episodes, config.eval_envs = args.episodes, args.envs
            game = atari.canonical_game(meta["game"])
            row = {"round": r, "policy": os.path.relpath(workdir, os.getcwd())}
            for mode in ("two_groups", "one_group")[::1 if r % 2 == 0 else -1]:
                def run(*a, _mode=mode, **kw):  # evaluate_agent's own choice, or none
                    kw["overlap"] = kw.get("overlap", False) and _mode == "two_groups"
                    return plain_run_episodes(*a, **kw)
                policy_agents.run_episodes = run
                observer = evaluation.ExpertAgreement(args.expert, game,
                                                      len(atari.action_meanings(game)))
                row[mode] = timed_evaluation(agent, config, meta, observer)
            row["ratio"] = row["two_groups"]["seconds"] / row["one_group"]["seconds"]
            result["rows"].append(row)
            print(f"round {r + 1}/{args.rounds} {row['policy']}: two groups "
                  f"{row['two_groups']['seconds']:.1f} s (return "
                  f"{row['two_groups']['return_mean']:.2f}, agreement "
                  f"{row['two_groups']['expert_agreement']:.3f}), one group "
                  f"{row['one_group']['seconds']:.1f} s (return "
                  f"{row['one_group']['return_mean']:.2f}, agreement "
                  f"{row['one_group']['expert_agreement']:.3f}), ratio {row['ratio']:.2f}",
                  flush=True)
    result["ratio_eval"] = statistics.median(row["ratio"] for row in result["rows"])
    result["seconds"] = {m: sum(row[m]["seconds"] for row in result["rows"])
                         for m in ("two_groups", "one_group")}
    write_result(result, args.out)


if __name__ == "__main__":
    main()
