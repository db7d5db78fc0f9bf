"""Acting in the real game: the one `Agent` protocol and every agent that implements it.

An agent plays a batch of `num_envs` environments through two calls:

    carry = agent.init(num_envs)
    carry, actions = agent.act(carry, obs, is_first, key)

obs (N, H, W, C) uint8 frames, is_first (N,) bool (True at an episode's first frame,
which resets that env's memory), key a jax PRNG key for this step; actions (N,) int.
`carry` is whatever the agent remembers between steps (a recurrent state, a frame
stack, or None) and is owned by the caller: the loop (`evaluation.run_episodes`) hands
it back unchanged. Trained policies also set `last_probs`, pi(.|s) of the step just
taken, (N, A), for on-policy diagnostics. Agents that need the emulators themselves
(scripted experts) also have `bind(vector_env, seed)`, called once before `init`.
Agents whose carry is rows of a batch also have `select(carry, rows)`, the carry of
those rows only: the loop then stops computing envs whose episodes are over
(`evaluation.run_episodes`). Jitted agents also have `act_async`, `act` without waiting
for the device: (carry, actions, pi(.|s)) as arrays still being computed, so the loop
steps other envs' emulators meanwhile.

  WorldModelAgent  encoder -> RSSM posterior filter -> actor (DITTO, D-GAIL, D-BC)
  PixelBCAgent     CNN on the last k frames (pixel BC)
  RandomAgent      uniform random actions
  ScriptedAgent    a scripted expert reading the emulator (RAM reader or look-ahead)
  PythonPolicyAgent  any per-frame Python function

The learned agents run one jitted step per call (filter or frame stack, policy, action
sample) with the carry kept on the device and donated, so the only host transfers per
step are the frames in and the actions out. The same filter and the same frame stacking
build the training data (`stages/policy_data.encode_store`, `methods/cloning.PixelBC`);
tests/test_acting.py pins train against act.
"""
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from ditto_jax.agents.bc import stack_frames
from ditto_jax.models.networks import MATMUL_DTYPES
from ditto_jax.models.rssm import get_feat
from ditto_jax.models.world_model import WorldModel, bf16_rssm_kernels, out_in_rssm


@runtime_checkable
class Agent(Protocol):
    """What `evaluation.run_episodes` plays; see the module docstring."""

    def init(self, num_envs: int) -> Any:
        ...

    def act(self, carry: Any, obs: np.ndarray, is_first: np.ndarray,
            key: jax.Array) -> tuple[Any, np.ndarray]:
        ...


def select_rows(carry, rows):
    """The carry of batch rows `rows` (an int array), every leaf indexed on axis 0."""
    rows = jnp.asarray(rows)
    return jax.tree.map(lambda x: x[rows], carry)


def _sample(logits, key, greedy):
    return jnp.argmax(logits, -1) if greedy else jax.random.categorical(key, logits)


class WorldModelAgent:
    """Acts from pixels: encoder -> RSSM posterior filter -> actor, jitted and batched.

    carry: (posterior state, one-hot previous action). `filter` is the posterior step
    alone (the expert data is encoded with the same maths, `encode_store`).
    conv_impl: the encoder's convolutions. "acting" (default) picks per layer from the
    traced batch: on CPU the `strided` im2col matmul for the 3 layers with Cin > 1 from 4
    frames up, XLA's convolution otherwise (networks.acting_conv_impl); "lax", "matmul"
    and "strided" force one. The parameters are the same for all, and acting never
    differentiates through them.
    dense_layout: "out_in" (default) keeps transposed copies of the RSSM's Dense kernels,
    which XLA's CPU gemm multiplies faster at acting's small batches (the GRU layer in
    about a third of the time at 16 envs; benchmarks/gru_layout.py); "in_out" uses the
    trained layout as is.
    matmul_dtype: "float32" (default) or "bfloat16", an opt-in change of the maths: the
    RSSM's matmuls and the encoder's matmul-form convs round their operands to bfloat16
    and sum in float32 (networks.bf16_dot_general; the RSSM's kernels are kept cast once).
    Norms, gates, the actor and sampling stay float32. On a CPU with AMX-BF16 it takes
    0.68-0.70x the time at 8-16 envs and 1.25x at 1, where it plays the env as row 0 of
    a batch of two, XLA's one-row bf16 product being slower still
    (benchmarks/results/acting_precision.json). The encoder rounds only in the layers
    `conv_impl` runs as matmuls (on CPU from 4 envs up). `filter` (the expert data's
    encoding) is always float32.
    """

    def __init__(self, wm_state, actor_apply, actor_params, *, greedy=False,
                 conv_impl="acting", dense_layout="out_in", matmul_dtype="float32"):
        if matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(f"matmul_dtype must be one of {MATMUL_DTYPES}, "
                             f"got {matmul_dtype!r}")
        self.matmul_dtype = matmul_dtype
        self.model = wm_state.model.clone(conv_impl=conv_impl, dense_layout=dense_layout,
                                          matmul_dtype="float32")
        self.params, self.actor_params, self.actor_apply = (wm_state.params, actor_params,
                                                            actor_apply)
        if dense_layout == "out_in":  # the kernels stored transposed (networks.DenseOutIn)
            self.params = out_in_rssm(self.params)
        model, action_dim = self.model, self.model.action_dim

        def filter_(params, state, prev_action, obs, is_first, key):
            post, _ = model.apply(params, state, prev_action, obs, is_first, key,
                                  method=WorldModel.obs_step)
            return post

        def make_act(model, min_rows):
            def act(params, actor_params, carry, obs, is_first, key):
                rows = obs.shape[0]
                if rows < min_rows:   # pad with copies of row 0, then keep the real rows
                    carry, obs, is_first = jax.tree.map(
                        lambda x: jnp.concatenate([x] + [x[:1]] * (min_rows - rows)),
                        (carry, obs, is_first))
                state, prev_action = carry
                k_post, k_act = jax.random.split(key)
                post, _ = model.apply(params, state, prev_action, obs, is_first, k_post,
                                      method=WorldModel.obs_step)
                post = jax.tree.map(lambda x: x[:rows], post)
                logits = actor_apply(actor_params, get_feat(post))
                action = _sample(logits, k_act, greedy)
                return (post, jax.nn.one_hot(action, action_dim)), action, jax.nn.softmax(logits)
            return jax.jit(act, donate_argnums=2)

        self.filter = jax.jit(filter_)
        if matmul_dtype == "bfloat16":
            self._act = make_act(model.clone(matmul_dtype="bfloat16"), min_rows=2)
            self._act_params = bf16_rssm_kernels(self.params)
        else:
            self._act, self._act_params = make_act(model, min_rows=1), self.params
        self._init = jax.jit(
            lambda params, n: (model.apply(params, n, method=WorldModel.initial_state),
                               jnp.zeros((n, action_dim))), static_argnums=1)

    def init(self, num_envs):
        return self._init(self.params, int(num_envs))

    def act(self, carry, obs, is_first, key):
        carry, action, self.last_probs = self.act_async(carry, obs, is_first, key)
        return carry, np.asarray(action)

    def act_async(self, carry, obs, is_first, key):
        """`act` without waiting: (carry, actions, pi(.|s)) as device arrays still being
        computed, so the caller can step other envs meanwhile (`run_episodes`)."""
        return self._act(self._act_params, self.actor_params, carry, jnp.asarray(obs),
                         jnp.asarray(is_first), key)

    def select(self, carry, rows):
        return select_rows(carry, rows)


