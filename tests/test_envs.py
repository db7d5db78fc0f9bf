"""Atari environments: protocols, shapes, action sets, errors, seeding, vector backends."""

import dataclasses
import zlib

import numpy as np
import pytest

from ditto_jax.envs import (
    PROTOCOLS,
    action_meanings,
    ale_id,
    canonical_game,
    make_env,
    make_vector_env,
    num_actions,
)
from ditto_jax.errors import DittoError


def _play(env, actions, seed):
    obs, _ = env.reset(seed=seed)
    frames, rewards = [obs], []
    for a in actions:
        obs, r, term, trunc, _ = env.step(int(a))
        frames.append(obs)
        rewards.append(r)
        if term or trunc:
            break
    return np.stack(frames), np.array(rewards)


def test_protocols_are_as_specified():
    d, m = PROTOCOLS["ditto"], PROTOCOLS["machado"]
    assert (d.repeat_action_probability, d.frame_skip, d.noop_max) == (0.0, 4, 30)
    assert (m.repeat_action_probability, m.frame_skip, m.noop_max) == (0.25, 4, 0)
    assert m.max_episode_frames == 108_000 and m.max_episode_steps == 27_000
    assert not d.terminal_on_life_loss and not m.terminal_on_life_loss
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.noop_max = 0


