"""Acting with bfloat16 products against float32 (`WorldModelAgent(matmul_dtype=...)`,
`ditto eval --act-matmul`): where the opt-in pays and where it does not. Interleaved
round by round in one process, the precisions alternating in going first. Writes
benchmarks/results/acting_precision.json.

    python benchmarks/acting_precision.py [--rounds 3] [--steps 150] \\
        [--policy runs/pong_ne2/policies/ditto --episodes 10 --envs 8]

Per round, the paper world model and actor (random weights, random uint8 frames):
  act_ms      steady `WorldModelAgent.act` per step at 1, 2, 4, 8 and 16 envs (the
              action back on the host); `ratio_act_{n}` = bf16 / f32, medians over rounds
  compile_s   the first call at each batch (tracing and compiling a fresh agent; the
              persistent compilation cache stays off until the `--policy` phase)
  loop        agent steps/s of `evaluation.run_episodes` at 16 envs, real Pong, the
              native vector env, no agreement (policy + emulator + bookkeeping);
              `ratio_loop_16` = f32 steps/s / bf16 steps/s (time per step, bf16 / f32)
With `--policy`, after those rounds: a trained policy's whole evaluation as `ditto eval`
runs it (on-policy agreement, so the `sync` envs in two overlapped groups), `--rounds`
times per precision, alternating, with the persistent compilation cache on as in
`ditto run`; `ratio_eval` = bf16 seconds per agent step / f32's.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRECISIONS = ("float32", "bfloat16")
BATCHES = (1, 2, 4, 8, 16)


def _policy_eval(workdir, precision, episodes, envs):
    """`ditto eval`'s path without writing: seconds per agent step of one evaluation."""
    from ditto_jax.envs import atari
    from ditto_jax.stages.evaluation import ExpertAgreement
    from ditto_jax.stages.evaluate import _expert_spec
    from ditto_jax.stages.policy_agents import evaluate_agent, load_policy
    agent, config, meta = load_policy(workdir, matmul_dtype=precision)
    config.eval_episodes, config.eval_envs = episodes, envs
    observer = ExpertAgreement(_expert_spec(meta), atari.canonical_game(meta["game"]),
                               int(meta["num_actions"]))
    t0 = time.perf_counter()
    res = evaluate_agent(agent, config, meta, seed=12345, episodes=episodes, observer=observer)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "agent_steps": sum(res["lengths"]),
            "ms_per_agent_step": seconds / sum(res["lengths"]) * 1e3,
            "return_mean": res["return_mean"], "load_1m": os.getloadavg()[0]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=150, help="timed acting steps per figure")
    p.add_argument("--loop-steps", type=int, default=400, help="agent steps of the loop")
    p.add_argument("--policy", default=None, help="a trained policy workdir (optional)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--out", default=os.path.join(REPO,
                                                 "benchmarks/results/acting_precision.json"))
    args = p.parse_args()
    from benchmarks.acting import _agent, eval_loop, time_policy, write_result
    result = {"command": "python benchmarks/acting_precision.py " + " ".join(sys.argv[1:]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "rounds": []}
    for r in range(args.rounds):
        row = {"load_1m": os.getloadavg()[0]}
        for precision in PRECISIONS[::1 if r % 2 == 0 else -1]:
            # A fresh agent each round: its first calls compile, as in a new process.
            agent = _agent("paper", "paper", "default", matmul_dtype=precision)
            rec = {"act_ms": {}, "compile_s": {}}
            for n in BATCHES:
                t = time_policy(agent, n, args.steps)
                rec["compile_s"][n], rec["act_ms"][n] = t["first_call_s"], t["ms_median"]
            rec["loop"] = eval_loop(agent, 16, args.loop_steps)
            row[precision] = rec
        result["rounds"].append(row)
        print(f"round {r + 1}: " + "; ".join(
            f"{p}: act " + ", ".join(f"{n}:{row[p]['act_ms'][n]:.2f}" for n in BATCHES)
            + f" ms, loop {row[p]['loop']['agent_steps_per_s']:.0f}/s" for p in PRECISIONS),
            flush=True)
    if args.policy:
        from ditto_jax.core import parallel
        parallel.enable_compilation_cache()   # as `ditto run` does (DITTO_XLA_CACHE)
        for r, row in enumerate(result["rounds"]):
            for precision in PRECISIONS[::1 if r % 2 == 0 else -1]:
                row[precision]["eval"] = _policy_eval(args.policy, precision, args.episodes,
                                                      args.envs)
            print(f"evaluation round {r + 1}: " + "; ".join(
                f"{p} {row[p]['eval']['ms_per_agent_step']:.3f} ms/agent step"
                for p in PRECISIONS), flush=True)
    med = lambda f: statistics.median(f(row) for row in result["rounds"])
    for n in BATCHES:
        result[f"ratio_act_{n}"] = med(lambda row: row["bfloat16"]["act_ms"][n]
                                       / row["float32"]["act_ms"][n])
        for p in PRECISIONS:
            result.setdefault(f"act_ms_{p}", {})[n] = med(lambda row: row[p]["act_ms"][n])
            result.setdefault(f"compile_s_{p}", {})[n] = med(
                lambda row: row[p]["compile_s"][n])
    result["ratio_loop_16"] = med(lambda row: row["float32"]["loop"]["agent_steps_per_s"]
                                  / row["bfloat16"]["loop"]["agent_steps_per_s"])
    if args.policy:
        result["ratio_eval"] = med(lambda row: row["bfloat16"]["eval"]["ms_per_agent_step"]
                                   / row["float32"]["eval"]["ms_per_agent_step"])
    write_result(result, args.out)


if __name__ == "__main__":
    main()
