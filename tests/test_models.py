"""World-model modules and loss: shapes, sampling, KL, scan == loop, resets, weights."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments", "configs"))
import wm as wm_configs  # noqa: E402

from ditto_jax.errors import DittoError  # noqa: E402
from ditto_jax.models import (RSSM, Decoder, Encoder, LossConfig, WorldModel,  # noqa: E402
                              categorical_kl, kl_balanced, make_world_model,
                              prev_actions_onehot, recon_weights, sample_onehot,
                              world_model_loss)

KEY = jax.random.PRNGKey(0)


@pytest.fixture(autouse=True, scope="module")
def _fast_compile():
    """XLA without its expensive optimisations: compiles ~3x faster; tiny models run fine."""
    old = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", old)


def pong_batch(rng, batch=8, seq_len=8, size=64):
    """Synthetic Pong-like sequences: flat background, two 2x8 paddles, a 2x2 ball."""
    obs = np.full((batch, seq_len, size, size, 1), 87, np.uint8)
    obs[:, :, :3] = obs[:, :, -3:] = 236                      # walls
    action = rng.integers(0, 3, (batch, seq_len)).astype(np.int32)
    for b in range(batch):
        by, bx = rng.uniform(8, size - 8, 2)
        vy, vx = rng.choice([-2.0, 2.0], 2)
        left, right = rng.uniform(8, size - 16, 2)
        for t in range(seq_len):
            y0, x0 = int(by), int(bx)
            obs[b, t, y0:y0 + 2, x0:x0 + 2] = 236
            obs[b, t, int(left):int(left) + 8, 4:6] = 213
            obs[b, t, int(right):int(right) + 8, size - 6:size - 4] = 92 + 100
            by, bx = by + vy, bx + vx
            if not 4 <= by <= size - 6:
                vy = -vy
            if not 6 <= bx <= size - 8:
                vx = -vx
            left = np.clip(left + np.sign(by - left - 4) * 1.5, 3, size - 11)
            right = np.clip(right + (-2, 0, 2)[action[b, t]], 3, size - 11)
    is_first = np.zeros((batch, seq_len), bool)
    is_first[:, 0] = True
    return {"observation": obs, "action": action, "is_first": is_first}


def tiny_rssm(**kw):
    return RSSM(deter=8, hidden=8, stoch=3, classes=4, action_dim=5, **kw)


def rssm_inputs(b=2, t=5, e=6, a=5, seed=1):
    r = np.random.default_rng(seed)
    embeds = jnp.asarray(r.normal(size=(b, t, e)), jnp.float32)
    actions = jax.nn.one_hot(r.integers(0, a, (b, t)), a)
    is_first = jnp.asarray(r.random((b, t)) < 0.3).at[:, 0].set(True)
    return embeds, actions, is_first


# ------------------------------------------------------------------ shapes / dtypes
def test_encoder_decoder_shapes():
    # eval_shape: shapes and dtypes without running the convolutions.
    x = jnp.zeros((3, 2, 64, 64, 1))
    e, _ = jax.eval_shape(Encoder(depth=2).init_with_output, KEY, x)
    assert e.shape == (3, 2, 2 * 2 * 16) and e.dtype == jnp.float32
    assert Encoder.embed_size((64, 64, 1), 48) == 1536   # paper: depth 48 -> 1536
    e, _ = jax.eval_shape(Encoder(depth=48).init_with_output, KEY, x)
    assert e.shape == (3, 2, 1536)
    feat = jnp.zeros((3, 2, 24))
    for kind in ("conv_transpose", "upsample", "depth_to_space"):
        dec = Decoder(kind=kind, depth=2, norm="layer")
        y, _ = jax.eval_shape(dec.init_with_output, KEY, feat)
        assert y.shape == (3, 2, 64, 64, 1) and y.dtype == jnp.float32, kind


def test_forward_conv_impls_equal_xla_conv():
    """Acting's forward-only convolutions (`strided`, and `acting`'s per-layer choice)
    give XLA's convolution on every encoder layer shape, at 1 and 16 frames."""
    from ditto_jax.models.networks import acting_conv_impl, conv2d
    r = np.random.default_rng(0)
    for n, h, c in [(1, 64, 1), (16, 64, 1), (1, 31, 6), (16, 31, 6), (5, 14, 4), (4, 6, 8)]:
        x = jnp.asarray(r.normal(size=(n, h, h, c)), jnp.float32)
        w = jnp.asarray(r.normal(size=(4, 4, c, 7)), jnp.float32)
        want = conv2d(x, w, 2, "VALID", "lax")
        for impl in ("strided", "acting"):
            got = jax.jit(lambda x, w: conv2d(x, w, 2, "VALID", impl))(x, w)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=impl)
    x16, x1 = jnp.zeros((16, 31, 31, 48)), jnp.zeros((1, 31, 31, 48))
    assert acting_conv_impl(x16, 2, "VALID", "cpu") == "strided"
    assert acting_conv_impl(x1, 2, "VALID", "cpu") == "lax"
    assert acting_conv_impl(jnp.zeros((16, 64, 64, 1)), 2, "VALID", "cpu") == "lax"
    assert acting_conv_impl(x16, 2, "VALID", "gpu") == "lax"
    assert acting_conv_impl(x16, 1, "SAME", "cpu") == "lax"
    with pytest.raises(ValueError, match="stride 2 VALID"):
        conv2d(x16, jnp.zeros((3, 3, 48, 4)), 1, "SAME", "strided")


