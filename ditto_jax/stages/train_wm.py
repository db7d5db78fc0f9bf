"""Stage 1: train the world model. `ditto train-wm`.

Device plumbing only; the maths lives in `ditto_jax.models`. The loop is
deterministic given (config, data, step): the batch for update `s` is sampled
with seed (seed, process, s) and the step key is fold_in(key, s), so a run
resumed from a checkpoint at step S reproduces an uninterrupted run exactly.
"""
import hashlib
import json
import os
import time

import jax
import numpy as np

from ditto_jax import checkpoint as ckpt_lib
from ditto_jax import io
from ditto_jax import parallel
from ditto_jax import resources
from ditto_jax.errors import DittoError
from ditto_jax.metrics import MetricWriter

ACCEPTS_EXTRA_ARGS = True  # --config.KEY=VALUE overrides
DEFAULT_CONFIG = resources.config_path("wm.py") + ":small"  # any cwd, any install

# Parts of the config that fix the parameter shapes and the objective; a
# checkpoint written with different values cannot be resumed. "train" is the
# train group without the loop settings below (batch size, sequence length, seed, ...).
_COMPAT_KEYS = ("model", "dataset", "obs_shape", "num_actions", "loss", "optim", "train")
# Loop settings, free to change when resuming.
_LOOP_KEYS = ("steps", "log_every", "eval_every", "save_every", "strip_every",
              "keep_checkpoints")
# Also free: the activation dtype (parameters stay float32, so the checkpoint fits either).
_FREE_TRAIN_KEYS = _LOOP_KEYS + ("compute_dtype",)


def add_arguments(p):
    from ditto_jax.cli import non_negative_int, positive_int
    p.add_argument("--config", default=DEFAULT_CONFIG, type=resources.resolve_config_spec,
                   help="config file and preset, e.g. experiments/configs/wm.py:paper; "
                        "override fields with --config.KEY=VALUE")
    p.add_argument("--data", required=True,
                   help="RLDS dataset directory or TFDS name; several, comma-separated, "
                        "are trained on together (e.g. expert + noisy + random play)")
    p.add_argument("--data-dir", default=None, help="TFDS data directory for a TFDS name")
    p.add_argument("--split", default=None,
                   help="TFDS split expression, e.g. train, 'train[:10]', 'train[10%%:]', "
                        "'a+b', or checkpoint_40:checkpoint_49 (default: train, else every "
                        "split)")
    p.add_argument("--select", default=None,
                   help="episode selection: first:N, top:N, checkpoints:A-B (comma-separated)")
    p.add_argument("--workdir", required=True,
                   help="output folder: checkpoints, metrics, config")
    p.add_argument("--steps", type=positive_int, default=None, help="total updates (overrides config)")
    p.add_argument("--coordinator", default=None,
                   help="host:port of process 0 for multi-host runs (jax.distributed)")
    p.add_argument("--num-processes", type=positive_int, default=None,
                   help="number of hosts of a multi-host run")
    p.add_argument("--process-id", type=non_negative_int, default=None,
                   help="this host's index in a multi-host run, 0..num-processes-1")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def data_sources(data):
    """`data` as a list of sources: a list, or one string with comma-separated sources."""
    sources = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    sources = [str(s).strip() for item in sources for s in str(item).split(",")]
    sources = [s for s in sources if s]
    if not sources:
        raise DittoError("No training data given", field="--data",
                         expected="an RLDS dataset directory or TFDS name")
    return sources


