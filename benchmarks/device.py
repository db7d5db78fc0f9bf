"""Accelerator benchmark: one command, one JSON. Written for one H100/H200 in < 8 minutes.

  PYTHONPATH=. python benchmarks/device.py                 # full run (paper presets)
  PYTHONPATH=. python benchmarks/device.py --tiny          # tiny presets, < 1 min on a CPU
  PYTHONPATH=. python benchmarks/device.py --parts wm_bf16,act --out-dir /tmp/bench

Writes OUT_DIR/device-<device_kind>.json (default OUT_DIR benchmarks/results/; the device
kind with anything but letters, digits, '.', '_' and '-' replaced by '_'), which
`ditto sweep GRID --estimate` reads. Parts, each (by default) in its own subprocess, so
each peak memory figure is that part's own:

  wm_fp32, wm_bf16  the world-model train step of experiments/configs/wm.py:paper (batch
                    50 x 50, 64x64 frames), activations in float32 / bfloat16 (parameters
                    float32), conv_impl and frame_chunk "auto" for this backend
                    (ditto_jax/core/devices.py). frames/s = B*T / median step time; compile time;
                    forward-only time (eval_step) so forward and backward can be told apart;
                    peak device memory (device.memory_stats()["peak_bytes_in_use"]; host
                    peak RSS where the backend has no memory_stats, e.g. CPU); FLOPs per step
                    two ways: `flops_compiled` (compiled.cost_analysis(), which counts a
                    while loop's body once, so the 50-step RSSM scan is undercounted) and
                    `flops_model` (the same step lowered with the scan fully unrolled and no
                    frame chunking, before compilation: model FLOPs, no remat recompute),
                    and model FLOP utilisation `mfu` = flops_model / step time / the
                    device's peak for that dtype (PEAK_TFLOPS; null for unknown devices).
  ditto_update      one DITTO update (experiments/configs/policy.py:paper: B_ac 512, H 15,
                    8 x 256 actor and critic) imagining in the paper world model (in its
                    "auto" compute dtype), built by ditto_jax.stages.train_policy.build_method
                    as benchmarks/policy.py does.
  act               acting latency per step with 1 and 16 environments: encoder + RSSM
                    posterior step + actor (policy_agents.WorldModelAgent), on random frames;
                    no emulator.
  policy_vmap_seeds vmapped multi-seed policy training does not exist yet: null, with a note.

Runs where only jax, flax, optax, orbax-checkpoint, chex, numpy and ml_collections are
installed (on the lent GPU host ml_collections comes as a carried wheel:
launch/device_prepare.sh): nothing imported here pulls in TensorFlow, TFDS, gymnasium or
ale-py; tests/test_device_bench.py checks this with those modules blocked.

Timing: every part records its setup, compile and timed seconds; the whole run records
its wall time against TARGET_S (480 s). A part that would start with less than its
minimum time left under --budget-s (450 s) is skipped and says so; an isolated part still
running at the budget is killed and recorded as timed out.
"""
import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

RESULTS = os.path.join(ROOT, "benchmarks", "results")
OBS_SHAPE = (64, 64, 1)
NUM_ACTIONS = 6
TARGET_S = 480  # the whole command on one H100/H200
BUDGET_S = 450  # for the parts: leaves the interpreter start and the JSON inside TARGET_S
# Ordered so that what `ditto sweep --estimate` needs comes first if the budget runs out.
PARTS = ("wm_bf16", "ditto_update", "act", "wm_fp32")
TINY_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"

