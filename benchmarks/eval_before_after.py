"""Summarises `benchmarks/eval_before_after.sh`: per commit, the evaluation stage's wall
and CPU time (from /usr/bin/time -v), the seconds the learned policies' evaluations took
(from the stage's own log lines) and the agent steps they played (their eval JSONs),
so the two commits compare per agent step (sampled episodes differ in length between
runs). Writes benchmarks/results/eval_before_after.json.

  python benchmarks/eval_before_after.py --runs RUNS_DIR --before SHA --after SHA
"""
import argparse
import json
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def summary(runs, sha, log=None, workdir=None):
    text = open(log or os.path.join(runs, f"ba_{sha}.log")).read()
    workdir = workdir or os.path.join(runs, f"ba_{sha}")
    secs = {m.group(1): float(m.group(2))
            for m in re.finditer(r"eval/(\S+): return .*\((\d+) s\)", text)}
    rows = {name: json.load(open(os.path.join(workdir, "eval", f"{name}.json")))
            for name in secs}
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    minutes, seconds = wall.split(":")[-2:]
    steps = sum(sum(r["lengths"]) for r in rows.values())
    return {"commit": sha,
            "wall_s": 60 * float(minutes) + float(seconds),
            "user_s": float(re.search(r"User time \(seconds\): (\S+)", text).group(1)),
            "policy_eval_s": sum(secs.values()), "policy_agent_steps": steps,
            "ms_per_agent_step": 1e3 * sum(secs.values()) / steps,
            "returns": {n: r["return_mean"] for n, r in rows.items()},
            "agreement": {n: r.get("expert_agreement") for n, r in rows.items()}}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True)
    p.add_argument("--before", required=True)
    p.add_argument("--after", required=True)
    p.add_argument("--logs", nargs=2, default=None, help="BEFORE AFTER logs, if named otherwise")
    p.add_argument("--workdirs", nargs=2, default=None, help="BEFORE AFTER eval workdirs")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks/results/"
                                                       "eval_before_after.json"))
    args = p.parse_args()
    logs = args.logs or [None, None]
    wds = args.workdirs or [None, None]
    before = summary(args.runs, args.before, logs[0], wds[0])
    after = summary(args.runs, args.after, logs[1], wds[1])
    out = {"command": "bash benchmarks/eval_before_after.sh", "before": before,
           "after": after,
           "ratio_wall": after["wall_s"] / before["wall_s"],
           "ratio_ms_per_agent_step": after["ms_per_agent_step"] / before["ms_per_agent_step"]}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print({k: round(v, 3) for k, v in out.items() if k.startswith("ratio")})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
