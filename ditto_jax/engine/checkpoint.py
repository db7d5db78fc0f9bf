"""Orbax checkpoints shared by every stage.

A checkpoint step holds two items: `state` (the train-state pytree) and `meta`
(JSON: the config, a dataset fingerprint, shapes, action set). `meta` lets the
next stage rebuild the model without the original command line and lets a
resumed run refuse an incompatible config or a different dataset.
"""
import json
import os
import shutil
import sys
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp

from ditto_jax.core import io
from ditto_jax.engine.metrics import first_nonfinite
from ditto_jax.errors import DittoError, interruptions_held

CORRUPT_DIR = "checkpoints.corrupt"  # sibling of the checkpoint directory
# How long a checkpoint save may take to finish before the run stops with an error instead
# of waiting on Orbax's writer threads forever (a full or unresponsive filesystem).
SAVE_DEADLINE_S = float(os.environ.get("DITTO_CHECKPOINT_DEADLINE_S", 900))
_ABANDONED = []  # waits that passed their deadline (their threads may never end)


class Checkpointer:
    """A thin wrapper over `ocp.CheckpointManager` with async saves.

    Reading falls back past a corrupt newest step: `latest_step`, `read_meta`
    and `restore` warn in one line naming the unreadable step directory and use
    the previous readable step. A writable Checkpointer moves the corrupt step
    to ../checkpoints.corrupt/ (nothing is deleted) so training can save that
    step again. Saves refuse a state with NaN/inf values, and a full disk is a
    DittoError naming the directory. A save that does not finish within
    `SAVE_DEADLINE_S` (env DITTO_CHECKPOINT_DEADLINE_S) is a DittoError too, never an
    endless wait.
    """

    def __init__(self, directory, *, save_every=1000, keep=3, use_async=True, read_only=False):
        self.directory = os.path.abspath(directory)
        self.read_only = read_only
        self.restored_step = None  # the step the last `restore` actually read
        self._bad = {}    # step -> reason (None once reported), steps found unreadable
        self._hidden = set()  # steps a restore failed on, until an older one succeeds
        self._checked = set()
        self._stuck = False  # a save passed its deadline: Orbax's threads are abandoned
        self._failed = False  # a save failed and was reported (full disk)
        with io.disk_errors(self.directory, "opening checkpoints in"):
            if read_only:
                options = ocp.CheckpointManagerOptions(read_only=True, create=False,
                                                       save_interval_steps=0, max_to_keep=None)
            else:
                options = ocp.CheckpointManagerOptions(
                    save_interval_steps=max(int(save_every), 1), max_to_keep=keep,
                    enable_async_checkpointing=use_async)
            self.manager = ocp.CheckpointManager(self.directory, options=options,
                                                 item_names=("state", "meta"))

    # ---------------------------------------------------------------- steps
    def step_dir(self, step):
        return os.path.join(self.directory, str(int(step)))

    def _steps(self):
        """Steps on disk not known to be unreadable, newest first."""
        return [s for s in sorted(self.manager.all_steps(), reverse=True)
                if s not in self._bad and s not in self._hidden]

    def latest_step(self):
        """The newest step whose files look complete (cheap checks, no arrays read).

        None when there is no checkpoint; a DittoError when there are steps but
        none of them is readable.
        """
        for step in self._steps():
            if step not in self._checked:
                problem = _structural_problem(self.step_dir(step))
                if problem:
                    self._bad[step] = problem
                    continue
                self._checked.add(step)
            self._settle(step)
            return step
        if self._bad:
            self._none_readable()
        return None

    def _settle(self, good):
        """Warns about unreadable steps newer than `good`, moving them aside if writable."""
        for step in sorted(s for s in self._bad if s > good):
            reason = self._bad[step]
            if reason is None:
                continue  # already reported
            where = self.step_dir(step)
            moved = ""
            if not self.read_only and os.path.isdir(where) and jax.process_index() == 0:
                dest = _free_name(os.path.join(os.path.dirname(self.directory), CORRUPT_DIR,
                                               str(step)))
                with io.disk_errors(dest, "moving a corrupt checkpoint to"):
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    shutil.move(where, dest)
                moved = f"; moved to {dest}"
                self.manager.reload()
            io.warn(f"checkpoint {where} is unreadable ({reason}); using step {good} "
                    f"instead{moved}")
            self._bad[step] = None

    def _none_readable(self):
        steps = sorted(self._bad)
        reasons = "; ".join(f"step {s}: {self._bad[s]}" for s in steps if self._bad[s])
        raise DittoError(
            f"No readable checkpoint: every step here ({', '.join(map(str, steps))}) is "
            f"corrupt or incomplete ({reasons})", path=self.directory,
            expected="a checkpoint directory written by a finished ditto save; move it "
                     "away (or use a new --workdir) to start afresh")

    # ----------------------------------------------------------------- save
    def save(self, step, state, meta, *, force=False):
        bad = nonfinite_leaf(state)
        if bad is not None:
            self.wait()
            raise DittoError(
                f"Training diverged: the parameters after step {step} hold NaN/inf "
                f"values (first: {bad}), so they were not saved. {self.resume_advice(step)}",
                path=os.path.dirname(self.directory))
        self.wait()  # the previous async save, within the deadline (Orbax would wait too)
        if self._stuck or self._failed:
            raise DittoError("An earlier checkpoint save here failed; nothing more is saved",
                             path=self.directory)
        try:
            with io.disk_errors(self.step_dir(step), "saving checkpoint"), \
                    interruptions_held():
                return self.manager.save(
                    int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                       meta=ocp.args.JsonSave(meta)),
                    force=force)
        except DittoError:
            self._failed = True
            raise

    def resume_advice(self, step, *, poisoned_step=None, change="lower the learning rate"):
        """Where a diverged run can go from here, naming the last finite checkpoint."""
        self.wait()
        steps = [s for s in self._steps() if s < step]
        if not steps:
            return (f"There is no earlier checkpoint: {change} and start again (delete "
                    f"{self.directory} or use a new --workdir)")
        last = steps[0]
        if poisoned_step is not None and last == poisoned_step:
            earlier = [s for s in steps if s < last]
            alt = (f"move {self.step_dir(last)} aside to resume from step {earlier[0]}"
                   if earlier else f"delete {self.directory} or use a new --workdir")
            return (f"The last good checkpoint is step {last} as far as finite parameters "
                    f"go, but the non-finite metric was computed from exactly those "
                    f"parameters, so resuming from it would diverge again: {change} and {alt}")
        return (f"The last good checkpoint is step {last} (finite parameters); {change} "
                f"(or check the data), then re-run with the same --workdir to resume from "
                f"step {last}")

    # ----------------------------------------------------------------- read
    def read_meta(self, step=None):
        if step is not None:
            return self._read_named(step, None)[1]
        while True:
            step = self.latest_step()
            if step is None:
                raise DittoError("No checkpoint found", path=self.directory,
                                 expected="a workdir written by a ditto training command")
            try:
                return self._read(step, None)[1]
            except _Unreadable as e:
                self._bad[step] = e.reason

    def restore(self, abstract_state, step=None):
        """Restores (state, meta); `abstract_state` gives shapes, dtypes and shardings.

        Without `step`, the newest readable step; `self.restored_step` says which.
        """
        abstract = jax.tree.map(_with_sharding, abstract_state)
        if step is not None:
            state, meta = self._read_named(step, abstract)
            self.restored_step = int(step)
            return state, meta
        failures = {}
        while True:
            step = self.latest_step()
            if step is None:
                if failures:
                    # Every step failed to restore into this state: more likely a
                    # mismatch with the code/config than corruption; touch nothing.
                    self._hidden.clear()
                    newest = max(failures)
                    raise DittoError(
                        f"No checkpoint here could be restored; the newest, step {newest}, "
                        f"failed with: {failures[newest]}", path=self.directory,
                        expected="a checkpoint written by this version of ditto with a "
                                 "compatible config")
                raise DittoError("No checkpoint found", path=self.directory)
            try:
                state, meta = self._read_state(step, abstract)
            except _Unreadable as e:
                failures[step] = e.reason
                self._hidden.add(step)  # until an older step proves readable
                continue
            self._hidden.clear()
            self._bad.update(failures)
            self._settle(step)
            self.restored_step = int(step)
            return state, meta

    def _read_state(self, step, abstract):
        """`_read`, and for a state that knows an older on-disk layout (a `legacy_tree()`
        / `from_legacy(tree)` pair, e.g. the policy train states), that layout when the
        current one does not match: checkpoints of earlier versions stay readable."""
        try:
            return self._read(step, abstract)
        except _Unreadable as first:
            if not hasattr(abstract, "legacy_tree"):
                raise
            try:
                tree, meta = self._read(step, abstract.legacy_tree())
            except _Unreadable:
                raise first from None
            return abstract.from_legacy(tree), meta

    def _read_named(self, step, abstract):
        """`_read` of one requested step; a damaged step is a DittoError naming it."""
        try:
            return self._read_state(step, abstract)
        except _Unreadable as e:
            raise DittoError(f"Checkpoint step {step} is unreadable ({e.reason})",
                             path=self.step_dir(step)) from None

    def _read(self, step, abstract):
        items = {"meta": ocp.args.JsonRestore()}
        if abstract is not None:
            items["state"] = ocp.args.StandardRestore(abstract)
        _quiet_orphaned_reads()  # before: the first orphan can report before we catch
        try:
            restored = self.manager.restore(int(step), args=ocp.args.Composite(**items))
        except DittoError:
            raise
        except Exception as e:  # Orbax/TensorStore raise many types for damaged files
            _FAILED_RESTORES[0] += 1
            if _find_os_error(e) is not None and not isinstance(
                    _find_os_error(e), FileNotFoundError):
                raise io.os_error_to_ditto(e, self.step_dir(step), "reading") from None
            raise _Unreadable(_short(e)) from None
        return restored.get("state") if abstract is not None else None, restored["meta"]

    # ---------------------------------------------------------------- close
    def wait(self):
        """Waits for the pending async save; a writer-thread failure (full disk) or a save
        still running after `SAVE_DEADLINE_S` is a DittoError naming the directory."""
        if self._stuck or self._failed:
            return  # already reported; waiting again would block for good (or re-raise)
        try:
            with io.disk_errors(self.directory, "saving checkpoints in"):
                try:
                    _within_deadline(self.manager.wait_until_finished, self.directory)
                except _DeadlinePassed:
                    self._stuck = True
                    raise _deadline_error(self.directory) from None
        except DittoError:
            self._failed = True
            raise

    def close(self):
        try:
            self.wait()
        finally:
            if self._failed and not self._stuck:
                try:  # the failure was reported once; Orbax's close repeats it
                    self.manager.close()
                except Exception:  # noqa: BLE001
                    pass
            elif not self._stuck:  # Orbax's close would wait on the stuck save forever
                with io.disk_errors(self.directory, "saving checkpoints in"):
                    self.manager.close()


