"""Did ditto_jax/data/png.py's vectorised PNG decoder pay for itself end to end?

    python benchmarks/png_decode.py [--episodes 20] [--steps 1000] [--reps 5]
        [--out benchmarks/results/png_decode.json]

Writes a synthetic RLDS dataset of Atari-like 64x64 grayscale frames (benchmarks/data.py's
generator; `encode_png`, as `ditto record` writes them) and reads it the way every stage
does (`reader.load_episodes` + `EpisodeStore.from_episodes`), with the reader's frame
decoder swapped between
  - png.py:           `decode_png_frames` as the checkout has it;
  - cv2 loop:         `cv2.imdecode` per frame, one thread (the library, plainly);
  - cv2 thread pool:  `cv2.imdecode` per frame in png.py's thread pool.
Also the decoder alone on the same frames, and RL Unplugged-like 84x84 frames (TF's
encoder) decoded and resized to 64x64. The variants alternate within each repetition, so
load on the shared machine hits them alike; best and median of `--reps` are kept.

results/png_decode.json was measured at commit e57a379, where `decode_png_frames` was
still the hand-vectorised decoder (zlib in threads, PNG filters undone in numpy). It read
the dataset 1.8x faster than the cv2 loop, but that is at most ~1% of the demo pipeline and
it was slower on RL Unplugged's frames, so the code now uses OpenCV (`cv2 thread pool`).
`git checkout e57a379 && python benchmarks/png_decode.py` repeats that comparison.
"""
import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ditto_jax.data import png, reader, schema  # noqa: E402
from ditto_jax.data.writer import EpisodeWriter  # noqa: E402
from ditto_jax.data.store import EpisodeStore  # noqa: E402


def _data_bench():
    spec = importlib.util.spec_from_file_location("bench_data", os.path.join(HERE, "data.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cv2_loop(pngs, channels=None):
    import cv2
    return np.stack([cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_UNCHANGED)[..., None]
                     for p in pngs])


def cv2_pool(pngs, channels=None):
    import cv2

    def work(lo, hi):
        return [cv2.imdecode(np.frombuffer(pngs[i], np.uint8), cv2.IMREAD_UNCHANGED)[..., None]
                for i in range(lo, hi)]
    return np.stack(png._parallel(work, len(pngs)))


DECODERS = {"png.py": png.decode_png_frames, "cv2 loop": cv2_loop,
            "cv2 thread pool": cv2_pool}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default=os.path.join(HERE, "results", "png_decode.json"))
    args = p.parse_args(argv)

    bench = _data_bench()
    load_start = list(os.getloadavg())
    rng = np.random.default_rng(0)
    episodes = [bench.atari_like_episode(rng, args.steps) for _ in range(args.episodes)]
    n = sum(len(e["action"]) for e in episodes)
    tmp = tempfile.mkdtemp(prefix="ditto_bench_png_")
    out = os.path.join(tmp, "ds")
    times = {k: {"read_s": [], "decode_s": [], "rlu_s": []} for k in DECODERS}
    try:
        writer = EpisodeWriter(out, obs_shape=(64, 64, 1), action_meanings=bench.ACTIONS,
                                    dataset_metadata={"game": "synthetic"})
        for i, e in enumerate(episodes):
            writer.write_episode(e, {"episode_id": i, "policy": "bench"})
        writer.finalize()
        pngs = [png.encode_png(f) for f in episodes[0]["observation"]]
        tf = schema._tf()
        big = bench.atari_like_episode(np.random.default_rng(1), 1000, size=84)["observation"]
        rlu = [tf.io.encode_png(f).numpy() for f in big]
        reference = EpisodeStore.from_episodes(reader.load_episodes(out))  # warm-up, and
        for rep in range(args.reps + 1):                                 # the reference
            for name, decode in DECODERS.items():
                reader.decode_png_frames = decode
                try:
                    store, t_read = timed(
                        lambda: EpisodeStore.from_episodes(reader.load_episodes(out)))
                finally:
                    reader.decode_png_frames = png.decode_png_frames
                assert store.num_steps == n
                np.testing.assert_array_equal(store.observation, reference.observation)  # same frames
                frames, t_dec = timed(lambda: decode(pngs))
                np.testing.assert_array_equal(frames, episodes[0]["observation"])
                _, t_rlu = timed(lambda: png._resize_frames(decode(rlu), (64, 64)))
                if rep:  # rep 0 warms every path up
                    for key, t in (("read_s", t_read), ("decode_s", t_dec), ("rlu_s", t_rlu)):
                        times[name][key].append(t)
                del store
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def summary(ts, frames):
        return {"best_s": round(min(ts), 3), "median_s": round(float(np.median(ts)), 3),
                "frames_per_s_best": round(frames / min(ts)),
                "frames_per_s_median": round(frames / float(np.median(ts)))}

    res = {
        "frames": n, "episodes": args.episodes, "obs_shape": [64, 64, 1], "reps": args.reps,
        "end_to_end_read": {k: summary(v["read_s"], n) for k, v in times.items()},
        "decode_only_one_episode": {k: summary(v["decode_s"], len(pngs))
                                    for k, v in times.items()},
        "rlu_like_84_decode_resize_64": {k: summary(v["rlu_s"], len(rlu))
                                         for k, v in times.items()},
        "cpu_count": os.cpu_count(), "load_average_at_start": load_start,
        "load_average_at_end": list(os.getloadavg()),
        "command": "python benchmarks/png_decode.py " + " ".join(argv or sys.argv[1:]),
    }
    print(f"{n} frames of 64x64x1, {os.cpu_count()} CPUs, load {load_start[0]:.2f}; "
          "median over reps (best)")
    for part in ("end_to_end_read", "decode_only_one_episode", "rlu_like_84_decode_resize_64"):
        print(f"  {part}")
        for name, s in res[part].items():
            print(f"    {name:<16} {s['frames_per_s_median']:>8,} frames/s "
                  f"({s['frames_per_s_best']:,}), {s['median_s']} s")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
