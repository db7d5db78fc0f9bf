"""Batched Atari environments with the same protocol, frames and actions as `make_env`.

Two backends behind one small wrapper (`AtariVector`):

* ``backend="native"`` (default): ale-py's C++ `ale_py.vector_env.AtariVectorEnv`, threads
  in one process. Its defaults differ from ALE v5 (sticky 0, reward clipping on, frame stack
  4, FIRE on reset, 84x84), so every one is set from the `Protocol` here: frame skip 4 with
  max-pool, grayscale, ``stack_num=1``, the image size, ``noop_max``, sticky probability,
  ``reward_clipping=False``, ``episodic_life=False``, ``use_fire_reset=False``, and the
  frame cap.
* ``backend="sync"``: `gymnasium.vector.SyncVectorEnv` over `make_env` -- exactly the single
  env, for when the native one is unavailable (``backend="auto"`` falls back to it) or
  when bit-exactness with `make_env` matters.

Observations are uint8 ``(N, H, W, 1)``; actions are int indices into the same action set as
`make_env` (the minimal set by default; ale-py's native env builds it with the same
``getMinimalActionSet`` call, and `make_vector_env` checks the two orders agree). Rewards
are raw (unclipped) float32.

Autoreset (both backends): gymnasium's NEXT_STEP mode. The step that ends an episode
returns its last observation with ``terminated`` or ``truncated`` set; the *next* `step`
call on that sub-env ignores its action, resets it and returns the new episode's first
observation with reward 0 and both flags False.

Seeding: ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i`` in both backends.

How the native backend relates to `make_env` (measured; see tests/test_envs.py and
docs/experts.md):

* Frames: with no sticky actions and no no-ops the native env returns the *same* frames,
  rewards and flags as `make_env` for the same actions (bit-identical; both grab the
  grayscale palette screen of the last two frames of the skip, max them, and resize with
  OpenCV ``INTER_AREA``).
* No-op starts: the native env draws the count from a C++ ``std::mt19937`` as
  ``uniform{0..noop_max-1}`` frames, gymnasium's `AtariPreprocessing` from numpy as
  ``uniform{1..noop_max}``. Same seed, different start; and the native frame cap
  counts frames after the no-ops, while `make_env`'s counts them.
* Sticky actions: the native env passes the seed to the emulator as is; `ale_py`'s
  `AtariEnv` derives the emulator seed through ``numpy.random.SeedSequence``. So under
  ``machado`` the two backends draw different (equally distributed) sticky-action streams.
"""

from __future__ import annotations

import numpy as np
import gymnasium
from gymnasium.spaces import Box, Discrete

from ditto_jax.envs.atari import (
    Protocol,
    action_meanings,
    canonical_game,
    get_protocol,
    make_env,
    rom_id,
)
from ditto_jax.errors import DittoError

__all__ = ["AtariVector", "make_vector_env"]

BACKENDS = ("native", "sync", "auto")


