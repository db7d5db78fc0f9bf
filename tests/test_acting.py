"""Acting agents and pixel BC: pinned outputs, and train against act.

The pins play a fixed rollout (2 envs x 30 steps, episode starts inside it) through the
world-model agent (DITTO's actor on the RSSM posterior filter) and the pixel-BC agent, and
train pixel BC for a few updates, comparing with references recorded from the code before
the acting and pixel-BC speed work (tests/data/acting_pins.json). Rewrite them only when
the maths is meant to change: `python tests/test_acting.py --write`.
"""
import json
import os
import sys

import jax
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PINS = os.path.join(REPO, "tests", "data", "acting_pins.json")
POLICY_CONFIG = os.path.join(REPO, "experiments/configs/policy.py:tiny")
WM_CONFIG = os.path.join(REPO, "experiments/configs/wm.py:tiny")
OBS_SHAPE, NUM_ACTIONS = (64, 64, 1), 6
NUM_ENVS, STEPS = 2, 30
FIRSTS = ((0, 0), (0, 1), (11, 0), (19, 1))         # (step, env) episode starts


def _world_model():
    from ditto_jax.core.config import load_config
    from ditto_jax.models.train_step import init_train_state
    return init_train_state(load_config(WM_CONFIG), OBS_SHAPE, NUM_ACTIONS,
                            jax.random.key(0))


def _method(name, wm_state):
    from ditto_jax import methods
    from ditto_jax.core.config import load_config
    from ditto_jax.stages.policy_data import make_context
    config = load_config(POLICY_CONFIG)
    method = methods.get(name)
    ctx = make_context(config, wm_state,
                       {"num_actions": NUM_ACTIONS, "obs_shape": list(OBS_SHAPE)})
    return method, config, ctx, method.init(config, ctx, jax.random.key(1))


def _rollout_inputs():
    """Frames with some structure (a moving bright square on noise) and the starts."""
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 64, (STEPS, NUM_ENVS) + OBS_SHAPE).astype(np.uint8)
    for t in range(STEPS):
        for e in range(NUM_ENVS):
            y, x = (3 * t + 7 * e) % 56, (5 * t + 11 * e) % 56
            obs[t, e, y:y + 8, x:x + 8] = 230
    first = np.zeros((STEPS, NUM_ENVS), bool)
    for t, e in FIRSTS:
        first[t, e] = True
    return obs, first


def play(agent, obs, first, seed=5):
    """(actions (T, N), log pi(.|s) (T, N, A)) of `agent` over the rollout."""
    carry = agent.init(NUM_ENVS)
    key = jax.random.key(seed)
    actions, logp = [], []
    for t in range(len(obs)):
        carry, a = agent.act(carry, obs[t], first[t], jax.random.fold_in(key, t))
        actions.append(np.asarray(a))
        logp.append(np.log(np.asarray(agent.last_probs, np.float64)))
    return np.stack(actions), np.stack(logp)


def _fake_store(lengths=(20, 7, 15), seed=3):
    from ditto_jax.data.store import EpisodeStore
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    is_first, is_last = np.zeros(n, bool), np.zeros(n, bool)
    is_first[starts] = True
    is_last[starts + np.asarray(lengths) - 1] = True
    obs = rng.integers(0, 256, (n,) + OBS_SHAPE).astype(np.uint8)
    return EpisodeStore(obs, rng.integers(0, NUM_ACTIONS, n).astype(np.int32),
                        np.zeros(n, np.float32), np.ones(n, np.float32), is_first, is_last,
                        np.zeros(n, bool), starts, lengths, num_actions=NUM_ACTIONS)


def train_bc(updates=4):
    """Metrics of the first `updates` pixel-BC updates (the method's own sampler and step)."""
    wm_state = _world_model()
    method, config, ctx, state = _method("bc", wm_state)
    data = jax.tree.map(jax.numpy.asarray,
                        method.make_data(config, ctx, _fake_store(), None))
    step = jax.jit(method.train_step(config, ctx))
    sample = jax.jit(lambda d, k: method.sample(config, d, k))
    key, rows = jax.random.key(2), []
    for s in range(updates):
        batch = sample(data, jax.random.fold_in(key, s))
        state, metrics = step(state, batch, jax.random.fold_in(key, 1000 + s), None)
        rows.append({k: float(v) for k, v in sorted(metrics.items())})
    return rows, state


