"""`ditto run`: from nothing to an evaluated imitator, in one workdir.

Stages (each skipped when its outputs are complete, resumed when interrupted):
  data    record expert demonstrations and coverage data (RLDS), or point at RL Unplugged
  wm      train the world model on all of it                       (stages/train_wm.py)
  policy  train every method on that one world model                 (stages/train_policy.py)
  eval    evaluate each method, the expert and random play in the real game
  report  results.json / results.md, plots, the DITTO video, a dream-vs-real strip

Completion is read off the outputs themselves (a finalised dataset, a checkpoint at the
last step, an evaluation file with the requested episodes), never off a separate marker
that could disagree with them.
"""
import os
import time

from ditto_jax import resources
from ditto_jax.errors import DittoError

ACCEPTS_EXTRA_ARGS = True
STAGES = ("data", "wm", "policy", "eval", "report")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = resources.config_path("pipeline.py")  # any cwd, any install
# RL Unplugged's config names ({Game}_run_{n}).
RLU_NAMES = {"pong": "Pong", "breakout": "Breakout", "mspacman": "MsPacman",
             "beamrider": "BeamRider", "qbert": "Qbert", "spaceinvaders": "SpaceInvaders"}


def add_arguments(p):
    p.add_argument("--config", default=None, type=resources.resolve_config_spec,
                   help="pipeline config and preset (default: experiments/configs/"
                        "pipeline.py:demo); override fields with --config.KEY=VALUE")
    p.add_argument("--preset", default=None,
                   choices=["smoke", "demo", "study", "ne", "paper", "breakout_demo"],
                   help="shortcut for --config experiments/configs/pipeline.py:PRESET")
    p.add_argument("--game", default=None, help="Atari game (default: the config's)")
    p.add_argument("--workdir", default=None, help="default: runs/GAME_PRESET")
    p.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------- layout
class Layout:
    """Where every stage reads and writes inside a pipeline workdir."""

    def __init__(self, config, workdir):
        self.workdir = os.path.abspath(workdir)
        self.data = os.path.abspath(config.paths.data or os.path.join(workdir, "data"))
        self.wm = os.path.abspath(config.paths.wm or os.path.join(workdir, "wm"))
        self.eval = os.path.join(self.workdir, "eval")
        self.plots = os.path.join(self.workdir, "plots")
        self.primary_seed = int(config.seed)
        self.expert_episodes = expert_episode_counts(config)
        self.multi_ne = len(self.expert_episodes) > 1

    def seed_suffix(self, seed):
        """'' for the run's own seed (config.seed), '-sN' for the other policy seeds."""
        return "" if int(seed) == self.primary_seed else f"-s{int(seed)}"

    def name(self, method, seed=None, rule="sample", checkpoint="final", ne=None,
             multi=None):
        """`method[-neN][-sN][-greedy][-best]`: the policy's (and its evaluation file's)
        name; `-neN` (N_E) only when the run has several N_E values (`multi`)."""
        seed = self.primary_seed if seed is None else seed
        ne = self.expert_episodes[0] if ne is None else int(ne)
        multi = self.multi_ne if multi is None else multi
        return (method + (f"-ne{ne}" if multi else "") + self.seed_suffix(seed)
                + ("-greedy" if rule == "greedy" else "")
                + ("-best" if checkpoint == "best" else ""))

    def policy(self, method, seed=None, ne=None, multi=None):
        return os.path.join(self.workdir, "policies", self.name(method, seed, ne=ne,
                                                                multi=multi))


def methods_of(config):
    from ditto_jax.methods import names
    methods = [m.strip() for m in str(config.methods).split(",") if m.strip()]
    bad = [m for m in methods if m not in names()]
    if bad or not methods:
        raise DittoError("Unknown imitation method", field="config.methods",
                         expected=f"a comma-separated subset of {','.join(names())}",
                         got=config.methods)
    return methods


