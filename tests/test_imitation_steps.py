"""DITTO, D-GAIL and D-BC train steps on a toy latent world with a known expert."""
import pytest
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ditto_jax.agents import imitation
from ditto_jax.agents.discriminator import DiscriminatorReward
from ditto_jax.agents.rewards import LatentReward

NUM_ACTIONS, ACTION_DIM, D = 3, 4, 6
# Each action adds its own fixed vector to the latent: the expert always takes 1.
_MOVES = np.random.default_rng(0).normal(size=(ACTION_DIM, D)).astype(np.float32)


def img_step(state, onehot, key):
    del key
    return {"deter": 0.9 * state["deter"] + onehot @ _MOVES,
            "stoch": state["stoch"]}


def feat(state):
    return jnp.concatenate([state["deter"], state["stoch"].reshape(
        state["stoch"].shape[:-2] + (-1,))], -1)


def _config(**kw):
    c = ml_collections.ConfigDict(dict(
        reward="maxcos", latent="h", horizon=5, gamma=0.95, lam=0.95, entropy=0.01,
        lr=3e-3, eps=1e-5, clip=100.0, target_every=10, standardize_advantages=True,
        actor_units=32, actor_layers=2, critic_units=32, critic_layers=2, disc_units=32,
        disc_layers=2, disc_lr=1e-3, sparse_threshold=0.5, dbc_entropy=0.1))
    c.update(kw)
    return c


def _expert_batch(rng, batch, horizon):
    h = rng.normal(size=(batch, D)).astype(np.float32)
    traj = [h]
    onehot = np.eye(ACTION_DIM, dtype=np.float32)[np.full(batch, 1)]
    for _ in range(horizon):
        h = 0.9 * h + onehot @ _MOVES
        traj.append(h)
    expert = np.stack(traj, 1)
    start = {"deter": jnp.asarray(expert[:, 0]), "stoch": jnp.zeros((batch, 2, 2))}
    return {"start": start, "expert": jnp.asarray(expert)}


def latent_reward(config):
    """DITTO's reward model."""
    return LatentReward(config.reward, config.sparse_threshold)


def discriminator(config):
    """D-GAIL's reward model."""
    return DiscriminatorReward(config.disc_units, config.disc_layers, config.disc_lr,
                               config.eps, config.clip)


def init_state(config, reward=latent_reward):
    return imitation.init_imagination_state(config, D + 4, D, NUM_ACTIONS, jax.random.key(0),
                                            reward(config))


def imagination_step(config, reward=latent_reward):
    return jax.jit(imitation.make_imagination_step(
        config, img_step=img_step, feat=feat, num_actions=NUM_ACTIONS, action_dim=ACTION_DIM,
        reward_model=reward(config)))


def _train(config, updates=150, reward=latent_reward):
    state = init_state(config, reward)
    step = imagination_step(config, reward)
    rng = np.random.default_rng(1)
    history = []
    for i in range(updates):
        state, m = step(state, _expert_batch(rng, 64, config.horizon), jax.random.key(i))
        history.append(jax.device_get(m))
    probe = _expert_batch(np.random.default_rng(9), 256, 1)
    logits = imitation.policy_logits(config, NUM_ACTIONS)(state.actor, feat(probe["start"]))
    return state, history, float((np.argmax(logits, -1) == 1).mean())


def test_ditto_learns_the_expert_action_in_a_toy_world():
    state, history, accuracy = _train(_config())
    assert history[-1]["reward"] > history[0]["reward"] + 0.05
    assert accuracy > 0.9, accuracy
    assert int(state.step) == 150


def test_target_critic_is_copied_every_target_every_updates():
    config = _config(target_every=3)
    state = init_state(config)
    step = imagination_step(config)
    rng = np.random.default_rng(0)
    same = []
    for i in range(6):
        state, _ = step(state, _expert_batch(rng, 8, 5), jax.random.key(i))
        same.append(all(np.array_equal(a, b) for a, b in zip(
            jax.tree.leaves(state.critic), jax.tree.leaves(state.target_critic))))
    assert same == [False, False, True, False, False, True]


def test_gail_discriminator_separates_expert_from_random_agent():
    # lr 0 freezes the policy at its random start. A third of its transitions use
    # the expert's action and are indistinguishable, so the optimal discriminator
    # gives 0.75 on expert pairs and 1/3 * 0.75 = 0.25 on agent pairs on average.
    _, history, _ = _train(_config(lr=0.0, disc_lr=1e-2), updates=100,
                             reward=discriminator)
    assert history[-1]["disc_expert"] > 0.7 and history[-1]["disc_agent"] < 0.32, history[-1]
    assert history[0]["disc_loss"] > history[-1]["disc_loss"]


def test_gail_policy_improves_its_discriminator_reward():
    _, history, accuracy = _train(_config(), updates=150, reward=discriminator)
    assert np.isfinite(history[-1]["actor_loss"])
    assert accuracy > 0.5, accuracy


