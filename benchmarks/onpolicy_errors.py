"""Are a policy's on-policy errors sampling noise or confident choices?

Plays each trained policy in the real game (sampled actions, the `ditto` protocol, the
`sync` envs) and, in every state the learner itself visits, asks the scripted expert
what it would do (`evaluation.ExpertAgreement`). Per policy it reports:
- agreement: how often the sampled action is the expert's;
- E[pi(a_E|s)]: the policy's mean probability of the expert's action there;
- argmax agreement: how often argmax pi is the expert's action there, i.e. what greedy
  play would choose in these same states.
A gap between argmax and sampled agreement is error that greedy play removes; no gap
means the errors are the policy's confident choices, which greedy play keeps.

    python benchmarks/onpolicy_errors.py --policies runs/confirm/policies \\
        --only ditto-s3,ditto_bcinit-s3,dbc-s3 --episodes 4 \\
        --out benchmarks/results/pong_study_confirm_l2_ext_s3-5/onpolicy_errors.json

Writes the JSON after every policy (a killed run keeps what finished; a re-run adds
to or replaces entries by name, never drops others). Returns are
reported without normalisation (no references are measured here).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def measure(workdir, *, episodes, envs, seed, max_steps, greedy=False):
    """One policy's returns and on-policy expert diagnostics (no files written)."""
    from ditto_jax.envs import atari
    from ditto_jax.stages.evaluation import ExpertAgreement
    from ditto_jax.stages.evaluate import _expert_spec
    from ditto_jax.stages.policy_agents import evaluate_agent
    from ditto_jax.stages.policy_agents import load_policy
    agent, config, meta = load_policy(workdir, greedy=greedy)
    spec = _expert_spec(meta)
    if not spec:
        raise SystemExit(f"{workdir}: its demonstrations did not come from a scripted "
                         f"expert, so nothing can be asked in the learner's states")
    config.eval_envs, config.eval_max_steps = envs, max_steps
    observer = ExpertAgreement(spec, atari.canonical_game(meta["game"]),
                               int(meta["num_actions"]))
    t0 = time.perf_counter()
    result = evaluate_agent(agent, config, meta, seed=seed, episodes=episodes,
                            protocol="ditto", observer=observer)
    result.pop("frames", None)
    result.update(observer.result(), method=meta["method"], rule="greedy" if greedy
                  else "sample", seconds=time.perf_counter() - t0, seed=seed)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--policies", required=True, help="folder of policy workdirs")
    p.add_argument("--only", default="", help="comma-separated workdir names (default: all)")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--envs", type=int, default=4)
    p.add_argument("--seed", type=int, default=777, help="evaluation seed (a new one)")
    p.add_argument("--max-steps", type=int, default=27_000)
    p.add_argument("--out", required=True, help="JSON output")
    args = p.parse_args(argv)
    if not os.path.isdir(args.policies):
        raise SystemExit(f"--policies {args.policies}: not a folder of policy workdirs")
    names = [n for n in args.only.split(",") if n] or sorted(os.listdir(args.policies))
    out = {"command": "python benchmarks/onpolicy_errors.py "
                      + " ".join(argv if argv is not None else sys.argv[1:]),
           "policies": {}}
    if os.path.exists(args.out):  # keep the policies an earlier run measured
        with open(args.out) as f:
            out["policies"] = json.load(f).get("policies", {})
    for i, name in enumerate(names):
        r = measure(os.path.join(args.policies, name), episodes=args.episodes,
                    envs=args.envs, seed=args.seed, max_steps=args.max_steps)
        out["policies"][name] = {k: r[k] for k in (
            "method", "rule", "seed", "episodes", "return_mean", "return_se", "length_mean",
            "expert_agreement", "expert_agreement_steps", "expert_prob_on_policy",
            "argmax_agreement_on_policy", "seconds")}
        print(f"[{i + 1}/{len(names)}] {name:18s} return {r['return_mean']:6.2f}  "
              f"agreement {r['expert_agreement']:.3f}  E[pi(a_E)] "
              f"{r['expert_prob_on_policy']:.3f}  argmax {r['argmax_agreement_on_policy']:.3f}"
              f"  ({r['expert_agreement_steps']} states, {r['seconds']:.0f} s)", flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    from ditto_jax.errors import DittoError
    try:
        main()
    except DittoError as e:  # a named workdir that is not a trained policy, etc.
        raise SystemExit(f"onpolicy_errors: {e}")
