"""World model (encoder + RSSM + decoder [+ reward / continue heads]) and its pure loss.

Batch convention (from the data store), all batch-major:
  observation  uint8 (B, T, H, W, C)
  action       int32 (B, T)   the action taken AT o_t (RLDS)
  is_first     bool  (B, T)
  reward       float (B, T)   optional, only for the reward head (r_t follows a_t)
  is_terminal  bool  (B, T)   optional, only for the continue head

The RSSM consumes the PREVIOUS action: prev_action_t = onehot(action_{t-1}) padded to
`action_dim`, zero at t = 0 of the window and wherever is_first. Each window starts from the
zero initial state (DreamerV2 default; SPEC §2 allows it).

Loss (means over B and T of per-frame sums):
  image_loss = sum_pixels w * (decoded - x)^2, x = obs / 255 - 0.5
  kl_prior   = KL(sg(q) || p),  kl_post = KL(q || sg(p))   (summed over the S categoricals)
  kl_loss    = alpha * max(kl_prior, free) + (1 - alpha) * max(kl_post, free)
  loss       = image_weight * image_loss + beta * kl_loss [+ head losses]
alpha = 0.8 weights the term that trains the PRIOR (DreamerV2, authors' code). The unit-
variance Gaussian NLL would be 0.5 * squared error; we use the plain sum of squared error
(image_weight 1.0). The authors' code computes 2.0 x 0.5 x SSE on per-game standardised
pixels (x - mu) / sigma in 0..255 units, which in these units is a weight of (255/sigma)^2
(Pong 29, Breakout 21.5, SpaceInvaders 104; SPEC §2), not 2.0: `loss.image_scale=authors`
(stages/train_wm.py) applies it.

Reconstruction weights w (`loss.recon`):
  mse              w = 1.
  object_weighted  w = 1 + (weight - 1) * [|x - background| > threshold]. The background is
                   the per-pixel median frame of the batch (`loss.background='batch'`, all
                   B*T frames of the batch) or of each sequence (`'sequence'`, median over T).
                   Computed in-graph from the uint8 frames; no gradient flows through it.
  motion_weighted  w = 1 + (weight - 1) * [|x_t - x_{t-1}| > threshold] (t > 0, same episode).
  object_motion    the union of the two masks.
SPEC §8: with plain squared error a small model learned background only; weighting pixels
that differ from the median frame x20 recovered paddles and later the ball. See
benchmarks/README.md for the measurement behind the default.
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ditto_jax.core.devices import resolve_for_build
from ditto_jax.errors import DittoError
from ditto_jax.models.networks import MLP, Decoder, Encoder, out_in_params
from ditto_jax.models.rssm import RSSM, get_feat

sg = jax.lax.stop_gradient
RECON_KINDS = ("mse", "object_weighted", "motion_weighted", "object_motion")


# --------------------------------------------------------------------------- inputs
def preprocess(obs):
    """uint8 frames -> float32 in [-0.5, 0.5]."""
    return obs.astype(jnp.float32) / 255.0 - 0.5


def to_uint8(img):
    """Standardised image -> uint8 frame."""
    return jnp.clip(jnp.round((img + 0.5) * 255.0), 0, 255).astype(jnp.uint8)


def prev_actions_onehot(action, is_first, action_dim):
    """(B, T) int actions taken at o_t -> (B, T, action_dim) one-hot a_{t-1}.

    Zero at t = 0 of the window and wherever is_first (there is no previous action).
    """
    assert action.ndim == 2, f"action must be (B, T), got {action.shape}"
    assert is_first.shape == action.shape, f"is_first {is_first.shape} != action {action.shape}"
    onehot = jax.nn.one_hot(action, action_dim, dtype=jnp.float32)
    prev = jnp.concatenate([jnp.zeros_like(onehot[:, :1]), onehot[:, :-1]], 1)
    return jnp.where(is_first[..., None], 0.0, prev)


# --------------------------------------------------------------------------- model
class WorldModel(nn.Module):
    obs_shape: tuple = (64, 64, 1)
    action_dim: int = 18
    # encoder / decoder
    cnn_depth: int = 48
    cnn_kernel: int = 4
    decoder: str = "depth_to_space"
    decoder_depth: int = 0           # 0: cnn_depth
    decoder_start_channels: int = 0  # 0: 4 * depth (upsample / depth_to_space)
    decoder_channels: tuple = ()     # (): Decoder default
    decoder_kernel: int = 3
    decoder_pixel_bias: bool = False  # learned background + zero-init last layer (Decoder)
    conv_impl: str = "matmul"        # 'matmul' | 'lax' (see networks.conv2d)
    # rssm
    deter: int = 1024
    hidden: int = 1000
    stoch: int = 32
    classes: int = 32
    unimix: float = 0.0
    latent: str = "sample"           # sample | probs (rssm.latent_sample)
    scan_unroll: int = 1
    scan_split_transpose: bool = False
    norm: str = "layer"
    act: str = "elu"
    # heads
    reward_head: bool = False
    cont_head: bool = False
    head_layers: int = 2
    head_units: int = 400
    remat: bool = False               # conv blocks keep only their conv output for backward
    frame_chunk: int = 0              # encode/decode this many frames at a time (0: all)
    dense_layout: str = "in_out"      # "out_in" for acting only (RSSM; agents/acting.py)
    # "bfloat16": the RSSM's matmuls and the encoder's matmul-form convs, never in training:
    # imagination (methods/imagination.py) and acting (agents/acting.py) opt in to it
    matmul_dtype: str = "float32"
    dtype: Any = jnp.float32

    def setup(self):
        self.encoder = Encoder(depth=self.cnn_depth, kernel=self.cnn_kernel, norm=self.norm,
                               act=self.act, conv_impl=self.conv_impl, remat=self.remat,
                               dtype=self.dtype, matmul_dtype=self.matmul_dtype)
        self.rssm = RSSM(deter=self.deter, hidden=self.hidden, stoch=self.stoch,
                         classes=self.classes, action_dim=self.action_dim, norm=self.norm,
                         act=self.act, unimix=self.unimix, latent=self.latent,
                         unroll=self.scan_unroll,
                         split_transpose=self.scan_split_transpose,
                         dense_layout=self.dense_layout, matmul_dtype=self.matmul_dtype,
                         dtype=self.dtype)
        self.decoder_net = Decoder(out_shape=tuple(self.obs_shape), kind=self.decoder,
                                   depth=self.decoder_depth or self.cnn_depth,
                                   start_channels=self.decoder_start_channels,
                                   channels=tuple(self.decoder_channels),
                                   kernel=self.decoder_kernel, norm=self.norm, act=self.act,
                                   conv_impl=self.conv_impl, remat=self.remat,
                                   pixel_bias=self.decoder_pixel_bias, dtype=self.dtype)
        if self.reward_head:
            self.reward_mlp = MLP(self.head_layers, self.head_units, self.norm, self.act,
                                  self.dtype)
            self.reward_out = nn.Dense(1, dtype=self.dtype)
        if self.cont_head:
            self.cont_mlp = MLP(self.head_layers, self.head_units, self.norm, self.act,
                                self.dtype)
            self.cont_out = nn.Dense(1, dtype=self.dtype)

    # pieces -----------------------------------------------------------------
    def _per_frame(self, fn, x, ndim):
        """Apply `fn` to the frames of x (leading dims flattened), `frame_chunk` at a time.

        Chunks run in a lax.map under jax.checkpoint: the backward recomputes one chunk's
        forward at a time, so activation memory is one chunk's instead of the batch's, and
        the working set stays in cache (benchmarks/README.md: 2x faster, 9 -> 1 GB).
        """
        lead = x.shape[:x.ndim - ndim]
        x = x.reshape((-1,) + x.shape[x.ndim - ndim:])
        n, c = x.shape[0], self.frame_chunk
        if not c or n <= c or self.is_initializing():
            y = fn(x)
        else:
            k = -(-n // c)
            if k * c > n:
                x = jnp.concatenate([x, jnp.zeros((k * c - n,) + x.shape[1:], x.dtype)])
            y = jax.lax.map(jax.checkpoint(lambda xc: fn(xc), prevent_cse=False),
                            x.reshape((k, c) + x.shape[1:]))
            y = y.reshape((k * c,) + y.shape[2:])[:n]
        return y.reshape(lead + y.shape[1:])

    def encode(self, obs):
        """uint8 (..., H, W, C) -> embedding (..., E)."""
        assert obs.shape[-3:] == tuple(self.obs_shape), (
            f"observation {obs.shape[-3:]} != model obs_shape {tuple(self.obs_shape)}")
        return self._per_frame(lambda o: self.encoder(preprocess(o)), obs, 3)

    def decode(self, feat):
        """(..., F) -> image mean (..., H, W, C), standardised float32."""
        return self._per_frame(self.decoder_net, feat, 1)

    def heads(self, feat):
        out = {}
        if self.reward_head:
            out["reward"] = self.reward_out(self.reward_mlp(feat))[..., 0].astype(jnp.float32)
        if self.cont_head:
            out["cont_logit"] = self.cont_out(self.cont_mlp(feat))[..., 0].astype(jnp.float32)
        return out

    # RSSM pass-throughs (usable with model.apply(..., method=...)) -----------
    def initial_state(self, batch_size):
        return self.rssm.initial_state(batch_size)

    def get_feat(self, state):
        return get_feat(state)

    def obs_step(self, prev_state, prev_action, obs, is_first, key):
        """One filter step from a uint8 frame (B, H, W, C); returns (post, prior)."""
        return self.rssm.obs_step(prev_state, prev_action, self.encode(obs), is_first, key)

    def img_step(self, prev_state, prev_action, key):
        return self.rssm.img_step(prev_state, prev_action, key)

    def observe(self, obs, prev_actions, is_first, key, state=None):
        """uint8 (B, T, H, W, C), one-hot a_{t-1} (B, T, A), is_first (B, T) -> (posts, priors)."""
        return self.rssm.observe(self.encode(obs), prev_actions, is_first, key, state)

    def imagine(self, start_state, actions, key):
        return self.rssm.imagine(start_state, actions, key)

    def __call__(self, obs, prev_actions, is_first, key):
        """Full pass used by the loss: posterior filter, reconstruction, heads."""
        posts, priors = self.observe(obs, prev_actions, is_first, key)
        feat = get_feat(posts)
        out = {"posts": posts, "priors": priors, "recon": self.decode(feat)}
        out.update(self.heads(feat))
        return out


ENCODER_STAGES = 4  # Encoder's stride-2 convolutions


def frame_size_problem(model_cfg, height, width):
    """Why `config.model`'s encoder and decoder cannot take (height, width) frames, or None.

    The encoder's four stride-2 kxk VALID convolutions must leave at least one pixel; the
    upsample / depth_to_space decoders double a Dense grid once per stage (so the size is a
    multiple of 2^stages); the conv_transpose decoder builds 64x64 only.
    """
    kernel = int(model_cfg.get("cnn_kernel", 4))
    h, w = int(height), int(width)
    for _ in range(ENCODER_STAGES):
        h, w = (h - kernel) // 2 + 1, (w - kernel) // 2 + 1
    if min(h, w) < 1:
        return (f"the encoder's {ENCODER_STAGES} stride-2 {kernel}x{kernel} convolutions "
                f"leave no pixel of a {height}x{width} frame")
    decoder = model_cfg.get("decoder", "depth_to_space")
    if decoder == "conv_transpose":
        if (int(height), int(width)) != (64, 64):
            return "the conv_transpose decoder builds 64x64 frames only"
        return None
    stages = len(tuple(model_cfg.get("decoder_channels") or ()) or (0, 0, 0)) + 1
    if int(height) % 2 ** stages or int(width) % 2 ** stages:
        return (f"the {decoder} decoder doubles its grid {stages} times, so height and width "
                f"must be multiples of {2 ** stages}")
    return None


def supported_frame_sizes(model_cfg, largest=128):
    """The square frame sizes up to `largest` that `config.model` takes, e.g. [48, 64, ...]."""
    return [s for s in range(1, largest + 1) if frame_size_problem(model_cfg, s, s) is None]


def check_frame_size(model_cfg, obs_shape, *, path=None):
    """A DittoError naming `data.size` and the supported sizes if the frames do not fit."""
    problem = frame_size_problem(model_cfg, obs_shape[0], obs_shape[1])
    if problem:
        sizes = ", ".join(map(str, supported_frame_sizes(model_cfg)))
        raise DittoError(f"The world model cannot take frames of this size: {problem}; "
                         "resize them with --config.data.size (e.g. 64,64)",
                         path=path, field="data.size (the frames' steps/observation shape)",
                         expected=f"square sizes {sizes} (or larger) for this model",
                         got=tuple(int(s) for s in obs_shape))


def make_world_model(model_cfg, obs_shape, num_actions, compute_dtype="float32"):
    """Build a WorldModel from `config.model` (an ml_collections ConfigDict or dict).

    "auto" conv_impl / frame_chunk / compute_dtype are resolved for this process's backend
    (ditto_jax/core/devices.py; `train_step.make_model` resolves them knowing the batch).
    """
    m, compute_dtype = resolve_for_build(model_cfg, compute_dtype)
    if num_actions > m["action_dim"]:
        raise DittoError("the dataset has more actions than the world model's action_dim",
                         field="model.action_dim", expected=f">= {num_actions}",
                         got=m["action_dim"])
    if m.get("decoder") not in ("conv_transpose", "upsample", "depth_to_space"):
        raise DittoError("unknown decoder kind", field="model.decoder",
                         expected="conv_transpose, upsample or depth_to_space",
                         got=m.get("decoder"))
    dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    if compute_dtype not in dtypes:
        raise DittoError("unknown compute dtype", field="train.compute_dtype",
                         expected="float32 or bfloat16", got=compute_dtype)
    # dense_layout is the acting agent's (agents/acting.py) and matmul_dtype the policy
    # stage's imagination (methods/imagination.py), never a trained model's.
    fields = ({f.name for f in dataclasses.fields(WorldModel)}
              - {"parent", "name", "dtype", "dense_layout", "matmul_dtype"})
    unknown = set(m) - fields
    if unknown:
        raise DittoError("unknown world model option(s)", field="model." + sorted(unknown)[0],
                         expected=", ".join(sorted(fields - {"obs_shape"})), got=sorted(unknown))
    m = {k: tuple(v) if isinstance(v, list) else v for k, v in m.items()}
    check_frame_size(m, obs_shape)
    m["obs_shape"] = tuple(int(s) for s in obs_shape)
    return WorldModel(**m, dtype=dtypes[compute_dtype])


def out_in_rssm(params):
    """A trained WorldModel's parameters for `dense_layout="out_in"`: every RSSM Dense
    kernel transposed to (out, in) (networks.DenseOutIn); the norms, the encoder and the
    rest are shared, not copied."""
    rssm = {name: out_in_params(layer) if "kernel" in layer else layer
            for name, layer in params["params"]["rssm"].items()}
    return {**params, "params": {**params["params"], "rssm": rssm}}


def bf16_rssm_kernels(params):
    """`params` with every RSSM Dense kernel cast to bfloat16 once, for a model with
    `matmul_dtype="bfloat16"` that acts step by step: its products round the kernels to
    bf16 anyway (networks.bf16_dot_general), so the numbers are the same, without
    re-reading and casting the float32 kernels at every step."""
    rssm = {name: dict(layer, kernel=jnp.asarray(layer["kernel"], jnp.bfloat16))
            if "kernel" in layer else layer
            for name, layer in params["params"]["rssm"].items()}
    return {**params, "params": {**params["params"], "rssm": rssm}}


# --------------------------------------------------------------------------- loss
@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Hashable copy of `config.loss` (so it can sit in a jitted pytree's static part)."""
    image_weight: float = 1.0
    beta: float = 0.1            # KL scale
    alpha: float = 0.8           # KL balance: weight of KL(sg(q) || p), the prior-training term
    free_nats: float = 0.0
    recon: str = "mse"
    object_weight: float = 20.0
    object_threshold: float = 0.05   # on the [0, 1] pixel scale
    background: str = "batch"        # 'batch' | 'sequence' median frame
    reward_weight: float = 1.0
    cont_weight: float = 1.0

    @classmethod
    def from_config(cls, loss_cfg):
        d = dict(loss_cfg)
        # Resolved by the training stage into image_weight (stages/train_wm.py).
        if d.pop("image_scale", "none") not in ("none",):
            raise DittoError("loss.image_scale must be resolved into loss.image_weight "
                             "before the model is built", field="loss.image_scale",
                             expected="none (train_wm resolves 'authors')")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise DittoError("unknown loss option(s)", field="loss." + sorted(unknown)[0],
                             expected=", ".join(sorted(names)), got=sorted(unknown))
        cfg = cls(**d)
        if cfg.recon not in RECON_KINDS:
            raise DittoError("unknown reconstruction loss", field="loss.recon",
                             expected=" | ".join(RECON_KINDS), got=cfg.recon)
        if cfg.background not in ("batch", "sequence"):
            raise DittoError("unknown background estimate", field="loss.background",
                             expected="batch | sequence", got=cfg.background)
        return cfg


