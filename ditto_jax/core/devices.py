"""Device-aware defaults for the world model: `"auto"` config values resolved per backend.

Three world-model settings are fastest at different values on a CPU and on an accelerator;
the configs (experiments/configs/wm.py) default them to "auto" and this module picks:

  field                 CPU                      GPU / TPU
  model.conv_impl       "matmul" (convs as       "lax" (XLA's convolutions: cuDNN / the TPU
                        GEMMs; XLA's CPU conv    conv units are fast forward and backward)
                        backward is 10x slower)
  model.frame_chunk     250 frames per remat     0 (no remat) unless the activations would
                        chunk (cache-sized        not fit: see `resolve_frame_chunk`
                        working set, 2x faster)
  train.compute_dtype   "float32" (bf16 is not   "bfloat16" activations with float32
                        faster through XLA CPU)  parameters (tensor cores / MXU); float32 on
                                                 GPUs without bf16 tensor cores (T4, V100)

Auto markers: the strings "auto" for conv_impl and compute_dtype, and the int
FRAME_CHUNK_AUTO (-1) for frame_chunk (an int field: 0 already means "no chunking", and
config overrides are typed, so `--config.model.frame_chunk=-1` asks for auto). An explicit
value is never changed.

Every function takes the backend name ("cpu", "gpu", "tpu"; anything else counts as an
accelerator) as an argument, so tests can fake an accelerator on a CPU machine;
`current_backend()` and `device_memory_bytes()` read the real device.

Where the values are resolved: `ditto_jax.stages.train_wm.train_world_model` calls
`apply_device_defaults` once at its start (printing one `device defaults: ...` line) and
saves both the request and the resolved values in the run's config
(`config.device_defaults` = {backend, requested, resolved}; the model fields hold the
resolved values). `load_world_model` calls `resolve_loaded_config`, which re-resolves only
fields that were requested as "auto" (none of them changes a parameter shape) for the
backend it runs on; a checkpoint saved with explicit values loads with those values.
`ditto_jax.models.train_step.make_model` resolves any "auto" left (benchmarks, tests that
build a model straight from a config) with the same rules.
"""
import math

AUTO = "auto"
FRAME_CHUNK_AUTO = -1
CPU_FRAME_CHUNK = 250
COMPUTE_DTYPES = ("float32", "bfloat16")

# Activation memory of the encoder + decoder, forward and backward without chunking:
# 9 GB for the paper preset's 2,500 frames (50 x 50) in float32, measured when frame
# chunking was introduced (ditto_jax/models/world_model.py `_per_frame`), i.e. 3.6 MB per
# frame at cnn_depth 48. It scales with the conv widths (cnn_depth) and the dtype's size.
PAPER_ACTIVATION_BYTES_PER_FRAME = 3.6e6
PAPER_CNN_DEPTH = 48
# Share of device memory the encoder/decoder activations may take; the rest is left to
# parameters, Adam state, the RSSM scan's residuals (B x T x (deter + stoch)), XLA's
# workspaces and the 10% launch/gpu_host.sh keeps free.
ACTIVATION_MEMORY_FRACTION = 0.25
# Device memory assumed when it cannot be read: the smallest accelerators in common use
# (T4, TPU v5e: 16 GB). The paper batch in bf16 (4.5 GB) fits its 4 GB budget only just
# not, so such a device chunks; 40 GB+ devices never chunk the paper batch.
DEFAULT_ACCELERATOR_MEMORY = 16 * 2 ** 30
MIN_ACCELERATOR_CHUNK = 256

# GPUs whose tensor cores have no bfloat16 (pre-Ampere): bf16 would run emulated, slower
# than float32. Matched as substrings of jax's device_kind (e.g. "Tesla T4").
NO_BF16_GPUS = ("T4", "V100", "P100", "P40", "P4", "K80", "M60", "T1000", "RTX 20", "TITAN V")


def current_backend():
    """jax.default_backend(): "cpu", "gpu" or "tpu"."""
    import jax
    return jax.default_backend()


def current_device_kind():
    import jax
    return jax.devices()[0].device_kind


def device_memory_bytes():
    """Memory of the first local device (memory_stats()["bytes_limit"]), or None (CPU)."""
    import jax
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:  # some backends do not implement memory_stats
        return None
    limit = stats.get("bytes_limit")
    return int(limit) if limit else None


def is_accelerator(backend):
    return str(backend).lower() != "cpu"