def expert_episode_counts(config):
    """The N_E values of `config.expert_episodes` ("11", "1,2,4,11"; 0 = every recorded
    training episode), in the order given. Each N_E trains on the first N_E training
    episodes (nested subsets) and is checked against the same held-out episodes."""
    text = str(config.get("expert_episodes", 0)).strip().strip("()[]")
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values) or len(set(values)) != len(values):
        raise DittoError("N_E is a non-negative integer or a list of distinct ones",
                         field="config.expert_episodes",
                         expected="e.g. 11, or 1,2,4,11 (0 = every recorded episode)",
                         got=config.get("expert_episodes"))
    if len(values) > 1 and (0 in values or str(config.policy.expert_selection) != "first"):
        raise DittoError("A list of N_E values needs explicit counts and nested subsets",
                         field="config.expert_episodes",
                         expected="positive counts with config.policy.expert_selection="
                                  "first", got=f"{config.expert_episodes} with "
                                               f"expert_selection="
                                               f"{config.policy.expert_selection}")
    if config.data.source == "scripted":  # refused before hours of training, not after
        recorded, held = int(config.data.expert_episodes), int(config.policy.heldout_episodes)
        available = recorded - held if held < recorded else recorded
        if max(values) > available:
            raise DittoError("The expert dataset has fewer episodes than requested",
                             field="config.expert_episodes",
                             expected=f"at most {available} (config.data.expert_episodes "
                                      f"{recorded} recorded, the last {held} held out)",
                             got=config.expert_episodes)
    return values


def featured_method(config):
    """The method whose agent video the run shows: the first of `config.methods`."""
    return methods_of(config)[0]


def data_sources(config, layout):
    """(world-model sources, expert source, kwargs for the readers) for the data config."""
    d = config.data
    if d.source == "scripted":
        wm = [os.path.join(layout.data, n) for n, count in
              (("expert", d.expert_episodes), ("noisy", d.noisy_episodes),
               ("random", d.random_episodes)) if count > 0]
        return wm, os.path.join(layout.data, "expert"), {}
    if d.source == "rlu":
        name = RLU_NAMES.get(config.game, config.game)
        tfds_name = f"{d.rlu_name}/{name}_run_{int(d.rlu_run)}"
        reader = {"data_dir": d.rlu_data_dir or None}
        return [tfds_name], tfds_name, reader
    raise DittoError("Unknown data source", field="config.data.source",
                     expected="scripted or rlu", got=d.source)


def _checkpoint_range(text, field):
    a, _, b = str(text).partition("-")
    try:
        return int(a), int(b or a)
    except ValueError:
        raise DittoError("A checkpoint range looks like A-B", field=field, got=text) from None


# ----------------------------------------------------------------------- stages
# Config fields that do not shape a stage's output (loop settings, logging): changing them
# never invalidates a finished stage.
_WM_LOOP = ("steps", "log_every", "eval_every", "save_every", "keep_checkpoints",
            "strip_every", "time_limit_s")
_POLICY_LOOP = ("steps", "log_every", "save_every", "keep_checkpoints", "eval_every",
                "eval_episodes", "eval_envs", "eval_max_steps", "eval_protocol", "method",
                "tracking", "probe_every", "probe_batch", "drift_length", "time_limit_s")


def data_fields(config, name=None):
    """The fields that shape the recorded datasets (all of them, or dataset `name`)."""
    d = config.data
    if d.source != "scripted":
        return {"source": d.source, "game": config.game,
                **{k: d[k] for k in ("rlu_name", "rlu_run", "expert_checkpoints",
                                     "wm_checkpoints", "wm_episodes", "expert_episodes")}}
    plan = {"expert": (d.expert_policy, 0.0, d.expert_episodes),
            "noisy": (d.noisy_policy or d.expert_policy, d.noisy_epsilon, d.noisy_episodes),
            "random": ("random", 0.0, d.random_episodes)}
    out = {n: {"game": config.game, "seed": int(config.seed), "policy": pol,
               "epsilon": float(eps), "episodes": int(n_ep), "protocol": d.protocol,
               "max_steps": int(d.max_steps), "size": int(d.size)}
           for n, (pol, eps, n_ep) in plan.items() if int(n_ep) > 0}
    return out[name] if name else out


