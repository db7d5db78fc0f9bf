"""`ditto report SWEEP_DIR`: tables, IQM and plots for a sweep of `ditto run` results.

Reads every `results.json` under SWEEP_DIR (one run = game x N_E x seed, one or more
methods per file) and writes, next to them:
  report.md    per-game tables: method x N_E, mean return ± s.e. over seeds, the
               expert-/human-normalised scores and the paper's number (SPEC §7);
  report.json  the same numbers plus IQM with stratified-bootstrap 95% CIs (rliable IQM)
               and performance profiles;
  plots/       return against N_E (one panel per game, log-x) and performance profiles.
Runs that differ in preset, protocol or an extra top-level setting (e.g. "horizon",
"reward") are reported as separate groups, never pooled.
"""
import json
import math
import os
import re
import sys

import numpy as np

from ditto_jax.errors import DittoError
from ditto_jax.evaluation import HUMAN_RANDOM, normalized

# SPEC §7: raw returns read off the paper's plots (no tables were published),
# game -> method -> {N_E: return}; "~45" is entered as 45.
PAPER_RETURNS = {
    "breakout": {
        "ditto": {30: 224, 125: 320, 1000: 391},
        "dbc": {30: 45, 125: 180, 1000: 358},
        "dgail": {30: 150, 125: 285, 1000: 301},
        "bc": {30: 41, 125: 49, 1000: 117},
    },
    "beamrider": {
        "ditto": {30: 3410, 125: 4870, 1000: 5815},
        "bc": {30: 2130, 125: 2215, 1000: 2960},
    },
    "spaceinvaders": {
        "ditto": {30: 920, 125: 966, 1000: 1119},
        "bc": {30: 530, 125: 719, 1000: 908},
    },
}
# SPEC §7: the paper's expert returns ("Breakout (~389)").
PAPER_EXPERT = {"breakout": 389, "beamrider": 3470, "spaceinvaders": 965}
# SPEC §3: the setting the paper's main results use (`ditto run` records both keys).
PAPER_SETTING = {"horizon": 15, "reward": "maxcos"}
# SPEC §7: DITTO's horizon ablation on Breakout (N_E not stated), horizon -> return.
PAPER_HORIZON_BREAKOUT = {3: 276, 9: 357, 21: 255}

# Reference rows: shown in the tables and plots, never aggregated as methods.
REFERENCE_METHODS = ("expert", "random")
METHOD_ORDER = ("ditto", "dbc", "dgail", "bc")
# Top-level keys of results.json that are not settings to group by.
_NOT_SETTINGS = {"game", "seed", "expert_episodes", "rows", "config", "wall_time_s",
                 "name", "workdir", "started", "finished", "time", "timestamp", "host",
                 "hostname", "version", "git_commit", "commit", "date", "duration_s"}
_COLORS = {"ditto": "#1f77b4", "dbc": "#ff7f0e", "dgail": "#2ca02c", "bc": "#d62728",
           "expert": "#444444", "random": "#999999"}


def add_arguments(p):
    from ditto_jax.cli import non_negative_int, positive_int
    p.add_argument("sweep_dir", help="sweep directory (searched recursively for "
                                     "results.json) or a single run directory")
    p.add_argument("--reps", type=positive_int, default=2000,
                   help="stratified-bootstrap replications for the confidence intervals")
    p.add_argument("--seed", type=non_negative_int, default=0, help="bootstrap random seed")
    p.add_argument("--out", default=None,
                   help="where to write report.md, report.json and plots/ "
                        "(default: SWEEP_DIR)")
    p.add_argument("--no-plots", action="store_true", help="write tables only, no plots")
    p.add_argument("--json", action="store_true", help="print report.json to stdout")


def _warn(msg):
    print(f"ditto report: warning: {msg}", file=sys.stderr)


def canonical_game(name):
    """'MsPacman', 'ms_pacman', 'ALE/MsPacman-v5' -> 'mspacman' (no ALE import needed)."""
    text = re.sub(r"^ALE/|-v\d+$", "", str(name).strip())
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _number(x):
    """float(x), or None for missing/non-finite values."""
    if x is None or isinstance(x, bool):
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------- loading

def find_results(sweep_dir):
    if not os.path.exists(sweep_dir):
        raise DittoError("Sweep directory does not exist", path=sweep_dir)
    if os.path.isfile(sweep_dir):
        return [sweep_dir]
    found = []
    for root, dirs, files in os.walk(sweep_dir):
        dirs.sort()
        if "results.json" in files:
            found.append(os.path.join(root, "results.json"))
    return found


