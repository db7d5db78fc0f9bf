"""Does `imagine_matmul=bfloat16` change what DITTO learns? Two `ditto run` workdirs that
differ only in `--config.policy.imagine_matmul` (float32 / bfloat16), side by side.

    python benchmarks/bf16_imagination.py --float32 runs/s12_float32 \\
        --bfloat16 runs/s12_bfloat16 [--reference runs/pong_ne2] \\
        --out benchmarks/results/bf16_imagination

For every (method, N_E, action rule) row the runs share: the return IQM [95% CI] of
each, P(bfloat16 > float32) over episode returns with its 95% bootstrap CI (0.5 = no
difference; rliable's definition, `report/stats.py`), the on-policy expert agreement,
the held-out E[pi(a_E)] (offline), the per-seed mean returns, and the training speed
(median of the logged `steps_per_s` over the policies' log intervals: robust to a pause,
not to other jobs sharing the machine). `--reference RUN`: a float32 run of the same
cells made earlier (another commit), shown beside them with P(float32 > reference): how
far two float32 runs of the same settings land apart. The runs must share game, preset,
protocol, cap, seeds, episodes, the world model and the data; anything else is refused.
Writes OUT.json and OUT.md.
"""
import argparse
import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ditto_jax.errors import DittoError  # noqa: E402

SHARED = ("game", "preset", "protocol", "max_steps", "seeds", "episodes_per_seed")
TRAINED_WITH = {"float32": "float32", "bfloat16": "bfloat16", "reference": "float32"}


def _load(run):
    path = os.path.join(run, "results.json")
    if not os.path.isfile(path):
        raise DittoError("No results.json in the run (has its report stage run?)", path=run)
    with open(path) as f:
        return json.load(f)


def _policy_dirs(run, method, ne):
    """The run's policy folders of this method and N_E, every seed (`ditto run` names them
    METHOD-neN[-sK] when it trains several N_E, else METHOD[-sK])."""
    root = os.path.join(run, "policies")
    for stem in (f"{method}-ne{ne}", method):
        found = [d for d in sorted(glob.glob(os.path.join(root, stem + "*")))
                 if os.path.basename(d) == stem
                 or os.path.basename(d)[len(stem):].startswith("-s")]
        if found:
            return found
    raise DittoError("No policy folder for this row", path=root, field="policies",
                     expected=f"{method}-ne{ne}[-sK] or {method}[-sK]")


def _trained_with(run, method, ne):
    """imagine_matmul of the run's seed-0 policy (absent before the option: float32)."""
    with open(os.path.join(_policy_dirs(run, method, ne)[0], "config.json")) as f:
        return json.load(f)["config"].get("imagine_matmul", "float32")


def _speed(run, method, ne):
    """Median logged steps_per_s over the log intervals of the run's policies of this
    method and N_E (every seed)."""
    rates = []
    for d in _policy_dirs(run, method, ne):
        with open(os.path.join(d, "metrics.jsonl")) as f:
            rates += [r["steps_per_s"] for r in map(json.loads, f) if "steps_per_s" in r]
    return statistics.median(rates) if rates else None


def _check_same_setting(docs, runs, name):
    for key in SHARED:
        a, b = docs["float32"].get(key), docs[name].get(key)
        if a != b:
            raise DittoError("The runs differ in more than imagine_matmul", field=key,
                             expected=repr(a), got=repr(b), path=runs[name])
    for key in ("data", "wm"):
        a, b = (os.path.realpath((docs[k]["config"].get("paths") or {}).get(key)
                                 or os.path.join(runs[k], key)) for k in ("float32", name))
        if a != b:
            raise DittoError("The runs use other data or world model",
                             field=f"config.paths.{key}", expected=a, got=b, path=runs[name])


