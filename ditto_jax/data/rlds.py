"""RLDS episodes on disk: recording (`EpisodeWriter`), reading (`load_episodes`), summaries.

Format. A dataset is a TFDS dataset in the RLDS schema (see `make_dataset_info`): one
example per episode, holding `steps` (a `tfds.features.Dataset`) and episode metadata.
Step t holds o_t, the action a_t taken at o_t, the (unclipped) reward r_t received after
a_t, discount, is_first, is_last, is_terminal. The final step (is_last) holds only the last
observation; its action and reward are 0. An episode with T transitions has T+1 steps.

Reading. Any TFDS dataset in this schema loads: our recordings (a local folder), any folder
`tfds.builder_from_directory` loads, or a prepared TFDS name such as
`rlu_atari_checkpoints_ordered/Pong_run_1` under `data_dir` (never downloaded). Records
are read with `tf.data` (parsing in parallel, whole episodes at a time) and the PNG frames
are decoded per episode in numpy (see `decode_png_frames`); nothing goes step by step
through Python.

TensorFlow and TFDS are imported lazily so that importing this module is cheap.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import struct
import time
import zlib
from typing import Any, Sequence

import numpy as np

from ditto_jax.errors import DittoError

# ---------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------

DATASET_NAME = "ditto_episodes"
DATASET_VERSION = "1.0.0"
FORMAT = "ditto_jax.rlds/1"
STAGING = ".staging"
RECORDING_JSON = "recording.json"

STEP_FIELDS = ("observation", "action", "reward", "discount", "is_first", "is_last",
               "is_terminal")
# dtype on disk (TFDS) for our recordings.
STEP_DTYPES = {
    "observation": np.uint8, "action": np.int64, "reward": np.float32,
    "discount": np.float32, "is_first": np.bool_, "is_last": np.bool_,
    "is_terminal": np.bool_,
}
# Episode metadata of our recordings: name -> (numpy dtype or str, default).
EPISODE_METADATA = {
    "episode_id": (np.int64, None),        # required
    "episode_return": (np.float32, None),  # default: sum of rewards
    "episode_length": (np.int64, None),    # default: T (transitions)
    "policy": (str, None),    # default: dataset_metadata's value, else ""
    "game": (str, None),
    "protocol": (str, None),
    "seed": (np.int64, -1),
}


def _tf():
    """Imports TensorFlow quietly, hidden from accelerators (JAX owns them)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    try:
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):
        pass  # already initialised; tensorflow-cpu has no GPU anyway
    try:
        import absl.logging
        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass
    return tf


def _tfds():
    _tf()
    import tensorflow_datasets as tfds
    return tfds


def make_dataset_config(obs_shape):
    """The `tfds.rlds.rlds_base.DatasetConfig` of our recordings."""
    tfds = _tfds()
    from tensorflow_datasets.rlds import rlds_base
    obs_shape = tuple(int(s) for s in obs_shape)
    return rlds_base.DatasetConfig(
        name="ditto",
        overall_description=(
            "Atari episodes recorded by ditto_jax (RLDS). Step t holds o_t, the action a_t "
            "taken at o_t (index into the recorded action set, see metadata "
            "`action_meanings`), the unclipped reward after a_t, discount, is_first, "
            "is_last, is_terminal. The final step holds only the last observation."),
        observation_info=tfds.features.Image(shape=obs_shape, dtype=np.uint8,
                                             encoding_format="png"),
        action_info=tfds.features.Scalar(
            dtype=np.int64, doc="Index into the recorded action set."),
        reward_info=tfds.features.Scalar(dtype=np.float32, doc="Unclipped reward."),
        discount_info=np.float32,
        episode_metadata_info={
            "episode_id": np.int64,
            "episode_return": tfds.features.Scalar(
                dtype=np.float32, doc="Sum of the unclipped rewards."),
            "episode_length": tfds.features.Scalar(
                dtype=np.int64, doc="Number of transitions (steps minus one)."),
            "policy": tfds.features.Text(),
            "game": tfds.features.Text(),
            "protocol": tfds.features.Text(),
            "seed": np.int64,
        },
    )


def make_dataset_info(data_dir, *, obs_shape, action_meanings, dataset_metadata=None):
    """`tfds.core.DatasetInfo` for our recordings, writing into `data_dir`.

    The dataset-level metadata (`metadata.json`, a `tfds.core.MetadataDict`) records
    `action_meanings`, `num_actions`, `obs_shape`, the format tag and everything in
    `dataset_metadata` (game, protocol, policy, ...).
    """
    _tfds()
    from tensorflow_datasets.core import dataset_info as dataset_info_lib
    from tensorflow_datasets.rlds import rlds_base
    meta = _dataset_level_metadata(obs_shape, action_meanings, dataset_metadata)
    identity = dataset_info_lib.DatasetIdentity(
        name=DATASET_NAME, version=DATASET_VERSION, data_dir=os.fspath(data_dir),
        module_name=__name__)
    return rlds_base.build_info(make_dataset_config(obs_shape), identity, meta)


def _dataset_level_metadata(obs_shape, action_meanings, dataset_metadata):
    meta = dict(dataset_metadata or {})
    meta.update(
        format=FORMAT,
        action_meanings=[str(a) for a in action_meanings],
        num_actions=len(action_meanings),
        obs_shape=[int(s) for s in obs_shape],
    )
    try:
        json.dumps(meta)
    except TypeError as e:
        raise DittoError("Dataset metadata must be JSON-serialisable",
                         field="dataset_metadata", got=str(e)) from None
    return meta


# ---------------------------------------------------------------------------------------
# PNG
# ---------------------------------------------------------------------------------------

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_DECODE_CHUNK = 256  # frames per decode task
_pool = None