def wm_fields(config):
    wm = config.wm.to_dict()
    wm.pop("tracking", None)  # logging only
    wm["train"] = {k: v for k, v in wm["train"].items() if k not in _WM_LOOP}
    wm["train"]["seed"] = int(config.seed)
    return {"game": config.game, "data": data_fields(config), "wm": wm}


def policy_fields(config, method, seed, ne=None):
    """What shapes one policy cell (method x seed x N_E): its stamp."""
    ne = expert_episode_counts(config)[0] if ne is None else int(ne)
    pc = {k: v for k, v in config.policy.to_dict().items() if k not in _POLICY_LOOP}
    pc.update(seed=int(seed), expert_episodes=ne)
    from ditto_jax.provenance import config_hash
    return {"method": method, "policy": pc, "wm": config_hash(wm_fields(config))}


def _reuse_or_move_aside(directory, stage, fields, log, legacy=None):
    """Keeps `directory` if it was produced with `fields`; else moves it aside (the stage
    is then retrained) and says which fields changed. Writes nothing into `directory`:
    the stamp goes onto finished outputs only (`_stamp_finished`), so a vacated folder
    stays absent and the stage starts there from nothing."""
    from ditto_jax import provenance as prov
    if not os.path.isdir(directory):
        return
    if os.listdir(directory) == [prov.STAMP]:
        # A stamp and nothing else (written before the stage produced anything, by an
        # older version): no output to keep, and it would block the stage's writer.
        os.remove(os.path.join(directory, prov.STAMP))
        os.rmdir(directory)
        return
    changes = prov.stale_fields(directory, fields, legacy=legacy)
    if changes:
        old = (prov.read_stamp(directory) or {}).get("fingerprint") or "unstamped"
        moved = prov.move_aside(directory, str(old)[:8])
        log(f"{stage}: trained under another config ({prov.describe_changes(changes)}); "
            f"retraining (old one kept in {moved})")


def _stamp_finished(directory, stage, fields):
    """Stamps a stage's finished output with the fields that produced it."""
    from ditto_jax import provenance as prov
    if os.path.isdir(directory) and os.listdir(directory):  # (not on a process that
        prov.write_stamp(directory, stage, fields)           # wrote nothing there)


def _move_aside_overtrained(directory, stage, at, steps, log):
    """A finished stage holding more updates than `steps` asks for is moved aside and
    retrained to `steps`, so the run never labels a longer training with a shorter
    budget. Returns the checkpoint step left in `directory` (None after a move)."""
    from ditto_jax import provenance as prov
    if at is None or at <= steps:
        return at
    moved = prov.move_aside(directory, f"{at}steps")
    log(f"{stage}: holds {at} updates, more than the {steps} asked for; retraining "
        f"{steps} (old one kept in {moved})")
    return None


def stage_data(config, layout, *, progress, log):
    """Records the scripted datasets (resuming an interrupted one); RLU needs nothing."""
    from ditto_jax.data.recorder import record
    from ditto_jax.data.rlds import _is_finished_dataset
    d = config.data
    if d.source != "scripted":
        from ditto_jax.data.rlds import read_dataset_metadata
        _, source, reader = data_sources(config, layout)
        try:  # fail here, not after the first stage that needs it
            read_dataset_metadata(source, **reader)
        except DittoError as e:
            raise DittoError(f"{e} In `ditto run` the data directory is "
                             f"--config.data.rlu_data_dir", field="config.data.rlu_data_dir",
                             got=d.rlu_data_dir or "(unset: ~/tensorflow_datasets)") from None
        log(f"data: using {source} (RL Unplugged, not recorded)")
        return
    seed_offsets = {"expert": 0, "noisy": 10_000, "random": 20_000}
    for name, f in data_fields(config).items():
        out = os.path.join(layout.data, name)
        if _is_finished_dataset(out) or not os.path.isdir(os.path.join(out, ".staging")):
            # (An unfinished recording resumes; the recorder refuses changed arguments.)
            _reuse_or_move_aside(out, f"data/{name}", f, log)
        if _is_finished_dataset(out):
            _stamp_finished(out, f"data/{name}", f)  # (a dataset from before stamps)
            log(f"data/{name}: done ({out})")
            continue
        record(game=config.game, policy=f["policy"], episodes=f["episodes"], out=out,
               epsilon=f["epsilon"], protocol=f["protocol"],
               seed=int(config.seed) * 100_000 + seed_offsets[name], max_steps=f["max_steps"],
               size=f["size"], resume=os.path.isdir(os.path.join(out, ".staging")),
               progress=progress, log=log)
        _stamp_finished(out, f"data/{name}", f)


