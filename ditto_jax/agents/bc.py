"""Pixel behaviour cloning (SPEC §4): CNN + MLP on stacked expert frames."""
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


class PixelPolicy(nn.Module):
    """Four 4x4 stride-2 convs (depth d, 2d, 4d, 8d) and a 2-layer MLP -> logits."""
    num_actions: int
    depth: int = 16
    units: int = 256

    @nn.compact
    def __call__(self, frames):
        x = frames.astype(jnp.float32) / 255.0 - 0.5      # (B, H, W, k)
        for i in range(4):
            x = nn.relu(nn.Conv(self.depth * 2 ** i, (4, 4), strides=(2, 2))(x))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.units)(x))
        x = nn.relu(nn.Dense(self.units)(x))
        return nn.Dense(self.num_actions)(x)


@flax.struct.dataclass
class BCState:
    step: jax.Array
    params: dict
    opt_state: optax.OptState


def make_bc(config, num_actions):
    net = PixelPolicy(num_actions, config.bc_depth)
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
