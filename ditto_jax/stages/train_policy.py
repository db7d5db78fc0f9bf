"""Stage 2: imitation. `ditto train-policy --method NAME` (any registered method).

Device plumbing only: the method (ditto_jax/methods) gives the state, the pure update and
its on-device batch sampling; `engine.fit` owns checkpoints, resume, metrics and progress.
Each host call runs K updates as one `lax.fori_loop` on device (sampling included), so
the host samples nothing per update. Update `s` uses key fold_in(key, s) for both its
batch and its step, so any chunking, and a resumed run, reproduce an uninterrupted one.

Seeds are vmapped: `train_policy_seeds` trains one method for several seeds as one
jitted program (stacked states, a leading seed axis), each seed with its own workdir,
checkpoints, metrics and evaluation; its expert latents are encoded with its own seed, as
when trained alone. The batch is sharded over the same data-parallel mesh as the
world-model stage; params, latents and the world model are replicated.
"""
import os

import numpy as np

# jax, orbax and the stage modules that import them are imported inside the functions
# that use them, never at module level: `ditto train-policy --help` imports this module to
# build its parser and must not pay for jax (tests/test_cli.py checks it).
from ditto_jax.core import resources
from ditto_jax.core.args import positive_int
from ditto_jax.core.config import check_fields, config_overrides, load_config, refuse_conflicts
from ditto_jax.core.provenance import provenance
from ditto_jax.errors import DittoError

ACCEPTS_EXTRA_ARGS = True
DEFAULT_CONFIG = resources.config_path("policy.py") + ":small"  # any cwd, any install
_COMPAT_KEYS = ("method", "agent_config", "world_model", "expert", "state_version")
SELECT_METRIC = "heldout_expert_prob"  # the offline signal behind `--checkpoint best`
# Loop settings, free to change when resuming (and left out of `ditto run`'s stamps).
LOOP_FIELDS = ("steps", "log_every", "save_every", "keep_checkpoints", "eval_every",
                "eval_episodes", "eval_envs", "eval_max_steps", "tracking", "probe_every",
                "probe_batch", "drift_length", "time_limit_s")


# Checked when a config is loaded, before any data or checkpoint is read, so a typo costs
# seconds, not a training run. `method` is checked against the method registry; the
# methods' own fields (reward, latent, first_step, ...) by each method's `resolve_config`,
# against the enums of the code that uses them.
_POLICY_CHOICES = {
    "expert_selection": ("first", "top"),
    "eval_protocol": ("ditto", "machado"),
    "imagine_matmul": ("float32", "bfloat16"),   # models/networks.py MATMUL_DTYPES
}
_POLICY_BOUNDS = {
    "lr": (0, True), "disc_lr": (0, True), "eps": (0, True), "clip": (0, True),
    "horizon": (1, False), "batch_size": (1, False), "bc_batch_size": (1, False),
    "steps": (0, False), "log_every": (1, False), "save_every": (1, False),
    "target_every": (1, False), "gamma": (0, False), "lam": (0, False),
    "entropy": (0, False), "dbc_entropy": (0, False), "expert_episodes": (0, False),
    "heldout_episodes": (0, False), "eval_every": (0, False), "eval_episodes": (1, False),
    "eval_envs": (1, False), "eval_max_steps": (1, False), "bc_init_steps": (0, False),
    "critic_warmup_steps": (0, False), "bc_frame_stack": (1, False),
    "probe_every": (0, False), "probe_batch": (1, False), "drift_length": (1, False),
}


def validate_policy_config(config, prefix="config."):
    """The policy config block (`ditto train-policy`, `config.policy` of `ditto run`)."""
    from ditto_jax import methods  # the registry: built-in and user-registered methods
    check_fields(config, dict(_POLICY_CHOICES, method=methods.names()), _POLICY_BOUNDS,
                 prefix)
    gamma = config.get("gamma")
    if gamma is not None and not 0 <= gamma <= 1:
        raise DittoError("Config value out of range", field=f"{prefix}gamma",
                         expected="in [0, 1]", got=gamma)
    return config


def add_arguments(p):
    p.add_argument("--method", default=None,
                   help="imitation method: ditto, ditto_bcinit, dgail, dbc, bc, or one "
                        "registered in ditto_jax.methods (default: the config's)")
    p.add_argument("--config", default=DEFAULT_CONFIG, type=resources.resolve_config_spec,
                   help="config file and preset; override fields with --config.KEY=VALUE")
    p.add_argument("--wm", required=True, help="workdir of a trained world model")
    p.add_argument("--expert", required=True, help="expert RLDS dataset (dir or TFDS name)")
    p.add_argument("--data-dir", default=None,
                   help="TFDS data directory for a TFDS name (default: ~/tensorflow_datasets)")
    p.add_argument("--split", default=None,
                   help="TFDS split expression, e.g. train, 'train[:10]', 'train[10%%:]', "
                        "'a+b', or checkpoint_40:checkpoint_49 (default: train, else every "
                        "split)")
    p.add_argument("--workdir", required=True, help="output folder: checkpoints, metrics, config")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="total updates (default: the config's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def resolve(config, method=None, steps=None):
    """(method object, the checked and frozen config that will run). Called before any
    data or checkpoint is read, so a bad value exits at once."""
    import ml_collections
    from ditto_jax import methods  # jax: imported on use, never by --help
    if isinstance(config, ml_collections.FrozenConfigDict):
        config = config.as_configdict()
    config = config.copy_and_resolve_references()
    config.method = method or config.method
    if steps is not None:
        config.steps = int(steps)
    m = methods.get(config.method)
    validate_policy_config(config)
    config = m.resolve_config(config)
    return m, ml_collections.FrozenConfigDict(config)


