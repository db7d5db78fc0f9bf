"""Do two `ditto run` workdirs hold the same numbers? (a refactor's before/after check)

    python benchmarks/compare_runs.py runs/smoke_before runs/smoke_after [--rtol 1e-5]

Compares results.json's rows (every numeric field except wall times) and every
metrics.jsonl under the two workdirs (world model and policies), line by line, to a
relative tolerance. Timing fields (`*time*`, `*per_s*`, `*seconds*`) are skipped.
Prints each difference and exits 1 if there is any, 0 otherwise.
"""
import argparse
import glob
import json
import math
import os
import sys

SKIP = ("time", "per_s", "seconds", "wall")


def _skipped(key):
    return any(s in key for s in SKIP)


def _numbers_differ(a, b, rtol):
    if isinstance(a, bool) or isinstance(b, bool) or not (
            isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return a != b
    if math.isnan(a) and math.isnan(b):
        return False
    return abs(a - b) > rtol * max(1.0, abs(a))


def compare_dicts(a, b, rtol, where):
    diffs = []
    for key in sorted(set(a) | set(b)):
        if _skipped(key):
            continue
        if key not in a or key not in b:
            diffs.append(f"{where}: {key} only in {'first' if key in a else 'second'}")
        elif isinstance(a[key], dict) and isinstance(b[key], dict):
            diffs += compare_dicts(a[key], b[key], rtol, f"{where}.{key}")
        elif _numbers_differ(a[key], b[key], rtol):
            diffs.append(f"{where}: {key} {a[key]!r} != {b[key]!r}")
    return diffs


def compare_runs(first, second, rtol=1e-5):
    """The list of differences between two run workdirs (empty: the same numbers)."""
    diffs = []
    rows = []
    for run in (first, second):
        with open(os.path.join(run, "results.json")) as f:
            rows.append({r["method"] + (f"@{r.get('expert_episodes')}"
                                        if "expert_episodes" in r else ""): r
                         for r in json.load(f)["rows"]})
    for name in sorted(set(rows[0]) | set(rows[1])):
        if name not in rows[0] or name not in rows[1]:
            diffs.append(f"results.json: row {name} in one run only")
            continue
        diffs += compare_dicts(rows[0][name], rows[1][name], rtol, f"results.json[{name}]")
    for path in sorted(glob.glob(os.path.join(first, "**", "metrics.jsonl"), recursive=True)):
        rel = os.path.relpath(path, first)
        other = os.path.join(second, rel)
        if not os.path.exists(other):
            diffs.append(f"{rel}: missing in {second}")
            continue
        with open(path) as f, open(other) as g:
            la = [json.loads(x) for x in f if x.strip()]
            lb = [json.loads(x) for x in g if x.strip()]
        if len(la) != len(lb):
            diffs.append(f"{rel}: {len(la)} lines != {len(lb)}")
        for i, (x, y) in enumerate(zip(la, lb)):
            diffs += compare_dicts(x, y, rtol, f"{rel}:{i + 1}")
    return diffs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--rtol", type=float, default=1e-5)
    args = p.parse_args(argv)
    diffs = compare_runs(args.first, args.second, args.rtol)
    for d in diffs:
        print(d)
    n = len(glob.glob(os.path.join(args.first, "**", "metrics.jsonl"), recursive=True))
    print(f"{len(diffs)} difference(s); results.json rows and {n} metrics.jsonl file(s) "
          f"compared at rtol {args.rtol}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
