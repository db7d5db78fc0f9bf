"""In-memory episode store with fast, deterministic window samplers.

All episodes are concatenated into flat per-step arrays (one contiguous uint8 frame array
of shape (N, H, W, C) plus action/reward/... of shape (N,)); `episode_bounds` gives each
episode's [start, end) in that flat index space. Sampling is vectorised fancy indexing.

Step convention (RLDS, see `ditto_jax.data.schema`): step t holds o_t, the action a_t taken
at o_t, the reward r_t received after a_t, discount, is_first, is_last, is_terminal. Each
episode's final step (is_last) is stored too: its frame is real, but its action and reward
are placeholders (0). Windows may end on that step, so
- `action[:, t]` is meaningful where `is_last[:, t]` is False;
- `prev_action[:, t]` = a_{t-1} (the action that led to o_t) and `prev_reward[:, t]` =
  r_{t-1} are real at every step, and 0 where `is_first` (an episode start). A world model
  that conditions on the previous action uses `prev_action` (= action shifted right).

`is_first` is True only where an episode really starts, not at the first step of every
window: a window may begin mid-episode, and the world model resets its recurrent state at
the start of each window anyway.
"""
from __future__ import annotations

import numpy as np

from ditto_jax.errors import DittoError

_STEP_KEYS = ("action", "reward", "discount", "is_first", "is_last", "is_terminal")
_STEP_DTYPES = {"action": np.int32, "reward": np.float32, "discount": np.float32,
                "is_first": np.bool_, "is_last": np.bool_, "is_terminal": np.bool_}


