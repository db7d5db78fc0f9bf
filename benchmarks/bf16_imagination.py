"""Does `imagine_matmul=bfloat16` change what DITTO learns? Two `ditto run` workdirs that
differ only in `--config.policy.imagine_matmul` (float32 / bfloat16), side by side.

    python benchmarks/bf16_imagination.py --float32 runs/s12_float32 [runs/s12_f32_s3-5] \\
        --bfloat16 runs/s12_bfloat16 [...] [--reference runs/pong_ne2] \\
        --out benchmarks/results/bf16_imagination

Several workdirs per precision (disjoint seeds, e.g. seeds 0-2 and 3-5) are pooled; both
precisions must cover the same seeds.

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

from ditto_jax.core.io import write_json_atomic  # noqa: E402
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


def _check_same_setting(docs, first, path):
    for key in SHARED:
        if key == "seeds":
            continue
        a, b = docs[first].get(key), docs[path].get(key)
        if a != b:
            raise DittoError("The runs differ in more than imagine_matmul and seeds",
                             field=key, expected=repr(a), got=repr(b), path=path)
    for key in ("data", "wm"):
        a, b = (os.path.realpath((docs[k]["config"].get("paths") or {}).get(key)
                                 or os.path.join(k, key)) for k in (first, path))
        if a != b:
            raise DittoError("The runs use other data or world model",
                             field=f"config.paths.{key}", expected=a, got=b, path=path)


def _per_seed_returns(row):
    """The row's episode returns split by seed (`returns` is seed-major)."""
    out, i = [], 0
    for s in row["per_seed"]:
        out.append(row["returns"][i:i + s["episodes"]])
        i += s["episodes"]
    assert i == len(row["returns"]), (i, len(row["returns"]))
    return out


def _pool(cells, method, ne):
    """One record from the same row of several runs (disjoint seeds)."""
    from ditto_jax.report.stats import iqm_ci
    per_seed = [x for path, r in cells for x in _per_seed_returns(r)]
    seeds = [s for _, r in cells for s in r["per_seed"]]
    iqm, ci = iqm_ci(per_seed)
    mean = lambda key: (statistics.fmean(s[key] for s in seeds)
                        if all(s.get(key) is not None for s in seeds) else None)
    speeds = [_speed(path, method, ne) for path, _ in cells]
    speeds = [v for v in speeds if v is not None]
    return {"iqm": iqm, "iqm_ci": ci, "returns": [x for xs in per_seed for x in xs],
            "seeds": [s["seed"] for s in seeds],
            "seed_return_means": [s["return_mean"] for s in seeds],
            "expert_agreement": mean("expert_agreement"),
            "heldout_expert_prob": mean("heldout_expert_prob"),
            "seeds_x_episodes": [len(seeds), len(per_seed[0]) if per_seed else 0],
            "train_steps_per_s_median": statistics.median(speeds) if speeds else None}


def compare(runs):
    """runs: {"float32": [workdir, ...], "bfloat16": [...], optional "reference": [...]};
    the workdirs of one precision hold disjoint seeds and are pooled."""
    from ditto_jax.report.stats import probability_of_improvement
    docs = {path: _load(path) for paths in runs.values() for path in paths}
    first = runs["float32"][0]
    for path in docs:
        _check_same_setting(docs, first, path)
    seeds = {k: sorted(s for p in paths for s in docs[p]["seeds"]) for k, paths in runs.items()}
    for k, v in seeds.items():
        if len(set(v)) != len(v):
            raise DittoError("The runs of one precision repeat a seed", field="seeds",
                             expected="disjoint seeds", got=str(v), path=str(runs[k]))
    if seeds["float32"] != seeds["bfloat16"]:
        raise DittoError("float32 and bfloat16 have other seeds", field="seeds",
                         expected=str(seeds["float32"]), got=str(seeds["bfloat16"]))
    rows = {}
    for path, doc in docs.items():
        for r in doc["rows"]:
            if r["method"] not in ("expert", "random"):
                key = (r.get("base_method") or r["method"], r.get("expert_episodes"), r["rule"])
                rows[path, key] = r
    keys = {k for _, k in rows}
    out = []
    for key in sorted(keys, key=str):
        method, ne, rule = key
        cells = {k: [(p, rows[p, key]) for p in paths if (p, key) in rows]
                 for k, paths in runs.items()}
        if len(cells["float32"]) != len(runs["float32"]) or \
                len(cells["bfloat16"]) != len(runs["bfloat16"]):
            continue
        for k, found in cells.items():
            for path, _ in found:
                seen = _trained_with(path, method, ne)
                if seen != TRAINED_WITH[k]:
                    raise DittoError("A policy was not trained with the imagine_matmul its "
                                     "run is given as", field="imagine_matmul", path=path,
                                     expected=TRAINED_WITH[k], got=seen)
        pooled = {k: _pool(c, method, ne) for k, c in cells.items() if c}
        a, b = pooled["float32"], pooled["bfloat16"]
        rec = {"method": method, "expert_episodes": ne, "rule": rule,
               "p_bf16_over_f32": probability_of_improvement(b["returns"], a["returns"]),
               "p_seed_bf16_over_f32": probability_of_improvement(b["seed_return_means"],
                                                                  a["seed_return_means"])}
        if "reference" in pooled:
            rec["p_f32_over_reference"] = probability_of_improvement(
                a["returns"], pooled["reference"]["returns"])
        for k, v in pooled.items():
            rec[k] = {kk: vv for kk, vv in v.items() if kk != "returns"}
        out.append(rec)
    if not out:
        raise DittoError("The runs share no policy row", path=str(runs["bfloat16"]))
    commits = {path: ((docs[path].get("provenance") or {}).get("git") or {}).get("sha")
               for path in docs}
    return {"runs": {k: [os.path.abspath(p) for p in v] for k, v in runs.items()},
            "commits": {os.path.abspath(k): v for k, v in commits.items()},
            **{k: docs[first][k] for k in SHARED if k != "seeds"}, "seeds": seeds,
            "rows": out}


