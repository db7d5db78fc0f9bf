"""Reward spread (issue 18, part 4): is the latent reward saturated on this world model?

    python benchmarks/reward_spread.py --wm runs/study/wm --expert runs/study/data/expert \\
        [--heldout 1] [--horizon 5] [--batch 256] [--part h] \\
        [--out benchmarks/results/reward_spread.json]

From held-out expert start states the world model's prior is rolled H steps under the
expert's actions, one deviating first action (each alternative) then the expert's, and
random actions, with common random numbers (agents/probes.py). For maxcos and l2 it gives
the distribution (mean, std, 10/50/90% quantiles) of the per-step rewards of each, and the
margins expert-minus-deviating and expert-minus-random in units of their pooled std
(`margin_deviate_first`: the first imagined step only). The DITTO_AV driving port found
maxcos ~0.9 for any plausible state: a margin near 0 is that saturation.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def measure(wm_state, held, *, horizon, batch, part="h", seed=0, rewards=("maxcos", "l2")):
    """{reward: {group_stat / margin_*: float}} for a loaded world model and held-out store."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from ditto_jax.agents import probes
    from ditto_jax.models.world_model import WorldModel
    from ditto_jax.stages.policy_data import encode_store, inference_model
    latents = encode_store(wm_state, held, seed=seed)
    index = held.sample_expert_windows(np.random.default_rng(seed), batch, horizon,
                                       with_observation=False)["index"]
    take = lambda ix: jax.tree.map(lambda x: jnp.asarray(x)[ix], latents)  # noqa: E731
    model = inference_model(wm_state)

    @jax.jit
    def run(params, key):
        def img_step(s, a, k):
            return model.apply(params, s, a, k, method=WorldModel.img_step)
        return probes.reward_spread(
            img_step, take(index[:, 0]), jnp.asarray(held.action[index[:, :-1]], jnp.int32),
            take(index[:, 1:]), key, num_actions=held.num_actions,
            action_dim=model.action_dim, part=part, rewards=rewards)
    flat = jax.device_get(run(wm_state.params, jax.random.key(seed)))
    out = {r: {} for r in rewards}
    for k, v in flat.items():
        _, reward, stat = k.split("/")
        out[reward][stat] = float(v)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--wm", required=True, help="world-model workdir")
    p.add_argument("--wm-step", type=int, default=None, help="checkpoint step (default: last)")
    p.add_argument("--expert", required=True, help="expert RLDS dataset")
    p.add_argument("--heldout", type=int, default=1,
                   help="last N episodes of the dataset used as held-out starts")
    p.add_argument("--horizon", type=int, default=5, help="imagined steps H")
    p.add_argument("--batch", type=int, default=256, help="start states")
    p.add_argument("--part", default="h", choices=("h", "z", "h+z"), help="compared latent")
    p.add_argument("--seed", type=int, default=0, help="sampling and prior-noise seed")
    p.add_argument("--out", default="benchmarks/results/reward_spread.json", help="JSON output")
    args = p.parse_args(argv)

    import ml_collections
    from ditto_jax.stages.policy_data import load_expert
    from ditto_jax.stages.wm_io import load_world_model
    t0 = time.perf_counter()
    wm_state, wm_meta = load_world_model(args.wm, step=args.wm_step)
    cfg = ml_collections.ConfigDict(dict(expert_episodes=0, expert_selection="first",
                                         heldout_episodes=args.heldout, expert_resize=False))
    _, held, info = load_expert(cfg, args.expert, wm_meta)
    if held is None:
        raise SystemExit("no held-out episodes: the dataset needs more than --heldout")
    result = {"results": measure(wm_state, held, horizon=args.horizon, batch=args.batch,
                                 part=args.part, seed=args.seed),
              "horizon": args.horizon, "starts": args.batch, "part": args.part,
              "wm": os.path.abspath(args.wm), "wm_step": wm_meta.get("step"),
              "expert": args.expert, "heldout_episodes": info["heldout_episodes"],
              "seconds": time.perf_counter() - t0,
              "command": "python benchmarks/reward_spread.py " + " ".join(
                  argv if argv is not None else sys.argv[1:])}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"reward spread: H={args.horizon}, {args.batch} held-out starts, part {args.part}")
    print(f"{'reward':8s} {'expert':>15s} {'deviate':>15s} {'random':>15s} "
          f"{'margin dev':>10s} {'dev k=0':>8s} {'margin rand':>11s}")
    for name, r in result["results"].items():
        cell = lambda g: f"{r[g + '_mean']:.3f}±{r[g + '_std']:.3f}"  # noqa: E731
        print(f"{name:8s} {cell('expert'):>15s} {cell('deviate'):>15s} {cell('random'):>15s} "
              f"{r['margin_deviate']:10.2f} {r['margin_deviate_first']:8.2f} "
              f"{r['margin_random']:11.2f}")
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    from ditto_jax.errors import DittoError
    try:
        main()
    except DittoError as e:
        raise SystemExit(f"reward_spread: {e}")
