"""`ditto eval`: evaluate a trained policy in the real game."""
import json
import os


from ditto_jax.errors import DittoError


def add_arguments(p):
    p.add_argument("--workdir", required=True, help="workdir of `ditto train-policy`")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--envs", type=int, default=8, help="parallel environments")
    p.add_argument("--protocol", default="ditto", choices=["ditto", "machado"])
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--max-steps", type=int, default=27_000,
                   help="agent steps per episode (the protocols' own caps still apply)")
    p.add_argument("--greedy", action="store_true", help="argmax actions instead of sampling")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def evaluate_workdir(workdir, *, episodes=10, envs=8, protocol="ditto", seed=12345,
                     video=True, greedy=False, max_steps=27_000):
    from ditto_jax.stages.train_policy import evaluate_agent, load_policy
    from ditto_jax import viz
    if episodes < 1:
        raise DittoError("Nothing to evaluate", field="--episodes", expected=">= 1",
                         got=episodes)
    agent, config, meta = load_policy(workdir, greedy=greedy)
    config.eval_envs = envs
    config.eval_max_steps = max_steps
    result = evaluate_agent(agent, config, meta, seed=seed, episodes=episodes,
                            protocol=protocol, record_first=video)
    frames = result.pop("frames")
    result["method"] = meta["method"]
    if video and frames is not None:
        result["video"] = viz.save_video(frames, os.path.join(workdir, f"eval_{protocol}.mp4"))
    with open(os.path.join(workdir, f"eval_{protocol}.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def format_result(r):
    lines = [f"{r['method']} on {r['game']} ({r['protocol']} protocol, {r['episodes']} episodes)",
             f"  return           {r['return_mean']:.2f} ± {r['return_se']:.2f} (s.e.)",
             f"  episode length   {r['length_mean']:.0f}"]
    if r.get("expert_normalized") is not None:
        lines.append(f"  expert-normalised {r['expert_normalized']:.3f} "
                     f"(expert {r['expert_return']:.2f}, random {r['random_return']})")
    if r.get("human_normalized") is not None:
        lines.append(f"  human-normalised  {r['human_normalized']:.3f}")
    if r.get("video"):
        lines.append(f"  video            {r['video']}")
    return "\n".join(lines)


def main(args):
    result = evaluate_workdir(args.workdir, episodes=args.episodes, envs=args.envs,
                              protocol=args.protocol, seed=args.seed,
                              video=not args.no_video, greedy=args.greedy,
                              max_steps=args.max_steps)
    print(json.dumps(result) if args.json else format_result(result))
    return 0