def resolve_conv_impl(value, backend):
    """"auto" -> "matmul" on CPU, "lax" elsewhere; any other value is returned unchanged."""
    if value != AUTO:
        return value
    return "lax" if is_accelerator(backend) else "matmul"


def resolve_compute_dtype(value, backend, device_kind=None):
    """"auto" -> "float32" on CPU and on pre-Ampere GPUs, "bfloat16" on other accelerators.

    bfloat16 is the activation dtype only: parameters, optimizer state and losses stay
    float32 (ditto_jax/models/train_step.py). Other values are returned unchanged.
    """
    if value != AUTO:
        return value
    if not is_accelerator(backend):
        return "float32"
    kind = str(device_kind or "")
    if str(backend).lower() == "gpu" and any(k in kind for k in NO_BF16_GPUS):
        return "float32"
    return "bfloat16"


def activation_bytes(frames, *, cnn_depth=PAPER_CNN_DEPTH, compute_dtype="float32"):
    """Estimated encoder + decoder activation bytes for `frames` frames without chunking."""
    size = 2 if compute_dtype == "bfloat16" else 4
    return (float(frames) * PAPER_ACTIVATION_BYTES_PER_FRAME
            * max(float(cnn_depth), 1.0) / PAPER_CNN_DEPTH * size / 4)


