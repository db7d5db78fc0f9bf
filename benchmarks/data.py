"""Data pipeline speed: EpisodeWriter, RLDS -> memory, window sampling.

    python benchmarks/data.py [--episodes 20] [--steps 1000] [--out benchmarks/results/data.json]

Writes a synthetic dataset of Atari-like 64x64 grayscale frames (flat background, a few
moving objects, a changing score: PNG compressibility like real frames, not noise) into
a temporary folder, then measures
  - EpisodeWriter: staging (write_episode) and finalize (TFDS shards), in steps/s;
  - load_episodes + EpisodeStore.from_episodes, in frames/s, best and median of 5 (the
    page cache is warm: the files were just written; TF import excluded, measured
    separately);
  - decoding + resizing RL Unplugged-like 84x84 PNG frames (TF's encoder) to 64x64;
  - EpisodeStore.sample_windows(50, 50) and sample_expert_windows(16, 15), batches/s.
Targets: >= 20k frames/s reading, >= 50 batches/s of (50, 50) windows.
"""
import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ditto_jax.data import png, reader, schema  # noqa: E402
from ditto_jax.data.writer import EpisodeWriter  # noqa: E402
from ditto_jax.data.store import EpisodeStore  # noqa: E402

ACTIONS = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN"]


def atari_like_episode(rng, steps, size=64):
    """Pong-like frames: flat field, two paddles, a ball, a score bar, a border."""
    n = steps + 1
    t = np.arange(n)
    obs = np.full((n, size, size), 87, np.uint8)
    obs[:, :7] = 144                       # score area
    obs[:, 7:9] = 236                      # top border
    obs[:, -3:] = 236                      # bottom border
    left = (np.cumsum(rng.integers(-2, 3, n)) % (size - 20)) + 9
    right = (np.sin(t / 17.0) * 18 + size / 2 - 4).astype(int)
    bx = (np.abs((t * 3) % (2 * (size - 8)) - (size - 8)) + 2).astype(int)
    by = (np.abs((t * 2) % (2 * (size - 16)) - (size - 16)) + 10).astype(int)
    score = np.minimum(np.cumsum(rng.random(n) < 0.01), 20)
    for i in range(n):
        obs[i, left[i]:left[i] + 8, 4:6] = 213
        obs[i, right[i]:right[i] + 8, size - 6:size - 4] = 92 + 100
        obs[i, by[i]:by[i] + 2, bx[i]:bx[i] + 2] = 236
        obs[i, 1:6, 10:10 + 2 * score[i]] = 200
    action = rng.integers(0, len(ACTIONS), n)
    action[-1] = 0
    reward = np.zeros(n, np.float32)
    reward[rng.random(n) < 0.01] = 1.0
    reward[-1] = 0.0
    is_first = np.zeros(n, bool)
    is_first[0] = True
    is_last = np.zeros(n, bool)
    is_last[-1] = True
    return {"observation": obs[..., None], "action": action, "reward": reward,
            "discount": np.ones(n, np.float32), "is_first": is_first, "is_last": is_last,
            "is_terminal": is_last.copy()}