def compute_pins():
    wm_state = _world_model()
    obs, first = _rollout_inputs()
    out = {}
    for name in ("ditto", "bc"):
        method, config, ctx, state = _method(name, wm_state)
        for greedy in (False, True):
            agent = method.make_agent(config, ctx, wm_state, state, greedy=greedy)
            actions, logp = play(agent, obs, first)
            out[f"{name}{'_greedy' if greedy else ''}"] = {
                "actions": actions.tolist(), "logp": np.round(logp, 7).tolist()}
    rows, _ = train_bc()
    out["bc_train"] = rows
    return out


@pytest.fixture(scope="module")
def pins():
    with open(PINS) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def current():
    return compute_pins()


@pytest.mark.parametrize("name", ["ditto", "ditto_greedy", "bc", "bc_greedy"])
def test_acting_matches_the_pinned_rollout(name, pins, current):
    """Same actions and log-probabilities, step by step, across episode starts."""
    want, got = pins[name], current[name]
    np.testing.assert_array_equal(np.asarray(got["actions"]), np.asarray(want["actions"]))
    np.testing.assert_allclose(np.asarray(got["logp"]), np.asarray(want["logp"]),
                               rtol=1e-5, atol=2e-5)
    # The pin is not vacuous: pi(.|s) varies over the rollout, and sampled play varies.
    assert np.asarray(want["logp"]).std(0).mean() > 1e-3
    if not name.endswith("greedy"):
        assert len(np.unique(want["actions"])) > 1


@pytest.mark.parametrize("conv_impl,dense_layout", [("strided", "out_in"),
                                                     ("lax", "in_out")])
def test_every_acting_layout_plays_the_pinned_rollout(conv_impl, dense_layout, pins):
    """The world-model agent's forward-only choices (the `strided` im2col encoder that
    `acting` picks from 4 envs up, and the trained Dense layout) play the same pinned
    rollout as the defaults: the same actions, log-probabilities to 1e-5."""
    from ditto_jax.agents.acting import WorldModelAgent
    wm_state = _world_model()
    method, config, ctx, state = _method("ditto", wm_state)
    agent = WorldModelAgent(wm_state, method.actor_apply(config, ctx), state.actor,
                            conv_impl=conv_impl, dense_layout=dense_layout)
    actions, logp = play(agent, *_rollout_inputs())
    np.testing.assert_array_equal(actions, np.asarray(pins["ditto"]["actions"]))
    np.testing.assert_allclose(logp, np.asarray(pins["ditto"]["logp"]), rtol=1e-5, atol=2e-5)


def test_bf16_acting_stays_near_the_pinned_rollout(pins):
    """`matmul_dtype="bfloat16"` (opt-in) moves the pinned rollout's log-probabilities off
    the float32 pin by bfloat16 rounding only: the RSSM's products and the encoder's
    (`strided`, which the default `acting` rule picks from 4 envs up on CPU)."""
    conv_impl = "strided"
    from ditto_jax.agents.acting import WorldModelAgent
    wm_state = _world_model()
    method, config, ctx, state = _method("ditto", wm_state)
    agent = WorldModelAgent(wm_state, method.actor_apply(config, ctx), state.actor,
                            conv_impl=conv_impl, matmul_dtype="bfloat16")
    kernels = [v.dtype for name, layer in agent._act_params["params"]["rssm"].items()
               for k, v in layer.items() if k == "kernel"]
    assert kernels and set(kernels) == {np.dtype(jax.numpy.bfloat16)}
    _, logp = play(agent, *_rollout_inputs())
    diff = np.abs(logp - np.asarray(pins["ditto"]["logp"]))
    assert 1e-5 < diff.max() < 0.05, diff.max()
    with pytest.raises(ValueError, match="matmul_dtype must be one of"):
        WorldModelAgent(wm_state, method.actor_apply(config, ctx), state.actor,
                        matmul_dtype="float16")
    # Pixel BC has no world model to act with: refused by name, before anything runs
    # (`ditto eval --act-matmul bfloat16` on a BC policy: exit 2, this message).
    from ditto_jax import methods
    from ditto_jax.errors import DittoError
    with pytest.raises(DittoError, match="Pixel BC acts in float32 only") as e:
        methods.get("bc").make_agent(config, ctx, wm_state, None, matmul_dtype="bfloat16")
    assert e.value.field == "--act-matmul" and e.value.got == "bfloat16"