def test_matmul_conv_equals_xla_conv():
    from ditto_jax.models.networks import conv2d
    r = np.random.default_rng(0)
    for (h, k, stride, pad) in [(64, 4, 2, "VALID"), (31, 4, 2, "VALID"), (8, 3, 1, "SAME"),
                                (8, 2, 1, "SAME")]:
        x = jnp.asarray(r.normal(size=(2, h, h, 3)), jnp.float32)
        w = jnp.asarray(r.normal(size=(k, k, 3, 5)), jnp.float32)
        f = lambda impl: lambda x, w: conv2d(x, w, stride, pad, impl)
        np.testing.assert_allclose(f("matmul")(x, w), f("lax")(x, w), rtol=1e-4, atol=1e-4)
        dy = jnp.asarray(r.normal(size=f("lax")(x, w).shape), jnp.float32)
        g = lambda impl: jax.vjp(f(impl), x, w)[1](dy)
        for a, b in zip(g("matmul"), g("lax")):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_world_model_output_shapes():
    cfg = wm_configs.get_config("tiny")
    model = make_world_model(cfg.model, (64, 64, 1), num_actions=3)
    b = pong_batch(np.random.default_rng(0), batch=2, seq_len=4)
    prev = prev_actions_onehot(jnp.asarray(b["action"]), jnp.asarray(b["is_first"]), 18)
    out, params = jax.eval_shape(model.init_with_output, KEY, b["observation"], prev,
                                 b["is_first"], KEY)
    m = cfg.model
    assert out["recon"].shape == (2, 4, 64, 64, 1)
    for d in (out["posts"], out["priors"]):
        assert d["deter"].shape == (2, 4, m.deter)
        assert d["stoch"].shape == d["logits"].shape == (2, 4, m.stoch, m.classes)
    feat = jax.eval_shape(lambda p, s: model.apply(p, s, method=WorldModel.get_feat), params,
                          out["posts"])
    assert feat.shape == (2, 4, m.deter + m.stoch * m.classes)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_frame_chunking_matches_whole_batch():
    cfg = wm_configs.get_config("tiny")
    b = pong_batch(np.random.default_rng(0), batch=2, seq_len=4)
    prev = prev_actions_onehot(jnp.asarray(b["action"]), jnp.asarray(b["is_first"]), 18)
    cfg.model.frame_chunk = 0
    whole = make_world_model(cfg.model, (64, 64, 1), 3)
    cfg.model.frame_chunk = 3  # 8 frames -> 3 chunks, the last one padded
    chunked = make_world_model(cfg.model, (64, 64, 1), 3)
    params = jax.jit(whole.init)(KEY, b["observation"], prev, b["is_first"], KEY)

    def loss(model):
        return jax.jit(jax.value_and_grad(
            lambda p: model.apply(p, b["observation"], prev, b["is_first"], KEY)["recon"].mean()))
    (l1, g1), (l2, g2) = loss(whole)(params), loss(chunked)(params)
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    for a, c in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)