@pytest.mark.parametrize("protocol", ["ditto", "machado"])
def test_observation_shape_and_dtype(protocol):
    env = make_env("pong", protocol, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (64, 64, 1) and obs.dtype == np.uint8
    assert env.observation_space.shape == (64, 64, 1)
    obs, reward, term, trunc, _ = env.step(0)
    assert obs.shape == (64, 64, 1) and obs.dtype == np.uint8
    assert isinstance(float(reward), float) and not term and not trunc
    assert obs.max() > obs.min()  # a real picture, not a blank


def test_non_default_size_and_rgb():
    env = make_env("breakout", size=(84, 72))  # (height, width), deliberately not square
    obs, _ = env.reset(seed=0)
    assert obs.shape == (84, 72, 1)
    env = make_env("breakout", size=32, grayscale=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8


def test_action_sets():
    assert num_actions("pong") == 6 and num_actions("breakout") == 4
    assert num_actions("pong", full_action_space=True) == 18
    assert action_meanings("breakout") == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert make_env("pong").action_space.n == 6
    full = make_env("pong", full_action_space=True)
    assert full.action_space.n == 18
    assert full.unwrapped.get_action_meanings() == action_meanings("pong", True)


def test_game_names():
    assert canonical_game("MsPacman") == "mspacman"
    assert canonical_game("ms_pacman") == "mspacman"
    assert canonical_game("ALE/SpaceInvaders-v5") == "spaceinvaders"
    # Generic fallback: any ROM ale-py ships.
    assert canonical_game("Seaquest") == canonical_game("seaquest") == "seaquest"
    assert ale_id("seaquest") == "ALE/Seaquest-v5"
    assert ale_id("beamrider") == "ALE/BeamRider-v5"
    assert make_env("Seaquest").reset(seed=0)[0].shape == (64, 64, 1)


def test_unknown_game_and_protocol_errors():
    with pytest.raises(DittoError) as err:
        canonical_game("Pongg")
    assert "Pongg" in str(err.value) and "game" in str(err.value)
    assert "pong" in str(err.value) and "breakout" in str(err.value)
    with pytest.raises(DittoError, match="game"):
        make_env("not_a_game")
    with pytest.raises(DittoError) as err:
        make_env("pong", "sticky")
    assert "sticky" in str(err.value) and "ditto" in str(err.value)
    with pytest.raises(DittoError, match="backend"):
        make_vector_env("pong", 1, backend="gpu")


@pytest.mark.parametrize("protocol", ["ditto", "machado"])
def test_seeding_reproducible(protocol):
    actions = np.random.default_rng(0).integers(0, 6, 150)
    f1, r1 = _play(make_env("pong", protocol), actions, seed=7)
    f2, r2 = _play(make_env("pong", protocol), actions, seed=7)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(r1, r2)


def test_noop_starts_depend_on_seed():
    env = make_env("pong", "ditto")
    starts = {env.reset(seed=s)[1]["episode_frame_number"] for s in range(12)}
    assert len(starts) > 3 and min(starts) >= 1 and max(starts) <= 30
    assert make_env("pong", "machado").reset(seed=0)[1]["episode_frame_number"] == 0


def test_make_env_seed_applies_to_first_reset():
    a = make_env("pong", "ditto", seed=5)
    b = make_env("pong", "ditto")
    assert a.reset()[1]["episode_frame_number"] == b.reset(seed=5)[1]["episode_frame_number"]


def test_frame_cap_truncates():
    proto = dataclasses.replace(PROTOCOLS["ditto"], max_episode_frames=200, noop_max=0)
    env = make_env("pong", proto)
    env.reset(seed=0)
    for t in range(1, 60):
        _, _, term, trunc, _ = env.step(0)
        if term or trunc:
            break
    assert (t, term, trunc) == (50, False, True)  # 200 frames / frame skip 4
    env = make_env("pong", max_episode_steps=10)
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(10)][-1]


@pytest.mark.parametrize("game", ["pong", "breakout"])
def test_native_vector_matches_single_env(game):
    """Without sticky actions or no-ops, ale-py's C++ vector env and make_env agree
    bit for bit: same frames, rewards and flags (docs/experts.md)."""
    n = num_actions(game)
    actions = np.random.default_rng(1).integers(0, n, 250)
    single = make_env(game, "ditto", noop_max=0)
    vec = make_vector_env(game, 1, "ditto", noop_max=0, seed=3)
    assert vec.backend == "native"
    o1, _ = single.reset(seed=3)
    o2, _ = vec.reset()
    assert o2.shape == (1, 64, 64, 1) and o2.dtype == np.uint8
    np.testing.assert_array_equal(o1, o2[0])
    for a in actions:
        o1, r1, te1, tr1, _ = single.step(int(a))
        o2, r2, te2, tr2, _ = vec.step(np.array([a]))
        np.testing.assert_array_equal(o1, o2[0])
        assert (r1, te1, tr1) == (r2[0], te2[0], tr2[0])
        if te1 or tr1:
            break


def test_native_vector_sticky_actions_differ_only_by_seed_derivation():
    """Under `machado` the native env takes its seed as the emulator seed, while
    make_env derives one through numpy's SeedSequence. Given that derived seed, the two
    agree exactly, sticky actions included."""
    seed = 1
    _, ale_seed = np.random.SeedSequence(seed).generate_state(2)
    ale_seed = int(np.int32(ale_seed))
    assert ale_seed >= 0  # the native env ignores negative seeds; seed 1 maps to >= 0
    actions = np.random.default_rng(2).integers(0, 6, 200)
    single = make_env("pong", "machado")
    vec = make_vector_env("pong", 1, "machado")
    o1, _ = single.reset(seed=seed)
    o2, _ = vec.reset(seed=ale_seed)
    for a in actions:
        o1, r1, *_ = single.step(int(a))
        o2, r2, *_ = vec.step(np.array([a]))
        np.testing.assert_array_equal(o1, o2[0])
        assert r1 == r2[0]


def test_sync_backend_matches_single_env():
    actions = np.random.default_rng(3).integers(0, 6, 100)
    vec = make_vector_env("pong", 2, "machado", backend="sync", seed=11)
    obs, _ = vec.reset()
    assert obs.shape == (2, 64, 64, 1)
    frames, rewards = _play(make_env("pong", "machado"), actions, seed=12)  # sub-env 1
    got = [obs[1]]
    for a in actions:
        obs, r, *_ = vec.step(np.array([0, a]))
        got.append(obs[1])
    np.testing.assert_array_equal(np.stack(got), frames)


@pytest.mark.parametrize("backend", ["native", "sync"])
def test_vector_autoreset_next_step(backend):
    proto = dataclasses.replace(PROTOCOLS["ditto"], max_episode_frames=40)
    vec = make_vector_env("breakout", 2, proto, size=(48, 40), backend=backend, seed=0,
                          noop_max=0)
    obs, _ = vec.reset()
    assert obs.shape == (2, 48, 40, 1)
    assert vec.single_action_space.n == 4 and vec.action_meanings[1] == "FIRE"
    ended = False
    for _ in range(20):
        obs, rew, term, trunc, _ = vec.step(np.zeros(2, np.int64))
        if ended:
            # NEXT_STEP: the call after the end returns the new episode's first frame.
            assert not term.any() and not trunc.any() and (rew == 0).all()
            break
        ended = bool(trunc.all())
    assert ended
    vec.close()


@pytest.mark.parametrize("backend", ["native", "sync"])
def test_vector_masked_reset_keeps_the_other_episodes(backend):
    vec = make_vector_env("pong", 2, "ditto", backend=backend, seed=0, noop_max=0)
    vec.reset()
    up = vec.action_meanings.index("RIGHT")
    for _ in range(30):   # both paddles move away from where a fresh episode puts them
        obs, *_ = vec.step(np.full(2, up))
    fresh, _ = vec.reset(seed=7, mask=np.array([True, False]))
    start, _ = make_vector_env("pong", 1, "ditto", backend=backend, seed=0,
                               noop_max=0).reset()
    np.testing.assert_array_equal(fresh[1], obs[1])       # env 1 untouched
    assert not np.array_equal(fresh[0], obs[0])           # env 0 is back at a start
    np.testing.assert_array_equal(fresh[0], start[0])     # (no no-ops: starts are equal)
    with pytest.raises(ValueError, match=r"reset mask must have shape \(2,\)"):
        vec.reset(mask=np.array([True]))
    vec.close()


class _ResetWatch:
    """Counts sub-envs reset in the middle of an episode that is neither over nor capped."""

    def __init__(self, env, cap):
        self.env, self.cap = env, cap
        self.length = np.zeros(env.num_envs, np.int64)
        self.ended = np.zeros(env.num_envs, bool)
        self.discarded, self.resets = 0, 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, seed=None, mask=None):
        which = np.ones(self.env.num_envs, bool) if mask is None else mask
        if self.resets:
            self.discarded += int((which & ~self.ended & (self.length < self.cap)).sum())
        self.resets += 1
        self.length[which], self.ended[which] = 0, False
        return self.env.reset(seed=seed) if mask is None else self.env.reset(seed, mask)

    def step(self, actions):
        obs, reward, term, trunc, info = self.env.step(actions)
        self.length = np.where(self.ended, 0, self.length + 1)   # NEXT_STEP autoreset
        self.ended = term | trunc
        return obs, reward, term, trunc, info


