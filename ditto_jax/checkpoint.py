"""Orbax checkpoints shared by every stage.

A checkpoint step holds two items: `state` (the train-state pytree) and `meta`
(JSON: the config, a dataset fingerprint, shapes, action set). `meta` lets the
next stage rebuild the model without the original command line and lets a
resumed run refuse an incompatible config or a different dataset.
"""
import json
import os

import jax
import orbax.checkpoint as ocp

from ditto_jax.errors import DittoError


class Checkpointer:
    """A thin wrapper over `ocp.CheckpointManager` with async saves."""

    def __init__(self, directory, *, save_every=1000, keep=3, use_async=True, read_only=False):
        self.directory = os.path.abspath(directory)
        if read_only:
            options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                                   save_interval_steps=0, max_to_keep=None)
        else:
            options = ocp.CheckpointManagerOptions(
                save_interval_steps=max(int(save_every), 1), max_to_keep=keep,
                enable_async_checkpointing=use_async)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "meta"))

    def latest_step(self):
        return self.manager.latest_step()

    def save(self, step, state, meta, *, force=False):
        return self.manager.save(
            int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)), force=force)

    def read_meta(self, step=None):
        step = self.latest_step() if step is None else step
        if step is None:
            raise DittoError("No checkpoint found", path=self.directory,
                             expected="a workdir written by a ditto training command")
        return self.manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]

    def restore(self, abstract_state, step=None):
        """Restores (state, meta); `abstract_state` gives shapes, dtypes and shardings."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise DittoError("No checkpoint found", path=self.directory)
        abstract = jax.tree.map(_with_sharding, abstract_state)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return restored["state"], restored["meta"]

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def _with_sharding(x):
    """Restore target for one leaf, on this process's devices.

    A leaf without a sharding (e.g. from `jax.eval_shape`) is placed on the first
    local device, so a checkpoint written on 8 devices restores on 1 and vice versa.
    """
    sharding = getattr(x, "sharding", None)
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def check_compatible(saved, current, keys, *, path, what="checkpoint"):
    """Fails with a clear message when `saved[k] != current[k]` for any key."""
    for key in keys:
        a, b = saved.get(key), current.get(key)
        if a is None or b is None:
            continue
        if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            detail = _first_difference(a, b, key)
            raise DittoError(
                f"The {what} in this workdir was written with a different {key}; use a new "
                f"--workdir or the original settings", path=path, field=detail[0],
                expected=detail[1], got=detail[2])


def _first_difference(a, b, prefix):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b or json.dumps(a[k], sort_keys=True) != json.dumps(
                    b[k], sort_keys=True):
                if k in a and k in b:
                    return _first_difference(a[k], b[k], f"{prefix}.{k}")
                return (f"{prefix}.{k}", a.get(k, "<absent>"), b.get(k, "<absent>"))
    return (prefix, a, b)


def fetch_checked_metrics(metrics, step, ckpt, workdir):
    """Host copy of a step's metrics; stops training on NaN/inf before anything is saved.

    Called at every step that logs or saves, so a checkpoint only ever holds a state
    whose metrics were finite.
    """
    from ditto_jax.metrics import first_nonfinite
    metrics = jax.device_get(metrics)
    bad = first_nonfinite(metrics)
    if bad is not None:
        ckpt.wait()
        raise DittoError(
            f"Training diverged: metric '{bad}' is {float(metrics[bad])} at step {step}. "
            f"Nothing from this step was saved; the last good checkpoint is step "
            f"{ckpt.latest_step()}. Lower the learning rate or check the data, then re-run "
            f"to resume", path=workdir)
    return metrics