def test_transposed_dense_kernels_are_the_same_posterior():
    """Acting's Dense layout (`dense_layout="out_in"`, every RSSM kernel transposed once by
    `out_in_rssm`) gives the trained model's posterior and prior steps; training configs
    cannot ask for it, so no checkpoint is ever written in that layout."""
    from ditto_jax.models.world_model import out_in_rssm
    embeds, actions, is_first = rssm_inputs(b=3, t=4)
    rssm, acting = tiny_rssm(), tiny_rssm(dense_layout="out_in")
    params = {"params": {"rssm": rssm.init(KEY, embeds, actions, is_first, KEY)["params"]}}
    t_params = out_in_rssm(params)
    dense = [n for n, layer in params["params"]["rssm"].items() if "kernel" in layer]
    assert {"gru", "img_in", "obs_h", "obs_e", "obs_logits", "img_out"} <= set(dense)
    for name in dense:
        k = params["params"]["rssm"][name]["kernel"]
        np.testing.assert_array_equal(t_params["params"]["rssm"][name]["kernel"], k.T)
    norm = next(n for n in params["params"]["rssm"] if n.endswith("_norm"))
    assert t_params["params"]["rssm"][norm] is params["params"]["rssm"][norm]
    state = rssm.apply({"params": params["params"]["rssm"]}, 3, method=RSSM.initial_state)
    for t in range(4):
        args = (state, actions[:, t], embeds[:, t], is_first[:, t], KEY)
        want = rssm.apply({"params": params["params"]["rssm"]}, *args, method=RSSM.obs_step)
        got = acting.apply({"params": t_params["params"]["rssm"]}, *args,
                           method=RSSM.obs_step)
        for w, g in zip(want, got):  # posterior, prior
            for name in ("deter", "stoch", "logits"):
                np.testing.assert_allclose(g[name], w[name], rtol=1e-5, atol=1e-6)
        state = want[0]
    assert float(jnp.abs(state["deter"]).max()) > 1e-3     # the GRU did contribute
    cfg = wm_configs.get_config("tiny")
    cfg.model.dense_layout = "out_in"
    with pytest.raises(DittoError, match="unknown world model option") as e:
        make_world_model(cfg.model, (64, 64, 1), num_actions=4)
    assert e.value.field == "model.dense_layout"


def _bf16(x):
    """x rounded to bfloat16 (to nearest even), as float64."""
    return np.asarray(jnp.asarray(x, jnp.float32).astype(jnp.bfloat16), np.float64)