def test_bf16_acting_plays_one_env_as_row_0_of_a_pair():
    """A single env under bfloat16 acting is computed as a batch of two (XLA's one-row
    bf16 product is slow): its pi(.|s) and carry are row 0 of a pair of identical rows,
    and the carry it returns has one row."""
    from ditto_jax.agents.acting import WorldModelAgent
    wm_state = _world_model()
    method, config, ctx, state = _method("ditto", wm_state)
    agent = WorldModelAgent(wm_state, method.actor_apply(config, ctx), state.actor,
                            matmul_dtype="bfloat16")
    obs, first = _rollout_inputs()
    one, pair = agent.init(1), agent.init(2)
    for t in range(4):
        key = jax.random.fold_in(jax.random.key(0), t)
        one, _ = agent.act(one, obs[t, :1], first[t, :1], key)
        p1 = np.asarray(agent.last_probs)
        pair, _ = agent.act(pair, np.repeat(obs[t, :1], 2, 0), np.repeat(first[t, :1], 2),
                            key)
        np.testing.assert_allclose(p1, np.asarray(agent.last_probs)[:1], rtol=1e-6,
                                   atol=1e-7)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(pair)):
        assert a.shape[0] == 1
        np.testing.assert_allclose(a, b[:1], rtol=1e-6, atol=1e-6)


def test_pixel_bc_training_matches_the_pin(pins, current):
    assert len(pins["bc_train"]) == len(current["bc_train"]) == 4
    for want, got in zip(pins["bc_train"], current["bc_train"]):
        assert want.keys() == got.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-5), k
    # Training moves: the loss of the fourth update is not the first's.
    assert pins["bc_train"][0]["bc_loss"] != pins["bc_train"][-1]["bc_loss"]


# ----------------------------------------------------------------- the protocol
def test_every_agent_implements_the_protocol():
    from ditto_jax.agents import acting
    wm_state = _world_model()
    agents = [acting.RandomAgent(NUM_ACTIONS, 0), acting.PythonPolicyAgent(lambda o: 0),
              acting.ScriptedAgent("tracker", "pong", NUM_ACTIONS)]
    for name in ("ditto", "bc"):
        method, config, ctx, state = _method(name, wm_state)
        agents.append(method.make_agent(config, ctx, wm_state, state))
    assert {type(a).__name__ for a in agents} == {
        "RandomAgent", "PythonPolicyAgent", "ScriptedAgent", "WorldModelAgent",
        "PixelBCAgent"}
    for agent in agents:
        assert isinstance(agent, acting.Agent), type(agent).__name__
    assert not isinstance(object(), acting.Agent)
    # The loop's contract: (carry, one int action per env); random play draws from the
    # full action set.
    obs, first = _rollout_inputs()
    rand = acting.RandomAgent(NUM_ACTIONS, 0)
    seen = np.concatenate([rand.act(None, obs[0], first[0], None)[1] for _ in range(50)])
    assert seen.shape == (100,) and set(seen.tolist()) == set(range(NUM_ACTIONS))


@pytest.fixture
def fast_compile():
    """XLA without its expensive optimisations (~3x faster compiles; tiny models)."""
    old = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", old)


