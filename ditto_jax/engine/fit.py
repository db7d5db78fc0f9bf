"""One training loop for every stage: `fit`.

A stage gives `fit` an initial train state and `advance(state, start, n) -> (state,
metrics)`, which performs updates start..start+n-1 (absolute update indices) and returns the
metrics of the last one. `fit` owns everything else:

  workdirs   a lock per workdir, `config.json` (meta + provenance), metrics.jsonl and
             TensorBoard (MetricWriter), Orbax checkpoints (Checkpointer);
  resume     the compatibility check against the saved meta, restore of the newest readable
             checkpoint, truncation of metrics logged after it;
  the loop   calls `advance` in chunks that end exactly at the next log / save / hook step,
             so a stage that runs its chunk as one device program (the policy stage:
             `lax.fori_loop` over sampling + update) touches the host only there;
  checks     the NaN/inf stop (before anything from that step is saved), progress with an
             ETA, updates/s;
  selection  optionally (`select=Select(metric)`), the checkpoint with the best logged value
             of an offline validation metric, kept in WORKDIR/checkpoints_best next to the
             final one (model selection without real-environment returns).

Several runs can share one state (`stacked=True`: every leaf has a leading run axis, as
when seeds are vmapped): each run keeps its own workdir, checkpoints, metrics and meta;
`fit` slices the state and the metrics per run.

Determinism: a stage's update `s` must depend only on (state, s), e.g. keys fold_in(key, s)
and batches seeded by s; then chunking does not change the result, and a run resumed from
a checkpoint at step S reproduces an uninterrupted one.
"""
import dataclasses
import os
import shutil
import time
from typing import Any, Callable, Optional

import jax
import numpy as np

from ditto_jax.core import io
from ditto_jax.engine import checkpoint as ckpt_lib
from ditto_jax.engine.metrics import MetricWriter
from ditto_jax.errors import DittoError


@dataclasses.dataclass
class Run:
    """One output directory of a `fit` call."""
    workdir: str
    meta: dict                       # saved with every checkpoint; checked on resume
    provenance: Optional[dict] = None
    saved_meta: Optional[dict] = None  # the meta of the checkpoint resumed from
    extra: dict = dataclasses.field(default_factory=dict)  # merged into meta at each save
    last_metrics: dict = dataclasses.field(default_factory=dict)
    writer: Any = None
    ckpt: Any = None
    best: Any = None                 # Checkpointer of the selected checkpoint (`select`)
    best_value: Optional[float] = None


CONFIG_JSON = "config.json"  # a run's meta + provenance, rewritten at every (re)start


def rebuild_config_json(workdir):
    """A deleted `config.json` of a trained run, rebuilt from its newest checkpoint's meta
    (saved with every checkpoint) and its `provenance.json`; returns it. None, writing
    nothing, when config.json exists or there is no checkpoint. This is what makes the
    advice for a torn config.json ("delete it to have ditto rebuild it") true for a
    finished run, which never restarts training."""
    path = os.path.join(workdir, CONFIG_JSON)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if os.path.exists(path) or not os.path.isdir(ckpt_dir):
        return None
    ckpt = ckpt_lib.Checkpointer(ckpt_dir, read_only=True)
    try:
        step = ckpt.latest_step()
        if step is None:
            return None
        meta = dict(ckpt.read_meta())
    finally:
        ckpt.close()
    meta.pop("evals", None)  # `Run.extra` of the policy stage, not part of config.json
    provenance = io.read_json(os.path.join(workdir, "provenance.json"), what="provenance",
                              default=None, tolerate=True)
    data = dict(meta, provenance=provenance)
    io.write_json_atomic(path, data, default=str)
    io.warn(f"rebuilt {path} from the checkpoint of step {step}")
    return data


@dataclasses.dataclass
class Hook:
    """Called on the host every `every` updates (and at the last, if `at_end`) for each
    run: `fn(step, state_of_this_run, run_index) -> metrics dict or None` (written if
    given). `every` <= 0 disables the hook."""
    every: int
    fn: Callable
    at_end: bool = True