def _checkpoint_step(workdir):
    """The newest readable checkpoint step of a stage's workdir (None: none yet)."""
    from ditto_jax.engine import resume_step
    return resume_step(workdir)


def stage_wm(config, layout, *, progress, log):
    from ditto_jax.stages.train_wm import train_world_model
    steps = int(config.wm.train.steps)
    fields = wm_fields(config)
    _reuse_or_move_aside(layout.wm, "wm", fields, log)
    at = _move_aside_overtrained(layout.wm, "wm", _checkpoint_step(layout.wm), steps, log)
    if at == steps:
        _stamp_finished(layout.wm, "wm", fields)
        log(f"wm: done ({layout.wm}, {steps} steps)")
        return
    sources, _, reader = data_sources(config, layout)
    kw = {}
    if config.data.source == "rlu":
        lo, hi = _checkpoint_range(config.data.wm_checkpoints, "config.data.wm_checkpoints")
        kw = dict(split=f"checkpoint_{lo:02d}:checkpoint_{hi:02d}",
                  selection=f"first:{int(config.data.wm_episodes)}")
    wm_config = config.wm.copy_and_resolve_references()
    wm_config.train.seed = int(config.seed)
    train_world_model(wm_config, data=sources, workdir=layout.wm, progress=progress, log=log,
                      **reader, **kw)
    _stamp_finished(layout.wm, "wm", fields)


def run_seeds(config):
    """The policy seeds: `config.seeds` ("0,1,2"), or just `config.seed`."""
    text = str(config.get("seeds", "") or "").strip()
    if not text:
        return [int(config.seed)]
    try:
        seeds = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise DittoError("Seeds are comma-separated integers", field="config.seeds",
                         expected="e.g. 0,1,2", got=text) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise DittoError("Seeds must be distinct integers", field="config.seeds", got=text)
    return seeds


def _policy_config(config, seed, ne=None):
    pc = config.policy.copy_and_resolve_references()
    pc.seed = int(seed)
    pc.expert_episodes = expert_episode_counts(config)[0] if ne is None else int(ne)
    return pc


def _legacy_policy_fields(workdir, config, method, seed, ne=None):
    """Fields recoverable from a policy trained before stamps existed (its config.json)."""
    meta = _policy_meta(workdir)
    if not meta.get("agent_config"):
        return None
    pc = {k: v for k, v in meta["agent_config"].items() if k not in _POLICY_LOOP}
    fields = policy_fields(config, method, seed, ne)
    fields["policy"] = {k: pc.get(k, v) for k, v in fields["policy"].items()}
    return fields


def _adopt_cell(config, layout, method, seed, ne, log):
    """A cell finished under the other naming (`policies/ditto` from a run with one N_E,
    `policies/ditto-ne1` from a run with several) is moved to this run's name, with its
    evaluation files, when its stamp says it was trained with exactly these settings."""
    from ditto_jax import provenance as prov
    target = layout.policy(method, seed, ne)
    other = layout.policy(method, seed, ne, multi=not layout.multi_ne)
    if os.path.exists(target) or not os.path.isdir(other) or prov.read_stamp(other) is None \
            or prov.stale_fields(other, policy_fields(config, method, seed, ne)):
        return
    os.replace(other, target)
    for rule in ("sample", "greedy"):
        for ck in ("final", "best"):
            src, dst = (os.path.join(layout.eval, layout.name(
                method, seed, rule, ck, ne, multi=m) + ".json")
                for m in (not layout.multi_ne, layout.multi_ne))
            if os.path.exists(src) and not os.path.exists(dst):
                os.replace(src, dst)
    log(f"policy/{layout.name(method, seed, ne=ne)}: reused "
        f"{os.path.basename(other)} (same settings, N_E = {ne})")