@pytest.mark.parametrize("layout", ["in_out", "out_in"])
def test_bf16_matmul_rounds_the_operands_and_sums_in_float32(layout):
    """`networks.bf16_dot_general` (imagination's `imagine_matmul="bfloat16"`) is exactly
    (bf16(x) @ bf16(W)) with a float32 result: float64 of the rounded operands agrees to
    float32 summation error, and the float32 product of the unrounded ones does not."""
    from flax import linen as nn
    from ditto_jax.models.networks import DenseOutIn, bf16_dot_general, matmul_fn
    x = jax.random.normal(jax.random.key(1), (5, 300))
    kind = DenseOutIn if layout == "out_in" else nn.Dense
    layer = kind(70, dot_general=bf16_dot_general)
    params = layer.init(KEY, x)
    got = layer.apply(params, x)
    assert got.dtype == jnp.float32
    kernel = params["params"]["kernel"]
    kernel = kernel.T if layout == "out_in" else kernel
    want = _bf16(x) @ _bf16(kernel) + np.asarray(params["params"]["bias"], np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    f32 = np.asarray(x, np.float64) @ np.asarray(kernel, np.float64)
    assert np.abs(np.asarray(got) - f32).max() > 1e-3      # it did round
    assert matmul_fn("float32") is jax.lax.dot_general
    with pytest.raises(ValueError, match="matmul_dtype must be one of"):
        matmul_fn("float16")


def test_bf16_imagination_is_near_the_float32_prior_step():
    """`matmul_dtype="bfloat16"` reaches every RSSM Dense of the prior step: the step moves
    off the float32 one, by about bfloat16's rounding, and the parameters are the same
    (a trained checkpoint imagines in either)."""
    embeds, actions, is_first = rssm_inputs(b=3, t=4)
    rssm, low = tiny_rssm(), tiny_rssm(matmul_dtype="bfloat16")
    params = rssm.init(KEY, embeds, actions, is_first, KEY)
    assert jax.tree.structure(low.init(KEY, embeds, actions, is_first, KEY)) == \
        jax.tree.structure(params)
    state = rssm.apply(params, 3, method=RSSM.initial_state)
    state = dict(state, deter=jax.random.normal(jax.random.key(2), state["deter"].shape))
    want = rssm.apply(params, state, actions[:, 0], KEY, method=RSSM.img_step)
    got = low.apply(params, state, actions[:, 0], KEY, method=RSSM.img_step)
    diff = float(jnp.abs(got["deter"] - want["deter"]).max())
    assert 1e-6 < diff < 3e-2, diff
    np.testing.assert_allclose(got["logits"], want["logits"], atol=0.1)
    cfg = wm_configs.get_config("tiny")     # a world-model config cannot train in it
    cfg.model.matmul_dtype = "bfloat16"
    with pytest.raises(DittoError, match="unknown world model option") as e:
        make_world_model(cfg.model, (64, 64, 1), num_actions=4)
    assert e.value.field == "model.matmul_dtype"


@pytest.mark.parametrize("impl", ["matmul", "strided"])
def test_bf16_conv_rounds_the_patches_and_kernel_and_lax_stays_float32(impl):
    """The encoder's matmul-form convs with `dot_general=bf16_dot_general` (acting's
    `matmul_dtype="bfloat16"`) are XLA's float32 convolution of the bf16-rounded input and
    kernel, to float32 summation error, and not the unrounded one; XLA's own convolution
    ignores the argument and stays float32 (acting keeps it for 1-channel layers)."""
    from ditto_jax.models.networks import bf16_dot_general, conv2d
    x = jax.random.normal(jax.random.key(3), (4, 14, 14, 24))
    w = jax.random.normal(jax.random.key(4), (4, 4, 24, 40)) * 0.1
    rounded = lambda a: jnp.asarray(a, jnp.bfloat16).astype(jnp.float32)
    hi = jax.lax.Precision.HIGHEST
    want = jax.lax.conv_general_dilated(rounded(x), rounded(w), (2, 2), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=hi)
    got = conv2d(x, w, 2, "VALID", impl, dot_general=bf16_dot_general)
    assert got.dtype == jnp.float32 and got.shape == want.shape == (4, 6, 6, 40)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    f32 = conv2d(x, w, 2, "VALID", "lax")
    assert float(jnp.abs(got - f32).max()) > 1e-3          # it did round
    np.testing.assert_array_equal(conv2d(x, w, 2, "VALID", "lax", dot_general=bf16_dot_general),
                                  f32)


def test_bf16_acting_world_model_rounds_the_encoder_and_keeps_cast_kernels_exact():
    """`WorldModel(matmul_dtype="bfloat16")` hands the option to its encoder as well as its
    RSSM, and the encoder's matmul-form convs then round; `bf16_rssm_kernels` (the RSSM
    kernels cast once, as acting keeps them) gives exactly the numbers of the float32
    kernels, since the products round them anyway."""
    from ditto_jax.models.world_model import bf16_rssm_kernels
    cfg = wm_configs.get_config("tiny")
    model = make_world_model(cfg.model, (64, 64, 1), num_actions=4)
    assert model.clone(matmul_dtype="bfloat16").apply(
        {}, method=lambda m: (m.encoder.matmul_dtype, m.rssm.matmul_dtype)) == \
        ("bfloat16", "bfloat16")
    x = jax.random.normal(jax.random.key(5), (3, 64, 64, 1))
    enc = Encoder(depth=8, conv_impl="matmul", remat=False)
    params = enc.init(KEY, x)
    e32 = jax.jit(enc.apply)(params, x)
    e16 = jax.jit(enc.clone(matmul_dtype="bfloat16").apply)(params, x)
    assert 1e-6 < float(jnp.abs(e16 - e32).max()) < 0.05 * float(jnp.abs(e32).max())
    embeds, actions, is_first = rssm_inputs(b=3, t=1)
    low = tiny_rssm(matmul_dtype="bfloat16")
    params = {"params": {"rssm": low.init(KEY, embeds, actions, is_first, KEY)["params"]}}
    cast = bf16_rssm_kernels(params)
    layers = params["params"]["rssm"].values()
    kernels = [v for v in jax.tree.leaves(cast) if v.dtype == jnp.bfloat16]
    assert kernels and len(kernels) == sum("kernel" in layer for layer in layers)
    state = low.apply({"params": params["params"]["rssm"]}, 3, method=RSSM.initial_state)
    state = dict(state, deter=jax.random.normal(jax.random.key(2), state["deter"].shape))
    step = jax.jit(lambda p: low.apply(p, state, actions[:, 0], embeds[:, 0], is_first[:, 0],
                                       KEY, method=RSSM.obs_step))
    for a, b in zip(jax.tree.leaves(step({"params": params["params"]["rssm"]})),
                    jax.tree.leaves(step({"params": cast["params"]["rssm"]}))):
        np.testing.assert_array_equal(a, b)


def test_too_many_actions_is_a_user_error():
    cfg = wm_configs.get_config("tiny")
    with pytest.raises(DittoError, match="action_dim"):
        make_world_model(cfg.model, (64, 64, 1), num_actions=19)


def test_prev_actions_shift_and_reset():
    action = jnp.array([[1, 2, 3, 4]])
    is_first = jnp.array([[True, False, True, False]])
    prev = prev_actions_onehot(action, is_first, 6)
    assert prev.shape == (1, 4, 6)
    np.testing.assert_array_equal(prev.argmax(-1)[0, [1, 3]], [1, 3])
    assert float(prev[0, 0].sum()) == 0.0 and float(prev[0, 2].sum()) == 0.0


# ------------------------------------------------------------------ sampling
def test_straight_through_onehot_and_gradient():
    logits = jax.random.normal(KEY, (64, 3, 5))
    z = sample_onehot(logits, jax.random.PRNGKey(1))
    zn = np.asarray(z)
    assert set(np.unique(zn)) <= {0.0, 1.0}, "forward sample must be exactly one-hot"
    np.testing.assert_array_equal(zn.sum(-1), 1.0)
    w = jax.random.normal(jax.random.PRNGKey(2), z.shape)
    g = jax.grad(lambda l: (sample_onehot(l, jax.random.PRNGKey(1)) * w).sum())(logits)
    assert float(jnp.abs(g).max()) > 1e-3, "straight-through gradient vanished"
    # Straight-through gradient is the gradient of probs.
    g_probs = jax.grad(lambda l: (jax.nn.softmax(l, -1) * w).sum())(logits)
    np.testing.assert_allclose(g, g_probs, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ KL
def _np_kl(lq, lp):
    q = np.exp(lq - lq.max(-1, keepdims=True)); q /= q.sum(-1, keepdims=True)
    p = np.exp(lp - lp.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
    return (q * (np.log(q) - np.log(p))).sum((-2, -1))


def test_kl_balanced_matches_numpy():
    r = np.random.default_rng(0)
    lq, lp = r.normal(size=(2, 3, 4, 5)), r.normal(size=(2, 3, 4, 5))
    kl = _np_kl(lq, lp)
    np.testing.assert_allclose(categorical_kl(jnp.asarray(lq), jnp.asarray(lp)), kl, rtol=1e-5)
    for free in (0.0, 100.0):
        loss, kl_prior, kl_post = kl_balanced(jnp.asarray(lq), jnp.asarray(lp), 0.8, free)
        np.testing.assert_allclose(kl_prior, kl.mean(), rtol=1e-5)
        np.testing.assert_allclose(kl_post, kl.mean(), rtol=1e-5)
        np.testing.assert_allclose(loss, max(kl.mean(), free), rtol=1e-5)
    # alpha weights the gradient that reaches the prior: d loss / d prior = alpha * dKL/dp.
    f = lambda a: lambda p: kl_balanced(jnp.asarray(lq), p, a)[0]
    gp = jax.grad(f(0.8))(jnp.asarray(lp))
    g_full = jax.grad(lambda p: categorical_kl(jnp.asarray(lq), p).mean())(jnp.asarray(lp))
    np.testing.assert_allclose(gp, 0.8 * g_full, rtol=1e-5, atol=1e-7)
    gq = jax.grad(lambda q: kl_balanced(q, jnp.asarray(lp), 0.8)[0])(jnp.asarray(lq))
    gq_full = jax.grad(lambda q: categorical_kl(q, jnp.asarray(lp)).mean())(jnp.asarray(lq))
    np.testing.assert_allclose(gq, 0.2 * gq_full, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ scan == loop
def test_observe_equals_obs_step_loop():
    rssm = tiny_rssm()
    embeds, actions, is_first = rssm_inputs()
    params = rssm.init(KEY, embeds, actions, is_first, KEY)
    key = jax.random.PRNGKey(7)
    posts, priors = rssm.apply(params, embeds, actions, is_first, key, method=RSSM.observe)
    state = rssm.apply(params, 2, method=RSSM.initial_state)
    keys = jax.random.split(key, embeds.shape[1])
    for t in range(embeds.shape[1]):
        post, prior = rssm.apply(params, state, actions[:, t], embeds[:, t], is_first[:, t],
                                 keys[t], method=RSSM.obs_step)
        for name in ("deter", "stoch", "logits"):
            np.testing.assert_allclose(posts[name][:, t], post[name], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(priors[name][:, t], prior[name], rtol=1e-5, atol=1e-5)
        state = post


def test_imagine_equals_img_step_loop():
    rssm = tiny_rssm()
    embeds, actions, is_first = rssm_inputs()
    params = rssm.init(KEY, embeds, actions, is_first, KEY)
    start = jax.tree.map(lambda x: x[:, -1], rssm.apply(params, embeds, actions, is_first, KEY,
                                                        method=RSSM.observe)[0])
    key = jax.random.PRNGKey(3)
    states = rssm.apply(params, start, actions, key, method=RSSM.imagine)
    state, keys = start, jax.random.split(key, actions.shape[1])
    for t in range(actions.shape[1]):
        state = rssm.apply(params, state, actions[:, t], keys[t], method=RSSM.img_step)
        for name in ("deter", "stoch", "logits"):
            np.testing.assert_allclose(states[name][:, t], state[name], rtol=1e-5, atol=1e-5)


def test_is_first_resets_state():
    rssm = tiny_rssm()
    embeds, actions, is_first = rssm_inputs()
    params = rssm.init(KEY, embeds, actions, is_first, KEY)
    init = rssm.apply(params, 2, method=RSSM.initial_state)
    r = np.random.default_rng(5)
    junk = {"deter": jnp.asarray(r.normal(size=(2, 8)), jnp.float32),
            "stoch": jax.nn.one_hot(r.integers(0, 4, (2, 3)), 4),
            "logits": jnp.asarray(r.normal(size=(2, 3, 4)), jnp.float32)}
    first = jnp.array([True, False])
    out_junk = rssm.apply(params, junk, actions[:, 1], embeds[:, 0], first, KEY,
                          method=RSSM.obs_step)
    out_init = rssm.apply(params, init, jnp.zeros_like(actions[:, 1]), embeds[:, 0],
                          jnp.array([False, False]), KEY, method=RSSM.obs_step)
    np.testing.assert_allclose(out_junk[0]["deter"][0], out_init[0]["deter"][0], rtol=1e-6)
    assert not np.allclose(out_junk[0]["deter"][1], out_init[0]["deter"][1])
    # In a sequence: a reset mid-window makes the rest independent of what came before.
    e2 = embeds.at[:, :2].set(0.0)
    is_first = jnp.zeros((2, 5), bool).at[:, 0].set(True).at[:, 2].set(True)
    p1 = rssm.apply(params, embeds, actions, is_first, KEY, method=RSSM.observe)[0]
    p2 = rssm.apply(params, e2, actions, is_first, KEY, method=RSSM.observe)[0]
    np.testing.assert_allclose(p1["deter"][:, 2:], p2["deter"][:, 2:], rtol=1e-6)
    assert not np.allclose(p1["deter"][:, 1], p2["deter"][:, 1])


# ------------------------------------------------------------------ reconstruction weights
def test_object_weighted_reduces_to_mse_with_weight_one():
    b = jax.tree.map(jnp.asarray, pong_batch(np.random.default_rng(1), 2, 4))
    for recon in ("mse", "object_weighted", "motion_weighted", "object_motion"):
        lc = LossConfig(recon=recon, object_weight=1.0)
        np.testing.assert_array_equal(recon_weights(b["observation"], b["is_first"], lc), 1.0)
    cfg = wm_configs.get_config("tiny")
    model = make_world_model(cfg.model, (64, 64, 1), 3)
    prev = prev_actions_onehot(b["action"], b["is_first"], 18)
    params = jax.jit(model.init)(KEY, b["observation"], prev, b["is_first"], KEY)
    loss = jax.jit(lambda p, lc: world_model_loss(p, model, b, KEY, lc)[0], static_argnums=1)
    np.testing.assert_allclose(loss(params, LossConfig(recon="object_weighted", object_weight=1.0)),
                               loss(params, LossConfig(recon="mse")), rtol=1e-6)
    w = recon_weights(b["observation"], b["is_first"], LossConfig(recon="object_weighted"))
    # Ball and paddles differ from the median frame: weight 20; the rest 1.
    assert set(np.unique(np.asarray(w))) == {1.0, 20.0}
    frac = float((w > 1).mean())
    assert 0.001 < frac < 0.2, frac
    m = recon_weights(b["observation"], b["is_first"], LossConfig(recon="motion_weighted"))
    assert float(m[:, 0].max()) == 1.0 and float(m.max()) == 20.0  # no motion at t = 0


def test_unknown_recon_is_a_user_error():
    with pytest.raises(DittoError, match="loss.recon"):
        LossConfig.from_config({"recon": "l1"})