def test_dbc_fits_expert_actions():
    config = _config()
    state = imitation.init_actor_state(config, D, NUM_ACTIONS, jax.random.key(0))
    step = jax.jit(imitation.make_dbc_step(config, num_actions=NUM_ACTIONS))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, D)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) * 2  # a separable rule
    for i in range(200):
        state, m = step(state, {"feat": x, "action": y}, jax.random.key(i))
    assert float(m["accuracy"]) > 0.95


# ---------------------------------------------------------------- study levers (issue 9)
def test_first_step_all_actions_is_the_expected_reinforce_gradient():
    """At step 0 the all-actions loss has the gradient E_{a~pi}[-grad log pi(a) (Q(a)-b)],
    summed exactly over actions: checked against a plain loop over actions."""
    from ditto_jax.agents.actor_critic import Actor, actor_critic_losses
    config = _config(standardize_advantages=False, entropy=0.0, horizon=1)
    actor = Actor(NUM_ACTIONS, 8, 1)
    rng = np.random.default_rng(3)
    feats = jnp.asarray(rng.normal(size=(2, 4, 5)).astype(np.float32))   # (H+1, B, F)
    params = actor.init(jax.random.key(0), feats[0])
    q = jnp.asarray(rng.normal(size=(4, NUM_ACTIONS)).astype(np.float32))

    def critic(p, x):
        return jnp.zeros(x.shape[:-1])

    def loss(p):
        a_loss, _, _ = actor_critic_losses(
            p, None, None, actor.apply, critic, feats, jnp.zeros((1, 4), jnp.int32),
            jnp.zeros((1, 4)), config, first_q=q)
        return a_loss

    grad = jax.grad(loss)(params)
    probs = jax.nn.softmax(actor.apply(params, feats[0]))
    expected = jax.tree.map(jnp.zeros_like, params)
    for b in range(4):
        baseline = float(jnp.sum(probs[b] * q[b]))
        for a in range(NUM_ACTIONS):
            g_logp = jax.grad(lambda p: jax.nn.log_softmax(
                actor.apply(p, feats[0, b:b + 1]))[0, a])(params)
            w = float(probs[b, a]) * (float(q[b, a]) - baseline) / 4
            expected = jax.tree.map(lambda e, g: e - w * g, expected, g_logp)
    for got, want in zip(jax.tree.leaves(grad), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_ditto_with_all_actions_first_step_learns_the_expert_action():
    state, history, accuracy = _train(_config(first_step="all_actions"), updates=100)
    assert accuracy > 0.9, accuracy
    assert history[-1]["first_q_gap"] > 0


def test_entropy_schedule_is_linear_then_constant():
    from ditto_jax.agents.actor_critic import entropy_coef
    c = _config(entropy=0.3, entropy_final=0.1, entropy_decay_steps=10)
    got = [float(entropy_coef(c, jnp.asarray(s))) for s in (0, 5, 10, 50)]
    np.testing.assert_allclose(got, [0.3, 0.2, 0.1, 0.1], rtol=1e-6)
    assert float(entropy_coef(_config(entropy=0.05), jnp.asarray(7))) == pytest.approx(0.05)


def test_bc_initialised_ditto_phases():
    """BC phase fits the expert action, the warm-up trains only the critic, then DITTO."""
    config = _config(bc_init_steps=60, critic_warmup_steps=5)
    state = init_state(config)
    step = jax.jit(imitation.make_bcinit_ditto_step(
        config, img_step=img_step, feat=feat, num_actions=NUM_ACTIONS, action_dim=ACTION_DIM,
        reward_model=latent_reward(config)))
    rng = np.random.default_rng(1)
    phases, actor_at = [], {}
    for i in range(70):
        batch = _expert_batch(rng, 64, config.horizon)
        batch["action"] = jnp.ones(64, jnp.int32)            # the toy expert's action
        critic_before = state.critic
        state, m = step(state, batch, jax.random.key(i))
        phases.append(int(m["phase"]))
        actor_at[i] = state.actor
        if i < 60:
            assert all(np.array_equal(a, b) for a, b in zip(
                jax.tree.leaves(critic_before), jax.tree.leaves(state.critic)))
    assert phases[:60] == [0] * 60 and phases[60:65] == [1] * 5 and phases[65:] == [2] * 5
    frozen = [all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(actor_at[i - 1]),
                                                       jax.tree.leaves(actor_at[i])))
              for i in range(60, 66)]
    assert frozen == [True] * 5 + [False]
    probe = _expert_batch(np.random.default_rng(9), 256, 1)
    logits = imitation.policy_logits(config, NUM_ACTIONS)(state.actor, feat(probe["start"]))
    assert float((np.argmax(logits, -1) == 1).mean()) > 0.9


# ------------------------------------------------- reward models (issue 16, part 4)
def test_any_reward_model_plugs_into_the_imagination_step():
    """A D-GAIL-like method needs no edit to the step: here a reward model that pays 1
    for every step and logs its own metric."""
    class Constant:
        learned = False

        def init(self, state, key, part_dim):
            return state

        def score(self, agent, expert):
            return jnp.ones(agent.shape[:-1])

        def rewards(self, state, agent, expert):
            return state, self.score(agent[1:], expert[1:]), {"constant_paid": 1.0}

    config = _config()
    state = init_state(config, lambda c: Constant())
    step = imagination_step(config, lambda c: Constant())
    state, m = step(state, _expert_batch(np.random.default_rng(0), 8, 5), jax.random.key(0))
    assert float(m["reward"]) == 1.0 and float(m["constant_paid"]) == 1.0
    assert float(m["return_mean"]) > 1.0   # the discounted sum of ones over 5 steps