class _DeadlinePassed(Exception):
    pass


def _within_deadline(fn, directory):
    """Runs `fn` (a wait on Orbax's writer threads) for at most SAVE_DEADLINE_S seconds;
    re-raises what it raised (the writer thread's exception, e.g. ENOSPC)."""
    box = {}

    def target():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 (handed to the caller)
            box["error"] = e

    waiter = threading.Thread(target=target, name=f"ditto-save-wait {directory}",
                              daemon=True)
    waiter.start()
    waiter.join(SAVE_DEADLINE_S)
    if waiter.is_alive():
        _ABANDONED.append(waiter)
        raise _DeadlinePassed()
    if "error" in box:
        raise box["error"]


def _deadline_error(directory):
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        free = None
    why = (f"the disk is full ({free} bytes free)" if free is not None and free < 1 << 20
           else "the filesystem did not complete the writes")
    return DittoError(
        f"A checkpoint save in {directory} did not finish within {SAVE_DEADLINE_S:g} s "
        f"({why}); the checkpoints saved before it are kept. Free some space (or fix the "
        f"filesystem) and re-run to resume", path=directory,
        expected="a save that finishes within DITTO_CHECKPOINT_DEADLINE_S seconds")


def abandoned_saves():
    """Whether a save passed its deadline and its writer threads are still alive: the
    process must then exit without joining them (`os._exit`), or it would never end."""
    return any(t.is_alive() for t in _ABANDONED)


