"""Shared fixtures: small datasets recorded with the real ALE, once per session."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One persistent XLA cache for the whole test session, shared with every `ditto`
# subprocess: runs after the first reuse compiled programs (tiny models still
# take tens of seconds to compile on 2 cores).
if "DITTO_XLA_CACHE" not in os.environ:
    import tempfile
    os.environ["DITTO_XLA_CACHE"] = tempfile.mkdtemp(prefix="ditto_xla_cache_")

# The suite's models are tiny, so most of its time is XLA compiling. Without LLVM's
# optimisation passes tests/test_acting.py, test_models.py and test_update_pin.py took
# 85 s instead of 152 s; the whole suite passes either way, the 1e-5 pins included.
# Set here, before any backend starts, and inherited by every `ditto` subprocess (tests
# that set XLA_FLAGS for a subprocess replace it). DITTO_TEST_XLA_OPT=1 tests with XLA's
# default optimisation, as users run.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if os.environ.get("DITTO_TEST_XLA_OPT") != "1":
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + TEST_XLA_FLAGS).strip()


def run_cli(*args, env=None, timeout=600, cwd=REPO):
    """Runs `python -m ditto_jax.cli ARGS` in a fresh process; returns CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return subprocess.run([sys.executable, "-m", "ditto_jax.cli", *map(str, args)],
                          capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=cwd)


@pytest.fixture(scope="session")
def pong_dataset(tmp_path_factory):
    """Four short Pong episodes (epsilon-noisy expert) as an RLDS dataset on disk."""
    from ditto_jax.stages.record import record
    out = str(tmp_path_factory.mktemp("data") / "pong")
    record(game="pong", policy="expert", epsilon=0.3, episodes=4, out=out, seed=0,
           max_steps=120, progress=False, log=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def tiny_wm(pong_dataset, tmp_path_factory):
    """A 4-update tiny world model on `pong_dataset` (shared by the policy-stage tests)."""
    workdir = str(tmp_path_factory.mktemp("wm"))
    proc = run_cli("train-wm", "--config", os.path.join(REPO, "experiments/configs/wm.py:tiny"),
                   "--data", pong_dataset, "--workdir", workdir, "--steps", 4, "--quiet",
                   "--config.train.strip_every=0", "--config.train.eval_every=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir
