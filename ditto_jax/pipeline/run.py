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

from ditto_jax.core import resources
from ditto_jax.core import provenance as prov
from ditto_jax.core.config import config_overrides, load_config
from ditto_jax.core.io import lock_workdir, read_json, write_json
from ditto_jax.data.schema import is_finished_dataset
from ditto_jax.data.source import read_dataset_metadata
from ditto_jax.errors import DittoError
from ditto_jax.pipeline import results as results_lib
from ditto_jax.pipeline.plan import (POLICY_UNSTAMPED, STAGES, Layout, check_pipeline_config,
                                     checkpoint_range, checkpoint_step, data_fields,
                                     data_sources, expert_episode_counts, methods_of,
                                     policy_fields, policy_meta, run_seeds, wm_fields)
from ditto_jax.pipeline.run_eval import stage_eval
from ditto_jax.stages.record import record
from ditto_jax.stages.train_policy import train_policy_seeds
from ditto_jax.stages.train_wm import train_world_model

ACCEPTS_EXTRA_ARGS = True
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = resources.config_path("pipeline.py")  # any cwd, any install


def add_arguments(p):
    p.add_argument("--config", default=None, type=resources.resolve_config_spec,
                   help="pipeline config and preset (default: experiments/configs/"
                        "pipeline.py:demo); override fields with --config.KEY=VALUE")
    p.add_argument("--preset", default=None,
                   choices=["smoke", "demo", "study", "ne", "paper", "breakout_demo",
                            "breakout_ne"],
                   help="shortcut for --config experiments/configs/pipeline.py:PRESET")
    p.add_argument("--game", default=None, help="Atari game (default: the config's)")
    p.add_argument("--workdir", default=None, help="default: runs/GAME_PRESET")
    p.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------- stages
def _reuse_or_move_aside(directory, stage, fields, log, legacy=None):
    """Keeps `directory` if it was produced with `fields`; else moves it aside (the stage
    is then retrained) and says which fields changed. Writes nothing into `directory`:
    the stamp goes onto finished outputs only (`_stamp_finished`), so a vacated folder
    stays absent and the stage starts there from nothing."""
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
    if os.path.isdir(directory) and os.listdir(directory):  # (not on a process that
        prov.write_stamp(directory, stage, fields)           # wrote nothing there)


def _move_aside_overtrained(directory, stage, at, steps, log):
    """A finished stage holding more updates than `steps` asks for is moved aside and
    retrained to `steps`, so the run never labels a longer training with a shorter
    budget. Returns the checkpoint step left in `directory` (None after a move)."""
    if at is None or at <= steps:
        return at
    moved = prov.move_aside(directory, f"{at}steps")
    log(f"{stage}: holds {at} updates, more than the {steps} asked for; retraining "
        f"{steps} (old one kept in {moved})")
    return None


def stage_data(config, layout, *, progress, log):
    """Records the scripted datasets (resuming an interrupted one); RLU needs nothing."""
    d = config.data
    if d.source != "scripted":
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
        if is_finished_dataset(out) or not os.path.isdir(os.path.join(out, ".staging")):
            # (An unfinished recording resumes; the recorder refuses changed arguments.)
            _reuse_or_move_aside(out, f"data/{name}", f, log)
        if is_finished_dataset(out):
            _stamp_finished(out, f"data/{name}", f)  # (a dataset from before stamps)
            log(f"data/{name}: done ({out})")
            continue
        record(game=config.game, policy=f["policy"], episodes=f["episodes"], out=out,
               epsilon=f["epsilon"], protocol=f["protocol"],
               seed=int(config.seed) * 100_000 + seed_offsets[name], max_steps=f["max_steps"],
               size=f["size"], resume=os.path.isdir(os.path.join(out, ".staging")),
               progress=progress, log=log)
        _stamp_finished(out, f"data/{name}", f)


