"""Does `imagine_matmul=bfloat16` change what DITTO learns? Two `ditto run` workdirs that
differ only in `--config.policy.imagine_matmul` (float32 / bfloat16), side by side.

    python benchmarks/bf16_imagination.py --float32 runs/s12_float32 \\
        --bfloat16 runs/s12_bfloat16 --out benchmarks/results/bf16_imagination

For every (method, N_E, action rule) row the two runs share: the return IQM [95% CI] of
each, P(bfloat16 > float32) over episode returns with its 95% bootstrap CI (0.5 = no
difference; rliable's definition, `report/stats.py`), the on-policy expert agreement,
the held-out E[pi(a_E)] (offline) and the training speed (median of the logged
`steps_per_s` over the policies' log intervals: robust to a pause of the run). The runs
must share game, preset, protocol, cap, seeds, episodes, the world model and the data;
anything else is refused. Writes OUT.json and OUT.md.
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
DTYPES = ("float32", "bfloat16")


def _load(run):
    path = os.path.join(run, "results.json")
    if not os.path.isfile(path):
        raise DittoError("No results.json in the run (has its report stage run?)", path=run)
    with open(path) as f:
        return json.load(f)


def _policy_config(run, name):
    with open(os.path.join(run, "policies", name, "config.json")) as f:
        return json.load(f)


def _speed(run, method, ne):
    """Median logged steps_per_s over the log intervals of the run's policies of this
    method and N_E (every seed), and how many intervals."""
    rates = []
    for d in sorted(glob.glob(os.path.join(run, "policies", f"{method}-ne{ne}*"))):
        with open(os.path.join(d, "metrics.jsonl")) as f:
            rates += [r["steps_per_s"] for r in map(json.loads, f) if "steps_per_s" in r]
    return (statistics.median(rates) if rates else None), len(rates)


def compare(runs):
    from ditto_jax.report.stats import probability_of_improvement
    docs = {k: _load(v) for k, v in runs.items()}
    for key in SHARED:
        a, b = (docs[k].get(key) for k in DTYPES)
        if a != b:
            raise DittoError("The two runs differ in more than imagine_matmul", field=key,
                             expected=repr(a), got=repr(b), path=runs["bfloat16"])
    paths = {k: (docs[k]["config"].get("paths") or {}) for k in DTYPES}
    for key in ("data", "wm"):
        a, b = (os.path.realpath(paths[k].get(key) or os.path.join(runs[k], key))
                for k in DTYPES)
        if a != b:
            raise DittoError("The two runs use other data or world model",
                             field=f"config.paths.{key}", expected=a, got=b,
                             path=runs["bfloat16"])
    rows = {k: {(r["method"], r.get("expert_episodes"), r["rule"]): r
                for r in docs[k]["rows"] if r["method"] not in ("expert", "random")}
            for k in DTYPES}
    out = []
    for key in sorted(set(rows["float32"]) & set(rows["bfloat16"]), key=str):
        method, ne, rule = key
        pair = {k: rows[k][key] for k in DTYPES}
        base = pair["float32"].get("base_method") or method   # ditto-greedy -> ditto
        seen = {k: _policy_config(runs[k], f"{base}-ne{ne}").get("imagine_matmul",
                                                                  "float32")
                for k in DTYPES}
        if seen != {k: k for k in DTYPES}:
            raise DittoError("A policy was not trained with the imagine_matmul its run "
                             "is named for", field="imagine_matmul",
                             expected=str({k: k for k in DTYPES}), got=str(seen))
        rec = {"method": method, "expert_episodes": ne, "rule": rule,
               "p_bf16_over_f32": probability_of_improvement(pair["bfloat16"]["returns"],
                                                             pair["float32"]["returns"])}
        for k in DTYPES:
            r = pair[k]
            speed, n = _speed(runs[k], base, ne)
            rec[k] = {"iqm": r["iqm"], "iqm_ci": r["iqm_ci"],
                      "return_mean": r["return_mean"], "return_se": r["return_se"],
                      "expert_agreement": r.get("expert_agreement"),
                      "heldout_expert_prob": r.get("heldout_expert_prob"),
                      "seeds_x_episodes": [len(r["per_seed"]), len(r["returns"])],
                      "train_steps_per_s_median": speed, "log_intervals": n}
        out.append(rec)
    if not out:
        raise DittoError("The two runs share no policy row", path=runs["bfloat16"])
    return {"runs": {k: os.path.abspath(v) for k, v in runs.items()},
            **{k: docs["float32"][k] for k in SHARED}, "rows": out}


def markdown(res):
    f = lambda x: "—" if x is None else f"{x:.3f}"
    lines = [
        f"# DITTO with bfloat16 imagination against float32 ({res['game']}, "
        f"{res['preset']} preset, seeds {res['seeds']}, {res['episodes_per_seed']} "
        f"episodes per seed, `{res['protocol']}` protocol)", "",
        "Made by `python " + " ".join(sys.argv) + "`.", "",
        "| method | N_E | rule | return IQM float32 | return IQM bfloat16 | "
        "P(bf16 > f32) [95% CI] | agreement f32 / bf16 | held-out E[pi(a_E)] f32 / bf16 | "
        "updates/s f32 / bf16 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        a, b, p = r["float32"], r["bfloat16"], r["p_bf16_over_f32"]
        ci = lambda x: f"{x['iqm']:.2f} [{x['iqm_ci'][0]:.2f}, {x['iqm_ci'][1]:.2f}]"
        lines.append(
            f"| {r['method']} | {r['expert_episodes']} | {r['rule']} | {ci(a)} | {ci(b)} | "
            f"{p['p']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}] | "
            f"{f(a['expert_agreement'])} / {f(b['expert_agreement'])} | "
            f"{f(a['heldout_expert_prob'])} / {f(b['heldout_expert_prob'])} | "
            f"{a['train_steps_per_s_median']:.1f} / {b['train_steps_per_s_median']:.1f} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--float32", required=True, help="workdir trained with float32 imagination")
    p.add_argument("--bfloat16", required=True, help="workdir trained with bfloat16")
    p.add_argument("--out", default="benchmarks/results/bf16_imagination",
                   help="writes OUT.json and OUT.md")
    args = p.parse_args()
    try:
        res = compare({"float32": args.float32, "bfloat16": args.bfloat16})
    except DittoError as e:
        sys.exit(f"error: {e}")
    res["command"] = "python " + " ".join(sys.argv)
    with open(args.out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(markdown(res))
    print(markdown(res))
    print(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
    main()
