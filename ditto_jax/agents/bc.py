"""Pixel behaviour cloning (SPEC §4): CNN + MLP on stacked expert frames."""
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ditto_jax.core.devices import resolve_conv_impl
from ditto_jax.models.networks import Conv


def _same_pad(x, kernel=4, stride=2):
    """Zero padding that makes a VALID strided conv compute SAME's output (as nn.Conv)."""
    pads = []
    for n in x.shape[1:3]:
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads.append((total // 2, total - total // 2))
    return jnp.pad(x, ((0, 0), *pads, (0, 0)))


class PixelPolicy(nn.Module):
    """Four 4x4 stride-2 SAME convs (depth d, 2d, 4d, 8d) and a 2-layer MLP -> logits.

    conv_impl: "lax" (XLA's convolution) or "matmul" (the same convolution as im2col
    matmuls, `networks.conv2d`); "auto": matmul on CPU, where XLA's convolution backward
    pass is slow, lax elsewhere. The parameters (nn.Conv's layout) and the maths are the
    same for every choice.
    """
    num_actions: int
    depth: int = 16
    units: int = 256
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, frames):
        impl = resolve_conv_impl(self.conv_impl, jax.default_backend())
        x = frames.astype(jnp.float32) / 255.0 - 0.5      # (B, H, W, k)
        for i in range(4):
            x = nn.relu(Conv(self.depth * 2 ** i, 4, 2, "VALID", impl=impl)(_same_pad(x)))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.units)(x))
        x = nn.relu(nn.Dense(self.units)(x))
        return nn.Dense(self.num_actions)(x)


@flax.struct.dataclass
class BCState:
    step: jax.Array
    params: dict
    opt_state: optax.OptState


def make_bc(config, num_actions, conv_impl="auto"):
    net = PixelPolicy(num_actions, config.bc_depth, conv_impl=conv_impl)
    opt = optax.chain(optax.clip_by_global_norm(config.clip), optax.adam(config.lr,
                                                                         eps=config.eps))

    def init(obs_shape, key):
        h, w, _ = obs_shape
        params = net.init(key, jnp.zeros((1, h, w, config.bc_frame_stack), jnp.uint8))
        return BCState(jnp.zeros((), jnp.int32), params, opt.init(params))

    def train_step(state, batch, rng):
        del rng

        def loss_fn(params):
            logits = net.apply(params, batch["frames"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["action"])
            acc = (jnp.argmax(logits, -1) == batch["action"]).mean()
            return loss.mean(), {"bc_loss": loss.mean(), "accuracy": acc}

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        metrics["grad_norm"] = optax.global_norm(grads)
        return BCState(state.step + 1, optax.apply_updates(state.params, updates),
                       opt_state), metrics

    return net, init, train_step


def stack_frames(window, age):
    """The policy's input from the last k frames: the one frame stacking of pixel BC,
    used by training (`methods/cloning.PixelBC.sample`) and acting (`PixelBCAgent`).

    window: (B, k, H, W, C) the last k frames, oldest first, the current one last (frames
        before the episode's start may be anything); age: (B,) steps since the episode's
        first frame (0 at it). Frames before the episode's start are replaced by its first
        frame. Returns (B, H, W, k*C), channels ordered (frame, channel).
    """
    k = window.shape[1]
    first = k - 1 - jnp.minimum(age, k - 1)                               # (B,)
    src = jnp.maximum(jnp.arange(k)[None], first[:, None])                # (B, k)
    frames = jnp.take_along_axis(window, src.reshape(src.shape + (1,) * (window.ndim - 2)),
                                 axis=1)
    frames = jnp.moveaxis(frames, 1, -2)                                  # (B, H, W, k, C)
    return frames.reshape(frames.shape[:3] + (-1,))
