"""Device-hours of a sweep from measured step times: `ditto sweep GRID --estimate`.

Reads a JSON written by benchmarks/device.py (default: the newest
benchmarks/results/device-*.json that is not a --tiny run) and prices every job of the
expanded grid (ditto_jax.sweep.command.expand) with its own pipeline config:

  world model   (shared world-model jobs + runs that train their own) x wm.train.steps x
                the benchmark's seconds per frame x wm.train.batch_size * seq_len, in the
                compute dtype "auto" resolves to on the benchmarked device
                (parts wm_bf16 / wm_fp32)
  policy        runs x methods x policy.steps x the DITTO update time, scaled by
                batch_size * horizon against the benchmark's; D-GAIL is priced as DITTO
                (its discriminator is small), D-BC and pixel BC were not measured and are
                priced as a DITTO update too: an upper bound
  evaluation    agent steps of every evaluation (in training every policy.eval_every
                updates, and the eval stage) x the acting latency per step of the batch of
                envs (part act, measured with 1 and 16 envs, interpolated), at an assumed
                EPISODE_STEPS agent steps per episode; the emulator's CPU time is not counted

Not counted: the data stage (RL Unplugged reading), compilation, checkpointing, encoding
the expert data.
"""
import glob
import json
import os

from ditto_jax.core.config import load_config
from ditto_jax.core.devices import resolve_compute_dtype
from ditto_jax.errors import DittoError
from ditto_jax.sweep.jobs import override_args

EPISODE_STEPS = 5_000  # assumed agent steps per evaluation episode (cap: eval.max_steps)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")


class NoDeviceResults(DittoError):
    """No benchmarks/device.py JSON to estimate from."""


def find_device_results(path=None):
    """The device JSON to use: `path` (a file, or a folder to search), else the newest
    non-tiny device-*.json in benchmarks/results/. Raises NoDeviceResults."""
    folder = path if path and os.path.isdir(path) else None
    if path and not folder:
        if not os.path.isfile(path):
            raise NoDeviceResults("Device results file not found", path=path,
                                  expected="a JSON written by benchmarks/device.py")
        return path
    folder = folder or RESULTS_DIR
    found = [f for f in glob.glob(os.path.join(folder, "device-*.json"))
             if not f.endswith("-tiny.json")]
    if not found:
        raise NoDeviceResults(
            f"No device benchmark results in {folder}: run `PYTHONPATH=. python "
            f"benchmarks/device.py` on the target accelerator first, or pass "
            f"--device-results FILE", path=folder, expected="device-*.json")
    return max(found, key=os.path.getmtime)


def load_device_results(path):
    with open(path) as f:
        result = json.load(f)
    parts = result.get("parts") or {}
    missing = [p for p in ("ditto_update", "act") if "update_s" not in (parts.get(p) or {})
               and "envs" not in (parts.get(p) or {})]
    if not any("step_s" in (parts.get(p) or {}) for p in ("wm_bf16", "wm_fp32")):
        missing.insert(0, "wm_bf16 or wm_fp32")
    if missing:
        raise DittoError("The device results lack measured parts", path=path,
                         field="parts", expected="wm_bf16 or wm_fp32, ditto_update and act "
                                                 "with timings", got=f"missing {missing}")
    return result


def _wm_part(result, wm_config):
    """(part name, record) of the world-model step in the dtype this device would use."""
    dtype = resolve_compute_dtype(wm_config.train.get("compute_dtype", "auto"),
                                  result.get("backend", "gpu"), result.get("device_kind"))
    parts = result["parts"]
    order = ["wm_bf16", "wm_fp32"] if dtype == "bfloat16" else ["wm_fp32", "wm_bf16"]
    for name in order:
        if "step_s" in (parts.get(name) or {}):
            return name, parts[name], name == order[0]
    raise DittoError("No world-model timing in the device results", field="parts.wm_*")


def _act_ms(act, envs):
    """Latency per vector step of `envs` environments, from the 1- and 16-env figures."""
    e = {int(k): v["ms_per_step"] for k, v in act["envs"].items()}
    lo, hi = min(e), max(e)
    if envs <= lo:
        return e[lo]
    if envs >= hi:
        return e[hi] * envs / hi
    return e[lo] + (e[hi] - e[lo]) * (envs - lo) / (hi - lo)


def _evaluations(steps, every):
    if not every:
        return 0
    return steps // every + (1 if steps % every else 0)


def _config_spec(job):
    """The `ditto run --config` of a job's command."""
    return job.command[job.command.index("--config") + 1]


