"""RLDS episodes as one `.npz` file, readable without TensorFlow (`ditto_jax.data.npz`).

An accelerator host that has jax but no TensorFlow reads recorded episodes from this
export: `export.export_npz(SOURCE, PATH)` (where TF reads the RLDS dataset) writes them,
and `load_episodes(PATH)` / `read_dataset_metadata(PATH)` (ditto_jax.data.reader /
.source) read them back with numpy alone, so every stage takes PATH wherever it takes an
RLDS dataset (`--data`, `--expert`, `config.paths.*`).

Format (`FORMAT`, numpy's `np.savez_compressed`, no pickled objects):
  format               str: "ditto_jax.episodes.npz/1"
  metadata             str: JSON {"dataset": the dataset-level metadata (game,
                       action_meanings, obs_shape, protocol, ...), "episodes": one dict of
                       episode metadata per episode, "source": the exported dataset}
  episode_steps        int64 (E,): steps per episode (T+1, the last observation included)
  observation          uint8 (N, H, W, C), N = sum(episode_steps); episodes back to back
  action               int32 (N,)
  reward, discount     float32 (N,)
  is_first, is_last, is_terminal   bool (N,)
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from ditto_jax.data.png import _resize_frames
from ditto_jax.data.schema import STEP_FIELDS, Episode, Selection, shard_list
from ditto_jax.errors import DittoError

FORMAT = "ditto_jax.episodes.npz/1"
_DTYPES = {"observation": np.uint8, "action": np.int32, "reward": np.float32,
           "discount": np.float32, "is_first": np.bool_, "is_last": np.bool_,
           "is_terminal": np.bool_}


def is_export(source) -> bool:
    """True when `source` names an episode export (a `.npz` file)."""
    return isinstance(source, (str, os.PathLike)) and str(source).endswith(".npz")


def _open(path):
    if not os.path.isfile(path):
        raise DittoError("Episode export not found", path=path,
                         expected="a .npz file written by ditto_jax.data.export.export_npz")
    try:
        data = np.load(path, allow_pickle=False)
        fmt = str(data["format"]) if "format" in data.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DittoError("An episode export is truncated or corrupt", path=path,
                         got=f"{type(e).__name__}: {e}") from None
    if fmt != FORMAT:
        raise DittoError("Not an episode export of this version", path=path, field="format",
                         expected=FORMAT, got=fmt)
    return data


def _metadata(path, data):
    try:
        meta = json.loads(str(data["metadata"]))
    except (KeyError, ValueError, zipfile.BadZipFile) as e:
        raise DittoError("An episode export's metadata cannot be read", path=path,
                         field="metadata", got=f"{type(e).__name__}: {e}") from None
    return meta


def read_metadata(path) -> dict:
    """The dataset-level metadata of an export (as `read_dataset_metadata` gives it)."""
    with _open(path) as data:
        return dict(_metadata(path, data).get("dataset") or {})


def load_episodes(path, *, selection=None, resize=None, expected_obs_shape=None,
                  num_actions=None, process_index=0, process_count=1) -> list[Episode]:
    """The export's episodes (this host's share), with `reader.load_episodes`' selection
    ('first:N' / 'top:N' / `Selection`), resize and checks."""
    if isinstance(selection, str):
        selection = Selection.parse(selection)
    elif isinstance(selection, dict):
        selection = Selection(**selection)
    with _open(path) as data:
        meta = _metadata(path, data)
        try:
            steps = np.asarray(data["episode_steps"], np.int64)
            arrays = {k: np.asarray(data[k]) for k in STEP_FIELDS}
        except (KeyError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise DittoError("An episode export is truncated or corrupt", path=path,
                             got=f"{type(e).__name__}: {e}") from None
    n = int(steps.sum())
    bad = [k for k, v in arrays.items() if len(v) != n]
    if bad or len(meta.get("episodes", [])) != len(steps):
        raise DittoError("An episode export's arrays disagree with its episode lengths",
                         path=path, field=bad[0] if bad else "metadata",
                         expected=f"{n} steps, {len(steps)} episodes",
                         got={k: len(arrays[k]) for k in bad} or
                         f"{len(meta.get('episodes', []))} episode records")
    obs = arrays["observation"]
    if obs.ndim != 4 or obs.dtype != np.uint8:
        raise DittoError("Observation frames have the wrong shape", path=path,
                         field="observation", expected="uint8 (N, H, W, C)",
                         got=f"{obs.dtype} {obs.shape}")
    out_shape = tuple(obs.shape[1:])
    if resize is not None:
        rh, rw = (int(resize), int(resize)) if np.isscalar(resize) else map(int, resize)
        out_shape = (rh, rw, obs.shape[-1])
    if expected_obs_shape is not None and tuple(expected_obs_shape) != out_shape:
        raise DittoError("Observation frames have the wrong shape", path=path,
                         field="observation", expected=tuple(expected_obs_shape),
                         got=out_shape)
    ds_meta = meta.get("dataset") or {}
    bounds = np.concatenate([[0], np.cumsum(steps)])
    order = list(range(len(steps)))
    if selection is not None and selection.checkpoints is not None:
        raise DittoError("An episode export cannot select checkpoints", path=path,
                         field="selection.checkpoints", expected="first:N or top:N")
    if selection is not None and selection.top is not None:
        rets = np.array([float(m.get("episode_return", np.nan)) for m in meta["episodes"]])
        order = sorted(np.argsort(-rets, kind="stable")[:selection.top].tolist())
    if selection is not None and selection.first is not None:
        order = order[:selection.first]
    order = shard_list(order, process_index, process_count, path=path)
    episodes = []
    for i in order:
        sl = slice(int(bounds[i]), int(bounds[i + 1]))
        frames = arrays["observation"][sl]
        if resize is not None:
            frames = _resize_frames(frames, out_shape[:2])
        action = arrays["action"][sl]
        if num_actions is not None and len(action) and (
                action.min() < 0 or action.max() >= num_actions):
            raise DittoError("Action outside the game's action set", path=path,
                             field="action", expected=f"integers in [0, {num_actions})",
                             got=f"min {action.min()}, max {action.max()} (episode {i})")
        m = dict(meta["episodes"][i], source=str(path))
        if ds_meta.get("action_meanings"):
            m.setdefault("action_meanings", list(ds_meta["action_meanings"]))
        episodes.append(Episode(observation=frames, action=action.astype(np.int32),
                                **{k: arrays[k][sl] for k in STEP_FIELDS[2:]}, metadata=m))
    return episodes
