"""Device-aware world-model defaults (ditto_jax/core/devices.py), with faked backend names."""
import json
import os

import pytest

from ditto_jax.core import devices
from tests.conftest import REPO, run_cli

GIB = 2 ** 30
WM_CONFIG = os.path.join(REPO, "experiments/configs/wm.py")


def _wm_config(preset):
    from ditto_jax.core.config import load_config
    return load_config(f"{WM_CONFIG}:{preset}")


@pytest.mark.parametrize("preset", ["paper", "small", "tiny"])
def test_every_wm_preset_defaults_to_auto(preset):
    c = _wm_config(preset)
    assert c.model.conv_impl == "auto"
    assert c.model.frame_chunk == devices.FRAME_CHUNK_AUTO
    assert c.train.compute_dtype == "auto"


def test_conv_impl_resolution():
    assert devices.resolve_conv_impl("auto", "cpu") == "matmul"
    assert devices.resolve_conv_impl("auto", "gpu") == "lax"
    assert devices.resolve_conv_impl("auto", "tpu") == "lax"


def test_compute_dtype_resolution():
    assert devices.resolve_compute_dtype("auto", "cpu") == "float32"
    assert devices.resolve_compute_dtype("auto", "gpu", "NVIDIA H100 80GB HBM3") == "bfloat16"
    assert devices.resolve_compute_dtype("auto", "gpu", "NVIDIA A100-SXM4-40GB") == "bfloat16"
    assert devices.resolve_compute_dtype("auto", "tpu", "TPU v5 lite") == "bfloat16"
    # No bf16 tensor cores: bf16 would run emulated, slower than float32.
    assert devices.resolve_compute_dtype("auto", "gpu", "Tesla T4") == "float32"
    assert devices.resolve_compute_dtype("auto", "gpu", "Tesla V100-SXM2-16GB") == "float32"


def test_frame_chunk_resolution():
    auto = devices.FRAME_CHUNK_AUTO
    assert devices.resolve_frame_chunk(auto, "cpu", frames=2500) == 250
    assert devices.resolve_frame_chunk(auto, "cpu") == 250
    # The paper batch (50 x 50 = 2,500 frames, ~9 GB fp32) fits 80 GB without remat.
    assert devices.resolve_frame_chunk(auto, "gpu", frames=2500, device_memory=80 * GIB) == 0
    assert devices.resolve_frame_chunk(auto, "tpu", frames=2500, compute_dtype="bfloat16",
                                       device_memory=95 * GIB) == 0
    assert devices.resolve_frame_chunk(auto, "gpu") == 0  # batch unknown
    # A 16 GB device (or unknown memory) chunks the paper batch: 4.5 GB of bf16 activations
    # against a 4 GiB budget; chunks are multiples of 256 frames that fit the budget.
    for memory in (16 * GIB, None):
        chunk = devices.resolve_frame_chunk(auto, "gpu", frames=2500, compute_dtype="bfloat16",
                                            device_memory=memory)
        assert 0 < chunk < 2500 and chunk % 256 == 0
        assert devices.activation_bytes(chunk, compute_dtype="bfloat16") <= 4 * GIB
    # A much larger batch chunks even on 80 GB; small models never need to.
    big = devices.resolve_frame_chunk(auto, "gpu", frames=50_000, device_memory=80 * GIB)
    assert 0 < big < 50_000 and big % 256 == 0
    assert devices.resolve_frame_chunk(auto, "gpu", frames=50_000, cnn_depth=2,
                                       device_memory=80 * GIB) == 0


@pytest.mark.parametrize("backend", ["cpu", "gpu", "tpu"])
def test_explicit_values_are_never_overridden(backend):
    assert devices.resolve_conv_impl("matmul", backend) == "matmul"
    assert devices.resolve_conv_impl("lax", backend) == "lax"
    for dtype in ("float32", "bfloat16", "float16"):  # an invalid one fails later, unchanged
        assert devices.resolve_compute_dtype(dtype, backend, "NVIDIA H100") == dtype
    for chunk in (0, 3, 250, 100_000):
        assert devices.resolve_frame_chunk(chunk, backend, frames=10 ** 6,
                                           device_memory=GIB) == chunk
    model = {"conv_impl": "matmul", "frame_chunk": 0, "cnn_depth": 48}
    out, dtype = devices.resolve_model_fields(model, "float32", backend, frames=10 ** 6)
    assert (out["conv_impl"], out["frame_chunk"], dtype) == ("matmul", 0, "float32")