def build_method(config, name, wm_state, wm_meta, *, key):
    """(initial state, pure step `(state, batch, rng, wm_params)`, actor apply) of a method."""
    # jax: imported on use, never by --help
    from ditto_jax.stages.policy_data import policy_method
    method, ctx = policy_method(name, config, wm_state, wm_meta)
    return (method.init(config, ctx, key), method.train_step(config, ctx),
            method.actor_apply(config, ctx))


def _agent_meta(config, wm_meta, wm_workdir, expert, expert_info, workdir, method):
    from ditto_jax.stages.policy_agents import _relpath  # jax: imported on use, never by --help
    return {
        "method": config.method, "config": config.to_dict(),
        "agent_config": {k: v for k, v in config.to_dict().items() if k not in LOOP_FIELDS},
        "state_version": method.state_version,
        # The step, dataset fingerprint and a digest of the parameters too: a policy is
        # never resumed or evaluated on a world model trained further, on other data or
        # with another seed. The workdir is stored relative to the policy's, so a run
        # directory can be moved.
        "world_model": {"workdir": _relpath(wm_workdir, workdir), "step": wm_meta.get("step"),
                        "dataset": wm_meta.get("dataset"), "model": wm_meta.get("model"),
                        "params_hash": wm_meta.get("params_hash")},
        "expert": {"source": os.path.abspath(expert) if os.path.exists(expert) else expert,
                   "episodes": expert_info["episodes"]},
        # Which expert episodes (nested over N_E; the held-out ones shared by every N_E).
        # Outside "expert", which a resumed checkpoint must match.
        "expert_episode_ids": {"train": expert_info.get("episode_ids"),
                               "heldout": expert_info.get("heldout_episode_ids")},
        "expert_return": expert_info["expert_return"],
        "game": expert_info.get("game") or wm_meta.get("game"),
        "obs_shape": wm_meta["obs_shape"], "num_actions": wm_meta["num_actions"],
        "action_meanings": wm_meta.get("action_meanings"),
    }


def train_policy(config, *, method=None, wm, expert, workdir, **kwargs):
    """Trains (or resumes) one method for `config.seed`; returns (state, last evaluation)."""
    import jax
    states, results = train_policy_seeds(config, method=method, wm=wm, expert=expert,
                                         workdirs={int(config.seed): workdir}, **kwargs)
    return jax.tree.map(lambda x: x[0], states), results[0]