def stage_wm(config, layout, *, progress, log):
    steps = int(config.wm.train.steps)
    fields = wm_fields(config)
    _reuse_or_move_aside(layout.wm, "wm", fields, log)
    at = _move_aside_overtrained(layout.wm, "wm", checkpoint_step(layout.wm), steps, log)
    if at == steps:
        _stamp_finished(layout.wm, "wm", fields)
        log(f"wm: done ({layout.wm}, {steps} steps)")
        return
    sources, _, reader = data_sources(config, layout)
    kw = {}
    if config.data.source == "rlu":
        lo, hi = checkpoint_range(config.data.wm_checkpoints, "config.data.wm_checkpoints")
        kw = dict(split=f"checkpoint_{lo:02d}:checkpoint_{hi:02d}",
                  selection=f"first:{int(config.data.wm_episodes)}")
    wm_config = config.wm.copy_and_resolve_references()
    wm_config.train.seed = int(config.seed)
    train_world_model(wm_config, data=sources, workdir=layout.wm, progress=progress, log=log,
                      **reader, **kw)
    _stamp_finished(layout.wm, "wm", fields)


def _policy_config(config, seed, ne=None):
    pc = config.policy.copy_and_resolve_references()
    pc.seed = int(seed)
    pc.expert_episodes = expert_episode_counts(config)[0] if ne is None else int(ne)
    return pc


def _legacy_policy_fields(workdir, config, method, seed, ne=None):
    """Fields recoverable from a policy trained before stamps existed (its config.json)."""
    meta = policy_meta(workdir)
    if not meta.get("agent_config"):
        return None
    pc = {k: v for k, v in meta["agent_config"].items() if k not in POLICY_UNSTAMPED}
    fields = policy_fields(config, method, seed, ne)
    fields["policy"] = {k: pc.get(k, v) for k, v in fields["policy"].items()}
    return fields


def _adopt_cell(config, layout, method, seed, ne, log):
    """A cell finished under the other naming (`policies/ditto` from a run with one N_E,
    `policies/ditto-ne1` from a run with several) is moved to this run's name, with its
    evaluation files, when its stamp says it was trained with exactly these settings."""
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
    # jax: imported on use, never by --help
    from ditto_jax.methods import get as get_method
    from ditto_jax.stages.policy_loop import vmap_pays
    _, expert, reader = data_sources(config, layout)
    kw = dict(reader)
    if config.data.source == "rlu":
        lo, hi = checkpoint_range(config.data.expert_checkpoints,
                                   "config.data.expert_checkpoints")
        kw["split"] = f"checkpoint_{lo:02d}:checkpoint_{hi:02d}"
    wm_step = checkpoint_step(layout.wm)
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
                trained_on = policy_meta(workdir).get("world_model", {}).get("step")
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
                                             checkpoint_step(workdir), int(pc.steps),
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


def stage_report(config, layout, *, progress, log, timings=None):
    return results_lib.write_report(config, layout, timings=timings or {}, log=log)


# ------------------------------------------------------------------------- main
STAGE_FUNCS = {"data": stage_data, "wm": stage_wm, "policy": stage_policy,
               "eval": stage_eval}


def run_pipeline(config, workdir, *, stages=STAGES, progress=True, log=print):
    """Runs the requested stages in order; returns results.json's content (or None)."""
    check_pipeline_config(config, stages)  # fail on bad values before hours of training
    layout = Layout(config, workdir)
    os.makedirs(layout.workdir, exist_ok=True)
    lock = lock_workdir(layout.workdir, "ditto run")  # one writer per workdir, until return
    write_json(os.path.join(layout.workdir, "pipeline_config.json"), config.to_dict())
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
            write_json(timings_path, timings)
    log(f"ditto run: finished {','.join(todo)} in {(time.perf_counter() - t_start) / 60:.1f} "
        f"min; results in {layout.workdir}")
    lock.release()
    return results


def main(args):
    from ditto_jax.core import parallel  # jax: imported on use, never by --help
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