class AtariVector:
    """A batch of `num_envs` Atari envs; see the module docstring for the semantics."""

    def __init__(self, env, *, game, protocol, backend, num_envs, size, grayscale,
                 full_action_space, seed):
        self.env = env
        self.game = game
        self.protocol = protocol
        self.backend = backend
        self.num_envs = num_envs
        self.size = size
        self.full_action_space = full_action_space
        self._seed = seed
        channels = 1 if grayscale else 3
        self.single_observation_space = Box(0, 255, (*size, channels), np.uint8)
        self.single_action_space = Discrete(len(action_meanings(game, full_action_space)))

    @property
    def action_meanings(self) -> list[str]:
        return action_meanings(self.game, self.full_action_space)

    def _obs(self, obs):
        obs = np.asarray(obs)
        if self.backend == "native":
            # (N, stack=1, H, W[, 3]) -> (N, H, W, C)
            obs = obs[:, 0]
            if obs.ndim == 3:
                obs = obs[..., None]
        return np.ascontiguousarray(obs, dtype=np.uint8)

    def reset(self, seed: int | None = None, mask: np.ndarray | None = None):
        """Reset every sub-env (sub-env i gets seed + i), or only those where `mask` (a bool
        (num_envs,) array) is True: the others keep their episode and report their current
        observation. Returns (obs, info) for all sub-envs."""
        if seed is None:
            seed, self._seed = self._seed, None  # the make_vector_env seed, once
        seed = None if seed is None else int(seed)
        if mask is None:
            obs, info = self.env.reset(seed=seed)
        else:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (self.num_envs,):
                raise ValueError(f"reset mask must have shape ({self.num_envs},), "
                                 f"got {mask.shape}")
            obs, info = self.env.reset(seed=seed, options={"reset_mask": mask})
        return self._obs(obs), info

    def step(self, actions):
        """Step all sub-envs: (obs, reward, terminated, truncated, info); NEXT_STEP autoreset."""
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions, got shape {actions.shape}")
        if self.backend == "native":
            actions = actions.astype(np.int32)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        return (
            self._obs(obs),
            np.asarray(reward, dtype=np.float32),
            np.asarray(terminated, dtype=bool),
            np.asarray(truncated, dtype=bool),
            info,
        )

    def close(self):
        self.env.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _native(game, num_envs, proto, height, width, grayscale, full_action_space,
            noop_max, num_threads):
    from ale_py.vector_env import AtariVectorEnv

    env = AtariVectorEnv(
        rom_id(game),
        num_envs,
        num_threads=num_threads,
        max_num_frames_per_episode=proto.max_episode_frames or 2**31 - 1,
        repeat_action_probability=proto.repeat_action_probability,
        full_action_space=full_action_space,
        img_height=height,
        img_width=width,
        grayscale=grayscale,
        stack_num=1,
        frameskip=proto.frame_skip,
        maxpool=True,
        noop_max=noop_max,
        episodic_life=proto.terminal_on_life_loss,
        life_loss_info=False,
        reward_clipping=False,
        use_fire_reset=False,
        autoreset_mode="NextStep",
    )
    native = [a.name for a in env.ale.get_action_set()]
    expected = action_meanings(game, full_action_space)
    if native != expected:  # would silently scramble recorded actions
        env.close()
        raise RuntimeError(f"native action set {native} differs from make_env's {expected}")
    return env


def make_vector_env(
    game: str,
    num_envs: int,
    protocol: str | Protocol = "ditto",
    *,
    size: tuple[int, int] | int = (64, 64),
    seed: int | None = 0,
    full_action_space: bool = False,
    grayscale: bool = True,
    noop_max: int | None = None,
    backend: str = "native",
    num_threads: int = 0,
) -> AtariVector:
    """`num_envs` Atari envs under `protocol`; see the module docstring.

    seed: applied by the first `reset()` called without a seed (sub-env i gets seed + i).
    noop_max: overrides the protocol's no-op maximum (0: none).
    backend: 'native' (ale-py C++), 'sync' (SyncVectorEnv of make_env) or 'auto'
        (native if it can be built, else sync).
    """
    game = canonical_game(game)
    proto = get_protocol(protocol)
    if backend not in BACKENDS:
        raise DittoError("Unknown vector-env backend", field="backend",
                         expected=" or ".join(repr(b) for b in BACKENDS), got=repr(backend))
    if int(num_envs) < 1:
        raise DittoError("num_envs must be at least 1", field="num_envs", got=num_envs)
    num_envs = int(num_envs)
    height, width = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    noops = proto.noop_max if noop_max is None else int(noop_max)
    full = bool(full_action_space or proto.full_action_space)
    common = dict(game=game, protocol=proto, num_envs=num_envs, size=(height, width),
                  grayscale=grayscale, full_action_space=full, seed=seed)

    if backend in ("native", "auto"):
        try:
            env = _native(game, num_envs, proto, height, width, grayscale, full, noops,
                          num_threads)
            return AtariVector(env, backend="native", **common)
        except (ImportError, AttributeError, RuntimeError):
            if backend == "native":
                raise
    fns = [
        (lambda: make_env(game, proto, size=(height, width), grayscale=grayscale,
                          full_action_space=full, noop_max=noops))
        for _ in range(num_envs)
    ]
    env = gymnasium.vector.SyncVectorEnv(
        fns, autoreset_mode=gymnasium.vector.AutoresetMode.NEXT_STEP
    )
    return AtariVector(env, backend="sync", **common)
