"""World-model training maths: optimizer, TrainState, train/eval steps, open-loop strip.

Pure functions only: no jit, sharding or checkpointing here (the caller wraps them, e.g.
`jax.jit(train_step, donate_argnums=0)`). The TrainState carries the model, optimizer and
loss config as static (non-pytree) fields, like flax.training.train_state, so the step
functions need nothing but the state and the batch.

Mixed precision: `config.train.compute_dtype='bfloat16'` builds the modules with bf16
activations; parameters, optimizer state, losses and distributions stay float32.
"""
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from ditto_jax.core import devices
from ditto_jax.errors import DittoError
from ditto_jax.models.world_model import (LossConfig, WorldModel, make_world_model, preprocess,
                                          prev_actions_onehot, to_uint8, world_model_loss)

OPTIMIZERS = ("adam", "adamw")  # config.optim.name (make_optimizer)


class TrainState(struct.PyTreeNode):
    params: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array
    model: WorldModel = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    loss_cfg: LossConfig = struct.field(pytree_node=False)


def make_optimizer(config):
    """optax chain: clip_by_global_norm(clip) then Adam / AdamW(lr, eps)."""
    o = config.optim
    if o.name == "adam":
        opt = optax.adam(o.lr, eps=o.eps)
    elif o.name == "adamw":
        opt = optax.adamw(o.lr, eps=o.eps, weight_decay=o.weight_decay)
    else:
        raise DittoError("unknown optimizer", field="optim.name", expected="adam | adamw",
                         got=o.name)
    parts = [optax.clip_by_global_norm(o.clip)] if o.clip and o.clip > 0 else []
    return optax.chain(*parts, opt)


def make_model(config, obs_shape, num_actions):
    """The WorldModel of `config`; "auto" device defaults resolved here
    (ditto_jax/core/devices.py)."""
    import math
    t = config.train
    frames = None
    if t.get("batch_size") and t.get("seq_len"):
        frames = math.ceil(int(t.batch_size) * int(t.seq_len) / jax.device_count())
    model, dtype = devices.resolve_for_build(config.model, t.get("compute_dtype", "float32"),
                                             frames=frames)
    return make_world_model(model, obs_shape, num_actions, dtype)


def dummy_batch(obs_shape, batch_size=1, seq_len=2):
    return {
        "observation": jnp.zeros((batch_size, seq_len) + tuple(obs_shape), jnp.uint8),
        "action": jnp.zeros((batch_size, seq_len), jnp.int32),
        "is_first": jnp.zeros((batch_size, seq_len), bool).at[:, 0].set(True),
    }


def init_train_state(config, obs_shape, num_actions, rng):
    """Parameters (float32), optimizer state, step 0 and the state's own rng."""
    model = make_model(config, obs_shape, num_actions)
    tx = make_optimizer(config)
    loss_cfg = LossConfig.from_config(config.loss)
    rng, k_init, k_sample = jax.random.split(rng, 3)
    b = dummy_batch(obs_shape)
    prev = prev_actions_onehot(b["action"], b["is_first"], model.action_dim)
    # Jitted: eager init would compile every op of the scan and convolutions one by one.
    params = jax.jit(model.init)(k_init, b["observation"], prev, b["is_first"], k_sample)
    params = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    return TrainState(params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32),
                      rng=rng, model=model, tx=tx, loss_cfg=loss_cfg)


def set_decoder_background(state: TrainState, frames):
    """Sets the decoder's per-pixel bias (`model.decoder_pixel_bias`) to the median frame.

    `frames`: uint8 (N, H, W, C) drawn from the training data. A data-dependent init: the
    bias would otherwise need hundreds of Adam steps to reach the background.
    """
    if not state.model.decoder_pixel_bias:
        return state
    median = jnp.median(jnp.asarray(frames).astype(jnp.float32), axis=0)
    bias = preprocess(median.round().astype(jnp.uint8))
    params = jax.tree.map(lambda x: x, state.params)  # a copy: dicts are mutable
    decoder = params["params"]["decoder_net"]
    assert decoder["pixel_bias"].shape == bias.shape, (
        f"median frame {bias.shape} != decoder pixel bias {decoder['pixel_bias'].shape}")
    decoder["pixel_bias"] = bias
    return state.replace(params=params)


def train_step(state: TrainState, batch, rng=None):
    """One Adam step on the world-model loss. Returns (new_state, metrics).

    `rng=None` draws the step's key from `state.rng` (and advances it); passing `rng` uses
    that key and leaves `state.rng` as it is.
    """
    if rng is None:
        new_rng, rng = jax.random.split(state.rng)
    else:
        new_rng = state.rng
    grad_fn = jax.value_and_grad(world_model_loss, has_aux=True)
    (_, (metrics, _)), grads = grad_fn(state.params, state.model, batch, rng, state.loss_cfg)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, grad_norm=optax.global_norm(grads))
    new_state = state.replace(params=params, opt_state=opt_state, step=state.step + 1,
                              rng=new_rng)
    return new_state, metrics


def eval_step(state: TrainState, batch, rng):
    """Validation metrics (the training loss terms) without an update."""
    _, (metrics, _) = world_model_loss(state.params, state.model, batch, rng, state.loss_cfg)
    return metrics


def open_loop(state: TrainState, batch, rng, context=5, horizon=10):
    """Prediction strip: filter `context` frames, then imagine `horizon` under the recorded
    actions and decode. Returns (truth, model), uint8 (B, context + horizon, H, W, C).

    The first `context` model frames are posterior reconstructions. Imagination ignores
    episode boundaries inside the horizon; pick windows that do not cross one.
    """
    model = state.model
    obs, action = batch["observation"], batch["action"]
    is_first = batch["is_first"].astype(bool)
    n = context + horizon
    assert obs.shape[1] >= n, f"open_loop needs {n} steps, batch has {obs.shape[1]}"
    obs, action, is_first = obs[:, :n], action[:, :n], is_first[:, :n]
    prev = prev_actions_onehot(action, is_first, model.action_dim)
    k_obs, k_img = jax.random.split(rng)
    apply = lambda method, *a: model.apply(state.params, *a, method=method)
    posts, _ = apply(WorldModel.observe, obs[:, :context], prev[:, :context],
                     is_first[:, :context], k_obs)
    last = jax.tree.map(lambda x: x[:, -1], posts)
    imagined = apply(WorldModel.imagine, last, prev[:, context:], k_img)
    feats = jnp.concatenate([apply(WorldModel.get_feat, posts), apply(WorldModel.get_feat, imagined)], 1)
    recon = apply(WorldModel.decode, feats)
    return obs, to_uint8(recon)
