"""Stage 1: train the world model. `ditto train-wm`.

Device plumbing only; the maths lives in `ditto_jax.models`. The loop is
deterministic given (config, data, step): the batch for update `s` is sampled
with seed (seed, process, s) and the step key is fold_in(key, s), so a run
resumed from a checkpoint at step S reproduces an uninterrupted run exactly.
"""
import numpy as np

# jax, orbax and the modules that import them (parallel, wm_io) are imported inside the
# functions that use them, never at module level: `ditto train-wm --help` imports this
# module to build its parser and must not pay for jax (tests/test_cli.py checks it).
from ditto_jax.core import resources
from ditto_jax.core.args import non_negative_int, positive_int
from ditto_jax.core.config import check_fields, config_overrides, load_config, refuse_conflicts
from ditto_jax.core.devices import AUTO, COMPUTE_DTYPES, apply_device_defaults
from ditto_jax.core.provenance import provenance
from ditto_jax.errors import DittoError
from ditto_jax.stages.wm_data import (IMAGE_SCALES, _apply_image_scale, _model_inputs,
                                      check_sources_agree, data_sources, dataset_fingerprint,
                                      load_training_data)

ACCEPTS_EXTRA_ARGS = True  # --config.KEY=VALUE overrides
DEFAULT_CONFIG = resources.config_path("wm.py") + ":small"  # any cwd, any install

# Parts of the config that fix the parameter shapes and the objective; a
# checkpoint written with different values cannot be resumed. "train" is the
# train group without the loop settings below (batch size, sequence length, seed, ...).
_COMPAT_KEYS = ("model", "dataset", "obs_shape", "num_actions", "loss", "optim", "train")
# Loop settings, free to change when resuming (and left out of `ditto run`'s stamps).
LOOP_KEYS = ("steps", "log_every", "eval_every", "save_every", "strip_every",
              "keep_checkpoints", "time_limit_s")
# Also free: the activation dtype (parameters stay float32, so the checkpoint fits either).
_FREE_TRAIN_KEYS = LOOP_KEYS + ("compute_dtype",)


_WM_BOUNDS = {
    "optim.lr": (0, True), "optim.eps": (0, True), "optim.clip": (0, True),
    "loss.beta": (0, False), "loss.image_weight": (0, True), "train.batch_size": (1, False),
    "train.seq_len": (2, False), "train.steps": (0, False), "train.log_every": (1, False),
    "train.save_every": (1, False), "model.deter": (1, False), "model.stoch": (1, False),
    "model.classes": (1, False),
}


def validate_wm_config(config, prefix="config."):
    """The world-model config block (`ditto train-wm`, `config.wm` of `ditto run`), checked
    before any data or checkpoint is read. The allowed values are the models' own tuples."""
    # jax: the model modules define the choices; imported on use, never by --help
    from ditto_jax.models.networks import CONV_IMPLS, DECODER_KINDS
    from ditto_jax.models.rssm import LATENT_MODES
    from ditto_jax.models.train_step import OPTIMIZERS
    from ditto_jax.models.world_model import RECON_KINDS
    choices = {
        "model.decoder": DECODER_KINDS,
        "model.latent": LATENT_MODES,
        "model.conv_impl": (AUTO,) + CONV_IMPLS,
        "loss.recon": RECON_KINDS,
        "optim.name": OPTIMIZERS,
        "train.compute_dtype": (AUTO,) + COMPUTE_DTYPES,
        "loss.image_scale": IMAGE_SCALES,
    }
    check_fields(config, choices, _WM_BOUNDS, prefix)
    return config


def add_arguments(p):
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


def train_world_model(config, *, data, workdir, data_dir=None, split=None, selection=None,
                      steps=None, progress=True, log=print):
    """Trains (or resumes) the world model; returns the final train state.

    `engine.fit` holds WORKDIR/.lock throughout, so a second writer is refused.
    """
    import jax

    # jax: imported on use, never by --help
    from ditto_jax import models as wm
    from ditto_jax.core import parallel
    from ditto_jax.stages.wm_io import write_open_loop_strip

    process_index, process_count = jax.process_index(), jax.process_count()
    is_main = process_index == 0
    if steps is not None:
        config.train.steps = int(steps)
    validate_wm_config(config)  # before any data or checkpoint is read
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
    ds_meta = check_sources_agree(data_sources(data), data_dir)
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

    from ditto_jax.engine import Hook, Loop, Run, fit  # jax: imported on use, never by --help
    rep, bsh = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    train_step = jax.jit(wm.train_step, in_shardings=(rep, bsh, rep),
                         out_shardings=(rep, rep), donate_argnums=0)
    eval_step = jax.jit(wm.eval_step, in_shardings=(rep, bsh, rep), out_shardings=rep)

    def advance(state, start, n):
        """Updates start..start+n-1; batch s is seeded (seed, process, s) on the host."""
        for step in range(start, start + n):
            rng = np.random.default_rng([config.train.seed, process_index, step])
            batch = train_store.sample_windows(rng, local_batch, seq_len)
            batch = parallel.shard_batch(_model_inputs(batch), mesh)
            state, metrics = train_step(state, batch, jax.random.fold_in(loop_key, step))
        return state, metrics

    def validate(step, state, _):
        vrng = np.random.default_rng([config.train.seed, 1_000_003, process_index])
        vbatch = parallel.shard_batch(
            _model_inputs(val_store.sample_windows(vrng, local_batch, seq_len)), mesh)
        vmetrics = jax.device_get(eval_step(state, vbatch, jax.random.key(0)))
        return {f"val/{k}": v for k, v in vmetrics.items()}

    runs = [Run(workdir, meta, provenance(meta["config"], seeds=[int(config.train.seed)]))]

    def strip(step, state, _):
        store = val_store if val_store is not None else train_store
        write_open_loop_strip(wm, state, store, config, workdir, step, writer=runs[0].writer)

    hooks = [Hook(int(config.train.eval_every or 0) if val_store is not None else 0, validate),
             # Strips decode on one host; multi-host runs skip them (params are global).
             Hook(int(config.train.strip_every or 0) if process_count == 1 else 0, strip)]
    tracking = config.get("tracking")
    return fit(runs=runs, state=state, advance=advance, hooks=hooks,
               loop=Loop(int(config.train.steps), int(config.train.log_every),
                         int(config.train.save_every), int(config.train.keep_checkpoints),
                         float(config.train.get("time_limit_s", 0) or 0)),
               compat_keys=_COMPAT_KEYS, what="world-model checkpoint", desc="train-wm",
               progress=progress, log=log, is_main=is_main,
               change=f"lower config.optim.lr (now {config.optim.lr})",
               tracking=tracking.to_dict() if tracking is not None else None,
               run_config=config.to_dict(), postfix=("loss", "image_loss"))


def main(args):
    from ditto_jax.core import parallel  # jax: imported on use, never by --help
    overrides = config_overrides(args.extra_args)
    parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    config = load_config(args.config, overrides)
    refuse_conflicts(config, overrides, [("--steps", args.steps, "train.steps")])
    parallel.enable_compilation_cache()
    train_world_model(config, data=args.data, workdir=args.workdir, data_dir=args.data_dir,
                      split=args.split, selection=args.select, steps=args.steps,
                      progress=not args.quiet)
    return 0