# Dense peak TFLOP/s per device (no structured sparsity), from the vendors' data sheets.
# "fp32" is the peak of the unit XLA uses for float32 matmuls and convolutions under JAX's
# default precision: TF32 tensor cores on Ampere and later NVIDIA GPUs, one bf16 MXU pass
# on TPUs, plain FP32 on a T4 (no TF32). "fp32_vector" is the non-tensor-core FP32 peak.
# T4 has no bf16 tensor cores: its bf16 peak is unknown (bf16 runs emulated), MFU null.
# Matched against jax's device_kind in order; the first matching pattern wins.
PEAK_TFLOPS = (
    (r"H100.*PCIe", "H100 PCIe", {"bf16": 756.0, "fp32": 378.0, "fp32_vector": 51.2}),
    (r"H100.*NVL", "H100 NVL", {"bf16": 835.0, "fp32": 417.5, "fp32_vector": 59.8}),
    (r"H200", "H200", {"bf16": 989.4, "fp32": 494.7, "fp32_vector": 66.9}),
    (r"H100", "H100 SXM", {"bf16": 989.4, "fp32": 494.7, "fp32_vector": 66.9}),
    (r"A100", "A100", {"bf16": 312.0, "fp32": 156.0, "fp32_vector": 19.5}),
    (r"\bL4\b", "L4", {"bf16": 121.0, "fp32": 60.0, "fp32_vector": 30.3}),
    (r"\bT4\b", "T4", {"bf16": None, "fp32": 8.1, "fp32_vector": 8.1}),
    (r"TPU v4", "TPU v4", {"bf16": 275.0, "fp32": 275.0}),
    (r"TPU v5 ?lite|TPU v5e", "TPU v5e", {"bf16": 197.0, "fp32": 197.0}),
    (r"TPU v5p|TPU v5$", "TPU v5p", {"bf16": 459.0, "fp32": 459.0}),
)


# ----------------------------------------------------------------------------- helpers
def peak_flops(device_kind):
    """(table name, {"bf16": TFLOP/s, "fp32": ...}) for a known device kind, else (None, None)."""
    for pattern, name, peaks in PEAK_TFLOPS:
        if re.search(pattern, str(device_kind)):
            return name, dict(peaks)
    return None, None


def sanitize(kind):
    """A device kind as a file-name part: 'NVIDIA H100 80GB HBM3' -> 'NVIDIA_H100_80GB_HBM3'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(kind)).strip("_") or "unknown"


def _cost_flops(stage):
    try:
        c = stage.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends implement no cost analysis
        return None
    c = c[0] if isinstance(c, (list, tuple)) and c else c
    flops = (c or {}).get("flops")
    return float(flops) if flops is not None and flops >= 0 else None


def _device():
    import jax
    return jax.local_devices()[0]


def memory_snapshot():
    """Peak memory so far: device peak_bytes_in_use, else the host's peak RSS."""
    try:
        stats = _device().memory_stats() or {}
    except Exception:  # noqa: BLE001
        stats = {}
    if "peak_bytes_in_use" in stats:
        return {"peak_memory_bytes": int(stats["peak_bytes_in_use"]),
                "memory_limit_bytes": int(stats.get("bytes_limit") or 0) or None,
                "memory_source": "device.memory_stats()['peak_bytes_in_use']"}
    return {"peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "memory_limit_bytes": None,
            "memory_source": "host peak RSS (the backend has no memory_stats)"}


def _block(x):
    import jax
    return jax.block_until_ready(x)


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _timed_loop(fn, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - t0)
    return times


# ----------------------------------------------------------------------------- configs
def load_configs(tiny):
    """(wm config, policy config): the paper presets, or tiny ones with --tiny."""
    from ditto_jax.core.config import load_python_file
    wm = load_python_file(os.path.join(ROOT, "experiments", "configs", "wm.py"), "get_config")
    pol = load_python_file(os.path.join(ROOT, "experiments", "configs", "policy.py"),
                           "get_config")
    preset = "tiny" if tiny else "paper"
    return wm.get_config(preset), pol.get_config(preset)


_STATES = {}  # (tiny, compute dtype) -> world-model train state, reused within a process


def wm_state(wm_config, compute_dtype=None):
    """A randomly initialised world-model train state (speed does not depend on weights).

    `compute_dtype` None: the config's ("auto": resolved for this backend). One state per
    (preset, resolved dtype) per process; parts that donate it get a copy.
    """
    import jax
    from ditto_jax import models
    from ditto_jax.core import devices
    if compute_dtype:
        wm_config.train.compute_dtype = compute_dtype
    _, dtype = devices.resolve_for_build(wm_config.model, wm_config.train.compute_dtype)
    wm_config.train.compute_dtype = dtype
    key = (wm_config.preset, dtype)
    if key not in _STATES:
        _STATES[key] = models.init_train_state(wm_config, OBS_SHAPE, NUM_ACTIONS,
                                               jax.random.key(0))
    return jax.tree.map(lambda x: x.copy() if hasattr(x, "copy") else x, _STATES[key])


