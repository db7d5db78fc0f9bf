"""`ditto sweep`: expand a grid of experiments into `ditto run` jobs and run them.

A grid file (experiments/grids/*.py) defines `get_grid(variant="")` returning a dict:

    config    "experiments/configs/pipeline.py:PRESET" (the `ditto run --config`)
    overrides {config key: value} given to every run
    axes      {axis: [values]}: the runs are the cartesian product, in this order. A value
              may be a dict of several overrides set together (e.g. {"seed": 0,
              "data.rlu_run": 1}); the axis name then names the one shown in run names.
    share_by  axes whose values pick one shared data dir + world model
              (paths.data / paths.wm under SHARED/<group>); () shares nothing
    name      run-name template over axis values, dots as underscores ("{game}_s{seed}")

Runs sharing a `paths.wm` get ONE `--stages data,wm` job first (phase 1), so parallel runs
never train the same world model twice; phase 2 runs the rest with
`--stages policy,eval,report`. A run whose `SWEEP/runs/NAME/results.json` exists is
skipped. Every job is listed in `SWEEP/sweep_status.json`; a failed job is retried
`--retries` times and the command exits 1 if any job failed finally.

This module holds the command (`add_arguments`, `main`) and the driver (`run_sweep`, the
status file); grid files are loaded in ditto_jax/sweep/grid.py, expanded into jobs in
ditto_jax/sweep/jobs.py and run by the backends in ditto_jax/sweep/launch.py. Their public
names are importable from here too.
"""
import argparse
import os
import re
import shlex
import sys
import threading
import time

from ditto_jax.core.args import non_negative_int, positive_int
from ditto_jax.core.config import config_overrides, load_config
from ditto_jax.core.io import write_json_atomic
from ditto_jax.errors import DittoError
from ditto_jax.pipeline.plan import check_pipeline_config
from ditto_jax.sweep import estimate
from ditto_jax.sweep.grid import load_grid
from ditto_jax.sweep.jobs import COMMAND_ENV, RESULTS, WM_STAGES, _slug, expand, override_args
from ditto_jax.sweep.launch import LocalBackend, SlurmBackend

ACCEPTS_EXTRA_ARGS = True  # --config.KEY=VALUE overrides for every run

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------------------- the sweep

class Status:
    """SWEEP/sweep_status.json, rewritten (atomically) after every change."""

    def __init__(self, path, meta):
        self.path, self.meta, self.entries, self.lock = path, meta, {}, threading.Lock()

    def set(self, job, **fields):
        with self.lock:
            e = self.entries.setdefault(job.name, {
                "name": job.name, "phase": job.phase,
                "kind": "world_model" if job.phase == 1 else "run",
                "workdir": job.workdir, "log": job.log, "attempts": 0, "returncode": None,
                "command": shlex.join(job.command)})
            e.update(fields)
            self._write()

    def interrupted(self):
        with self.lock:
            for e in self.entries.values():
                if e["status"] in ("pending", "running", "retrying"):
                    e.update(status="failed", reason="interrupted")
            self._write()

    def _write(self):
        counts = {}
        for e in self.entries.values():
            counts[e["status"]] = counts.get(e["status"], 0) + 1
        data = {**self.meta, "updated": time.strftime("%Y-%m-%d %H:%M:%S"), "counts": counts,
                "runs": list(self.entries.values())}
        write_json_atomic(self.path, data, indent=1)

    def failed(self):
        return [e for e in self.entries.values() if e["status"] == "failed"]


def _plan(wm_jobs, runs):
    """Which jobs still need running: finished runs and world models are skipped."""
    todo_runs = [j for j in runs if not j.finished()]
    needed = {j.group for j in todo_runs if j.group}
    todo_wm = [j for j in wm_jobs if j.name in needed and not j.finished()]
    return todo_wm, todo_runs


def print_plan(wm_jobs, runs, out=None):
    out = out or sys.stdout
    todo_wm, todo_runs = _plan(wm_jobs, runs)
    for phase, jobs, todo, what in ((1, wm_jobs, todo_wm, f"--stages {WM_STAGES}, one per "
                                     "shared world model"), (2, runs, todo_runs, "runs")):
        print(f"# phase {phase}: {len(todo)} of {len(jobs)} jobs to run ({what})", file=out)
        for j in jobs:
            if j in todo:
                print(shlex.join(j.command), file=out)
            else:
                print(f"# skip (finished): {j.name}", file=out)


