"""RLDS episodes on disk and in memory, split by concern:

- `schema.py`: step fields, dtypes, the TFDS feature spec and dataset info, `Episode`, and
  the quiet, lazy TensorFlow/TFDS imports (importing this package is cheap: TensorFlow
  and TFDS load only when a dataset is touched);
- `png.py`: the PNG codec and resizing; `writer.py`: crash-safe recording (`EpisodeWriter`);
- `source.py`: finding a dataset (folder or TFDS name), split expressions, `Selection`;
- `reader.py`: `load_episodes`, `dataset_summary`, `split_episodes`, `shard_list`;
- `export.py`: the TensorFlow-free `.npz` export; `store.py`: the in-memory
  `EpisodeStore` and its samplers.

Format. A dataset is a TFDS dataset in the RLDS schema (see `schema.make_dataset_info`): one
example per episode, holding `steps` (a `tfds.features.Dataset`) and episode metadata.
Step t holds o_t, the action a_t taken at o_t, the (unclipped) reward r_t received after
a_t, discount, is_first, is_last, is_terminal. The final step (is_last) holds only the last
observation; its action and reward are 0. An episode with T transitions has T+1 steps.
"""