def machine_info():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if "model name" in ln), "")
    except OSError:
        pass
    import tensorflow as tf
    import tensorflow_datasets as tfds
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu": cpu, "cpu_count": os.cpu_count(),
            "load_average_at_start": list(os.getloadavg()),
            "numpy": np.__version__, "tensorflow": tf.__version__, "tfds": tfds.__version__}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def rate(fn, min_time=2.0):
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results", "data.json"))
    args = p.parse_args(argv)

    load_avg = os.getloadavg()
    _, t_import = timed(schema._tfds)
    info = machine_info()
    info["load_average_at_start"] = list(load_avg)
    rng = np.random.default_rng(0)
    episodes = [atari_like_episode(rng, args.steps) for _ in range(args.episodes)]
    n_steps = sum(len(e["action"]) for e in episodes)
    tmp = tempfile.mkdtemp(prefix="ditto_bench_data_")
    out = os.path.join(tmp, "ds")
    try:
        writer = EpisodeWriter(out, obs_shape=(64, 64, 1), action_meanings=ACTIONS,
                                    dataset_metadata={"game": "synthetic"})

        def stage():
            for i, e in enumerate(episodes):
                writer.write_episode(e, {"episode_id": i, "policy": "bench"})
        _, t_stage = timed(stage)
        _, t_final = timed(writer.finalize)
        ds_bytes = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))

        loads = []
        for _ in range(5):
            eps, t_load = timed(lambda: reader.load_episodes(out))
            store, t_store = timed(lambda: EpisodeStore.from_episodes(eps))
            loads.append((t_load, t_store))
            assert store.num_steps == n_steps
            del eps
        t_load, t_store = min(loads, key=sum)
        first_load = sum(loads[0])
        median_load = float(np.median([sum(x) for x in loads]))

        srng = np.random.default_rng(0)
        win_rate = rate(lambda: store.sample_windows(srng, 50, 50))
        exp_rate = rate(lambda: store.sample_expert_windows(srng, 16, 15))

        # RL Unplugged-like frames: 84x84 PNGs from TensorFlow's encoder (libpng adaptive
        # filters, so some frames need the OpenCV path), decoded and resized to 64x64.
        tf = schema._tf()
        big = atari_like_episode(np.random.default_rng(1), 1000, size=84)["observation"]
        pngs = [tf.io.encode_png(f).numpy() for f in big]
        rlu_rate = rate(lambda: png._resize_frames(png.decode_png_frames(pngs), (64, 64)),
                        min_time=1.0) * len(pngs)

        res = {
            "dataset": {"episodes": args.episodes, "steps_per_episode": args.steps,
                        "frames": n_steps, "obs_shape": [64, 64, 1],
                        "bytes_on_disk": ds_bytes,
                        "png_bytes_per_frame": round(ds_bytes / n_steps, 1)},
            "tf_import_s": round(t_import, 2),
            "writer_stage_steps_per_s": round(n_steps / t_stage),
            "writer_finalize_steps_per_s": round(n_steps / t_final),
            "writer_total_steps_per_s": round(n_steps / (t_stage + t_final)),
            "read_frames_per_s": round(n_steps / (t_load + t_store)),
            "read_frames_per_s_first_run": round(n_steps / first_load),
            "read_frames_per_s_median_of_5": round(n_steps / median_load),
            "read_load_episodes_s": round(t_load, 3),
            "read_store_build_s": round(t_store, 3),
            "rlu_like_84_decode_resize_64_frames_per_s": round(rlu_rate),
            "windows_50x50_batches_per_s": round(win_rate, 1),
            "expert_windows_16x16_batches_per_s": round(exp_rate, 1),
            "load_average_at_end": list(os.getloadavg()),
            "targets": {"read_frames_per_s": 20000, "windows_50x50_batches_per_s": 50},
            "machine": info,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = [
        ("EpisodeWriter staging", f"{res['writer_stage_steps_per_s']:,} steps/s"),
        ("EpisodeWriter finalize", f"{res['writer_finalize_steps_per_s']:,} steps/s"),
        ("EpisodeWriter total", f"{res['writer_total_steps_per_s']:,} steps/s"),
        ("RLDS -> store (best of 5)", f"{res['read_frames_per_s']:,} frames/s  (target 20,000)"),
        ("RLDS -> store (median of 5)", f"{res['read_frames_per_s_median_of_5']:,} frames/s"),
        ("RLDS -> store (first run)", f"{res['read_frames_per_s_first_run']:,} frames/s"),
        ("RLU-like 84x84 PNG -> 64x64", f"{res['rlu_like_84_decode_resize_64_frames_per_s']:,} "
                                         "frames/s (decode + resize only)"),
        ("sample_windows(50, 50)", f"{res['windows_50x50_batches_per_s']} batches/s  (target 50)"),
        ("sample_expert_windows(16, 15)", f"{res['expert_windows_16x16_batches_per_s']} batches/s"),
        ("PNG bytes per frame", f"{res['dataset']['png_bytes_per_frame']}"),
        ("TF/TFDS import", f"{res['tf_import_s']} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"data pipeline, {n_steps} frames of 64x64x1, {info['cpu_count']} CPUs "
          f"(load avg {load_avg[0]:.2f})")
    for name, val in rows:
        print(f"  {name:<{width}}  {val}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