def _model_settings(state, config):
    import jax.numpy as jnp
    m = state.model
    return {"preset": config.preset, "batch": [int(config.train.batch_size),
                                               int(config.train.seq_len)],
            "obs_shape": list(OBS_SHAPE), "decoder": m.decoder, "conv_impl": m.conv_impl,
            "frame_chunk": int(m.frame_chunk), "compute_dtype": jnp.dtype(m.dtype).name}


# ----------------------------------------------------------------------------- parts
def part_wm(dtype, tiny, steps):
    """World-model train step at the paper (or tiny) preset in `dtype` activations."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from benchmarks.wm import synthetic_pong
    from ditto_jax import models
    t0 = time.perf_counter()
    config, _ = load_configs(tiny)
    state = wm_state(config, dtype)
    b, t = int(config.train.batch_size), int(config.train.seq_len)
    data, _ = synthetic_pong(np.random.default_rng(0), b, t, size=OBS_SHAPE[0])
    batch = jax.tree.map(jnp.asarray, data)
    rec = {"settings": _model_settings(state, config),
           "params": int(sum(x.size for x in jax.tree.leaves(state.params)))}
    rec["setup_s"] = time.perf_counter() - t0

    step = jax.jit(models.train_step, donate_argnums=0)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    rec["compile_s"] = time.perf_counter() - t0
    rec["flops_compiled"] = _cost_flops(compiled)
    # Model FLOPs: lowered (not compiled) with the scan unrolled and no frame chunking.
    t0 = time.perf_counter()
    unrolled = config.copy_and_resolve_references()
    unrolled.model.scan_unroll = t
    unrolled.model.frame_chunk = 0
    unrolled.model.conv_impl = state.model.conv_impl
    abstract = jax.eval_shape(lambda k: models.init_train_state(
        unrolled, OBS_SHAPE, NUM_ACTIONS, k), jax.random.key(0))
    rec["flops_model"] = _cost_flops(jax.jit(models.train_step).lower(abstract, batch))
    rec["flops_model_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    holder = {"state": state}

    def one():
        holder["state"], m = compiled(holder["state"], batch)
        return m
    _block(one())  # warm-up
    times = _timed_loop(one, steps)
    rec["timed_s"] = time.perf_counter() - t0
    rec["step_s"] = _median(times)
    rec["step_s_min"] = min(times)
    rec["step_s_all"] = [round(x, 5) for x in times]
    rec["frames_per_s"] = b * t / rec["step_s"]
    rec["loss"] = float(jax.device_get(one()["loss"]))

    # Forward only (the loss without gradients): backward ~= step - forward.
    t0 = time.perf_counter()
    fwd = jax.jit(models.eval_step).lower(holder["state"], batch, jax.random.key(1)).compile()
    rec["forward_compile_s"] = time.perf_counter() - t0
    _block(fwd(holder["state"], batch, jax.random.key(1)))
    rec["forward_s"] = _median(_timed_loop(
        lambda: fwd(holder["state"], batch, jax.random.key(1)), max(2, steps // 2)))
    rec.update(memory_snapshot())
    return rec


def _mfu(rec, peaks):
    flops = rec.get("flops_model") or rec.get("flops_compiled")
    dtype = rec["settings"]["compute_dtype"]
    peak = (peaks or {}).get("bf16" if dtype == "bfloat16" else "fp32")
    rec["achieved_tflops"] = flops / rec["step_s"] / 1e12 if flops else None
    rec["mfu"] = (rec["achieved_tflops"] / peak) if (flops and peak) else None
    rec["mfu_flops_source"] = "flops_model" if rec.get("flops_model") else "flops_compiled"
    return rec


def part_ditto_update(tiny, updates):
    """One DITTO update (policy preset paper: B_ac 512, H 15) in the paper world model."""
    import jax
    from ditto_jax.agents.rewards import latent_part
    from ditto_jax.models.world_model import WorldModel
    from ditto_jax.stages.train_policy import build_method
    t0 = time.perf_counter()
    wm_config, policy_cfg = load_configs(tiny)
    wstate = wm_state(wm_config)
    meta = {"num_actions": NUM_ACTIONS, "obs_shape": list(OBS_SHAPE)}
    state, step, _ = build_method(policy_cfg, "ditto", wstate, meta, key=jax.random.key(1))
    b, h = int(policy_cfg.batch_size), int(policy_cfg.horizon)
    start = wstate.model.apply(wstate.params, b, method=WorldModel.initial_state)
    start = jax.tree.map(lambda x: x + 0.1, start)
    expert = latent_part(start, policy_cfg.latent)[:, None].repeat(h + 1, 1)
    batch = {"start": start, "expert": expert}
    rec = {"wm_settings": _model_settings(wstate, wm_config),
           "batch": b, "horizon": h, "latent": policy_cfg.latent,
           "actor": [int(policy_cfg.actor_layers), int(policy_cfg.actor_units)],
           "setup_s": time.perf_counter() - t0}
    # The frozen world model's parameters are an argument of the step where build_method
    # makes them one (step(state, batch, rng, wm_params)); older steps close over them.
    import inspect
    extra = (wstate.params,) if "wm_params" in inspect.signature(step).parameters else ()
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=0).lower(state, batch, jax.random.key(0),
                                                     *extra).compile()
    rec["compile_s"] = time.perf_counter() - t0
    rec["flops_compiled"] = _cost_flops(compiled)
    rec["flops_note"] = ("compiled.cost_analysis() counts the imagination scan's body once: "
                         "a lower bound on the FLOPs of an update")
    holder = {"state": state, "i": 0}

    def one():
        holder["i"] += 1
        holder["state"], m = compiled(holder["state"], batch, jax.random.key(holder["i"]),
                                      *extra)
        return m
    _block(one())
    t0 = time.perf_counter()
    times = _timed_loop(one, updates)
    rec["timed_s"] = time.perf_counter() - t0
    rec["update_s"] = _median(times)
    rec["update_s_all"] = [round(x, 5) for x in times]
    rec["updates_per_s"] = 1.0 / rec["update_s"]
    rec["imagined_steps_per_s"] = b * h / rec["update_s"]
    rec.update(memory_snapshot())
    return rec


def part_act(tiny, steps, env_counts=(1, 16)):
    """Acting latency: encoder + RSSM posterior step + actor per step, no emulator."""
    import jax
    import numpy as np
    from ditto_jax.agents.acting import WorldModelAgent
    from ditto_jax.stages.train_policy import build_method
    t0 = time.perf_counter()
    wm_config, policy_cfg = load_configs(tiny)
    wstate = wm_state(wm_config)
    meta = {"num_actions": NUM_ACTIONS, "obs_shape": list(OBS_SHAPE)}
    state, _, actor_apply = build_method(policy_cfg, "ditto", wstate, meta,
                                         key=jax.random.key(1))
    agent = WorldModelAgent(wstate, actor_apply, state.actor)
    rec = {"wm_settings": _model_settings(wstate, wm_config),
           "forward_conv_impl": agent.model.conv_impl, "setup_s": time.perf_counter() - t0,
           "envs": {}}
    rng = np.random.default_rng(0)
    key = jax.random.key(0)
    for n in env_counts:
        obs = rng.integers(0, 256, (n,) + OBS_SHAPE, dtype=np.uint8)
        first = np.ones(n, bool)
        carry = agent.init(n)
        t0 = time.perf_counter()
        carry, _ = agent.act(carry, obs, first, key)  # compiles
        compile_s = time.perf_counter() - t0
        first = np.zeros(n, bool)
        times = []
        for i in range(steps):
            t0 = time.perf_counter()
            carry, action = agent.act(carry, obs, first, jax.random.fold_in(key, i))
            times.append(time.perf_counter() - t0)  # act() returns host numpy: synced
        rec["envs"][str(n)] = {"compile_s": compile_s, "ms_per_step": 1e3 * _median(times),
                               "ms_per_step_min": 1e3 * min(times),
                               "agent_steps_per_s": n / _median(times)}
    rec.update(memory_snapshot())
    return rec


def run_part(name, tiny):
    """Runs one part in this process; returns its record (with wall_s)."""
    t0 = time.perf_counter()
    if name == "info":
        return dict(machine_info(), auto_defaults=auto_defaults(tiny))
    if name in ("wm_fp32", "wm_bf16"):
        rec = part_wm("float32" if name == "wm_fp32" else "bfloat16", tiny,
                      steps=3 if tiny else 10)
    elif name == "ditto_update":
        rec = part_ditto_update(tiny, updates=3 if tiny else 20)
    elif name == "act":
        rec = part_act(tiny, steps=10 if tiny else 200)
    else:
        raise ValueError(f"unknown part {name!r}; expected one of {PARTS}")
    rec["wall_s"] = time.perf_counter() - t0
    return rec


# Seconds a part needs at least, to be worth starting (process start + compile + timing).
MIN_PART_S = {"wm_fp32": 90, "wm_bf16": 90, "ditto_update": 45, "act": 30}


def run_isolated(name, tiny, timeout):
    """One part in a fresh subprocess (its own peak memory); its JSON record or an error."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_part", name] + (["--tiny"] if tiny
                                                                          else [])
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "wall_s": time.perf_counter() - t0}
    if p.returncode != 0:
        return {"error": f"exit code {p.returncode}", "stderr_tail": p.stderr[-3000:],
                "wall_s": time.perf_counter() - t0}
    rec = json.loads(p.stdout.strip().splitlines()[-1])
    rec["process_wall_s"] = time.perf_counter() - t0
    return rec


