"""`ditto sweep`: grid expansion, phases, skipping, retries, status, dry runs, launch scripts.

No training: a tiny fake `ditto` script stands in for `ditto run`.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import ml_collections
import pytest

from ditto_jax import cli
from ditto_jax.core.config import apply_overrides

from ditto_jax.sweep import command as sweep
from ditto_jax.sweep.grid import load_grid
from ditto_jax.sweep.jobs import expand, override_args
from ditto_jax.sweep.launch import SlurmBackend
from ditto_jax.errors import DittoError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAKE_DITTO = textwrap.dedent("""
    import json, os, sys, time
    args = sys.argv[1:]
    assert args[0] == "run", args
    wd = args[args.index("--workdir") + 1]
    stages = args[args.index("--stages") + 1] if "--stages" in args else "all"
    with open(os.environ["FAKE_CALLS"], "a") as f:
        f.write(json.dumps({"workdir": wd, "stages": stages, "args": args,
                            "pid": os.getpid()}) + "\\n")
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    os.makedirs(wd, exist_ok=True)
    name = os.path.basename(wd)
    print("fake ditto run", name, flush=True)
    if name in os.environ.get("FAKE_FAIL", "").split(","):
        print("boom: always fails", flush=True)
        sys.exit(3)
    if name in os.environ.get("FAKE_FLAKY", "").split(","):
        tried = os.path.join(wd, "tried")
        if not os.path.exists(tried):
            open(tried, "w").close()
            print("boom: first attempt fails", flush=True)
            sys.exit(4)
    if "report" in stages or stages == "all":
        with open(os.path.join(wd, "results.json"), "w") as f:
            json.dump({"rows": []}, f)
""")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    script = tmp_path / "fake_ditto.py"
    script.write_text(FAKE_DITTO)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    monkeypatch.delenv("FAKE_FLAKY", raising=False)
    monkeypatch.delenv("FAKE_SLEEP", raising=False)

    def read_calls():
        if not calls.exists():
            return []
        return [json.loads(line) for line in calls.read_text().splitlines()]
    return f"{sys.executable} {script}", read_calls


def _expand(spec, sweep_dir, **kw):
    grid, path, _ = load_grid(spec)
    return expand(grid, sweep_dir, grid_path=path, command=["ditto"], **kw)


def _opt(job, key):
    """Value of --config.KEY=... in a job's command (None if absent)."""
    prefix = f"--config.{key}="
    found = [a[len(prefix):] for a in job.command if a.startswith(prefix)]
    assert len(found) <= 1, (key, found)
    return found[0] if found else None


def _stages(job):
    return job.command[job.command.index("--stages") + 1] if "--stages" in job.command else None


# --------------------------------------------------------------------------- expansion

def test_local_grid_one_wm_job_per_shared_world_model(tmp_path):
    wm_jobs, runs = _expand("local", tmp_path / "sw")
    assert len(runs) == 4 and len(wm_jobs) == 2
    names = [j.name for j in runs + wm_jobs]
    assert len(set(names)) == len(names)
    assert sorted(j.name for j in runs) == ["pong_s0_ne2", "pong_s0_ne3", "pong_s1_ne2",
                                            "pong_s1_ne3"]
    for j in wm_jobs:
        assert j.phase == 1 and _stages(j) == "data,wm"
        assert _opt(j, "expert_episodes") is None  # differs inside the group: left out
        assert j.command[:2] == ["ditto", "run"]
        assert j.command[j.command.index("--config") + 1].endswith("pipeline.py:smoke")
    for j in runs:
        assert j.phase == 2 and _stages(j) == "policy,eval,report"
        assert j.workdir == str(tmp_path / "sw" / "runs" / j.name)
        assert j.log == str(tmp_path / "sw" / "logs" / (j.name + ".log"))
        assert _opt(j, "methods") == "ditto,bc" and _opt(j, "game") == "pong"
        assert _opt(j, "data.source") == "scripted"
        seed = _opt(j, "seed")
        assert _opt(j, "expert_episodes") == j.name[-1]
        wm = next(w for w in wm_jobs if w.name == j.group)
        # The run uses exactly the data + world model its phase-1 job makes.
        for key in ("paths.wm", "paths.data", "seed", "game", "data.expert_episodes"):
            assert _opt(j, key) == _opt(wm, key), key
        assert _opt(wm, "seed") == seed
    assert len({_opt(w, "paths.wm") for w in wm_jobs}) == 2