@dataclasses.dataclass
class Select:
    """Keep, per run, the checkpoint at the logged step with the best value of `metric`
    (an `on_log` or step metric; `mode` "max" or "min") in WORKDIR/checkpoints_best. Its
    meta gains `selected: {step, metric, mode, value}`. Ties keep the earlier step."""
    metric: str
    mode: str = "max"

    def better(self, value, best):
        if value is None or not np.isfinite(value):
            return False
        if best is None:
            return True
        return value > best if self.mode == "max" else value < best


BEST_DIR = "checkpoints_best"


@dataclasses.dataclass
class Loop:
    total: int
    log_every: int
    save_every: int
    keep: int = 3
    time_limit_s: float = 0.0  # > 0: stop at the first log/save/hook step after this many
                               # seconds of the loop (clock-based budgets), saving there


def resume_step(workdir):
    """The newest readable checkpoint step of a workdir (None: none yet)."""
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        return None
    ckpt = ckpt_lib.Checkpointer(ckpt_dir, read_only=True)
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


def next_stop(done, loop, hooks):
    """The first update count after `done` at which the host must look: a log, save or
    hook step, or the end."""
    stops = [loop.total]
    for every in [loop.log_every, loop.save_every] + [h.every for h in hooks]:
        if every and every > 0:
            stops.append((done // every + 1) * every)
    return min(stops)


def fit(*, runs, state, advance, loop, compat_keys, what, hooks=(), stacked=False,
        on_log=None, desc="train", progress=True, log=print, is_main=True, change=None,
        tracking=None, run_config=None, postfix=(), select=None):
    """Trains `state` to `loop.total` updates; returns the final state.

    `runs`: list of Run (one unless `stacked`). `compat_keys`: meta keys a checkpoint must
    agree on to be resumed. `change`: advice in the NaN message. `postfix`: metric names
    shown on the progress bar. `on_log(step, state_of_run, run_index, metrics) -> dict`
    adds host-computed metrics to each logged row (e.g. held-out diagnostics). `select`:
    a `Select`, to also keep the best checkpoint by that logged metric.
    """
    hooks = [h for h in hooks if h.every and h.every > 0]
    locks, opened = [], []
    try:
        for run in runs:
            with io.disk_errors(run.workdir, "creating"):
                os.makedirs(run.workdir, exist_ok=True)
            if is_main:
                locks.append(io.lock_workdir(run.workdir, f"ditto {desc}"))
        for run in runs:
            run.ckpt = ckpt_lib.Checkpointer(os.path.join(run.workdir, "checkpoints"),
                                             save_every=loop.save_every, keep=loop.keep)
            opened.append(run.ckpt)
            run.writer = MetricWriter(run.workdir, enabled=is_main, tracking=tracking,
                                      run_config=run_config)
        state, start = _resume(runs, state, compat_keys, what, stacked, log)
        if start > loop.total:
            # Returning the longer training as if it had `loop.total` updates would
            # relabel it; there is no shorter checkpoint to fall back to in general.
            raise DittoError(
                f"This workdir's {what} already holds {start} updates, more than the "
                f"{loop.total} asked for", path=runs[0].ckpt.directory, field="steps",
                expected=f"at least {start} (or a new --workdir to train {loop.total})",
                got=loop.total)
        if select is not None:
            for run in runs:
                run.best = ckpt_lib.Checkpointer(os.path.join(run.workdir, BEST_DIR),
                                                 save_every=1, keep=1, use_async=False)
                opened.append(run.best)
                run.best_value = _best_so_far(run.best, start)
        for run in runs:
            run.writer.truncate_after(start)  # lines logged after the checkpoint go
            if is_main:
                io.write_json_atomic(os.path.join(run.workdir, CONFIG_JSON),
                                     dict(run.meta, provenance=run.provenance), default=str)
                if run.provenance is not None:
                    run.writer.add_provenance(run.provenance, start)
        return _loop(runs, state, start, advance, loop, hooks, on_log, stacked, desc,
                     progress, is_main, change, postfix, select, log)
    finally:
        for run in runs:
            if run.writer is not None:
                run.writer.close()
        try:
            for ckpt in opened:
                ckpt.close()
        finally:
            for lock in locks:
                lock.release()


def _slice(tree, i, stacked):
    return jax.tree.map(lambda x: x[i], tree) if stacked else tree


def _resume(runs, state, compat_keys, what, stacked, log):
    steps = [run.ckpt.latest_step() for run in runs]
    if all(s is None for s in steps):
        return state, 0
    if len(set(steps)) > 1:
        raise DittoError("Runs trained together must resume from the same step",
                         path=", ".join(r.workdir for r in runs),
                         expected="one checkpoint step for all", got=steps)
    restored = []
    for i, run in enumerate(runs):
        saved = run.ckpt.read_meta()
        ckpt_lib.check_compatible(saved, run.meta, compat_keys, path=run.ckpt.directory,
                                  what=what)
        one, run.saved_meta = run.ckpt.restore(_slice(state, i, stacked))
        restored.append(one)
    start = int(runs[0].ckpt.restored_step)
    if stacked:
        state = jax.tree.map(lambda *xs: np.stack(xs), *restored)
        state = jax.device_put(state)
    else:
        state = restored[0]
    log(f"resumed from step {start}")
    return state, start


def _best_so_far(best, start):
    """The selected value so far. A best step newer than the step resumed from belongs to
    the abandoned part of the run: it is removed (the replay will find it again)."""
    step = best.latest_step()
    if step is not None and step > start:
        best.wait()
        shutil.rmtree(best.step_dir(step), ignore_errors=True)
        best.manager.reload()
        step = best.latest_step()
    if step is None:
        return None
    return (best.read_meta().get("selected") or {}).get("value")


def _loop(runs, state, start, advance, loop, hooks, on_log, stacked, desc, progress,
          is_main, change, postfix, select=None, log=print):
    from tqdm import tqdm
    bar = tqdm(total=loop.total, initial=start, unit="step", desc=desc, dynamic_ncols=True,
               disable=not (progress and is_main))
    last_log, last_log_step = time.perf_counter(), start
    deadline = last_log + loop.time_limit_s if loop.time_limit_s and loop.time_limit_s > 0 \
        else None
    done = start
    try:
        while done < loop.total:
            stop = next_stop(done, loop, hooks)
            state, metrics = advance(state, done, stop - done)
            bar.update(stop - done)
            done = stop
            timed_out = deadline is not None and time.perf_counter() >= deadline
            end = done == loop.total or timed_out
            if timed_out and done < loop.total:
                log(f"time limit {loop.time_limit_s:.0f} s reached at step {done} of "
                    f"{loop.total}: saving and stopping")
            want_log = end or done % loop.log_every == 0
            want_save = end or runs[0].ckpt.manager.should_save(done)
            if want_log or want_save:
                now = time.perf_counter()
                rate = (done - last_log_step) / max(now - last_log, 1e-9)
                for i, run in enumerate(runs):
                    m = ckpt_lib.fetch_checked_metrics(_slice(metrics, i, stacked), done,
                                                       run.ckpt, run.workdir, change=change)
                    if want_log:
                        m = dict(m)
                        if on_log is not None:
                            m.update(on_log(done, _slice(state, i, stacked), i, m) or {})
                        m["steps_per_s"] = rate
                        run.last_metrics = m
                        run.writer.write(done, m)
                        value = m.get(select.metric) if select is not None else None
                        if select is not None and select.better(value, run.best_value):
                            run.best_value = float(value)
                            chosen = dict(step=done, metric=select.metric,
                                          mode=select.mode, value=float(value))
                            run.best.save(done, _slice(state, i, stacked),
                                          dict(run.meta, **run.extra, selected=chosen),
                                          force=True)
                if want_log:
                    last_log, last_log_step = now, done
                    shown = runs[0].last_metrics
                    bar.set_postfix({k: f"{float(shown[k]):.3f}" for k in postfix
                                     if k in shown})
            for hook in hooks:
                if done % hook.every == 0 or (end and hook.at_end):
                    for i, run in enumerate(runs):
                        out = hook.fn(done, _slice(state, i, stacked), i)
                        if out:
                            run.writer.write(done, out)
            if want_save:
                for i, run in enumerate(runs):
                    meta = dict(run.meta, **run.extra)
                    run.ckpt.save(done, _slice(state, i, stacked), meta, force=end)
            if timed_out:
                break
    finally:
        bar.close()
    return state
