"""Plots for `ditto report`: per group, return against N_E (one panel per game, log-x,
with the paper's curves) and performance profiles of the normalised scores (rliable).
matplotlib and rliable are imported only when plotting.
"""
import os

import numpy as np

from ditto_jax.report_refs import PAPER_RETURNS, REFERENCE_METHODS, _method_key

_COLORS = {"ditto": "#1f77b4", "dbc": "#ff7f0e", "dgail": "#2ca02c", "bc": "#d62728",
           "expert": "#444444", "random": "#999999"}


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