def test_paper_grid_counts_and_data_settings(tmp_path):
    wm_jobs, runs = _expand("paper", tmp_path)
    assert len(runs) == 5 * 3 * 9 and len(wm_jobs) == 5 * 3
    assert {_opt(j, "game") for j in runs} == {"breakout", "beamrider", "spaceinvaders",
                                               "mspacman", "qbert"}
    assert sorted({int(_opt(j, "expert_episodes")) for j in runs}) == [
        4, 8, 15, 30, 60, 125, 250, 500, 1000]
    assert {_opt(j, "methods") for j in runs} == {"ditto,dbc,dgail,bc"}
    assert {_opt(j, "data.source") for j in runs} == {"rlu"}
    assert {_opt(j, "data.expert_checkpoints") for j in runs} == {"45-49"}
    assert {_opt(j, "data.wm_checkpoints") for j in runs} == {"0-49"}
    # Each (game, seed) has its own world model, shared by its 9 runs.
    per_wm = {}
    for j in runs:
        per_wm.setdefault(_opt(j, "paths.wm"), set()).add((_opt(j, "game"), _opt(j, "seed")))
    assert len(per_wm) == 15 and all(len(v) == 1 for v in per_wm.values())
    assert {_opt(j, "data.rlu_run") for j in runs} == {"1", "2", "3"}

    wm_jobs, runs = _expand("paper:games=breakout+pong,seeds=2,ne=30+125", tmp_path)
    assert len(runs) == 2 * 2 * 2 and len(wm_jobs) == 4
    assert "pong_s1_ne125" in {j.name for j in runs}


def test_ablation_grids(tmp_path):
    _, runs = _expand("horizon", tmp_path)
    assert len(runs) == 4 * 3
    assert sorted({int(_opt(j, "policy.horizon")) for j in runs}) == [3, 9, 15, 21]
    assert {_opt(j, "game") for j in runs} == {"breakout"}
    assert {_opt(j, "methods") for j in runs} == {"ditto"}
    _, runs = _expand("reward", tmp_path)
    assert {_opt(j, "policy.reward") for j in runs} == {"maxcos", "cosine", "l2", "sparse"}
    assert len(runs) == 4 * 3 and {_opt(j, "methods") for j in runs} == {"ditto"}


def test_overrides_read_back_to_their_types():
    config = ml_collections.ConfigDict(dict(
        methods="ditto", seed=0, lr=1e-3, flag=False, data=dict(expert_checkpoints="0-1")))
    values = {"methods": "ditto,bc", "seed": 3, "lr": 2e-4, "flag": True,
              "data.expert_checkpoints": "45-49"}
    out = apply_overrides(config, override_args(values))
    assert out.methods == "ditto,bc" and out.seed == 3 and out.lr == 2e-4 and out.flag is True
    assert out.data.expert_checkpoints == "45-49"
    # A string that Python would read as a number stays a string.
    config.methods = "x"
    assert apply_overrides(config, override_args({"methods": "12"})).methods == "12"


@pytest.mark.parametrize("spec", ["local", "paper", "horizon", "reward"])
def test_grid_overrides_fit_the_pipeline_config(spec, tmp_path):
    """Every key a grid sets exists in experiments/configs/pipeline.py with that type."""
    from ditto_jax.core.config import load_config
    if not os.path.exists(os.path.join(ROOT, "experiments", "configs", "pipeline.py")):
        pytest.skip("pipeline config not present")
    wm_jobs, runs = _expand(spec, tmp_path)
    for job in wm_jobs + runs[:12]:
        config_spec = job.command[job.command.index("--config") + 1]
        overrides = [a for a in job.command if a.startswith("--config.")]
        config = load_config(config_spec, overrides)
        assert config.paths.wm == _opt(job, "paths.wm") and config.seed == int(_opt(job, "seed"))
        if spec != "local":
            assert config.data.expert_checkpoints == "45-49" and config.data.source == "rlu"
        if spec == "horizon" and job.phase == 2:
            assert config.policy.horizon == int(_opt(job, "policy.horizon"))


