"""Finding a dataset (`_resolve`: local folder or TFDS name) and choosing its records:
split expressions (`_split_plan`, TFDS's own split syntax) and episode `Selection`s.

Split expressions are TFDS's: `train`, `train[:10]`, `train[10%:]`, `train[-5:]`,
`checkpoint_00+checkpoint_01[:2]`, `all`, ... parsed by `tfds.core.ReadInstruction` and
mapped to (file, record) refs with TFDS's own file instructions (the same rounding as
`builder.as_dataset(split=...)`). Two conveniences on top: comma-separated parts
(`a,b` = `a+b`) and inclusive checkpoint ranges (`checkpoint_40:checkpoint_49`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

from ditto_jax.data import npz
from ditto_jax.data.schema import STAGING, is_finished_dataset, _tfds
from ditto_jax.errors import DittoError


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
    if is_finished_dataset(path):
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
    """The dataset-level `metadata.json` ({} when there is none); a corrupt one is refused.

    Corrupt: not JSON, not an object, or a field of the wrong type (`action_meanings` not a
    non-empty list of names, `num_actions` not its length, `obs_shape` not (H, W, C)).
    A dataset read with blank action names would silently mislabel every action.
    """
    p = os.path.join(path, "metadata.json")
    if not os.path.isfile(p):
        return {}
    try:
        with open(p, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise DittoError("The dataset's metadata.json is corrupt (not readable JSON); "
                         "restore it from a copy or record the dataset again", path=p,
                         got=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(meta, dict):
        raise DittoError("The dataset's metadata.json is corrupt", path=p,
                         expected="a JSON object", got=type(meta).__name__)
    _check_metadata_fields(meta, p)
    return meta


def _check_metadata_fields(meta, path):
    def bad(field, expected):
        raise DittoError("The dataset's metadata.json is corrupt", path=path, field=field,
                         expected=expected, got=repr(meta[field])[:200])
    names = meta.get("action_meanings")
    if "action_meanings" in meta and not (
            isinstance(names, list) and names
            and all(isinstance(n, str) and n.strip() for n in names)):
        bad("action_meanings", "a non-empty list of action names")
    if "num_actions" in meta:
        n = meta["num_actions"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            bad("num_actions", "a positive integer")
        if isinstance(names, list) and n != len(names):
            bad("num_actions", f"{len(names)}, the number of action_meanings")
    if "obs_shape" in meta:
        shape = meta["obs_shape"]
        if not (isinstance(shape, list) and len(shape) == 3
                and all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                        for s in shape)):
            bad("obs_shape", "[height, width, channels], three positive integers")
    for field in ("game", "protocol", "format"):
        if field in meta and not isinstance(meta[field], str):
            bad(field, "a string")


_LOOKS_LIKE_PATH = re.compile(r"^(/|\./|\.\./|~)")


def _resolve(source, data_dir=None) -> _Source:
    source = os.fspath(source)
    local = os.path.expanduser(source)
    if os.path.exists(local):
        if not os.path.isdir(local):
            raise DittoError("Not a TFDS dataset folder (this is a file)", path=local,
                             expected="a folder containing dataset_info.json")
        if os.path.isdir(os.path.join(local, STAGING)) and not is_finished_dataset(local):
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
    if not is_finished_dataset(bdir):
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

    For RL Unplugged names, `game` comes from the builder config. A `.npz` episode
    export (ditto_jax.data.export) is read without TensorFlow.
    """
    if npz.is_export(source):
        return npz.read_metadata(source)
    return dict(_resolve(source, data_dir).metadata)


# -- splits and records ---------------------------------------------------------------

_CKPT = re.compile(r"^checkpoint_(\d+)$")
_CKPT_RANGE = re.compile(r"^\s*(checkpoint_\d+)\s*:\s*(checkpoint_\d+)\s*$")
_SPLIT_HELP = ("a TFDS split expression such as train, train[:10], train[10%:], "
               "train[-5:], a+b, all, or a checkpoint range checkpoint_40:checkpoint_49")


@dataclasses.dataclass(frozen=True)
class _Part:
    """Records [start, stop) of one split (an absolute TFDS instruction)."""
    split: str
    start: int
    stop: int