class PixelBCAgent:
    """Pixel BC acting on the last k frames (the episode's first frame repeated before it).

    carry: (the last k frames (N, k, H, W, C), steps since the episode's first frame (N,),
    -1 before any frame); the frames are stacked by `bc.stack_frames`, as in training.
    """

    def __init__(self, net, params, frame_stack, *, greedy=False):
        self.params, self.k = params, int(frame_stack)

        def act(params, carry, obs, is_first, key):
            window, age = carry
            window = jnp.concatenate([window[:, 1:], obs[:, None]], 1)
            age = jnp.where(is_first, 0, age + 1)
            logits = net.apply(params, stack_frames(window, age))
            return (window, age), _sample(logits, key, greedy), jax.nn.softmax(logits)

        self._act = jax.jit(act, donate_argnums=1)

    def init(self, num_envs):
        return None  # the frame shape comes with the first frames

    def act(self, carry, obs, is_first, key):
        carry, action, self.last_probs = self.act_async(carry, obs, is_first, key)
        return carry, np.asarray(action)

    def act_async(self, carry, obs, is_first, key):
        """`act` without waiting (see WorldModelAgent.act_async)."""
        obs = jnp.asarray(obs)
        if carry is None:
            carry = (jnp.zeros((obs.shape[0], self.k) + obs.shape[1:], obs.dtype),
                     jnp.full((obs.shape[0],), -1, jnp.int32))
        return self._act(self.params, carry, obs, jnp.asarray(is_first), key)

    def select(self, carry, rows):
        return None if carry is None else select_rows(carry, rows)


class PythonPolicyAgent:
    """Wraps a per-env Python policy `act_one(obs) -> action` (baselines, tests)."""

    def __init__(self, act_one):
        self.act_one = act_one

    def init(self, num_envs):
        return None

    def act(self, carry, obs, is_first, key):
        return carry, np.asarray([self.act_one(o) for o in obs])


class RandomAgent:
    """Uniform random actions: the random-play reference of every normalised score."""

    def __init__(self, num_actions, seed):
        self.num_actions, self.rng = num_actions, np.random.default_rng(seed)

    def init(self, num_envs):
        return None

    def act(self, carry, obs, is_first, key):
        return carry, self.rng.integers(self.num_actions, size=len(obs))


def sub_envs(env):
    """The single envs of a `sync` vector env (scripted experts read their emulators)."""
    envs = getattr(env.env, "envs", None)
    if env.backend != "sync" or envs is None:
        raise RuntimeError("scripted experts need the 'sync' vector-env backend")
    return envs


class ScriptedAgent:
    """A scripted expert (RAM reader or look-ahead) playing a `sync` vector env, so it is
    evaluated by the very loop, seeds and cap that evaluate every learner."""

    def __init__(self, spec, game, num_actions):
        self.spec, self.game, self.num_actions = spec, game, num_actions

    def bind(self, env, seed):
        # Imported on use: the experts need ale-py, which the learned agents (and the
        # accelerator host that benchmarks them, benchmarks/device.py) do without.
        from ditto_jax.experts.registry import make_policy
        self.envs = sub_envs(env)
        self.seed = int(seed)
        self.policies = [make_policy(self.spec, game=self.game, num_actions=self.num_actions,
                                     seed=self.seed + i) for i in range(len(self.envs))]
        self.episode = 0

    def init(self, num_envs):
        return None

    def act(self, carry, obs, is_first, key):
        actions = []
        for i, (policy, env) in enumerate(zip(self.policies, self.envs)):
            if is_first[i]:
                self.episode += 1
                policy.reset(env, self.seed + 7919 * self.episode + i)
            actions.append(int(policy.act(obs[i], env)))
        return carry, np.asarray(actions)
