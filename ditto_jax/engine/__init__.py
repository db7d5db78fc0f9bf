"""The training engine: `fit`, one loop for every stage."""
from ditto_jax.engine.fit import Hook, Loop, Run, fit, next_stop, resume_step  # noqa: F401
