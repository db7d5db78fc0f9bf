"""benchmarks/device.py: the --tiny run, and that it runs without TF, TFDS, gymnasium or
ale-py (the accelerator host has jax, flax, optax, orbax, chex, numpy, tqdm and matplotlib;
ml_collections travels there as a wheel, launch/device_prepare.sh)."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

# Absent on the accelerator host the benchmark is written for.
BLOCKED = ("tensorflow", "tensorflow_datasets", "gymnasium", "ale_py", "tensorboardX", "cv2", "mediapy", "imageio", "rliable", "submitit", "wandb")


def _blocked_env(tmp_path):
    """Environment whose Python cannot import BLOCKED (a sitecustomize sets them to None)."""
    site = tmp_path / "blocker"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        f"for _name in {BLOCKED!r}:\n"
        "    sys.modules[_name] = None  # `import _name` raises ImportError\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), REPO])
    env.pop("XLA_FLAGS", None)
    return env


def _run(args, env, timeout=900):
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_blocker_really_blocks(tmp_path):
    proc = _run(["-c", "import tensorflow"], _blocked_env(tmp_path))
    assert proc.returncode != 0 and "halted; None in sys.modules" in proc.stderr


def test_benchmark_and_its_modules_import_without_the_blocked_packages(tmp_path):
    code = (
        "import sys\n"
        "import benchmarks.device as d\n"
        "import benchmarks.wm, ditto_jax.models, ditto_jax.core.devices\n"
        "import ditto_jax.stages.train_policy, ditto_jax.agents.imitation\n"
        "from ditto_jax.core.config import load_python_file\n"
        "wm, pol = d.load_configs(True)\n"
        "wm_paper, pol_paper = d.load_configs(False)\n"
        "assert wm_paper.train.batch_size == 50 and pol_paper.batch_size == 512\n"
        "assert type(wm).__module__.startswith('ml_collections')\n"
        f"real = [n for n in {BLOCKED!r} if sys.modules.get(n) is not None]\n"
        "assert not real, real\n"
        "print('ok')\n")
    proc = _run(["-c", code], _blocked_env(tmp_path), timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_tiny_run_writes_the_device_json(tmp_path):
    """The whole --tiny benchmark, in one process, with the packages blocked."""
    out = tmp_path / "results"
    proc = _run(["benchmarks/device.py", "--tiny", "--out-dir", str(out)],
                _blocked_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    files = os.listdir(out)
    assert files == ["device-cpu-tiny.json"], files
    with open(out / files[0]) as f:
        r = json.load(f)
    assert r["backend"] == "cpu" and r["device_kind"] == "cpu" and r["device_count"] >= 1
    assert r["jax"] and r["tiny"] is True
    assert r["auto_defaults"] == {"conv_impl": "matmul", "frame_chunk": 250,
                                  "compute_dtype": "float32"}
    assert r["peak_tflops"] is None  # a CPU is not in the table
    for name, dtype in (("wm_fp32", "float32"), ("wm_bf16", "bfloat16")):
        w = r["parts"][name]
        assert w["settings"]["compute_dtype"] == dtype and w["settings"]["preset"] == "tiny"
        assert w["frames_per_s"] > 0 and w["step_s"] > 0 and w["forward_s"] > 0
        assert w["compile_s"] > 0 and w["setup_s"] >= 0 and w["peak_memory_bytes"] > 0
        assert w["flops_model"] > 0 and w["mfu"] is None
    u = r["parts"]["ditto_update"]
    assert u["update_s"] > 0 and u["batch"] == 16 and u["horizon"] == 5
    a = r["parts"]["act"]
    assert set(a["envs"]) == {"1", "16"} and all(e["ms_per_step"] > 0
                                                  for e in a["envs"].values())
    assert r["parts"]["policy_vmap_seeds"] is None and "policy_vmap_seeds" in r["notes"]
    assert r["total_s"] > 0 and "wrote" in proc.stdout


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_an_isolated_part_runs_in_its_own_process(tmp_path):
    out = tmp_path / "results"
    proc = _run(["benchmarks/device.py", "--tiny", "--isolate", "--parts", "act",
                 "--out-dir", str(out)], _blocked_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    with open(out / "device-cpu-tiny.json") as f:
        r = json.load(f)
    assert r["isolated"] is True and "process_wall_s" in r["parts"]["act"]
    assert set(r["parts"]) == {"act", "policy_vmap_seeds"}


@pytest.mark.parametrize("kind,name", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA L4", "L4"),
    ("Tesla T4", "T4"), ("TPU v4", "TPU v4"), ("TPU v5 lite", "TPU v5e"),
    ("TPU v5p", "TPU v5p"), ("cpu", None), ("NVIDIA GeForce RTX 4090", None)])
def test_peak_table(kind, name):
    sys.path.insert(0, REPO)
    from benchmarks.device import peak_flops
    found, peaks = peak_flops(kind)
    assert found == name
    if name:
        assert peaks["fp32"] > 0 and "bf16" in peaks


def test_device_kind_as_file_name():
    from benchmarks.device import sanitize
    assert sanitize("NVIDIA H100 80GB HBM3") == "NVIDIA_H100_80GB_HBM3"
    assert sanitize("TPU v5 lite") == "TPU_v5_lite"
    assert sanitize("a/b:c") == "a_b_c"
