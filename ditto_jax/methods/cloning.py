"""Behaviour cloning baselines (SPEC §4).

  dbc  BC on world-model latents: -log pi(a_E | s_E) - eta_bc H[pi], acting through the
       world model's posterior filter like DITTO.
  bc   BC from pixels on the last `bc_frame_stack` frames (the episode's first frame
       repeated at its start); ignores the world model except for the frame shape.
Both draw expert steps uniformly from every non-final step, on device.
"""
import jax.numpy as jnp
import numpy as np

from ditto_jax.agents import imitation
from ditto_jax.agents.acting import PixelBCAgent
from ditto_jax.agents.bc import PixelPolicy, make_bc, stack_frames
from ditto_jax.errors import DittoError
from ditto_jax.methods.base import Method, uniform_index
from ditto_jax.models.rssm import get_feat


class DBC(Method):
    name, label, order = "dbc", "D-BC", 30
    baseline = True

    def init(self, config, ctx, key):
        return imitation.init_actor_state(config, ctx.feat_dim, ctx.num_actions, key)

    def make_data(self, config, ctx, store, latents):
        return {"deter": latents["deter"], "stoch": latents["stoch"],
                "action": store.action.astype(np.int32),
                "valid": np.flatnonzero(~store.is_last).astype(np.int32)}

    def sample(self, config, data, key):
        index = uniform_index(key, data["valid"], int(config.batch_size))
        feat = get_feat({"deter": data["deter"][index], "stoch": data["stoch"][index]})
        return {"feat": feat, "action": data["action"][index]}

    def train_step(self, config, ctx):
        step = imitation.make_dbc_step(config, num_actions=ctx.num_actions)
        return lambda state, batch, rng, wm_params: step(state, batch, rng)

    def actor_apply(self, config, ctx):
        return imitation.policy_logits(config, ctx.num_actions)


class PixelBC(Method):
    name, label, order = "bc", "BC (pixels)", 40
    baseline = True
    uses_latents = False
    # XLA's CPU backend runs convolutions ~25x slower inside a while loop (measured:
    # 22.5 s against 0.87 s per update at the small preset), and vmap over per-seed conv
    # weights becomes a grouped convolution: one update per host call (still sampled on
    # device, and jitted with no loop around it), seeds one after another. (On CPU the
    # policy now trains with matmul convolutions, `bc.PixelPolicy.conv_impl`; the loop
    # measured no faster then: benchmarks/results/pixel_bc.json.)
    vmap_seeds = False
    device_loop = False

    def init(self, config, ctx, key):
        _, init, _ = make_bc(config, ctx.num_actions)
        return init(tuple(ctx.obs_shape), key)

    def make_data(self, config, ctx, store, latents):
        episode_start = store.starts[store.episode_of(np.arange(store.num_steps))]
        return {"observation": store.observation, "action": store.action.astype(np.int32),
                "episode_start": episode_start.astype(np.int32),
                "valid": np.flatnonzero(~store.is_last).astype(np.int32)}

    def sample(self, config, data, key):
        return self.batch_at(config, data,
                             uniform_index(key, data["valid"], int(config.bc_batch_size)))

    def batch_at(self, config, data, index):
        """The training batch of flat steps `index`: their stacked frames (as the agent
        stacks them when acting, `bc.stack_frames`) and the expert's actions."""
        k = int(config.bc_frame_stack)
        window = data["observation"][jnp.maximum(index[:, None] + jnp.arange(-k + 1, 1), 0)]
        frames = stack_frames(window, index - data["episode_start"][index])
        return {"frames": frames, "action": data["action"][index]}

    def train_step(self, config, ctx):
        _, _, step = make_bc(config, ctx.num_actions)
        return lambda state, batch, rng, wm_params: step(state, batch, rng)

    def actor_params(self, state):
        return state.params

    def make_agent(self, config, ctx, wm_state, state, *, greedy=False,
                   matmul_dtype="float32"):
        if matmul_dtype != "float32":
            raise DittoError("Pixel BC acts in float32 only (bfloat16 acting is the world "
                             "model's encoder and RSSM)", field="--act-matmul",
                             expected="float32 for a pixel BC policy", got=matmul_dtype)
        # Forward only: XLA's own convolution is the fast one there (at any batch).
        net = PixelPolicy(int(ctx.num_actions), config.bc_depth, conv_impl="lax")
        return PixelBCAgent(net, state.params, config.bc_frame_stack, greedy=greedy)
