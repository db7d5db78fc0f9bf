"""Is DITTO's RL part merely short of updates? One method at two budgets, side by side.

    python benchmarks/budget_compare.py --method ditto \\
        --runs 1k=runs/pong_ne 5k=runs/pong_ne1_5k --reference dbc \\
        --out benchmarks/results/pong_ne_s0-2/budget_ne1

Each run is a `ditto run` workdir (or its results.json) holding `--method` at one policy
budget (`policy.steps`), on the same game, world model, N_E, policy seeds, evaluation
protocol and episodes: anything else is refused, naming the run and field. For each action
rule present in every run it gives the method's return IQM [95% CI], on-policy expert
agreement, held-out accuracy and final entropy per budget, P(later budget > first budget)
over episode returns, and P(X > reference) against the `--reference` row (D-BC) at the
same budget (the same run's row; the first run's where a run has none). Writes OUT.json
and OUT.md.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.ne_combine import load_results, wm_folder  # noqa: E402
from ditto_jax.errors import DittoError  # noqa: E402
from ditto_jax.report.stats import probability_of_improvement  # noqa: E402

SHARED = ("game", "protocol", "max_steps", "seeds", "episodes_per_seed", "expert_episodes")


def _load(spec):
    if "=" not in spec:
        raise DittoError("A run is LABEL=PATH", field="--runs", expected="e.g. 5k=runs/x",
                         got=spec)
    label, run = spec.split("=", 1)
    return (label,) + load_results(run)


def _row(doc, path, method, rule):
    for r in doc["rows"]:
        if r.get("base_method") == method and r.get("rule") == rule and r.get(
                "checkpoint", "final") == "final":
            return r
    raise DittoError(f"No {method} row under the {rule} rule", path=path, field="rows")


def compare(specs, method, reference, reps=2000):
    runs = [_load(s) for s in specs]
    (_, first_path, first) = runs[0]
    for label, path, doc in runs[1:]:
        for key in SHARED:
            if doc.get(key) != first.get(key):
                raise DittoError("The runs differ in more than the policy budget", path=path,
                                 field=key, expected=first.get(key), got=doc.get(key))
        if wm_folder(path, doc) != wm_folder(first_path, first):
            raise DittoError("The runs use different world models", path=path,
                             field="config.paths.wm", expected=wm_folder(first_path, first),
                             got=wm_folder(path, doc))
    rules = [r for r in ("sample", "greedy")
             if all(any(x.get("base_method") == method and x.get("rule") == r
                        for x in doc["rows"]) for _, _, doc in runs)]
    out = {"method": method, "reference": reference, "game": first["game"],
           "protocol": first["protocol"], "expert_episodes": first["expert_episodes"],
           "seeds": first["seeds"], "episodes_per_seed": first["episodes_per_seed"],
           "command": "python benchmarks/budget_compare.py " + " ".join(sys.argv[1:]),
           "runs": {label: path for label, path, _ in runs}, "rules": {}}
    for rule in rules:
        first_ref = _row(first, first_path, reference, rule)
        base = _row(first, first_path, method, rule)
        rows = []
        for label, path, doc in runs:
            r = _row(doc, path, method, rule)
            try:
                ref, ref_from = _row(doc, path, reference, rule), label
            except DittoError:
                ref, ref_from = first_ref, runs[0][0]
            steps = ((doc.get("config") or {}).get("policy") or {}).get("steps")
            rows.append({
                "reference_from": ref_from, "reference_iqm": ref["iqm"],
                "reference_iqm_ci": ref["iqm_ci"],
                "reference_agreement": ref.get("expert_agreement"),
                "budget": label, "policy_steps": steps, "iqm": r["iqm"],
                "iqm_ci": r["iqm_ci"], "return_mean": r["return_mean"],
                "expert_agreement": r.get("expert_agreement"),
                "heldout_action_accuracy": r.get("heldout_action_accuracy"),
                "final_entropy": r.get("final_entropy"),
                "p_over_first": probability_of_improvement(r["returns"], base["returns"],
                                                           reps=reps),
                "p_over_reference": probability_of_improvement(r["returns"], ref["returns"],
                                                               reps=reps)})
        out["rules"][rule] = {"rows": rows}
    return out


def markdown(res):
    lines = [f"# {res['method']} at several policy budgets: {res['game']}, "
             f"N_E = {res['expert_episodes']}",
             "",
             f"Seeds {res['seeds']} x {res['episodes_per_seed']} episodes, "
             f"`{res['protocol']}` protocol, final policies. Made by `{res['command']}`.",
             ""]
    for rule, block in res["rules"].items():
        lines += [f"## {rule} actions", "",
                  f"| budget | updates | return IQM [95% CI] | on-policy agreement | "
                  f"held-out accuracy | final entropy | P(> first budget) | "
                  f"{res['reference']} at that budget: IQM, agreement | "
                  f"P(> {res['reference']}) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in block["rows"]:
            p1, pr = r["p_over_first"], r["p_over_reference"]
            f = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
            lines.append(
                f"| {r['budget']} | {r['policy_steps']} | {r['iqm']:.2f} "
                f"[{r['iqm_ci'][0]:.2f}, {r['iqm_ci'][1]:.2f}] | {f(r['expert_agreement'])} "
                f"| {f(r['heldout_action_accuracy'])} | {f(r['final_entropy'])} | "
                f"{p1['p']:.2f} [{p1['ci'][0]:.2f}, {p1['ci'][1]:.2f}] | "
                f"{r['reference_iqm']:.2f} [{r['reference_iqm_ci'][0]:.2f}, "
                f"{r['reference_iqm_ci'][1]:.2f}], {f(r['reference_agreement'])}"
                + ("" if r["reference_from"] == r["budget"] else
                   f" ({r['reference_from']} run)") + " | "
                f"{pr['p']:.2f} [{pr['ci'][0]:.2f}, {pr['ci'][1]:.2f}] |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="LABEL=RUN, first = baseline")
    p.add_argument("--method", default="ditto")
    p.add_argument("--reference", default="dbc")
    p.add_argument("--out", required=True, help="OUT.json and OUT.md are written")
    args = p.parse_args(argv)
    try:
        res = compare(args.runs, args.method, args.reference)
    except DittoError as e:
        print(f"budget_compare: error: {e}", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