def test_evaluation_cap_does_not_discard_running_episodes():
    """A cap of our own (shorter than the protocol's) resets only the capped envs. Random
    Breakout episodes last ~100-400 steps, so under a 200-step cap some end by themselves
    and some are capped, and the envs fall out of step: a reset of all of them at a cap
    would drop the episodes still running elsewhere (more often the long ones)."""
    from ditto_jax.agents.acting import RandomAgent
    from ditto_jax.stages.evaluation import run_episodes
    cap, watches = 200, []

    def make(n):
        watches.append(_ResetWatch(make_vector_env("breakout", n, "ditto", seed=0), cap))
        return watches[-1]

    returns, lengths, _ = run_episodes(make, RandomAgent(4, seed=0), episodes=12,
                                       num_envs=3, seed=0, max_steps=cap)
    watch = watches[0]
    assert len(returns) == len(lengths) == 12
    assert max(lengths) == cap and min(lengths) < cap     # both kinds of ending happened
    assert watch.resets > 1                               # the cap did reset envs
    assert watch.discarded == 0, f"{watch.discarded} running episodes were thrown away"


class _HistoryAgent:
    """Each env's action is a function of that env's own frames since its episode began
    (a per-row step count and the frame), so it cannot depend on the batch around it."""

    def __init__(self, compact):
        self.batches = []
        if compact:
            self.select = lambda carry, rows: carry[np.asarray(rows)]

    def init(self, num_envs):
        return np.zeros(num_envs, np.int64)

    def act(self, carry, obs, is_first, key):
        self.batches.append(len(obs))
        carry = np.where(is_first, 0, carry + 1)
        noise = np.array([zlib.crc32(o.tobytes() + bytes([c % 256])) for o, c in
                          zip(obs, carry)])
        return carry, noise % 4


