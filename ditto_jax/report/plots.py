"""Plots for `ditto report`: per group, return against N_E (one panel per game, log-x,
with the paper's curves) and performance profiles of the normalised scores (rliable).
matplotlib and rliable are imported only when plotting.
"""
import os

import numpy as np

from ditto_jax.report.refs import PAPER_RETURNS, REFERENCE_METHODS, _method_key

_COLORS = {"ditto": "#1f77b4", "dbc": "#ff7f0e", "dgail": "#2ca02c", "bc": "#d62728",
           "expert": "#444444", "random": "#999999"}


# Methods without a fixed colour (ditto_bcinit, ditto_bctr, user methods) take these in
# turn: never one of the fixed colours above, so no two curves of a figure share one.
_OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


def _color(method, i):
    return _COLORS.get(method) or _OTHER_COLORS[i % len(_OTHER_COLORS)]


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
    for score, name in (("expert_normalized_mean", "expert-normalised"),
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



def plot_ne_curve(rows, path, *, title=""):
    """`ditto run` with several N_E: return IQM, expert-normalised IQM (95% stratified-
    bootstrap CIs) and on-policy expert agreement (mean ± s.e. over seeds) against N_E,
    one line per method and action rule, log-x; the expert and random rows as lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    learners = [r for r in rows if r.get("expert_episodes") is not None]
    refs = {r["method"]: r for r in rows if r["method"] in REFERENCE_METHODS}
    lines = {}
    for r in learners:
        lines.setdefault((r["base_method"], r["label"], r["rule"]), []).append(r)
    panels = (("iqm", "iqm_ci", "return (IQM, 95% CI)"),
              ("expert_normalized_iqm", "expert_normalized_ci",
               "expert-normalised score (IQM, 95% CI)"),
              ("expert_agreement", None, "on-policy expert agreement\n(mean ± s.e. over seeds)"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, ((base, label, rule), rs) in enumerate(sorted(
            lines.items(), key=lambda kv: (_method_key(kv[0][0]), kv[0][2]))):
        rs = sorted(rs, key=lambda r: r["expert_episodes"])
        x = np.array([r["expert_episodes"] for r in rs], float)
        style = dict(color=_color(base, i), marker="o", ms=4, capsize=2,
                     ls="--" if rule == "greedy" else "-", label=f"{label} ({rule})")
        for ax, (key, ci_key, _) in zip(axes, panels):
            pts = [(xx, r) for xx, r in zip(x, rs) if r.get(key) is not None]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            y = np.array([r[key] for _, r in pts], float)
            if ci_key:
                err = np.array([[r[key] - r[ci_key][0], r[ci_key][1] - r[key]]
                                if r.get(ci_key) else [0.0, 0.0] for _, r in pts]).T
            else:
                per = [[s.get(key) for s in r.get("per_seed", []) if s.get(key) is not None]
                       for _, r in pts]
                err = np.array([np.std(v, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
                                for v in per])
            ax.errorbar(xs, y, yerr=err, **style)
    for ax, (key, _, ylabel) in zip(axes, panels):
        for name, r in refs.items():
            if r.get(key) is not None:
                ax.axhline(r[key], color=_COLORS[name], ls=":", lw=1, label=name)
        ax.set_xscale("log")
        ticks = sorted({r["expert_episodes"] for r in learners})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("expert episodes $N_E$")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3, which="both")
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=min(len(handles), 5), fontsize=7, bbox_to_anchor=(0.5, -0.01))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
