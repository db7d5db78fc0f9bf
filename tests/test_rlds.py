"""RLDS recording and reading: round trips, crash safety, RL Unplugged format, bad input."""
import json
import os

import numpy as np
import pytest

from ditto_jax.data import png, reader, schema, source
from ditto_jax.data.reader import load_episodes
from ditto_jax.data.schema import Selection
from ditto_jax.data.writer import EpisodeWriter
from ditto_jax.errors import DittoError

ACTIONS = ["NOOP", "FIRE", "UP", "DOWN"]
SHAPE = (16, 16, 1)
RLU = "rlu_atari_checkpoints_ordered/Pong_run_1"


def make_episode(rng, steps, *, shape=SHAPE, terminal=True, num_actions=len(ACTIONS)):
    n = steps + 1
    obs = rng.integers(0, 256, (n,) + shape).astype(np.uint8)
    obs[:, : shape[0] // 2] = 40  # some flat area, like a real frame
    action = rng.integers(0, num_actions, n)
    action[-1] = 0
    reward = rng.normal(size=n).astype(np.float32)
    reward[-1] = 0
    discount = np.ones(n, np.float32)
    is_first = np.zeros(n, bool)
    is_first[0] = True
    is_last = np.zeros(n, bool)
    is_last[-1] = True
    is_terminal = np.zeros(n, bool)
    if terminal:
        is_terminal[-1] = True
        discount[-2:] = 0
    return {"observation": obs, "action": action, "reward": reward, "discount": discount,
            "is_first": is_first, "is_last": is_last, "is_terminal": is_terminal}


def write_dataset(out, episodes, *, shape=SHAPE, returns=None, meta=None):
    w = EpisodeWriter(out, obs_shape=shape, action_meanings=ACTIONS,
                      dataset_metadata=meta or {"game": "pong", "protocol": "ditto"})
    for i, ep in enumerate(episodes):
        m = {"episode_id": i, "policy": "random", "seed": 100 + i}
        if returns is not None:
            m["episode_return"] = returns[i]
        w.write_episode(ep, m)
    w.finalize()
    return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    rng = np.random.default_rng(0)
    eps = [make_episode(rng, 5 + 3 * i, terminal=i % 2 == 0) for i in range(6)]
    returns = [3.0, 9.0, 1.0, 7.0, 5.0, 9.0]
    out = write_dataset(str(tmp_path_factory.mktemp("rec") / "ds"), eps, returns=returns)
    return out, eps, returns


# -- RL Unplugged -----------------------------------------------------------------------

def _rlu_raw_example(tf, rng, ckpt, idx, length, terminal):
    """An episode in the raw RL Unplugged Atari tf.Example format (84x84 PNG frames)."""
    obs = rng.integers(0, 60, (length, 84, 84, 1)).astype(np.uint8)
    obs[:, 30:40, 10:20] = 200
    disc = np.ones(length, np.float32)
    if terminal:
        disc[-1] = 0
    rew = rng.integers(-1, 2, length).astype(np.float32)
    feat = tf.train.Feature
    example = tf.train.Example(features=tf.train.Features(feature={
        "checkpoint_idx": feat(int64_list=tf.train.Int64List(value=[ckpt])),
        "episode_idx": feat(int64_list=tf.train.Int64List(value=[idx])),
        "episode_return": feat(float_list=tf.train.FloatList(value=[rew.sum() + idx])),
        "clipped_episode_return": feat(float_list=tf.train.FloatList(value=[rew.sum()])),
        "observations": feat(bytes_list=tf.train.BytesList(
            value=[tf.io.encode_png(o).numpy() for o in obs])),
        "actions": feat(int64_list=tf.train.Int64List(value=rng.integers(0, 6, length))),
        "unclipped_rewards": feat(float_list=tf.train.FloatList(value=rew)),
        "clipped_rewards": feat(float_list=tf.train.FloatList(value=rew)),
        "discounts": feat(float_list=tf.train.FloatList(value=disc)),
    }))
    return example.SerializeToString(), obs


@pytest.fixture(scope="module")
def rlu(tmp_path_factory):
    """A tiny rlu_atari_checkpoints_ordered/Pong_run_1 written with TFDS's own builder
    features and its own raw-record -> RLDS conversion, under <tmp>/<name>/<config>/<ver>."""
    tf = schema._tf()
    import tensorflow_datasets as tfds
    from tensorflow_datasets.rl_unplugged import atari_utils
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    builder = tfds.builder(RLU, data_dir=data_dir)
    os.makedirs(builder.data_dir)
    writer = tfds.core.SequentialWriter(builder.info, max_examples_per_shard=2)
    splits = ["checkpoint_00", "checkpoint_01"]
    writer.initialize_splits(splits)
    rng = np.random.default_rng(1)
    frames = {}
    for ckpt, split in enumerate(splits):
        for idx in range(3):
            raw, obs = _rlu_raw_example(tf, rng, ckpt, idx, 6 + idx, terminal=idx == 1)
            ep = atari_utils.atari_example_to_rlds(raw)
            ep = tf.nest.map_structure(lambda t: np.asarray(t), ep)
            ep["steps"]["observation"] = list(ep["steps"]["observation"])
            writer.add_examples({split: [ep]})
            frames[(ckpt, idx)] = obs
    writer.close_all()
    return data_dir, frames, os.fspath(builder.data_dir)


# -- round trips -------------------------------------------------------------------------

def test_round_trip(recorded):
    out, eps, returns = recorded
    loaded = load_episodes(out)
    assert len(loaded) == len(eps)
    for i, (want, got) in enumerate(zip(eps, loaded)):
        for k in schema.STEP_FIELDS:
            np.testing.assert_array_equal(getattr(got, k), want[k].astype(getattr(got, k).dtype),
                                          err_msg=k)
        assert got.observation.dtype == np.uint8 and got.action.dtype == np.int32
        assert got.length == len(want["action"]) - 1
        m = got.metadata
        assert m["episode_id"] == i and m["episode_return"] == returns[i]
        assert m["episode_length"] == got.length and m["seed"] == 100 + i
        assert (m["policy"], m["game"], m["protocol"]) == ("random", "pong", "ditto")
        assert m["action_meanings"] == ACTIONS
    assert not os.path.exists(os.path.join(out, ".staging"))


def test_standard_tfds_reader_loads_recording(recorded):
    import tensorflow_datasets as tfds
    out, eps, _ = recorded
    builder = tfds.builder_from_directory(out)
    ep = next(iter(builder.as_dataset(split="train").take(1)))
    obs = np.stack([s["observation"].numpy() for s in ep["steps"]])
    np.testing.assert_array_equal(obs, eps[0]["observation"])
    meta = source.read_dataset_metadata(out)
    assert meta["action_meanings"] == ACTIONS and meta["game"] == "pong"
    assert meta["obs_shape"] == list(SHAPE) and builder.info.metadata["num_actions"] == 4


def test_summary(recorded):
    out, eps, returns = recorded
    s = reader.dataset_summary(out)
    assert s["episodes"] == 6
    assert s["steps"] == sum(len(e["action"]) - 1 for e in eps)
    assert s["frames"] == s["steps"] + 6
    assert (s["return_min"], s["return_max"]) == (1.0, 9.0)
    assert s["obs_shape"] == [16, 16, 1] and s["obs_dtype"] == "uint8"
    assert sum(s["action_histogram"].values()) == s["steps"]
    assert s["action_meanings"] == ACTIONS and s["game"] == "pong"


def test_rlu_checkpoint_dataset_loads_without_download(rlu):
    data_dir, frames, _ = rlu
    eps = load_episodes(RLU, data_dir=data_dir, split="checkpoint_00", resize=(64, 64))
    assert [e.metadata["episode_id"] for e in eps] == [0, 1, 2]
    assert all(e.metadata["checkpoint_id"] == 0 for e in eps)
    assert eps[0].observation.shape == (6, 64, 64, 1)  # RLU: one action per frame
    assert eps[1].is_terminal[-1] and eps[1].discount[-1] == 0
    assert eps[0].is_first[0] and eps[0].is_last[-1] and not eps[0].is_first[1:].any()
    import cv2
    want = cv2.resize(frames[(0, 0)][3, :, :, 0], (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(eps[0].observation[3, :, :, 0], want)
    full = load_episodes(RLU, data_dir=data_dir, split="checkpoint_01")
    np.testing.assert_array_equal(full[2].observation, frames[(1, 2)])


def test_rlu_splits_and_checkpoint_selection(rlu):
    data_dir, _, _ = rlu
    ids = lambda eps: [(e.metadata["checkpoint_id"], e.metadata["episode_id"]) for e in eps]
    every = [(c, i) for c in (0, 1) for i in range(3)]
    assert ids(load_episodes(RLU, data_dir=data_dir)) == every  # no train: all, in order
    assert ids(load_episodes(RLU, data_dir=data_dir,
                             split="checkpoint_00:checkpoint_01")) == every
    assert ids(load_episodes(RLU, data_dir=data_dir,
                             selection=Selection(checkpoints=(1, 1)))) == every[3:]
    assert ids(load_episodes(RLU, data_dir=data_dir, selection="checkpoints:1-1,top:1")) \
        == [(1, 2)]  # the highest return in checkpoint 1
    s = reader.dataset_summary(RLU, data_dir=data_dir, split="checkpoint_01")
    assert s["episodes"] == 3 and s["checkpoints"] == [1, 1] and s["game"] == "Pong"


def test_rlu_version_folder_loads_as_path(rlu):
    _, _, version_dir = rlu
    assert len(load_episodes(version_dir, split="checkpoint_01")) == 3
    assert len(load_episodes(os.path.dirname(version_dir), split="checkpoint_01")) == 3


# -- selection, sharding, splitting --------------------------------------------------------

def test_first_and_top_selection(recorded):
    out, _, returns = recorded
    first = load_episodes(out, selection=Selection(first=2))
    assert [e.metadata["episode_id"] for e in first] == [0, 1]
    top = load_episodes(out, selection="top:3")
    # returns 3,9,1,7,5,9: the top three are episodes 1, 5 (9.0) and 3 (7.0), dataset order
    assert [e.metadata["episode_id"] for e in top] == [1, 3, 5]


def test_sharding_across_hosts(recorded):
    out, _, _ = recorded
    shards = [load_episodes(out, process_index=i, process_count=4) for i in range(4)]
    ids = [[e.metadata["episode_id"] for e in s] for s in shards]
    assert ids == [[0, 4], [1, 5], [2], [3]]
    with pytest.raises(DittoError, match="Too few episodes"):
        load_episodes(out, process_index=0, process_count=7)


def test_split_episodes(recorded):
    out, _, _ = recorded
    eps = load_episodes(out)
    train, val = reader.split_episodes(eps, val_count=2, seed=3)
    again = reader.split_episodes(eps, val_count=2, seed=3)
    ids = lambda es: [e.metadata["episode_id"] for e in es]
    assert len(val) == 2 and len(train) == 4 and ids(val) == ids(again[1])
    assert sorted(ids(train) + ids(val)) == list(range(6))
    assert len(reader.split_episodes(eps, val_fraction=0.5, seed=0)[1]) == 3
    with pytest.raises(DittoError, match="Not enough episodes"):
        reader.split_episodes(eps, val_count=6)


def test_selection_parse():
    assert Selection.parse("top:5") == Selection(top=5)
    assert Selection.parse("checkpoints:40-49,first:3") == Selection(first=3,
                                                                     checkpoints=(40, 49))
    assert Selection.parse("") is None
    with pytest.raises(DittoError, match="Cannot parse the episode selection"):
        Selection.parse("best:3")
    with pytest.raises(DittoError, match="either first-N or top-N"):
        Selection(first=1, top=1)


# -- crash safety ------------------------------------------------------------------------

def test_interrupted_recording_is_kept_and_resumed(tmp_path):
    out = str(tmp_path / "ds")
    rng = np.random.default_rng(2)
    eps = [make_episode(rng, 4) for _ in range(3)]
    w = EpisodeWriter(out, obs_shape=SHAPE, action_meanings=ACTIONS,
                      dataset_metadata={"game": "pong", "seed": 7})
    w.write_episode(eps[0], {"episode_id": 0})
    w.write_episode(eps[1], {"episode_id": 1})
    del w  # "crash": no finalize; a half-written temp file is left behind too
    open(os.path.join(out, ".staging", "episode_00000002.npz.tmp123"), "wb").close()
    assert not os.path.exists(os.path.join(out, "dataset_info.json"))
    with pytest.raises(DittoError, match="unfinished"):
        load_episodes(out)
    with pytest.raises(DittoError, match="already exists.*--resume"):
        EpisodeWriter(out, obs_shape=SHAPE, action_meanings=ACTIONS)
    w = EpisodeWriter(out, obs_shape=SHAPE, action_meanings=ACTIONS,
                      dataset_metadata={"game": "pong", "seed": 7}, resume=True)
    assert w.num_staged == 2 and w.staged_episode_ids == [0, 1]
    assert w.recording_args["seed"] == 7 and w.recording_args["game"] == "pong"
    with pytest.raises(DittoError, match="already staged"):
        w.write_episode(eps[1], {"episode_id": 1})
    w.write_episode(eps[2], {"episode_id": 2})
    w.finalize()
    loaded = load_episodes(out)
    assert [e.metadata["episode_id"] for e in loaded] == [0, 1, 2]
    np.testing.assert_array_equal(loaded[2].observation, eps[2]["observation"])
    assert sorted(os.listdir(out))[0] == "dataset_info.json"
    assert not os.path.exists(os.path.join(out, ".staging"))


def test_resume_checks_frame_shape_and_actions(tmp_path):
    out = str(tmp_path / "ds")
    EpisodeWriter(out, obs_shape=SHAPE, action_meanings=ACTIONS)
    with pytest.raises(DittoError, match="repeat the original") as e:
        EpisodeWriter(out, obs_shape=(8, 8, 1), action_meanings=ACTIONS, resume=True)
    assert e.value.field == "obs_shape"


def test_refuses_to_overwrite_finished_dataset(recorded, tmp_path):
    out, _, _ = recorded
    with pytest.raises(DittoError, match="already exists.*another --out"):
        EpisodeWriter(out, obs_shape=SHAPE, action_meanings=ACTIONS)
    with pytest.raises(DittoError, match="already exists and is complete"):
        EpisodeWriter(out, obs_shape=SHAPE, action_meanings=ACTIONS, resume=True)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "readme.txt").write_text("mine")
    with pytest.raises(DittoError, match="not empty"):
        EpisodeWriter(str(other), obs_shape=SHAPE, action_meanings=ACTIONS)


def test_write_episode_validates(tmp_path):
    w = EpisodeWriter(str(tmp_path / "ds"), obs_shape=SHAPE, action_meanings=ACTIONS)
    ep = make_episode(np.random.default_rng(0), 3)
    bad = dict(ep, observation=ep["observation"].astype(np.float32))
    with pytest.raises(DittoError, match=r"Field: observation\. Expected: uint8 \(T\+1, 16"):
        w.write_episode(bad, {"episode_id": 0})
    bad = dict(ep, action=np.full(4, 9))
    with pytest.raises(DittoError, match=r"Field: action\. Expected: integers in \[0, 4\)"):
        w.write_episode(bad, {"episode_id": 0})
    bad = dict(ep, reward=ep["reward"][:2])
    with pytest.raises(DittoError, match=r"Field: reward\. Expected: float32 of shape \(4,\)"):
        w.write_episode(bad, {"episode_id": 0})
    with pytest.raises(DittoError, match="needs an episode_id"):
        w.write_episode(ep, {})
    with pytest.raises(DittoError, match="No finished episodes"):
        w.finalize()


# -- bad input ---------------------------------------------------------------------------

def test_missing_path(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(DittoError, match=f"Dataset not found. File: {missing}"):
        load_episodes(missing)


def test_not_a_tfds_dataset(tmp_path):
    (tmp_path / "episodes.npz").write_bytes(b"x")
    with pytest.raises(DittoError, match="Not a TFDS dataset: no dataset_info.json"):
        load_episodes(str(tmp_path))


def test_unknown_or_unprepared_tfds_name(tmp_path):
    with pytest.raises(DittoError, match="not prepared under the data dir.*never downloads"):
        load_episodes("rlu_atari_checkpoints_ordered/Breakout_run_2", data_dir=str(tmp_path))
    with pytest.raises(DittoError, match="TFDS does not know this name"):
        load_episodes("no_such_dataset_xyz/cfg", data_dir=str(tmp_path))


def test_wrong_obs_shape(recorded):
    out, _, _ = recorded
    with pytest.raises(DittoError, match=r"wrong shape.*Field: steps/observation\. "
                                         r"Expected: \(64, 64, 1\)\. Got: \(16, 16, 1\)"):
        load_episodes(out, expected_obs_shape=(64, 64, 1))
    assert load_episodes(out, resize=(8, 8), expected_obs_shape=(8, 8, 1),
                         selection="first:1")[0].observation.shape[1:] == (8, 8, 1)


def test_rgb_where_grayscale_expected(tmp_path):
    rng = np.random.default_rng(0)
    out = write_dataset(str(tmp_path / "rgb"), [make_episode(rng, 3, shape=(8, 8, 3))],
                        shape=(8, 8, 3))
    with pytest.raises(DittoError, match="RGB, but grayscale frames are expected"):
        load_episodes(out)
    ep = load_episodes(out, grayscale_expected=False)[0]
    assert ep.observation.shape == (4, 8, 8, 3)


def test_action_out_of_range(recorded):
    out, _, _ = recorded
    with pytest.raises(DittoError, match=r"outside the game's action set.*"
                                         r"Field: steps/action\. Expected: integers in \[0, 2\)"):
        load_episodes(out, num_actions=2)


def test_empty_selection(recorded, rlu):
    out, _, _ = recorded
    with pytest.raises(DittoError, match="checkpoint"):
        load_episodes(out, selection=Selection(checkpoints=(40, 49)))
    data_dir, _, _ = rlu
    with pytest.raises(DittoError, match="No episodes selected"):
        load_episodes(RLU, data_dir=data_dir, selection="checkpoints:40-49")
    with pytest.raises(DittoError, match="No split in this checkpoint range"):
        load_episodes(RLU, data_dir=data_dir, split="checkpoint_40:checkpoint_49")


def test_unknown_split(recorded):
    out, _, _ = recorded
    with pytest.raises(DittoError, match="Unknown split.*Expected: one of train"):
        load_episodes(out, split="test")


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    shard = [f for f in sorted(os.listdir(dst)) if ".tfrecord-" in f][0]
    return os.path.join(dst, shard)


def test_truncated_tfrecord(recorded, tmp_path):
    out, _, _ = recorded
    shard = _copy(out, str(tmp_path / "cut"))
    size = os.path.getsize(shard)
    with open(shard, "r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(DittoError, match=f"truncated or corrupt. File: {shard}"):
        load_episodes(str(tmp_path / "cut"))


def test_corrupt_tfrecord(recorded, tmp_path):
    out, _, _ = recorded
    shard = _copy(out, str(tmp_path / "bad"))
    data = bytearray(open(shard, "rb").read())
    data[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64
    open(shard, "wb").write(bytes(data))
    with pytest.raises(DittoError, match=f"truncated or corrupt. File: {shard}"):
        load_episodes(str(tmp_path / "bad"))


def test_dataset_info_is_only_written_by_finalize(tmp_path):
    out = str(tmp_path / "ds")
    w = EpisodeWriter(out, obs_shape=SHAPE, action_meanings=ACTIONS)
    w.write_episode(make_episode(np.random.default_rng(0), 3), {"episode_id": 0})
    assert os.listdir(out) == [".staging"]
    with open(os.path.join(out, ".staging", "recording.json")) as f:
        assert json.load(f)["action_meanings"] == ACTIONS


def test_png_frames_decode_whatever_the_filter():
    import cv2
    rng = np.random.default_rng(0)
    imgs = (rng.random((40, 12, 10, 1)) < 0.3).astype(np.uint8) * 200
    for flt in (cv2.IMWRITE_PNG_ALL_FILTERS, cv2.IMWRITE_PNG_FILTER_SUB,
                cv2.IMWRITE_PNG_FILTER_UP, cv2.IMWRITE_PNG_FILTER_PAETH):
        pngs = [cv2.imencode(".png", im[..., 0], [cv2.IMWRITE_PNG_FILTER, flt])[1].tobytes()
                for im in imgs]
        np.testing.assert_array_equal(png.decode_png_frames(pngs), imgs)
    rgb = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(png.decode_png_frames([png.encode_png(f) for f in rgb]),
                                  rgb)



def test_png_decode_refuses_corrupt_and_mixed_frames():
    good = png.encode_png(np.zeros((6, 5, 1), np.uint8))
    other = png.encode_png(np.zeros((4, 5, 1), np.uint8))
    with pytest.raises(ValueError, match="could not decode"):
        png.decode_png_frames([good, b"\x89PNG not really"])
    with pytest.raises(ValueError, match="frame 1 has shape"):
        png.decode_png_frames([good, other])
    with pytest.raises(ValueError, match="channels"):
        png.decode_png_frames([good], channels=3)
    with pytest.raises(ValueError, match="no frames"):
        png.decode_png_frames([])


# -- TFDS split expressions ------------------------------------------------------------------

@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """Six episodes in three shards of two, so slices cross shard boundaries."""
    rng = np.random.default_rng(5)
    out = str(tmp_path_factory.mktemp("sharded") / "ds")
    w = EpisodeWriter(out, obs_shape=SHAPE, action_meanings=ACTIONS)
    for i in range(6):
        w.write_episode(make_episode(rng, 2 + i), {"episode_id": i})
    w.finalize(max_episodes_per_shard=2)
    return out


@pytest.mark.parametrize("split, want", [
    ("train", [0, 1, 2, 3, 4, 5]),
    ("train[:2]", [0, 1]),
    ("train[-5:]", [1, 2, 3, 4, 5]),
    ("train[10%:]", [1, 2, 3, 4, 5]),   # TFDS rounding: 10% of 6 -> 1
    ("train[:50%]", [0, 1, 2]),
    ("train[1:4]", [1, 2, 3]),
    ("train[3:]+train[:1]", [3, 4, 5, 0]),
    ("train[1:2], train[4:5]", [1, 4]),  # comma = +
    ("train[1shard]", [2, 3]),
    ("all", [0, 1, 2, 3, 4, 5]),
])
def test_split_expressions_match_tfds(sharded, split, want):
    import tensorflow_datasets as tfds
    got = [e.metadata["episode_id"] for e in load_episodes(sharded, split=split)]
    assert got == want
    tfds_split = split.replace(",", "+")
    ds = tfds.builder_from_directory(sharded).as_dataset(split=tfds_split)
    assert got == [int(ex["episode_id"]) for ex in ds]  # TFDS reads the same episodes
    s = reader.dataset_summary(sharded, split=split)
    assert s["episodes"] == len(want) and s["lengths"] == [2 + i for i in want]


def test_rlu_split_expressions(rlu):
    data_dir, frames, _ = rlu
    ids = lambda eps: [(e.metadata["checkpoint_id"], e.metadata["episode_id"]) for e in eps]
    eps = load_episodes(RLU, data_dir=data_dir, split="checkpoint_00[:2]+checkpoint_01[-1:]")
    assert ids(eps) == [(0, 0), (0, 1), (1, 2)]
    np.testing.assert_array_equal(eps[2].observation, frames[(1, 2)])
    assert reader.dataset_summary(RLU, data_dir=data_dir, split="checkpoint_01[1:]")[
        "episodes"] == 2
    # The checkpoint-range shorthand still works, also next to TFDS parts (disjoint ones:
    # an overlap, e.g. with checkpoint_00[:1], is refused).
    assert ids(load_episodes(RLU, data_dir=data_dir,
                             split="checkpoint_01:checkpoint_01,checkpoint_00[:1]")) == \
        [(1, 0), (1, 1), (1, 2), (0, 0)]
    with pytest.raises(DittoError, match="episodes 0..0 of split 'checkpoint_00' more than"):
        load_episodes(RLU, data_dir=data_dir,
                      split="checkpoint_00:checkpoint_01,checkpoint_00[:1]")
    # A selection's checkpoint range applies to the expression's parts.
    assert ids(load_episodes(RLU, data_dir=data_dir, split="checkpoint_00[:1]+checkpoint_01",
                             selection="checkpoints:1-1,first:2")) == [(1, 0), (1, 1)]


@pytest.mark.parametrize("split, message, got", [
    ("test[:2]", "Unknown split", "test"),
    ("train[:2]+tset", "Unknown split", "tset"),
    ("train[", "Cannot parse the split expression", "train["),
    ("train[a:b]", "Cannot parse the split expression", "train[a:b]"),
    ("all[:2]", "Cannot parse the split expression", "all[:2]"),
    ("train[:20]", "slice does not fit", "train[:20]"),
    ("train:test", "must name two checkpoints", "train:test"),
    # Overlapping parts would duplicate episodes (and leak training copies into held-out).
    ("train+train", "episodes 0..5 of split 'train' more than once", "train+train"),
    ("train[:3]+train[2:]", "episodes 2..2 of split 'train' more than once",
     "train[:3]+train[2:]"),
    ("train[4:], all", "episodes 4..5 of split 'train' more than once", "train[4:], all"),
])
def test_bad_split_expressions(sharded, split, message, got):
    with pytest.raises(DittoError, match=message) as e:
        load_episodes(sharded, split=split)
    text = str(e.value)
    assert e.value.field == "split" and sharded in text and got in text
    assert "train" in text.split("Expected:")[1].split("Got:")[0]  # names the splits
    assert "Traceback" not in text


def test_info_refuses_a_split_that_counts_episodes_twice(sharded):
    """`ditto info` reads through the same parser: no summary with duplicates."""
    from tests.conftest import run_cli
    with pytest.raises(DittoError, match="more than once"):
        reader.dataset_summary(sharded, split="train[:3]+train[2:]")
    proc = run_cli("info", sharded, "--split", "train+train", "--json")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert "episodes 0..5 of split 'train' more than once" in proc.stderr
    assert "Field: split" in proc.stderr and sharded in proc.stderr


# -- damaged staged episodes ---------------------------------------------------------------

def test_damaged_staged_episode_is_found_before_anything_is_written(tmp_path):
    out = str(tmp_path / "ds")
    rng = np.random.default_rng(3)
    eps = [make_episode(rng, 3) for _ in range(3)]
    w = EpisodeWriter(out, obs_shape=SHAPE, action_meanings=ACTIONS)
    paths = [w.write_episode(ep, {"episode_id": i}) for i, ep in enumerate(eps)]
    with open(paths[1], "r+b") as f:  # a torn write / bad disk
        f.truncate(os.path.getsize(paths[1]) // 2)
    with pytest.raises(DittoError, match=r"damaged.*--resume") as e:
        w.finalize()
    assert paths[1] in str(e.value)
    assert not os.path.exists(os.path.join(out, "dataset_info.json"))
    assert w.staged_episode_ids == [0, 1, 2]  # nothing moved or deleted
    # Resuming sets the damaged file aside (kept) and asks for that episode again.
    w = EpisodeWriter(out, obs_shape=SHAPE, action_meanings=ACTIONS, resume=True)
    moved = w.check_staged()
    assert [os.path.basename(p) for p, _ in moved] == [os.path.basename(paths[1])]
    assert w.missing_episode_ids(3) == [1]
    w.write_episode(eps[1], {"episode_id": 1})
    w.finalize()
    assert [e.metadata["episode_id"] for e in load_episodes(out)] == [0, 1, 2]
    assert os.listdir(os.path.join(out, ".damaged")) == [os.path.basename(paths[1])]


def test_empty_stub_recording_is_started_afresh(tmp_path):
    out = str(tmp_path / "ds")
    EpisodeWriter(out, obs_shape=SHAPE, action_meanings=ACTIONS,
                  dataset_metadata={"policy": "exprt"})  # crashed before episode 0
    w = EpisodeWriter(out, obs_shape=SHAPE, action_meanings=ACTIONS,
                      dataset_metadata={"policy": "expert"})
    assert w.recording_args["policy"] == "expert"


@pytest.mark.parametrize("size", [48, 84])
def test_frame_size_the_world_model_cannot_take(tmp_path, size):
    """Expert data at another frame size than a 64x64 world model, without resize: the
    error names the dataset, the observation field, the expected and the actual shape."""
    from ditto_jax.core.config import load_config
    from ditto_jax.stages.policy_data import load_expert
    from ditto_jax.stages.train_policy import DEFAULT_CONFIG
    rng = np.random.default_rng(0)
    out = write_dataset(str(tmp_path / f"ds{size}"),
                        [make_episode(rng, 3, shape=(size, size, 1)) for _ in range(2)],
                        shape=(size, size, 1))
    config = load_config(DEFAULT_CONFIG)
    config.expert_resize = False
    wm_meta = {"obs_shape": [64, 64, 1], "num_actions": len(ACTIONS),
               "action_meanings": ACTIONS, "game": "pong"}
    with pytest.raises(DittoError, match="wrong shape") as e:
        load_expert(config, out, wm_meta)
    text = str(e.value)
    assert out in text and "observation" in text
    assert "(64, 64, 1)" in text and f"({size}, {size}, 1)" in text


def test_32_pixel_frames_are_refused_before_the_model_is_built(tmp_path):
    """A valid 32x32 dataset: the encoder's four stride-2 convs would leave no pixel (a
    ZeroDivisionError inside flax init before); now a DittoError names the dataset, the
    field and the sizes this model takes."""
    from ditto_jax.core.config import load_config
    from ditto_jax.models.world_model import make_world_model
    from ditto_jax.stages.wm_data import load_training_data
    rng = np.random.default_rng(0)
    out = write_dataset(str(tmp_path / "ds32"),
                        [make_episode(rng, 4, shape=(32, 32, 1)) for _ in range(2)],
                        shape=(32, 32, 1))
    config = load_config(os.path.join(os.path.dirname(__file__), "..",
                                      "experiments/configs/wm.py:tiny"))
    with pytest.raises(DittoError, match="cannot take frames of this size") as e:
        load_training_data(config, out, progress=False)
    text = str(e.value)
    assert out in text and "data.size" in text and "(32, 32, 1)" in text
    assert "square sizes 48, 64, 80, 96, 112, 128" in text and "leave no pixel" in text
    with pytest.raises(DittoError, match="data.size"):
        make_world_model(config.model.to_dict(), (32, 32, 1), len(ACTIONS))
    # A size the decoder cannot double back to: 72 is not a multiple of 16.
    with pytest.raises(DittoError, match="multiples of 16"):
        make_world_model(config.model.to_dict(), (72, 72, 1), len(ACTIONS))
    make_world_model(config.model.to_dict(), (48, 48, 1), len(ACTIONS))  # fits
