"""Policies: scripted experts (short checks; full figures under -m slow), epsilon and
random policies, and the make_policy registry."""

import numpy as np
import pytest

from ditto_jax.envs import make_env
from ditto_jax.errors import DittoError
from ditto_jax.experts.base import EpsilonPolicy, Policy, RandomPolicy
from ditto_jax.experts.registry import expert_games, make_policy, run_episodes


class _Constant:
    """A policy that always answers `action` (a factory target for make_policy)."""

    def __init__(self, action=0):
        self.action = action

    def reset(self, env, seed):
        pass

    def act(self, obs, env):
        return self.action


def constant_factory(*, game, num_actions, seed, action=0):
    return _Constant(action)


def _play(env, policy, steps, seed):
    obs, _ = env.reset(seed=seed)
    policy.reset(env, seed)
    actions, rewards = [], []
    for _ in range(steps):
        a = policy.act(obs, env)
        actions.append(a)
        obs, r, term, trunc, _ = env.step(a)
        rewards.append(r)
        if term or trunc:
            break
    return np.array(actions), np.array(rewards)


def test_pong_expert_wins_the_first_points():
    env = make_env("pong", "ditto")
    policy = make_policy("expert", game="pong", num_actions=6, seed=0)
    _, rewards = _play(env, policy, 300, seed=0)
    assert (rewards > 0).sum() >= 2 and (rewards < 0).sum() == 0


def test_breakout_expert_scores():
    env = make_env("breakout", "ditto")
    policy = make_policy("expert", game="breakout", num_actions=4, seed=0)
    _, rewards = _play(env, policy, 400, seed=0)
    assert rewards.sum() >= 10


def test_lookahead_leaves_the_real_episode_alone():
    """Under sticky actions, replaying the expert's actions without any look-ahead gives
    the very same episode: the expert's simulations never touch the real emulator."""
    env = make_env("pong", "machado")
    policy = make_policy("expert", game="pong", num_actions=6, seed=0)
    obs, _ = env.reset(seed=4)
    policy.reset(env, 4)
    actions, frames, rewards = [], [], []
    for _ in range(150):
        a = policy.act(obs, env)
        obs, r, *_ = env.step(a)
        actions.append(a), frames.append(obs), rewards.append(r)
    replay = make_env("pong", "machado")
    replay.reset(seed=4)
    for a, f, r in zip(actions, frames, rewards):
        obs, r2, *_ = replay.step(a)
        np.testing.assert_array_equal(obs, f)
        assert r2 == r


def test_expert_acts_in_the_env_action_set():
    env = make_env("breakout", "ditto", full_action_space=True)
    policy = make_policy("expert", game="breakout", num_actions=18, seed=0)
    actions, _ = _play(env, policy, 60, seed=0)
    meanings = env.unwrapped.get_action_meanings()
    assert {meanings[a] for a in actions} <= {"NOOP", "FIRE", "RIGHT", "LEFT"}
    assert "FIRE" in {meanings[a] for a in actions}  # launched the ball