def stage_policy(config, layout, *, progress, log):
    """Trains every method x N_E x seed (the cells); the pending seeds of a method and N_E
    train together, vmapped where it pays (those resuming from the same step share one
    program). The expert data is read once and encoded once per seed for all of them."""
    from ditto_jax.methods import get as get_method
    from ditto_jax.stages.train_policy import train_policy_seeds, vmap_pays
    _, expert, reader = data_sources(config, layout)
    kw = dict(reader)
    if config.data.source == "rlu":
        lo, hi = _checkpoint_range(config.data.expert_checkpoints,
                                   "config.data.expert_checkpoints")
        kw["split"] = f"checkpoint_{lo:02d}:checkpoint_{hi:02d}"
    wm_step = _checkpoint_step(layout.wm)
    if wm_step is not None and wm_step != int(config.wm.train.steps):
        raise DittoError(
            "The world model does not hold the updates this run asks for, so the policies "
            "would be labelled with a world model they were not trained on; run the wm "
            "stage first (--stages wm,policy,...)", path=layout.wm,
            field="config.wm.train.steps", expected=wm_step, got=int(config.wm.train.steps))
    cache = {}   # expert episodes and latents, shared by every cell below
    for method in methods_of(config):
        for ne in layout.expert_episodes:
            groups = {}
            for seed in run_seeds(config):
                _adopt_cell(config, layout, method, seed, ne, log)
                pc = _policy_config(config, seed, ne)
                workdir = layout.policy(method, seed, ne)
                name = layout.name(method, seed, ne=ne)
                trained_on = _policy_meta(workdir).get("world_model", {}).get("step")
                if trained_on is not None and trained_on != wm_step:
                    # Trained on an older world model: keep it, but out of the way.
                    stale = f"{workdir}.stale-wm{trained_on}"
                    os.replace(workdir, stale)
                    log(f"policy/{name}: the world model moved on (step {trained_on} -> "
                        f"{wm_step}); retraining (old run kept in {stale})")
                fields = policy_fields(config, method, seed, ne)
                _reuse_or_move_aside(
                    workdir, f"policy/{name}", fields, log,
                    legacy=lambda w=workdir, m=method, sd=seed, n=ne:
                    _legacy_policy_fields(w, config, m, sd, n))
                at = _move_aside_overtrained(workdir, f"policy/{name}",
                                             _checkpoint_step(workdir), int(pc.steps),
                                             log) or 0
                if at == int(pc.steps):
                    _stamp_finished(workdir, f"policy/{name}", fields)
                    log(f"policy/{name}: done ({workdir})")
                    continue
                groups.setdefault(at, {})[seed] = workdir
            for at, workdirs in sorted(groups.items()):
                names = ", ".join(layout.name(method, s, ne=ne) for s in workdirs)
                log(f"policy/{names}: training {config.policy.steps} updates"
                    + (f" on N_E = {ne}" if layout.multi_ne else "")
                    + (f" ({len(workdirs)} seeds vmapped)" if len(workdirs) > 1
                       and get_method(method).vmap_seeds and vmap_pays() else ""))
                pc = _policy_config(config, next(iter(workdirs)), ne)
                train_policy_seeds(pc, method=method, wm=layout.wm, expert=expert,
                                   workdirs=workdirs, progress=progress, log=log,
                                   cache=cache, **kw)
                for seed, workdir in workdirs.items():
                    _stamp_finished(workdir, f"policy/{layout.name(method, seed, ne=ne)}",
                                    policy_fields(config, method, seed, ne))


def _policy_meta(workdir):
    """A policy's config.json ({} before it exists; rebuilt from its checkpoint if deleted)."""
    from ditto_jax import io
    meta = io.read_json(os.path.join(workdir, "config.json"), what="policy config.json",
                        default=None)
    if meta is None and os.path.isdir(os.path.join(workdir, "checkpoints")):
        from ditto_jax.engine.fit import rebuild_config_json  # jax: only when needed
        meta = rebuild_config_json(workdir)
    return meta or {}


