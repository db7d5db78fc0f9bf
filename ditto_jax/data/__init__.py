"""RLDS episode recording and reading (`rlds`), in-memory store and samplers (`store`).

Importing this package is cheap: TensorFlow/TFDS load only when a dataset is touched.
"""
from ditto_jax.data.rlds import (Episode, EpisodeWriter, Selection, dataset_summary,
                                 load_episodes, read_dataset_metadata, shard_list,
                                 split_episodes)
from ditto_jax.data.store import EpisodeStore

__all__ = ["Episode", "EpisodeWriter", "EpisodeStore", "Selection", "dataset_summary",
           "load_episodes", "read_dataset_metadata", "shard_list", "split_episodes"]
