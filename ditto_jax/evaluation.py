"""Real-environment evaluation: vectorised rollouts and the SPEC §6 scores.

An agent is three pure functions over a batch of environments:
  init(num_envs) -> carry
  act(carry, obs (N,H,W,1) uint8, is_first (N,) bool, key) -> (carry, actions (N,))
Scripted or random policies plug in through `python_policy_agent`.
"""
import math
import time

import numpy as np

# SPEC §6: human and random reference returns.
HUMAN_RANDOM = {
    "pong": (14.6, -20.7),
    "breakout": (30.5, 1.7),
    "mspacman": (6951.6, 307.3),
    "beamrider": (16926.5, 363.9),
    "qbert": (13455.0, 163.9),
    "spaceinvaders": (1668.7, 148.0),
}


def normalized(score, low, high):
    if low is None or high is None or math.isclose(high, low):
        return None
    return (score - low) / (high - low)


def summarize(returns, lengths, *, game, protocol, expert_return=None, random_return=None,
              extra=None):
    """Mean return +- standard error and the expert/human-normalised scores."""
    returns = np.asarray(returns, np.float64)
    n = len(returns)
    mean = float(returns.mean()) if n else float("nan")
    se = float(returns.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    human, rand = HUMAN_RANDOM.get(game, (None, None))
    low = random_return if random_return is not None else rand
    result = {
        "game": game, "protocol": protocol, "episodes": n,
        "return_mean": mean, "return_se": se,
        "returns": returns.tolist(), "lengths": [int(x) for x in lengths],
        "length_mean": float(np.mean(lengths)) if n else float("nan"),
        "expert_return": expert_return, "random_return": low,
        "expert_normalized": normalized(mean, low, expert_return),
        "human_normalized": normalized(mean, rand, human),
    }
    result.update(extra or {})
    return result


def run_episodes(make_vec_env, agent, *, episodes, num_envs, seed=0, max_steps=27_000,
                 record_first=False, progress=None, key=None):
    """Runs until `episodes` episodes finish; returns (returns, lengths, frames of ep 0).

    Envs that would start an episode beyond the requested count are ignored, so
    the result does not favour short episodes. Uses NEXT_STEP autoreset: the step
    after a done ignores the action and returns the next episode's first frame.
    """
    import jax
    num_envs = max(1, min(num_envs, episodes))
    env = make_vec_env(num_envs)
    key = jax.random.key(seed) if key is None else key
    try:
        obs, _ = env.reset(seed=seed)
        carry = agent.init(num_envs)
        is_first = np.ones(num_envs, bool)
        ep_return = np.zeros(num_envs)
        ep_length = np.zeros(num_envs, np.int64)
        started = num_envs            # episodes begun so far
        active = np.ones(num_envs, bool)
        slot_of_episode0 = 0
        returns, lengths, frames = [], [], []
        recording = record_first
        needs_reset = np.zeros(num_envs, bool)
        t0 = time.perf_counter()
        while active.any():
            key, step_key = jax.random.split(key)
            carry, actions = agent.act(carry, obs, is_first, step_key)
            actions = np.asarray(actions)
            if recording:
                frames.append(np.asarray(obs[slot_of_episode0]))
            obs, reward, terminated, truncated, _ = env.step(actions)
            ep_return += np.where(needs_reset, 0.0, reward)
            ep_length += ~needs_reset
            is_first = needs_reset.copy()
            done = (terminated | truncated | (ep_length >= max_steps)) & ~needs_reset
            needs_reset = np.zeros(num_envs, bool)
            for i in np.flatnonzero(done & active):
                returns.append(float(ep_return[i]))
                lengths.append(int(ep_length[i]))
                if recording and i == slot_of_episode0:
                    frames.append(np.asarray(obs[i]))
                    recording = False
                if progress is not None:
                    progress(len(returns), episodes, time.perf_counter() - t0)
                if started < episodes:
                    started += 1
                else:
                    active[i] = False
                ep_return[i], ep_length[i] = 0.0, 0
            # A cap we impose ourselves (not the env's) needs an explicit reset.
            capped = done & ~(terminated | truncated)
            if capped.any():
                obs, _ = env.reset(seed=seed + started * 7919)
                is_first[:] = True
                ep_return[:], ep_length[:] = 0.0, 0
                carry = agent.init(num_envs)
            else:
                needs_reset = done
            if len(returns) >= episodes:
                break
        return returns[:episodes], lengths[:episodes], (np.stack(frames) if frames else None)
    finally:
        env.close()


class python_policy_agent:
    """Wraps a per-env Python policy with `act(obs)` (random play, baselines)."""

    def __init__(self, act_one):
        self.act_one = act_one

    def init(self, num_envs):
        return None

    def act(self, carry, obs, is_first, key):
        return carry, np.asarray([self.act_one(o) for o in obs])
