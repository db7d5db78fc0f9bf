"""Writes RLDS episodes as one `.npz` file (the format and its TensorFlow-free reader:
`npz.py`), for an accelerator host that has jax but no TensorFlow."""
from __future__ import annotations

import json
import os

import numpy as np

from ditto_jax.data.npz import _DTYPES, FORMAT, is_export
from ditto_jax.data.reader import load_episodes
from ditto_jax.data.schema import STEP_FIELDS
from ditto_jax.data.source import read_dataset_metadata
from ditto_jax.errors import DittoError


def export_npz(source, path, *, data_dir=None, split=None, selection=None) -> dict:
    """Writes the episodes of an RLDS dataset (any `load_episodes` source) to `path`.

    Needs TensorFlow (it reads RLDS). Written to PATH.tmp and renamed, so an interrupted
    export leaves no partial file. Returns a summary (episodes, steps, bytes).
    """
    if not is_export(path):
        raise DittoError("An episode export must be a .npz file", path=path,
                         field="path", expected="a name ending in .npz")
    episodes = load_episodes(source, data_dir=data_dir, split=split, selection=selection)
    meta = {"dataset": read_dataset_metadata(source, data_dir=data_dir),
            "episodes": [dict(e.metadata) for e in episodes], "source": str(source)}
    arrays = {k: np.concatenate([getattr(e, k) for e in episodes]).astype(_DTYPES[k])
              for k in STEP_FIELDS}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = str(path) + ".tmp.npz"
    np.savez_compressed(tmp, format=np.array(FORMAT),
                        metadata=np.array(json.dumps(meta, default=str)),
                        episode_steps=np.array([e.num_steps for e in episodes], np.int64),
                        **arrays)
    os.replace(tmp, path)
    return {"path": str(path), "episodes": len(episodes), "steps": int(arrays["action"].size),
            "bytes": os.path.getsize(path)}
