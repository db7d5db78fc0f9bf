"""Outputs of the world-model stage used downstream: restoring a trained world model for
the next stage, and the open-loop prediction strips."""
import os

import jax
import numpy as np

from ditto_jax.core import io, viz
from ditto_jax.core.devices import resolve_loaded_config
from ditto_jax.engine import checkpoint as ckpt_lib
from ditto_jax.errors import DittoError
from ditto_jax.stages.wm_data import _model_inputs


def load_world_model(workdir, step=None):
    """Restores a trained world model for the next stage: (train_state, meta).

    The config, observation shape and action count come from the checkpoint's
    metadata, so no command-line flags are needed to rebuild the model. `meta["step"]`
    is the step read and `meta["params_hash"]` a digest of the restored parameters
    (`checkpoint.params_digest`), which a policy records to pin its world model.
    """
    import ml_collections
    from ditto_jax import models as wm  # flax: imported on use
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise DittoError("No world-model checkpoint here", path=ckpt_dir,
                         expected="the --workdir of a finished `ditto train-wm` run")
    ckpt = ckpt_lib.Checkpointer(ckpt_dir, read_only=True)
    try:
        meta = ckpt.read_meta(step)
        if "method" in meta or "model" not in meta:
            raise DittoError("This is not a world-model workdir" + (
                f" (it holds a `{meta['method']}` policy)" if "method" in meta else ""),
                path=workdir, field="--wm",
                expected="the --workdir of `ditto train-wm` (or RUN/wm of `ditto run`)")
        config = ml_collections.ConfigDict(meta["config"])
        resolve_loaded_config(config)  # "auto" fields, for this backend
        abstract = jax.eval_shape(lambda: wm.init_train_state(
            config, tuple(meta["obs_shape"]), int(meta["num_actions"]), jax.random.key(0)))
        state, meta = ckpt.restore(abstract, step)
        meta = dict(meta, step=int(ckpt.restored_step),
                    params_hash=ckpt_lib.params_digest(state.params))
    finally:
        ckpt.close()
    return state, meta


def write_open_loop_strip(wm, state, store, config, workdir, step, *, context=5, horizon=10,
                          count=4, writer=None):
    """Observe `context` real frames, imagine `horizon` more; truth above, model below.

    Writes strips/open_loop_STEP.{png,gif} and, with a `writer`, the PNG to
    TensorBoard (and wandb) as the image `world_model/open_loop`.
    """
    length = context + horizon
    rng = np.random.default_rng([config.train.seed, 7, 0])  # the same windows every time
    batch = store.sample_windows(rng, count, length)
    truth, model = wm.open_loop(state, _model_inputs(batch), jax.random.key(step),
                                context=context, horizon=horizon)
    out = os.path.join(workdir, "strips")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"open_loop_{step:08d}")
    with io.disk_errors(path + ".png"):
        png = viz.save_prediction_strip(np.asarray(truth), np.asarray(model), path,
                                        context=context)
    if writer is not None:
        writer.add_image("world_model/open_loop", png, step)
    return path