# ----------------------------------------------------------------------------- driver
def machine_info():
    import jax
    info = {"jax": jax.__version__, "backend": jax.default_backend(),
            "device_kind": _device().device_kind, "device_count": jax.device_count(),
            "local_device_count": jax.local_device_count(), "python": platform.python_version(),
            "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        import jaxlib
        info["jaxlib"] = jaxlib.__version__
    except (ImportError, AttributeError):
        info["jaxlib"] = None
    return info


def auto_defaults(tiny):
    """What "auto" resolves to here for the (paper) world model (ditto_jax/core/devices.py)."""
    from ditto_jax.core import devices
    config, _ = load_configs(tiny)
    return devices.apply_device_defaults(config, log=None)


def summarise(result):
    p = result["parts"]
    lines = [f"device: {result['device_kind']} x{result['device_count']} "
             f"({result['backend']}, jax {result['jax']})"]
    for name in ("wm_fp32", "wm_bf16"):
        r = p.get(name) or {}
        if "step_s" in r:
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
            lines.append(f"{name}: {r['frames_per_s']:.0f} frames/s ({r['step_s']:.3f} s/step, "
                         f"forward {r['forward_s']:.3f} s), compile {r['compile_s']:.0f} s, peak "
                         f"{r['peak_memory_bytes'] / 2 ** 30:.2f} GiB, MFU {mfu}")
        elif r:
            lines.append(f"{name}: {r.get('error') or r.get('skipped')}")
    r = p.get("ditto_update") or {}
    if "update_s" in r:
        lines.append(f"ditto_update: {1e3 * r['update_s']:.1f} ms/update "
                     f"({r['imagined_steps_per_s']:.0f} imagined steps/s), compile "
                     f"{r['compile_s']:.0f} s")
    elif r:
        lines.append(f"ditto_update: {r.get('error') or r.get('skipped')}")
    r = p.get("act") or {}
    if "envs" in r:
        lines.append("acting: " + ", ".join(f"{n} env(s) {e['ms_per_step']:.2f} ms/step"
                                             for n, e in r["envs"].items()))
    elif r:
        lines.append(f"act: {r.get('error') or r.get('skipped')}")
    lines.append(f"total {result['total_s']:.0f} s (target {result['target_s']} s)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true",
                   help="tiny presets, compiled without LLVM optimisations: a plumbing check "
                        "(tests, CPU), not a measurement")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {PARTS}")
    p.add_argument("--out-dir", default=RESULTS)
    p.add_argument("--budget-s", type=float, default=BUDGET_S,
                   help="stop parts that would end after this many seconds in all (an "
                        "isolated part is killed at the limit)")
    p.add_argument("--min-part-s", type=float, default=None,
                   help="start a part only with at least this many seconds left (default: "
                        "each part's own estimate, MIN_PART_S)")
    isolate = p.add_mutually_exclusive_group()
    isolate.add_argument("--isolate", dest="isolate", action="store_true", default=None,
                         help="each part in its own subprocess (default, except --tiny)")
    isolate.add_argument("--no-isolate", dest="isolate", action="store_false")
    p.add_argument("--_part", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.tiny and "jax" not in sys.modules:
        # A plumbing check: compile without LLVM optimisations (10x faster compiles on a
        # CPU; the timings of a --tiny run mean nothing anyway).
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + TINY_XLA_FLAGS).strip()
    if args._part:
        print(json.dumps(run_part(args._part, args.tiny), default=float))
        return 0

    t_start = time.perf_counter()
    parts = [x for x in args.parts.split(",") if x]
    unknown = [x for x in parts if x not in PARTS]
    if unknown:
        p.error(f"unknown part(s) {unknown}; expected a comma list of {PARTS}")
    isolate = (not args.tiny) if args.isolate is None else args.isolate
    # Isolated, this process never opens the device (a TPU admits one process at a time;
    # a GPU would lose memory to this process's allocator): a child reports the machine.
    if isolate:
        info = run_isolated("info", args.tiny, 300)
        if "error" in info:
            print(f"cannot start jax: {info}", file=sys.stderr)
            return 1
    else:
        info = run_part("info", args.tiny)
    info.pop("wall_s", None), info.pop("process_wall_s", None)
    name, peaks = peak_flops(info["device_kind"])
    result = dict(info, schema=1, tiny=args.tiny, xla_flags=os.environ.get("XLA_FLAGS", ""),
                  time=time.strftime("%Y-%m-%d %H:%M:%S"),
                  argv=sys.argv[1:] if argv is None else list(argv), isolated=isolate,
                  target_s=TARGET_S, budget_s=args.budget_s,
                  peak_tflops={"device": name, **peaks} if peaks else None, parts={})
    print(f"# {info['device_kind']} ({info['backend']}), jax {info['jax']}; parts "
          f"{parts}{' (tiny)' if args.tiny else ''}", file=sys.stderr, flush=True)
    for part in parts:
        left = args.budget_s - (time.perf_counter() - t_start)
        need = args.min_part_s if args.min_part_s is not None else \
            5 if args.tiny else MIN_PART_S[part]
        if left < need:
            result["parts"][part] = {"skipped": f"time budget: {left:.0f} s left of "
                                                f"{args.budget_s:.0f}, the part needs ~{need} s"}
            continue
        print(f"# {part} ({left:.0f} s left)", file=sys.stderr, flush=True)
        try:
            rec = run_isolated(part, args.tiny, left) if isolate else run_part(part, args.tiny)
        except Exception as e:  # noqa: BLE001 - one failing part must not lose the others
            rec = {"error": f"{type(e).__name__}: {e}"}
        if part.startswith("wm_") and "step_s" in rec:
            _mfu(rec, peaks)
        result["parts"][part] = rec
    result["parts"]["policy_vmap_seeds"] = None
    result["notes"] = {
        "policy_vmap_seeds": "vmapped multi-seed policy training does not exist yet; null "
                             "until it does",
        "mfu": "model FLOPs (scan unrolled, no remat) / step time / PEAK_TFLOPS[device][dtype]; "
               "fp32 peaks are TF32 tensor-core peaks on Ampere+ GPUs (JAX's default matmul "
               "precision) and one bf16 pass on TPUs",
        "memory": "peak_memory_bytes: the part's own peak when isolated (default); "
                  "in one process (--tiny, --no-isolate) peaks accumulate over the parts",
        "estimate": "`ditto sweep GRID --estimate --device-results THIS_FILE` turns these "
                    "timings into device-hours",
    }
    result["total_s"] = time.perf_counter() - t_start
    result["within_target"] = result["total_s"] <= TARGET_S
    os.makedirs(args.out_dir, exist_ok=True)
    out = os.path.join(args.out_dir, f"device-{sanitize(info['device_kind'])}"
                                     f"{'-tiny' if args.tiny else ''}.json")
    with open(out + ".tmp", "w") as f:
        json.dump(result, f, indent=1, default=float)
    os.replace(out + ".tmp", out)
    print(summarise(result))
    print(f"wrote {out}")
    failed = [k for k, v in result["parts"].items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
