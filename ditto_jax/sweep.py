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
"""
import argparse
import ast
import dataclasses
import fnmatch
import itertools
import json
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time

from ditto_jax.configs import config_overrides, load_python_file
from ditto_jax import resources
from ditto_jax.errors import DittoError

ACCEPTS_EXTRA_ARGS = True  # --config.KEY=VALUE overrides for every run

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID_DIRS = ("experiments/grids", resources.grids_dir())  # cwd, then the installed grids
WM_STAGES = "data,wm"
AFTER_WM_STAGES = "policy,eval,report"
RESULTS = "results.json"
WM_MARKER = "sweep_wm_done.json"  # written by the sweep when a phase-1 job succeeded
COMMAND_ENV = "DITTO_SWEEP_COMMAND"  # replaces `python -m ditto_jax.cli` (tests)


# ---------------------------------------------------------------------------- grids

def parse_variant(variant, **defaults):
    """`key=value,key=a+b` -> defaults updated; `+` separates list items.

    Types follow the defaults: int, str, tuple (of the type of its first item). An int
    default accepts a list too (e.g. seeds=3 or seeds=0+4).
    """
    out = dict(defaults)
    for item in filter(None, (s.strip() for s in (variant or "").split(","))):
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in defaults:
            raise DittoError("Unknown grid variant setting", field=key or item,
                             expected=f"KEY=VALUE[,KEY=VALUE] with KEY in {sorted(defaults)}",
                             got=item)
        default = defaults[key]
        parts = [p for p in text.split("+") if p != ""]
        try:
            if isinstance(default, (tuple, list)) or (isinstance(default, int) and len(parts) > 1):
                kind = type(default[0]) if isinstance(default, (tuple, list)) and default else int
                value = tuple(kind(p) for p in parts)
            elif isinstance(default, bool):
                value = text.lower() in ("1", "true", "yes")
            else:
                value = type(default)(text)
        except ValueError as e:
            raise DittoError("Bad grid variant value", field=key,
                             expected=type(default).__name__, got=text) from e
        out[key] = value
    return out


def rlu_ablation_grid(variant, *, axis, values, config_key, name):
    """A DITTO-only ablation on RL Unplugged Breakout (horizon, reward grids): one config
    field varied beside game x seed; data and world models as in the paper grid."""
    v = parse_variant(variant, **{axis: values}, games=("breakout",), seeds=3, ne=1000,
                      rlu_run=0, expert_checkpoints="45-49", wm_checkpoints="0-49",
                      wm_episodes=1000, expert_episodes=1000, preset="paper")
    return dict(
        config=f"experiments/configs/pipeline.py:{v['preset']}",
        overrides={
            "methods": "ditto",
            "expert_episodes": v["ne"],
            "data.source": "rlu",
            "data.rlu_name": "rlu_atari_checkpoints_ordered",
            "data.expert_checkpoints": v["expert_checkpoints"],
            "data.expert_episodes": v["expert_episodes"],
            "data.wm_checkpoints": v["wm_checkpoints"],
            "data.wm_episodes": v["wm_episodes"],
        },
        axes={
            "game": list(v["games"]),
            "seed": [{"seed": s, "data.rlu_run": v["rlu_run"] or s % 5 + 1}
                     for s in seeds_list(v["seeds"])],
            config_key: list(v[axis]),
        },
        share_by=("game", "seed"),
        name=name,
    )


def seeds_list(seeds):
    """An int N means seeds 0..N-1; a tuple lists them."""
    return tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)


def resolve_grid_path(spec):
    """`path.py[:variant]` or a grid name (`paper`) -> (file, variant)."""
    path, _, variant = spec.partition(":")
    candidates = [path] if path.endswith(".py") or os.sep in path else []
    candidates += [os.path.join(d, path if path.endswith(".py") else path + ".py")
                   for d in GRID_DIRS]
    for c in candidates:
        if os.path.isfile(c):
            return c, variant
    known = sorted({f[:-3] for d in GRID_DIRS if os.path.isdir(d)
                    for f in os.listdir(d) if f.endswith(".py") and not f.startswith("_")})
    raise DittoError("Grid file not found", path=path,
                     expected=f"a grid file path.py[:variant] or one of {known}")


def load_grid(spec):
    """Loads a grid file and calls its get_grid(variant); returns (grid, path, variant)."""
    path, variant = resolve_grid_path(spec)
    module = load_python_file(path, "get_grid")
    try:
        grid = module.get_grid(variant)
    except DittoError:
        raise
    except (KeyError, ValueError, TypeError) as e:
        raise DittoError(f"Bad grid variant ({e})", path=path, field="variant",
                         got=repr(variant)) from e
    for key in ("config", "axes"):
        if key not in grid:
            raise DittoError("Grid description lacks a field", path=path, field=key)
    return dict(grid), path, variant


# ---------------------------------------------------------------------------- expansion

@dataclasses.dataclass
class Job:
    name: str
    phase: int               # 1: shared data + world model, 2: everything else
    workdir: str
    command: list
    log: str
    overrides: dict
    group: str = None         # name of the phase-1 job making the shared world model
    env: dict = dataclasses.field(default_factory=dict)

    @property
    def marker(self):
        """File whose existence means the job finished."""
        return os.path.join(self.workdir, WM_MARKER if self.phase == 1 else RESULTS)

    def finished(self):
        return os.path.exists(self.marker)


class _Raw(str):
    """An override typed on the sweep's command line: passed on as typed."""