def test_cli_overrides_reach_every_job_and_only_filters(tmp_path):
    wm_jobs, runs = _expand("local", tmp_path, only="*_s1_*",
                            extra_overrides=["--config.policy.steps=7"])
    assert [j.name for j in runs] == ["pong_s1_ne2", "pong_s1_ne3"] and len(wm_jobs) == 1
    assert all(_opt(j, "policy.steps") == "7" for j in runs + wm_jobs)
    # One world model for everything: a single phase-1 job.
    wm_jobs, runs = _expand("local", tmp_path, extra_overrides=["--config.paths.wm=/x/wm",
                                                                "--config.paths.data=/x/d"])
    assert len(wm_jobs) == 1 and len(runs) == 4
    assert wm_jobs[0].name == "wm-wm0" and _opt(wm_jobs[0], "paths.wm") == "/x/wm"
    # A dataset shared by runs that each train their own world model would be written
    # by several jobs at once.
    with pytest.raises(DittoError, match="paths.data must also share paths.wm"):
        _expand("local", tmp_path, extra_overrides=["--config.paths.wm=", "--config.paths.data=/d"])


def test_bad_grids_are_clear_errors(tmp_path):
    with pytest.raises(DittoError, match="Grid file not found.*paper"):
        load_grid("no_such_grid")
    with pytest.raises(DittoError, match="Unknown grid variant setting.*bogus"):
        load_grid("paper:bogus=1")
    with pytest.raises(DittoError, match="Bad grid variant value.*seeds"):
        load_grid("local:seeds=two")
    grid = {"config": "c.py:x", "axes": {"seed": [0, 1]}, "name": "same"}
    with pytest.raises(DittoError, match="same name"):
        expand(grid, tmp_path, command=["ditto"])
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(DittoError, match="no get_grid"):
        load_grid(str(bad))


def test_finished_runs_and_world_models_are_skipped(tmp_path):
    wm_jobs, runs = _expand("local", tmp_path)
    by = {j.name: j for j in runs}
    for name in ("pong_s0_ne2", "pong_s0_ne3"):  # all of seed 0 finished
        os.makedirs(by[name].workdir)
        open(os.path.join(by[name].workdir, "results.json"), "w").close()
    os.makedirs(by["pong_s1_ne2"].workdir)  # started, no results: not finished
    todo_wm, todo_runs = sweep._plan(wm_jobs, runs)
    assert [j.name for j in todo_runs] == ["pong_s1_ne2", "pong_s1_ne3"]
    assert [j.name for j in todo_wm] == ["wm-pong_s1"]  # seed 0's world model not needed
    os.makedirs(wm_jobs[1].workdir)
    open(wm_jobs[1].marker, "w").close()
    assert sweep._plan(wm_jobs, runs)[0] == []


# --------------------------------------------------------------------------- running

def _status(sweep_dir):
    with open(os.path.join(sweep_dir, "sweep_status.json")) as f:
        data = json.load(f)
    return {e["name"]: e for e in data["runs"]}


