"""`ditto sweep GRID --estimate`: device-hours from a (fabricated) benchmarks/device.py JSON."""
import json
import os
import re

import pytest

from tests.conftest import run_cli


def _device_json(path, *, backend="gpu", kind="NVIDIA H100 80GB HBM3", tiny=False):
    result = {
        "schema": 1, "jax": "0.11.0", "backend": backend, "device_kind": kind,
        "device_count": 1, "tiny": tiny, "time": "2026-12-01 00:00:00",
        "parts": {
            # 2,500 frames per step: 0.5 s bf16, 1.0 s fp32.
            "wm_bf16": {"settings": {"preset": "paper", "batch": [50, 50],
                                     "compute_dtype": "bfloat16"}, "step_s": 0.5},
            "wm_fp32": {"settings": {"preset": "paper", "batch": [50, 50],
                                     "compute_dtype": "float32"}, "step_s": 1.0},
            "ditto_update": {"batch": 512, "horizon": 15, "update_s": 0.02},
            "act": {"envs": {"1": {"ms_per_step": 2.0}, "16": {"ms_per_step": 4.0}}},
            "policy_vmap_seeds": None,
        },
    }
    with open(path, "w") as f:
        json.dump(result, f)
    return str(path)


def _hours(stdout, stage):
    line = next(l for l in stdout.splitlines() if l.startswith(stage))
    return float(line.split()[-1])


def test_paper_grid_estimate_from_a_fabricated_h100_json(tmp_path):
    path = _device_json(tmp_path / "device-NVIDIA_H100_80GB_HBM3.json")
    proc = run_cli("sweep", "paper", "--estimate", "--device-results", path,
                   "--workdir", tmp_path / "sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "135 runs, 15 shared world-model jobs" in out and "NVIDIA H100" in out
    # 15 world models (5 games x 3 seeds) x 100k steps x 0.5 s (bf16, "auto" on an H100).
    assert _hours(out, "world model") == pytest.approx(15 * 100_000 * 0.5 / 3600, abs=0.06)
    # 135 runs x 100k updates x 0.02 s, per method.
    for method in ("ditto", "dbc", "dgail", "bc"):
        assert _hours(out, f"policy: {method}") == pytest.approx(
            135 * 100_000 * 0.02 / 3600, abs=0.06)
    assert _hours(out, "evaluation") > 0
    total = _hours(out, "total")
    parts = sum(float(l.split()[-1]) for l in out.splitlines()
                if re.match(r"(world model|policy: |evaluation)", l))
    assert total == pytest.approx(parts, abs=0.2)
    assert "upper bound" in out  # dbc / bc priced as DITTO updates
    assert not os.path.exists(tmp_path / "sweep")  # nothing run, nothing written


def test_fp32_device_prices_the_fp32_step(tmp_path):
    path = _device_json(tmp_path / "device-Tesla_T4.json", kind="Tesla T4")
    proc = run_cli("sweep", "paper:games=breakout,seeds=1,ne=30,methods=ditto", "--estimate",
                   "--device-results", path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # One run, its own world model (nothing shared): 100k steps x 1.0 s (T4: float32).
    assert _hours(proc.stdout, "world model") == pytest.approx(100_000 * 1.0 / 3600, abs=0.06)


def test_newest_json_in_a_folder_is_used_and_tiny_runs_are_skipped(tmp_path):
    old = _device_json(tmp_path / "device-A.json", kind="NVIDIA A100-SXM4-80GB")
    new = _device_json(tmp_path / "device-H.json")
    _device_json(tmp_path / "device-cpu-tiny.json", backend="cpu", kind="cpu", tiny=True)
    os.utime(old, (1, 1))
    proc = run_cli("sweep", "paper", "--estimate", "--device-results", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert new in proc.stdout and "A100" not in proc.stdout


def test_no_device_results_says_so_and_exits_2(tmp_path):
    proc = run_cli("sweep", "paper", "--estimate", "--device-results", tmp_path)
    assert proc.returncode == 2
    assert "benchmarks/device.py" in proc.stderr and "device-*.json" in proc.stderr
    proc = run_cli("sweep", "paper", "--estimate", "--device-results", tmp_path / "x.json")
    assert proc.returncode == 2 and "not found" in proc.stderr