def format_value(value):
    """Text for `--config.KEY=VALUE`, read back to the same type by ditto_jax.configs."""
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value  # bare string
        return repr(value)  # "45-49" would otherwise be read as the int -4
    if isinstance(value, (tuple, list)):
        return repr(tuple(value))
    return str(value)


def override_args(overrides):
    return [f"--config.{k}={format_value(v)}" for k, v in overrides.items()]


def _slug(text):
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", str(text)).strip("-") or "x"


def _fields(values):
    """Template fields: config keys with dots as underscores."""
    return {k.replace(".", "_"): v for k, v in values.items()}


def _format(template, values, what):
    try:
        return template.format(**_fields(values))
    except (KeyError, IndexError) as e:
        raise DittoError(f"Grid {what} template names an unknown field", field=str(e),
                         expected=f"one of {sorted(_fields(values))}", got=template) from e


def default_command():
    env = os.environ.get(COMMAND_ENV)
    return shlex.split(env) if env else [sys.executable, "-m", "ditto_jax.cli"]


def _resolve_config(spec, grid_path):
    """The grid's config path as given if it exists from here, else next to the grid's repo."""
    path, sep, preset = spec.partition(":")
    if os.path.isabs(path) or os.path.exists(path):
        return spec
    d = os.path.dirname(os.path.abspath(grid_path))
    while d != os.path.dirname(d):
        if os.path.exists(os.path.join(d, path)):
            return os.path.join(d, path) + sep + preset
        d = os.path.dirname(d)
    return spec  # may not exist yet; `ditto run` reports it


