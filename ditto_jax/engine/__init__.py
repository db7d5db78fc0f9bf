"""The training engine: `fit`, one loop for every stage."""
from ditto_jax.engine.fit import (BEST_DIR, Hook, Loop, Run, Select, fit,  # noqa: F401
                                  next_stop, resume_step)