def test_local_backend_retries_reports_and_resumes(tmp_path, fake, monkeypatch, capsys):
    command, calls = fake
    sw = str(tmp_path / "sw")
    monkeypatch.setenv("FAKE_FAIL", "pong_s1_ne3")
    monkeypatch.setenv("FAKE_FLAKY", "pong_s0_ne2")
    rc = cli.main(["sweep", "local", "--workdir", sw, "--workers", "2", "--retries", "1",
                   "--ditto-command", command])
    assert rc == 1
    st = _status(sw)
    assert len(st) == 6
    assert st["pong_s1_ne3"]["status"] == "failed"
    assert st["pong_s1_ne3"]["returncode"] == 3 and st["pong_s1_ne3"]["attempts"] == 2
    assert st["pong_s1_ne3"]["error"] == "boom: always fails"  # was null
    assert st["pong_s0_ne2"]["status"] == "done" and st["pong_s0_ne2"]["attempts"] == 2
    assert all(st[n]["status"] == "done" for n in ("pong_s0_ne3", "pong_s1_ne2",
                                                     "wm-pong_s0", "wm-pong_s1"))
    log = open(st["pong_s1_ne3"]["log"]).read()
    assert log.count("boom: always fails") == 2 and "exit code 3" in log
    assert "failed: pong_s1_ne3" in capsys.readouterr().err
    made = calls()
    # Phase 1 (two world models) entirely before phase 2; each world model made once.
    phases = [c["stages"] for c in made]
    assert sorted(phases[:2]) == ["data,wm", "data,wm"]
    assert set(phases[2:]) == {"policy,eval,report"} and len(phases) == 2 + 4 + 2

    # Re-run: finished runs are skipped; the fixed run now succeeds.
    monkeypatch.delenv("FAKE_FAIL")
    n_before = len(calls())
    rc = cli.main(["sweep", "local", "--workdir", sw, "--ditto-command", command])
    assert rc == 0
    st = _status(sw)
    assert st["pong_s1_ne3"]["status"] == "done"
    assert sum(e["status"] == "skipped" for e in st.values()) == 5  # 3 runs, 2 world models
    assert [c["workdir"] for c in calls()[n_before:]] == [os.path.join(sw, "runs", "pong_s1_ne3")]


def test_failed_world_model_blocks_its_runs(tmp_path, fake, monkeypatch):
    command, calls = fake
    sw = str(tmp_path / "sw")
    monkeypatch.setenv("FAKE_FAIL", "pong_s0")  # the phase-1 workdir of seed 0
    rc = cli.main(["sweep", "local", "--workdir", sw, "--retries", "0",
                   "--ditto-command", command])
    assert rc == 1
    st = _status(sw)
    assert st["wm-pong_s0"]["status"] == "failed" and st["wm-pong_s0"]["attempts"] == 1
    for name in ("pong_s0_ne2", "pong_s0_ne3"):
        assert st[name]["status"] == "failed" and "wm-pong_s0" in st[name]["reason"]
    assert st["pong_s1_ne2"]["status"] == st["pong_s1_ne3"]["status"] == "done"
    assert not any("/runs/pong_s0" in c["workdir"] for c in calls())


def test_exit_zero_without_results_is_a_failure(tmp_path, monkeypatch):
    sw = str(tmp_path / "sw")
    rc = cli.main(["sweep", "local", "--workdir", sw, "--retries", "0", "--only", "pong_s0_ne2",
                   "--ditto-command", f"{sys.executable} -c pass"])
    assert rc == 1
    st = _status(sw)
    assert "wm-pong_s0" not in st  # a lone run of a group makes its world model itself
    assert st["pong_s0_ne2"]["status"] == "failed"
    assert "results.json" in st["pong_s0_ne2"]["error"]


def test_interrupt_stops_running_and_queued_jobs(tmp_path, fake):
    command, calls = fake
    sw = tmp_path / "sw"
    env = {**os.environ, "FAKE_SLEEP": "60"}
    proc = subprocess.Popen([sys.executable, "-m", "ditto_jax.cli", "sweep", "local",
                             "--workdir", str(sw), "--ditto-command", command], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    while not calls() and time.time() < deadline:
        time.sleep(0.05)
    assert calls(), "the first job never started"
    pid = calls()[0]["pid"]
    try:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.05)
        left_behind = os.path.exists(f"/proc/{pid}")
    finally:  # never leak the sleeping processes, even when the test fails
        if proc.poll() is None:
            proc.kill()
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"fake_ditto" in f.read():
                    os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass
    assert proc.returncode == 130 and "interrupted" in err
    assert not left_behind, "the running job was left behind"
    assert len(calls()) == 1  # nothing queued started after the interrupt
    st = _status(str(sw))
    assert {e["status"] for e in st.values()} == {"failed"}
    assert {e.get("reason") for e in st.values()} == {"interrupted"}