def _setting(doc):
    """The settings that must not be pooled: preset, protocol and scalar extras."""
    s = {}
    for k, v in doc.items():
        if k in _NOT_SETTINGS or isinstance(v, (dict, list)):
            continue
        s[k] = v
    return s


def setting_label(setting):
    return ", ".join(f"{k}={setting[k]}" for k in sorted(setting)) or "default"


def _slug(setting):
    text = "_".join(f"{setting[k]}" if k in ("preset", "protocol") else f"{k}{setting[k]}"
                    for k in sorted(setting))
    return re.sub(r"[^A-Za-z0-9.=-]+", "-", text).strip("-") or "default"


def load_runs(paths):
    """One record per (results.json, method row); returns (records, skipped)."""
    records, skipped = [], []
    for path in paths:
        try:
            with open(path) as f:
                doc = json.load(f)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            for key in ("game", "expert_episodes", "rows"):
                if key not in doc:
                    raise ValueError(f"missing field {key!r}")
            if not isinstance(doc["rows"], list):
                raise ValueError("'rows' is not a list")
            n_e = int(doc["expert_episodes"])
            game = canonical_game(doc["game"])
        except (OSError, ValueError, TypeError) as e:
            _warn(f"skipping unreadable {path}: {e}")
            skipped.append({"path": path, "error": str(e)})
            continue
        setting = _setting(doc)
        by_method = {r.get("method"): r for r in doc["rows"] if isinstance(r, dict)}
        ref_expert = _number((by_method.get("expert") or {}).get("return_mean"))
        ref_random = _number((by_method.get("random") or {}).get("return_mean"))
        human, rand = HUMAN_RANDOM.get(game, (None, None))
        for row in doc["rows"]:
            ret = _number(row.get("return_mean")) if isinstance(row, dict) else None
            if ret is None or not row.get("method"):
                _warn(f"skipping a row without method/return_mean in {path}")
                continue
            method = str(row["method"]).lower()
            # Prefer the row's own normalisation (its expert/random references);
            # otherwise the file's expert/random rows, then the SPEC §6 random return.
            en = _number(row.get("expert_normalized"))
            if en is None and method not in REFERENCE_METHODS:
                expert = _number(row.get("expert_return"))
                expert = expert if expert is not None else ref_expert
                low = _number(row.get("random_return"))
                low = low if low is not None else (ref_random if ref_random is not None
                                                    else rand)
                en = normalized(ret, low, expert)
            hn = _number(row.get("human_normalized"))
            if hn is None:
                hn = normalized(ret, rand, human)
            records.append({
                "path": path, "setting": setting, "game": game, "expert_episodes": n_e,
                "seed": doc.get("seed", path), "method": method, "return_mean": ret,
                "expert_normalized": en, "human_normalized": hn,
            })
    return records, skipped


def _dedupe(records):
    seen, out = set(), []
    for r in records:
        key = (setting_label(r["setting"]), r["game"], r["expert_episodes"], r["method"],
               json.dumps(r["seed"], default=str))
        if key in seen:
            _warn(f"duplicate run ({r['game']}, N_E={r['expert_episodes']}, "
                  f"{r['method']}, seed {r['seed']}) in {r['path']}: ignored")
            continue
        seen.add(key)
        out.append(r)
    return out


def _method_key(m):
    if m in METHOD_ORDER:
        return (0, METHOD_ORDER.index(m), m)
    if m in REFERENCE_METHODS:
        return (2, REFERENCE_METHODS.index(m), m)
    return (1, 0, m)


# --------------------------------------------------------------------------- statistics

def mean_se(values):
    """(mean, standard error over seeds); s.e. is None for a single seed."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if x.size == 0:
        return None, None
    se = float(np.std(x, ddof=1) / np.sqrt(x.size)) if x.size > 1 else None
    return float(np.mean(x)), se


def stratified_bootstrap_ci(per_game, func, *, reps, rng, size=0.95):
    """Percentile CI of `func(pooled scores)`, resampling seeds within each game.

    The same procedure as rliable's `StratifiedIndependentBootstrap` (percentile
    method): games are the strata, so every replicate keeps each game's number of
    runs, and games may have different numbers of seeds. Done here in numpy because
    rliable 1.2's bootstrap breaks with current `arch`: arch <= 7.2 does not import
    under pandas 3, arch 8 rejects the `random_state` argument rliable passes.
    Returns (point estimate, (low, high)), each an array like `func`'s output.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in per_game]
    point = np.asarray(func(np.concatenate(arrays)), dtype=np.float64)
    stats = np.empty((reps,) + point.shape)
    for i in range(reps):
        stats[i] = func(np.concatenate([a[rng.integers(0, a.size, a.size)]
                                        for a in arrays]))
    alpha = 100 * (1 - size) / 2
    low, high = np.percentile(stats, [alpha, 100 - alpha], axis=0)
    return point, (low, high)


