"""One `ditto run`'s results.json read back: its schema (`upgrade` reads older versions) and
its results.md tables. `pipeline/results.py` writes the file (its docstring lists the
fields); `ditto report` reads many of them."""
import os

from ditto_jax.core.io import disk_errors, read_json
from ditto_jax.errors import DittoError
from ditto_jax.report.stats import probability_of_improvement

SCHEMA_VERSION = 3  # 3: expert_normalized -> expert_normalized_mean_of_seed_means (rows),
#                     expert_normalized_mean (per seed, evaluations); `upgrade` reads 1-2
REFERENCES = {"expert": "Expert", "random": "Random"}   # the reference rows, first and last


def upgrade(results):
    """A results.json document of any schema, read as the current one (in place): schema
    1-2 called the mean of per-seed means `expert_normalized` (rows) and each seed's
    normalised mean return `expert_normalized` too (per_seed)."""
    version = results.get("schema_version")
    if version is not None and version >= SCHEMA_VERSION:
        return results
    for row in results.get("rows") or []:
        if isinstance(row, dict) and "expert_normalized" in row:
            row["expert_normalized_mean_of_seed_means"] = row.pop("expert_normalized")
        for seed in (row.get("per_seed") or []) if isinstance(row, dict) else []:
            if isinstance(seed, dict) and "expert_normalized" in seed:
                seed["expert_normalized_mean"] = seed.pop("expert_normalized")
    if version is not None:
        results["schema_version"] = SCHEMA_VERSION
    return results


def rewrite_markdown(path):
    """Rewrites the results.md next to a `ditto run` results.json from that file alone
    (`ditto report DIR --results-md`); returns its path, or None for a schema-1 file,
    which lacks the fields today's table needs."""
    results = read_json(path, what="results.json")
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
        raise DittoError("Not a `ditto run` results.json", path=path,
                         expected="an object with a 'rows' list")
    if results.get("schema_version") is None:
        return None
    out = os.path.join(os.path.dirname(path), "results.md")
    text = results_markdown(upgrade(results))
    with disk_errors(out), open(out, "w") as f:
        f.write(text)
    return out


def label(name):
    """A row's display name: a reference's, else its method's (the method registry)."""
    from ditto_jax import methods  # jax: imported here to keep it out of `ditto report --help`
    return REFERENCES.get(name) or methods.label(name)


def baselines():
    """Methods whose rows every other row is compared against (P(X > Y), rliable's)."""
    from ditto_jax import methods  # jax: imported here to keep it out of `ditto report --help`
    return tuple(n for n in methods.names() if methods.get(n).baseline)


def ne_tables(rows):
    """Per N_E (ascending), the learner rows with P(X > baseline) for every baseline
    (D-BC, BC) at the same N_E, action rule and checkpoint, over episode returns; a
    baseline is compared with the other baselines too. {N_E: [entry, ...]}."""
    learners = [r for r in rows if r.get("expert_episodes") is not None
                and r["base_method"] not in REFERENCES]
    by = {(r["base_method"], r["rule"], r.get("checkpoint"), r["expert_episodes"]): r
          for r in learners}
    out = {}
    for r in learners:
        key = (r["rule"], r.get("checkpoint"), r["expert_episodes"])
        probs = {}
        for b in baselines():
            if b == r["base_method"] or (b,) + key not in by:
                continue
            probs[b] = ((r.get("improvement_over") or {}).get(b)
                        or probability_of_improvement(r["returns"], by[(b,) + key]["returns"]))
        out.setdefault(r["expert_episodes"], []).append({
            "method": r["method"], "base_method": r["base_method"], "label": r["label"],
            "rule": r["rule"], "seeds": r["seeds"], "episodes": r["episodes"],
            "iqm": r["iqm"], "iqm_ci": r["iqm_ci"],
            "expert_normalized_iqm": r["expert_normalized_iqm"],
            "expert_normalized_ci": r["expert_normalized_ci"],
            "expert_agreement": r.get("expert_agreement"), "improvement_over": probs})
    return dict(sorted(out.items()))


def ne_markdown(rows):
    """The N_E section of results.md: one table per N_E, with P(X > D-BC), P(X > BC)."""
    tables = ne_tables(rows)
    if len(tables) < 2:
        return []
    base = baselines()
    lines = ["## Against the number of expert episodes N_E", "",
             "Each N_E trains on the first N_E recorded expert episodes (nested subsets) "
             "with the same world model and the same held-out episodes. P(X > Y): "
             "probability of improvement over episode returns at the same N_E and action "
             "rule (rliable's definition, 95% bootstrap CI). Plot: plots/ne_curve.png.", ""]
    for ne, entries in tables.items():
        lines += [f"### N_E = {ne}", "",
                  "| method | rule | return IQM [95% CI] | expert-norm. IQM [95% CI] | "
                  "on-policy expert agreement | "
                  + " | ".join(f"P(X > {label(b)}) [95% CI]" for b in base)
                  + " | seeds x episodes |",
                  "|---|---|---|---|---|" + "---|" * len(base) + "---|"]
        for e in entries:
            probs = [e["improvement_over"].get(b) for b in base]
            lines.append(
                f"| {e['label']} | {e['rule']} | {_ci(e['iqm'], e['iqm_ci'])} | "
                f"{_ci(e['expert_normalized_iqm'], e['expert_normalized_ci'], '.3f')} | "
                f"{_fmt(e['expert_agreement'], '.3f')} | "
                + " | ".join("—" if p is None else
                             f"{p['p']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]"
                             for p in probs)
                + f" | {len(e['seeds'])} x {e['episodes'] // max(len(e['seeds']), 1)} |")
        lines.append("")
    return lines


