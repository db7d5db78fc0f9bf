"""DreamerV2 recurrent state-space model (RSSM) with categorical latents.

State (a dict pytree, batch-major):
  deter  (B, D)     deterministic GRU state h_t
  stoch  (B, S, C)  one-hot sample z_t (straight-through: onehot + probs - sg(probs))
  logits (B, S, C)  logits of the distribution z_t was sampled from (float32)

  h_t = GRU(h_{t-1}, MLP([flatten(z_{t-1}), a_{t-1}]))   (LayerNorm GRU, DreamerV2)
  prior      p(z_t | h_t)       = MLP(h_t)
  posterior  q(z_t | h_t, e_t)  = MLP([h_t, e_t])

The initial state is all zeros (DreamerV2 default); `obs_step` resets state and previous
action to it wherever `is_first`, so a window that starts mid-episode starts from zeros too.

Sequence methods use `lax.scan` over the time-major axis with `(carry, x) -> (carry, y)`
bodies. Work that does not depend on the recurrence is hoisted out of the scan and done as
one big batched matmul: the embedding half of the posterior's first layer before the scan,
the prior head after it (in `observe`). The results equal a step-by-step loop of
`obs_step` (the tests check this). Random keys: a sequence method splits `key` into one key
per step; each step splits its key again as documented in `obs_step` / `img_step`.
"""
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from ditto_jax.models.networks import DenseOutIn, Norm, get_act, matmul_fn

LATENT_MODES = ("sample", "probs")  # how z is read from the logits (`latent_sample`)

Dtype = Any
sg = jax.lax.stop_gradient


def sample_onehot(logits, key):
    """One-hot sample with straight-through gradients: onehot + probs - sg(probs)."""
    probs = jax.nn.softmax(logits, -1)
    idx = jax.random.categorical(key, logits, -1)
    onehot = jax.nn.one_hot(idx, logits.shape[-1], dtype=probs.dtype)
    # Parenthesised so the forward value is exactly the one-hot ((1 + p) - p != 1 in floats).
    return onehot + (probs - sg(probs))


def latent_sample(logits, key, mode="sample"):
    """z from logits: a straight-through one-hot sample (`sample`, DreamerV2) or the class
    probabilities themselves (`probs`, a deterministic relaxation).

    At CPU-demo scale a sampled one-hot code is noise to the decoder until the posterior
    has sharpened, and a small model stalls there for thousands of updates, never encoding
    the paddles or the ball (benchmarks/README.md); `probs` lets the encoder's information
    through from the first update. The KL terms use the logits either way.
    """
    if mode == "sample":
        return sample_onehot(logits, key)
    if mode == "probs":
        return jax.nn.softmax(logits, -1)
    raise ValueError(f"unknown latent mode {mode!r}; expected 'sample' or 'probs'")


def get_feat(state):
    """concat(h, flatten(z)) -> (..., D + S*C)."""
    stoch = state["stoch"]
    stoch = stoch.reshape(stoch.shape[:-2] + (-1,))
    return jnp.concatenate([state["deter"].astype(jnp.float32), stoch.astype(jnp.float32)], -1)


def _where(mask, a, b):
    """Per-batch-row select that broadcasts a (B,) mask over trailing axes."""
    return jax.tree.map(
        lambda x, y: jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x, y), a, b)