def f(x):
    """A number to 3 places, or a dash."""
    return "—" if x is None else f"{x:.3f}"


def ci(x):
    """An IQM record as `IQM [low, high]`."""
    return f"{x['iqm']:.2f} [{x['iqm_ci'][0]:.2f}, {x['iqm_ci'][1]:.2f}]"


def pci(p):
    """A probability of improvement as `P [low, high]`."""
    return f"{p['p']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]"


def write_outputs(out, doc, text):
    """OUT.json and OUT.md, then the table on stdout."""
    write_json_atomic(out + ".json", doc, indent=1)
    with open(out + ".md", "w") as fh:
        fh.write(text)
    print(text)
    print(f"wrote {out}.json and {out}.md")


def markdown(res, command):
    seeds = lambda x: " / ".join(f"{v:.1f}" for v in x["seed_return_means"])
    ref = any("reference" in r for r in res["rows"])
    lines = [
        f"# DITTO with bfloat16 imagination against float32 ({res['game']}, "
        f"{res['preset']} preset, seeds {res['seeds']['float32']}, {res['episodes_per_seed']} "
        f"episodes per seed, `{res['protocol']}` protocol)", "",
        f"Made by `{command}`. Commits: "
        + ", ".join(f"{os.path.basename(k)} {str(v)[:7]}" for k, v in res["commits"].items())
        + ".", "",
        "| N_E | rule | return IQM float32 | return IQM bfloat16 | P(bf16 > f32) episodes; "
        "seed means | "
        "per-seed means f32 ; bf16 | agreement f32 / bf16 | held-out E[pi(a_E)] f32 / bf16 "
        "| updates/s f32 / bf16 |" + (" float32 reference run: IQM; per-seed means; "
                                      "P(f32 > reference) |" if ref else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if ref else "")]
    for r in res["rows"]:
        a, b = r["float32"], r["bfloat16"]
        line = (f"| {r['expert_episodes']} | {r['rule']} | {ci(a)} | {ci(b)} | "
                f"{pci(r['p_bf16_over_f32'])}; {pci(r['p_seed_bf16_over_f32'])} | "
                f"{seeds(a)} ; {seeds(b)} | "
                f"{f(a['expert_agreement'])} / {f(b['expert_agreement'])} | "
                f"{f(a['heldout_expert_prob'])} / {f(b['heldout_expert_prob'])} | "
                f"{a['train_steps_per_s_median']:.1f} / {b['train_steps_per_s_median']:.1f} |")
        if ref:
            c = r.get("reference")
            line += (f" {ci(c)}; {seeds(c)}; {pci(r['p_f32_over_reference'])} |" if c
                     else " — |")
        lines.append(line)
    lines += ["", f"Method: {res['rows'][0]['method']}. IQM with a 95% stratified-bootstrap "
              "CI (episodes resampled within seeds); P(X > Y) first over pooled episode "
              "returns (it does not see the seed structure: one collapsed seed moves it "
              "far), then over the per-seed mean returns. Agreement and held-out "
              "E[pi(a_E)]: means over seeds. updates/s: the runs shared the machine with "
              "other jobs, so it is not a speed measurement."]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--float32", required=True, nargs="+",
                   help="workdir(s) trained with float32 imagination (disjoint seeds)")
    p.add_argument("--bfloat16", required=True, nargs="+",
                   help="workdir(s) trained with bfloat16, the same seeds")
    p.add_argument("--reference", default=None, nargs="+",
                   help="earlier float32 workdir(s) of the same cells (run-to-run spread)")
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
    write_outputs(args.out, res, markdown(res, command))


if __name__ == "__main__":
    main()
