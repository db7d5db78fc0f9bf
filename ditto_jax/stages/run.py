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
import glob
import json
import os
import shutil
import time

import numpy as np

from ditto_jax.errors import DittoError

ACCEPTS_EXTRA_ARGS = True
STAGES = ("data", "wm", "policy", "eval", "report")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = os.path.join(REPO_ROOT, "experiments", "configs", "pipeline.py")
# RL Unplugged's config names ({Game}_run_{n}).
RLU_NAMES = {"pong": "Pong", "breakout": "Breakout", "mspacman": "MsPacman",
             "beamrider": "BeamRider", "qbert": "Qbert", "spaceinvaders": "SpaceInvaders"}


def add_arguments(p):
    p.add_argument("--config", default=None,
                   help="pipeline config and preset (default: experiments/configs/"
                        "pipeline.py:demo); override fields with --config.KEY=VALUE")
    p.add_argument("--preset", default=None, choices=["smoke", "demo", "paper"],
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

    def policy(self, method):
        return os.path.join(self.workdir, "policies", method)


def methods_of(config):
    from ditto_jax.stages.train_policy import METHODS
    methods = [m.strip() for m in str(config.methods).split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise DittoError("Unknown imitation method", field="config.methods",
                         expected=f"a comma-separated subset of {','.join(METHODS)}",
                         got=config.methods)
    return methods


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
    plan = [("expert", d.expert_policy, 0.0, d.expert_episodes, 0),
            ("noisy", d.noisy_policy or d.expert_policy, d.noisy_epsilon, d.noisy_episodes,
             10_000),
            ("random", "random", 0.0, d.random_episodes, 20_000)]
    for name, policy, epsilon, episodes, seed_offset in plan:
        out = os.path.join(layout.data, name)
        if episodes <= 0:
            continue
        if _is_finished_dataset(out):
            log(f"data/{name}: done ({out})")
            continue
        record(game=config.game, policy=policy, episodes=int(episodes), out=out,
               epsilon=float(epsilon), protocol=d.protocol,
               seed=int(config.seed) * 100_000 + seed_offset, max_steps=int(d.max_steps),
               size=int(d.size), resume=os.path.isdir(os.path.join(out, ".staging")),
               progress=progress, log=log)


def _checkpoint_step(workdir):
    from ditto_jax import checkpoint as ckpt_lib
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return None
    ckpt = ckpt_lib.Checkpointer(directory, read_only=True)
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


def stage_wm(config, layout, *, progress, log):
    from ditto_jax.stages.train_wm import train_world_model
    steps = int(config.wm.train.steps)
    if (_checkpoint_step(layout.wm) or 0) >= steps:
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


def _policy_config(config):
    pc = config.policy.copy_and_resolve_references()
    pc.seed = int(config.seed)
    pc.expert_episodes = int(config.expert_episodes)
    return pc


def stage_policy(config, layout, *, progress, log):
    from ditto_jax.stages.train_policy import train_policy
    _, expert, reader = data_sources(config, layout)
    kw = dict(reader)
    if config.data.source == "rlu":
        lo, hi = _checkpoint_range(config.data.expert_checkpoints,
                                   "config.data.expert_checkpoints")
        kw["split"] = f"checkpoint_{lo:02d}:checkpoint_{hi:02d}"
    wm_step = _checkpoint_step(layout.wm)
    for method in methods_of(config):
        pc = _policy_config(config)
        workdir = layout.policy(method)
        trained_on = _policy_meta(workdir).get("world_model", {}).get("step")
        if trained_on is not None and trained_on != wm_step:
            # Trained on an older world model: keep it, but out of the way.
            stale = f"{workdir}.stale-wm{trained_on}"
            os.replace(workdir, stale)
            log(f"policy/{method}: the world model moved on (step {trained_on} -> {wm_step}); "
                f"retraining (old run kept in {stale})")
        if (_checkpoint_step(workdir) or 0) >= int(pc.steps):
            log(f"policy/{method}: done ({workdir})")
            continue
        log(f"policy/{method}: training {pc.steps} updates")
        train_policy(pc, method=method, wm=layout.wm, expert=expert, workdir=workdir,
                     progress=progress, log=log, **kw)


def _policy_meta(workdir):
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _eval_settings(config):
    e = config.eval
    return {"episodes": int(e.episodes), "protocol": str(e.protocol),
            "max_steps": int(e.max_steps), "greedy": bool(e.greedy),
            "seed": 12_345 + 1_000 * int(config.seed)}


def _fresh(path, settings):
    """The evaluation file at `path`, if it was made with these settings."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        result = json.load(f)
    return result if result.get("settings") == settings else None


def _write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=float)
    os.replace(tmp, path)  # a killed run never leaves a half-written result


def stage_eval(config, layout, *, progress, log):
    from ditto_jax.stages.evaluate import evaluate_workdir
    base_settings = _eval_settings(config)
    for method in methods_of(config):
        out = os.path.join(layout.eval, f"{method}.json")
        # An evaluation is redone when the policy or its world model has changed since.
        settings = dict(base_settings, policy_step=_checkpoint_step(layout.policy(method)),
                        wm_step=_policy_meta(layout.policy(method)).get(
                            "world_model", {}).get("step"))
        if _fresh(out, settings):
            log(f"eval/{method}: done")
            continue
        t0 = time.perf_counter()
        result = evaluate_workdir(layout.policy(method), episodes=settings["episodes"],
                                  envs=int(config.eval.envs), protocol=settings["protocol"],
                                  seed=settings["seed"], greedy=settings["greedy"],
                                  max_steps=settings["max_steps"],
                                  video=bool(config.eval.video) and method == "ditto")
        result["settings"] = settings
        _write_json(out, result)
        log(f"eval/{method}: return {result['return_mean']:.2f} ± {result['return_se']:.2f}, "
            f"length {result['length_mean']:.0f} ({time.perf_counter() - t0:.0f} s)")
    settings = base_settings
    out = os.path.join(layout.eval, "random.json")
    if not _fresh(out, settings):
        result = evaluate_random(config, layout, settings)
        _write_json(out, result)
        log(f"eval/random: return {result['return_mean']:.2f} ± {result['return_se']:.2f}")
    out = os.path.join(layout.eval, "expert.json")
    if not _fresh(out, settings):
        result = expert_result(config, layout, settings)
        _write_json(out, result)
        log(f"eval/expert: return {result['return_mean']:.2f} ± {result['return_se']:.2f} "
            f"({result['source']})")


class RandomAgent:
    """Uniform random actions: the random-play row of every results table."""

    def __init__(self, num_actions, seed):
        self.num_actions, self.rng = num_actions, np.random.default_rng(seed)

    def init(self, num_envs):
        return None

    def act(self, carry, obs, is_first, key):
        return carry, self.rng.integers(self.num_actions, size=len(obs))


def evaluate_random(config, layout, settings):
    from ditto_jax.envs import atari
    from ditto_jax.envs.vector import make_vector_env
    from ditto_jax.evaluation import run_episodes, summarize
    game = atari.canonical_game(config.game)
    size = (int(config.data.size),) * 2
    agent = RandomAgent(len(atari.action_meanings(game)), settings["seed"])
    returns, lengths, _ = run_episodes(
        lambda n: make_vector_env(game, n, settings["protocol"], size=size,
                                  seed=settings["seed"]),
        agent, episodes=settings["episodes"], num_envs=int(config.eval.envs),
        seed=settings["seed"], max_steps=settings["max_steps"])
    result = summarize(returns, lengths, game=game, protocol=settings["protocol"],
                       expert_return=_expert_return(layout))
    return dict(result, method="random", settings=settings)


def _expert_return(layout):
    path = os.path.join(layout.eval, "expert.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)["return_mean"]
    return None


def expert_result(config, layout, settings):
    """The expert's row: the returns of its demonstrations, played in the real game.

    The scripted expert's episodes were recorded under the data protocol by the same
    emulator, so their returns are real-game evaluations; replaying them costs minutes.
    """
    from ditto_jax.data.rlds import dataset_summary
    from ditto_jax.evaluation import summarize
    _, expert, reader = data_sources(config, layout)
    kw = {}
    if config.data.source == "rlu":
        lo, hi = _checkpoint_range(config.data.expert_checkpoints,
                                   "config.data.expert_checkpoints")
        kw = dict(split=f"checkpoint_{lo:02d}:checkpoint_{hi:02d}",
                  selection=f"top:{int(config.data.expert_episodes)}")
    summary = dataset_summary(expert, **reader, **kw)
    returns = summary["returns"]
    result = summarize(returns, summary["lengths"], game=config.game,
                       protocol=str(config.data.protocol), expert_return=float(np.mean(returns)))
    source = (f"{len(returns)} recorded demonstrations ({summary.get('policy', 'expert')}, "
              f"{config.data.protocol} protocol, at most {config.data.max_steps} steps)")
    return dict(result, method="expert", source=source, settings=settings)


# ----------------------------------------------------------------------- report
ROW_ORDER = ("expert", "ditto", "dgail", "dbc", "bc", "random")
LABELS = {"expert": "Expert", "ditto": "DITTO", "dgail": "D-GAIL", "dbc": "D-BC",
          "bc": "BC (pixels)", "random": "Random"}


def collect_rows(config, layout):
    """One row per evaluated method, the expert and random, normalised to this expert."""
    from ditto_jax.evaluation import normalized
    rows = {}
    for name in ROW_ORDER:
        path = os.path.join(layout.eval, f"{name}.json")
        if os.path.exists(path) and (name in ("expert", "random") or
                                      name in methods_of(config)):
            with open(path) as f:
                rows[name] = json.load(f)
    if "expert" not in rows or "random" not in rows:
        raise DittoError("The evaluation stage has not finished", path=layout.eval,
                         expected="eval/expert.json and eval/random.json (run --stages eval)")
    expert, random = rows["expert"]["return_mean"], rows["random"]["return_mean"]
    out = []
    for name, r in rows.items():
        out.append({
            "method": name, "label": LABELS[name], "protocol": r["protocol"],
            "episodes": r["episodes"], "return_mean": r["return_mean"],
            "return_se": r["return_se"], "length_mean": r["length_mean"],
            "returns": r["returns"], "lengths": r["lengths"],
            "expert_return": expert, "random_return": random,
            # Normalised against this run's own expert and random rows (SPEC §6).
            "expert_normalized": normalized(r["return_mean"], random, expert),
            "human_normalized": r.get("human_normalized"),
            "source": r.get("source", "real-game evaluation"),
        })
    return out


def stage_report(config, layout, *, progress, log, timings=None):
    rows = collect_rows(config, layout)
    timings = timings or {}
    results = {
        "game": config.game, "seed": int(config.seed), "preset": config.preset,
        "protocol": str(config.eval.protocol), "expert_episodes": _n_expert(config, layout),
        "horizon": int(config.policy.horizon), "reward": str(config.policy.reward),
        "rows": rows, "stage_seconds": timings,
        "wall_time_s": float(sum(timings.values())),
        "config": config.to_dict(),
    }
    md = results_markdown(results)
    with open(os.path.join(layout.workdir, "results.md"), "w") as f:
        f.write(md)
    os.makedirs(layout.plots, exist_ok=True)
    artefacts = {"bar_chart": plot_scores(rows, os.path.join(layout.plots, "scores.png"),
                                          title=f"{config.game} ({config.preset})")}
    artefacts["learning_curves"] = plot_learning_curves(config, layout)
    artefacts.update(copy_media(layout))
    results["artefacts"] = {k: os.path.relpath(v, layout.workdir) for k, v in artefacts.items()
                            if v}
    # results.json last: its presence means the run finished (sweeps skip such runs).
    _write_json(os.path.join(layout.workdir, "results.json"), results)
    log(md)
    return results


def _n_expert(config, layout):
    if int(config.expert_episodes) > 0:
        return int(config.expert_episodes)
    for method in methods_of(config):
        path = os.path.join(layout.policy(method), "config.json")
        if os.path.exists(path):
            with open(path) as f:
                return int(json.load(f)["expert"]["episodes"])
    return None


def results_markdown(results):
    def fmt(x, spec=".2f"):
        return "—" if x is None else format(x, spec)
    lines = [f"# {results['game']}: DITTO and baselines ({results['preset']} preset, "
             f"seed {results['seed']})", "",
             f"N_E = {results['expert_episodes']} expert episodes; evaluation protocol "
             f"`{results['protocol']}`; expert-normalised = (return - random) / "
             f"(expert - random) with this table's expert and random rows.", "",
             "| method | return (mean ± s.e.) | episode length | expert-normalised | "
             "human-normalised | episodes | protocol |",
             "|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        lines.append(f"| {r['label']} | {r['return_mean']:.2f} ± {r['return_se']:.2f} | "
                     f"{r['length_mean']:.0f} | {fmt(r['expert_normalized'], '.3f')} | "
                     f"{fmt(r['human_normalized'], '.3f')} | {r['episodes']} | "
                     f"{r['protocol']} |")
    expert = next(r for r in results["rows"] if r["method"] == "expert")
    lines += ["", f"Expert row: {expert['source']}.",
              f"Wall time: {results['wall_time_s'] / 60:.1f} min "
              f"({', '.join(f'{k} {v / 60:.1f}' for k, v in results['stage_seconds'].items())}"
              f" min) in the last invocation of each stage.", ""]
    return "\n".join(lines)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_scores(rows, path, *, title):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [r["label"] for r in rows]
    scores = [r["expert_normalized"] or 0.0 for r in rows]
    span = (rows[0]["expert_return"] - rows[0]["random_return"]) or 1.0
    errors = [r["return_se"] / abs(span) for r in rows]
    ax.bar(labels, scores, yerr=errors, capsize=3,
           color=["#4c72b0" if r["method"] not in ("expert", "random") else "#999999"
                  for r in rows])
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("expert-normalised score")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _read_metrics(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_learning_curves(config, layout):
    """World-model losses and each method's training signal against updates."""
    plt = _pyplot()
    methods = methods_of(config)
    fig, axes = plt.subplots(1, 1 + len(methods), figsize=(3.2 * (1 + len(methods)), 3))
    wm = _read_metrics(layout.wm)
    ax = axes[0]
    for key in ("image_loss", "val/image_loss"):
        pts = [(m["step"], m[key]) for m in wm if key in m]
        if pts:
            ax.plot(*zip(*pts), label=key)
    ax.set_yscale("log")
    ax.set_title("world model")
    ax.set_xlabel("update")
    ax.legend(fontsize=7)
    signals = {"ditto": "reward", "dgail": "reward", "dbc": "bc_loss", "bc": "bc_loss"}
    for ax, method in zip(axes[1:], methods):
        ms = _read_metrics(layout.policy(method))
        for key in (signals[method], "heldout_action_accuracy", "accuracy"):
            pts = [(m["step"], m[key]) for m in ms if key in m]
            if pts:
                ax.plot(*zip(*pts), label=key)
        ax.set_title(LABELS[method])
        ax.set_xlabel("update")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(layout.plots, "learning_curves.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def copy_media(layout):
    """The DITTO agent's video and the latest dream-vs-real strip, at the workdir's top."""
    out = {}
    videos = sorted(glob.glob(os.path.join(layout.policy("ditto"), "eval_*.mp4")) +
                    glob.glob(os.path.join(layout.policy("ditto"), "eval_*.gif")))
    if videos:
        dst = os.path.join(layout.workdir, "ditto_agent" + os.path.splitext(videos[-1])[1])
        shutil.copyfile(videos[-1], dst)
        out["video"] = dst
    strips = sorted(glob.glob(os.path.join(layout.wm, "strips", "open_loop_*.png")))
    if strips:
        for ext in (".png", ".gif"):
            src = os.path.splitext(strips[-1])[0] + ext
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(layout.workdir, "dream_vs_real" + ext))
        out["dream_vs_real"] = os.path.join(layout.workdir, "dream_vs_real.png")
    return out


# ------------------------------------------------------------------------- main
STAGE_FUNCS = {"data": stage_data, "wm": stage_wm, "policy": stage_policy,
               "eval": stage_eval}


def run_pipeline(config, workdir, *, stages=STAGES, progress=True, log=print):
    """Runs the requested stages in order; returns results.json's content (or None)."""
    from ditto_jax.envs.atari import canonical_game
    config.game = canonical_game(config.game)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise DittoError("Unknown pipeline stage", field="--stages",
                         expected=f"a comma-separated subset of {','.join(STAGES)}",
                         got=",".join(unknown))
    methods_of(config)  # fail on a bad method list before hours of training
    layout = Layout(config, workdir)
    os.makedirs(layout.workdir, exist_ok=True)
    _write_json(os.path.join(layout.workdir, "pipeline_config.json"), config.to_dict())
    timings_path = os.path.join(layout.workdir, "stage_seconds.json")
    timings = {}
    if os.path.exists(timings_path):
        with open(timings_path) as f:
            timings = json.load(f)
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
