"""`ditto record`: roll out a policy in the real ALE and write an RLDS dataset.

Crash safety comes from `EpisodeWriter`: every finished episode is staged on
disk at once, and the TFDS dataset (with its `dataset_info.json`) only appears
when all episodes are done. An interrupted recording therefore never looks
complete, keeps every finished episode, and `--resume` continues it.
"""
import time

import numpy as np

from ditto_jax.core.args import non_negative_int, positive_int, probability
from ditto_jax.data.writer import EpisodeWriter
from ditto_jax.errors import DittoError

# Arguments that must match when a recording is resumed; the episode count and
# max steps may change.
_RESUME_KEYS = ("game", "policy", "protocol", "epsilon", "seed", "size", "full_action_space")


def add_arguments(p):
    p.add_argument("--game", required=True, help="Atari game, e.g. pong, breakout")
    p.add_argument("--policy", default="expert",
                   help="'expert' (scripted, emulator look-ahead), 'tracker' (Pong, Breakout: RAM "
                        "controller without look-ahead), 'random', or "
                        "'package.module:factory' for any policy factory")
    p.add_argument("--episodes", type=positive_int, required=True,
                   help="number of episodes (with --resume: in all)")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--epsilon", type=probability, default=0.0,
                   help="probability of a uniformly random action (coverage data)")
    p.add_argument("--protocol", default="ditto", choices=["ditto", "machado"],
                   help="evaluation protocol of the environment (frame skip, sticky "
                        "actions, episode caps)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="episode i uses seed + i")
    p.add_argument("--max-steps", type=positive_int, default=27_000,
                   help="agent steps per episode before truncation")
    p.add_argument("--size", type=positive_int, default=64, help="frame height and width")
    p.add_argument("--full-action-space", action="store_true",
                   help="record in the 18-action set instead of the minimal one")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted recording in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def rollout_episode(env, policy, *, seed, max_steps):
    """Runs one episode; returns RLDS step arrays (T+1 entries) and its return.

    Step t holds o_t, the action a_t taken at o_t and the reward after it. The
    extra final step holds only the last observation.
    """
    obs, _ = env.reset(seed=seed)
    policy.reset(env, seed)
    frames, actions, rewards = [obs], [], []
    terminated = False
    for _ in range(max_steps):
        action = int(policy.act(obs, env))
        obs, reward, terminated, truncated, _ = env.step(action)
        frames.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        if terminated or truncated:
            break
    length = len(actions)
    discount = np.ones(length + 1, np.float32)
    if terminated:
        # The transition into the terminal state ends the return.
        discount[length - 1] = 0.0
        discount[length] = 0.0
    is_first = np.zeros(length + 1, bool)
    is_first[0] = True
    is_last = np.zeros(length + 1, bool)
    is_last[-1] = True
    is_terminal = np.zeros(length + 1, bool)
    is_terminal[-1] = terminated
    steps = {
        "observation": np.stack(frames).astype(np.uint8),
        "action": np.asarray(actions + [0], np.int64),
        "reward": np.asarray(rewards + [0.0], np.float32),
        "discount": discount,
        "is_first": is_first,
        "is_last": is_last,
        "is_terminal": is_terminal,
    }
    return steps, float(np.sum(rewards)), bool(terminated)


def record(*, game, policy="expert", episodes, out, epsilon=0.0, protocol="ditto",
           seed=0, max_steps=27_000, size=64, full_action_space=False, resume=False,
           progress=True, log=print):
    """Records `episodes` episodes into the RLDS dataset `out`; returns its path."""
    # gymnasium and ale-py: imported on use, never by --help
    from ditto_jax.envs import atari
    from ditto_jax.experts.registry import make_policy

    if episodes < 1:
        raise DittoError("Nothing to record", field="--episodes", expected="a positive integer",
                         got=episodes)
    if not 0.0 <= epsilon <= 1.0:
        raise DittoError("Epsilon is a probability", field="--epsilon",
                         expected="a number in [0, 1]", got=epsilon)
    game = atari.canonical_game(game)
    meanings = atari.action_meanings(game, full_action_space=full_action_space)
    # The policy is built before anything is created on disk: a typo in --policy must
    # not leave a stub recording behind that blocks the corrected command.
    agent = make_policy(policy, game=game, num_actions=len(meanings), epsilon=epsilon,
                        seed=seed)
    args = dict(game=game, policy=policy, protocol=protocol, epsilon=float(epsilon),
                seed=int(seed), size=int(size), full_action_space=bool(full_action_space))
    env = atari.make_env(game, protocol, size=(size, size), full_action_space=full_action_space)
    try:
        writer = EpisodeWriter(
            out, obs_shape=(size, size, 1), action_meanings=meanings,
            dataset_metadata=args, resume=resume)
        stored = getattr(writer, "recording_args", None) or {}
        mismatched = {k: (stored[k], args[k]) for k in _RESUME_KEYS
                      if k in stored and stored[k] != args[k]}
        if resume and mismatched:
            k, (was, now) = next(iter(mismatched.items()))
            raise DittoError("--resume must repeat the original recording's arguments",
                             path=out, field=k, expected=was, got=now)
        if resume:
            # Check what is staged now, not after recording the rest: damaged episode
            # files are set aside (kept in .staging/damaged/) and recorded again.
            for path, why in writer.check_staged():
                log(f"warning: damaged staged episode set aside and recorded again: "
                    f"{path} ({why})")
    except BaseException:
        env.close()
        raise
    start = writer.num_staged
    if start:
        log(f"resuming: {start} finished episode(s) kept in {out}")
    todo = writer.missing_episode_ids(episodes)

    from tqdm import tqdm
    bar = tqdm(total=start + len(todo), initial=start, unit="ep", disable=not progress,
               desc=f"record {game}/{policy}", dynamic_ncols=True)
    total_steps, t0 = 0, time.perf_counter()
    returns = []
    try:
        for i in todo:
            steps, ret, terminated = rollout_episode(env, agent, seed=seed + i,
                                                     max_steps=max_steps)
            length = len(steps["action"]) - 1
            writer.write_episode(steps, {
                "episode_id": i, "episode_return": ret, "episode_length": length,
                "policy": policy if epsilon == 0 else f"{policy}+eps{epsilon:g}",
                "game": game, "protocol": protocol, "seed": seed + i,
            })
            returns.append(ret)
            total_steps += length
            rate = total_steps / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(ret=f"{ret:g}", len=length, steps_s=f"{rate:.0f}")
            bar.update(1)
    finally:
        bar.close()
        env.close()
    writer.finalize()
    if returns:
        log(f"recorded {len(returns)} episode(s) ({total_steps} steps, "
            f"{total_steps / max(time.perf_counter() - t0, 1e-9):.0f} steps/s); "
            f"mean return of new episodes {np.mean(returns):.2f}; dataset at {out}")
    return out


def main(args):
    try:
        record(game=args.game, policy=args.policy, episodes=args.episodes, out=args.out,
               epsilon=args.epsilon, protocol=args.protocol, seed=args.seed,
               max_steps=args.max_steps, size=args.size,
               full_action_space=args.full_action_space, resume=args.resume,
               progress=not args.quiet)
    except KeyboardInterrupt:
        raise DittoError(
            "Recording interrupted; every finished episode is kept, and the dataset is "
            "not marked complete. Run the same command with --resume to continue",
            path=args.out)
    return 0
