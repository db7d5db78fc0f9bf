"""Does acting with bfloat16 products (`ditto eval --act-matmul bfloat16`) change what a
trained policy scores in the real game? Every policy is evaluated twice, float32 and
bfloat16, with the same seed, so both play the same environments with the same
sampling keys: the only difference is the acting precision.

    python benchmarks/bf16_acting.py RUN/policies/ditto-ne2 RUN/policies/ditto-ne2-s1 ... \\
        [--episodes 10] [--envs 8] [--rules sample greedy] \\
        --out benchmarks/results/bf16_acting

Policies are grouped by (method, N_E) as `ditto run` names them (METHOD-neN[-sK]); each
group's seeds are pooled. For every (method, N_E, rule): the return IQM [95% CI] of each
precision (stratified bootstrap, episodes resampled within seeds), P(bf16 > f32) over
the per-seed mean returns and over pooled episodes (0.5: no difference;
`report/stats.py`), the share of paired episodes with the same return, the on-policy
expert agreement of each, and the evaluations' wall time (for the record only: the
paired episodes differ in length and each evaluation compiles its agent;
`benchmarks/acting_precision.py` measures speed).

Each evaluation's result is appended to OUT.json as it arrives, and a rerun with the same
OUT skips the ones done, so a killed run resumes. Writes OUT.json and OUT.md.
"""
import argparse
import json
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bf16_imagination import ci, f, pci, write_outputs  # noqa: E402
from ditto_jax.core.io import write_json_atomic  # noqa: E402
from ditto_jax.errors import DittoError  # noqa: E402

PRECISIONS = ("float32", "bfloat16")


def _group(workdir):
    """(method, N_E or None, seed) from a `ditto run` policy folder's name."""
    m = re.fullmatch(r"(.+?)(?:-ne(\d+))?(?:-s(\d+))?", os.path.basename(
        os.path.normpath(workdir)))
    return m.group(1), (int(m.group(2)) if m.group(2) else None), int(m.group(3) or 0)


def _key(workdir, rule, precision):
    return f"{os.path.abspath(workdir)}|{rule}|{precision}"


def evaluate_all(workdirs, *, rules, episodes, envs, seed, out):
    from ditto_jax.stages.evaluate import evaluate_workdir
    done = {}
    if os.path.isfile(out + ".json"):
        with open(out + ".json") as f:
            done = json.load(f).get("evaluations", {})
    # The first evaluation of a process also compiles; alternate which precision goes
    # first, so neither side's wall time carries all of it.
    todo = [(w, r, p) for i, (w, r) in enumerate((w, r) for w in workdirs for r in rules)
            for p in (PRECISIONS if i % 2 == 0 else PRECISIONS[::-1])
            if _key(w, r, p) not in done]
    t0 = time.perf_counter()
    for i, (w, rule, precision) in enumerate(todo):
        t = time.perf_counter()
        res = evaluate_workdir(w, episodes=episodes, envs=envs, seed=seed, video=False,
                               greedy=rule == "greedy", act_matmul=precision)
        wall = time.perf_counter() - t
        done[_key(w, rule, precision)] = {
            "workdir": os.path.abspath(w), "rule": rule, "act_matmul": precision,
            "wall_s": wall, "returns": res["returns"], "lengths": res["lengths"],
            "expert_agreement": res.get("expert_agreement"),
            "checkpoint_step": (res.get("checkpoint") or {}).get("step")}
        write_json_atomic(out + ".json", {"evaluations": done}, indent=1)
        elapsed = time.perf_counter() - t0
        eta = elapsed / (i + 1) * (len(todo) - i - 1)
        print(f"[{i + 1}/{len(todo)}] {os.path.basename(w)} {rule} {precision}: return "
              f"{statistics.fmean(res['returns']):.2f}, {wall:.0f} s (ETA {eta / 60:.0f} min)",
              flush=True)
    return done


