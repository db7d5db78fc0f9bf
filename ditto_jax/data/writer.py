"""Crash-safe recording of RLDS episodes (`EpisodeWriter`): stage each finished episode
atomically, then `finalize` them into a TFDS dataset (see `ditto_jax.data.schema`)."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import zipfile
import zlib

import numpy as np

from ditto_jax.data.png import encode_png
from ditto_jax.data.schema import (DATASET_NAME, EPISODE_METADATA, FORMAT, RECORDING_JSON,
                                   STAGING, STEP_DTYPES, STEP_FIELDS, _dataset_level_metadata,
                                   is_finished_dataset, _tfds, make_dataset_info)
from ditto_jax.core import io
from ditto_jax.errors import DittoError

DAMAGED = "damaged"  # staged episodes that failed `check_staged`, kept for inspection

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
      (staged episodes kept; `recording_args` holds the stored arguments to compare;
      `check_staged` sets damaged episode files aside). A staging folder without a
      single staged episode (a stub) is started afresh without resume.
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
        if is_finished_dataset(self.out_dir):
            if resume:
                raise DittoError(
                    "The dataset already exists and is complete (finalised); there is "
                    "nothing to resume. Use another --out", path=self.out_dir)
            raise DittoError(
                "A dataset already exists here; refusing to overwrite it. Use another "
                "--out (--resume only continues an unfinished recording)",
                path=self.out_dir)
        if os.path.isdir(self.staging_dir) and not resume and not self._staged_files() \
                and not os.path.isdir(os.path.join(self.staging_dir, DAMAGED)):
            # A stub without a single finished episode (the first one crashed): nothing
            # to keep, so a corrected command may start afresh here.
            shutil.rmtree(self.staging_dir)
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

    def check_staged(self) -> list[str]:
        """Checks every staged episode file (zip CRCs, fields, shapes, metadata).

        Damaged files are moved, not deleted, into `.staging/damaged/` (`finalize` keeps
        them as `.damaged/`) so that their episodes are recorded again
        (`missing_episode_ids`); returns [(new path, what is wrong)].
        """
        moved = []
        for _, path in self._staged_files():
            why = self._staged_problem(path)
            if why is None:
                continue
            dest_dir = os.path.join(self.staging_dir, DAMAGED)
            os.makedirs(dest_dir, exist_ok=True)
            dest = os.path.join(dest_dir, os.path.basename(path))
            if os.path.exists(dest):
                dest = f"{dest}.{time.strftime('%Y%m%d%H%M%S')}"
            os.replace(path, dest)
            moved.append((dest, why))
        return moved

    def _staged_problem(self, path):
        """None if the staged episode file is sound, else why not."""
        try:
            steps, meta = self.read_staged(path)  # zipfile checks the CRCs as it reads
            n = len(steps["observation"])
            if steps["observation"].shape[1:] != self.obs_shape:
                return (f"observation shape {steps['observation'].shape[1:]}, expected "
                        f"{self.obs_shape}")
            for k in STEP_FIELDS[1:]:
                if steps[k].shape != (n,):
                    return f"{k} has shape {steps[k].shape}, expected ({n},)"
            if "episode_id" not in meta:
                return "no episode_id in its metadata"
        except (DittoError, OSError, ValueError, KeyError) as e:
            return getattr(e, "got", None) or f"{type(e).__name__}: {e}"
        return None

    def missing_episode_ids(self, num_episodes) -> list[int]:
        """Episode ids in [0, num_episodes) with no staged file (to record)."""
        staged = set(self.staged_episode_ids)
        return [i for i in range(int(num_episodes)) if i not in staged]

    @staticmethod
    def read_staged(path):
        """(steps, metadata) of a staged episode file."""
        try:
            with np.load(path) as z:
                steps = {k: z[k] for k in STEP_FIELDS}
                meta = json.loads(z["metadata_json"].tobytes().decode())
        except (OSError, ValueError, KeyError, EOFError, zlib.error, zipfile.BadZipFile) as e:
            raise DittoError("A staged episode file is unreadable (run the same command "
                             "with --resume: it is set aside and recorded again)", path=path, got=str(e)) from None
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
        damaged = [(path, why) for _, path in files
                   if (why := self._staged_problem(path)) is not None]
        if damaged:  # before building anything: nothing is moved or deleted
            raise DittoError(
                f"{len(damaged)} staged episode file(s) are damaged; nothing was written. "
                "Run the same command with --resume: damaged episodes are set aside in "
                f".staging/{DAMAGED}/ and recorded again", path=damaged[0][0],
                got=damaged[0][1])
        build = os.path.join(self.staging_dir, "_build")
        try:
            with io.disk_errors(self.out_dir, "finalising the recorded dataset in"):
                return self._build_and_move(tfds, files, build, split, max_episodes_per_shard)
        except DittoError:
            # Only the half-built TFDS files go (they free space); the staged episodes
            # stay, and the same command with --resume finalises them again.
            shutil.rmtree(build, ignore_errors=True)
            raise

    def _build_and_move(self, tfds, files, build, split, max_episodes_per_shard):
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
        damaged = os.path.join(self.staging_dir, DAMAGED)
        if os.path.isdir(damaged) and not os.path.exists(os.path.join(self.out_dir,
                                                                      "." + DAMAGED)):
            os.replace(damaged, os.path.join(self.out_dir, "." + DAMAGED))  # kept
        shutil.rmtree(self.staging_dir)
        return self.out_dir