def expand(grid, sweep_dir, *, extra_overrides=(), command=None, shared_dir=None, only=None,
           grid_path=None):
    """Grid -> (phase-1 world-model jobs, phase-2 runs), with commands and workdirs."""
    sweep_dir = os.path.abspath(sweep_dir)
    shared_dir = os.path.abspath(shared_dir or os.path.join(sweep_dir, "shared"))
    command = list(command or default_command())
    config = _resolve_config(grid["config"], grid_path) if grid_path else grid["config"]
    base = dict(grid.get("overrides", {}))
    cli = {}  # applied last, so they win over the grid (paths.wm=... shares one for all)
    for item in extra_overrides:
        key, sep, text = item[len("--config."):].partition("=")
        if not sep:
            raise DittoError("Override must look like --config.KEY=VALUE", got=item)
        cli[key] = _Raw(text)
    axes = list(grid["axes"].items())
    for axis, values in axes:
        if not values:
            raise DittoError("Grid axis has no values", field=axis)
    share_by = tuple(grid.get("share_by", ()))
    unknown = [a for a in share_by if a not in grid["axes"] and a not in base]
    if unknown:
        raise DittoError("Grid share_by names an unknown axis", field=unknown[0],
                         expected=f"one of {[a for a, _ in axes]}")
    name_template = grid.get("name")
    group_template = grid.get("group_name") or "_".join(
        "{%s}" % a.replace(".", "_") if a == "game" else
        f"{a.split('.')[-1][0]}{{{a.replace('.', '_')}}}" for a in share_by)

    runs, names = [], {}
    for combo in itertools.product(*[values for _, values in axes]):
        values, shown = dict(base), {}
        for (axis, _), v in zip(axes, combo):
            if isinstance(v, dict):
                values.update(v)
                shown[axis] = v.get(axis, next(iter(v.values())))
            else:
                values[axis] = v
                shown[axis] = v
        naming = {**values, **shown}
        if name_template:
            name = _slug(_format(name_template, naming, "name"))
        else:
            name = _slug("_".join(f"{a.split('.')[-1]}{shown[a]}" for a, _ in axes))
        if name in names:
            raise DittoError("Two runs of the grid get the same name", field="name",
                             expected="a name template that tells every run apart",
                             got=f"{name} for {names[name]} and {shown}")
        names[name] = shown
        group = None
        if share_by:
            group = _slug(_format(group_template, naming, "group_name"))
            values["paths.data"] = os.path.join(shared_dir, group, "data")
            values["paths.wm"] = os.path.join(shared_dir, group, "wm")
        values.update(cli)
        runs.append((name, values, group))

    if only:
        patterns = [p for p in only.split(",") if p]
        runs = [r for r in runs if any(fnmatch.fnmatchcase(r[0], p) for p in patterns)]
        if not runs:
            raise DittoError("--only selects no run of the grid", got=only,
                             expected=f"a glob such as {next(iter(names))}")

    # Group by the world model actually used (also catches a --config.paths.wm=... for all).
    by_wm = {}
    for name, values, group in runs:
        wm = str(values.get("paths.wm", "") or "")
        if wm:
            by_wm.setdefault(wm, []).append((name, values, group))
    data_owner = {}
    for name, values, _ in runs:
        data = str(values.get("paths.data", "") or "")
        wm = str(values.get("paths.wm", "") or "") or f"{name}/wm"  # "": the run's own
        if data and data_owner.setdefault(data, wm) != wm:
            raise DittoError("Runs sharing a paths.data must also share paths.wm "
                             "(else several jobs would write one dataset at once)",
                             field="paths.data", got=data)

    wm_jobs, run_jobs, shared_wm = [], [], {}
    for i, (wm, members) in enumerate(by_wm.items()):
        if len(members) < 2:
            continue  # nothing shared: the run does all its stages itself
        groups = {m[2] for m in members}
        group = members[0][2] if len(groups) == 1 and members[0][2] else f"wm{i}"
        common = {k: v for k, v in members[0][1].items()
                  if all(k in m[1] and m[1][k] == v for m in members[1:])}
        name = f"wm-{group}"
        workdir = os.path.join(sweep_dir, "wm_jobs", group)
        cmd = command + ["run", "--config", config, "--workdir", workdir,
                         "--stages", WM_STAGES] + override_args(common)
        wm_jobs.append(Job(name, 1, workdir, cmd, os.path.join(sweep_dir, "logs", name + ".log"),
                           common, name))
        for m in members:
            shared_wm[m[0]] = name
    for name, values, group in runs:
        workdir = os.path.join(sweep_dir, "runs", name)
        cmd = command + ["run", "--config", config, "--workdir", workdir]
        if name in shared_wm:
            cmd += ["--stages", AFTER_WM_STAGES]
        cmd += override_args(values)
        run_jobs.append(Job(name, 2, workdir, cmd, os.path.join(sweep_dir, "logs", name + ".log"),
                            values, shared_wm.get(name)))
    if {j.name for j in wm_jobs} & {j.name for j in run_jobs}:
        raise DittoError("A run name clashes with a world-model job name (wm-...)")
    return wm_jobs, run_jobs


