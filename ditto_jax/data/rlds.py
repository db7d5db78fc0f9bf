"""RLDS episodes on disk: recording (`EpisodeWriter`), reading (`load_episodes`), summaries.

This module re-exports the data layer, split by concern into
- `ditto_jax.data.schema`: step fields, dtypes, the TFDS feature spec and dataset info,
  `Episode`, and the quiet, lazy TensorFlow/TFDS imports;
- `ditto_jax.data.png`: the PNG codec (`encode_png`, `decode_png_frames`) and resizing;
- `ditto_jax.data.writer`: crash-safe recording (`EpisodeWriter`);
- `ditto_jax.data.source`: finding a dataset (folder or TFDS name), split expressions
  (TFDS syntax: `train[:10]`, `a+b`, `train[10%:]`, ...; and `checkpoint_40:checkpoint_49`)
  and `Selection`;
- `ditto_jax.data.reader`: `load_episodes`, `dataset_summary`, `split_episodes`,
  `shard_list`.

Format. A dataset is a TFDS dataset in the RLDS schema (see `make_dataset_info`): one
example per episode, holding `steps` (a `tfds.features.Dataset`) and episode metadata.
Step t holds o_t, the action a_t taken at o_t, the (unclipped) reward r_t received after
a_t, discount, is_first, is_last, is_terminal. The final step (is_last) holds only the last
observation; its action and reward are 0. An episode with T transitions has T+1 steps.

TensorFlow and TFDS are imported lazily so that importing this module is cheap.
"""
from ditto_jax.data.png import (_decode_png, _parallel, _resize_frames, decode_png_frames,
                                encode_png)
from ditto_jax.data.reader import (_check_features, _find_bad_file, _group_by_file,
                                   _parse_spec, _read_records, _scalar, _select, _tf_msg,
                                   _to_episode, dataset_summary, load_episodes, shard_list,
                                   split_episodes)
from ditto_jax.data.schema import (DATASET_NAME, DATASET_VERSION, EPISODE_METADATA, FORMAT,
                                   RECORDING_JSON, STAGING, STEP_DTYPES, STEP_FIELDS, Episode,
                                   _dataset_level_metadata, _is_finished_dataset, _tf, _tfds,
                                   make_dataset_config, make_dataset_info)
from ditto_jax.data.source import (_CKPT, Selection, _builder_from_dir, _find_dataset_dirs,
                                   _plan_names, _read_metadata_json, _record_refs, _Ref,
                                   _resolve, _short_list, _Source, _split_plan,
                                   read_dataset_metadata)
from ditto_jax.data.writer import EpisodeWriter, _atomic_write_bytes


def _split_names(src, split, selection):
    """Ordered split names a split expression reads (compatibility helper)."""
    return _plan_names(_split_plan(src, split, selection))


__all__ = ["DATASET_NAME", "DATASET_VERSION", "EPISODE_METADATA", "FORMAT", "RECORDING_JSON",
           "STAGING", "STEP_DTYPES", "STEP_FIELDS", "Episode", "EpisodeWriter", "Selection",
           "dataset_summary", "decode_png_frames", "encode_png", "load_episodes",
           "make_dataset_config", "make_dataset_info", "read_dataset_metadata", "shard_list",
           "split_episodes"]