# The evaluation stage (imports the helpers above, so imported here, after them).
from ditto_jax.stages.run_eval import (_eval_settings, _expert_spec, _fresh,  # noqa: E402,F401
                                       _write_json, eval_checkpoints, eval_rules,
                                       expert_result, references, stage_eval)


def stage_report(config, layout, *, progress, log, timings=None):
    from ditto_jax import results as results_lib
    return results_lib.write_report(config, layout, timings=timings or {}, log=log)


# ------------------------------------------------------------------------- main
STAGE_FUNCS = {"data": stage_data, "wm": stage_wm, "policy": stage_policy,
               "eval": stage_eval}


def check_pipeline_config(config, stages=STAGES):
    """Every check `ditto run` makes before it touches the workdir (also `ditto sweep
    --dry-run`'s): the game, the stages, value bounds and choices, methods, seeds, rules.
    Sets `config.game` to its canonical name."""
    from ditto_jax.envs.atari import canonical_game
    config.game = canonical_game(config.game)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise DittoError("Unknown pipeline stage", field="--stages",
                         expected=f"a comma-separated subset of {','.join(STAGES)}",
                         got=",".join(unknown))
    from ditto_jax.configs import validate_pipeline_config
    validate_pipeline_config(config)
    from ditto_jax import methods
    for name in methods_of(config):  # each method checks its own block of config.policy
        methods.get(name).resolve_config(config.policy.copy_and_resolve_references())
    run_seeds(config)
    expert_episode_counts(config)
    eval_rules(config)
    eval_checkpoints(config)


def run_pipeline(config, workdir, *, stages=STAGES, progress=True, log=print):
    """Runs the requested stages in order; returns results.json's content (or None)."""
    check_pipeline_config(config, stages)  # fail on bad values before hours of training
    layout = Layout(config, workdir)
    os.makedirs(layout.workdir, exist_ok=True)
    from ditto_jax.io import lock_workdir, read_json
    lock = lock_workdir(layout.workdir, "ditto run")  # one writer per workdir, until return
    _write_json(os.path.join(layout.workdir, "pipeline_config.json"), config.to_dict())
    timings_path = os.path.join(layout.workdir, "stage_seconds.json")
    timings = read_json(timings_path, what="stage timings", default={}, tolerate=True)
    t_start = time.perf_counter()
    todo = [s for s in STAGES if s in stages]
    results = None
    for i, stage in enumerate(todo):
        elapsed = time.perf_counter() - t_start
        log(f"\n=== ditto run [{i + 1}/{len(todo)}] {stage} "
            f"(elapsed {elapsed / 60:.1f} min; workdir {layout.workdir}) ===")
        t0 = time.perf_counter()
        if stage == "report":
            results = stage_report(config, layout, progress=progress, log=log,
                                   timings=timings)
        else:
            STAGE_FUNCS[stage](config, layout, progress=progress, log=log)
            seconds = time.perf_counter() - t0
            # A skipped stage keeps the time it took when it actually ran.
            if seconds > 5 or stage not in timings:
                timings[stage] = seconds
            _write_json(timings_path, timings)
    log(f"ditto run: finished {','.join(todo)} in {(time.perf_counter() - t_start) / 60:.1f} "
        f"min; results in {layout.workdir}")
    lock.release()
    return results


def main(args):
    from ditto_jax import parallel
    from ditto_jax.configs import config_overrides, load_config
    overrides = config_overrides(args.extra_args)
    spec = args.config or f"{DEFAULT_CONFIG}:{args.preset or 'demo'}"
    if args.config and args.preset:
        raise DittoError("Give either --config or --preset, not both", field="--preset")
    config = load_config(spec, overrides)
    if args.game:
        config.game = args.game
    workdir = args.workdir or os.path.join("runs", f"{config.game}_{config.preset}")
    parallel.enable_compilation_cache()
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    run_pipeline(config, workdir, stages=stages, progress=not args.quiet)
    return 0
