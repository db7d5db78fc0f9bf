"""One N_E table and figure from several `ditto run` workdirs that differ only in N_E.

    python benchmarks/ne_combine.py --runs runs/pong_ne runs/pong_ne11 \\
        --out benchmarks/results/pong_ne_s0-2

A study may be run in parts, one N_E per `ditto run` (for example one part per session,
or two parts side by side in two workdirs sharing `--config.paths.data/wm`). This puts
their rows into one results.json with `expert_episodes` the list of N_E, then renders
results.md with the project's own `results_markdown` (a table per N_E with P(X > D-BC)
and P(X > BC)) and plots/ne_curve.png with `plot_ne_curve`. The parts must share the
game, preset, protocol, episode cap, policy seeds, episodes per seed, the world model
(same folder, same step) and the Expert and Random reference rows; anything else is
refused, naming the run and field.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ditto_jax.errors import DittoError  # noqa: E402

SHARED = ("game", "preset", "protocol", "max_steps", "seeds", "episodes_per_seed",
          "schema_version")
REFERENCE_ROWS = ("expert", "random")


def load_results(run):
    """(path of RUN/results.json, its dict); RUN may be the file itself."""
    path = os.path.join(run, "results.json") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise DittoError("No results.json in the run (has its report stage run?)", path=run)
    with open(path) as f:
        return path, json.load(f)


def wm_folder(path, doc):
    """The world-model folder a results.json was made with (realpath)."""
    paths = (doc.get("config") or {}).get("paths") or {}
    wm = paths.get("wm") or os.path.join(os.path.dirname(path), "wm")
    return os.path.realpath(wm)


def combine(runs):
    """The combined results dict (rows of every run, references once)."""
    docs = [load_results(r) for r in runs]
    first_path, first = docs[0]
    wm = wm_folder(first_path, first)
    rows, seen_ne, refs = [], [], {}
    for path, doc in docs:
        for key in SHARED:
            if doc.get(key) != first.get(key):
                raise DittoError("The runs differ in more than N_E", path=path, field=key,
                                 expected=first.get(key), got=doc.get(key))
        if wm_folder(path, doc) != wm:
            raise DittoError("The runs use different world models", path=path,
                             field="config.paths.wm", expected=wm, got=wm_folder(path, doc))
        ne = doc.get("expert_episodes")
        if isinstance(ne, list) or ne in seen_ne:
            raise DittoError("Each run must hold one N_E, each a different one", path=path,
                             field="expert_episodes", got=ne)
        seen_ne.append(ne)
        for r in doc["rows"]:
            if r["base_method"] in REFERENCE_ROWS:
                key = (r["base_method"], r["rule"], r.get("checkpoint"))
                if key in refs and refs[key]["returns"] != r["returns"]:
                    raise DittoError("The runs measured different reference returns",
                                     path=path, field=f"rows[{r['method']}].returns",
                                     expected=refs[key]["returns"], got=r["returns"])
                refs.setdefault(key, r)
                continue
            step = (r.get("ran") or {}).get("world_model_step")
            first_step = next(((x.get("ran") or {}).get("world_model_step")
                               for x in first["rows"] if x.get("ran")), step)
            if step != first_step:
                raise DittoError("The runs' policies were trained on different world-model "
                                 "steps", path=path, field=f"rows[{r['method']}].ran."
                                 "world_model_step", expected=first_step, got=step)
            r = dict(r, expert_episodes=int(ne))
            rows.append(r)
    order = sorted(seen_ne)
    rows.sort(key=lambda r: (order.index(r["expert_episodes"]),))
    refs_rows = list(refs.values())
    out = {k: first.get(k) for k in first if k not in ("rows", "artefacts", "stage_seconds",
                                                       "wall_time_s", "config", "config_hash",
                                                       "provenance")}
    stages = {}  # per stage, summed over the parts (a part that reused a stage adds ~0)
    for _, d in docs:
        for k, v in (d.get("stage_seconds") or {}).items():
            stages[k] = stages.get(k, 0.0) + float(v)
    out.update(expert_episodes=order, rows=refs_rows[:1] + rows + refs_rows[1:],
               parts=[{"results": os.path.abspath(p), "expert_episodes": d["expert_episodes"],
                       "wall_time_s": d.get("wall_time_s"),
                       "provenance": d.get("provenance")} for p, d in docs],
               stage_seconds=stages, wall_time_s=float(sum(stages.values())),
               config=first.get("config"))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True, help="`ditto run` workdirs")
    p.add_argument("--out", required=True, help="folder for results.json/md and plots/")
    args = p.parse_args(argv)
    from ditto_jax.report.plots import plot_ne_curve
    from ditto_jax.report.run_results import results_markdown
    results = combine(args.runs)
    results["command"] = "python benchmarks/ne_combine.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    os.makedirs(os.path.join(args.out, "plots"), exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = results_markdown(results)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    plot_ne_curve(results["rows"], os.path.join(args.out, "plots", "ne_curve.png"),
                  title=f"{results['game']} ({results['preset']}): return against N_E")
    print(md)


if __name__ == "__main__":
    try:
        main()
    except DittoError as e:
        raise SystemExit(f"ne_combine: {e}")