def test_evaluation_stops_computing_finished_envs_and_keeps_every_episode():
    """An agent with `select` is computed only on the envs still playing (10 -> 4 -> 2 ->
    1 rows), and each env's episode is the same as when every env is computed (sticky
    actions make the envs differ)."""
    from ditto_jax.stages.evaluation import run_episodes
    runs = {}
    for compact in (False, True):
        agent = _HistoryAgent(compact)
        returns, lengths, _ = run_episodes(
            lambda n: make_vector_env("breakout", n, "machado", seed=0), agent, episodes=10,
            num_envs=10, seed=0, max_steps=400)
        runs[compact] = (returns, lengths, agent.batches)
    (r0, l0, b0), (r1, l1, b1) = runs[False], runs[True]
    assert len(set(l0)) > 3                             # episodes end at different steps
    assert (r1, l1) == (r0, l0)
    assert set(b0) == {10} and sorted(set(b1), reverse=True) == [10, 4, 2, 1]
    assert len(b1) == len(b0) and sum(b1) < 0.8 * sum(b0), (sum(b1), sum(b0))


class _AsyncHistoryAgent(_HistoryAgent):
    """`_HistoryAgent` with `act_async`, as the jitted agents have it."""

    def act_async(self, carry, obs, is_first, key):
        carry, actions = self.act(carry, obs, is_first, key)
        return carry, actions, np.full((len(obs), 4), 0.25, np.float32)


def test_overlapped_groups_play_the_same_episodes_and_agreement():
    """`overlap` plays the envs as two vector envs taking turns; env i keeps seed + i, so
    with as many envs as episodes each env plays the same episode as in one group, and
    the on-policy agreement observer (forked per group, then merged) counts the same
    states."""
    from ditto_jax.stages.evaluation import ExpertAgreement, run_episodes
    runs, made = {}, []

    def make(n):
        made.append(n)
        return make_vector_env("breakout", n, "machado", seed=0, backend="sync")

    for overlap in (False, True):
        agent, observer = _AsyncHistoryAgent(compact=True), ExpertAgreement("tracker",
                                                                            "breakout", 4)
        returns, lengths, _ = run_episodes(make, agent, episodes=6, num_envs=6, seed=3,
                                           max_steps=300, observer=observer,
                                           overlap=overlap)
        runs[overlap] = (sorted(zip(returns, lengths)), observer.result(), agent.batches)
    (e0, a0, b0), (e1, a1, b1) = runs[False], runs[True]
    assert made == [6, 3, 3]
    assert len({n for _, n in e0}) > 2                  # episodes end at different steps
    assert e1 == e0
    # The same states are counted; the scripted expert's own episode seeds come from its
    # per-group episode counter, so its choices may differ in a few of them.
    assert a1["expert_agreement_steps"] == a0["expert_agreement_steps"] == sum(
        n for _, n in e0)
    assert 0 < a0["expert_agreement"] < 1
    assert abs(a1["expert_agreement"] - a0["expert_agreement"]) < 0.02, (a1, a0)
    assert a1["expert_prob_on_policy"] == a0["expert_prob_on_policy"] == 0.25
    assert max(b1) == 3 and max(b0) == 6                 # two groups of 3 rows each


def test_overlap_refuses_an_agent_that_reads_the_emulators():
    from ditto_jax.agents.acting import ScriptedAgent
    from ditto_jax.stages.evaluation import run_episodes
    with pytest.raises(ValueError, match="both groups share it"):
        run_episodes(lambda n: make_vector_env("pong", n, "ditto", backend="sync"),
                     ScriptedAgent("tracker", "pong", 6), episodes=4, num_envs=4,
                     overlap=True)
