"""The training engine: method registry, one `fit` loop, on-device chunks, vmapped seeds,
sharding over 8 fake CPU devices."""
import json
import os
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.conftest import REPO

POLICY_CONFIG = os.path.join(REPO, "experiments/configs/policy.py:tiny")


def _config(**overrides):
    from ditto_jax.core.config import load_config
    return load_config(POLICY_CONFIG, [f"--config.{k}={v}" for k, v in overrides.items()])


def _leaves(tree):
    return [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]


# ----------------------------------------------------------------- registry + toy method
@flax.struct.dataclass
class ToyState:
    step: jax.Array
    actor: dict
    opt: optax.OptState


def _toy_method():
    from ditto_jax import methods
    from ditto_jax.agents.actor_critic import Actor
    from ditto_jax.methods.base import Method, uniform_index
    from ditto_jax.models.rssm import get_feat

    class Toy(Method):
        """Cross-entropy on latents with label smoothing: a method `stages/` never heard of."""
        name, label, order = "toy_smooth_bc", "Toy (smoothed BC)", 90

        def _net(self, ctx):
            return Actor(ctx.num_actions, 16, 1)

        def init(self, config, ctx, key):
            params = self._net(ctx).init(key, jnp.zeros((1, ctx.feat_dim)))
            return ToyState(jnp.zeros((), jnp.int32), params, optax.adam(1e-3).init(params))

        def make_data(self, config, ctx, store, latents):
            return {"deter": latents["deter"], "stoch": latents["stoch"],
                    "action": store.action.astype(np.int32),
                    "valid": np.flatnonzero(~store.is_last).astype(np.int32)}

        def sample(self, config, data, key):
            i = uniform_index(key, data["valid"], 8)
            return {"feat": get_feat({"deter": data["deter"][i], "stoch": data["stoch"][i]}),
                    "action": data["action"][i]}

        def train_step(self, config, ctx):
            net, opt = self._net(ctx), optax.adam(1e-3)

            def step(state, batch, rng, wm_params):
                def loss_fn(p):
                    target = optax.smooth_labels(
                        jax.nn.one_hot(batch["action"], ctx.num_actions), 0.1)
                    return optax.softmax_cross_entropy(net.apply(p, batch["feat"]),
                                                       target).mean()
                loss, g = jax.value_and_grad(loss_fn)(state.actor)
                upd, opt_state = opt.update(g, state.opt, state.actor)
                return ToyState(state.step + 1, optax.apply_updates(state.actor, upd),
                                opt_state), {"toy_loss": loss}
            return step

        def actor_apply(self, config, ctx):
            return self._net(ctx).apply

    return methods.register(Toy(), replace=True)


def test_a_registered_toy_method_trains_resumes_and_evaluates(tiny_wm, pong_dataset,
                                                               tmp_path):
    from ditto_jax import methods
    from ditto_jax.stages.evaluate import evaluate_workdir
    from ditto_jax.stages.train_policy import train_policy
    toy = _toy_method()
    try:
        assert "toy_smooth_bc" in methods.names() and methods.label(toy.name) == toy.label
        logs = []
        cfg = _config(eval_every=0, log_every=2, save_every=4)
        train_policy(cfg, method=toy.name, wm=tiny_wm, expert=pong_dataset,
                     workdir=str(tmp_path), steps=4, progress=False, log=logs.append)
        train_policy(cfg, method=toy.name, wm=tiny_wm, expert=pong_dataset,
                     workdir=str(tmp_path), steps=8, progress=False, log=logs.append)
        assert "resumed from step 4" in logs
        rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
        assert [r["step"] for r in rows] == [2, 4, 6, 8]
        assert all(np.isfinite(r["toy_loss"]) and "heldout_action_accuracy" in r for r in rows)
        meta = json.load(open(tmp_path / "config.json"))
        assert meta["method"] == toy.name
        result = evaluate_workdir(str(tmp_path), episodes=2, envs=2, max_steps=40,
                                  video=False, agreement=None, references={})
        assert result["episodes"] == 2 and result["lengths"] == [40, 40]
        assert result["checkpoint"] == {"kind": "final", "step": 8}
        # Offline selection: the best held-out E[pi(a_E)] logged (first of ties) is kept.
        probs = [r["heldout_expert_prob"] for r in rows]
        best_step = rows[int(np.argmax(probs))]["step"]
        best = evaluate_workdir(str(tmp_path), episodes=2, envs=2, max_steps=40,
                                video=False, agreement=None, references={},
                                checkpoint="best")
        assert best["checkpoint"]["kind"] == "best"
        assert best["checkpoint"]["step"] == best_step
        assert best["checkpoint"]["value"] == pytest.approx(max(probs))
        assert os.path.exists(tmp_path / "eval_ditto-best.json")
    finally:
        methods.unregister(toy.name)
    with pytest.raises(Exception, match="Unknown imitation method"):
        methods.get(toy.name)