def resolve_frame_chunk(value, backend, *, frames=None, cnn_depth=PAPER_CNN_DEPTH,
                        compute_dtype="float32", device_memory=None):
    """FRAME_CHUNK_AUTO (-1) -> frames per rematerialised encoder/decoder chunk (0: none).

    CPU: CPU_FRAME_CHUNK (250), as measured fastest there. Accelerators: no chunking (remat
    recomputes the whole conv forward, ~30% more FLOPs) unless the estimated activations of
    the `frames` frames per device (`activation_bytes`) exceed ACTIVATION_MEMORY_FRACTION
    of `device_memory` (DEFAULT_ACCELERATOR_MEMORY when unknown); then the largest multiple
    of 256 frames that fits that budget. `frames` None (not known): no chunking. Any value
    other than -1 is returned unchanged.
    """
    if value != FRAME_CHUNK_AUTO:
        return value
    if not is_accelerator(backend):
        return CPU_FRAME_CHUNK
    if not frames:
        return 0
    budget = ACTIVATION_MEMORY_FRACTION * float(device_memory or DEFAULT_ACCELERATOR_MEMORY)
    per_frame = activation_bytes(1, cnn_depth=cnn_depth, compute_dtype=compute_dtype)
    if frames * per_frame <= budget:
        return 0
    chunk = int(budget // per_frame) // MIN_ACCELERATOR_CHUNK * MIN_ACCELERATOR_CHUNK
    return max(chunk, MIN_ACCELERATOR_CHUNK)


def resolve_model_fields(model, compute_dtype, backend, *, frames=None, device_kind=None,
                         device_memory=None):
    """(model dict with conv_impl / frame_chunk resolved, resolved compute dtype).

    `model`: config.model as a dict (not modified); `frames`: frames per device in one
    training batch (batch_size * seq_len / devices), None when unknown.
    """
    model = dict(model)
    dtype = resolve_compute_dtype(compute_dtype, backend, device_kind)
    if "conv_impl" in model:
        model["conv_impl"] = resolve_conv_impl(model["conv_impl"], backend)
    if "frame_chunk" in model:
        model["frame_chunk"] = resolve_frame_chunk(
            model["frame_chunk"], backend, frames=frames,
            cnn_depth=model.get("cnn_depth", PAPER_CNN_DEPTH), compute_dtype=dtype,
            device_memory=device_memory)
    return model, dtype


def has_auto(model, compute_dtype):
    return (compute_dtype == AUTO or model.get("conv_impl") == AUTO
            or model.get("frame_chunk") == FRAME_CHUNK_AUTO)


def resolve_for_build(model, compute_dtype, *, frames=None):
    """`resolve_model_fields` on this process's devices, when anything is "auto".

    For code that builds a world model straight from a config (benchmarks, tests, the
    model builder's fallback); returns (model dict, compute dtype).
    """
    model = dict(model)
    if not has_auto(model, compute_dtype):
        return model, compute_dtype
    backend = current_backend()
    return resolve_model_fields(
        model, compute_dtype, backend, frames=frames, device_kind=current_device_kind(),
        device_memory=device_memory_bytes() if is_accelerator(backend) else None)


def _requested(config):
    m, t = config.model, config.train
    return {"conv_impl": m.get("conv_impl", "matmul"), "frame_chunk": m.get("frame_chunk", 0),
            "compute_dtype": t.get("compute_dtype", "float32")}


def _set(config, resolved):
    config.model.conv_impl = resolved["conv_impl"]
    config.model.frame_chunk = int(resolved["frame_chunk"])
    config.train.compute_dtype = resolved["compute_dtype"]


def _unlocked(config):
    import contextlib
    return config.unlocked() if hasattr(config, "unlocked") else contextlib.nullcontext()


def frames_per_device(config, device_count):
    return math.ceil(int(config.train.batch_size) * int(config.train.seq_len)
                     / max(int(device_count), 1))


def apply_device_defaults(config, *, backend=None, device_kind=None, device_memory=None,
                          device_count=None, log=print):
    """Resolves a world-model config's "auto" fields in place, for a training run.

    `config`: the wm config (model.*, train.*). The model fields and train.compute_dtype
    are set to the resolved values, and `config.device_defaults` records
    {backend, device_kind, requested, resolved} (saved with the run's config, so a
    resume on the same backend resolves to the same values; `resolve_loaded_config`
    reads it back). Backend, device kind, memory and count default to jax's devices.
    Logs one line `device defaults: backend=..., conv_impl=..., frame_chunk=...,
    compute_dtype=...` and returns the resolved dict.
    """
    import jax
    backend = backend or current_backend()
    if device_kind is None:
        device_kind = current_device_kind()
    if device_memory is None and is_accelerator(backend):
        device_memory = device_memory_bytes()
    device_count = device_count or jax.device_count()
    requested = _requested(config)
    previous = config.get("device_defaults")
    if previous and previous.get("requested"):  # re-applied to an already resolved config
        requested = previous["requested"]
        requested = dict(requested.to_dict() if hasattr(requested, "to_dict") else requested)
    model, dtype = resolve_model_fields(
        {**config.model.to_dict(), "conv_impl": requested["conv_impl"],
         "frame_chunk": requested["frame_chunk"]}, requested["compute_dtype"], backend,
        frames=frames_per_device(config, device_count), device_kind=device_kind,
        device_memory=device_memory)
    resolved = {"conv_impl": model["conv_impl"], "frame_chunk": int(model["frame_chunk"]),
                "compute_dtype": dtype}
    _set(config, resolved)
    info = {"backend": str(backend), "device_kind": str(device_kind), "requested": requested,
            "resolved": resolved}
    with _unlocked(config):
        if "device_defaults" in config:
            del config["device_defaults"]
        config.device_defaults = info
    if log:
        log(f"device defaults: backend={backend}, conv_impl={resolved['conv_impl']}, "
            f"frame_chunk={resolved['frame_chunk']}, compute_dtype={resolved['compute_dtype']}")
    return resolved


def resolve_loaded_config(config, *, backend=None, device_kind=None, device_memory=None,
                          device_count=None):
    """A world-model config read back from a checkpoint, ready for this backend (in place).

    Fields the run requested as "auto" (recorded in `config.device_defaults`) are resolved
    again for the backend loading it: a model trained on a GPU (lax convs, bf16) is used
    with matmul convs and float32 on a CPU. These fields do not change parameter shapes.
    Explicit values (every checkpoint written before "auto" existed) are kept as saved;
    an "auto" that somehow reached a checkpoint unresolved is resolved. Returns `config`.
    """
    info = config.get("device_defaults") or {}
    requested = info.get("requested") or {}
    requested = dict(requested.to_dict() if hasattr(requested, "to_dict") else requested)
    current = _requested(config)
    wanted = {k: requested.get(k, v) for k, v in current.items()}
    if wanted == current and AUTO not in current.values() \
            and current["frame_chunk"] != FRAME_CHUNK_AUTO:
        return config
    import jax
    backend = backend or current_backend()
    if device_kind is None:
        device_kind = current_device_kind()
    if device_memory is None and is_accelerator(backend):
        device_memory = device_memory_bytes()
    model, dtype = resolve_model_fields(
        {**config.model.to_dict(), "conv_impl": wanted["conv_impl"],
         "frame_chunk": wanted["frame_chunk"]}, wanted["compute_dtype"], backend,
        frames=frames_per_device(config, device_count or jax.device_count()),
        device_kind=device_kind, device_memory=device_memory)
    _set(config, {"conv_impl": model["conv_impl"], "frame_chunk": model["frame_chunk"],
                  "compute_dtype": dtype})
    return config