def test_epsilon_policy_rate_and_determinism():
    def draws(seed):
        policy = EpsilonPolicy(_Constant(99), 0.3, num_actions=6, seed=seed)
        policy.reset(None, seed)
        return np.array([policy.act(None, None) for _ in range(4000)])

    a, b, c = draws(1), draws(1), draws(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    random = a != 99
    assert abs(random.mean() - 0.3) < 0.03
    assert set(a[random]) == set(range(6))
    assert isinstance(make_policy("random", game="pong", num_actions=6, epsilon=0.1),
                      EpsilonPolicy)
    with pytest.raises(DittoError, match="epsilon"):
        EpsilonPolicy(_Constant(), 1.5, 6)


def test_random_policy():
    policy = make_policy("random", game="pong", num_actions=6, seed=3)
    assert isinstance(policy, RandomPolicy) and isinstance(policy, Policy)
    policy.reset(None, 3)
    a = [policy.act(None, None) for _ in range(600)]
    policy.reset(None, 3)
    assert a == [policy.act(None, None) for _ in range(600)]
    assert set(a) == set(range(6))


def test_make_policy_from_import_path():
    policy = make_policy(f"{__name__}:constant_factory", game="Pong", num_actions=6,
                         action=3)
    assert policy.act(None, None) == 3


def test_make_policy_errors():
    assert expert_games() == ["breakout", "pong"]
    with pytest.raises(DittoError) as err:
        make_policy("expert", game="MsPacman", num_actions=9)
    assert "MsPacman" in str(err.value)
    assert "pong" in str(err.value) and "breakout" in str(err.value)
    with pytest.raises(DittoError, match="no_such_module"):
        make_policy("no_such_module:factory", game="pong", num_actions=6)
    with pytest.raises(DittoError, match="no_such_factory"):
        make_policy(f"{__name__}:no_such_factory", game="pong", num_actions=6)
    with pytest.raises(DittoError, match="expert"):
        make_policy("best", game="pong", num_actions=6)
    with pytest.raises(DittoError, match="reset"):
        make_policy("builtins:dict", game="pong", num_actions=6)
    with pytest.raises(DittoError, match="game"):
        make_policy("expert", game="nonsense", num_actions=6)


@pytest.mark.slow
def test_pong_expert_five_episodes():
    result = run_episodes("expert", "pong", "ditto", episodes=5, seed=0)
    assert result["mean_return"] >= 20, result


@pytest.mark.slow
def test_breakout_expert_five_episodes():
    result = run_episodes("expert", "breakout", "ditto", episodes=5, seed=0,
                          max_steps=27_000)
    assert result["mean_return"] >= 300, result


class _ProbsAgent:
    """A learner exposing pi(.|s) as the trained-policy agents do (`last_probs`): it plays
    `inner` (None: uniform random) and reports `probs_of(actions)` as its distribution."""

    def __init__(self, inner, num_actions, probs_of):
        self.inner, self.num_actions, self.probs_of = inner, num_actions, probs_of
        self.rng = np.random.default_rng(0)

    def bind(self, env, seed):
        if self.inner is not None:
            self.inner.bind(env, seed)

    def init(self, num_envs):
        return None

    def act(self, carry, obs, is_first, key):
        if self.inner is not None:
            _, actions = self.inner.act(None, obs, is_first, None)
        else:
            actions = self.rng.integers(self.num_actions, size=len(obs))
        self.last_probs = self.probs_of(np.asarray(actions))
        return carry, actions


def test_on_policy_agreement_and_expert_probability_in_the_learners_states():
    """In the learner's own states (real ALE, the tracker expert asked at every step):
    agreement counts the actions taken; E[pi(a_E)] and argmax agreement read pi(.|s)."""
    from ditto_jax.envs import atari
    from ditto_jax.envs.vector import make_vector_env
    from ditto_jax.agents.acting import ScriptedAgent
    from ditto_jax.stages.evaluation import ExpertAgreement, run_episodes as play
    n = len(atari.action_meanings("pong"))

    def measure(agent):
        observer = ExpertAgreement("tracker", "pong", n)
        play(lambda k: make_vector_env("pong", k, "ditto", size=(64, 64), seed=3,
                                       backend="sync"),
             agent, episodes=2, num_envs=2, seed=3, max_steps=60, observer=observer)
        return observer.result()

    # The expert itself, one-hot: agrees everywhere, by all three measures.
    me = measure(_ProbsAgent(ScriptedAgent("tracker", "pong", n), n,
                             lambda a: np.eye(n)[a]))
    assert me["expert_agreement_steps"] == 120
    assert me["expert_agreement"] == me["expert_prob_on_policy"] == 1.0
    assert me["argmax_agreement_on_policy"] == 1.0
    # Uniform random play reporting a uniform pi: E[pi(a_E)] is exactly 1/A, whatever the
    # expert says; argmax (first of ties = action 0) agrees exactly when the expert says 0.
    rand = measure(_ProbsAgent(None, n, lambda a: np.full((len(a), n), 1.0 / n)))
    assert rand["expert_prob_on_policy"] == pytest.approx(1.0 / n)
    assert rand["expert_agreement"] < 0.6
    assert 0.0 <= rand["argmax_agreement_on_policy"] < 1.0
    # A learner that plays the expert's action but puts only 0.4 on it (the rest spread):
    # sampled agreement 1, E[pi(a_E)] 0.4, argmax still the expert's action.
    def soft(a):
        p = np.full((len(a), n), 0.6 / (n - 1))
        p[np.arange(len(a)), a] = 0.4
        return p
    sure = measure(_ProbsAgent(ScriptedAgent("tracker", "pong", n), n, soft))
    assert sure["expert_agreement"] == 1.0 and sure["argmax_agreement_on_policy"] == 1.0
    assert sure["expert_prob_on_policy"] == pytest.approx(0.4)
    # Without pi(.|s) (scripted agents), only the agreement is reported.
    plain = measure(ScriptedAgent("tracker", "pong", n))
    assert plain["expert_agreement"] == 1.0 and "expert_prob_on_policy" not in plain


def test_breakout_tracker_launches_scores_and_reads_only_the_screen():
    """The Breakout tracker: FIRE exactly when no ball is in play (the start, and after a
    life lost while the env played LEFT instead of it), points scored, and no hidden
    memory: a fresh tracker that has seen only the previous screen (and the action taken)
    and holds the episode's aim offset chooses exactly what the playing one chooses."""
    from ditto_jax.experts.tracker import BreakoutTracker
    env = make_env("breakout", "ditto")
    meanings = env.unwrapped.get_action_meanings()
    left = meanings.index("LEFT")
    policy = make_policy("tracker", game="breakout", num_actions=4, seed=0)
    assert isinstance(policy, BreakoutTracker)
    obs, _ = env.reset(seed=7)
    policy.reset(env, 7)
    ale = env.unwrapped.ale
    total, checked, fired_after_loss = 0.0, 0, 0
    for t in range(700):
        no_ball = int(ale.getRAM()[101]) == 0
        if t % 25 == 10 and not no_ball:  # a tracker born now, shown the last screen only
            fresh = BreakoutTracker()
            fresh.reset(env, None)
            fresh._prev, fresh._emu.last_action = policy._prev, policy._emu.last_action
            fresh.aim = policy.aim  # the episode's aim offset (drawn from the seed)
            a = policy.act(obs, env)
            assert fresh.act(obs, env) == a
            checked += 1
        else:
            a = policy.act(obs, env)
        assert (meanings[a] == "FIRE") == no_ball, (t, meanings[a])
        fired_after_loss += no_ball and ale.lives() < 5
        if 300 <= t < 330:  # the env plays LEFT instead: the ball is lost
            a = left
            policy.note_action(a)
        obs, r, term, trunc, info = env.step(a)
        total += r
        if term or trunc:
            break
    assert checked >= 20
    assert total >= 20, total
    assert ale.lives() < 5 and fired_after_loss >= 1  # relaunched after the lost life
    # The aim offset is drawn per episode from the seed: offset +- spread, all of them used.
    aims = set()
    for seed in range(40):
        policy.reset(env, seed)
        aims.add(policy.aim)
    assert aims == {0, 1, 2, 3, 4}
    policy.reset(env, None)
    assert policy.aim == 2


def test_breakout_tracker_on_policy_agreement():
    """The Breakout tracker asked in the learner's own states (evaluation's
    ExpertAgreement, real ALE, sync vector env): the tracker as the learner agrees
    everywhere; uniform random play agrees about as often as chance allows."""
    from ditto_jax.envs import atari
    from ditto_jax.envs.vector import make_vector_env
    from ditto_jax.agents.acting import ScriptedAgent
    from ditto_jax.stages.evaluation import ExpertAgreement, run_episodes as play
    n = len(atari.action_meanings("breakout"))

    def measure(agent):
        observer = ExpertAgreement("tracker", "breakout", n)
        play(lambda k: make_vector_env("breakout", k, "ditto", size=(64, 64), seed=3,
                                       backend="sync"),
             agent, episodes=2, num_envs=2, seed=3, max_steps=150, observer=observer)
        return observer.result()

    me = measure(_ProbsAgent(ScriptedAgent("tracker", "breakout", n), n,
                             lambda a: np.eye(n)[a]))
    assert me["expert_agreement_steps"] == 300 and me["expert_agreement_with"] == "tracker"
    assert me["expert_agreement"] == me["expert_prob_on_policy"] == 1.0
    rand = measure(_ProbsAgent(None, n, lambda a: np.full((len(a), n), 1.0 / n)))
    assert rand["expert_prob_on_policy"] == pytest.approx(1.0 / n)
    assert 0.1 < rand["expert_agreement"] < 0.45, rand


def test_breakout_demo_preset_is_the_demo_on_breakout_with_its_tracker():
    """breakout_demo = the demo's data, world model and methods, on Breakout, evaluated
    with the recording cap; its `tracker` resolves to the Breakout tracker."""
    import os
    from ditto_jax.core.config import load_python_file
    from ditto_jax.experts.tracker import BreakoutTracker
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    presets = load_python_file(os.path.join(root, "experiments/configs/pipeline.py"),
                               "get_config")
    bo, demo = presets.get_config("breakout_demo").to_dict(), presets.get_config("demo").to_dict()
    assert bo["game"] == "breakout" and bo["data"]["expert_policy"] == "tracker"
    assert bo["eval"]["max_steps"] == bo["data"]["max_steps"] == 5_000
    for key in ("data", "wm", "policy", "methods", "seeds", "expert_episodes", "paths"):
        assert bo[key] == demo[key], key
    assert {k for k in bo["eval"] if bo["eval"][k] != demo["eval"][k]} == {"max_steps"}
    assert isinstance(make_policy(bo["data"]["expert_policy"], game=bo["game"], num_actions=4),
                      BreakoutTracker)


def test_breakout_ne_preset_is_breakout_demo_as_an_ne_study_with_the_ball_lever():
    """breakout_ne = breakout_demo's data, with the motion-weighted world-model loss and
    3,000 updates, as an N_E study (1 and 11) of four methods x 3 seeds, sampled actions,
    on-policy agreement measured."""
    from ditto_jax.core.config import load_config
    from ditto_jax.pipeline.plan import data_fields, expert_episode_counts, wm_fields
    from ditto_jax.pipeline.run import DEFAULT_CONFIG
    bo, ne = (load_config(f"{DEFAULT_CONFIG}:{p}") for p in ("breakout_demo", "breakout_ne"))
    assert data_fields(ne) == data_fields(bo)
    wm_bo, wm_ne = wm_fields(bo)["wm"], wm_fields(ne)["wm"]
    assert wm_ne["loss"].pop("recon") == "motion_weighted"
    assert wm_bo["loss"].pop("recon") == "object_weighted"
    assert wm_ne == wm_bo and ne.wm.train.steps == 3_000
    assert expert_episode_counts(ne) == [1, 11]
    assert (ne.game, ne.seeds, ne.methods, ne.eval.episodes, ne.eval.policy,
            ne.eval.agreement, ne.eval.max_steps) == (
        "breakout", "0,1,2", "ditto,ditto_bctr,dbc,bc", 10, "sample", True, 5_000)
    assert ne.policy.to_dict() == bo.policy.to_dict()