# ----------------------------------------------------------------- chunks and seeds
def test_any_chunking_of_the_device_loop_gives_the_same_state(tiny_wm, pong_dataset):
    """K updates in one fori_loop == K host calls of one update (same keys per update)."""
    from ditto_jax.core.parallel import make_mesh
    from ditto_jax.stages import train_policy as tp
    from ditto_jax.stages.policy_data import encode_store, load_expert, make_context
    from ditto_jax.stages.policy_loop import make_advance
    from ditto_jax.stages.wm_io import load_world_model
    m, cfg = tp.resolve(_config(), "ditto")
    wm_state, wm_meta = load_world_model(tiny_wm)
    store, _, _ = load_expert(cfg, pong_dataset, wm_meta)
    ctx = make_context(cfg, wm_state, wm_meta)
    data = m.make_data(cfg, ctx, store, encode_store(wm_state, store))
    axes = jax.tree.map(lambda _: None, data)
    chunk = make_advance(m, cfg, ctx, axes, make_mesh())
    init = lambda: jax.vmap(lambda k: m.init(cfg, ctx, k))(jax.random.split(  # noqa: E731
        jax.random.key(3), 1))
    keys = jax.random.split(jax.random.key(4), 1)
    a, ma = chunk(init(), keys, data, wm_state.params, 0, 6)
    b = init()
    for s in range(6):
        b, mb = chunk(b, keys, data, wm_state.params, s, 1)
    for x, y in zip(_leaves(a), _leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ma["actor_loss"], mb["actor_loss"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", [pytest.param("ditto", marks=pytest.mark.slow), "dbc"])
def test_each_vmapped_seed_equals_that_seed_trained_alone(method, tiny_wm, pong_dataset,
                                                         tmp_path):
    from ditto_jax.stages.train_policy import train_policy, train_policy_seeds
    cfg = _config(eval_every=0, log_every=3, save_every=6)
    kw = dict(method=method, wm=tiny_wm, expert=pong_dataset, steps=6, progress=False,
              log=lambda *a: None)
    both, _ = train_policy_seeds(cfg, workdirs={0: str(tmp_path / "s0"),
                                                1: str(tmp_path / "s1")}, vmap=True, **kw)
    cfg.seed = 1
    alone, _ = train_policy(cfg, workdir=str(tmp_path / "alone"), **kw)
    seed1 = jax.tree.map(lambda x: x[1], both)
    seed0 = jax.tree.map(lambda x: x[0], both)
    for x, y in zip(_leaves(seed1.actor), _leaves(alone.actor)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert any(not np.allclose(x, y) for x, y in zip(_leaves(seed0.actor),
                                                      _leaves(seed1.actor)))
    rows = {d: [json.loads(l) for l in open(tmp_path / d / "metrics.jsonl")]
            for d in ("s1", "alone")}
    key = "reward" if method == "ditto" else "bc_loss"
    np.testing.assert_allclose([r[key] for r in rows["s1"]], [r[key] for r in rows["alone"]],
                               rtol=1e-4, atol=1e-5)
    for d in ("s0", "s1"):  # each seed: its own checkpoint and config
        assert "6" in os.listdir(tmp_path / d / "checkpoints")
        assert json.load(open(tmp_path / d / "config.json"))["config"]["seed"] == int(d[1])


WORKER = r"""
import json, sys
import jax, numpy as np
from ditto_jax import methods
from ditto_jax.core.config import load_config
from ditto_jax.stages.train_policy import train_policy
cfg = load_config(sys.argv[1], ["--config.eval_every=0", "--config.log_every=4"])
state, _ = train_policy(cfg, method=sys.argv[2], wm=sys.argv[3], expert=sys.argv[4],
                        workdir=sys.argv[5], steps=4, progress=False, log=lambda *a: None)
print(json.dumps({"devices": jax.device_count(),
                  "sums": [float(np.asarray(x, np.float64).sum())
                           for x in jax.tree.leaves(methods.get(sys.argv[2]).actor_params(state))]}))
"""


@pytest.mark.parametrize("method", ["ditto", pytest.param("bc", marks=pytest.mark.slow)])
def test_policy_stage_on_eight_fake_devices_matches_one(method, tiny_wm, pong_dataset,
                                                        tmp_path):
    out = {}
    for n in (1, 8):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
                   TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run([sys.executable, "-c", WORKER, POLICY_CONFIG, method, tiny_wm,
                               pong_dataset, str(tmp_path / str(n))], capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out[1]["devices"] == 1 and out[8]["devices"] == 8
    np.testing.assert_allclose(out[8]["sums"], out[1]["sums"], rtol=1e-4, atol=1e-4)


def _fit_counter(workdir, total, signal, *, save_every=4):
    """`fit` on a toy state (w = number of updates done) whose logged `sig` is scripted."""
    from ditto_jax.engine import Loop, Run, Select, fit
    advance = lambda st, start, n: ({"w": st["w"] + n}, {"loss": np.float32(0)})  # noqa
    return fit(runs=[Run(workdir, {"kind": "toy"})], state={"w": np.float32(0)},
               advance=advance, loop=Loop(total, 2, save_every, keep=3), compat_keys=("kind",),
               what="toy checkpoint", on_log=lambda step, st, i, m: {"sig": signal[step]},
               progress=False, log=lambda *_: None, select=Select("sig"))


def _best(workdir):
    from ditto_jax.engine import checkpoint as ckpt_lib
    ck = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints_best"), read_only=True)
    try:
        state, _ = ck.restore({"w": np.float32(0)})
        return int(ck.restored_step), float(state["w"]), ck.read_meta()["selected"]
    finally:
        ck.close()


def test_fit_keeps_the_checkpoint_with_the_best_logged_signal(tmp_path):
    import shutil
    wd = str(tmp_path)
    _fit_counter(wd, 8, {2: 0.3, 4: 0.7, 6: 0.5, 8: 0.7})
    step, w, sel = _best(wd)
    assert (step, w) == (4, 4.0)  # a tie later does not replace the earlier step
    assert sel == {"step": 4, "metric": "sig", "mode": "max", "value": pytest.approx(0.7)}
    # Resumed from step 4 with a best at step 6 from the abandoned part: the replay
    # selects afresh (here its signal differs) and the stale best is not kept.
    wd2 = str(tmp_path / "b")
    _fit_counter(wd2, 8, {2: 0.1, 4: 0.2, 6: 0.9, 8: 0.3})
    assert _best(wd2)[0] == 6
    shutil.rmtree(os.path.join(wd2, "checkpoints", "8"))
    _fit_counter(wd2, 8, {2: 0.1, 4: 0.2, 6: 0.25, 8: 0.4})
    step, w, sel = _best(wd2)
    assert (step, w, sel["value"]) == (8, 8.0, pytest.approx(0.4))


def test_next_stop_ends_chunks_at_every_host_event():
    from ditto_jax.engine import Hook, Loop, next_stop
    loop = Loop(total=23, log_every=5, save_every=10)
    hooks = [Hook(7, None)]
    stops, done = [], 0
    while done < loop.total:
        done = next_stop(done, loop, hooks)
        stops.append(done)
    assert stops == [5, 7, 10, 14, 15, 20, 21, 23]


def test_fit_stops_at_its_time_limit_and_saves_there(tmp_path):
    """A clock budget (Loop.time_limit_s) ends training at the first log step after it,
    with a checkpoint at that step; a resume without the limit goes on from there."""
    import time as _time
    from ditto_jax.engine import Loop, Run, fit, resume_step

    def advance(st, start, n):
        _time.sleep(0.05 * n)
        return {"w": st["w"] + n}, {"loss": np.float32(0)}
    wd = str(tmp_path)
    msgs = []
    state = fit(runs=[Run(wd, {"kind": "toy"})], state={"w": np.float32(0)}, advance=advance,
                loop=Loop(1000, 2, 500, keep=2, time_limit_s=0.3), compat_keys=("kind",),
                what="toy checkpoint", progress=False, log=msgs.append)
    done = int(state["w"])
    assert 2 <= done < 1000 and done % 2 == 0, done  # stopped by the clock, at a log step
    assert resume_step(wd) == done                   # saved where it stopped
    assert any(f"reached at step {done} of 1000: saving and stopping" in m
               for m in msgs), msgs
    state = fit(runs=[Run(wd, {"kind": "toy"})], state={"w": np.float32(0)},
                advance=lambda st, s, n: ({"w": st["w"] + n}, {"loss": np.float32(0)}),
                loop=Loop(done + 4, 2, 500, keep=2), compat_keys=("kind",),
                what="toy checkpoint", progress=False, log=lambda *_: None)
    assert int(state["w"]) == done + 4 and resume_step(wd) == done + 4
