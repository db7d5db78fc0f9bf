"""Results of one `ditto run`: the versioned `results.json` schema, tables and plots.

One row per (method, action rule), aggregated over the run's policy seeds:

  method, base_method, label, rule        ("ditto-greedy" is DITTO evaluated greedily)
  seeds, episodes                         policy seeds, evaluation episodes in all
  return_mean, return_se                  over all seeds x episodes
  iqm, iqm_ci                             IQM of the episode returns, 95% stratified-
                                          bootstrap CI (episodes resampled within seeds)
  expert_normalized_iqm, expert_normalized_ci
                                          THE expert-normalised score of a row (the
                                          tables' and plots'): the IQM over seeds x
                                          episodes of each episode's (return - random) /
                                          (expert - random), rliable's IQM, with its 95%
                                          stratified-bootstrap CI; the references are
                                          those measured at that seed's evaluation
                                          (evaluation.reference_returns); null where no
                                          comparable expert reference exists
  expert_normalized_mean_of_seed_means    the mean over seeds of each seed's
                                          expert-normalised mean return (per_seed's
                                          expert_normalized_mean); not in the tables
  human_normalized                        null when any episode was capped
  expert_agreement                        on-policy agreement with the scripted expert
  expert_prob_on_policy, argmax_agreement_on_policy
                                          in the same learner states: E[pi(a_E|s)], and
                                          how often argmax pi is the expert's action
  heldout_action_accuracy, heldout_expert_prob, final_entropy
                                          the policy on held-out expert states
  per_seed                                the same per seed
  ran                                     what actually ran (read from the policy's own
                                          config.json): horizon, reward, ... and steps

Every field is read from what ran (the policies' saved configs, the evaluation files),
never from the config asked for.
"""
import glob
import json
import os
import shutil

import numpy as np

from ditto_jax.core.io import read_json, read_jsonl, write_json
from ditto_jax.core.provenance import config_hash, provenance
from ditto_jax.errors import DittoError
from ditto_jax.pipeline.plan import (eval_checkpoints, eval_rules, expert_episode_counts,
                                     featured_method, methods_of, run_seeds)
from ditto_jax.report.plots import plot_ne_curve
from ditto_jax.report.run_results import (REFERENCES, SCHEMA_VERSION, baselines, label,
                                          ne_tables, results_markdown)
from ditto_jax.report.stats import iqm_ci, probability_of_improvement
from ditto_jax.stages.evaluate import reference_source


def _order(name):
    from ditto_jax import methods  # jax: imported here to keep it out of --help
    return methods.get(name).order if name in methods.names() else 50


_RAN_KEYS = ("horizon", "reward", "latent", "entropy", "entropy_final", "first_step",
             "standardize_advantages", "batch_size", "bc_init_steps", "critic_warmup_steps",
             "expert_episodes")


def _load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _metrics(workdir):
    # a torn last line is dropped, not fatal
    return read_jsonl(os.path.join(workdir, "metrics.jsonl"), default=[])


def _last(metrics, key):
    vals = [m[key] for m in metrics if key in m]
    return float(vals[-1]) if vals else None


def _normalise(returns, ref):
    exp, rnd = ref
    if exp is None or rnd is None or np.isclose(exp, rnd):
        return None
    return [(r - rnd) / (exp - rnd) for r in returns]


# The evaluation's on-policy diagnostics (evaluation.ExpertAgreement), averaged over seeds.
_ON_POLICY = ("expert_agreement", "expert_prob_on_policy", "argmax_agreement_on_policy")