def compare(runs):
    from ditto_jax.report.stats import probability_of_improvement
    docs = {k: _load(v) for k, v in runs.items()}
    for name in runs:
        if name != "float32":
            _check_same_setting(docs, runs, name)
    rows = {k: {(r.get("base_method") or r["method"], r.get("expert_episodes"), r["rule"]): r
                for r in docs[k]["rows"] if r["method"] not in ("expert", "random")}
            for k in runs}
    out = []
    for key in sorted(set(rows["float32"]) & set(rows["bfloat16"]), key=str):
        method, ne, rule = key
        cell = {k: rows[k][key] for k in runs if key in rows[k]}
        seen = {k: _trained_with(runs[k], method, ne) for k in cell}
        if any(seen[k] != TRAINED_WITH[k] for k in seen):
            raise DittoError("A policy was not trained with the imagine_matmul its run "
                             "is named for", field="imagine_matmul",
                             expected=str({k: TRAINED_WITH[k] for k in seen}), got=str(seen))
        rec = {"method": method, "expert_episodes": ne, "rule": rule,
               "p_bf16_over_f32": probability_of_improvement(cell["bfloat16"]["returns"],
                                                             cell["float32"]["returns"])}
        if "reference" in cell:
            rec["p_f32_over_reference"] = probability_of_improvement(
                cell["float32"]["returns"], cell["reference"]["returns"])
        for k, r in cell.items():
            rec[k] = {"iqm": r["iqm"], "iqm_ci": r["iqm_ci"],
                      "return_mean": r["return_mean"], "return_se": r["return_se"],
                      "seed_return_means": [s["return_mean"] for s in r["per_seed"]],
                      "expert_agreement": r.get("expert_agreement"),
                      "heldout_expert_prob": r.get("heldout_expert_prob"),
                      "seeds_x_episodes": [len(r["per_seed"]), len(r["returns"])],
                      "train_steps_per_s_median": _speed(runs[k], method, ne)}
        out.append(rec)
    if not out:
        raise DittoError("The runs share no policy row", path=runs["bfloat16"])
    commits = {k: ((docs[k].get("provenance") or {}).get("git") or {}).get("sha")
               for k in runs}
    return {"runs": {k: os.path.abspath(v) for k, v in runs.items()}, "commits": commits,
            **{k: docs["float32"][k] for k in SHARED}, "rows": out}


def markdown(res, command):
    f = lambda x: "—" if x is None else f"{x:.3f}"
    ci = lambda x: f"{x['iqm']:.2f} [{x['iqm_ci'][0]:.2f}, {x['iqm_ci'][1]:.2f}]"
    pci = lambda p: f"{p['p']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]"
    seeds = lambda x: " / ".join(f"{v:.1f}" for v in x["seed_return_means"])
    ref = any("reference" in r for r in res["rows"])
    lines = [
        f"# DITTO with bfloat16 imagination against float32 ({res['game']}, "
        f"{res['preset']} preset, seeds {res['seeds']}, {res['episodes_per_seed']} "
        f"episodes per seed, `{res['protocol']}` protocol)", "",
        f"Made by `{command}`. Commits: "
        + ", ".join(f"{k} {str(v)[:7]}" for k, v in res["commits"].items()) + ".", "",
        "| N_E | rule | return IQM float32 | return IQM bfloat16 | P(bf16 > f32) | "
        "per-seed means f32 ; bf16 | agreement f32 / bf16 | held-out E[pi(a_E)] f32 / bf16 "
        "| updates/s f32 / bf16 |" + (" float32 reference run: IQM; per-seed means; "
                                      "P(f32 > reference) |" if ref else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if ref else "")]
    for r in res["rows"]:
        a, b = r["float32"], r["bfloat16"]
        line = (f"| {r['expert_episodes']} | {r['rule']} | {ci(a)} | {ci(b)} | "
                f"{pci(r['p_bf16_over_f32'])} | {seeds(a)} ; {seeds(b)} | "
                f"{f(a['expert_agreement'])} / {f(b['expert_agreement'])} | "
                f"{f(a['heldout_expert_prob'])} / {f(b['heldout_expert_prob'])} | "
                f"{a['train_steps_per_s_median']:.1f} / {b['train_steps_per_s_median']:.1f} |")
        if ref:
            c = r.get("reference")
            line += (f" {ci(c)}; {seeds(c)}; {pci(r['p_f32_over_reference'])} |" if c
                     else " — |")
        lines.append(line)
    lines += ["", f"Method: {res['rows'][0]['method']}. IQM with a 95% stratified-bootstrap "
              "CI; P(X > Y) over pooled episode returns (it does not see the seed "
              "structure: one collapsed seed moves it far). updates/s: the runs shared "
              "the machine with other jobs, so it is not a speed measurement."]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--float32", required=True, help="workdir trained with float32 imagination")
    p.add_argument("--bfloat16", required=True, help="workdir trained with bfloat16")
    p.add_argument("--reference", default=None,
                   help="an earlier float32 workdir of the same cells (run-to-run spread)")
    p.add_argument("--out", default="benchmarks/results/bf16_imagination",
                   help="writes OUT.json and OUT.md")
    args = p.parse_args()
    runs = {"float32": args.float32, "bfloat16": args.bfloat16}
    if args.reference:
        runs["reference"] = args.reference
    command = "python " + " ".join([os.path.relpath(__file__)] + sys.argv[1:])
    try:
        res = compare(runs)
    except DittoError as e:
        sys.exit(f"error: {e}")
    res["command"] = command
    with open(args.out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    text = markdown(res, command)
    with open(args.out + ".md", "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