def check_jobs(jobs, out=None):
    """Loads every job's config with its overrides and makes `ditto run`'s own checks
    (game, keys, values, methods, seeds, stages); a DittoError lists the jobs that would
    fail and why."""
    out = out or sys.stderr
    bad, by_error = [], {}
    for job in jobs:
        args = job.command[job.command.index("run") + 1:]
        spec = args[args.index("--config") + 1]
        stages = args[args.index("--stages") + 1].split(",") if "--stages" in args else None
        try:
            config = load_config(spec, override_args(job.overrides))
            if stages is None:
                check_pipeline_config(config)
            else:
                check_pipeline_config(config, stages)
        except DittoError as e:
            bad.append(job.name)
            by_error.setdefault(str(e), []).append(job.name)
    for error, names in by_error.items():  # one line per distinct error
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        print(f"[{shown}] {error}", file=out)
    if bad:
        raise DittoError(f"{len(bad)} of {len(jobs)} jobs of the grid have a bad config "
                         "(the errors are printed above); fix the grid or the overrides",
                         got=", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))


def error_from_log(log_path, limit=500):
    """The error a failed job printed in its last attempt (the log is appended per attempt):
    the CLI's `ditto ...: error: ...` line, a traceback's last line, else its last line."""
    try:
        with open(log_path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        return f"(no log: {e.strerror}: {log_path})"
    starts = [i for i, line in enumerate(lines) if line.startswith("$ ")]
    output = lines[starts[-1] + 1:] if starts else lines
    output = [line.strip() for line in output
              if line.strip() and not line.startswith("=== exit code")]
    if not output:
        return "(the job printed nothing)"
    for line in reversed(output):
        if re.match(r"^ditto( [\w-]+)?: error: ", line) or re.match(
                r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*", line):
            return line[-limit:]
    return output[-1][-limit:]


def run_sweep(wm_jobs, runs, sweep_dir, backend, *, retries=1, meta=None, log=print):
    """Runs phase 1 then phase 2 with retries; returns the status dict."""
    status = Status(os.path.join(os.path.abspath(sweep_dir), "sweep_status.json"),
                    dict(meta or {}, sweep=os.path.abspath(sweep_dir)))
    todo_wm, todo_runs = _plan(wm_jobs, runs)
    for j in wm_jobs + runs:
        if j in todo_wm or j in todo_runs:
            status.set(j, status="pending")
        else:
            status.set(j, status="skipped", reason="finished before this sweep")
    attempts = retries + 1

    def on_done(job, rc, error):
        e = status.entries[job.name]
        if rc == 0 and job.phase == 2 and not job.finished():
            error = f"exited 0 but wrote no {RESULTS}"
        elif rc not in (0, None) and error is None:
            error = error_from_log(job.log)
        ok = rc == 0 and error is None
        if ok and job.phase == 1:
            write_json_atomic(job.marker, {"command": job.command, "time": time.time()},
                              indent=None)
        n = e["attempts"] + 1
        final = ok or n >= attempts
        status.set(job, attempts=n, returncode=rc, error=error,
                   status="done" if ok else ("failed" if final else "retrying"))
        word = "done" if ok else f"FAILED (exit code {rc}{', ' + error if error else ''})"
        log(f"[{job.name}] {word}, attempt {n}/{attempts}"
            + ("" if ok or final else ", will retry") + f"; log: {job.log}")

    def phase(jobs, number):
        pending = list(jobs)
        for attempt in range(1, attempts + 1):
            if not pending:
                break
            log(f"phase {number}: {len(pending)} jobs, attempt {attempt}/{attempts}")
            for j in pending:
                status.set(j, status="running")
            backend.run(pending, lambda j: f"attempt {attempt}/{attempts}", on_done)
            pending = [j for j in pending if status.entries[j.name]["status"] != "done"]

    try:
        phase(todo_wm, 1)
        _phase2(todo_wm, todo_runs, status, phase, log)
    except KeyboardInterrupt:
        status.interrupted()
        raise
    return status


def _phase2(todo_wm, todo_runs, status, phase, log):
    failed_wm = {j.name for j in todo_wm if status.entries[j.name]["status"] != "done"}
    blocked = [j for j in todo_runs if j.group in failed_wm]
    for j in blocked:
        status.set(j, status="failed", reason=f"not run: world-model job {j.group} failed")
        log(f"[{j.name}] FAILED: not run, its world-model job {j.group} failed")
    phase([j for j in todo_runs if j not in blocked], 2)


# ---------------------------------------------------------------------------- CLI

def _minutes(text):
    """`90`, `2:00:00` or `1-12:00:00` -> minutes."""
    days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
    parts = [int(p) for p in rest.split(":")]
    if len(parts) == 1:
        return int(days) * 1440 + parts[0]
    h, m, s = ([0] * (3 - len(parts)) + parts)[-3:]
    return int(days) * 1440 + h * 60 + m + (1 if s else 0)


def add_arguments(p):
    p.add_argument("grid", help="grid file[:variant], e.g. experiments/grids/paper.py:games="
                                "breakout+pong,seeds=5, or a grid name (paper, horizon, reward, "
                                "local); --config.KEY=VALUE overrides apply to every run")
    p.add_argument("--workdir", default=None,
                   help="sweep directory (runs/, logs/, sweep_status.json); "
                        "default sweeps/GRID[-VARIANT]")
    p.add_argument("--shared-dir", default=None,
                   help="where shared data + world models live (default WORKDIR/shared); point "
                        "an ablation at the paper sweep's to reuse its world models")
    p.add_argument("--backend", choices=("local", "slurm"), default="local",
                   help="run the jobs on this machine, or submit them to SLURM")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="local: runs at once (default 1, or one per --visible-devices entry)")
    p.add_argument("--visible-devices", default=None,
                   help="local: comma-separated GPU ids; each running job gets one "
                        "(CUDA_VISIBLE_DEVICES)")
    p.add_argument("--retries", type=non_negative_int, default=1, help="re-runs of a failed job")
    p.add_argument("--only", default=None, help="comma-separated globs over run names")
    p.add_argument("--dry-run", action="store_true",
                   help="print every command, phase by phase, check every run's config as "
                        "`ditto run` would (exit 2 on a bad one), and run nothing")
    p.add_argument("--estimate", action="store_true",
                   help="print the grid's device-hours per stage from measured step times "
                        "(benchmarks/device.py) and run nothing")
    p.add_argument("--device-results", default=None,
                   help="--estimate: a JSON from benchmarks/device.py, or a folder of them "
                        "(default: the newest benchmarks/results/device-*.json)")
    p.add_argument("--ditto-command", default=None,
                   help="the ditto executable (default: python -m ditto_jax.cli, "
                        f"or ${COMMAND_ENV})")
    g = p.add_argument_group("slurm backend (submitit)")
    g.add_argument("--partition", default=None, help="SLURM partition")
    g.add_argument("--gpus", type=non_negative_int, default=1, help="GPUs per job")
    g.add_argument("--cpus", type=positive_int, default=None, help="CPUs per job")
    g.add_argument("--mem-gb", type=positive_int, default=None, help="memory per job in GB")
    g.add_argument("--time", default="1440", help="time limit per job: minutes or [D-]HH:MM:SS")
    g.add_argument("--account", default=None, help="SLURM account")
    g.add_argument("--qos", default=None, help="SLURM quality of service")
    g.add_argument("--constraint", default=None, help="SLURM node constraint, e.g. a GPU type")
    g.add_argument("--array-parallelism", type=positive_int, default=None,
                   help="most jobs of one phase running at once")
    g.add_argument("--slurm-setup", action="append", default=[],
                   help="shell line run before each job (repeatable), e.g. 'module load cuda'")
    g.add_argument("--slurm-cluster", default="slurm", help=argparse.SUPPRESS)  # tests: local


def main(args):
    overrides = config_overrides(getattr(args, "extra_args", []),
                                 expected="options of `ditto sweep --help` or --config.KEY=VALUE")
    if args.retries < 0:
        raise DittoError("--retries must be >= 0", got=args.retries)
    grid, grid_path, variant = load_grid(args.grid)
    gname = os.path.splitext(os.path.basename(grid_path))[0]
    sweep_dir = args.workdir or os.path.join(
        "sweeps", gname + (f"-{_slug(variant)}" if variant else ""))
    command = shlex.split(args.ditto_command) if args.ditto_command else None
    wm_jobs, runs = expand(grid, sweep_dir, extra_overrides=overrides, command=command,
                           shared_dir=args.shared_dir, only=args.only, grid_path=grid_path)
    if getattr(args, "estimate", False):
        return estimate.main(wm_jobs, runs, grid=args.grid,
                             device_results=args.device_results)
    if args.dry_run:
        print(f"# sweep {args.grid}: {len(runs)} runs, {len(wm_jobs)} shared world models, "
              f"workdir {os.path.abspath(sweep_dir)}")
        print_plan(wm_jobs, runs)
        check_jobs(wm_jobs + runs)  # every config, as `ditto run` would check it
        return 0

    devices = [d for d in (args.visible_devices or "").split(",") if d]
    if args.backend == "local":
        backend = LocalBackend(args.workers or len(devices) or 1, devices or None)
    else:
        slurm_dir = os.path.join(os.path.abspath(sweep_dir), "slurm")
        backend = SlurmBackend(
            slurm_dir, cluster=args.slurm_cluster, name=f"ditto-{gname}",
            timeout_min=_minutes(args.time), gpus_per_node=args.gpus,
            cpus_per_task=args.cpus, mem_gb=args.mem_gb, slurm_partition=args.partition,
            slurm_account=args.account, slurm_qos=args.qos, slurm_constraint=args.constraint,
            slurm_array_parallelism=args.array_parallelism, slurm_setup=args.slurm_setup)
    meta = {"grid": args.grid, "grid_file": os.path.abspath(grid_path),
            "backend": args.backend, "retries": args.retries, "overrides": overrides}
    status = run_sweep(wm_jobs, runs, sweep_dir, backend, retries=args.retries, meta=meta,
                       log=lambda msg: print(msg, flush=True))
    counts = {}
    for e in status.entries.values():
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    print(f"sweep finished: {counts}; status: {status.path}", flush=True)
    failed = status.failed()
    for e in failed:
        print(f"  failed: {e['name']} (exit code {e['returncode']}"
              f"{', ' + e['reason'] if e.get('reason') else ''}) log: {e['log']}", file=sys.stderr)
    return 1 if failed else 0