def aggregate(score_lists, *, reps, seed, tau):
    """IQM with stratified-bootstrap 95% CIs and performance profiles (score distributions).

    `score_lists`: key -> list of 1-D arrays, one per game (the seeds' scores).
    IQM is rliable's `aggregate_iqm` (25% trimmed mean over all runs of all games);
    the profile at tau is the fraction of runs scoring above tau.
    """
    from rliable import metrics
    tau = np.asarray(tau, dtype=np.float64)

    def iqm(x):
        return np.array([metrics.aggregate_iqm(x)])

    def profile(x):
        return (x[:, None] > tau[None, :]).mean(axis=0)

    out = {}
    for k, per_game in score_lists.items():
        if not per_game:
            continue
        rng = np.random.default_rng(seed)
        point, (lo, hi) = stratified_bootstrap_ci(per_game, iqm, reps=reps, rng=rng)
        prof, (plo, phi) = stratified_bootstrap_ci(per_game, profile, reps=reps, rng=rng)
        out[k] = {"iqm": float(point[0]), "ci": [float(lo[0]), float(hi[0])],
                  "runs": int(sum(len(a) for a in per_game)), "games": len(per_game),
                  "profile": [float(v) for v in prof],
                  "profile_ci": [[float(v) for v in plo], [float(v) for v in phi]]}
    return out


# --------------------------------------------------------------------------- report

def build_report(records, *, reps=2000, seed=0):
    groups = {}
    for r in records:
        groups.setdefault(setting_label(r["setting"]), []).append(r)
    out = []
    for label in sorted(groups):
        recs = groups[label]
        setting = recs[0]["setting"]
        games = sorted({r["game"] for r in recs})
        n_es = sorted({r["expert_episodes"] for r in recs})
        # The paper's numbers are for its main setting; an ablation group (another
        # horizon or reward, or any unknown extra setting) gets no paper column.
        main_setting = all(k in ("preset", "protocol") or PAPER_SETTING.get(k, object()) == v
                           for k, v in setting.items())
        tables = {}
        for game in games:
            rows = []
            cells = {}
            for r in recs:
                if r["game"] == game:
                    cells.setdefault((r["method"], r["expert_episodes"]), []).append(r)
            for method, n_e in sorted(cells, key=lambda k: (_method_key(k[0]), k[1])):
                rs = cells[(method, n_e)]
                ret, ret_se = mean_se(r["return_mean"] for r in rs)
                en, en_se = mean_se(r["expert_normalized"] for r in rs)
                hn, hn_se = mean_se(r["human_normalized"] for r in rs)
                rows.append({
                    "method": method, "expert_episodes": n_e, "seeds": len(rs),
                    "return_mean": ret, "return_se": ret_se,
                    "expert_normalized": en, "expert_normalized_se": en_se,
                    "human_normalized": hn, "human_normalized_se": hn_se,
                    "paper_return": (PAPER_RETURNS.get(game, {}).get(method, {}).get(n_e)
                                     if main_setting else None),
                })
            tables[game] = {"rows": rows, "paper_expert": PAPER_EXPERT.get(game)}

        agg = {}
        methods = sorted({r["method"] for r in recs if r["method"] not in REFERENCE_METHODS},
                         key=_method_key)
        for score in ("expert_normalized", "human_normalized"):
            lists, meta = {}, {}
            for method in methods:
                for n_e in n_es:
                    per_game = []
                    for game in games:
                        vals = [r[score] for r in recs if r["method"] == method
                                and r["expert_episodes"] == n_e and r["game"] == game]
                        missing = sum(v is None for v in vals)
                        if missing:
                            _warn(f"{label}: {game} {method} N_E={n_e}: {missing} run(s) "
                                  f"without a {score.replace('_', '-')} score left out")
                        vals = [v for v in vals if v is not None]
                        if vals:
                            per_game.append(vals)
                    key = f"{method} N_E={n_e}" if len(n_es) > 1 else method
                    lists[key] = per_game
                    meta[key] = {"method": method, "expert_episodes": n_e}
            top = max([v for per_game in lists.values() for a in per_game for v in a],
                      default=1.0)
            top = max(1.5 if score == "expert_normalized" else 1.0, 1.05 * top)
            tau = np.linspace(0.0, top, 41)
            res = aggregate(lists, reps=reps, seed=seed, tau=tau)
            agg[score] = {"tau": [float(t) for t in tau],
                          "methods": {k: {**meta[k], **v} for k, v in res.items()}}
        out.append({"setting": setting, "label": label, "slug": _slug(setting),
                    "games": games, "expert_episodes": n_es, "tables": tables,
                    "aggregate": agg})
    return {"runs": len({r["path"] for r in records}), "reps": reps,
            "bootstrap_seed": seed, "groups": out}