def _as_rng(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


class EpisodeStore:
    """Flat arrays of every step of a list of episodes, plus episode offsets/lengths."""

    def __init__(self, observation, action, reward, discount, is_first, is_last,
                 is_terminal, starts, lengths, metadata=None, num_actions=None):
        self.observation = observation
        self.action = action
        self.reward = reward
        self.discount = discount
        self.is_first = is_first
        self.is_last = is_last
        self.is_terminal = is_terminal
        self.starts = np.asarray(starts, np.int64)    # (E,) flat index of step 0
        self.lengths = np.asarray(lengths, np.int64)  # (E,) steps incl. the final one
        self.metadata = list(metadata or [{} for _ in self.starts])
        if num_actions is None:
            meanings = next((m.get("action_meanings") for m in self.metadata
                             if m.get("action_meanings")), None)
            num_actions = len(meanings) if meanings else int(action.max()) + 1
        self.num_actions = int(num_actions)
        # prev_action / prev_reward per flat step: 0 at episode starts.
        self.prev_action = np.zeros_like(action)
        self.prev_action[1:] = action[:-1]
        self.prev_action[self.starts] = 0
        self.prev_reward = np.zeros_like(reward)
        self.prev_reward[1:] = reward[:-1]
        self.prev_reward[self.starts] = 0
        self._tables = {}

    @classmethod
    def from_episodes(cls, episodes, *, num_actions=None) -> "EpisodeStore":
        """Concatenates `schema.Episode`s (or objects with the same fields)."""
        episodes = list(episodes)
        if not episodes:
            raise DittoError("No episodes to store", field="episodes",
                             expected="at least one episode")
        shapes = {e.observation.shape[1:] for e in episodes}
        if len(shapes) != 1:
            raise DittoError("Episodes have different frame shapes", field="observation",
                             expected="one (H, W, C) for all episodes", got=sorted(shapes))
        lengths = np.array([len(e.action) for e in episodes], np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        n = int(lengths.sum())
        obs = np.empty((n,) + shapes.pop(), np.uint8)
        fields = {k: np.empty(n, _STEP_DTYPES[k]) for k in _STEP_KEYS}
        for e, s, ln in zip(episodes, starts, lengths):
            if len(e.observation) != ln:
                raise DittoError("An episode has different numbers of frames and actions",
                                 field="observation", expected=int(ln),
                                 got=len(e.observation))
            obs[s:s + ln] = e.observation
            for k in _STEP_KEYS:
                fields[k][s:s + ln] = getattr(e, k)
        return cls(obs, starts=starts, lengths=lengths,
                   metadata=[dict(e.metadata) for e in episodes], num_actions=num_actions,
                   **fields)

    # -- shape -----------------------------------------------------------------------

    @property
    def obs_shape(self):
        return tuple(self.observation.shape[1:])

    @property
    def num_steps(self) -> int:
        """Stored steps, including each episode's final observation-only step."""
        return len(self.action)

    @property
    def num_transitions(self) -> int:
        return int(self.num_steps - len(self.starts))

    @property
    def num_episodes(self) -> int:
        return len(self.starts)

    @property
    def episode_bounds(self) -> np.ndarray:
        """(E, 2) int64: [start, end) of each episode in the flat step index."""
        return np.stack([self.starts, self.starts + self.lengths], axis=1)

    def episode_of(self, index) -> np.ndarray:
        """Episode number of each flat step index."""
        return np.searchsorted(self.starts, np.asarray(index), side="right") - 1

    # -- sampling --------------------------------------------------------------------

    def _table(self, length):
        """(episode starts, cumulative valid-start counts) for windows of `length`."""
        t = self._tables.get(length)
        if t is None:
            ok = self.lengths >= length
            if not ok.any():
                raise DittoError("No episode is long enough for the requested window",
                                 field="length",
                                 expected=f"<= the longest episode ({self.lengths.max()} "
                                          "steps incl. the final observation)",
                                 got=length)
            counts = self.lengths[ok] - length + 1
            t = (self.starts[ok], np.cumsum(counts))
            self._tables[length] = t
        return t

    def sample_start_indices(self, rng, batch_size, length) -> np.ndarray:
        """(B,) flat start indices, uniform over all windows of `length` steps that lie
        inside one episode (episodes shorter than `length` are never used)."""
        if length < 1 or batch_size < 1:
            raise DittoError("Window length and batch size must be positive",
                             field="length/batch_size", got=(length, batch_size))
        starts, cum = self._table(int(length))
        u = _as_rng(rng).integers(0, cum[-1], size=int(batch_size))
        ep = np.searchsorted(cum, u, side="right")
        offset = u - np.concatenate([[0], cum[:-1]])[ep]
        return starts[ep] + offset

    def gather(self, index, *, with_observation=True) -> dict:
        """Every per-step field at flat step indices `index` (any shape)."""
        index = np.asarray(index)
        out = {"action": self.action[index], "prev_action": self.prev_action[index],
               "reward": self.reward[index], "prev_reward": self.prev_reward[index],
               "discount": self.discount[index], "is_first": self.is_first[index],
               "is_last": self.is_last[index], "is_terminal": self.is_terminal[index]}
        if with_observation:
            out["observation"] = np.take(self.observation, index, axis=0)
        return out

    def sample_windows(self, rng, batch_size, length) -> dict:
        """A batch of windows of `length` consecutive steps, each inside one episode.

        Returns arrays shaped (B, T, ...): observation uint8 (B, T, H, W, C), action /
        prev_action int32, reward / prev_reward / discount float32, is_first / is_last /
        is_terminal bool, and `index` int64 (the flat step indices). Deterministic given
        the generator (or seed) `rng`.
        """
        start = self.sample_start_indices(rng, batch_size, length)
        index = start[:, None] + np.arange(int(length))[None, :]
        out = self.gather(index)
        out["index"] = index
        return out

    def sample_expert_windows(self, rng, batch_size, horizon, *, with_observation=True):
        """(B, H+1) windows of consecutive expert steps inside one episode.

        Same fields as `sample_windows` plus `index` (B, H+1), the flat step indices, to
        gather precomputed per-step latents from an (num_steps, D) array. Step k of a
        window holds s_k and the expert action a_k taken there (a placeholder where
        is_last).
        """
        start = self.sample_start_indices(rng, batch_size, int(horizon) + 1)
        index = start[:, None] + np.arange(int(horizon) + 1)[None, :]
        out = self.gather(index, with_observation=with_observation)
        out["index"] = index
        return out

    def __repr__(self):
        return (f"EpisodeStore({self.num_episodes} episodes, {self.num_steps} steps, "
                f"obs {self.obs_shape}, {self.num_actions} actions)")
