"""World-model training maths: TrainState, train/eval steps, open loop, presets, bf16."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments", "configs"))
import wm as wm_configs  # noqa: E402
from test_models import pong_batch  # noqa: E402

from ditto_jax.errors import DittoError  # noqa: E402
from ditto_jax.models import (eval_step, init_train_state, make_model,  # noqa: E402
                              make_optimizer, open_loop, train_step)

OBS = (64, 64, 1)
METRICS = {"loss", "image_loss", "kl_loss", "kl_prior", "kl_post", "prior_entropy",
           "post_entropy", "grad_norm", "recon_mse", "recon_mse_fg"}


@pytest.fixture(autouse=True, scope="module")
def _fast_compile():
    """XLA without its expensive optimisations: compiles ~3x faster; tiny models run fine."""
    old = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", old)


@pytest.fixture(scope="module")
def tiny():
    return wm_configs.get_config("tiny")


@pytest.fixture(scope="module")
def step_fn():
    return jax.jit(train_step)


def test_presets_load_and_have_the_spec_sizes():
    paper = wm_configs.get_config("paper")
    m = paper.model
    assert (m.deter, m.hidden, m.stoch, m.classes, m.cnn_depth, m.action_dim) == (
        1024, 1000, 32, 32, 48, 18)
    assert (paper.train.batch_size, paper.train.seq_len) == (50, 50)
    assert (paper.optim.lr, paper.optim.eps, paper.optim.clip) == (3e-4, 1e-5, 200.0)
    assert (paper.loss.beta, paper.loss.alpha) == (0.1, 0.8)
    for preset in wm_configs.PRESETS:
        c = wm_configs.get_config(preset)
        assert {"model", "loss", "optim", "train"} <= set(c.keys())
        assert set(c.train.keys()) >= {"batch_size", "seq_len", "steps", "log_every",
                                      "eval_every", "save_every", "keep_checkpoints",
                                      "val_episodes", "seed", "compute_dtype", "strip_every"}
    assert wm_configs.get_config("tiny").train.batch_size % 8 == 0
    with pytest.raises(ValueError, match="unknown wm preset"):
        wm_configs.get_config("huge")
    # Parameter counts without allocating (eval_shape).
    counts = {}
    for preset in ("paper", "small", "tiny"):
        c = wm_configs.get_config(preset)
        st = jax.eval_shape(lambda k, c=c: init_train_state(c, OBS, 6, k), jax.random.PRNGKey(0))
        counts[preset] = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(st.params))
    assert 10e6 < counts["paper"] < 40e6, counts
    assert 0.5e6 < counts["small"] < 3e6, counts
    assert counts["tiny"] < 20e3, counts


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_train_step_state_and_metrics(tiny, step_fn):
    state = init_train_state(tiny, OBS, 3, jax.random.PRNGKey(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    batch = jax.tree.map(jnp.asarray, pong_batch(np.random.default_rng(0)))
    new, metrics = step_fn(state, batch)
    assert set(metrics) >= METRICS, set(metrics) ^ METRICS
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert int(new.step) == 1
    # rng=None draws the step key from the state and advances the state's rng.
    next_rng, step_key = jax.random.split(state.rng)
    np.testing.assert_array_equal(new.rng, next_rng)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.params, state.params)
    assert all(jax.tree.leaves(changed))
    # Eval metrics with the same key equal the train metrics (computed before the update).
    ev = jax.jit(eval_step)(state, batch, step_key)
    np.testing.assert_allclose(float(ev["loss"]), float(metrics["loss"]), rtol=1e-5)


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_loss_decreases_on_synthetic_pong(tiny, step_fn):
    state = init_train_state(tiny, OBS, 3, jax.random.PRNGKey(1))
    data = [jax.tree.map(jnp.asarray, pong_batch(np.random.default_rng(i))) for i in range(3)]
    losses = []
    for i in range(30):
        state, m = step_fn(state, data[i % 3])
        losses.append(float(m["loss"]))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_open_loop_strip(tiny):
    state = init_train_state(tiny, OBS, 3, jax.random.PRNGKey(0))
    batch = jax.tree.map(jnp.asarray, pong_batch(np.random.default_rng(0), batch=2, seq_len=6))
    truth, model = jax.jit(open_loop, static_argnames=("context", "horizon"))(
        state, batch, jax.random.PRNGKey(0), context=2, horizon=3)
    assert truth.shape == model.shape == (2, 5) + OBS
    assert truth.dtype == model.dtype == jnp.uint8
    np.testing.assert_array_equal(truth, batch["observation"][:, :5])


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_bf16_compute_keeps_fp32_params(tiny):
    c = wm_configs.get_config("tiny")
    c.train.compute_dtype = "bfloat16"
    state = init_train_state(c, OBS, 3, jax.random.PRNGKey(0))
    assert state.model.dtype == jnp.bfloat16
    batch = jax.tree.map(jnp.asarray, pong_batch(np.random.default_rng(0)))
    new, metrics = jax.jit(train_step)(state, batch)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(new.params))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(new.opt_state)
               if jnp.issubdtype(x.dtype, jnp.floating))
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_optimizer_clips_and_rejects_unknown(tiny):
    tx = make_optimizer(tiny)
    params = {"w": jnp.ones(3)}
    upd, _ = tx.update({"w": jnp.full(3, 1e6)}, tx.init(params), params)
    assert np.all(np.isfinite(upd["w"]))
    c = wm_configs.get_config("tiny")
    c.optim.name = "sgd"
    with pytest.raises(DittoError, match="optim.name"):
        make_optimizer(c)
    c = wm_configs.get_config("tiny")
    c.train.compute_dtype = "float16"
    with pytest.raises(DittoError, match="compute_dtype"):
        make_model(c, OBS, 3)
