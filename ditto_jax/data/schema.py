"""The RLDS schema of our recordings: step fields, dtypes, TFDS feature spec, dataset info.

Format. A dataset is a TFDS dataset in the RLDS schema (see `make_dataset_info`): one
example per episode, holding `steps` (a `tfds.features.Dataset`) and episode metadata.
Step t holds o_t, the action a_t taken at o_t, the (unclipped) reward r_t received after
a_t, discount, is_first, is_last, is_terminal. The final step (is_last) holds only the last
observation; its action and reward are 0. An episode with T transitions has T+1 steps.

TensorFlow and TFDS are imported lazily (`_tf`, `_tfds`) so that importing this module is
cheap; both are imported quietly (no start-up banners, no absl INFO lines).
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from ditto_jax.errors import DittoError

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
    # TF 2.21 logs its oneDNN note before TF_CPP_MIN_LOG_LEVEL applies; TF only reads and
    # writes episodes here, so its oneDNN kernels are not needed.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
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


def is_finished_dataset(path):
    """A complete dataset folder: only `EpisodeWriter.finalize` writes dataset_info.json."""
    return os.path.isfile(os.path.join(path, "dataset_info.json"))


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
        module_name="ditto_jax.data.rlds")  # as first written
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


# ------------------------------------------------------------------ which episodes
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