def train_policy_seeds(config, *, method=None, wm, expert, workdirs, data_dir=None,
                       split=None, steps=None, progress=True, log=print, vmap=None,
                       cache=None):
    """Trains one method for every seed in `workdirs` ({seed: workdir}) as one vmapped
    program (`vmap=None`: where it pays, `vmap_pays()`, and the method allows it), else
    one seed after another. Returns (stacked states, [last evaluation per seed]).
    `cache`: a dict shared by the calls of one `ditto run` (every method and N_E): the
    expert data is read once and encoded once per seed (`policy_data.encode_expert`)."""
    import jax
    import jax.numpy as jnp

    # jax: imported on use, never by --help
    from ditto_jax.core import parallel
    from ditto_jax.engine import Hook, Loop, Run, Select, fit
    from ditto_jax.stages.policy_agents import evaluate_agent
    from ditto_jax.stages.policy_data import (encode_expert, encode_store, heldout_diagnostics,
                                              load_expert, make_context)
    from ditto_jax.stages.policy_probes import make_policy_probes
    from ditto_jax.stages.policy_loop import _stack_data, _with_seed, make_advance, vmap_pays
    from ditto_jax.stages.wm_io import load_world_model
    m, config = resolve(config, method, steps)
    if not os.path.exists(expert) and "/" not in expert:
        raise DittoError("Expert dataset not found", path=expert)
    vmap = m.vmap_seeds and (vmap_pays() if vmap is None else vmap)
    if len(workdirs) > 1 and not vmap:
        out = [train_policy_seeds(config, method=method, wm=wm, expert=expert,
                                  workdirs={s: w}, data_dir=data_dir, split=split,
                                  progress=progress, log=log, cache=cache)
               for s, w in workdirs.items()]
        return (jax.tree.map(lambda *xs: jnp.concatenate(xs), *[o[0] for o in out]),
                [o[1][0] for o in out])
    seeds = [int(s) for s in workdirs]
    configs = [_with_seed(config, s) for s in seeds]
    wm_state, wm_meta = load_world_model(wm)
    store, held, info = load_expert(config, expert, wm_meta, data_dir=data_dir, split=split,
                                    cache=cache)
    ctx = make_context(config, wm_state, wm_meta)
    mesh = parallel.make_mesh()
    parallel.local_batch_size(int(config.batch_size), mesh)  # divisible over the devices
    latents = [encode_expert(wm_state, store, seed=s, cache=cache) if m.uses_latents
               else None for s in seeds]
    held_latents = [encode_expert(wm_state, held, seed=s, cache=cache)
                    if m.uses_latents and held else None for s in seeds]
    data, axes = _stack_data([m.make_data(config, ctx, store, lat) for lat in latents])
    keys = [jax.random.split(jax.random.key(s)) for s in seeds]   # (init, loop) per seed
    state = jax.vmap(lambda k: m.init(config, ctx, k))(jnp.stack([k[0] for k in keys]))
    rep = parallel.replicated(mesh)
    state, data = jax.device_put(state, rep), jax.device_put(data, rep)
    wm_params, loop_keys = jax.device_put(wm_state.params, rep), jnp.stack([k[1] for k in keys])
    chunk = make_advance(m, config, ctx, axes, mesh)
    advance = lambda st, start, n: chunk(st, loop_keys, data, wm_params, start, n)  # noqa: E731
    runs = []
    for c, s in zip(configs, seeds):
        meta = _agent_meta(c, wm_meta, wm, expert, info, workdirs[s], m)
        runs.append(Run(workdirs[s], meta, provenance(meta["agent_config"], seeds=[s])))
    actor_apply = m.actor_apply(config, ctx)
    results = [None] * len(seeds)
    # Reward spread and Eq. 7 drift on held-out starts (None: off or nothing held out);
    # the same starts and noise for every seed and method, so their values compare.
    probes = [make_policy_probes(config, ctx, actor_apply, wm_state.params, lat, held_lat,
                                 held, seed=0)
              for s, lat, held_lat in zip(seeds, latents, held_latents)]

    # Host copies of a run's state for acting and diagnostics (the training copy is
    # replicated over the mesh; the world model used for acting lives on one device).
    def on_log(step, st, i, metrics):
        st = jax.device_get(st)
        out = dict(m.host_metrics(config, metrics))
        if held_latents[i] is not None and actor_apply is not None:
            out.update(heldout_diagnostics(actor_apply, m.actor_params(st), held_latents[i],
                                           held))
        if probes[i] is not None and (step % probes[i].every == 0 or step == config.steps):
            out.update(probes[i](m.actor_params(st)))
        return out

    def evaluate(step, st, i):
        agent = m.make_agent(configs[i], ctx, wm_state, jax.device_get(st))
        results[i] = r = evaluate_agent(agent, configs[i], runs[i].meta,
                                        seed=configs[i].seed + 10_000 + step)
        evals = runs[i].extra.setdefault("evals", [])
        evals.append({"step": step, "return_mean": r["return_mean"],
                      "expert_normalized_mean": r["expert_normalized_mean"]})
        log(f"step {step}: eval return {r['return_mean']:.2f} ± {r['return_se']:.2f} "
            f"over {r['episodes']} episodes")
        return {"eval/return_mean": r["return_mean"], "eval/return_se": r["return_se"],
                "eval/length_mean": r["length_mean"], "eval/return_last10":
                float(np.mean([e["return_mean"] for e in evals[-10:]]))}

    names = ",".join(map(str, seeds))
    # Offline model selection: the checkpoint with the best held-out E[pi(a_E | s_E)] is
    # kept next to the final one (`ditto eval --checkpoint best`); no real return is used.
    has_signal = actor_apply is not None and all(h is not None for h in held_latents)
    state = fit(runs=runs, state=state, advance=advance, stacked=True,
                loop=Loop(int(config.steps), int(config.log_every), int(config.save_every),
                          int(config.keep_checkpoints),
                          float(config.get("time_limit_s", 0) or 0)),
                compat_keys=_COMPAT_KEYS, what="policy checkpoint",
                hooks=[Hook(int(config.eval_every or 0), evaluate)], on_log=on_log,
                desc=f"train-policy/{config.method}" + (f" seeds {names}" if len(seeds) > 1
                                                        else ""),
                progress=progress, log=log, tracking=dict(config.get("tracking") or {}),
                run_config=config.to_dict(), postfix=("reward", "bc_loss", "accuracy"),
                select=Select(SELECT_METRIC) if has_signal else None)
    return state, results


def main(args):
    from ditto_jax.core import parallel  # jax: imported on use, never by --help
    overrides = config_overrides(args.extra_args)
    config = load_config(args.config, overrides)
    refuse_conflicts(config, overrides, [("--method", args.method, "method"),
                                         ("--steps", args.steps, "steps")])
    resolve(config, args.method, args.steps)  # exit 2 on a bad value before reading data
    parallel.enable_compilation_cache()
    train_policy(config, method=args.method, wm=args.wm, expert=args.expert,
                 workdir=args.workdir, data_dir=args.data_dir, split=args.split,
                 steps=args.steps, progress=not args.quiet)
    return 0