class RSSM(nn.Module):
    deter: int = 1024
    hidden: int = 1000
    stoch: int = 32
    classes: int = 32
    action_dim: int = 18
    norm: str = "layer"
    act: str = "elu"
    unimix: float = 0.0        # mix of a uniform into the categoricals (DreamerV3); 0 = off
    latent: str = "sample"     # sample (straight-through one-hot) | probs (see latent_sample)
    unroll: int = 1            # lax.scan unroll
    split_transpose: bool = False  # lax.scan(_split_transpose=...): weight grads out of the loop
    # "out_in": every Dense kernel stored (out, in), for acting (networks.DenseOutIn)
    dense_layout: str = "in_out"
    # "bfloat16": every Dense rounds its input and kernel to bf16 and sums in float32
    # (networks.bf16_dot_general); the imagination of the policy stage can ask for it
    # (config.imagine_matmul, methods/imagination.py). Norms, gates and sampling stay f32.
    matmul_dtype: str = "float32"
    dtype: Dtype = jnp.float32

    def setup(self):
        bias = self.norm == "none"
        if self.dense_layout not in ("in_out", "out_in"):
            raise ValueError(f"dense_layout must be 'in_out' or 'out_in', "
                             f"got {self.dense_layout!r}")
        kind = DenseOutIn if self.dense_layout == "out_in" else nn.Dense
        dot = matmul_fn(self.matmul_dtype)
        dense = lambda n, name, use_bias=bias: kind(n, use_bias=use_bias, dtype=self.dtype,
                                                     dot_general=dot, name=name)
        self.img_in = dense(self.hidden, "img_in")
        self.img_in_norm = Norm(self.norm, name="img_in_norm")
        # LayerNorm GRU (DreamerV2): one Dense on [x, h] gives reset, candidate, update.
        self.gru = dense(3 * self.deter, "gru")
        self.gru_norm = Norm(self.norm, name="gru_norm")
        self.img_out = dense(self.hidden, "img_out")
        self.img_out_norm = Norm(self.norm, name="img_out_norm")
        self.img_logits = dense(self.stoch * self.classes, "img_logits", True)
        # Posterior first layer on [h, e] written as W_h h + (W_e e + b) so W_e e can be
        # computed for all steps before the scan.
        self.obs_h = dense(self.hidden, "obs_h", False)
        self.obs_e = dense(self.hidden, "obs_e", True)
        self.obs_norm = Norm(self.norm, name="obs_norm")
        self.obs_logits = dense(self.stoch * self.classes, "obs_logits", True)

    # ----------------------------------------------------------------- helpers
    def initial_state(self, batch_size):
        s, c = self.stoch, self.classes
        return {
            "deter": jnp.zeros((batch_size, self.deter), jnp.float32),
            "stoch": jnp.zeros((batch_size, s, c), jnp.float32),
            "logits": jnp.zeros((batch_size, s, c), jnp.float32),
        }

    def get_feat(self, state):
        return get_feat(state)

    def _logits(self, x):
        logits = x.astype(jnp.float32).reshape(x.shape[:-1] + (self.stoch, self.classes))
        if self.unimix > 0:
            probs = jax.nn.softmax(logits, -1)
            probs = (1 - self.unimix) * probs + self.unimix / self.classes
            logits = jnp.log(probs)
        return logits

    def _deter(self, prev_state, prev_action):
        act = get_act(self.act)
        stoch = prev_state["stoch"]
        stoch = stoch.reshape(stoch.shape[:-2] + (-1,))
        x = jnp.concatenate([stoch, prev_action.astype(stoch.dtype)], -1).astype(self.dtype)
        x = act(self.img_in_norm(self.img_in(x)))
        h = prev_state["deter"]
        parts = self.gru_norm(self.gru(jnp.concatenate([x, h.astype(self.dtype)], -1)))
        parts = parts.astype(jnp.float32)
        reset, cand, update = jnp.split(parts, 3, -1)
        reset = jax.nn.sigmoid(reset)
        cand = jnp.tanh(reset * cand)
        update = jax.nn.sigmoid(update - 1.0)  # DreamerV2 update bias -1
        return update * cand + (1 - update) * h

    def _prior_logits(self, deter):
        x = get_act(self.act)(self.img_out_norm(self.img_out(deter.astype(self.dtype))))
        return self._logits(self.img_logits(x))

    def _embed_proj(self, embed):
        return self.obs_e(embed.astype(self.dtype))

    def _post_logits(self, deter, embed_proj):
        x = self.obs_h(deter.astype(self.dtype)) + embed_proj
        x = get_act(self.act)(self.obs_norm(x))
        return self._logits(self.obs_logits(x))

    def _check_state(self, state, batch):
        chex.assert_shape(state["deter"], (batch, self.deter))
        chex.assert_shape(state["stoch"], (batch, self.stoch, self.classes))

    def _check_action(self, action, batch):
        chex.assert_shape(action, (batch, self.action_dim))  # one-hot, padded to action_dim

    # -------------------------------------------------------------- one step
    def img_step(self, prev_state, prev_action, key):
        """Prior step: (B,...) state, (B, A) one-hot action -> next prior state."""
        batch = prev_action.shape[0]
        self._check_state(prev_state, batch)
        self._check_action(prev_action, batch)
        deter = self._deter(prev_state, prev_action)
        logits = self._prior_logits(deter)
        return {"deter": deter, "stoch": latent_sample(logits, key, self.latent),
                "logits": logits}

    def obs_step(self, prev_state, prev_action, embed, is_first, key):
        """Posterior step. Returns (post, prior) for time t.

        prev_action is a_{t-1} (one-hot, (B, A)); embed e_t (B, E); is_first (B,) resets
        prev_state and prev_action to the initial (zero) state. `key` is split into
        (k_post, k_prior) for the posterior and prior samples.
        """
        batch = embed.shape[0]
        self._check_state(prev_state, batch)
        self._check_action(prev_action, batch)
        chex.assert_shape(is_first, (batch,))
        k_post, k_prior = jax.random.split(key)
        prev_state = _where(is_first, self.initial_state(batch), prev_state)
        prev_action = jnp.where(is_first[:, None], 0.0, prev_action)
        deter = self._deter(prev_state, prev_action)
        post_logits = self._post_logits(deter, self._embed_proj(embed))
        prior_logits = self._prior_logits(deter)
        post = {"deter": deter, "stoch": latent_sample(post_logits, k_post, self.latent),
                "logits": post_logits}
        prior = {"deter": deter, "stoch": latent_sample(prior_logits, k_prior, self.latent),
                 "logits": prior_logits}
        return post, prior

    # --------------------------------------------------------------- sequences
    def observe(self, embeds, actions, is_first, key, state=None):
        """Filter a sequence with the posterior.

        embeds (B, T, E); actions (B, T, A) one-hot PREVIOUS actions (index t holds a_{t-1});
        is_first (B, T). Returns (posts, priors), dicts of (B, T, ...) arrays.
        """
        b, t = embeds.shape[:2]
        chex.assert_shape(actions, (b, t, self.action_dim))
        chex.assert_shape(is_first, (b, t))
        if state is None:
            state = self.initial_state(b)
        self._check_state(state, b)
        keys = jax.vmap(jax.random.split)(jax.random.split(key, t))  # (T, 2, 2)
        k_post, k_prior = keys[:, 0], keys[:, 1]
        init = self.initial_state(b)
        if self.is_initializing():
            # Create every parameter outside the scan: parameters first created inside a
            # lax.scan body would leak tracers.
            self.obs_step(state, actions[:, 0], embeds[:, 0], is_first[:, 0], key)
        embed_proj = self._embed_proj(embeds)  # hoisted out of the scan: one big matmul

        def step(prev, x):
            action, e_proj, first, k = x
            prev = _where(first, init, prev)
            action = jnp.where(first[:, None], 0.0, action)
            deter = self._deter(prev, action)
            logits = self._post_logits(deter, e_proj)
            post = {"deter": deter, "stoch": latent_sample(logits, k, self.latent),
                    "logits": logits}
            return post, post

        xs = (jnp.swapaxes(actions, 0, 1).astype(jnp.float32), jnp.swapaxes(embed_proj, 0, 1),
              jnp.swapaxes(is_first, 0, 1), k_post)
        _, posts = jax.lax.scan(step, state, xs, unroll=self.unroll,
                                _split_transpose=self.split_transpose)
        posts = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), posts)
        # Prior head hoisted out of the scan: it does not feed the recurrence.
        prior_logits = self._prior_logits(posts["deter"])
        prior_stoch = jax.vmap(lambda lg, k: latent_sample(lg, k, self.latent),
                              in_axes=(1, 0), out_axes=1)(prior_logits, k_prior)
        priors = {"deter": posts["deter"], "stoch": prior_stoch, "logits": prior_logits}
        return posts, priors

    def imagine(self, start_state, actions, key):
        """Prior rollout under given one-hot actions (B, H, A): state after each action.

        Returns a dict of (B, H, ...) arrays: entry k is img_step applied k+1 times.
        """
        b, h = actions.shape[:2]
        assert actions.shape == (b, h, self.action_dim), (
            f"actions {actions.shape} != {(b, h, self.action_dim)}")
        self._check_state(start_state, b)

        def step(prev, x):
            action, k = x
            state = self.img_step(prev, action, k)
            return state, state

        xs = (jnp.swapaxes(actions, 0, 1).astype(jnp.float32), jax.random.split(key, h))
        _, states = jax.lax.scan(step, start_state, xs, unroll=self.unroll)
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), states)

    def __call__(self, embeds, actions, is_first, key):
        """Initialise every parameter (observe touches all of them)."""
        return self.observe(embeds, actions, is_first, key)
