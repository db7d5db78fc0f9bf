"""Inputs of the world-model stage: data sources, the dataset fingerprint, train/validation
stores, and the authors' per-game image scale (SPEC §2)."""
import hashlib
import json
import os

import numpy as np

from ditto_jax.core import io
from ditto_jax.data.reader import load_episodes, split_episodes
from ditto_jax.data.source import read_dataset_metadata
from ditto_jax.data.store import EpisodeStore
from ditto_jax.errors import DittoError

IMAGE_SCALES = ("none", "authors")  # config.loss.image_scale (_apply_image_scale)


def data_sources(data):
    """`data` as a list of sources: a list, or one string with comma-separated sources."""
    sources = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    sources = [str(s).strip() for item in sources for s in str(item).split(",")]
    sources = [s for s in sources if s]
    if not sources:
        raise DittoError("No training data given", field="--data",
                         expected="an RLDS dataset directory or TFDS name")
    return sources


def dataset_fingerprint(source, split, selection):
    """Identifies the training data: the TFDS metadata (shard sizes, bytes) + selection."""
    sources = data_sources(source)
    if len(sources) > 1:
        return hashlib.sha256("|".join(dataset_fingerprint(s, split, selection)
                                       for s in sources).encode()).hexdigest()[:16]
    source = sources[0]
    h = hashlib.sha256()
    info = os.path.join(source, "dataset_info.json") if os.path.isdir(source) else None
    if info and os.path.exists(info):
        content = io.read_json(info, what="dataset info")
        # Paths and timestamps vary between copies of the same data; shard sizes don't.
        h.update(json.dumps(content.get("splits"), sort_keys=True).encode())
        h.update(json.dumps(content.get("name")).encode())
    else:
        h.update(str(source).encode())
    h.update(json.dumps([split, selection], sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def load_training_data(config, data, *, data_dir=None, split=None, selection=None,
                       process_index=0, process_count=1, progress=True):
    """Episodes for this host, split into train/validation stores."""
    size = tuple(config.data.size) if "data" in config and config.data.get("size") else None
    episodes = []
    for source in data_sources(data):
        episodes += load_episodes(source, data_dir=data_dir, split=split, resize=size,
                                  selection=selection,
                                  process_index=process_index, process_count=process_count,
                                  progress=progress)
    val_count = int(config.train.val_episodes)
    if val_count >= len(episodes):
        val_count = 0  # too few episodes to hold any out; validation is skipped
    if val_count:
        train_eps, val_eps = split_episodes(episodes, val_count=val_count,
                                            seed=config.train.seed)
    else:
        train_eps, val_eps = episodes, []
    if episodes:
        # flax only once data is loaded: `ditto train-wm --help` imports this module.
        from ditto_jax.models.world_model import check_frame_size
        check_frame_size(config.model, episodes[0].observation.shape[1:],
                         path=", ".join(data_sources(data)))
    train = EpisodeStore.from_episodes(train_eps)
    val = EpisodeStore.from_episodes(val_eps) if val_eps else None
    meta = episodes[0].metadata if episodes else {}
    return train, val, meta


# The authors' per-game pixel mean/std (their configs; SPEC §2), in 0..255 units.
AUTHORS_PIXEL_STATS = {"pong": (106, 47), "breakout": (33, 55), "beamrider": (17, 36),
                       "mspacman": (59, 51), "qbert": (34, 52), "spaceinvaders": (10, 25)}


def _apply_image_scale(config, game, store, log):
    """`loss.image_scale=authors`: the authors' image loss, 2.0 x 0.5 x SSE on per-game
    standardised pixels (x - mu) / sigma, expressed in our [-0.5, 0.5] pixel units as
    image_weight *= (255 / sigma)^2 (Pong: ~29). sigma from their table, else from the data.
    The resolved weight is written back into the config (and so into the checkpoint)."""
    scale = str(config.loss.get("image_scale", "none"))
    if scale == "none":
        return
    if scale != "authors":
        raise DittoError("Unknown image scale", field="config.loss.image_scale",
                         expected="none | authors", got=scale)
    key = str(game or "").lower().replace("_", "")
    if key in AUTHORS_PIXEL_STATS:
        sigma, source = float(AUTHORS_PIXEL_STATS[key][1]), "the authors' table"
    else:
        sigma, source = float(np.std(store.observation[::97])), "the training frames"
    with config.unlocked() if hasattr(config, "unlocked") else _nullcontext():
        config.loss.image_weight = float(config.loss.image_weight) * (255.0 / sigma) ** 2
        config.loss.image_scale = "none"  # resolved: resuming must not apply it twice
    if log:
        log(f"image scale: authors' per-game standardisation (sigma {sigma:.0f} from "
            f"{source}) -> loss.image_weight {config.loss.image_weight:.1f}")


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def check_sources_agree(sources, data_dir):
    """The metadata of the first source; every other must be the same game and actions."""
    ds_meta = read_dataset_metadata(sources[0], data_dir=data_dir)
    for other in sources[1:]:
        other_meta = read_dataset_metadata(other, data_dir=data_dir)
        for field in ("game", "action_meanings"):
            if ds_meta.get(field) and other_meta.get(field) and \
                    ds_meta[field] != other_meta[field]:
                raise DittoError("The training datasets do not match each other", path=other,
                                 field=field, expected=ds_meta[field], got=other_meta[field])
    return ds_meta


def _model_inputs(batch):
    return {k: batch[k] for k in ("observation", "action", "is_first")
            if k in batch} | {k: batch[k] for k in ("reward", "is_terminal") if k in batch}