def encode_png(frame: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W, C) frame, C in {1, 3}.

    Every row uses the 'Up' filter: it compresses Atari frames about as well as adaptive
    filtering, and `decode_png_frames` undoes it for a whole episode with one vectorised
    add per image row.
    """
    import cv2
    img = frame[..., 0] if frame.shape[-1] == 1 else frame[..., ::-1]  # cv2 wants BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img),
                           [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP])
    if not ok:  # pragma: no cover
        raise DittoError("Could not PNG-encode a frame", field="observation",
                         got=f"shape {frame.shape}, dtype {frame.dtype}")
    return buf.tobytes()


def _png_header(data: bytes):
    """(height, width, channels) for an 8-bit non-interlaced PNG, else None."""
    if data[:8] != _PNG_SIG or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 8 or interlace or color not in _PNG_CHANNELS:
        return None
    return h, w, _PNG_CHANNELS[color]


def _png_inflate(data: bytes) -> bytes:
    """The decompressed (still filtered) scanlines of a PNG."""
    n = int.from_bytes(data[33:37], "big")
    if data[37:41] == b"IDAT" and data[45 + n:49 + n] == b"IEND":  # one IDAT chunk
        return zlib.decompress(data[41:41 + n])
    pos, idat, end = 8, [], len(data)
    while pos < end:
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat.append(data[pos + 8:pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    return zlib.decompress(b"".join(idat))


def _decode_png_slow(data: bytes) -> np.ndarray:
    import cv2
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("cv2 could not decode the PNG")
    if img.dtype != np.uint8:
        raise ValueError(f"PNG is {img.dtype}, expected 8-bit")
    if img.ndim == 2:
        return img[..., None]
    if img.shape[-1] == 3:
        return img[..., ::-1]
    if img.shape[-1] == 4:
        return img[..., [2, 1, 0, 3]]
    return img


def _inflate_range(lo, hi, pngs, header):
    """Decompressed scanlines of frames lo..hi; None for a frame with another header."""
    return [_png_inflate(pngs[i]) if pngs[i][16:29] == header else None
            for i in range(lo, hi)]


def _decode_slow_range(lo, hi, pngs, which):
    return [_decode_png_slow(pngs[i]) for i in which[lo:hi]]


def _parallel(fn, n, *args):
    """Runs fn(lo, hi, *args) over chunks of range(n) in a small thread pool (zlib and
    OpenCV release the GIL); returns the concatenated results in order."""
    global _pool
    if n <= _DECODE_CHUNK or (os.cpu_count() or 1) < 2:
        return fn(0, n, *args)
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor
        _pool = ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="frames")
    futures = [_pool.submit(fn, lo, min(lo + _DECODE_CHUNK, n), *args)
               for lo in range(0, n, _DECODE_CHUNK)]
    return [x for f in futures for x in f.result()]


def decode_png_frames(pngs: Sequence[bytes], channels: int | None = None) -> np.ndarray:
    """Decodes a sequence of same-size PNGs into one uint8 (N, H, W, C) array.

    Fast path (8-bit, non-interlaced, rows filtered with None, Sub or Up; `encode_png`
    writes Up): zlib-decompress each frame (in a few threads: zlib releases the GIL),
    then undo the filters for all frames at once: Sub rows with a wrapping uint8 cumsum,
    Up rows with one vectorised add per image row. Frames using Average/Paeth (other
    encoders' adaptive filtering) are decoded by OpenCV. Raises ValueError on bad data.
    """
    n = len(pngs)
    if n == 0:
        raise ValueError("no frames")
    first = _png_header(pngs[0])
    if first is None:
        out = np.stack([_decode_png_slow(p) for p in pngs])
    else:
        h, w, c = first
        stride = w * c + 1
        raws = _parallel(_inflate_range, n, pngs, pngs[0][16:29])
        size = h * stride
        odd = [i for i, r in enumerate(raws) if r is None or len(r) != size]
        for i in odd:
            if raws[i] is not None:
                raise ValueError(f"frame {i}: PNG data has the wrong size")
            raws[i] = bytes(size)  # decoded below by OpenCV
        rows = np.frombuffer(b"".join(raws), np.uint8).reshape(n, h, stride)
        filt = rows[:, :, 0]
        bad = np.any(filt > 2, axis=1)  # Average/Paeth rows: OpenCV decodes these frames
        bad[odd] = True
        out = np.ascontiguousarray(rows[:, :, 1:]).reshape(n, h, w, c)
        if filt.any():
            sub = filt == 1
            if sub.any():  # Sub: each byte adds the same channel of the pixel to its left
                fi, ri = np.nonzero(sub)
                out[fi, ri] = np.cumsum(out[fi, ri], axis=1, dtype=np.uint8)
            up = filt == 2
            all_up = up.all(axis=0)
            for r in range(1, h):  # Up: each row adds the (decoded) row above
                if all_up[r]:
                    out[:, r] += out[:, r - 1]
                elif up[:, r].any():
                    m = up[:, r]
                    out[m, r] += out[m, r - 1]
        which = np.flatnonzero(bad)
        for i, img in zip(which, _parallel(_decode_slow_range, len(which), pngs, which)):
            if img.shape != (h, w, c):
                raise ValueError(f"frame {i} has shape {img.shape}, frame 0 has {(h, w, c)}")
            out[i] = img
    if channels is not None and out.shape[-1] != channels:
        raise ValueError(f"frames have {out.shape[-1]} channels, expected {channels}")
    return out


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------

def _is_finished_dataset(path):
    return os.path.isfile(os.path.join(path, "dataset_info.json"))


def _atomic_write_bytes(path, write_fn):
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class EpisodeWriter:
    """Crash-safe recording of RLDS episodes into a TFDS dataset folder `out_dir`.

    Each finished episode is staged immediately and atomically (temp file + os.replace)
    as one compressed `.npz` in `out_dir/.staging/` (step fields as arrays of length T+1,
    plus metadata). `finalize()` converts all staged episodes into a TFDS dataset in
    `out_dir` and removes the staging folder. Only `finalize` writes `dataset_info.json`
    (and it moves that file in last), so an interrupted or failed recording never looks
    complete.

    - `out_dir` is a finished dataset: DittoError (already exists; with resume=True the
      error says it is complete).
    - `out_dir` has a staging folder: DittoError unless resume=True, which continues it
      (staged episodes kept; `recording_args` holds the stored arguments to compare).
    - `out_dir` exists with other content: DittoError (never overwritten).
    """

    def __init__(self, out_dir, *, obs_shape, action_meanings, dataset_metadata=None,
                 resume=False):
        self.out_dir = os.fspath(out_dir)
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.action_meanings = [str(a) for a in action_meanings]
        self.dataset_metadata = dict(dataset_metadata or {})
        if len(self.obs_shape) != 3 or self.obs_shape[-1] not in (1, 3):
            raise DittoError("Observation shape must be (H, W, C) with C 1 or 3",
                             field="obs_shape", got=self.obs_shape)
        if not self.action_meanings:
            raise DittoError("The action set is empty", field="action_meanings",
                             expected="at least one action")
        _dataset_level_metadata(self.obs_shape, self.action_meanings, self.dataset_metadata)
        self.staging_dir = os.path.join(self.out_dir, STAGING)
        record = {
            "format": FORMAT,
            "obs_shape": list(self.obs_shape),
            "action_meanings": self.action_meanings,
            "dataset_metadata": self.dataset_metadata,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if _is_finished_dataset(self.out_dir):
            if resume:
                raise DittoError(
                    "The dataset already exists and is complete (finalised); there is "
                    "nothing to resume. Use another --out", path=self.out_dir)
            raise DittoError(
                "A dataset already exists here; refusing to overwrite it. Use another "
                "--out (--resume only continues an unfinished recording)",
                path=self.out_dir)
        if os.path.isdir(self.staging_dir):
            if not resume:
                raise DittoError(
                    "An unfinished recording already exists here. Use --resume to "
                    "continue it, or another --out", path=self.out_dir)
            stored = self._read_recording_json()
            for key, want in (("obs_shape", list(self.obs_shape)),
                              ("action_meanings", self.action_meanings)):
                if stored.get(key) != want:
                    raise DittoError("--resume must repeat the original recording's "
                                     "arguments", path=self.out_dir, field=key,
                                     expected=stored.get(key), got=want)
            self._stored = stored
            # The dataset describes the recording as it was started.
            self.dataset_metadata = dict(stored.get("dataset_metadata") or {})
            for name in os.listdir(self.staging_dir):  # leftovers of an interrupted write
                if ".tmp" in name:
                    os.remove(os.path.join(self.staging_dir, name))
        else:
            if os.path.isdir(self.out_dir) and os.listdir(self.out_dir):
                raise DittoError(
                    "The output folder already exists and is not empty; refusing to "
                    "overwrite it. Use another --out", path=self.out_dir)
            if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
                raise DittoError("The output path already exists and is a file",
                                 path=self.out_dir, expected="a new folder")
            os.makedirs(self.staging_dir, exist_ok=True)
            _atomic_write_bytes(os.path.join(self.staging_dir, RECORDING_JSON),
                                lambda f: f.write(json.dumps(record, indent=1).encode()))
            self._stored = record

    # -- staging ------------------------------------------------------------------------

    def _read_recording_json(self):
        path = os.path.join(self.staging_dir, RECORDING_JSON)
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise DittoError("The unfinished recording's settings cannot be read",
                             path=path, got=str(e)) from None

    @property
    def recording_args(self) -> dict:
        """The stored recording arguments: `dataset_metadata` plus obs_shape and
        action_meanings, as written when the recording started (compare on resume)."""
        s = self._stored
        return {**s.get("dataset_metadata", {}), "obs_shape": s.get("obs_shape"),
                "action_meanings": s.get("action_meanings")}

    def _staged_files(self):
        out = []
        if os.path.isdir(self.staging_dir):
            for name in os.listdir(self.staging_dir):
                m = re.fullmatch(r"episode_(\d+)\.npz", name)
                if m:
                    out.append((int(m.group(1)), os.path.join(self.staging_dir, name)))
        return sorted(out)

    @property
    def staged_episode_ids(self) -> list[int]:
        return [i for i, _ in self._staged_files()]

    @property
    def num_staged(self) -> int:
        return len(self._staged_files())

    def _validate(self, steps, metadata):
        if not isinstance(steps, dict):
            raise DittoError("Episode steps must be a dict of arrays", field="steps",
                             expected=f"keys {list(STEP_FIELDS)}", got=type(steps).__name__)
        missing = [k for k in STEP_FIELDS if k not in steps]
        extra = [k for k in steps if k not in STEP_FIELDS]
        if missing or extra:
            raise DittoError("Episode steps have the wrong fields",
                             field=(missing or extra)[0], expected=f"keys {list(STEP_FIELDS)}",
                             got=f"keys {sorted(steps)}")
        obs = np.asarray(steps["observation"])
        n = len(obs) if obs.ndim else 0
        if obs.dtype != np.uint8 or obs.shape[1:] != self.obs_shape:
            raise DittoError("Observation frames have the wrong shape or dtype",
                             field="observation",
                             expected=f"uint8 (T+1, {', '.join(map(str, self.obs_shape))})",
                             got=f"{obs.dtype} {obs.shape}")
        if n < 2:
            raise DittoError("An episode needs at least one transition (two steps)",
                             field="observation", expected="T+1 >= 2 frames", got=n)
        out = {"observation": obs}
        kinds = {"action": "iu", "reward": "fiu", "discount": "fiu",
                 "is_first": "b", "is_last": "b", "is_terminal": "b"}
        for k, ok_kinds in kinds.items():
            a = np.asarray(steps[k])
            want = np.dtype(STEP_DTYPES[k]).name
            if a.shape != (n,) or a.dtype.kind not in ok_kinds:
                raise DittoError("Episode step field has the wrong shape or dtype", field=k,
                                 expected=f"{want} of shape ({n},)",
                                 got=f"{a.dtype} {a.shape}")
            out[k] = a.astype(STEP_DTYPES[k])
        act = out["action"]
        num = len(self.action_meanings)
        if act.min() < 0 or act.max() >= num:
            raise DittoError("Action outside the recorded action set", field="action",
                             expected=f"integers in [0, {num})",
                             got=f"min {act.min()}, max {act.max()}")
        first, last = out["is_first"], out["is_last"]
        if not first[0] or first[1:].any():
            raise DittoError("is_first must be True at step 0 only", field="is_first")
        if not last[-1] or last[:-1].any():
            raise DittoError("is_last must be True at the final step only", field="is_last")
        if out["is_terminal"][:-1].any():
            raise DittoError("is_terminal can only be True at the final step",
                             field="is_terminal")
        # Episode metadata.
        if not isinstance(metadata, dict) or "episode_id" not in metadata:
            raise DittoError("Episode metadata needs an episode_id", field="episode_id",
                             expected="a non-negative integer")
        unknown = [k for k in metadata if k not in EPISODE_METADATA]
        if unknown:
            raise DittoError("Unknown episode metadata field", field=unknown[0],
                             expected=f"one of {list(EPISODE_METADATA)}")
        meta = {}
        for k, (dtype, default) in EPISODE_METADATA.items():
            v = metadata.get(k, default)
            if v is None:
                v = {"episode_return": float(out["reward"].sum()),
                     "episode_length": n - 1}.get(k)
            if v is None and dtype is str:
                v = self.dataset_metadata.get(k, "")
            try:
                meta[k] = str(v) if dtype is str else np.asarray(v).astype(dtype).item()
            except (TypeError, ValueError):
                raise DittoError("Episode metadata has the wrong type", field=k,
                                 expected=np.dtype(dtype).name if dtype is not str
                                 else "a string", got=repr(v)) from None
        if meta["episode_id"] < 0:
            raise DittoError("episode_id must be non-negative", field="episode_id",
                             got=meta["episode_id"])
        return out, meta

    def write_episode(self, steps: dict, metadata: dict) -> str:
        """Validates one finished episode and stages it atomically; returns its file."""
        if not os.path.isdir(self.staging_dir):
            raise DittoError("This recording was already finalised", path=self.out_dir)
        arrays, meta = self._validate(steps, metadata)
        path = os.path.join(self.staging_dir, f"episode_{meta['episode_id']:08d}.npz")
        if os.path.exists(path):
            raise DittoError("This episode_id is already staged; refusing to overwrite it",
                             path=path, field="episode_id", got=meta["episode_id"])
        payload = dict(arrays)
        payload["metadata_json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        _atomic_write_bytes(path, lambda f: np.savez_compressed(f, **payload))
        return path

    @staticmethod
    def read_staged(path):
        """(steps, metadata) of a staged episode file."""
        try:
            with np.load(path) as z:
                steps = {k: z[k] for k in STEP_FIELDS}
                meta = json.loads(z["metadata_json"].tobytes().decode())
        except (OSError, ValueError, KeyError, zlib.error) as e:
            raise DittoError("A staged episode file is unreadable (delete it and "
                             "record that episode again)", path=path, got=str(e)) from None
        return steps, meta

    # -- finalize -----------------------------------------------------------------------

    def finalize(self, split="train", *, max_episodes_per_shard=None) -> str:
        """Writes every staged episode into a TFDS dataset in `out_dir`; returns out_dir.

        The TFDS files are built in `.staging/_build/` with `tfds.core.SequentialWriter`,
        moved into `out_dir` (dataset_info.json last), then the staging folder is removed.
        A crash anywhere before the last move leaves a resumable recording.
        """
        tfds = _tfds()
        if not os.path.isdir(self.staging_dir):
            raise DittoError("This recording was already finalised", path=self.out_dir)
        files = self._staged_files()
        if not files:
            raise DittoError("No finished episodes to write", path=self.out_dir,
                             expected="at least one recorded episode")
        build = os.path.join(self.staging_dir, "_build")
        if os.path.exists(build):
            shutil.rmtree(build)
        os.makedirs(build)
        info = make_dataset_info(build, obs_shape=self.obs_shape,
                                 action_meanings=self.action_meanings,
                                 dataset_metadata=self.dataset_metadata)
        if max_episodes_per_shard is None:
            # ~64 MB shards: several shards let readers interleave and report bad files.
            _, first_path = files[0]
            per_ep = max(os.path.getsize(first_path), 1)
            max_episodes_per_shard = int(np.clip(64e6 // per_ep, 1, 1000))
        writer = tfds.core.SequentialWriter(info, max_examples_per_shard=max_episodes_per_shard)
        writer.initialize_splits([split])
        # add_examples rewrites the split metadata on every call, so hand it episodes in
        # batches (bounded in memory by the PNG bytes held).
        batch, batch_bytes = [], 0
        for _, path in files:
            steps, meta = self.read_staged(path)
            example = dict(meta)
            example["steps"] = {k: steps[k] for k in STEP_FIELDS if k != "observation"}
            pngs = [encode_png(f) for f in steps["observation"]]
            example["steps"]["observation"] = pngs
            batch.append(example)
            batch_bytes += sum(map(len, pngs))
            if batch_bytes > 32e6 or len(batch) >= max_episodes_per_shard:
                writer.add_examples({split: batch})
                batch, batch_bytes = [], 0
        if batch:
            writer.add_examples({split: batch})
        writer.close_all()
        # Move the dataset into place; dataset_info.json last marks it complete. Files
        # left in out_dir by an earlier finalize that crashed midway are ours: drop them.
        for name in os.listdir(self.out_dir):
            if name.startswith(DATASET_NAME + "-") or name in ("features.json",
                                                               "metadata.json"):
                os.remove(os.path.join(self.out_dir, name))
        names = sorted(os.listdir(build))
        for name in names:
            if name != "dataset_info.json":
                os.replace(os.path.join(build, name), os.path.join(self.out_dir, name))
        os.replace(os.path.join(build, "dataset_info.json"),
                   os.path.join(self.out_dir, "dataset_info.json"))
        shutil.rmtree(self.staging_dir)
        return self.out_dir


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class Episode:
    """One episode as numpy arrays of T+1 steps (see the module docstring)."""
    observation: np.ndarray  # uint8 (T+1, H, W, C)
    action: np.ndarray       # int32 (T+1,); 0 at the final step
    reward: np.ndarray       # float32 (T+1,); 0 at the final step
    discount: np.ndarray     # float32 (T+1,)
    is_first: np.ndarray     # bool (T+1,)
    is_last: np.ndarray      # bool (T+1,)
    is_terminal: np.ndarray  # bool (T+1,)
    metadata: dict = dataclasses.field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        """T+1, including the final observation-only step."""
        return len(self.action)

    @property
    def length(self) -> int:
        """T, the number of transitions."""
        return len(self.action) - 1


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which episodes to load, applied in this order:

    - `checkpoints=(a, b)`: only checkpoints a..b inclusive (the `checkpoint_XX` splits
      when the dataset has them, else the episodes' `checkpoint_id` metadata);
    - `top=N`: the N episodes with the highest `episode_return` (ties: dataset order),
      returned in dataset order; or `first=N`: the first N in dataset order.
    """
    first: int | None = None
    top: int | None = None
    checkpoints: tuple[int, int] | None = None

    def __post_init__(self):
        if self.first is not None and self.top is not None:
            raise DittoError("Choose either first-N or top-N episodes, not both",
                             field="selection")
        for name in ("first", "top"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
                raise DittoError("An episode count must be a positive integer",
                                 field=f"selection.{name}", got=v)
        if self.checkpoints is not None:
            a, b = self.checkpoints
            if not (0 <= int(a) <= int(b)):
                raise DittoError("A checkpoint range needs 0 <= first <= last",
                                 field="selection.checkpoints", got=self.checkpoints)

    @classmethod
    def parse(cls, text: str | None) -> "Selection | None":
        """From 'first:N', 'top:N', 'checkpoints:A-B', comma-separated; None/'' -> None."""
        if not text:
            return None
        kw = {}
        for part in str(text).split(","):
            key, _, val = part.strip().partition(":")
            try:
                if key in ("first", "top"):
                    kw[key] = int(val)
                elif key in ("checkpoints", "checkpoint"):
                    a, _, b = val.partition("-")
                    kw["checkpoints"] = (int(a), int(b or a))
                else:
                    raise ValueError
            except ValueError:
                raise DittoError("Cannot parse the episode selection", field="selection",
                                 expected="first:N, top:N or checkpoints:A-B "
                                          "(comma-separated)", got=text) from None
        return cls(**kw)


@dataclasses.dataclass
class _Source:
    builder: Any
    path: str          # the dataset folder, for messages
    name: str          # what the user passed
    metadata: dict     # dataset-level metadata (our metadata.json), may be empty


def _find_dataset_dirs(path, depth=2):
    """Folders under `path` (up to `depth` levels) holding a dataset_info.json."""
    found = []
    if depth < 0 or not os.path.isdir(path):
        return found
    if _is_finished_dataset(path):
        return [path]
    for name in sorted(os.listdir(path)):
        if not name.startswith("."):
            found += _find_dataset_dirs(os.path.join(path, name), depth - 1)
    return found


def _version_key(path):
    try:
        return tuple(int(x) for x in os.path.basename(path).split("."))
    except ValueError:
        return (-1,)


def _builder_from_dir(path, shown):
    tfds = _tfds()
    try:
        return tfds.builder_from_directory(path)
    except Exception as e:  # TFDS raises many types for broken metadata
        raise DittoError("The dataset's TFDS metadata cannot be read (is it a complete "
                         "TFDS dataset?)", path=shown,
                         got=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from None


def _read_metadata_json(path):
    p = os.path.join(path, "metadata.json")
    if os.path.isfile(p):
        try:
            with open(p) as f:
                meta = json.load(f)
            return meta if isinstance(meta, dict) else {}
        except (OSError, ValueError):
            return {}
    return {}


_LOOKS_LIKE_PATH = re.compile(r"^(/|\./|\.\./|~)")


def _resolve(source, data_dir=None) -> _Source:
    source = os.fspath(source)
    local = os.path.expanduser(source)
    if os.path.exists(local):
        if not os.path.isdir(local):
            raise DittoError("Not a TFDS dataset folder (this is a file)", path=local,
                             expected="a folder containing dataset_info.json")
        if os.path.isdir(os.path.join(local, STAGING)) and not _is_finished_dataset(local):
            raise DittoError("This recording is unfinished (it has a .staging folder and "
                             "no dataset_info.json). Finish it with `ditto record ... "
                             "--resume`", path=local)
        dirs = _find_dataset_dirs(local)
        if not dirs:
            raise DittoError("Not a TFDS dataset: no dataset_info.json found", path=local,
                             expected="a folder written by `ditto record` or a prepared "
                                      "TFDS dataset version folder")
        if len(dirs) > 1:
            parents = {os.path.dirname(d) for d in dirs}
            if len(parents) != 1:
                raise DittoError("Several datasets found; point at one of them", path=local,
                                 got=", ".join(dirs[:5]))
            dirs = [max(dirs, key=_version_key)]  # versions of one dataset: newest
        path = dirs[0]
        builder = _builder_from_dir(path, path)
        return _Source(builder, path, source, _read_metadata_json(path))
    if data_dir and source.count("/") > 1 and not _LOOKS_LIKE_PATH.match(source) and \
            os.path.isdir(os.path.join(os.path.expanduser(data_dir), source)):
        return _resolve(os.path.join(os.path.expanduser(data_dir), source))  # name/cfg/ver
    if _LOOKS_LIKE_PATH.match(source) or source.count("/") > 1 or os.sep != "/" and \
            os.sep in source:
        raise DittoError("Dataset not found", path=local,
                         expected="an existing dataset folder or a TFDS name like "
                                  "rlu_atari_checkpoints_ordered/Pong_run_1")
    # A TFDS name: never download; use what is prepared under data_dir.
    tfds = _tfds()
    shown_dir = data_dir or "~/tensorflow_datasets"
    prepared = os.path.join(os.path.expanduser(data_dir), source) if data_dir else None
    try:
        builder = tfds.builder(source, data_dir=data_dir)
    except Exception as e:  # DatasetNotFoundError, unknown config, ...
        if prepared and _find_dataset_dirs(prepared, depth=1):
            return _resolve(prepared)  # a prepared copy TFDS has no builder code for
        raise DittoError(
            "Dataset not found: not a local folder, and TFDS does not know this name",
            path=source, expected="a dataset folder, or a TFDS name such as "
                                  "rlu_atari_checkpoints_ordered/Pong_run_1",
            got=f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    bdir = os.fspath(builder.data_dir)
    if not _is_finished_dataset(bdir):
        # Another prepared version of the same dataset/config is fine too.
        others = _find_dataset_dirs(os.path.dirname(bdir), depth=1)
        if not others:
            raise DittoError(
                f"TFDS dataset {source} is not prepared under the data dir (this tool "
                "never downloads). Prepare it there first, e.g. copy it from "
                "gs://tfds-data/datasets or run `tfds build`, then pass --data-dir",
                path=bdir, expected=f"dataset_info.json in {bdir}",
                got=f"data dir {shown_dir}")
        cfg = getattr(builder, "builder_config", None)
        bdir = max(others, key=_version_key)
        builder = _builder_from_dir(bdir, bdir)
    else:
        cfg = getattr(builder, "builder_config", None)
    meta = _read_metadata_json(bdir)
    if cfg is not None and getattr(cfg, "game", None) and "game" not in meta:
        meta = {**meta, "game": cfg.game}  # RL Unplugged configs name the game
    return _Source(builder, bdir, source, meta)


def read_dataset_metadata(source, *, data_dir=None) -> dict:
    """Dataset-level metadata (action_meanings, game, protocol, obs_shape, ...); {} if none.

    For RL Unplugged names, `game` comes from the builder config.
    """
    return dict(_resolve(source, data_dir).metadata)


# -- splits and records ---------------------------------------------------------------

_CKPT = re.compile(r"^checkpoint_(\d+)$")


def _split_names(src: _Source, split, selection):
    """Ordered list of split names to read."""
    available = list(src.builder.info.splits.keys())
    if not available:
        raise DittoError("The dataset has no splits (empty or unfinished)", path=src.path)
    ckpt_splits = {int(m.group(1)): s for s in available if (m := _CKPT.match(s))}
    names = None
    if split:
        names = []
        for part in str(split).split(","):
            part = part.strip()
            if ":" in part:
                a, _, b = part.partition(":")
                ma, mb = _CKPT.match(a.strip()), _CKPT.match(b.strip())
                if not (ma and mb):
                    raise DittoError("A split range must name two checkpoints", field="split",
                                     expected="e.g. checkpoint_40:checkpoint_49", got=part)
                lo, hi = int(ma.group(1)), int(mb.group(1))
                rng = [ckpt_splits[i] for i in range(lo, hi + 1) if i in ckpt_splits]
                if not rng:
                    raise DittoError("No split in this checkpoint range", path=src.path,
                                     field="split", got=part,
                                     expected=f"splits among {_short_list(available)}")
                names += rng
            elif part in available:
                names.append(part)
            else:
                raise DittoError("Unknown split", path=src.path, field="split", got=part,
                                 expected=f"one of {_short_list(available)}")
    if selection is not None and selection.checkpoints is not None and ckpt_splits:
        lo, hi = selection.checkpoints
        wanted = [ckpt_splits[i] for i in sorted(ckpt_splits) if lo <= i <= hi]
        names = wanted if names is None else [n for n in names if n in wanted]
        if not names:
            raise DittoError("No episodes selected: no checkpoint split in the range",
                             path=src.path, field="selection.checkpoints",
                             expected=f"splits among {_short_list(available)}",
                             got=f"{lo}..{hi}")
    if names is None:
        if "train" in available:
            names = ["train"]
        elif ckpt_splits:
            names = [ckpt_splits[i] for i in sorted(ckpt_splits)]
        else:
            names = sorted(available)
    return names


def _short_list(items, n=6):
    items = list(items)
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


@dataclasses.dataclass
class _Ref:
    split: str
    file: str
    index: int     # record index in the file
    file_len: int  # records in the file (from the split metadata)


def _record_refs(src: _Source, split_names):
    """All records of the splits in order, from the TFDS split metadata (no reading)."""
    fmt = src.builder.info.file_format
    if fmt is not None and getattr(fmt, "value", fmt) != "tfrecord":
        raise DittoError("Unsupported TFDS file format", path=src.path, field="file_format",
                         expected="tfrecord", got=getattr(fmt, "value", fmt))
    refs = []
    for name in split_names:
        info = src.builder.info.splits[name]
        try:
            paths = [os.fspath(p) for p in info.filepaths]
        except ValueError:
            raise DittoError("The split lists no files", path=src.path, field=name) from None
        lengths = list(info.shard_lengths)
        if len(paths) != len(lengths):
            raise DittoError("The split's file list does not match its metadata",
                             path=src.path, field=name)
        for path, n in zip(paths, lengths):
            if not os.path.exists(path):
                raise DittoError("A dataset file is missing", path=path,
                                 expected=f"{n} episode(s) of split {name}")
            refs += [_Ref(name, path, i, n) for i in range(n)]
    return refs


def _check_features(src: _Source, *, grayscale_expected=True, expected_obs_shape=None,
                    resize=None):
    """Validates the feature spec; returns (obs_shape_on_disk, obs_shape_after_resize)."""
    tfds = _tfds()
    feats = src.builder.info.features
    if "steps" not in feats:
        raise DittoError("Not an RLDS dataset: no 'steps' feature", path=src.path,
                         field="steps")
    steps = feats["steps"]
    inner = getattr(steps, "feature", None)
    keys = list(inner.keys()) if inner is not None and hasattr(inner, "keys") else []
    for k in ("observation", "action"):
        if k not in keys:
            raise DittoError("The RLDS steps lack a required field", path=src.path,
                             field=f"steps/{k}", expected=f"fields {list(STEP_FIELDS)}",
                             got=f"fields {keys}")
    obs = inner["observation"]
    if not isinstance(obs, tfds.features.Image):
        raise DittoError("Observations must be images", path=src.path,
                         field="steps/observation", expected="tfds.features.Image",
                         got=type(obs).__name__)
    shape = tuple(obs.shape)
    dtype = np.dtype(obs.np_dtype)
    if dtype != np.uint8:
        raise DittoError("Observation frames have the wrong dtype", path=src.path,
                         field="steps/observation", expected="uint8", got=dtype.name)
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise DittoError("Observation frames have the wrong shape", path=src.path,
                         field="steps/observation", expected="(H, W, 1)", got=shape)
    if grayscale_expected and shape[-1] != 1:
        raise DittoError("Observation frames are RGB, but grayscale frames are expected",
                         path=src.path, field="steps/observation",
                         expected="(H, W, 1) grayscale", got=f"{shape} RGB")
    out_shape = shape
    if resize is not None:
        rh, rw = (int(resize), int(resize)) if np.isscalar(resize) else map(int, resize)
        out_shape = (rh, rw, shape[-1])
    if expected_obs_shape is not None and tuple(expected_obs_shape) != out_shape:
        raise DittoError("Observation frames have the wrong shape", path=src.path,
                         field="steps/observation", expected=tuple(expected_obs_shape),
                         got=out_shape if resize is None else
                         f"{out_shape} after resizing {shape}")
    return shape, out_shape


def _parse_spec(src: _Source, *, with_steps=True, with_observation=True):
    """tf.io.parse_single_example spec over a subset of the serialized features."""
    from tensorflow_datasets.core import example_parser
    serialized = dict(src.builder.info.features.get_serialized_info())
    if not with_steps:
        serialized.pop("steps")
    elif not with_observation:
        serialized["steps"] = {k: v for k, v in serialized["steps"].items()
                               if k != "observation"}
    # Only scalar episode metadata (nested dicts of metadata are skipped).
    for k in list(serialized):
        v = serialized[k]
        if k != "steps" and (isinstance(v, dict) or tuple(v.shape) != ()):
            serialized.pop(k)
    return example_parser.ExampleParser(serialized)


def _read_records(src: _Source, refs, parser, *, progress_bar=None):
    """Yields (ref, parsed numpy dict) for the wanted records `refs`, in order.

    One tf.data pipeline reads the files that hold wanted records in sequence (records
    are parsed in parallel, whole episodes at a time). TF errors (truncated or corrupt
    files) become DittoErrors naming the file: on error the files are re-scanned one by
    one to find it.
    """
    tf = _tf()
    groups = _group_by_file(refs)
    files = [path for path, _ in groups]
    offsets = np.cumsum([0] + [rs[0].file_len for _, rs in groups])
    wanted = [(int(offsets[k]) + r.index, r) for k, (_, rs) in enumerate(groups) for r in rs]
    last = wanted[-1][0]
    ds = tf.data.TFRecordDataset(files, buffer_size=8 << 20).take(last + 1)
    if len(wanted) != last + 1:  # a subset: skip the others before parsing them
        mask = np.zeros(last + 1, bool)
        mask[[g for g, _ in wanted]] = True
        mask = tf.constant(mask)
        ds = ds.enumerate().filter(lambda i, _: tf.gather(mask, i)).map(lambda i, x: x)
    ds = ds.map(parser.parse_example, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True).prefetch(2)
    it = iter(ds)
    got = 0
    while True:
        try:
            ex = next(it)
        except StopIteration:
            break
        except (tf.errors.OpError, ValueError) as e:
            path, why = _find_bad_file(groups)
            raise DittoError("A dataset file is truncated or corrupt", path=path or files[0],
                             got=why or _tf_msg(e)) from None
        ex = tf.nest.map_structure(lambda t: t.numpy(), ex)
        yield wanted[got][1], ex
        got += 1
        if progress_bar is not None:
            progress_bar.update(1)
    if got != len(wanted):
        path, why = _find_bad_file(groups)
        raise DittoError("A dataset file is truncated: it holds fewer episodes than the "
                         "dataset's metadata says", path=path or files[0],
                         got=why or f"{got} of {len(wanted)} episodes read")


def _find_bad_file(groups):
    """(path, reason) of the first file that fails to read or is short, else (None, None)."""
    tf = _tf()
    for path, rs in groups:
        n = 0
        try:
            for _ in tf.data.TFRecordDataset(path):
                n += 1
        except tf.errors.OpError as e:
            return path, _tf_msg(e)
        if n < rs[0].file_len:
            return path, f"{n} records, the metadata says {rs[0].file_len}"
    return None, None


def _tf_msg(e):
    msg = getattr(e, "message", None) or str(e)
    return f"{type(e).__name__}: {msg.strip().splitlines()[0][:300]}"


def _group_by_file(refs):
    groups = []
    for r in refs:
        if groups and groups[-1][0] == r.file:
            groups[-1][1].append(r)
        else:
            groups.append((r.file, [r]))
    return groups


def _scalar(v):
    if isinstance(v, np.ndarray):
        v = v.item() if v.ndim == 0 else v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    return v


def _select(src: _Source, split, selection, process_index, process_count):
    """The record refs this host loads, after split choice, selection and sharding."""
    if selection is not None and not isinstance(selection, Selection):
        selection = Selection.parse(selection) if isinstance(selection, str) else \
            Selection(**selection)
    names = _split_names(src, split, selection)
    refs = _record_refs(src, names)
    ckpt_by_meta = (selection is not None and selection.checkpoints is not None
                    and not any(_CKPT.match(n) for n in names))
    if selection is not None and (selection.top is not None or ckpt_by_meta):
        meta = {}
        parser = _parse_spec(src, with_steps=False)
        for ref, ex in _read_records(src, refs, parser):
            meta[(ref.file, ref.index)] = ex
        if ckpt_by_meta:
            lo, hi = selection.checkpoints
            if not refs or "checkpoint_id" not in next(iter(meta.values()), {}):
                raise DittoError("Cannot select checkpoints: the dataset has neither "
                                 "checkpoint splits nor checkpoint_id metadata",
                                 path=src.path, field="selection.checkpoints")
            refs = [r for r in refs
                    if lo <= int(meta[(r.file, r.index)]["checkpoint_id"]) <= hi]
        if selection.top is not None and refs:
            if "episode_return" not in next(iter(meta.values())):
                raise DittoError("Cannot select top episodes: no episode_return metadata",
                                 path=src.path, field="episode_return")
            rets = np.array([float(meta[(r.file, r.index)]["episode_return"]) for r in refs])
            order = np.argsort(-rets, kind="stable")[:selection.top]
            refs = [refs[i] for i in sorted(order)]
    if selection is not None and selection.first is not None:
        refs = refs[:selection.first]
    if not refs:
        raise DittoError("No episodes selected", path=src.path, field="selection",
                         expected="at least one episode", got=f"split(s) {names}, "
                         f"selection {selection}")
    return shard_list(refs, process_index, process_count, path=src.path)


def shard_list(items, process_index=0, process_count=1, *, path=None):
    """Host `process_index` of `process_count` takes items[process_index::process_count].

    Every host gets a disjoint share, sizes differ by at most one. Raises DittoError on
    every host when some host would get nothing (fewer episodes than hosts), so that no
    host goes on alone.
    """
    if not (0 <= process_index < process_count):
        raise DittoError("Bad process index", field="process_index",
                         expected=f"0 <= index < {process_count}", got=process_index)
    items = list(items)
    mine = items[process_index::process_count]
    if len(items) < process_count:
        raise DittoError("Too few episodes to give every host one", path=path,
                         field="episodes", expected=f">= {process_count} (one per host)",
                         got=len(items))
    return mine


def _resize_frames(frames, size):
    """Area-interpolated resize of (N, H, W, C) uint8 frames to `size` = (h, w)."""
    import cv2
    h, w = size
    if frames.shape[1:3] == (h, w):
        return frames
    out = np.empty((len(frames), h, w, frames.shape[-1]), np.uint8)

    def work(lo, hi, _):
        for i in range(lo, hi):
            out[i] = cv2.resize(frames[i], (w, h), interpolation=cv2.INTER_AREA).reshape(
                h, w, -1)
        return []
    _parallel(work, len(frames), None)
    return out


def _to_episode(ex, ref, src, *, disk_shape, out_shape, resize, num_actions):
    st = ex["steps"]
    n = len(st["action"])
    if n == 0:
        raise DittoError("An episode has no steps", path=ref.file, field="steps",
                         got=f"episode {_scalar(ex.get('episode_id', ref.index))}")
    try:
        frames = decode_png_frames(list(st["observation"]))
    except (ValueError, zlib.error) as e:
        raise DittoError("An episode's frames cannot be decoded (corrupt PNG data)",
                         path=ref.file, field="steps/observation", got=str(e)) from None
    if len(frames) != n:
        raise DittoError("An episode has different numbers of frames and actions",
                         path=ref.file, field="steps/observation", expected=n,
                         got=len(frames))
    if frames.shape[-1] != disk_shape[-1] or (
            None not in disk_shape[:2] and frames.shape[1:] != tuple(disk_shape)):
        raise DittoError("Decoded frames do not match the dataset's declared shape",
                         path=ref.file, field="steps/observation", expected=disk_shape,
                         got=frames.shape[1:])
    if resize is not None:
        frames = _resize_frames(frames, out_shape[:2])
    elif None not in out_shape[:2] and frames.shape[1:] != tuple(out_shape):
        raise DittoError("Observation frames have the wrong shape", path=ref.file,
                         field="steps/observation", expected=out_shape, got=frames.shape[1:])
    action = st["action"]
    if action.ndim != 1:
        raise DittoError("Actions must be scalar indices", path=src.path,
                         field="steps/action", expected="integer per step",
                         got=f"shape {action.shape[1:]} per step")
    if num_actions is not None and n and (action.min() < 0 or action.max() >= num_actions):
        raise DittoError("Action outside the game's action set", path=src.path,
                         field="steps/action", expected=f"integers in [0, {num_actions})",
                         got=f"min {action.min()}, max {action.max()} "
                             f"(episode {_scalar(ex.get('episode_id', ref.index))})")

    def field(name, dtype, default):
        return st[name].astype(dtype) if name in st else np.full(n, default, dtype)

    is_first = field("is_first", bool, False)
    is_last = field("is_last", bool, False)
    if "is_first" not in st and n:
        is_first[0] = True
    if "is_last" not in st and n:
        is_last[-1] = True
    meta = {k: _scalar(v) for k, v in ex.items() if k != "steps"}
    meta.update(split=ref.split, source=src.name)
    if src.metadata.get("action_meanings"):
        meta.setdefault("action_meanings", list(src.metadata["action_meanings"]))
    return Episode(
        observation=frames,
        action=action.astype(np.int32),
        reward=field("reward", np.float32, 0.0),
        discount=field("discount", np.float32, 1.0),
        is_first=is_first, is_last=is_last,
        is_terminal=field("is_terminal", bool, False),
        metadata=meta)


def load_episodes(source, *, data_dir=None, split=None, selection=None, resize=None,
                  grayscale_expected=True, expected_obs_shape=None, num_actions=None,
                  process_index=0, process_count=1, progress=False) -> list[Episode]:
    """Loads RLDS episodes into memory as `Episode`s (this host's share, dataset order).

    source: a local dataset folder (ours, or any `tfds.builder_from_directory` folder; a
      parent folder holding one dataset/version is found too) or a TFDS name such as
      `rlu_atari_checkpoints_ordered/Pong_run_1`, prepared under `data_dir` (never
      downloaded).
    split: None -> 'train' if present, else all splits in order (checkpoint_00..49);
      a split name, comma-separated names, or a checkpoint range
      'checkpoint_40:checkpoint_49' (inclusive).
    selection: `Selection`, its string form ('top:20', 'first:5', 'checkpoints:40-49'),
      or None for all.
    resize: (H, W) to resize frames to (area interpolation), e.g. RLU 84x84 -> 64x64.
    expected_obs_shape / num_actions / grayscale_expected: validation against what the
      caller needs (DittoError naming the dataset, field and expected value).
    process_index / process_count: host i takes the selected episodes i::count.
    """
    src = _resolve(source, data_dir)
    disk_shape, out_shape = _check_features(
        src, grayscale_expected=grayscale_expected, expected_obs_shape=expected_obs_shape,
        resize=resize)
    refs = _select(src, split, selection, process_index, process_count)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(refs), unit="ep", desc="load episodes", dynamic_ncols=True)
    parser = _parse_spec(src)
    episodes = []
    try:
        for ref, ex in _read_records(src, refs, parser, progress_bar=bar):
            episodes.append(_to_episode(ex, ref, src, disk_shape=disk_shape,
                                        out_shape=out_shape, resize=resize,
                                        num_actions=num_actions))
    finally:
        if bar is not None:
            bar.close()
    return episodes


def split_episodes(episodes, *, val_fraction=None, val_count=None, seed=0):
    """Random split by episode into (train, val), each kept in the original order.

    Exactly one of val_fraction (rounded, at least 1 when > 0) or val_count. Raises
    DittoError if either part would be empty (val_count=0 gives an empty val list).
    """
    episodes = list(episodes)
    n = len(episodes)
    if (val_fraction is None) == (val_count is None):
        raise DittoError("Give exactly one of val_fraction or val_count",
                         field="val_fraction/val_count")
    if val_fraction is not None:
        if not 0 <= val_fraction < 1:
            raise DittoError("val_fraction must be in [0, 1)", field="val_fraction",
                             got=val_fraction)
        val_count = 0 if val_fraction == 0 else max(1, int(round(val_fraction * n)))
    val_count = int(val_count)
    if val_count < 0 or (val_count and val_count >= n):
        raise DittoError("Not enough episodes to hold some out for validation",
                         field="val_count", expected=f"0 <= val_count < {n} episodes",
                         got=val_count)
    order = np.random.default_rng(seed).permutation(n)
    val_idx = set(order[:val_count].tolist())
    train = [e for i, e in enumerate(episodes) if i not in val_idx]
    val = [e for i, e in enumerate(episodes) if i in val_idx]
    return train, val


def dataset_summary(source, *, data_dir=None, split=None, selection=None) -> dict:
    """Summary for `ditto info` (reads everything but the frames).

    `steps` counts transitions: the sum of episode lengths T, excluding each episode's
    final observation-only step (`frames` = steps + episodes). Returns use the
    `episode_return` metadata when present, else the sum of rewards.
    """
    src = _resolve(source, data_dir)
    disk_shape, _ = _check_features(src, grayscale_expected=False)
    refs = _select(src, split, selection, 0, 1)
    parser = _parse_spec(src, with_observation=False)
    returns, lengths, hist = [], [], {}
    checkpoints = set()
    meta_first = {}
    for ref, ex in _read_records(src, refs, parser):
        st = ex["steps"]
        n = len(st["action"])
        lengths.append(max(n - 1, 0))
        if "episode_return" in ex:
            returns.append(float(ex["episode_return"]))
        else:
            returns.append(float(np.sum(st.get("reward", 0.0))))
        acts, counts = np.unique(st["action"][:-1] if n > 1 else st["action"],
                                 return_counts=True)
        for a, c in zip(acts.tolist(), counts.tolist()):
            hist[int(a)] = hist.get(int(a), 0) + int(c)
        if "checkpoint_id" in ex:
            checkpoints.add(int(ex["checkpoint_id"]))
        if not meta_first:
            meta_first = {k: _scalar(v) for k, v in ex.items() if k != "steps"}
    rets = np.asarray(returns, np.float64)
    out = {
        "source": src.name,
        "dataset_dir": src.path,
        "splits": _split_names(src, split, selection if isinstance(selection, Selection)
                               else Selection.parse(selection) if isinstance(selection, str)
                               else None),
        "episodes": len(lengths),
        "steps": int(np.sum(lengths)),
        "frames": int(np.sum(lengths)) + len(lengths),
        "return_min": float(rets.min()),
        "return_mean": float(rets.mean()),
        "return_max": float(rets.max()),
        "length_min": int(np.min(lengths)),
        "length_mean": float(np.mean(lengths)),
        "length_max": int(np.max(lengths)),
        "obs_shape": [int(s) if s is not None else None for s in disk_shape],
        "obs_dtype": "uint8",
        "action_histogram": {int(k): v for k, v in sorted(hist.items())},
        "action_meanings": src.metadata.get("action_meanings"),
        "returns": rets.tolist(),
        "lengths": [int(n) for n in lengths],
    }
    if checkpoints:
        out["checkpoints"] = [min(checkpoints), max(checkpoints)]
    for key in ("game", "protocol", "policy"):
        val = src.metadata.get(key, meta_first.get(key))
        if val not in (None, ""):
            out[key] = val
    return out