def test_apply_device_defaults_fakes_a_gpu_and_records_the_request():
    c = _wm_config("paper")
    c.model.conv_impl = "matmul"  # explicit: kept
    lines = []
    resolved = devices.apply_device_defaults(c, backend="gpu", device_kind="NVIDIA H200",
                                             device_memory=141 * GIB, device_count=1,
                                             log=lines.append)
    assert resolved == {"conv_impl": "matmul", "frame_chunk": 0, "compute_dtype": "bfloat16"}
    assert (c.model.conv_impl, c.model.frame_chunk, c.train.compute_dtype) == (
        "matmul", 0, "bfloat16")
    assert lines == ["device defaults: backend=gpu, conv_impl=matmul, frame_chunk=0, "
                     "compute_dtype=bfloat16"]
    saved = c.to_dict()["device_defaults"]
    assert saved["backend"] == "gpu" and saved["resolved"] == resolved
    assert saved["requested"] == {"conv_impl": "matmul", "frame_chunk": -1,
                                  "compute_dtype": "auto"}
    # Applying it again (a resumed run on the same backend) gives the same values.
    again = devices.apply_device_defaults(c, backend="gpu", device_kind="NVIDIA H200",
                                          device_memory=141 * GIB, device_count=1, log=None)
    assert again == resolved and c.to_dict()["device_defaults"]["requested"] == \
        saved["requested"]


def test_cpu_defaults_match_the_previous_explicit_values():
    c = _wm_config("small")
    resolved = devices.apply_device_defaults(c, backend="cpu", device_kind="cpu",
                                             device_count=1, log=None)
    assert resolved == {"conv_impl": "matmul", "frame_chunk": 250, "compute_dtype": "float32"}


def test_loaded_config_re_resolves_only_auto_requests():
    import ml_collections
    c = _wm_config("paper")
    devices.apply_device_defaults(c, backend="gpu", device_kind="NVIDIA H100",
                                  device_memory=80 * GIB, device_count=1, log=None)
    # Saved as JSON by the checkpoint, read back on a CPU machine.
    loaded = ml_collections.ConfigDict(json.loads(json.dumps(c.to_dict())))
    devices.resolve_loaded_config(loaded, backend="cpu", device_kind="cpu", device_count=1)
    assert (loaded.model.conv_impl, loaded.model.frame_chunk, loaded.train.compute_dtype) == (
        "matmul", 250, "float32")
    # An old checkpoint: explicit values, no record of a request: loaded as saved.
    old = _wm_config("paper").to_dict()
    old["model"].update(conv_impl="lax", frame_chunk=0)
    old["train"]["compute_dtype"] = "bfloat16"
    old = ml_collections.ConfigDict(old)
    devices.resolve_loaded_config(old, backend="cpu", device_kind="cpu", device_count=1)
    assert (old.model.conv_impl, old.model.frame_chunk, old.train.compute_dtype) == (
        "lax", 0, "bfloat16")
    # An "auto" that reached a checkpoint unresolved is resolved.
    raw = ml_collections.ConfigDict(_wm_config("tiny").to_dict())
    devices.resolve_loaded_config(raw, backend="tpu", device_kind="TPU v4", device_count=4)
    assert (raw.model.conv_impl, raw.model.frame_chunk, raw.train.compute_dtype) == (
        "lax", 0, "bfloat16")


def test_model_built_from_an_auto_config_uses_this_backend():
    import jax
    from ditto_jax.models import make_model
    assert jax.default_backend() == "cpu"
    model = make_model(_wm_config("tiny"), (64, 64, 1), 6)
    assert (model.conv_impl, model.frame_chunk, model.dtype) == ("matmul", 250, jax.numpy.float32)


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_train_wm_prints_saves_and_resumes_resolved_defaults(pong_dataset, tmp_path):
    """A real `ditto train-wm` run: one line, resolved values in config.json, resume, load."""
    def train(steps):
        return run_cli("train-wm", "--config", f"{WM_CONFIG}:tiny", "--data", pong_dataset,
                       "--workdir", tmp_path, "--steps", steps, "--quiet",
                       "--config.train.strip_every=0", "--config.train.eval_every=0")
    proc = train(2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("device defaults: backend=cpu, conv_impl=matmul, frame_chunk=250, "
            "compute_dtype=float32") in proc.stdout
    with open(tmp_path / "config.json") as f:
        meta = json.load(f)
    assert meta["model"]["conv_impl"] == "matmul" and meta["model"]["frame_chunk"] == 250
    assert meta["config"]["train"]["compute_dtype"] == "float32"
    assert meta["config"]["device_defaults"]["requested"]["conv_impl"] == "auto"
    proc = train(3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from step 2" in proc.stdout
    from ditto_jax.stages.wm_io import load_world_model
    state, loaded = load_world_model(str(tmp_path))
    assert loaded["step"] == 3 and state.model.conv_impl == "matmul"