def _fmt(x, se=None, digits=1):
    if x is None:
        return "—"
    s = f"{x:.{digits}f}"
    return s + (f" ± {se:.{digits}f}" if se is not None else "")


def format_markdown(report):
    lines = [f"# DITTO sweep report: {report['sweep_dir']}", "",
             f"{report['runs']} runs. Returns are means over seeds of each run's mean "
             f"episode return, ± standard error over seeds. Expert-normalised = "
             f"(return - random) / (expert - random). IQM: interquartile mean over "
             f"games x seeds, 95% stratified-bootstrap CI (seeds resampled within "
             f"games, {report['reps']} reps). "
             f"Paper: SPEC §7, read off the paper's plots.", ""]
    for s in report.get("skipped", []):
        lines.append(f"- skipped {s['path']}: {s['error']}")
    for g in report["groups"]:
        lines += ["", f"## {g['label']}", ""]
        if g["setting"].get("horizon") in PAPER_HORIZON_BREAKOUT and "breakout" in g["games"]:
            lines += ["Paper, horizon ablation (Breakout, DITTO, N_E not stated): " +
                      ", ".join(f"H={h} ~{v}" for h, v in PAPER_HORIZON_BREAKOUT.items()),
                      ""]
        for game in g["games"]:
            t = g["tables"][game]
            head = f"### {game}"
            if t["paper_expert"] is not None:
                head += f" (paper expert ~{t['paper_expert']})"
            lines += [head, "",
                      "| method | N_E | seeds | return | expert-norm. | human-norm. | paper |",
                      "|---|---:|---:|---:|---:|---:|---:|"]
            for r in t["rows"]:
                paper = "—" if r["paper_return"] is None else str(r["paper_return"])
                lines.append(
                    f"| {r['method']} | {r['expert_episodes']} | {r['seeds']} | "
                    f"{_fmt(r['return_mean'], r['return_se'])} | "
                    f"{_fmt(r['expert_normalized'], r['expert_normalized_se'], 3)} | "
                    f"{_fmt(r['human_normalized'], r['human_normalized_se'], 3)} | {paper} |")
            lines.append("")
        for score, name in (("expert_normalized", "expert-normalised"),
                            ("human_normalized", "human-normalised")):
            ms = g["aggregate"][score]["methods"]
            if not ms:
                continue
            lines += [f"### IQM, {name} ({', '.join(g['games'])})", "",
                      "| method | N_E | IQM | 95% CI | runs | games |",
                      "|---|---:|---:|---|---:|---:|"]
            for m in ms.values():
                lines.append(f"| {m['method']} | {m['expert_episodes']} | {m['iqm']:.3f} | "
                             f"[{m['ci'][0]:.3f}, {m['ci'][1]:.3f}] | {m['runs']} | "
                             f"{m['games']} |")
            lines.append("")
        for name, path in g.get("plots", {}).items():
            lines.append(f"![{name}]({os.path.relpath(path, report['out_dir'])})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- plots

def _color(method, i):
    import matplotlib.pyplot as plt
    return _COLORS.get(method) or plt.cm.tab10(i % 10)


def plot_group(group, plot_dir):
    """Return vs N_E (a row of panels, one per game) and performance profiles."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(plot_dir, exist_ok=True)
    paths = {}
    games = group["games"]
    fig, axes = plt.subplots(1, len(games), figsize=(4.2 * len(games), 3.6), squeeze=False)
    for ax, game in zip(axes[0], games):
        rows = group["tables"][game]["rows"]
        methods = sorted({r["method"] for r in rows}, key=_method_key)
        for i, method in enumerate(methods):
            rs = sorted((r for r in rows if r["method"] == method),
                        key=lambda r: r["expert_episodes"])
            x = [r["expert_episodes"] for r in rs]
            y = [r["return_mean"] for r in rs]
            e = [r["return_se"] or 0.0 for r in rs]
            c = _color(method, i)
            if method in REFERENCE_METHODS:
                ax.axhline(float(np.mean(y)), color=c, ls="--", lw=1, label=method)
                continue
            ax.errorbar(x, y, yerr=e, color=c, marker="o", ms=4, capsize=2, label=method)
            paper = PAPER_RETURNS.get(game, {}).get(method)
            if paper:
                px = sorted(paper)
                ax.plot(px, [paper[n] for n in px], color=c, ls=":", marker="x", ms=4,
                        alpha=0.6, label=f"{method} (paper)")
        ax.set_xscale("log")
        ax.set_title(game)
        ax.set_xlabel("expert episodes $N_E$")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("return")
    handles = {}
    for ax in axes[0]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=min(len(handles), 6), fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(group["label"], fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    paths["returns"] = os.path.join(plot_dir, f"returns_{group['slug']}.png")
    fig.savefig(paths["returns"], dpi=120)
    plt.close(fig)

    from rliable import plot_utils
    for score, name in (("expert_normalized", "expert-normalised"),
                        ("human_normalized", "human-normalised")):
        agg = group["aggregate"][score]
        if not agg["methods"]:
            continue
        n_es = sorted({m["expert_episodes"] for m in agg["methods"].values()})
        fig, axes = plt.subplots(1, len(n_es), figsize=(4.5 * len(n_es), 3.6),
                                 squeeze=False)
        tau = np.asarray(agg["tau"])
        for ax, n_e in zip(axes[0], n_es):
            ms = {m["method"]: m for m in agg["methods"].values()
                  if m["expert_episodes"] == n_e}
            plot_utils.plot_performance_profiles(
                {k: np.asarray(m["profile"]) for k, m in ms.items()}, tau,
                performance_profile_cis={k: np.asarray(m["profile_ci"])
                                         for k, m in ms.items()},
                colors={k: _color(k, i) for i, k in enumerate(ms)}, ax=ax,
                xlabel=f"{name} score ($\\tau$)", ylabel="fraction of runs > $\\tau$",
                labelsize="small", ticklabelsize="small")
            ax.set_title(f"N_E={n_e}", fontsize=9)
            ax.legend(fontsize=8)
        fig.tight_layout()
        key = f"profile_{score.split('_')[0]}"
        paths[key] = os.path.join(plot_dir, f"{key}_{group['slug']}.png")
        fig.savefig(paths[key], dpi=120)
        plt.close(fig)
    return paths


# --------------------------------------------------------------------------- command

def run_report(sweep_dir, *, reps=2000, seed=0, out_dir=None, plots=True):
    if reps < 1:
        raise DittoError("Too few bootstrap replications", field="--reps",
                         expected=">= 1", got=reps)
    paths = find_results(sweep_dir)
    if not paths:
        raise DittoError("No results.json found (searched recursively); run "
                         "`ditto run` into this directory first", path=sweep_dir)
    records, skipped = load_runs(paths)
    records = _dedupe(records)
    if not records:
        raise DittoError(f"None of the {len(paths)} results.json files could be read",
                         path=sweep_dir)
    report = build_report(records, reps=reps, seed=seed)
    out_dir = out_dir or (sweep_dir if os.path.isdir(sweep_dir)
                          else os.path.dirname(sweep_dir) or ".")
    os.makedirs(out_dir, exist_ok=True)
    report.update(sweep_dir=sweep_dir, out_dir=out_dir, skipped=skipped)
    if plots:
        for g in report["groups"]:
            g["plots"] = plot_group(g, os.path.join(out_dir, "plots"))
    report["markdown"] = os.path.join(out_dir, "report.md")
    with open(report["markdown"], "w") as f:
        f.write(format_markdown(report))
    from ditto_jax.io import write_json_atomic
    write_json_atomic(os.path.join(out_dir, "report.json"), report)
    return report


def main(args):
    report = run_report(args.sweep_dir, reps=args.reps, seed=args.seed, out_dir=args.out,
                        plots=not args.no_plots)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        with open(report["markdown"]) as f:
            print(f.read(), end="")
    return 0
