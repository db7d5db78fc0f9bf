"""EpisodeStore: layout, window samplers (shapes, episode boundaries, determinism)."""
import numpy as np
import pytest

from ditto_jax.data.schema import Episode
from ditto_jax.data.store import EpisodeStore
from ditto_jax.errors import DittoError


def episode(ep_id, steps, shape=(8, 8, 1)):
    n = steps + 1
    # Frame value encodes (episode, step) so windows can be checked against the source.
    obs = np.zeros((n,) + shape, np.uint8)
    obs[:, 0, 0, 0] = ep_id
    obs[:, 0, 1, 0] = np.arange(n)
    action = (np.arange(n) + ep_id) % 5
    action[-1] = 0
    reward = np.arange(n, dtype=np.float32) + 100 * ep_id
    reward[-1] = 0
    is_first = np.arange(n) == 0
    is_last = np.arange(n) == n - 1
    return Episode(obs, action.astype(np.int32), reward, np.ones(n, np.float32), is_first,
                   is_last, is_last.copy(), {"episode_id": ep_id})


@pytest.fixture
def store():
    # lengths (steps incl. the final one): 11, 4, 31, 7
    return EpisodeStore.from_episodes([episode(i, s) for i, s in enumerate([10, 3, 30, 6])])


def test_layout(store):
    assert store.num_steps == 11 + 4 + 31 + 7 and store.num_episodes == 4
    assert store.num_transitions == store.num_steps - 4
    np.testing.assert_array_equal(store.episode_bounds,
                                  [[0, 11], [11, 15], [15, 46], [46, 53]])
    assert store.observation.shape == (53, 8, 8, 1) and store.observation.flags.c_contiguous
    assert store.obs_shape == (8, 8, 1) and store.num_actions == 5
    assert store.is_first.sum() == 4 and store.is_last.sum() == 4


def test_windows_shapes_and_dtypes(store):
    b = store.sample_windows(np.random.default_rng(0), 6, 5)
    assert b["observation"].shape == (6, 5, 8, 8, 1) and b["observation"].dtype == np.uint8
    for k, dt in [("action", np.int32), ("prev_action", np.int32), ("reward", np.float32),
                  ("discount", np.float32), ("is_first", bool), ("is_last", bool),
                  ("is_terminal", bool), ("index", np.int64)]:
        assert b[k].shape == (6, 5) and b[k].dtype == dt, k


def test_windows_stay_inside_one_episode(store):
    b = store.sample_windows(np.random.default_rng(1), 500, 8)
    ep = b["observation"][:, :, 0, 0, 0]
    step = b["observation"][:, :, 0, 1, 0].astype(int)
    assert (ep == ep[:, :1]).all()                      # one episode per window
    assert (np.diff(step, axis=1) == 1).all()           # consecutive steps
    assert set(np.unique(ep)) == {0, 2}                 # episodes 1 and 3 are too short
    # is_first only where an episode really starts; prev_action = action shifted right.
    np.testing.assert_array_equal(b["is_first"], step == 0)
    np.testing.assert_array_equal(b["prev_action"][:, 1:], b["action"][:, :-1])
    assert (b["prev_action"][b["is_first"]] == 0).all()
    np.testing.assert_array_equal(store.episode_of(b["index"]), ep)
    # Uniform over valid starts: every start of episode 2 (31 - 8 + 1 = 24) is reached.
    starts = step[ep[:, 0] == 2, 0]
    assert set(starts) == set(range(24))


def test_window_ending_on_final_step(store):
    b = store.sample_windows(np.random.default_rng(0), 300, 11)
    ends = b["is_last"][:, -1]
    assert ends.any() and not b["is_last"][:, :-1].any()
    assert (b["action"][:, -1][ends] == 0).all()  # placeholder action on the final step
    assert (b["observation"][:, :, 0, 0, 0] == 2).sum() > 0


def test_determinism(store):
    a = store.sample_windows(np.random.default_rng(5), 8, 4)
    b = store.sample_windows(np.random.default_rng(5), 8, 4)
    c = store.sample_windows(np.random.default_rng(6), 8, 4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["index"], c["index"])
    np.testing.assert_array_equal(store.sample_windows(3, 8, 4)["index"],
                                  store.sample_windows(3, 8, 4)["index"])


def test_too_long_windows(store):
    with pytest.raises(DittoError, match="No episode is long enough.*Expected: <= the "
                                         "longest episode \\(31 steps"):
        store.sample_windows(np.random.default_rng(0), 2, 32)


def test_expert_windows_gather_latents(store):
    latents = np.arange(store.num_steps, dtype=np.float32)[:, None] * np.ones((1, 3))
    b = store.sample_expert_windows(np.random.default_rng(0), 16, 4)
    assert b["index"].shape == (16, 5) and b["action"].shape == (16, 5)
    z = latents[b["index"]]
    assert z.shape == (16, 5, 3)
    assert (np.diff(b["index"], axis=1) == 1).all()
    ep = store.episode_of(b["index"])
    assert (ep == ep[:, :1]).all()
    np.testing.assert_array_equal(b["action"], store.action[b["index"]])
    assert "observation" not in store.sample_expert_windows(0, 2, 4, with_observation=False)


def test_empty_and_mixed_shapes():
    with pytest.raises(DittoError, match="No episodes to store"):
        EpisodeStore.from_episodes([])
    with pytest.raises(DittoError, match="different frame shapes"):
        EpisodeStore.from_episodes([episode(0, 3), episode(1, 3, shape=(4, 4, 1))])
