"""The Python API: load a trained policy and act, or run the whole pipeline.

    from ditto_jax import load_policy, make_env
    policy = load_policy("runs/pong_demo/policies/ditto")
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(policy.act(obs))

A `Policy` holds its own recurrent state (the world model's posterior filter and the
previous action) and its own PRNG key; `reset()` starts a new episode. `act` takes one
frame: the environment's (H, W, 1) uint8 observation, or a raw ALE screen (210, 160[, 3]),
which is converted to grayscale and resized exactly as the environments do (OpenCV
INTER_AREA). `run(config, workdir)` is `ditto run` from Python.
"""
import numpy as np

from ditto_jax.core.args import quiet_logs
from ditto_jax.core.config import apply_overrides, load_config
from ditto_jax.errors import DittoError
from ditto_jax.pipeline.plan import STAGES
from ditto_jax.pipeline.run import DEFAULT_CONFIG, run_pipeline

# As `ditto` does for its commands, before anything below imports TensorFlow, Orbax or
# absl: TF's C++ start-up notes and absl's WARNING lines (Orbax, TFDS) stay quiet, errors
# still print. An explicit TF_CPP_MIN_LOG_LEVEL in the environment is kept.
quiet_logs()


class Policy:
    """A trained imitation policy acting on single frames (one environment)."""

    def __init__(self, agent, config, meta, *, workdir, seed=0, greedy=False):
        import jax
        self._agent, self.config, self.meta = agent, config, meta
        self.workdir, self.greedy = workdir, greedy
        self.method = meta["method"]
        self.game = meta["game"]
        self.obs_shape = tuple(meta["obs_shape"])
        self.action_meanings = list(meta.get("action_meanings") or [])
        self._key = jax.random.key(seed)
        self.reset()

    def reset(self):
        """Forget the episode: the next `act` starts a new one."""
        self._carry = self._agent.init(1)
        self._first = True

    def _frame(self, frame):
        frame = np.asarray(frame)
        if frame.shape == self.obs_shape:
            return frame.astype(np.uint8)
        if frame.ndim == 3 and frame.shape[-1] == 3:      # RGB screen
            import cv2
            frame = cv2.cvtColor(frame.astype(np.uint8), cv2.COLOR_RGB2GRAY)
        if frame.ndim == 3 and frame.shape[-1] == 1:
            frame = frame[..., 0]
        if frame.ndim != 2:
            raise DittoError("A frame is (H, W), (H, W, 1) or (H, W, 3)", field="frame",
                             expected=f"e.g. {self.obs_shape}", got=tuple(frame.shape))
        import cv2
        h, w = self.obs_shape[:2]
        frame = cv2.resize(frame.astype(np.uint8), (w, h), interpolation=cv2.INTER_AREA)
        return frame[..., None]

    def act(self, frame):
        """The action (an index into `action_meanings`) for this frame."""
        import jax
        self._key, key = jax.random.split(self._key)
        obs = self._frame(frame)[None]
        self._carry, action = self._agent.act(self._carry, obs, np.array([self._first]), key)
        self._first = False
        return int(np.asarray(action)[0])

    def make_env(self, protocol="ditto", **kwargs):
        """The environment this policy was trained for (same frames and action set)."""
        return make_env(self.game, protocol, size=self.obs_shape[:2], **kwargs)

    def __repr__(self):
        return (f"Policy({self.method}, game={self.game}, "
                f"{'greedy' if self.greedy else 'sampled'} actions, from {self.workdir})")


def load_policy(workdir, *, greedy=False, wm=None, seed=0):
    """A trained policy from a `ditto train-policy` workdir (e.g. RUN/policies/ditto).

    greedy: argmax actions instead of sampling. wm: the world model's workdir if it moved
    since training (its recorded step must still be there). seed: the policy's key.
    """
    # jax: imported on use, never by --help
    from ditto_jax.stages.policy_agents import load_policy as _load
    agent, config, meta = _load(workdir, greedy=greedy, wm=wm)
    return Policy(agent, config, meta, workdir=workdir, seed=seed, greedy=greedy)


def make_env(game, protocol="ditto", **kwargs):
    """A preprocessed Atari env (ditto_jax.envs.atari.make_env)."""
    # gymnasium and ale-py: imported on use, never by --help
    from ditto_jax.envs.atari import make_env as _make_env
    return _make_env(game, protocol, **kwargs)


def run(config, workdir, *, overrides=(), stages=None, progress=True, log=print):
    """`ditto run` from Python: `config` is a pipeline ConfigDict or a preset name
    ("smoke", "demo", "paper"); `overrides` are "KEY=VALUE" strings, as
    `--config.KEY=VALUE` on the command line (e.g. ["policy.horizon=9"]). Returns
    results.json's content."""
    if isinstance(config, str):
        config = load_config(f"{DEFAULT_CONFIG}:{config}")
    config = apply_overrides(config, list(overrides))
    return run_pipeline(config, workdir, stages=stages or STAGES, progress=progress, log=log)
