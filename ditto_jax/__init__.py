"""DITTO in JAX: world model, imitation in imagination, baselines, evaluation.

Layout:
  envs/      Atari environments (gymnasium + ale-py) and evaluation protocols.
  experts/   scripted experts (RAM + emulator look-ahead) and policy factories.
  data/      RLDS episode recording, reading, in-memory store and samplers.
  models/    Flax networks (encoder, decoder, RSSM, heads).
  cli.py     the single `ditto` command line.
"""

__version__ = "0.1.0"

# The Python API (ditto_jax/api.py), imported on first use so that `import ditto_jax`
# (and `ditto --help`) never imports jax.
_API = ("load_policy", "make_env", "run", "Policy")


def __getattr__(name):
    if name in _API:
        from ditto_jax import api
        return getattr(api, name)
    raise AttributeError(f"module 'ditto_jax' has no attribute {name!r}")