def categorical_kl(logits_q, logits_p):
    """KL(q || p) of (..., S, C) categoricals, summed over S -> (...)."""
    logq = jax.nn.log_softmax(logits_q, -1)
    logp = jax.nn.log_softmax(logits_p, -1)
    return (jnp.exp(logq) * (logq - logp)).sum((-2, -1))


def categorical_entropy(logits):
    logp = jax.nn.log_softmax(logits, -1)
    return -(jnp.exp(logp) * logp).sum((-2, -1))


def kl_balanced(post_logits, prior_logits, alpha=0.8, free_nats=0.0):
    """Returns (kl_loss, kl_prior, kl_post); kl_prior = mean KL(sg(q)||p) trains the prior."""
    kl_prior = categorical_kl(sg(post_logits), prior_logits).mean()
    kl_post = categorical_kl(post_logits, sg(prior_logits)).mean()
    loss = alpha * jnp.maximum(kl_prior, free_nats) + (1 - alpha) * jnp.maximum(kl_post, free_nats)
    return loss, kl_prior, kl_post


def background_frame(obs, mode="batch", max_frames=64):
    """Per-pixel median frame of uint8 obs (B, T, H, W, C): (1|B, 1, H, W, C) float32.

    'batch': median over at most `max_frames` frames spread evenly over the B*T frames of
    the batch (a sort over all 2500 frames of a paper batch costs more than it is worth).
    'sequence': median over the T frames of each sequence.
    """
    x = obs.astype(jnp.float32)
    if mode == "batch":
        flat = x.reshape((-1,) + x.shape[2:])
        n = flat.shape[0]
        flat = flat[:: max(1, n // max_frames)][:max_frames]
        return jnp.median(flat, axis=0)[None, None]
    return jnp.median(x, axis=1, keepdims=True)


def object_mask(obs, is_first, cfg: LossConfig):
    """Boolean (B, T, H, W, C) mask of 'object' pixels for the weighted recon losses."""
    thr = cfg.object_threshold * 255.0
    x = obs.astype(jnp.float32)
    mask = jnp.zeros(obs.shape, bool)
    if cfg.recon in ("object_weighted", "object_motion"):
        mask |= jnp.abs(x - background_frame(obs, cfg.background)) > thr
    if cfg.recon in ("motion_weighted", "object_motion"):
        diff = jnp.abs(x[:, 1:] - x[:, :-1]) > thr
        diff = diff & ~is_first[:, 1:, None, None, None]
        mask |= jnp.concatenate([jnp.zeros_like(diff[:, :1]), diff], 1)
    return mask


def recon_weights(obs, is_first, cfg: LossConfig):
    """Per-pixel weights w (B, T, H, W, C) float32; all ones for recon='mse'."""
    if cfg.recon == "mse":
        return jnp.ones(obs.shape, jnp.float32)
    mask = object_mask(obs, is_first, cfg)
    return 1.0 + (cfg.object_weight - 1.0) * mask.astype(jnp.float32)


def check_batch(batch, obs_shape):
    obs = batch["observation"]
    assert obs.ndim == 5 and obs.shape[2:] == tuple(obs_shape), (
        f"observation must be (B, T) + {tuple(obs_shape)}, got {obs.shape}")
    assert obs.dtype == jnp.uint8, f"observation must be uint8, got {obs.dtype}"
    bt = obs.shape[:2]
    assert batch["action"].shape == bt, f"action {batch['action'].shape} != {bt}"
    assert batch["is_first"].shape == bt, f"is_first {batch['is_first'].shape} != {bt}"


def world_model_loss(params, model: WorldModel, batch, key, cfg: LossConfig):
    """Pure loss. Returns (loss, (metrics, outputs)); metrics are scalar float32."""
    check_batch(batch, model.obs_shape)
    obs, is_first = batch["observation"], batch["is_first"].astype(bool)
    prev_act = prev_actions_onehot(batch["action"], is_first, model.action_dim)
    out = model.apply(params, obs, prev_act, is_first, key)
    posts, priors = out["posts"], out["priors"]
    target = preprocess(obs)
    err = (out["recon"] - target) ** 2
    w = recon_weights(obs, is_first, cfg)
    image_loss = (w * err).sum((-3, -2, -1)).mean()
    kl_loss, kl_prior, kl_post = kl_balanced(posts["logits"], priors["logits"], cfg.alpha,
                                             cfg.free_nats)
    loss = cfg.image_weight * image_loss + cfg.beta * kl_loss
    # Diagnostics: plain per-pixel error overall and on pixels unlike the batch median frame.
    fg = (jnp.abs(obs.astype(jnp.float32) - background_frame(obs, "batch"))
          > cfg.object_threshold * 255.0).astype(jnp.float32)
    metrics = {
        "image_loss": image_loss,
        "recon_mse": err.mean(),
        "recon_mse_fg": (err * fg).sum() / jnp.maximum(fg.sum(), 1.0),
        "kl_loss": kl_loss,
        "kl_prior": kl_prior,
        "kl_post": kl_post,
        "prior_entropy": categorical_entropy(priors["logits"]).mean(),
        "post_entropy": categorical_entropy(posts["logits"]).mean(),
    }
    if model.reward_head:
        # The state at t has seen a_{t-1}; it predicts r_{t-1}, the reward that a_{t-1} earned.
        r = batch["reward"].astype(jnp.float32)
        target_r = jnp.concatenate([jnp.zeros_like(r[:, :1]), r[:, :-1]], 1)
        valid = 1.0 - is_first.astype(jnp.float32)
        valid = valid.at[:, 0].set(0.0)
        reward_loss = (valid * (out["reward"] - target_r) ** 2).sum() / jnp.maximum(valid.sum(), 1)
        loss = loss + cfg.reward_weight * reward_loss
        metrics["reward_loss"] = reward_loss
    if model.cont_head:
        cont = 1.0 - batch["is_terminal"].astype(jnp.float32)
        logit = out["cont_logit"]
        cont_loss = (jnp.maximum(logit, 0) - logit * cont + jnp.log1p(jnp.exp(-jnp.abs(logit))))
        cont_loss = cont_loss.mean()
        loss = loss + cfg.cont_weight * cont_loss
        metrics["cont_loss"] = cont_loss
    metrics["loss"] = loss
    metrics = {k: v.astype(jnp.float32) for k, v in metrics.items()}
    return loss, (metrics, out)