def test_slurm_backend_through_submitit(tmp_path, fake, monkeypatch):
    command, calls = fake
    sw = str(tmp_path / "sw")
    monkeypatch.setenv("FAKE_FAIL", "pong_s0_ne3")
    # submitit's in-process "debug" cluster stands in for SLURM.
    rc = cli.main(["sweep", "local:seeds=1", "--workdir", sw, "--backend", "slurm",
                   "--slurm-cluster", "debug", "--partition", "gpu", "--time", "2:00:00",
                   "--ditto-command", command])
    assert rc == 1
    st = _status(sw)
    assert st["pong_s0_ne2"]["status"] == "done" and st["wm-pong_s0"]["status"] == "done"
    assert st["pong_s0_ne3"]["status"] == "failed" and st["pong_s0_ne3"]["attempts"] == 2


def test_slurm_parameters_make_a_valid_sbatch_script(tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    backend = SlurmBackend(str(tmp_path), cluster="slurm", name="ditto-paper",
                                 timeout_min=sweep._minutes("1-02:00:00"), gpus_per_node=2,
                                 slurm_partition="gpu", slurm_account=None,
                                 slurm_setup=["module load cuda"])
    text = backend.executor._executor._make_submission_file_text("CMD", "UID")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --time=1560", "module load cuda"):
        assert line in text
    assert "--account" not in text
    assert sweep._minutes("90") == 90 and sweep._minutes("2:30:00") == 150


def test_dry_run_prints_every_command_and_runs_nothing(tmp_path, fake, capsys):
    command, calls = fake
    sw = tmp_path / "sw"
    assert cli.main(["sweep", "local", "--workdir", str(sw), "--dry-run",
                     "--ditto-command", command]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    cmds = [line for line in lines if not line.startswith("#")]
    assert len(cmds) == 6 and all("fake_ditto.py run --config" in c for c in cmds)
    assert out.index("# phase 1") < out.index("--stages data,wm") < out.index("# phase 2")
    assert out.index("# phase 2") < out.index("--stages policy,eval,report")
    assert calls() == [] and not sw.exists()


# --------------------------------------------------------------------------- launch scripts

def _script(*args, env=None):
    return subprocess.run(["bash", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


@pytest.mark.parametrize("name", ["local.sh", "gpu_host.sh", "multihost.sh"])
def test_launch_scripts_parse(name):
    assert _script("-n", os.path.join("launch", name)).returncode == 0


def test_launch_scripts_dry_run_print_their_command(tmp_path):
    r = _script("launch/local.sh", "--dry-run", "demo", "breakout", str(tmp_path / "w"),
                "--config.methods=ditto")
    assert r.returncode == 0, r.stderr
    assert "ditto_jax.cli run --config" in r.stdout and "pipeline.py:demo" in r.stdout
    assert f"--workdir {tmp_path / 'w'} --config.game=breakout --config.methods=ditto" in r.stdout
    assert not (tmp_path / "w").exists()

    r = _script("launch/gpu_host.sh", "--dry-run", "run", "qbert", str(tmp_path / "g"),
                env={"DITTO_RLU_DATA_DIR": "/data/tfds"})
    assert r.returncode == 0, r.stderr
    assert "XLA_FLAGS=" in r.stdout and "pipeline.py:paper" in r.stdout
    assert "--config.game=qbert --config.data.rlu_data_dir=/data/tfds" in r.stdout
    assert not (tmp_path / "g").exists()

    r = _script("launch/multihost.sh", "--dry-run", "--coordinator", "h0:1234",
                "--num-processes", "4", "--process-id", "2", "--", "--data", "d",
                "--workdir", "w")
    assert r.returncode == 0, r.stderr
    assert ("train-wm --coordinator h0:1234 --num-processes 4 --process-id 2 --data d "
            "--workdir w") in r.stdout
    r = _script("launch/multihost.sh", "--dry-run", "--auto", "--", "--data", "d")
    assert r.returncode == 0 and "DITTO_DISTRIBUTED=auto" in r.stdout
    r = _script("launch/multihost.sh", "--dry-run", "--", "--data", "d")
    assert r.returncode == 2 and "--coordinator" in r.stderr


def test_sweep_launchers_dry_run(tmp_path):
    sw = tmp_path / "sw"
    r = _script("launch/gpu_host.sh", "--dry-run", "sweep", "local", "--workdir", str(sw),
                env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert r.returncode == 0, r.stderr
    assert "sweep local --backend local --visible-devices 0,1" in r.stdout
    cmds = [line for line in r.stdout.splitlines() if not line.startswith(("#", "+ "))]
    assert sum("--stages data,wm" in c for c in cmds) == 2 and not sw.exists()
    r = subprocess.run([sys.executable, "launch/sweep.py", "local:seeds=1", "--workdir",
                        str(sw), "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("ditto_jax.cli run") == 3 and not sw.exists()


def test_gpu_host_default_xla_flags_are_known_to_this_jaxlib():
    # XLA aborts at start-up on an unknown flag, also on the CPU: catch a renamed flag here.
    r = _script("launch/gpu_host.sh", "--dry-run", "run", "pong", env={"XLA_FLAGS": ""})
    flags = r.stdout.split("XLA_FLAGS='")[1].split("'")[0]
    assert flags.startswith("--xla_gpu")
    r = subprocess.run([sys.executable, "-c", "import jax.numpy as jnp; print(jnp.ones(2).sum())"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"})
    assert r.returncode == 0 and "2.0" in r.stdout, r.stderr[-500:]


def test_dry_run_checks_every_config_and_fails_on_a_bad_one(tmp_path, fake, capsys):
    """An unknown game or override in a grid used to print its plan and exit 0; now the
    dry run makes `ditto run`'s own checks on every job and exits 2 naming them."""
    command, calls = fake
    sw = tmp_path / "sw"
    for override, needles in (("--config.game=pongg", ("Unknown Atari game 'pongg'",
                                                        "Field: game")),
                              ("--config.policy.nope=3", ("Unknown config key",
                                                          "config.policy.nope")),
                              ("--config.methods=ditto,bcc", ("bcc",))):
        assert cli.main(["sweep", "local", "--workdir", str(sw), "--dry-run",
                         "--ditto-command", command, override]) == 2
        err = capsys.readouterr().err
        for needle in needles:
            assert needle in err, err
        assert "6 of 6 jobs of the grid have a bad config" in err
        assert err.count(needles[0]) == 1, err  # one line per distinct error
        assert "pong_s1_ne3" in err and "wm-pong_s0" in err
    assert calls() == [] and not sw.exists()
    # A bound checked by `ditto run`'s validation, not by the override parser.
    assert cli.main(["sweep", "local", "--workdir", str(sw), "--dry-run", "--ditto-command",
                     command, "--config.policy.horizon=0"]) == 2
    assert "config.policy.horizon" in capsys.readouterr().err


def test_a_failed_job_records_the_error_it_printed(tmp_path, capsys):
    """The real `ditto run` as the job: its DittoError line lands in sweep_status.json."""
    sw = str(tmp_path / "sw")
    rc = cli.main(["sweep", "local", "--workdir", sw, "--retries", "0", "--only", "pong_s0_ne2",
                   "--config.game=pongg"])
    assert rc == 1
    entry = _status(sw)["pong_s0_ne2"]
    assert entry["status"] == "failed" and entry["returncode"] == 2
    assert entry["error"].startswith("ditto run: error: Unknown Atari game 'pongg'")
    assert "FAILED (exit code 2, ditto run: error: Unknown Atari game" in capsys.readouterr().out
    # A traceback's last line, and the last attempt's output only.
    log = tmp_path / "job.log"
    log.write_text("=== t attempt 1/2\n$ ditto run\nditto run: error: old. \n=== exit code 2\n"
                   "=== t attempt 2/2\n$ ditto run\nTraceback (most recent call last):\n"
                   '  File "x.py", line 1\nValueError: new\n=== exit code 1\n')
    assert sweep.error_from_log(str(log)) == "ValueError: new"
