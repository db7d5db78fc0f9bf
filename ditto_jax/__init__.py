"""DITTO in JAX: world model, imitation in imagination, baselines, evaluation.

Layout (a module imports only its own layer and the ones below; README "Layout";
tests/test_layers.py checks it):
  errors.py   DittoError.
  core/       config loading, argparse types, resources, io, device mesh and defaults,
              provenance, media.
  envs/, data/, models/, engine/
              Atari environments; RLDS episodes and the episode store; the Flax world
              model; `fit`, checkpoints and metrics.
  experts/    scripted experts and the policy registry (`registry.py`).
  agents/     imitation maths: rewards, returns, actor-critic, D-GAIL, D-BC, pixel BC.
  methods/    the imitation methods behind one registry.
  stages/     one `ditto` command each: record, info, train-wm, train-policy, eval.
  report/     `ditto report`, and one run's results.json read back.
  pipeline/   `ditto run`: the run plan, the stages in order, results.
  sweep/      `ditto sweep`: grids of `ditto run` jobs, SLURM, estimates.
  api.py      the Python API (`load_policy`, `make_env`, `run`, `Policy`).
  cli.py      the single `ditto` command line.
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