@pytest.mark.parametrize("name", ["ditto", "bc"])
def test_select_keeps_the_rows_it_names(name, fast_compile):
    """`select(carry, rows)` (the evaluation loop's shrinking batch) continues those rows
    exactly as the whole batch would: the same pi(.|s), step by step, across an episode
    start. Relaxed latents and greedy actions, so no row depends on the batch's noise."""
    from ditto_jax.core.config import load_config
    from ditto_jax.models.train_step import init_train_state
    config = load_config(WM_CONFIG)
    config.model.latent = "probs"
    wm_state = init_train_state(config, OBS_SHAPE, NUM_ACTIONS, jax.random.key(0))
    method, pconfig, ctx, state = _method(name, wm_state)
    obs, first = _rollout_inputs()
    whole = method.make_agent(pconfig, ctx, wm_state, state, greedy=True)
    part = method.make_agent(pconfig, ctx, wm_state, state, greedy=True)
    carry_w, carry_p = whole.init(NUM_ENVS), part.init(NUM_ENVS)
    key = jax.random.key(5)
    for t in range(STEPS):
        k = jax.random.fold_in(key, t)
        carry_w, a_w = whole.act(carry_w, obs[t], first[t], k)
        if t < 8:
            carry_p, _ = part.act(carry_p, obs[t], first[t], k)
            continue
        if t == 8:
            carry_p = part.select(carry_p, np.array([1]))
        carry_p, a_p = part.act(carry_p, obs[t, 1:], first[t, 1:], k)
        assert a_p.shape == (1,) and a_p[0] == a_w[1]
        np.testing.assert_allclose(np.asarray(part.last_probs)[0],
                                   np.asarray(whole.last_probs)[1], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------- train against act
def test_encode_store_is_the_acting_filter_over_episodes():
    """The expert latents DITTO trains on are the posteriors the acting agent computes
    when it sees the same frames and actions, step by step across an episode start."""
    from ditto_jax.models.world_model import WorldModel
    from ditto_jax.stages.policy_data import encode_store
    wm_state = _world_model()
    method, config, ctx, state = _method("ditto", wm_state)
    agent = method.make_agent(config, ctx, wm_state, state)
    store = _fake_store(lengths=(14, 9), seed=4)
    seed, chunk = 7, 256
    latents = encode_store(wm_state, store, chunk=chunk, seed=seed)
    # encode_store filters chunk 0 with key fold_in(key(seed), 0), one key per step.
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0), chunk)
    post = wm_state.model.apply(wm_state.params, 1, method=WorldModel.initial_state)
    deter = []
    for t in range(store.num_steps):
        prev = jax.nn.one_hot(store.prev_action[t:t + 1], ctx.action_dim)
        post = agent.filter(agent.params, post, prev, store.observation[t:t + 1],
                            store.is_first[t:t + 1], keys[t])
        for k in ("deter", "stoch", "logits"):
            np.testing.assert_allclose(np.asarray(post[k][0]), latents[k][t], rtol=1e-5,
                                       atol=1e-5, err_msg=f"{k} at step {t}")
        deter.append(np.asarray(post["deter"][0]))
    # Not vacuous: the state moves, and the second episode starts afresh.
    assert np.abs(np.diff(deter, axis=0)).max() > 1e-3


def _stack_by_definition(store, t, k):
    """Frames t-k+1..t of t's episode, its first frame repeated before it (B=1)."""
    start = store.starts[store.episode_of(np.array([t]))[0]]
    return np.concatenate([store.observation[max(t - k + 1 + j, start)] for j in range(k)],
                          -1)


def test_pixel_bc_trains_on_the_frames_its_agent_stacks_across_an_episode_start():
    from ditto_jax.agents.bc import PixelPolicy, stack_frames
    wm_state = _world_model()
    method, config, ctx, state = _method("bc", wm_state)
    k = int(config.bc_frame_stack)
    store = _fake_store(lengths=(3, 8, 6), seed=5)       # one episode shorter than k
    data = jax.tree.map(jax.numpy.asarray, method.make_data(config, ctx, store, None))
    index = np.arange(store.num_steps)
    batch = method.batch_at(config, data, jax.numpy.asarray(index))
    frames = np.asarray(batch["frames"])
    assert frames.shape == (store.num_steps,) + OBS_SHAPE[:2] + (k * OBS_SHAPE[2],)
    net = PixelPolicy(NUM_ACTIONS, config.bc_depth)
    logp_train = np.asarray(jax.nn.log_softmax(net.apply(state.params, frames)))
    agent = method.make_agent(config, ctx, wm_state, state, greedy=True)
    carry = agent.init(1)
    for t in index:
        want = _stack_by_definition(store, t, k)
        np.testing.assert_array_equal(frames[t], want, err_msg=f"training frames, step {t}")
        carry, _ = agent.act(carry, store.observation[t:t + 1], store.is_first[t:t + 1],
                             jax.random.key(0))
        np.testing.assert_array_equal(np.asarray(stack_frames(*carry))[0], want,
                                      err_msg=f"acting frames, step {t}")
        np.testing.assert_allclose(np.log(np.asarray(agent.last_probs[0])), logp_train[t],
                                   rtol=1e-5, atol=1e-5)
    # Not vacuous: the first episode's start is repeated, and stacks differ from step to step.
    assert (frames[1][..., 0] == frames[1][..., 1]).all()
    assert not (frames[1][..., 2] == frames[1][..., 3]).all()


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        os.makedirs(os.path.dirname(PINS), exist_ok=True)
        with open(PINS, "w") as f:
            json.dump(compute_pins(), f)
        print("wrote", PINS)
