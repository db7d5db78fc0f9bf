"""Expanding a `ditto sweep` grid into jobs: `expand(grid, sweep_dir)` -> (phase-1
world-model jobs, phase-2 runs), each a `Job` with its `ditto run` command, workdir and log.

Runs sharing a `paths.wm` get one `--stages data,wm` job (phase 1); `format_value` and
`override_args` write config values as `--config.KEY=VALUE` arguments that
ditto_jax.core.config reads back to the same type.
"""
import ast
import dataclasses
import fnmatch
import itertools
import os
import re
import shlex
import sys

from ditto_jax.errors import DittoError

WM_STAGES = "data,wm"
AFTER_WM_STAGES = "policy,eval,report"
RESULTS = "results.json"
WM_MARKER = "sweep_wm_done.json"  # written by the sweep when a phase-1 job succeeded
COMMAND_ENV = "DITTO_SWEEP_COMMAND"  # replaces `python -m ditto_jax.cli` (tests)


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
    """Text for `--config.KEY=VALUE`, read back to the same type by ditto_jax.core.config."""
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