def _fmt(x, spec=".2f"):
    return "—" if x is None else format(x, spec)


def _ci(point, ci, spec=".2f"):
    if point is None:
        return "—"
    return f"{point:{spec}} [{ci[0]:{spec}}, {ci[1]:{spec}}]" if ci else f"{point:{spec}}"


def _on_policy_probs(row):
    p, a = row.get("expert_prob_on_policy"), row.get("argmax_agreement_on_policy")
    return "—" if p is None or a is None else f"{p:.3f} / {a:.3f}"


def results_markdown(results):
    rows = results["rows"]
    seeds = results["seeds"]
    multi = isinstance(results.get("expert_episodes"), list)
    ne_col = (lambda r: f" {_fmt(r.get('expert_episodes'), 'd')} |") if multi else \
        (lambda r: "")
    lines = [f"# {results['game']}: DITTO and baselines ({results['preset']} preset, "
             f"policy seeds {','.join(map(str, seeds))})", "",
             f"N_E = {results['expert_episodes']} expert episodes; evaluation protocol "
             f"`{results['protocol']}`, at most {results['max_steps']} steps per episode; "
             f"{len(seeds)} seed(s) x {results['episodes_per_seed']} episodes per row. "
             "IQM with a 95% stratified-bootstrap CI (episodes resampled within seeds). "
             "Expert-normalised = (return - random) / (expert - random), with the expert "
             "and random rows measured under the same protocol, cap and evaluation seeds. "
             "Rule: how the policy picks its action (sample from pi, or greedy argmax).", "",
             "| method | rule |" + (" N_E |" if multi else "") +
             " return IQM [95% CI] | mean ± s.e. | episode length | "
             "expert-norm. IQM [95% CI] | on-policy expert agreement | on-policy "
             "E[pi(a_E)] / argmax agreement | held-out accuracy "
             "| held-out E[pi(a_E)] | final entropy | seeds x episodes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if multi else "")]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['rule']} |{ne_col(r)} {_ci(r['iqm'], r['iqm_ci'])} | "
            f"{r['return_mean']:.2f} ± {r['return_se']:.2f} | {r['length_mean']:.0f} | "
            f"{_ci(r['expert_normalized_iqm'], r['expert_normalized_ci'], '.3f')} | "
            f"{_fmt(r.get('expert_agreement'), '.3f')} | {_on_policy_probs(r)} | "
            f"{_fmt(r.get('heldout_action_accuracy'), '.3f')} | "
            f"{_fmt(r.get('heldout_expert_prob'), '.3f')} | "
            f"{_fmt(r.get('final_entropy'), '.3f')} | {len(r['seeds'])} x "
            f"{r['episodes'] // max(len(r['seeds']), 1)} |")
    comps = [(r, b, p) for r in rows for b, p in (r.get("improvement_over") or {}).items()
             if p]
    if comps:
        lines += ["", "Probability of improvement P(X > Y) over episode returns "
                      "(rliable's definition, 95% bootstrap CI):", ""]
        for r, b, p in comps:
            lines.append(f"- {r['label']} ({r['rule']}"
                         + (f", N_E = {r['expert_episodes']}" if multi else "")
                         + f") over {label(b)}: "
                         f"{p['p']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]")
    alarms = [r for r in rows if any(a for a in (r.get("disc_alarm") or []))]
    if alarms:
        lines += ["", "**Adversarial training failed** (the discriminator collapsed, or "
                      "separated agent from expert by more than 0.5 in mean D, in this "
                      "fraction of the logged updates of each seed's last "
                      "`collapse_window` updates; SPEC §4):", ""]
        lines += [f"- {r['label']} ({r['rule']}"
                  + (f", N_E = {r['expert_episodes']}" if multi else "") + "): seeds "
                  + ", ".join(f"{s} {_fmt(a, '.2f')}" for s, a in zip(r["seeds"],
                                                                    r["disc_alarm"]))
                  for r in alarms]
    expert = next(r for r in rows if r["method"] == "expert")
    best = [r for r in rows if r.get("checkpoint") == "best"]
    which = ("Checkpoints: final policies, except rows marked [best held-out ckpt]: each "
             "seed's checkpoint with the highest held-out E[pi(a_E)] on expert states kept "
             "out of training (offline selection, no real return; steps " + "; ".join(
                 f"{r['label']}: {r['checkpoint_steps']}" for r in best) + ")."
             if best else "Checkpoints: the final policy of every run (no selection).")
    lines += ["", which, f"Expert row: {expert['source']}.",
              "On-policy expert agreement: the fraction of the states the learner itself "
              "visits in which it takes the action the scripted expert would take there "
              "(covariate shift shows here, not in held-out accuracy). In the same "
              "states: the policy's mean probability of the expert's action, and how often "
              "its argmax is the expert's action (what greedy play would choose there; a "
              "gap to the sampled agreement means errors that greedy play removes).",
              f"Wall time: {results['wall_time_s'] / 60:.1f} min "
              f"({', '.join(f'{k} {v / 60:.1f}' for k, v in results['stage_seconds'].items())}"
              f" min) in the last invocation of each stage.", ""]
    lines += ne_markdown(rows)
    return "\n".join(lines)