def summarize(evaluations):
    from ditto_jax.report.stats import iqm_ci, probability_of_improvement
    cells = {}
    for e in evaluations.values():
        method, ne, seed = _group(e["workdir"])
        cells.setdefault((method, ne, e["rule"]), {}).setdefault(seed, {})[
            e["act_matmul"]] = e
    rows = []
    for (method, ne, rule), by_seed in sorted(cells.items(), key=str):
        seeds = sorted(s for s, v in by_seed.items() if set(v) == set(PRECISIONS))
        if not seeds:
            continue
        rec = {"method": method, "expert_episodes": ne, "rule": rule, "seeds": seeds}
        for p in PRECISIONS:
            per_seed = [by_seed[s][p]["returns"] for s in seeds]
            iqm, ci = iqm_ci(per_seed)
            agree = [by_seed[s][p]["expert_agreement"] for s in seeds]
            rec[p] = {"iqm": iqm, "iqm_ci": ci,
                      "seed_return_means": [statistics.fmean(x) for x in per_seed],
                      "expert_agreement": (statistics.fmean(agree)
                                           if None not in agree else None),
                      "wall_s": sum(by_seed[s][p]["wall_s"] for s in seeds)}
        a, b = rec["float32"], rec["bfloat16"]
        pairs = [(x, y) for s in seeds for x, y in zip(by_seed[s]["float32"]["returns"],
                                                       by_seed[s]["bfloat16"]["returns"])]
        rec["p_seed_bf16_over_f32"] = probability_of_improvement(b["seed_return_means"],
                                                                 a["seed_return_means"])
        rec["p_bf16_over_f32"] = probability_of_improvement(
            [y for _, y in pairs], [x for x, _ in pairs])
        rec["same_return_share"] = sum(x == y for x, y in pairs) / len(pairs)
        rec["episodes"] = len(pairs)
        rec["wall_ratio_bf16_over_f32"] = b["wall_s"] / a["wall_s"]
        rows.append(rec)
    if not rows:
        raise DittoError("No policy was evaluated in both precisions yet")
    return rows


def markdown(rows, command, settings):
    lines = [f"# Acting with bfloat16 products against float32, the same policies "
             f"({settings})", "", f"Made by `{command}`.", "",
             "| method | N_E | rule | seeds x episodes | return IQM float32 | return IQM "
             "bfloat16 | P(bf16 > f32) seed means; episodes | same return | agreement "
             "f32 / bf16 | eval wall s f32 / bf16 (ratio) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["float32"], r["bfloat16"]
        lines.append(
            f"| {r['method']} | {r['expert_episodes']} | {r['rule']} | {len(r['seeds'])} x "
            f"{r['episodes'] // len(r['seeds'])} | {ci(a)} | {ci(b)} | "
            f"{pci(r['p_seed_bf16_over_f32'])}; {pci(r['p_bf16_over_f32'])} | "
            f"{r['same_return_share']:.2f} | {f(a['expert_agreement'])} / "
            f"{f(b['expert_agreement'])} | {a['wall_s']:.0f} / {b['wall_s']:.0f} "
            f"({r['wall_ratio_bf16_over_f32']:.2f}) |")
    lines += ["", "Each policy plays the same seeds in both precisions (paired episodes). "
              "IQM with a 95% stratified-bootstrap CI (episodes resampled within seeds). "
              "P(X > Y): rliable's probability of improvement with a 95% bootstrap CI, "
              "over per-seed mean returns, then over pooled episodes. Wall time: "
              "`ditto eval` end to end with on-policy agreement and no video; not a speed "
              "measurement (the paired episodes differ in length, each evaluation compiles "
              "its agent, the machine was shared): `benchmarks/acting_precision.py` "
              "measures speed."]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workdirs", nargs="+", help="policy workdirs (RUN/policies/METHOD-neN-sK)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--rules", nargs="+", default=["sample", "greedy"],
                   choices=["sample", "greedy"])
    p.add_argument("--out", default="benchmarks/results/bf16_acting",
                   help="writes OUT.json (resumable) and OUT.md")
    args = p.parse_args()
    for w in args.workdirs:
        if not os.path.isdir(os.path.join(w, "checkpoints")):
            sys.exit(f"error: not a policy workdir (no checkpoints/): {w}")
    command = "python " + " ".join([os.path.relpath(__file__)] + sys.argv[1:])
    settings = (f"{args.episodes} episodes per policy and rule, {args.envs} envs, "
                f"seed {args.seed}, `ditto` protocol, final checkpoints")
    try:
        done = evaluate_all(args.workdirs, rules=args.rules, episodes=args.episodes,
                            envs=args.envs, seed=args.seed, out=args.out)
        rows = summarize({k: v for k, v in done.items()
                          if os.path.abspath(v["workdir"]) in
                          {os.path.abspath(w) for w in args.workdirs}})
    except DittoError as e:
        sys.exit(f"error: {e}")
    write_outputs(args.out, {"command": command, "settings": settings, "rows": rows,
                             "evaluations": done}, markdown(rows, command, settings))


if __name__ == "__main__":
    main()
