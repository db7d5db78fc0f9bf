"""The policy registry: `make_policy` builds any data-generating policy by name, and
`run_episodes` plays one in the real game. The experts (pong.py, breakout.py, tracker.py)
import only base.py; this module imports them, and nothing imports it back.

`make_policy(spec, game=..., num_actions=..., epsilon=..., seed=...)` builds one:

* ``'expert'``: the game's scripted expert (`EXPERTS`), e.g. Pong, Breakout;
* ``'tracker'``: the game's screen-inferable RAM controller (`TRACKERS`);
* ``'random'``: uniform random actions;
* ``'package.module:factory'``: ``factory(game=..., num_actions=..., seed=..., **kwargs)``
  must return a policy -- the hook for recording a trained agent with the same command.

With ``epsilon > 0`` the result is wrapped in `EpsilonPolicy`.
"""

from __future__ import annotations

import importlib
import time
from typing import Any, Callable

import numpy as np

from ditto_jax.envs.atari import canonical_game, make_env
from ditto_jax.errors import DittoError
from ditto_jax.experts.base import EpsilonPolicy, Policy, RandomPolicy
from ditto_jax.experts.breakout import BreakoutExpert
from ditto_jax.experts.pong import PongExpert
from ditto_jax.experts.tracker import BreakoutTracker, PongTracker

__all__ = ["EXPERTS", "TRACKERS", "expert_games", "make_policy", "run_episodes"]


# Canonical game name -> factory(num_actions=..., seed=..., **kwargs) of its scripted expert.
EXPERTS: dict[str, Callable[..., Policy]] = {"pong": PongExpert, "breakout": BreakoutExpert}

# Screen-inferable RAM controllers without look-ahead (experts/tracker.py).
TRACKERS: dict[str, Callable[..., Policy]] = {"pong": PongTracker,
                                              "breakout": BreakoutTracker}


def expert_games() -> list[str]:
    """Games with a scripted expert."""
    return sorted(EXPERTS)


def _import_factory(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise DittoError(
            f"Policy {spec!r} is neither 'expert', 'random' nor an import path",
            field="policy",
            expected="'expert', 'random' or 'package.module:factory'",
            got=repr(spec),
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DittoError(
            f"Cannot import module {module_name!r} for policy {spec!r}: {exc}",
            field="policy",
            expected="an importable 'package.module:factory'",
            got=repr(spec),
        ) from exc
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise DittoError(
                f"Module {module_name!r} has no attribute {attr!r} (policy {spec!r})",
                field="policy",
                expected="an importable 'package.module:factory'",
                got=repr(spec),
            )
    if not callable(factory):
        raise DittoError(f"{spec!r} is not callable", field="policy", got=repr(spec))
    return factory


def make_policy(
    spec: str,
    *,
    game: str,
    num_actions: int,
    epsilon: float = 0.0,
    seed: int | None = 0,
    **kwargs,
) -> Policy:
    """Build a policy from 'expert', 'random' or 'package.module:factory' (module doc)."""
    name = str(spec).strip()
    game_key = canonical_game(game)
    if name == "expert":
        if game_key not in EXPERTS:
            raise DittoError(
                f"No scripted expert for game {game!r}; scripted experts exist for "
                f"{', '.join(expert_games())}. For another game pass a policy factory "
                f"'package.module:factory'",
                field="policy",
                got=repr(game),
            )
        policy = EXPERTS[game_key](num_actions=num_actions, seed=seed, **kwargs)
    elif name == "tracker":
        if game_key not in TRACKERS:
            raise DittoError(
                f"No tracker policy for game {game!r}; trackers exist for "
                f"{', '.join(sorted(TRACKERS))}", field="policy", got=repr(game))
        policy = TRACKERS[game_key](num_actions=num_actions, seed=seed, **kwargs)
    elif name == "random":
        policy = RandomPolicy(num_actions, seed=seed)
    else:
        factory = _import_factory(name)
        policy = factory(game=game_key, num_actions=num_actions, seed=seed, **kwargs)
        if not isinstance(policy, Policy):
            raise DittoError(
                f"Factory {name!r} returned {type(policy).__name__}, which has no "
                f"reset(env, seed) and act(obs, env) methods",
                field="policy",
                got=repr(name),
            )
    if epsilon:
        policy = EpsilonPolicy(policy, epsilon, num_actions, seed=seed)
    return policy


def run_episodes(
    policy: Policy | str,
    game: str,
    protocol: str = "ditto",
    *,
    episodes: int = 5,
    seed: int = 0,
    max_steps: int | None = None,
    epsilon: float = 0.0,
    verbose: bool = False,
) -> dict:
    """Play `episodes` episodes (episode i: env and policy seeded with seed + i).

    Returns {'returns': [...], 'steps': [...], 'steps_per_s': [...], 'mean_return',
    'game', 'protocol'}; steps/s counts the policy and the env together.
    """
    game = canonical_game(game)
    env = make_env(game, protocol)
    if isinstance(policy, str):
        policy = make_policy(policy, game=game, num_actions=int(env.action_space.n),
                             epsilon=epsilon, seed=seed)
    out = {"game": game, "protocol": str(protocol), "returns": [], "steps": [],
           "steps_per_s": []}
    for i in range(int(episodes)):
        obs, _ = env.reset(seed=seed + i)
        policy.reset(env, seed + i)
        total, steps, start = 0.0, 0, time.perf_counter()
        while max_steps is None or steps < max_steps:
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs, env))
            total += float(reward)
            steps += 1
            if terminated or truncated:
                break
        rate = steps / max(time.perf_counter() - start, 1e-9)
        out["returns"].append(total)
        out["steps"].append(steps)
        out["steps_per_s"].append(rate)
        if verbose:
            print(f"{game} {protocol} episode {i} (seed {seed + i}): return {total:g}, "
                  f"{steps} steps, {rate:.0f} steps/s", flush=True)
    env.close()
    out["mean_return"] = float(np.mean(out["returns"]))
    return out
