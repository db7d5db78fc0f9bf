"""Reading RLDS episodes: `load_episodes` (into memory, as `Episode`s), `dataset_summary`
(for `ditto info`), `split_episodes` and `shard_list`.

Any TFDS dataset in the RLDS schema loads: our recordings (a local folder), any folder
`tfds.builder_from_directory` loads, or a prepared TFDS name such as
`rlu_atari_checkpoints_ordered/Pong_run_1` under `data_dir` (never downloaded). Records
are read with `tf.data` (parsing in parallel, whole episodes at a time) and the PNG frames
are decoded per episode in numpy (see `ditto_jax.data.png`); nothing goes step by step
through Python.
"""
from __future__ import annotations

import zlib

import numpy as np

from ditto_jax.data import npz
from ditto_jax.data.png import _resize_frames, decode_png_frames
from ditto_jax.data.schema import STEP_FIELDS, Episode, Selection, _tf, _tfds, shard_list
from ditto_jax.data.source import (_CKPT, _record_refs, _resolve, _Source, _plan_names,
                                   _split_plan)
from ditto_jax.errors import DittoError


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
    for r in refs:  # a file read again (e.g. `train[3:]+train[:3]`) starts a new group
        if groups and groups[-1][0] == r.file and groups[-1][1][-1].index < r.index:
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
    plan = _split_plan(src, split, selection)
    names = _plan_names(plan)
    refs = _record_refs(src, plan)
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
    A `.npz` episode export (ditto_jax.data.export) loads without TensorFlow.
    """
    if npz.is_export(source):
        return npz.load_episodes(source, selection=selection, resize=resize,
                                    expected_obs_shape=expected_obs_shape,
                                    num_actions=num_actions, process_index=process_index,
                                    process_count=process_count)
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
        "splits": _plan_names(_split_plan(
            src, split, selection if isinstance(selection, Selection)
            else Selection.parse(selection) if isinstance(selection, str) else None)),
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
