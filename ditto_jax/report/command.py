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

This module holds the command, loading results.json files, the tables and report.md;
the statistics are in ditto_jax/report/stats.py, the plots in ditto_jax/report/plots.py
and the paper's reference numbers in ditto_jax/report/refs.py. Their public names are
importable from here too.
"""
import json
import math
import os
import re
import sys

import numpy as np

from ditto_jax.core.args import non_negative_int, positive_int
from ditto_jax.core.io import write_json_atomic
from ditto_jax.errors import DittoError
from ditto_jax.report.plots import plot_group
from ditto_jax.report.refs import (PAPER_EXPERT, PAPER_HORIZON_BREAKOUT, PAPER_RETURNS,
                                   PAPER_SETTING, REFERENCE_METHODS, _method_key)
from ditto_jax.report.run_results import rewrite_markdown, upgrade
from ditto_jax.report.stats import aggregate, mean_se
from ditto_jax.stages.evaluation import HUMAN_RANDOM, normalized

# Top-level keys of results.json that are not settings to group by.
_NOT_SETTINGS = {"game", "seed", "expert_episodes", "rows", "config", "wall_time_s",
                 "name", "workdir", "started", "finished", "time", "timestamp", "host",
                 "hostname", "version", "git_commit", "commit", "date", "duration_s"}


def add_arguments(p):
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
    p.add_argument("--results-md", action="store_true",
                   help="instead of a sweep report: rewrite each `ditto run` results.md "
                        "found under SWEEP_DIR from its results.json (the run's own table), "
                        "e.g. after the table's format changed; nothing else is written")


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
            upgrade(doc)  # older schemas' field names, read as today's
            for key in ("game", "expert_episodes", "rows"):
                if key not in doc:
                    raise ValueError(f"missing field {key!r}")
            if not isinstance(doc["rows"], list):
                raise ValueError("'rows' is not a list")
            # One N_E per file (a sweep run), or a list: `ditto run` with several N_E,
            # where each row carries its own and the expert/random rows serve them all.
            doc_ne = doc["expert_episodes"]
            n_es = ([int(n) for n in doc_ne] if isinstance(doc_ne, list)
                    else [int(doc_ne)])
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
            if len(n_es) > 1:  # `ditto run` names a cell ditto-ne4[-greedy]: one method
                method = re.sub(r"-ne\d+", "", method)
            # Prefer the row's own normalisation (its expert/random references);
            # otherwise the file's expert/random rows, then the SPEC §6 random return.
            en = _number(row.get("expert_normalized_mean_of_seed_means"))
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
            row_ne = row.get("expert_episodes") if len(n_es) > 1 else None
            for n_e in ([int(row_ne)] if row_ne is not None else n_es):
                for seed, r, e, h in _per_seed(row, doc, path, ret, en, hn):
                    records.append({
                        "path": path, "setting": setting, "game": game,
                        "expert_episodes": n_e, "seed": seed, "method": method,
                        "return_mean": r, "expert_normalized_mean": e,
                        "human_normalized": h if h is not None else normalized(r, rand, human),
                    })
    return records, skipped


def _per_seed(row, doc, path, ret, en, hn):
    """(seed, return, expert-norm., human-norm.) per policy seed of a `ditto run` row
    pooled over several seeds (its `per_seed`), else the row itself as one run."""
    per = row.get("per_seed")
    if isinstance(per, list) and len(per) > 1 and all(
            isinstance(p, dict) and _number(p.get("return_mean")) is not None for p in per):
        return [(p.get("seed"), _number(p["return_mean"]),
                 _number(p.get("expert_normalized_mean")), _number(p.get("human_normalized")))
                for p in per]
    return [(doc.get("seed", path), ret, en, hn)]


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
                en, en_se = mean_se(r["expert_normalized_mean"] for r in rs)
                hn, hn_se = mean_se(r["human_normalized"] for r in rs)
                rows.append({
                    "method": method, "expert_episodes": n_e, "seeds": len(rs),
                    "return_mean": ret, "return_se": ret_se,
                    "expert_normalized_mean_of_seed_means": en,
                    "expert_normalized_mean_of_seed_means_se": en_se,
                    "human_normalized": hn, "human_normalized_se": hn_se,
                    "paper_return": (PAPER_RETURNS.get(game, {}).get(method, {}).get(n_e)
                                     if main_setting else None),
                })
            tables[game] = {"rows": rows, "paper_expert": PAPER_EXPERT.get(game)}

        agg = {}
        methods = sorted({r["method"] for r in recs if r["method"] not in REFERENCE_METHODS},
                         key=_method_key)
        for score in ("expert_normalized_mean", "human_normalized"):
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
            top = max(1.5 if score == "expert_normalized_mean" else 1.0, 1.05 * top)
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
             f"(return - random) / (expert - random) of each run's mean return; the "
             f"table's expert-norm. column is its mean over seeds "
             f"(`expert_normalized_mean_of_seed_means`). IQM: interquartile mean of the "
             f"runs' normalised mean returns over games x seeds, 95% stratified-bootstrap "
             f"CI (seeds resampled within games, {report['reps']} reps). "
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
                en_se = r["expert_normalized_mean_of_seed_means_se"]
                paper = "—" if r["paper_return"] is None else str(r["paper_return"])
                lines.append(
                    f"| {r['method']} | {r['expert_episodes']} | {r['seeds']} | "
                    f"{_fmt(r['return_mean'], r['return_se'])} | "
                    f"{_fmt(r['expert_normalized_mean_of_seed_means'], en_se, 3)} | "
                    f"{_fmt(r['human_normalized'], r['human_normalized_se'], 3)} | {paper} |")
            lines.append("")
        for score, name in (("expert_normalized_mean", "expert-normalised"),
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
    write_json_atomic(os.path.join(out_dir, "report.json"), report)
    return report


def main(args):
    if args.results_md:
        paths = find_results(args.sweep_dir)
        if not paths:
            raise DittoError("No results.json found (searched recursively)",
                             path=args.sweep_dir)
        for path in paths:
            out = rewrite_markdown(path)
            print(f"wrote {out}" if out else f"skipped {path}: schema 1 (written before "
                  "schema versions): its results.md stays as its own commit wrote it")
        return 0
    report = run_report(args.sweep_dir, reps=args.reps, seed=args.seed, out_dir=args.out,
                        plots=not args.no_plots)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        with open(report["markdown"]) as f:
            print(f.read(), end="")
    return 0