def _expression_parts(text):
    """Top-level parts of a split expression ('+' or ','; never inside brackets)."""
    parts, depth, cur = [], 0, ""
    for ch in str(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch in "+," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _split_plan(src: _Source, split, selection) -> list[_Part]:
    """The record ranges to read, in order, for a split expression (None: the default)."""
    tfds = _tfds()
    splits = src.builder.info.splits
    available = list(splits.keys())
    if not available:
        raise DittoError("The dataset has no splits (empty or unfinished)", path=src.path)
    sizes = {name: int(splits[name].num_examples) for name in available}
    ckpt_splits = {int(m.group(1)): s for s in available if (m := _CKPT.match(s))}
    plan = None
    if split is not None and str(split).strip():
        plan = []
        for part in _expression_parts(split):
            if not part:
                raise DittoError("Empty part in the split expression", path=src.path,
                                 field="split", expected=_SPLIT_HELP, got=str(split))
            m = _CKPT_RANGE.match(part)
            if m:
                lo, hi = (int(_CKPT.match(x).group(1)) for x in m.groups())
                rng = [ckpt_splits[i] for i in range(lo, hi + 1) if i in ckpt_splits]
                if not rng:
                    raise DittoError("No split in this checkpoint range", path=src.path,
                                     field="split", got=part,
                                     expected=f"splits among {_short_list(available)}")
                plan += [_Part(name, 0, sizes[name]) for name in rng]
                continue
            if ":" in part and "[" not in part:
                raise DittoError("A split range must name two checkpoints", path=src.path,
                                 field="split", got=part,
                                 expected="e.g. checkpoint_40:checkpoint_49 among splits "
                                          f"{_short_list(available)}")
            plan += _tfds_parts(tfds, src, part, available, sizes)
        _refuse_overlaps(plan, src, split)
    if selection is not None and selection.checkpoints is not None and ckpt_splits:
        lo, hi = selection.checkpoints
        wanted = [ckpt_splits[i] for i in sorted(ckpt_splits) if lo <= i <= hi]
        plan = ([_Part(n, 0, sizes[n]) for n in wanted] if plan is None
                else [p for p in plan if p.split in wanted])
        if not plan:
            raise DittoError("No episodes selected: no checkpoint split in the range",
                             path=src.path, field="selection.checkpoints",
                             expected=f"splits among {_short_list(available)}",
                             got=f"{lo}..{hi}")
    if plan is None:
        if "train" in available:
            names = ["train"]
        elif ckpt_splits:
            names = [ckpt_splits[i] for i in sorted(ckpt_splits)]
        else:
            names = sorted(available)
        plan = [_Part(n, 0, sizes[n]) for n in names]
    return plan


def _refuse_overlaps(plan, src, split):
    """A split expression selects every episode at most once: parts that share episodes
    (`train+train`, `train[:3]+train[2:]`) would duplicate demonstrations and could put
    a copy of a training episode into the held-out set."""
    seen = {}
    for part in plan:
        for other in seen.get(part.split, []):
            lo, hi = max(part.start, other.start), min(part.stop, other.stop)
            if lo < hi:
                raise DittoError(
                    f"The split expression selects episodes {lo}..{hi - 1} of split "
                    f"'{part.split}' more than once", path=src.path, field="split",
                    expected="parts that select disjoint episodes (e.g. train[:3]+train[5:])",
                    got=str(split))
        seen.setdefault(part.split, []).append(part)


def _tfds_parts(tfds, src, part, available, sizes):
    """One part of a split expression through TFDS's parser -> [_Part]."""
    try:
        instruction = tfds.core.ReadInstruction.from_spec(part)
    except (ValueError, NotImplementedError) as e:
        raise DittoError("Cannot parse the split expression", path=src.path, field="split",
                         expected=f"{_SPLIT_HELP}; splits: {_short_list(available)}",
                         got=f"{part!r} ({_first_line(e)})") from None
    names = [getattr(i, "split_name", None) for i in _leaves(instruction)]
    unknown = [n for n in names if n is not None and n not in sizes]
    if unknown:
        raise DittoError("Unknown split", path=src.path, field="split", got=unknown[0],
                         expected=f"one of {_short_list(available)}")
    try:
        absolute = instruction.to_absolute(src.builder.info.splits)
    except ValueError as e:
        name = names[0] if len(names) == 1 and names[0] else part
        raise DittoError("The split slice does not fit the split", path=src.path,
                         field="split", got=f"{part!r} ({_first_line(e)})",
                         expected=f"a slice within the {sizes[name]} episode(s) of split "
                                  f"{name}" if name in sizes else
                                  f"{_SPLIT_HELP}; splits: {_short_list(available)}") from None
    out = []
    for a in absolute:
        n = sizes[str(a.splitname)]
        start = 0 if a.from_ is None else int(a.from_)
        stop = n if a.to is None else int(a.to)
        out.append(_Part(str(a.splitname), start, max(start, stop)))
    return out


def _leaves(instruction):
    """The ReadInstructions inside a (possibly summed) TFDS split instruction."""
    left, right = getattr(instruction, "left", None), getattr(instruction, "right", None)
    if left is not None and right is not None:
        return _leaves(left) + _leaves(right)
    return [instruction]


def _first_line(e):
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__)[:300]


def _plan_names(plan):
    """Split names of a plan in order, each once."""
    return list(dict.fromkeys(p.split for p in plan))


def _short_list(items, n=6):
    items = list(items)
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


@dataclasses.dataclass
class _Ref:
    split: str
    file: str
    index: int     # record index in the file
    file_len: int  # records in the file (from the split metadata)


def _record_refs(src: _Source, plan):
    """The records of a split plan in order, from TFDS's file instructions (no reading)."""
    fmt = src.builder.info.file_format
    if fmt is not None and getattr(fmt, "value", fmt) != "tfrecord":
        raise DittoError("Unsupported TFDS file format", path=src.path, field="file_format",
                         expected="tfrecord", got=getattr(fmt, "value", fmt))
    tfds = _tfds()
    splits = src.builder.info.splits
    refs = []
    for part in plan:
        if part.stop <= part.start:
            continue
        info = splits[part.split]
        try:
            paths = [os.fspath(p) for p in info.filepaths]
        except ValueError:
            raise DittoError("The split lists no files", path=src.path,
                             field=part.split) from None
        if len(paths) != len(info.shard_lengths):
            raise DittoError("The split's file list does not match its metadata",
                             path=src.path, field=part.split)
        instruction = tfds.core.ReadInstruction(part.split, from_=part.start, to=part.stop,
                                                unit="abs")
        for fi in splits[instruction].file_instructions:
            path = os.fspath(fi.filename)
            if not os.path.exists(path):
                raise DittoError("A dataset file is missing", path=path,
                                 expected=f"{fi.examples_in_shard} episode(s) of split "
                                          f"{part.split}")
            refs += [_Ref(part.split, path, i, int(fi.examples_in_shard))
                     for i in range(fi.skip, fi.skip + fi.take)]
    return refs