def dataset_fingerprint(source, split, selection):
    """Identifies the training data: the TFDS metadata (shard sizes, bytes) + selection."""
    sources = data_sources(source)
    if len(sources) > 1:
        return hashlib.sha256("|".join(dataset_fingerprint(s, split, selection)
                                       for s in sources).encode()).hexdigest()[:16]
    source = sources[0]
    h = hashlib.sha256()
    info = os.path.join(source, "dataset_info.json") if os.path.isdir(source) else None
    if info and os.path.exists(info):
        content = io.read_json(info, what="dataset info")
        # Paths and timestamps vary between copies of the same data; shard sizes don't.
        h.update(json.dumps(content.get("splits"), sort_keys=True).encode())
        h.update(json.dumps(content.get("name")).encode())
    else:
        h.update(str(source).encode())
    h.update(json.dumps([split, selection], sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _model_meta(config, obs_shape, num_actions, action_meanings, fingerprint, game):
    return {
        "config": config.to_dict(),
        "model": config.model.to_dict(),
        "loss": config.loss.to_dict() if "loss" in config else None,
        "optim": config.optim.to_dict() if "optim" in config else None,
        "train": {k: v for k, v in config.train.to_dict().items() if k not in _FREE_TRAIN_KEYS},
        "dataset": fingerprint,
        "obs_shape": list(obs_shape),
        "num_actions": int(num_actions),
        "action_meanings": list(action_meanings or []),
        "game": game,
    }


def load_training_data(config, data, *, data_dir=None, split=None, selection=None,
                       process_index=0, process_count=1, progress=True):
    """Episodes for this host, split into train/validation stores."""
    from ditto_jax.data.rlds import load_episodes, split_episodes
    from ditto_jax.data.store import EpisodeStore
    size = tuple(config.data.size) if "data" in config and config.data.get("size") else None
    episodes = []
    for source in data_sources(data):
        episodes += load_episodes(source, data_dir=data_dir, split=split, resize=size,
                                  selection=selection,
                                  process_index=process_index, process_count=process_count,
                                  progress=progress)
    val_count = int(config.train.val_episodes)
    if val_count >= len(episodes):
        val_count = 0  # too few episodes to hold any out; validation is skipped
    if val_count:
        train_eps, val_eps = split_episodes(episodes, val_count=val_count,
                                            seed=config.train.seed)
    else:
        train_eps, val_eps = episodes, []
    if episodes:
        # The encoder halves the frame 4 times and the decoder doubles it back.
        h, w = episodes[0].observation.shape[1:3]
        if h % 16 or w % 16:
            raise DittoError("The world model cannot take frames of this size",
                             path=", ".join(data_sources(data)), field="steps/observation",
                             expected="height and width divisible by 16, or resize with "
                                      "--config.data.size=64,64",
                             got=tuple(episodes[0].observation.shape[1:]))
    train = EpisodeStore.from_episodes(train_eps)
    val = EpisodeStore.from_episodes(val_eps) if val_eps else None
    meta = episodes[0].metadata if episodes else {}
    return train, val, meta


# The authors' per-game pixel mean/std (their configs; SPEC §2), in 0..255 units.
AUTHORS_PIXEL_STATS = {"pong": (106, 47), "breakout": (33, 55), "beamrider": (17, 36),
                       "mspacman": (59, 51), "qbert": (34, 52), "spaceinvaders": (10, 25)}


def _apply_image_scale(config, game, store, log):
    """`loss.image_scale=authors`: the authors' image loss, 2.0 x 0.5 x SSE on per-game
    standardised pixels (x - mu) / sigma, expressed in our [-0.5, 0.5] pixel units as
    image_weight *= (255 / sigma)^2 (Pong: ~29). sigma from their table, else from the data.
    The resolved weight is written back into the config (and so into the checkpoint)."""
    scale = str(config.loss.get("image_scale", "none"))
    if scale == "none":
        return
    if scale != "authors":
        raise DittoError("Unknown image scale", field="config.loss.image_scale",
                         expected="none | authors", got=scale)
    key = str(game or "").lower().replace("_", "")
    if key in AUTHORS_PIXEL_STATS:
        sigma, source = float(AUTHORS_PIXEL_STATS[key][1]), "the authors' table"
    else:
        sigma, source = float(np.std(store.observation[::97])), "the training frames"
    with config.unlocked() if hasattr(config, "unlocked") else _nullcontext():
        config.loss.image_weight = float(config.loss.image_weight) * (255.0 / sigma) ** 2
        config.loss.image_scale = "none"  # resolved: resuming must not apply it twice
    if log:
        log(f"image scale: authors' per-game standardisation (sigma {sigma:.0f} from "
            f"{source}) -> loss.image_weight {config.loss.image_weight:.1f}")


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def train_world_model(config, *, data, workdir, **kwargs):
    """Trains (or resumes) the world model; returns the final train state.

    Holds WORKDIR/.lock throughout, so a second writer on the workdir is refused.
    """
    lock = io.lock_workdir(workdir, "ditto train-wm") if jax.process_index() == 0 else None
    try:
        return _train_world_model(config, data=data, workdir=workdir, **kwargs)
    finally:
        if lock is not None:
            lock.release()


def _train_world_model(config, *, data, workdir, data_dir=None, split=None, selection=None,
                       steps=None, progress=True, log=print):
    from ditto_jax import models as wm

    process_index, process_count = jax.process_index(), jax.process_count()
    is_main = process_index == 0
    if steps is not None:
        config.train.steps = int(steps)
    from ditto_jax.configs import validate_wm_config
    validate_wm_config(config)  # before any data or checkpoint is read
    from ditto_jax.devices import apply_device_defaults  # "auto" fields, saved in meta
    apply_device_defaults(config, log=log if is_main else None)
    mesh = parallel.make_mesh()
    local_batch = parallel.local_batch_size(config.train.batch_size, mesh)
    seq_len = int(config.train.seq_len)

    train_store, val_store, ep_meta = load_training_data(
        config, data, data_dir=data_dir, split=split, selection=selection,
        process_index=process_index,
        process_count=process_count, progress=progress and is_main)
    obs_shape = tuple(train_store.obs_shape)
    num_actions = int(train_store.num_actions if hasattr(train_store, "num_actions")
                      else train_store.action.max() + 1)
    action_meanings = ep_meta.get("action_meanings")
    from ditto_jax.data.rlds import read_dataset_metadata
    sources = data_sources(data)
    ds_meta = read_dataset_metadata(sources[0], data_dir=data_dir)
    for other in sources[1:]:
        other_meta = read_dataset_metadata(other, data_dir=data_dir)
        for field in ("game", "action_meanings"):
            if ds_meta.get(field) and other_meta.get(field) and \
                    ds_meta[field] != other_meta[field]:
                raise DittoError("The training datasets do not match each other", path=other,
                                 field=field, expected=ds_meta[field], got=other_meta[field])
    if ds_meta.get("action_meanings"):
        action_meanings = ds_meta["action_meanings"]
        num_actions = len(action_meanings)
    if num_actions > config.model.action_dim:
        raise DittoError("The dataset has more actions than the model's action input",
                         path=data, field="config.model.action_dim",
                         expected=f">= {num_actions}", got=config.model.action_dim)
    _apply_image_scale(config, ds_meta.get("game"), train_store, log if is_main else None)
    fingerprint = dataset_fingerprint(data, split, selection)
    meta = _model_meta(config, obs_shape, num_actions, action_meanings, fingerprint,
                       ds_meta.get("game"))

    key = jax.random.key(config.train.seed)
    init_key, loop_key = jax.random.split(key)
    state = wm.init_train_state(config, obs_shape, num_actions, init_key)
    if config.model.get("decoder_pixel_bias"):
        # The decoder's background starts as the median training frame; every host uses
        # process 0's frames so the replicated parameters agree.
        frames = train_store.observation[
            np.linspace(0, train_store.num_steps - 1, 256).astype(np.int64)]
        if process_count > 1:
            from jax.experimental import multihost_utils
            frames = multihost_utils.broadcast_one_to_all(frames)
        state = wm.set_decoder_background(state, frames)
    state = parallel.replicate(state, mesh)

    with io.disk_errors(workdir, "creating"):
        os.makedirs(workdir, exist_ok=True)
    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 save_every=config.train.save_every,
                                 keep=config.train.keep_checkpoints)
    tracking = config.get("tracking")
    writer = MetricWriter(workdir, enabled=is_main,
                          tracking=tracking.to_dict() if tracking is not None else None,
                          run_config=config.to_dict())
    start = 0
    if ckpt.latest_step() is not None:
        saved = ckpt.read_meta()
        ckpt_lib.check_compatible(saved, meta, _COMPAT_KEYS, path=ckpt.directory,
                                  what="world-model checkpoint")
        state, _ = ckpt.restore(state)
        start = int(ckpt.restored_step)
        log(f"resumed from step {start}")
    # Lines a killed run logged after its last checkpoint (or before its first) go.
    writer.truncate_after(start)
    if is_main:
        from ditto_jax.provenance import provenance
        prov = provenance(meta["config"], seeds=[int(config.train.seed)])
        io.write_json_atomic(os.path.join(workdir, "config.json"),
                             dict(meta, provenance=prov), default=str)
        writer.add_provenance(prov, start)
    lr_advice = f"lower config.optim.lr (now {config.optim.lr})"

    rep, bsh = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    train_step = jax.jit(wm.train_step, in_shardings=(rep, bsh, rep),
                         out_shardings=(rep, rep), donate_argnums=0)
    eval_step = jax.jit(wm.eval_step, in_shardings=(rep, bsh, rep), out_shardings=rep)
    total = int(config.train.steps)

    from tqdm import tqdm
    bar = tqdm(total=total, initial=start, unit="step", disable=not (progress and is_main),
               desc="train-wm", dynamic_ncols=True)
    last_log = time.perf_counter()
    try:
        for step in range(start, total):
            rng = np.random.default_rng([config.train.seed, process_index, step])
            batch = train_store.sample_windows(rng, local_batch, seq_len)
            batch = parallel.shard_batch(_model_inputs(batch), mesh)
            state, metrics = train_step(state, batch, jax.random.fold_in(loop_key, step))
            done = step + 1
            want_log = done % config.train.log_every == 0 or done == total
            want_save = ckpt.manager.should_save(done) or done == total
            if want_log or want_save:
                metrics = ckpt_lib.fetch_checked_metrics(metrics, done, ckpt, workdir,
                                                         change=lr_advice)
                if want_log:
                    now = time.perf_counter()
                    metrics["steps_per_s"] = config.train.log_every / max(now - last_log, 1e-9)
                    last_log = now
                    writer.write(done, metrics)
                    bar.set_postfix(loss=f"{float(metrics['loss']):.1f}",
                                    img=f"{float(metrics['image_loss']):.1f}")
            if val_store is not None and config.train.eval_every and (
                    done % config.train.eval_every == 0 or done == total):
                vrng = np.random.default_rng([config.train.seed, 1_000_003, process_index])
                vbatch = parallel.shard_batch(
                    _model_inputs(val_store.sample_windows(vrng, local_batch, seq_len)), mesh)
                vmetrics = jax.device_get(eval_step(state, vbatch, jax.random.key(0)))
                writer.write(done, {f"val/{k}": v for k, v in vmetrics.items()})
            # Strips decode on one host; multi-host runs skip them (params are global).
            if process_count == 1 and config.train.strip_every and (
                    done % config.train.strip_every == 0 or done == total):
                store = val_store if val_store is not None else train_store
                write_open_loop_strip(wm, state, store, config, workdir, done, writer=writer)
            if want_save:
                ckpt.save(done, state, meta, force=done == total)
            bar.update(1)
    finally:
        bar.close()
        ckpt.close()
        writer.close()
    return state


def _model_inputs(batch):
    return {k: batch[k] for k in ("observation", "action", "is_first")
            if k in batch} | {k: batch[k] for k in ("reward", "is_terminal") if k in batch}


def write_open_loop_strip(wm, state, store, config, workdir, step, *, context=5, horizon=10,
                          count=4, writer=None):
    """Observe `context` real frames, imagine `horizon` more; truth above, model below.

    Writes strips/open_loop_STEP.{png,gif} and, with a `writer`, the PNG to
    TensorBoard (and wandb) as the image `world_model/open_loop`.
    """
    from ditto_jax import viz
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


def main(args):
    from ditto_jax.configs import config_overrides, load_config
    overrides = config_overrides(args.extra_args)
    parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    config = load_config(args.config, overrides)
    parallel.enable_compilation_cache()
    train_world_model(config, data=args.data, workdir=args.workdir, data_dir=args.data_dir,
                      split=args.split, selection=args.select, steps=args.steps,
                      progress=not args.quiet)
    return 0


def load_world_model(workdir, step=None):
    """Restores a trained world model for the next stage: (train_state, meta).

    The config, observation shape and action count come from the checkpoint's
    metadata, so no command-line flags are needed to rebuild the model.
    """
    import ml_collections
    from ditto_jax import models as wm
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
        from ditto_jax.devices import resolve_loaded_config  # "auto" fields, this backend
        resolve_loaded_config(config)
        abstract = jax.eval_shape(lambda: wm.init_train_state(
            config, tuple(meta["obs_shape"]), int(meta["num_actions"]), jax.random.key(0)))
        state, meta = ckpt.restore(abstract, step)
        meta = dict(meta, step=int(ckpt.restored_step))
    finally:
        ckpt.close()
    return state, meta