def _quiet_orphaned_reads():
    """Silences the reads a failed restore leaves behind.

    When one array of a restore fails, Orbax abandons the other arrays' reads. They then
    report through `sys.unraisablehook`, one traceback per array, long after the
    fallback to an older step has succeeded. Two forms have been seen:
    - `RuntimeError('Event loop is closed')`, when TensorStore completes a read after
      Orbax closed its event loop;
    - an exception raised while an Orbax read coroutine (`_read_array_index_and_device_put`)
      is closed by the garbage collector (`GeneratorExit` inside it).
    Only these are dropped, and the second only after a restore has failed in this
    process (`_orphaned` below); every other unraisable exception still reaches the
    previous hook.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_ditto_quiet", False):
        return

    def hook(unraisable):
        if not _orphaned(unraisable):
            previous(unraisable)

    hook._ditto_quiet = True
    sys.unraisablehook = hook


_FAILED_RESTORES = [0]  # restores that raised in this process (orphans exist only after one)


def _orphaned(unraisable):
    """Whether an unraisable exception is a read left behind by a failed restore."""
    exc = unraisable.exc_value
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        return True
    code = getattr(unraisable.object, "cr_code", None)  # a coroutine being finalised
    filename = getattr(code, "co_filename", "") or ""
    return bool(_FAILED_RESTORES[0]) and (
        f"{os.sep}orbax{os.sep}" in filename or f"{os.sep}tensorstore{os.sep}" in filename)


class _Unreadable(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _find_os_error(e):
    return io._find_os_error(e)


def _short(e):
    text = str(e).strip().splitlines()
    text = text[0] if text else ""
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _structural_problem(step_dir):
    """Why a step directory is obviously damaged (missing items, torn JSON), or None."""
    for item in ("state", "meta"):
        if not os.path.isdir(os.path.join(step_dir, item)):
            return f"the '{item}' item is missing"
    for rel in ("meta/metadata", "state/_METADATA"):
        path = os.path.join(step_dir, rel)
        if not os.path.exists(path):
            continue
        try:
            with open(path, "rb") as f:
                json.loads(f.read().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            return f"{rel} is not valid JSON ({type(e).__name__})"
    return None


def _free_name(path):
    if not os.path.exists(path):
        return path
    i = 1
    while os.path.exists(f"{path}.{i}"):
        i += 1
    return f"{path}.{i}"


def params_digest(tree):
    """A short SHA-256 of a parameter pytree's bytes (paths, dtypes, shapes and values).

    Two world models with the same architecture and step but other data or another seed
    digest differently; the same checkpoint restored twice digests alike.
    """
    import hashlib
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        x = np.ascontiguousarray(jax.device_get(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{x.dtype}|{x.shape}|".encode())
        h.update(x.tobytes())
    return h.hexdigest()[:16]


def nonfinite_leaf(tree):
    """The path of the first floating-point leaf holding NaN/inf, or None (one device sync)."""
    import jax.numpy as jnp
    leaves = [(jax.tree_util.keystr(p), x) for p, x in
              jax.tree_util.tree_flatten_with_path(tree)[0]
              if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
    if not leaves:
        return None
    flags = np.asarray(jax.device_get(_all_finite([x for _, x in leaves])))
    bad = np.flatnonzero(~flags)
    return leaves[bad[0]][0] if bad.size else None


@jax.jit
def _all_finite(xs):
    import jax.numpy as jnp
    return jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs])


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
    """Fails with a clear message when `saved[k] != current[k]` for any key.

    The message names every changed field with its saved and current value. A nested
    field the saved meta lacks was added by a newer version of the code (e.g. the world
    model's parameter digest): it is not compared, so older checkpoints still resume.
    """
    changed, diffs = [], []
    for key in keys:
        a, b = saved.get(key), current.get(key)
        if a is None or b is None:
            continue
        if _canon(a) != _canon(b):
            found = _differences(a, b, key)
            if found:
                changed.append(key)
                diffs += found
    if changed:
        listing = "; ".join(f"{f}: saved {x!r}, now {y!r}" for f, x, y in diffs[:8])
        if len(diffs) > 8:
            listing += f"; and {len(diffs) - 8} more"
        raise DittoError(
            f"The {what} in this workdir was written with a different "
            f"{', '.join(changed)} ({listing}); use a new --workdir or the original settings",
            path=path, field=", ".join(f for f, _, _ in diffs),
            expected=", ".join(f"{f}={x!r}" for f, x, _ in diffs[:8]),
            got=", ".join(f"{f}={y!r}" for f, _, y in diffs[:8]))


def _canon(x):
    return json.dumps(x, sort_keys=True, default=str)


def _differences(a, b, prefix):
    """(field, saved, current) for every leaf that differs."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                continue  # a field newer than the saved meta
            if k not in b:
                out.append((f"{prefix}.{k}", a.get(k, "<absent>"), b.get(k, "<absent>")))
            elif _canon(a[k]) != _canon(b[k]):
                out += _differences(a[k], b[k], f"{prefix}.{k}")
        return out
    return [(prefix, a, b)]


def fetch_checked_metrics(metrics, step, ckpt, workdir, *, change=None):
    """Host copy of a step's metrics; stops training on NaN/inf before anything is saved.

    The metrics of update `step` are computed from the parameters after update
    `step - 1`, so a non-finite value here also condemns a checkpoint of step
    `step - 1`; the message says so and names where to resume from instead.
    `change` is the advice on what to change (e.g. "lower config.optim.lr (now 0.001)").
    Saved states are themselves checked for NaN/inf by `Checkpointer.save`.
    """
    metrics = jax.device_get(metrics)
    bad = first_nonfinite(metrics)
    if bad is not None:
        ckpt.wait()
        advice = ckpt.resume_advice(step, poisoned_step=step - 1,
                                    change=change or "lower the learning rate")
        raise DittoError(
            f"Training diverged: metric '{bad}' is {_first_bad_value(metrics[bad])} "
            f"at step {step} (computed from the parameters after step {step - 1}). Nothing "
            f"from this step was saved. {advice}", path=workdir)
    return metrics


def _first_bad_value(value):
    value = np.asarray(value, dtype=np.float64).ravel()
    return float(value[~np.isfinite(value)][0])
