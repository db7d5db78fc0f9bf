"""World-model stage plumbing: sharding, multi-process, checkpoints, resume, errors.

Each run is a real `ditto train-wm` process on the tiny preset and a real Pong
dataset recorded with the ALE.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO, run_cli

CONFIG = os.path.join(REPO, "experiments/configs/wm.py:tiny")
EIGHT_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}


def _train(data, workdir, steps, *extra, env=None):
    return run_cli("train-wm", "--config", CONFIG, "--data", data, "--workdir", workdir,
                   "--steps", steps, "--quiet", "--config.train.log_every=1",
                   "--config.train.strip_every=0", "--config.train.eval_every=0", *extra,
                   env=env)


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [r for r in rows if "loss" in r]


def _final_params(workdir):
    from ditto_jax.engine.checkpoint import Checkpointer
    from ditto_jax.core.config import load_config
    from ditto_jax import models as wm
    import jax
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
    meta = ckpt.read_meta()
    config = load_config(CONFIG)
    config.model.update(meta["model"])
    abstract = jax.eval_shape(lambda: wm.init_train_state(
        config, tuple(meta["obs_shape"]), meta["num_actions"], jax.random.key(0)))
    state, _ = ckpt.restore(abstract)
    return jax.tree.leaves(jax.device_get(state.params))


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_eight_fake_devices_match_one_device(pong_dataset, tmp_path):
    one, eight = tmp_path / "one", tmp_path / "eight"
    assert _train(pong_dataset, one, 3).returncode == 0
    proc = _train(pong_dataset, eight, 3, env=EIGHT_DEVICES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _metrics(one), _metrics(eight)
    assert [r["step"] for r in a] == [1, 2, 3]
    np.testing.assert_allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=1e-4)
    # Adam turns summation-order noise in near-zero gradients into updates of up
    # to ~lr, hence the absolute tolerance; a wrong all-reduce changes the loss.
    for x, y in zip(_final_params(one), _final_params(eight)):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=3e-4)


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_checkpoint_resume_prints_step_and_extends(pong_dataset, tmp_path):
    # Validation and prediction strips on here (later overrides win).
    extra = ("--config.train.eval_every=2", "--config.train.strip_every=2")
    assert _train(pong_dataset, tmp_path, 2, *extra).returncode == 0
    proc = _train(pong_dataset, tmp_path, 4, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from step 2" in proc.stdout
    assert [r["step"] for r in _metrics(tmp_path)] == [1, 2, 3, 4]
    with open(tmp_path / "metrics.jsonl") as f:
        val = [json.loads(line) for line in f if "val/loss" in line]
    assert [r["step"] for r in val] == [2, 4] and all(np.isfinite(r["val/loss"]) for r in val)
    strips = sorted(os.listdir(tmp_path / "strips"))
    assert "open_loop_00000004.png" in strips and "open_loop_00000004.gif" in strips


def test_kill_minus_nine_then_resume_matches_uninterrupted(pong_dataset, tmp_path):
    steps = 60
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    common = ["--config.train.save_every=10"]
    assert _train(pong_dataset, ref, steps, *common).returncode == 0
    cmd = [sys.executable, "-m", "ditto_jax.cli", "train-wm", "--config", CONFIG, "--data",
           pong_dataset, "--workdir", str(killed), "--steps", str(steps), "--quiet",
           "--config.train.log_every=1", "--config.train.strip_every=0",
           "--config.train.eval_every=0", *common]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt_dir = killed / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        done = [d for d in os.listdir(ckpt_dir) if d.isdigit()] if ckpt_dir.exists() else []
        if any(int(d) >= 20 for d in done):
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("training finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = _train(pong_dataset, killed, steps, *common)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stdout
    a, b = _metrics(ref), _metrics(killed)
    assert [r["step"] for r in b] == list(range(1, steps + 1))
    np.testing.assert_allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=1e-5)


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_incompatible_config_is_refused(pong_dataset, tmp_path):
    assert _train(pong_dataset, tmp_path, 1).returncode == 0
    proc = _train(pong_dataset, tmp_path, 2, "--config.model.deter=48")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "model.deter" in proc.stderr and "different model" in proc.stderr


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_different_dataset_is_refused(pong_dataset, tmp_path):
    from ditto_jax.stages.record import record
    other = str(tmp_path / "other")
    record(game="pong", policy="random", episodes=4, out=other, max_steps=60, progress=False,
           log=lambda *a: None)
    assert _train(pong_dataset, tmp_path / "w", 1).returncode == 0
    proc = _train(other, tmp_path / "w", 2)
    assert proc.returncode == 2 and "dataset" in proc.stderr and "Traceback" not in proc.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # ~3 min on 2 cores: two processes compiling at once
def test_two_processes_with_jax_distributed_agree(pong_dataset, tmp_path):
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(REPO, "tests", "distributed_worker.py"),
             f"127.0.0.1:{port}", str(pid), pong_dataset, str(tmp_path / "w")],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    sums = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sums[0]["process_count"] == 2 and sums[1]["process_index"] == 1
    np.testing.assert_allclose(sums[0]["param_sums"], sums[1]["param_sums"], rtol=1e-6)
    assert np.isfinite(sums[0]["loss"])


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_nan_loss_stops_with_step_and_metric_and_keeps_checkpoint(pong_dataset, tmp_path):
    # An absurd learning rate makes the first update blow the parameters up, so
    # the loss of step 2 is not finite; step 1 was finite and is checkpointed.
    proc = _train(pong_dataset, tmp_path, 5, "--config.optim.lr=1e30",
                  "--config.train.save_every=1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Training diverged" in proc.stderr and "at step 2" in proc.stderr
    assert "last good checkpoint is step 1" in proc.stderr
    assert sorted(d for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == ["1"]
    # The advice leads somewhere: step 1's parameters gave the NaN, so resuming from it
    # would diverge again; it names the setting to change and a way out.
    assert "would diverge again" in proc.stderr and "config.optim.lr (now 1e+30)" in proc.stderr
    assert "new --workdir" in proc.stderr
