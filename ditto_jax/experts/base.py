"""Policies that drive an Atari env to generate data: the `Policy` protocol, random and
epsilon-greedy play, and the `Emulator` the scripted experts read. (`registry.py` builds
any of them by name.)

A policy acts in the action set of `ditto_jax.envs.make_env` (the minimal set by default):

    policy.reset(env, seed)        # at the start of every episode, after env.reset()
    action = policy.act(obs, env)  # obs: the (H, W, C) uint8 frame; env: the gymnasium env

`act` receives the env itself so that scripted experts can read the emulator
(``env.unwrapped.ale``: RAM, cloneState/restoreState). Such experts are data generators,
not pixel policies (docs/experts.md).

"""

from __future__ import annotations

from typing import Any, Protocol as TypingProtocol, runtime_checkable

import ale_py
import numpy as np

from ditto_jax.errors import DittoError

__all__ = [
    "Policy",
    "RandomPolicy",
    "EpsilonPolicy",
    "Emulator",
]


@runtime_checkable
class Policy(TypingProtocol):
    """What the recorder drives. `act` returns an int index into the env's action set."""

    def reset(self, env: Any, seed: int | None) -> None: ...

    def act(self, obs: np.ndarray, env: Any) -> int: ...


class RandomPolicy:
    """Uniformly random actions from its own generator (deterministic given the seed)."""

    def __init__(self, num_actions: int, seed: int | None = 0):
        if int(num_actions) < 1:
            raise ValueError(f"num_actions must be >= 1, got {num_actions}")
        self.num_actions = int(num_actions)
        self._rng = np.random.default_rng(seed)

    def reset(self, env, seed):
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def act(self, obs, env) -> int:
        return int(self._rng.integers(self.num_actions))


class EpsilonPolicy:
    """With probability `epsilon` a uniformly random action, otherwise `inner`'s.

    The inner policy is asked every step (so a stateful expert keeps its bookkeeping),
    then overridden. The coin and the random action come from an own generator, so the
    sequence of overrides is a function of `seed` (re-seeded per episode by `reset`).
    """

    def __init__(self, inner: Policy, epsilon: float, num_actions: int, seed: int | None = 0):
        if not 0.0 <= float(epsilon) <= 1.0:
            raise DittoError("epsilon must be in [0, 1]", field="epsilon", got=epsilon)
        self.inner = inner
        self.epsilon = float(epsilon)
        self.num_actions = int(num_actions)
        self._seed = seed
        self._rng = np.random.default_rng(seed)

    def reset(self, env, seed):
        self.inner.reset(env, seed)
        if seed is not None:
            # Decorrelate the coin from the inner policy's own use of the seed.
            self._rng = np.random.default_rng([int(seed), 0xE75])

    def act(self, obs, env) -> int:
        action = int(self.inner.act(obs, env))
        if self.epsilon > 0.0 and self._rng.random() < self.epsilon:
            action = int(self._rng.integers(self.num_actions))
            note = getattr(self.inner, "note_action", None)
            if note is not None:  # tell a look-ahead expert what the env really does
                note(action)
        return action


class Emulator:
    """Emulator access for scripted experts: the real RAM, and look-ahead on a shadow ALE.

    Look-ahead never touches the real emulator. `begin()` copies the real state, *RNG
    included*, into a second `ALEInterface` (same ROM, same sticky-action probability,
    same frame cap) and returns that state; `restore(state)` rewinds the shadow for the
    next candidate; `step(action)` plays one agent step there (``frame_skip`` raw frames,
    no screen reads, so it is cheap). The real episode -- frames, rewards and
    sticky-action draws -- is exactly what it would have been without any look-ahead.

    Why a shadow and not clone/restore on the real ALE: ALE's sticky actions repeat "the
    previous action", which is not part of a cloned state. Restoring the real emulator
    after a simulation would leave the *simulated* last action behind, and with sticky
    actions the real episode would then repeat an action it never took (we measured this:
    it changed the real trajectory). The shadow is primed with the agent's real last
    action (`note_action`), so even under sticky actions its simulation follows the same
    random draws as the real game; it is exact without sticky actions (``ditto``).
    """

    PRIME_FRAMES = 12  # frames to press the last action so a sticky ALE adopts it

    def __init__(self, env):
        base = env.unwrapped
        self.env_ale = base.ale
        self.action_set = list(base._action_set)  # action index -> ale_py.Action
        self.meanings = list(base.get_action_meanings())
        self.frame_skip = _frame_skip(env)
        self.sticky = float(self.env_ale.getFloat("repeat_action_probability")) > 0.0
        self.sim = _shadow_ale(base)
        self.last_action = 0  # the real env's last action index (NOOP at reset)
        self._sim_last = None  # last action the shadow played

    def index(self, name: str) -> int:
        """Index of an action by meaning ('FIRE'); ValueError if the game lacks it."""
        return self.meanings.index(name)

    def ram(self) -> np.ndarray:
        """The real emulator's RAM."""
        return self.env_ale.getRAM()

    def note_action(self, action: int) -> None:
        """Record the action the real env is about to take (for sticky-action priming)."""
        self.last_action = int(action)

    def begin(self):
        """Copy the real state into the shadow; returns it for `restore`."""
        state = self.env_ale.cloneState(include_rng=True)
        self.restore(state)
        return state

    def restore(self, state) -> None:
        """Rewind the shadow to `state` (from `begin`)."""
        if self.sticky and self._sim_last != self.last_action:
            # The shadow's "previous action" survives restoreState: press the real one
            # until the sticky ALE adopts it (each frame keeps the old one w.p. p).
            a = self.action_set[self.last_action]
            for _ in range(self.PRIME_FRAMES):
                self.sim.act(a)
            self._sim_last = self.last_action
        self.sim.restoreState(state)

    def sim_ram(self) -> np.ndarray:
        return self.sim.getRAM()

    def step(self, action: int) -> float:
        """One agent step (frame_skip frames) on the shadow; returns the reward."""
        sim, a, reward = self.sim, self.action_set[action], 0.0
        for _ in range(self.frame_skip):
            reward += sim.act(a)
            if sim.game_over():
                break
        self._sim_last = action
        return reward


def _shadow_ale(base) -> ale_py.ALEInterface:
    """A second emulator configured like `base.ale` (ROM, mode, sticky, frame cap)."""
    real = base.ale
    sim = ale_py.ALEInterface()
    sim.setLoggerMode(ale_py.LoggerMode.Error)
    sim.setFloat("repeat_action_probability", real.getFloat("repeat_action_probability"))
    sim.setInt("max_num_frames_per_episode", real.getInt("max_num_frames_per_episode"))
    sim.loadROM(ale_py.roms.get_rom_path(base._game))
    if getattr(base, "_game_mode", None) is not None:
        sim.setMode(base._game_mode)
    if getattr(base, "_game_difficulty", None) is not None:
        sim.setDifficulty(base._game_difficulty)
    return sim


def _frame_skip(env) -> int:
    """The agent-step frame skip of a (wrapped) env: AtariPreprocessing's, else ALE's."""
    e = env
    while e is not None:
        if type(e).__name__ == "AtariPreprocessing":
            return int(e.frame_skip)
        e = getattr(e, "env", None)
    skip = getattr(env.unwrapped, "_frameskip", 1)
    return int(skip) if isinstance(skip, int) else 4