def estimate(wm_jobs, runs, result):
    """(stages, notes): stage -> {jobs, units, unit, per_unit_s, seconds} (jobs: how many
    jobs of the grid contribute), and the assumptions made on the way."""
    from ditto_jax import methods as registry  # jax: imported here to keep it out of --help
    parts = result["parts"]
    upd = parts["ditto_update"]
    act = parts["act"]
    stages = {}
    notes = set()

    def add(stage, seconds, units, unit_s, what, job):
        s = stages.setdefault(stage, {"jobs": set(), "units": 0, "seconds": 0.0, "unit": what})
        s["jobs"].add(job)
        s["units"] += units
        s["seconds"] += seconds

    def price_wm(config, job):
        wm = config.wm
        name, rec, exact = _wm_part(result, wm)
        if not exact:
            notes.add(f"world model priced with {name}: the dtype it resolves to was not "
                      f"measured")
        bench_frames = rec["settings"]["batch"][0] * rec["settings"]["batch"][1]
        frames = int(wm.train.batch_size) * int(wm.train.seq_len)
        per_step = rec["step_s"] / bench_frames * frames
        if rec["settings"].get("preset") != wm.get("preset", rec["settings"].get("preset")):
            notes.add(f"world-model preset {wm.get('preset')!r} differs from the benchmarked "
                      f"{rec['settings'].get('preset')!r}: scaled by frames only")
        steps = int(wm.train.steps)
        add("world model", steps * per_step, steps, per_step, "steps", job)

    for job in wm_jobs:
        price_wm(load_config(_config_spec(job), override_args(job.overrides)), job.name)
    bench_work = int(upd["batch"]) * int(upd["horizon"])
    for job in runs:
        config = load_config(_config_spec(job), override_args(job.overrides))
        if job.group is None:  # trains its own world model
            price_wm(config, job.name)
        pc = config.policy
        per_update = upd["update_s"] * int(pc.batch_size) * int(pc.horizon) / bench_work
        steps = int(pc.steps)
        methods = [m.strip() for m in str(config.methods).split(",") if m.strip()]
        for m in methods:
            stage = "policy: " + m
            if registry.get(m).baseline:  # the benchmark measures the DITTO update only
                unmeasured = [n for n in registry.names() if registry.get(n).baseline]
                notes.add(f"{' and '.join(unmeasured)} updates are not measured: priced as "
                          f"a DITTO update (an upper bound)")
            add(stage, steps * per_update, steps, per_update, "updates", job.name)
            # Evaluation: in training, then the eval stage.
            for episodes, envs in (
                    (_evaluations(steps, int(pc.get("eval_every", 0) or 0))
                     * int(pc.get("eval_episodes", 0) or 0), int(pc.get("eval_envs", 1) or 1)),
                    (int(config.eval.episodes), int(config.eval.get("envs", 1) or 1))):
                if not episodes:
                    continue
                vector_steps = episodes * EPISODE_STEPS / max(envs, 1)
                per = _act_ms(act, envs) / 1e3
                add("evaluation", vector_steps * per, episodes, EPISODE_STEPS / envs * per,
                    "episodes", job.name)
    for s in stages.values():
        s["jobs"] = len(s["jobs"])
        s["per_unit_s"] = s["seconds"] / max(s["units"], 1)
    return stages, sorted(notes)


def format_estimate(stages, notes, *, grid, result, path, n_wm, n_runs):
    lines = [f"# {grid}: {n_runs} runs, {n_wm} shared world-model jobs",
             f"# device results: {path} ({result.get('device_kind')}, "
             f"{result.get('backend')}, jax {result.get('jax')}, {result.get('time', '?')})",
             f"{'stage':22s} {'jobs':>6s} {'units':>14s} {'per unit':>12s} {'device-h':>10s}"]
    total = 0.0
    for name in sorted(stages, key=lambda s: (not s.startswith("world"), s == "evaluation",
                                              s)):
        s = stages[name]
        total += s["seconds"]
        lines.append(f"{name:22s} {s['jobs']:6d} {s['units']:>8d} {s['unit']:<5s} "
                     f"{s['per_unit_s']:10.4f} s {s['seconds'] / 3600:10.1f}")
    lines.append(f"{'total':22s} {'':6s} {'':>14s} {'':>12s} {total / 3600:10.1f}")
    lines.append(f"# evaluation assumes {EPISODE_STEPS} agent steps per episode and counts "
                 f"the policy's device time only (not the emulator's CPU time)")
    lines.append("# not counted: data stage, compilation, checkpoints, expert encoding")
    lines += [f"# {n}" for n in notes]
    return "\n".join(lines), total / 3600


def main(wm_jobs, runs, *, grid, device_results=None, out=print):
    """Prints the estimate; returns the exit code (2 when there are no device results)."""
    try:
        path = find_device_results(device_results)
    except NoDeviceResults as e:
        import sys
        print(f"ditto sweep --estimate: {e}", file=sys.stderr)
        return 2
    result = load_device_results(path)
    if result.get("tiny"):
        out(f"# warning: {path} is a --tiny run (tiny presets): these figures mean nothing")
    stages, notes = estimate(wm_jobs, runs, result)
    text, _ = format_estimate(stages, notes, grid=grid, result=result, path=path,
                              n_wm=len(wm_jobs), n_runs=len(runs))
    out(text)
    return 0