@pytest.mark.parametrize("name,kind,fields", [
    ("dbc", "ActorState", {"step", "actor", "actor_opt"}),
    ("ditto", "ActorCriticState", {"step", "actor", "actor_opt", "critic", "target_critic",
                                   "critic_opt"}),
    ("dgail", "AdversarialState", {"step", "actor", "actor_opt", "critic", "target_critic",
                                   "critic_opt", "disc"}),
])
def test_each_method_has_its_own_train_state_without_empty_parts(name, kind, fields):
    from ditto_jax import methods
    from ditto_jax.methods import Context
    method = methods.get(name)
    config = method.resolve_config(_config(first_step="sample", collapse_window=50))
    ctx = Context(num_actions=NUM_ACTIONS, obs_shape=(64, 64, 1), action_dim=ACTION_DIM,
                  feat_dim=D + 4, part_dim=D)
    state = method.init(config, ctx, jax.random.key(0))
    assert type(state).__name__ == kind
    assert set(state.__dataclass_fields__) == fields
    assert all(getattr(state, f) is not None for f in fields)


def test_each_method_checks_and_keeps_its_own_config_block():
    from ditto_jax import methods
    from ditto_jax.errors import DittoError
    ditto = methods.get("ditto").resolve_config(_config(first_step="sample"))
    assert ditto.reward == "maxcos" and "disc_lr" not in ditto
    dgail = methods.get("dgail").resolve_config(_config(first_step="sample"))
    assert "reward" not in dgail and dgail.disc_lr == 1e-3     # no config mutation
    with pytest.raises(DittoError, match="config.reward"):
        methods.get("ditto").resolve_config(_config(reward="gail"))
    with pytest.raises(DittoError, match="config.first_step"):
        methods.get("dgail").resolve_config(_config(first_step="all_actions"))
    with pytest.raises(DittoError, match="config.latent"):
        methods.get("dgail").resolve_config(_config(latent="w"))


# The one train-state layout of ditto_jax <= e052609 (agents/imitation.py `AgentState`):
# eight fields for every method, the unused ones None, D-GAIL's discriminator flat.
def _old_layout(state):
    old = dict(step=state.step, actor=state.actor, actor_opt=state.actor_opt, critic=None,
               target_critic=None, critic_opt=None, disc=None, disc_opt=None)
    if hasattr(state, "critic"):
        old.update(critic=state.critic, target_critic=state.target_critic,
                   critic_opt=state.critic_opt)
    if hasattr(state, "disc"):
        old.update(disc=state.disc.params, disc_opt=state.disc.opt)
    return old


@pytest.mark.parametrize("name", ["dbc", "dgail"])  # D-GAIL's path runs DITTO's state's
def test_policy_checkpoints_of_the_one_layout_version_still_restore(tmp_path, name):
    """Policies trained before the per-method train states (every study policy of the
    README's N_E section) restore into the new states, value for value, so they can still
    be evaluated and resumed."""
    from ditto_jax import methods
    from ditto_jax.engine import checkpoint as ckpt_lib
    from ditto_jax.methods import Context
    method = methods.get(name)
    config = method.resolve_config(_config(first_step="sample", collapse_window=50))
    ctx = Context(num_actions=NUM_ACTIONS, obs_shape=(64, 64, 1), action_dim=ACTION_DIM,
                  feat_dim=D + 4, part_dim=D)
    init = lambda: method.init(config, ctx, jax.random.key(0))  # noqa: E731
    leaves, treedef = jax.tree.flatten(init())
    rng = np.random.default_rng(3)   # distinct values in every leaf, step 7
    state = jax.tree.unflatten(treedef, [
        jnp.asarray(rng.normal(size=np.shape(x)).astype(np.asarray(x).dtype))
        if np.issubdtype(np.asarray(x).dtype, np.floating) else jnp.full_like(x, 7)
        for x in leaves])
    writer = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints"))
    writer.save(7, _old_layout(state), {"method": name})
    writer.close()
    reader = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints"), read_only=True)
    try:
        restored, meta = reader.restore(jax.eval_shape(init))
    finally:
        reader.close()
    assert type(restored) is type(state) and meta == {"method": name}
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # A checkpoint of another method's state is still refused, naming the directory.
    other = methods.get("dbc" if name != "dbc" else "ditto")
    other_config = other.resolve_config(_config(first_step="sample", collapse_window=50))
    reader = ckpt_lib.Checkpointer(str(tmp_path / "checkpoints"), read_only=True)
    try:
        with pytest.raises(Exception, match="could be restored") as err:
            reader.restore(jax.eval_shape(lambda: other.init(other_config, ctx,
                                                             jax.random.key(0))))
        assert str(tmp_path / "checkpoints") in str(err.value)
    finally:
        reader.close()