# ---------------------------------------------------------------------------- execution

def execute(command, log_path, env=None, header="", procs=None):
    """Runs one command with stdout+stderr appended to its log; returns the exit code.

    `procs`, a set, holds the running process so an interrupted sweep can stop it.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {header}\n"
                  f"$ {shlex.join(command)}\n")
        log.flush()
        try:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
        except OSError as e:  # command not found, not executable
            log.write(f"cannot start: {e}\n")
            return 127
        if procs is not None:
            procs.add(proc)
        try:
            rc = proc.wait()
        finally:
            if procs is not None:
                procs.discard(proc)
        log.write(f"=== exit code {rc}\n")
    return rc


class LocalBackend:
    """A bounded pool of subprocesses; optionally one device per running job."""

    def __init__(self, workers=1, devices=None):
        self.workers = max(1, int(workers))
        self.devices = queue.Queue()
        for i in range(self.workers):
            self.devices.put(devices[i % len(devices)] if devices else None)
        self.procs, self.stop = set(), threading.Event()

    def run(self, jobs, header, on_done):
        from concurrent.futures import ThreadPoolExecutor

        def one(job):
            if self.stop.is_set():
                return
            device = self.devices.get()
            try:
                env = dict(job.env)
                if device is not None:
                    env["CUDA_VISIBLE_DEVICES"] = str(device)
                rc = execute(job.command, job.log, env, header(job), self.procs)
            finally:
                self.devices.put(device)
            if not self.stop.is_set():
                on_done(job, rc, None)

        pool = ThreadPoolExecutor(self.workers)
        try:
            for f in [pool.submit(one, j) for j in jobs]:
                f.result()
        except KeyboardInterrupt:
            # Queued jobs never start; running ones are stopped, not left behind.
            self.stop.set()
            for proc in list(self.procs):
                proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()


class SlurmBackend:
    """One SLURM job per sweep job through submitit (array-submitted per phase)."""

    def __init__(self, folder, cluster="slurm", **params):
        import submitit
        self.submitit = submitit
        try:
            self.executor = submitit.AutoExecutor(folder=os.path.join(folder, "%j"),
                                                  cluster=cluster)
        except RuntimeError as e:  # no srun/sbatch on this machine
            raise DittoError(f"Cannot use the slurm backend here ({e})", field="--backend",
                             expected="a SLURM login node, or --backend local") from e
        self.executor.update_parameters(**{k: v for k, v in params.items()
                                           if v not in (None, [], "")})

    def run(self, jobs, header, on_done):
        with self.executor.batch():
            submitted = [(j, self.executor.submit(execute, j.command, j.log, j.env, header(j)))
                         for j in jobs]
        by_id = {id(s): j for j, s in submitted}
        for s in self.submitit.helpers.as_completed([s for _, s in submitted]):
            job = by_id[id(s)]
            try:
                on_done(job, s.result(), None)
            except Exception as e:  # the SLURM job itself died (timeout, preemption, node)
                on_done(job, None, f"{type(e).__name__}: {str(e).strip()[-500:]}")


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
        from ditto_jax.io import write_json_atomic
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
        ok = rc == 0 and error is None
        if ok and job.phase == 1:
            from ditto_jax.io import write_json_atomic
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
    from ditto_jax.cli import non_negative_int, positive_int
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
                   help="print every command, phase by phase, and run nothing")
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
        from ditto_jax import estimate
        return estimate.main(wm_jobs, runs, grid=args.grid,
                             device_results=args.device_results)
    if args.dry_run:
        print(f"# sweep {args.grid}: {len(runs)} runs, {len(wm_jobs)} shared world models, "
              f"workdir {os.path.abspath(sweep_dir)}")
        print_plan(wm_jobs, runs)
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
