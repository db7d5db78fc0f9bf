"""The `Method` interface and the on-device batch sampling every method shares.

A method is used in three places, always through this interface:
  training  `init` -> state; `make_data` (host, once) -> device arrays; then per update
            `sample(config, data, key)` -> batch and `train_step(config, ctx)` -> a pure
            `(state, batch, rng, wm_params) -> (state, metrics)`. Sampling and the step
            run inside one `lax.fori_loop` on device (engine/fit.py drives K of them per
            host call), vmapped over seeds.
  acting    `make_agent(...)` -> an `agents.acting.Agent` (`init(num_envs)` / `act(carry,
            obs, is_first, key)`) for evaluation in the real game.
  reports   `name`, `label`, `order`, `uses_latents`, `host_metrics`.

Layouts: `data` is a dict of device arrays over the FLAT expert store (steps of all
episodes concatenated; see data/store.py). Latents are posterior RSSM states of every step
(`encode_store`), dict of (N, ...) arrays.
"""
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ditto_jax.agents.acting import WorldModelAgent
from ditto_jax.errors import DittoError


@dataclasses.dataclass(frozen=True)
class Context:
    """What a method may know about the world model and the game (never its params)."""
    num_actions: int
    obs_shape: tuple
    action_dim: int = 0        # width of the world model's action input (>= num_actions)
    feat_dim: int = 0          # actor/critic input: get_feat(state)
    part_dim: int = 0          # the compared latent part (config.latent)
    wm_model: Any = None       # the flax world model (apply with wm_params), or None


class Method:
    """Base class: override the parts a method needs.

    name    registry key and `--method` value; label: its row name in reports;
    order   sort key of its row; uses_latents: whether the stage encodes the expert data
            with the world model (False: pixel-only methods such as BC); baseline: reports
            give every other row's probability of improvement over this one.
    """
    name = ""
    label = ""
    order = 50
    uses_latents = True
    baseline = False           # reports compare every other row against baselines
    vmap_seeds = True          # False: seeds train one after another (see PixelBC)
    device_loop = True         # False: one update per host call (see PixelBC)
    state_version = 2          # bumped when the train-state layout changes

    # ------------------------------------------------------------- config
    def resolve_config(self, config):
        """The config this method actually runs with (e.g. D-GAIL's reward = gail), checked.
        Called before any data or checkpoint is read; raise DittoError for bad values."""
        return config

    # ------------------------------------------------------------- training
    def init(self, config, ctx, key):
        raise NotImplementedError

    def make_data(self, config, ctx, store, latents):
        """Host arrays the sampler reads on device, built once (dict of numpy arrays)."""
        raise NotImplementedError

    def sample(self, config, data, key):
        """One batch, on device, from `data` (pure jax)."""
        raise NotImplementedError

    def train_step(self, config, ctx):
        """A pure `(state, batch, rng, wm_params) -> (state, metrics)`."""
        raise NotImplementedError

    def host_metrics(self, config, metrics):
        """Extra metrics computed on the host from fetched ones (e.g. D-GAIL collapse)."""
        return {}

    # ------------------------------------------------------------- acting
    def actor_params(self, state):
        return state.actor

    def actor_apply(self, config, ctx):
        """`(actor_params, feat) -> logits` for methods that act on latents, else None."""
        return None

    def make_agent(self, config, ctx, wm_state, state, *, greedy=False,
                   matmul_dtype="float32"):
        """matmul_dtype: the acting products' (`WorldModelAgent`; "bfloat16" is opt-in)."""
        return WorldModelAgent(wm_state, self.actor_apply(config, ctx),
                               self.actor_params(state), greedy=greedy,
                               matmul_dtype=matmul_dtype)

    def __repr__(self):
        return f"<method {self.name}>"


class WindowTable:
    """Uniform sampling of windows of `length` consecutive steps inside one episode, on
    device, from per-episode offsets: the same distribution as
    `EpisodeStore.sample_start_indices` (episodes shorter than `length` never used).

    Arrays: `starts` (E',) flat index of step 0 of each usable episode and `cum` (E',) the
    cumulative count of window starts. Padding episodes with count 0 keeps shapes fixed,
    so tables of different expert subsets (N_E) can be stacked and vmapped.
    """

    @staticmethod
    def build(store, length):
        ok = store.lengths >= length
        if not ok.any():
            raise DittoError("No expert episode is long enough for the imagination window",
                             field="horizon", expected=f"<= {int(store.lengths.max()) - 1}",
                             got=length - 1)
        counts = store.lengths[ok] - length + 1
        return {"win_starts": store.starts[ok].astype(np.int32),
                "win_cum": np.cumsum(counts).astype(np.int32)}

    @staticmethod
    def sample(data, key, batch_size):
        cum = data["win_cum"]
        u = jax.random.randint(key, (batch_size,), 0, cum[-1])
        ep = jnp.searchsorted(cum, u, side="right")
        before = jnp.where(ep > 0, cum[jnp.maximum(ep - 1, 0)], 0)
        return data["win_starts"][ep] + (u - before)


def uniform_index(key, valid, batch_size):
    """(B,) entries of `valid` (a 1-D index array) drawn uniformly with replacement."""
    return valid[jax.random.randint(key, (batch_size,), 0, valid.shape[0])]