def _mean_or_none(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def aggregate_row(name, label, per_seed_evals, *, rule, base, policies=None,
                  checkpoint="final"):
    """One table row from per-seed evaluation results (each a `ditto eval` result).
    `checkpoint` "best": the held-out diagnostics are those logged at each seed's selected
    step (recorded in its evaluation), not the last ones."""
    per_seed, returns_by_seed, norm_by_seed = [], [], []
    for seed, r in per_seed_evals:
        pol = (policies or {}).get(seed) or {}
        if checkpoint == "best" and pol.get("workdir"):
            pol = policy_record(pol["workdir"], step=(r.get("checkpoint") or {}).get("step"))
        norm = _normalise(r["returns"], (r.get("expert_return"), r.get("random_return")))
        returns_by_seed.append(r["returns"])
        if norm is not None:
            norm_by_seed.append(norm)
        per_seed.append({
            "seed": seed, "return_mean": r["return_mean"], "return_se": r["return_se"],
            "length_mean": r["length_mean"], "episodes": r["episodes"],
            "expert_normalized_mean": r.get("expert_normalized_mean",
                                            r.get("expert_normalized")),  # older eval files
            "human_normalized": r.get("human_normalized"),
            **{k: r.get(k) for k in _ON_POLICY},
            "expert_return": r.get("expert_return"), "random_return": r.get("random_return"),
            **pol.get("diagnostics", {})})
    returns = [x for rs in returns_by_seed for x in rs]
    lengths = [x for _, r in per_seed_evals for x in r["lengths"]]
    n = len(returns)
    iqm, ci = iqm_ci(returns_by_seed)
    niqm, nci = (iqm_ci(norm_by_seed) if len(norm_by_seed) == len(per_seed_evals)
                 else (None, None))
    first = per_seed_evals[0][1]
    row = {
        "method": name, "base_method": base, "label": label, "rule": rule,
        "checkpoint": checkpoint,
        "checkpoint_steps": [(r.get("checkpoint") or {}).get("step")
                             for _, r in per_seed_evals],
        "protocol": first["protocol"], "max_steps": first.get("max_steps"),
        "seeds": [s for s, _ in per_seed_evals], "episodes": n,
        "returns": returns, "lengths": lengths,
        "return_mean": float(np.mean(returns)),
        "return_se": float(np.std(returns, ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
        "length_mean": float(np.mean(lengths)),
        "iqm": iqm, "iqm_ci": ci,
        "expert_normalized_mean_of_seed_means": _mean_or_none(
            [p["expert_normalized_mean"] for p in per_seed]),
        "expert_normalized_iqm": niqm, "expert_normalized_ci": nci,
        "human_normalized": (None if any(p["human_normalized"] is None for p in per_seed)
                             else _mean_or_none([p["human_normalized"] for p in per_seed])),
        **{k: _mean_or_none([p[k] for p in per_seed]) for k in _ON_POLICY},
        "source": first.get("source", "real-game evaluation"),
        "per_seed": per_seed,
    }
    for key in ("heldout_action_accuracy", "heldout_expert_prob", "final_entropy"):
        row[key] = _mean_or_none([p.get(key) for p in per_seed])
    if any(p.get("disc_alarm") is not None for p in per_seed):
        row["disc_alarm"] = [p.get("disc_alarm") for p in per_seed]  # per seed, in order
    if policies:
        ran = [p.get("ran") for p in policies.values() if p.get("ran")]
        row["ran"] = ran[0] if ran and all(r == ran[0] for r in ran) else ran
    return row


def windowed_alarm(metrics, last_step, window):
    """The fraction of the logged updates in the last `window` steps that raised the
    adversarial methods' `disc_alarm` (D-GAIL's discriminator collapsed or dominant,
    methods/imagination.py); None for a method that logs no such alarm. Judged over a
    window, not the last logged update alone, so one noisy log neither raises nor hides
    it."""
    logged = [m for m in metrics if "disc_alarm" in m and "step" in m]
    if not logged or last_step is None:
        return None
    window = int(window or 0) or 1
    recent = [m for m in logged if m["step"] > int(last_step) - window] or logged[-1:]
    return float(np.mean([float(m["disc_alarm"]) for m in recent]))


def policy_record(workdir, step=None):
    """What a trained policy actually was: its saved config and last diagnostics (those
    logged up to `step`, if given: a selected checkpoint's)."""
    meta = read_json(os.path.join(workdir, "config.json"), what="policy config.json",
                     default=None)
    if meta is None and os.path.isdir(os.path.join(workdir, "checkpoints")):
        from ditto_jax.engine.fit import rebuild_config_json  # jax: only when needed
        meta = rebuild_config_json(workdir)
    meta = meta or {}
    ms = _metrics(workdir)
    if step is not None:
        ms = [m for m in ms if m.get("step", 0) <= int(step)]
    steps = max([m["step"] for m in ms if "step" in m], default=None)
    cfg = meta.get("agent_config") or {}
    ran = {k: cfg[k] for k in _RAN_KEYS if k in cfg}
    ran.update(steps=steps, world_model_step=meta.get("world_model", {}).get("step"),
               expert_episodes_used=meta.get("expert", {}).get("episodes"))
    entropy = _last(ms, "heldout_entropy")
    diagnostics = {"heldout_action_accuracy": _last(ms, "heldout_action_accuracy"),
                   "heldout_expert_prob": _last(ms, "heldout_expert_prob"),
                   "final_entropy": entropy if entropy is not None else _last(ms, "entropy"),
                   "train_entropy": _last(ms, "entropy"),
                   "disc_alarm": windowed_alarm(ms, steps, cfg.get("collapse_window"))}
    return {"ran": ran, "diagnostics": diagnostics, "meta": meta, "workdir": workdir}


def collect_rows(config, layout):
    """Rows for every method x rule (aggregated over seeds), then the expert and random."""
    seeds = run_seeds(config)
    refs = {}
    for name in ("expert", "random"):
        per = []
        for seed in seeds:
            r = _load(os.path.join(layout.eval, f"{name}{layout.seed_suffix(seed)}.json"))
            if r is None:
                raise DittoError("The evaluation stage has not finished", path=layout.eval,
                                 expected=f"{name}{layout.seed_suffix(seed)}.json "
                                          "(run --stages eval)")
            per.append((seed, r))
        refs[name] = per
    rows = {}
    ne_values = expert_episode_counts(config)
    for method in methods_of(config):
        for ne in ne_values:
            policies = {s: policy_record(layout.policy(method, s, ne)) for s in seeds}
            for rule in eval_rules(config):
                for ck in eval_checkpoints(config, method):
                    per = []
                    for seed in seeds:
                        fname = f"{layout.name(method, seed, rule, ck, ne)}.json"
                        r = _load(os.path.join(layout.eval, fname))
                        if r is None:
                            raise DittoError("The evaluation stage has not finished",
                                             path=layout.eval,
                                             expected=f"{fname} (run --stages eval)")
                        per.append((seed, r))
                    name = layout.name(method, layout.primary_seed, rule, ck, ne)
                    rows[name] = aggregate_row(
                        name, label(method) + (" [best held-out ckpt]" if ck == "best"
                                               else ""),
                        per, rule=rule, base=method, policies=policies, checkpoint=ck)
                    rows[name]["expert_episodes"] = _row_ne(rows[name], ne)
    out = [aggregate_row("expert", label("expert"), refs["expert"], rule="scripted",
                         base="expert")]
    rule_order = {r: i for i, r in enumerate(eval_rules(config))}
    ne_order = {n: i for i, n in enumerate(ne_values)}
    out += sorted(rows.values(), key=lambda r: (ne_order.get(r["ne_asked"], 0),
                                               _order(r["base_method"]),
                                               rule_order.get(r["rule"], 9),
                                               r.get("checkpoint") == "best"))
    out.append(aggregate_row("random", label("random"), refs["random"], rule="uniform",
                             base="random"))
    for r in (out[0], out[-1]):
        r["expert_episodes"] = None   # the references saw no N_E
    # Comparisons against the baselines, same rule, checkpoint and N_E, over all seeds x
    # episodes.
    by = {(r["base_method"], r["rule"], r.get("checkpoint"), r.get("ne_asked")): r
          for r in out}
    for r in out:
        if r["base_method"] in tuple(REFERENCES) + baselines():
            continue
        key = (r["rule"], r.get("checkpoint"), r.get("ne_asked"))
        r["improvement_over"] = {
            b: probability_of_improvement(r["returns"], by[(b,) + key]["returns"])
            for b in baselines() if (b,) + key in by}
    return out


def _row_ne(row, asked):
    """A row's N_E: the expert episodes its policies actually trained on (their saved
    config), which is the N_E asked for unless that was 0 (all)."""
    row["ne_asked"] = int(asked)
    ran = row.get("ran")
    used = {r.get("expert_episodes_used") for r in (ran if isinstance(ran, list) else [ran])
            if isinstance(r, dict)} - {None}
    return used.pop() if len(used) == 1 else int(asked)


# -------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_scores(rows, path, *, title):
    """Expert-normalised IQM per row, with its 95% stratified-bootstrap CI as error bars."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    labels = [f"{r['label']}\n({r['rule']})" for r in rows]
    points, lows, highs = [], [], []
    for r in rows:
        p, ci = r["expert_normalized_iqm"], r["expert_normalized_ci"]
        points.append(p if p is not None else 0.0)
        lows.append(p - ci[0] if ci else 0.0)
        highs.append(ci[1] - p if ci else 0.0)
    ax.bar(range(len(rows)), points, yerr=[lows, highs], capsize=3,
           color=["#999999" if r["base_method"] in ("expert", "random") else "#4c72b0"
                  for r in rows])
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("expert-normalised score (IQM)")
    ax.set_title(title, fontsize=9)
    ax.text(0.99, 0.97, "error bars: 95% stratified-bootstrap CI\nover seeds x episodes",
            transform=ax.transAxes, ha="right", va="top", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_learning_curves(config, layout, path):
    """World-model losses (image, KL, entropies) and each method's training signals."""
    plt = _pyplot()
    methods = methods_of(config)
    fig, axes = plt.subplots(1, 2 + len(methods), figsize=(3.2 * (2 + len(methods)), 3))
    wm = _metrics(layout.wm)
    for ax, keys, title in ((axes[0], ("image_loss", "val/image_loss"), "world model: image"),
                            (axes[1], ("kl_prior", "kl_post", "prior_entropy",
                                       "post_entropy"), "world model: KL, entropy (nats)")):
        for key in keys:
            pts = [(m["step"], m[key]) for m in wm if key in m]
            if pts:
                ax.plot(*zip(*pts), label=key)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("update")
        ax.legend(fontsize=6)
    for ax, method in zip(axes[2:], methods):
        ms = _metrics(layout.policy(method))
        for key in ("reward", "bc_loss", "entropy", "heldout_action_accuracy",
                    "heldout_expert_prob", "accuracy"):
            pts = [(m["step"], m[key]) for m in ms if key in m]
            if pts:
                ax.plot(*zip(*pts), label=key)
        ax.set_title(f"{label(method)} (seed {config.seed})", fontsize=8)
        ax.set_xlabel("update")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def copy_media(config, layout):
    """The featured agent's video (the first method of `config.methods`, usually DITTO)
    and the latest dream-vs-real strip, at the workdir's top as ditto_agent.* and
    dream_vs_real.*."""
    out = {}
    featured = layout.policy(featured_method(config))
    videos = sorted(glob.glob(os.path.join(featured, "eval_*.mp4")) +
                    glob.glob(os.path.join(featured, "eval_*.gif")))
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


def _references(rows, layout):
    expert = next(r for r in rows if r["method"] == "expert")
    return [{"seed": p["seed"], "expert": p["expert_return"], "random": p["random_return"],
             "source": reference_source(layout.workdir, layout.seed_suffix(p["seed"]),
                                        expert.get("source"))}
            for p in expert["per_seed"]]


def write_report(config, layout, *, timings, log=print):
    """results.json (written last: its presence means the run finished), results.md, plots."""
    rows = collect_rows(config, layout)
    seeds = run_seeds(config)
    learners = [r for r in rows if r["base_method"] not in ("expert", "random")]
    featured = next((r for r in learners if r["base_method"] == featured_method(config)),
                    learners[0] if learners else {})
    ran = featured.get("ran") or {}
    if isinstance(ran, list):
        ran = ran[0] if ran else {}
    used = {r["ran"]["expert_episodes_used"] for r in learners
            if isinstance(r.get("ran"), dict) and r["ran"].get("expert_episodes_used")}
    results = {
        "schema_version": SCHEMA_VERSION,
        "game": config.game, "seed": int(config.seed), "seeds": seeds,
        "preset": config.preset, "protocol": rows[0]["protocol"],
        "max_steps": rows[0]["max_steps"],
        "episodes_per_seed": rows[0]["episodes"] // max(len(seeds), 1),
        # Read from what ran (the policies' saved configs), not from the config asked for.
        "expert_episodes": used.pop() if len(used) == 1 else sorted(used) or None,
        "horizon": ran.get("horizon"), "reward": ran.get("reward"),
        # The one reference of every expert-normalised score, per seed (`ditto eval` on
        # these policies names and uses the same).
        "reference": _references(rows, layout),
        "rows": rows, "stage_seconds": timings,
        "wall_time_s": float(sum(timings.values())),
        "config": config.to_dict(), "config_hash": config_hash(config.to_dict()),
        "provenance": provenance(config.to_dict(), seeds=seeds),
    }
    md = results_markdown(results)
    with open(os.path.join(layout.workdir, "results.md"), "w") as f:
        f.write(md)
    os.makedirs(layout.plots, exist_ok=True)
    artefacts = {"bar_chart": plot_scores(rows, os.path.join(layout.plots, "scores.png"),
                                          title=f"{config.game} ({config.preset})"),
                 "learning_curves": plot_learning_curves(
                     config, layout, os.path.join(layout.plots, "learning_curves.png"))}
    if len(ne_tables(rows)) > 1:
        artefacts["ne_curve"] = plot_ne_curve(
            rows, os.path.join(layout.plots, "ne_curve.png"),
            title=f"{config.game} ({config.preset}): against the number of expert episodes")
    artefacts.update(copy_media(config, layout))
    results["artefacts"] = {k: os.path.relpath(v, layout.workdir) for k, v in artefacts.items()
                            if v}
    write_json(os.path.join(layout.workdir, "results.json"), results)
    log(md)
    return results
