"""Stage 2: imitation. `ditto train-policy --method ditto|dbc|dgail|bc`.

All methods share one world-model checkpoint (pixel BC ignores it except for
the game and frame shape). Device plumbing only; the maths is in
`ditto_jax.agents`. Like the world-model stage, update `s` draws its batch with
seed (seed, s) and its key with fold_in(key, s), so a resumed run reproduces an
uninterrupted one.
"""
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ditto_jax import checkpoint as ckpt_lib
from ditto_jax import parallel
from ditto_jax import resources
from ditto_jax.errors import DittoError
from ditto_jax.metrics import MetricWriter

ACCEPTS_EXTRA_ARGS = True
DEFAULT_CONFIG = resources.config_path("policy.py") + ":small"  # any cwd, any install
METHODS = ("ditto", "dbc", "dgail", "bc", "ditto_bcinit")
# Methods that learn in imagination from expert windows (the rest clone actions).
IMAGINATION = ("ditto", "dgail", "ditto_bcinit")
_COMPAT_KEYS = ("method", "agent_config", "world_model", "expert")


def add_arguments(p):
    from ditto_jax.cli import positive_int
    p.add_argument("--method", default=None, choices=METHODS,
                   help="imitation method (default: the config's)")
    p.add_argument("--config", default=DEFAULT_CONFIG, type=resources.resolve_config_spec,
                   help="config file and preset; override fields with --config.KEY=VALUE")
    p.add_argument("--wm", required=True, help="workdir of a trained world model")
    p.add_argument("--expert", required=True, help="expert RLDS dataset (dir or TFDS name)")
    p.add_argument("--data-dir", default=None,
                   help="TFDS data directory for a TFDS name (default: ~/tensorflow_datasets)")
    p.add_argument("--split", default=None,
                   help="TFDS split expression, e.g. train, 'train[:10]', 'train[10%%:]', "
                        "'a+b', or checkpoint_40:checkpoint_49 (default: train, else every "
                        "split)")
    p.add_argument("--workdir", required=True,
                   help="output folder: checkpoints, metrics, config")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="total updates (default: the config's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# --------------------------------------------------------------------- inputs
def load_expert(config, expert, wm_meta, *, data_dir=None, split=None, progress=False):
    """Expert episodes checked against the world model: (train store, held-out store, info)."""
    from ditto_jax.data.rlds import Selection, load_episodes, read_dataset_metadata
    from ditto_jax.data.store import EpisodeStore
    obs_shape = tuple(wm_meta["obs_shape"])
    ds_meta = read_dataset_metadata(expert, data_dir=data_dir)
    wm_game, ds_game = wm_meta.get("game"), ds_meta.get("game")
    if wm_game and ds_game and str(wm_game).lower() != str(ds_game).lower():
        raise DittoError("The expert data and the world model are from different games",
                         path=expert, field="game", expected=wm_game, got=ds_game)
    if wm_game and not ds_game:
        # Without its metadata nothing says which game the data is from; an action-count
        # check alone lets a Breakout expert (4 actions) train on a Pong model (6).
        raise DittoError("Cannot tell which game the expert data is from (its metadata has "
                         "no `game`; was metadata.json deleted?)", path=expert,
                         field="game", expected=wm_game, got="(missing)")
    wm_actions, ds_actions = wm_meta.get("action_meanings"), ds_meta.get("action_meanings")
    if wm_actions and ds_actions and list(wm_actions) != list(ds_actions):
        raise DittoError("The expert data uses a different action set than the world model",
                         path=expert, field="action_meanings", expected=wm_actions,
                         got=ds_actions)
    selection = None
    n = int(config.expert_episodes)
    if n > 0:
        n_total = n + int(config.heldout_episodes)
        selection = Selection(top=n_total) if config.expert_selection == "top" else \
            Selection(first=n_total)
    # Frames are resized only on request (e.g. RL Unplugged's 84x84 for a 64x64 model):
    # a silent resize would hide data that does not belong to this world model.
    resize = obs_shape[:2] if config.expert_resize else None
    episodes = load_episodes(expert, data_dir=data_dir, split=split, selection=selection,
                             resize=resize, expected_obs_shape=obs_shape,
                             num_actions=int(wm_meta["num_actions"]), progress=progress)
    held = int(config.heldout_episodes)
    if n > 0 and len(episodes) < n + held:
        # Training on fewer episodes than asked would label the run with the wrong N_E.
        raise DittoError("The expert dataset has fewer episodes than requested",
                         path=expert, field="expert_episodes",
                         expected=f"{n} for training + {held} held out = {n + held}",
                         got=f"{len(episodes)} episodes")
    if held >= len(episodes):
        held = 0
    train_eps, held_eps = episodes[:len(episodes) - held], episodes[len(episodes) - held:]
    info = {
        "episodes": len(train_eps), "heldout_episodes": len(held_eps),
        "expert_return": float(np.mean([e.metadata.get("episode_return", np.nan)
                                        for e in train_eps])),
        "game": ds_game or wm_game,
    }
    store = EpisodeStore.from_episodes(train_eps, num_actions=int(wm_meta["num_actions"]))
    held_store = EpisodeStore.from_episodes(held_eps, num_actions=int(
        wm_meta["num_actions"])) if held_eps else None
    return store, held_store, info


def inference_model(wm_state):
    """The world model for forward-only use (encoding expert data, acting).

    XLA's own convolution is fast forward and slow only in the backward pass, which these
    paths never take; the parameters are the same for either conv implementation.
    """
    return wm_state.model.clone(conv_impl="lax")


def encode_store(wm_state, store, *, chunk=256, seed=0):
    """Posterior latents of every stored step (flat order): dict of (N, ...) arrays.

    The flat stream is filtered in fixed-size chunks with the state carried over,
    and `is_first` resets it at each episode start, so every episode is filtered
    from its first frame as in acting.
    """
    from ditto_jax.models.world_model import WorldModel
    model = inference_model(wm_state)
    n = store.num_steps
    pad = (-n) % chunk
    obs = np.concatenate([store.observation, np.zeros((pad,) + store.observation.shape[1:],
                                                      np.uint8)])
    prev = np.concatenate([store.prev_action, np.zeros(pad, store.prev_action.dtype)])
    first = np.concatenate([store.is_first, np.ones(pad, bool)])

    @jax.jit
    def run(params, state, obs, prev, first, key):
        prev_onehot = jax.nn.one_hot(prev, model.action_dim)
        posts, _ = model.apply(params, obs[None], prev_onehot[None], first[None], key,
                               state, method=WorldModel.observe)
        posts = jax.tree.map(lambda x: x[0], posts)
        return jax.tree.map(lambda x: x[-1:], posts), posts

    state = model.apply(wm_state.params, 1, method=WorldModel.initial_state)
    out = []
    key = jax.random.key(seed)
    for i in range(0, n + pad, chunk):
        state, posts = run(wm_state.params, state, obs[i:i + chunk], prev[i:i + chunk], first[i:i + chunk],
                           jax.random.fold_in(key, i))
        out.append(posts)
    latents = jax.tree.map(lambda *xs: jnp.concatenate(xs)[:n], *out)
    return {k: latents[k] for k in ("deter", "stoch", "logits")}


# ---------------------------------------------------------------------- agents
class WorldModelAgent:
    """Acts from pixels: encoder -> RSSM posterior filter -> actor, jitted and batched."""

    def __init__(self, wm_state, actor_apply, actor_params, *, greedy=False):
        from ditto_jax.models.world_model import WorldModel
        from ditto_jax.models.rssm import get_feat
        self.model, self.params = inference_model(wm_state), wm_state.params
        self.actor_params = actor_params
        action_dim = self.model.action_dim

        @jax.jit
        def act(params, actor_params, carry, obs, is_first, key):
            state, prev_action = carry
            k_post, k_act = jax.random.split(key)
            post, _ = self.model.apply(params, state, prev_action, obs, is_first, k_post,
                                       method=WorldModel.obs_step)
            logits = actor_apply(actor_params, get_feat(post))
            action = jnp.argmax(logits, -1) if greedy else jax.random.categorical(k_act, logits)
            return (post, jax.nn.one_hot(action, action_dim)), action

        self._act = act
        self._init = lambda n: (self.model.apply(self.params, n,
                                                 method=WorldModel.initial_state),
                                jnp.zeros((n, action_dim)))

    def init(self, num_envs):
        return self._init(num_envs)

    def act(self, carry, obs, is_first, key):
        carry, action = self._act(self.params, self.actor_params, carry, jnp.asarray(obs),
                                  jnp.asarray(is_first), key)
        return carry, np.asarray(action)


class PixelBCAgent:
    """Pixel BC acting on the last k frames (repeating the first frame of an episode)."""

    def __init__(self, net, params, frame_stack, *, greedy=False):
        self.params, self.k = params, frame_stack

        @jax.jit
        def act(params, frames, key):
            logits = net.apply(params, frames)
            return jnp.argmax(logits, -1) if greedy else jax.random.categorical(key, logits)

        self._act = act

    def init(self, num_envs):
        return None

    def act(self, carry, obs, is_first, key):
        obs = np.asarray(obs)
        if carry is None:
            carry = np.repeat(obs, self.k, axis=-1)
        first = np.asarray(is_first)
        carry = np.where(first[:, None, None, None], np.repeat(obs, self.k, axis=-1),
                         np.concatenate([carry[..., 1:], obs], axis=-1))
        return carry, np.asarray(self._act(self.params, carry, key))


# ------------------------------------------------------------------------ loop
def _relpath(path, start):
    try:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(start))
    except ValueError:  # another drive (Windows)
        return os.path.abspath(path)


def resolve_wm_path(meta, workdir):
    """The world-model workdir recorded in a policy's meta (relative to the policy's)."""
    path = meta["world_model"]["workdir"]
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(workdir, path))


def _agent_meta(config, method, wm_meta, wm_workdir, expert, expert_info, workdir):
    agent_cfg = {k: v for k, v in config.to_dict().items()
                 if k not in ("steps", "log_every", "save_every", "keep_checkpoints",
                              "eval_every", "eval_episodes", "eval_envs", "eval_max_steps",
                              "tracking")}
    return {
        "method": method, "config": config.to_dict(), "agent_config": agent_cfg,
        # The step too: a policy resumed on a world model trained further is refused.
        # Stored relative to the policy's workdir, so a run directory can be moved.
        "world_model": {"workdir": _relpath(wm_workdir, workdir), "step": wm_meta.get("step"),
                        "dataset": wm_meta.get("dataset"), "model": wm_meta.get("model")},
        "expert": {"source": os.path.abspath(expert) if os.path.exists(expert) else expert,
                   "episodes": expert_info["episodes"]},
        "expert_return": expert_info["expert_return"],
        "game": expert_info.get("game") or wm_meta.get("game"),
        "obs_shape": wm_meta["obs_shape"], "num_actions": wm_meta["num_actions"],
        "action_meanings": wm_meta.get("action_meanings"),
    }


def build_method(config, method, wm_state, wm_meta, *, key):
    """(agent state, pure train step, actor apply) for a method.

    The step is `(state, batch, rng, wm_params) -> (state, metrics)`: the frozen world
    model's parameters are an ARGUMENT of the jitted update, never a closure constant
    (constants are compiled into the program: slow compiles, no persistent-cache hits).
    """
    from ditto_jax.agents import imitation
    from ditto_jax.agents.bc import make_bc
    from ditto_jax.agents.rewards import latent_part
    from ditto_jax.models.rssm import get_feat
    from ditto_jax.models.world_model import WorldModel
    num_actions = int(wm_meta["num_actions"])
    model, params = wm_state.model, wm_state.params
    if method == "bc":
        net, init, step = make_bc(config, num_actions)
        return (init(tuple(wm_meta["obs_shape"]), key),
                lambda state, batch, rng, wm_params: step(state, batch, rng), net.apply)
    dummy = model.apply(params, 1, method=WorldModel.initial_state)
    feat_dim = get_feat(dummy).shape[-1]
    part_dim = latent_part(dummy, config.latent).shape[-1]
    state = imitation.init_agent_state(config, feat_dim, part_dim, num_actions, key)
    actor_apply = imitation.policy_logits(config, num_actions)
    if method == "dbc":
        dbc = imitation.make_dbc_step(config, num_actions=num_actions)
        return state, lambda state, batch, rng, wm_params: dbc(state, batch, rng), actor_apply
    if method == "dgail":
        config.reward = "gail"

    make = (imitation.make_bcinit_ditto_step if method == "ditto_bcinit"
            else imitation.make_imagination_step)

    def step(state, batch, rng, wm_params):
        def img_step(s, a, k):
            return model.apply(wm_params, s, a, k, method=WorldModel.img_step)
        return make(config, img_step=img_step, feat=get_feat, num_actions=num_actions,
                    action_dim=model.action_dim)(state, batch, rng)
    return state, step, actor_apply


def train_policy(config, *, method, wm, expert, workdir, data_dir=None, split=None,
                 steps=None, progress=True, log=print):
    """Trains (or resumes) one imitation method; returns (state, final evaluation)."""
    from ditto_jax.agents.bc import stack_frames
    from ditto_jax.agents.rewards import latent_part
    from ditto_jax.models.rssm import get_feat
    from ditto_jax.stages.train_wm import load_world_model

    method = method or config.method
    if method not in METHODS:
        raise DittoError("Unknown imitation method", field="--method", expected=METHODS,
                         got=method)
    config.method = method
    if steps is not None:
        config.steps = int(steps)
    from ditto_jax.configs import validate_policy_config
    validate_policy_config(config)  # before any data or checkpoint is read
    if not os.path.exists(expert) and "/" not in expert:
        raise DittoError("Expert dataset not found", path=expert)
    wm_state, wm_meta = load_world_model(wm)
    store, held_store, expert_info = load_expert(config, expert, wm_meta, data_dir=data_dir,
                                                 split=split)
    meta = _agent_meta(config, method, wm_meta, wm, expert, expert_info, workdir)
    from ditto_jax.provenance import provenance
    meta["provenance"] = provenance(meta["agent_config"], seeds=[int(config.seed)])
    key = jax.random.key(config.seed)
    init_key, loop_key = jax.random.split(key)
    state, pure_step, actor_apply = build_method(config, method, wm_state, wm_meta,
                                                 key=init_key)

    # Expert latents, cached on device once (pixel BC does not use them).
    latents = held_latents = None
    if method != "bc":
        latents = encode_store(wm_state, store, seed=config.seed)
        if held_store is not None:
            held_latents = encode_store(wm_state, held_store, seed=config.seed)

    horizon, batch_size = int(config.horizon), int(config.batch_size)
    part = config.latent

    if method in IMAGINATION:
        actions = jnp.asarray(store.action.astype(np.int32))

        @jax.jit
        def step_fn(state, index, rng, latents, wm_params):
            start = jax.tree.map(lambda x: x[index[:, 0]], latents)
            expert_part = latent_part(jax.tree.map(lambda x: x[index], latents), part)
            batch = {"start": start, "expert": expert_part}
            if method == "ditto_bcinit":  # the expert's action at each start state
                batch["action"] = actions[index[:, 0]]
            return pure_step(state, batch, rng, wm_params)

        def make_batch(rng):
            return store.sample_expert_windows(rng, batch_size, horizon,
                                               with_observation=False)["index"]
    elif method == "dbc":
        valid = np.flatnonzero(~store.is_last)

        @jax.jit
        def step_fn(state, batch, rng, latents, wm_params):
            index, action = batch
            feat = get_feat(jax.tree.map(lambda x: x[index], latents))
            return pure_step(state, {"feat": feat, "action": action}, rng, wm_params)

        def make_batch(rng):
            index = rng.choice(valid, batch_size)
            return index, store.action[index].astype(np.int32)
    else:  # pixel BC
        valid = np.flatnonzero(~store.is_last)
        episode_start = store.starts[store.episode_of(np.arange(store.num_steps))]
        bc_batch = int(config.bc_batch_size)

        @jax.jit
        def step_fn(state, batch, rng, latents, wm_params):
            del latents
            return pure_step(state, batch, rng, wm_params)

        def make_batch(rng):
            index = rng.choice(valid, bc_batch)
            return {"frames": stack_frames(store.observation, episode_start, index,
                                           config.bc_frame_stack),
                    "action": store.action[index].astype(np.int32)}

    os.makedirs(workdir, exist_ok=True)
    from ditto_jax import io
    lock = io.lock_workdir(workdir, "ditto train-policy")
    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                 save_every=config.save_every, keep=config.keep_checkpoints)
    writer = MetricWriter(workdir, tracking=dict(config.get("tracking") or {}),
                          run_config=config.to_dict())
    start = 0
    evals = []
    if ckpt.latest_step() is not None:
        saved = ckpt.read_meta()
        ckpt_lib.check_compatible(saved, meta, _COMPAT_KEYS, path=ckpt.directory,
                                  what="policy checkpoint")
        state, saved = ckpt.restore(state)
        start = int(ckpt.restored_step)
        evals = list(saved.get("evals", []))
        evals = [e for e in evals if e["step"] <= start]
        writer.truncate_after(start)
        log(f"resumed from step {start}")
    io.write_json_atomic(os.path.join(workdir, "config.json"), meta, default=str)
    writer.add_provenance(meta["provenance"], start)

    total = int(config.steps)
    from tqdm import tqdm
    bar = tqdm(total=total, initial=start, unit="step", disable=not progress,
               desc=f"train-policy/{method}", dynamic_ncols=True)
    last_log = time.perf_counter()
    result = None
    try:
        for step in range(start, total):
            rng = np.random.default_rng([config.seed, step])
            state, metrics = step_fn(state, make_batch(rng), jax.random.fold_in(loop_key, step),
                                     latents, wm_state.params)
            done = step + 1
            want_log = done % config.log_every == 0 or done == total
            want_save = ckpt.manager.should_save(done) or done == total
            want_eval = config.eval_every and (done % config.eval_every == 0 or done == total)
            if want_log or want_save:
                metrics = ckpt_lib.fetch_checked_metrics(metrics, done, ckpt, workdir)
                if method == "dgail":
                    metrics.update(_gail_collapse(metrics))
                if held_latents is not None and method != "bc":
                    metrics.update(heldout_diagnostics(
                        actor_apply, _actor_params(state, method), held_latents, held_store))
                now = time.perf_counter()
                metrics["steps_per_s"] = config.log_every / max(now - last_log, 1e-9)
                last_log = now
                writer.write(done, metrics)
                bar.set_postfix({k: f"{float(metrics[k]):.3f}" for k in
                                 ("reward", "bc_loss", "accuracy") if k in metrics})
            if want_eval:
                result = evaluate_agent(make_agent(method, config, wm_state, actor_apply,
                                                   state, wm_meta),
                                        config, meta, seed=config.seed + 10_000 + done)
                evals.append({"step": done, "return_mean": result["return_mean"],
                              "expert_normalized": result["expert_normalized"]})
                last10 = [e["return_mean"] for e in evals[-10:]]
                writer.write(done, {"eval/return_mean": result["return_mean"],
                                    "eval/return_se": result["return_se"],
                                    "eval/length_mean": result["length_mean"],
                                    "eval/return_last10": float(np.mean(last10))})
                bar.write(f"step {done}: eval return {result['return_mean']:.2f} "
                          f"± {result['return_se']:.2f} over {result['episodes']} episodes")
            if want_save:
                ckpt.save(done, state, dict(meta, evals=evals), force=done == total)
            bar.update(1)
    finally:
        bar.close()
        ckpt.close()
        writer.close()
        lock.release()
    return state, result


def _actor_params(state, method):
    return state.params if method == "bc" else state.actor


def heldout_diagnostics(actor_apply, actor_params, latents, store):
    """The actor on held-out expert states (never trained on):

    heldout_action_accuracy  greedy action == expert action
    heldout_expert_prob      E[pi(a_E | s_E)], what a sampling policy actually does
    heldout_entropy          mean policy entropy in nats
    These see expert states only, so they cannot show covariate shift; the on-policy
    expert agreement measured during evaluation does.
    """
    from ditto_jax.models.rssm import get_feat
    valid = np.flatnonzero(~store.is_last)
    feat = get_feat(jax.tree.map(lambda x: x[valid], latents))
    logp = jax.nn.log_softmax(actor_apply(actor_params, feat))
    expert = jnp.asarray(store.action[valid].astype(np.int32))
    p_expert = jnp.exp(jnp.take_along_axis(logp, expert[:, None], -1)[:, 0])
    entropy = -jnp.sum(jnp.exp(logp) * logp, -1)
    return {"heldout_action_accuracy": float((jnp.argmax(logp, -1) == expert).mean()),
            "heldout_expert_prob": float(p_expert.mean()),
            "heldout_entropy": float(entropy.mean())}


def heldout_accuracy(actor_apply, actor_params, latents, store):
    """Expert-action accuracy of the greedy actor on held-out expert steps."""
    return heldout_diagnostics(actor_apply, actor_params, latents,
                               store)["heldout_action_accuracy"]


def _gail_collapse(metrics):
    """Discriminator collapse: it wins outright (agent reward ~0) or learns nothing."""
    d_exp, d_agent = float(metrics["disc_expert"]), float(metrics["disc_agent"])
    collapsed = (d_exp > 0.99 and d_agent < 0.01) or abs(d_exp - d_agent) < 1e-3
    return {"disc_collapsed": float(collapsed)}


def make_agent(method, config, wm_state, actor_apply, state, meta, greedy=False):
    if method == "bc":
        from ditto_jax.agents.bc import PixelPolicy
        net = PixelPolicy(int(meta["num_actions"]), config.bc_depth)
        return PixelBCAgent(net, state.params, config.bc_frame_stack, greedy=greedy)
    return WorldModelAgent(wm_state, actor_apply, state.actor, greedy=greedy)


def evaluate_agent(agent, config, meta, *, seed, episodes=None, protocol=None,
                   record_first=False, references=None, observer=None, progress=None):
    """Plays `agent` in the real game. `references` ({"expert", "random"} returns measured
    under the same protocol and cap) give the expert-normalised score; without them it is
    None (the demonstrations' return is not comparable with capped evaluations)."""
    from ditto_jax.envs import atari
    from ditto_jax.envs.vector import make_vector_env
    from ditto_jax.evaluation import run_episodes, summarize
    game = atari.canonical_game(meta["game"])
    protocol = protocol or config.eval_protocol
    size = tuple(meta["obs_shape"][:2])
    episodes = episodes or int(config.eval_episodes)
    # Asking a scripted expert in the learner's states needs emulator access per env.
    backend = "sync" if observer is not None else "native"
    returns, lengths, frames = run_episodes(
        lambda n: make_vector_env(game, n, protocol, size=size, seed=seed, backend=backend),
        agent, episodes=episodes, num_envs=int(config.eval_envs), seed=seed,
        max_steps=int(config.eval_max_steps), record_first=record_first,
        observer=observer, progress=progress)
    refs = references or {}
    result = summarize(returns, lengths, game=game, protocol=protocol,
                       expert_return=refs.get("expert"), random_return=refs.get("random"),
                       max_steps=int(config.eval_max_steps))
    result["frames"] = frames
    return result


def load_pinned_world_model(meta, workdir, wm=None):
    """The world model a policy was trained on: its recorded workdir (or `wm`), at the
    recorded step, with the recorded architecture. Anything else is refused, so a world
    model trained further, or another one, is never used silently."""
    from ditto_jax.stages.train_wm import load_world_model
    recorded = meta.get("world_model", {})
    path = os.path.abspath(wm) if wm else resolve_wm_path(meta, workdir)
    ckpt_dir = os.path.join(path, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise DittoError("The policy's world model is not there", path=path,
                         field="world_model.workdir" if not wm else "--wm",
                         expected="the world-model workdir this policy was trained on "
                                  "(pass --wm / load_policy(..., wm=...) if it moved)")
    step = recorded.get("step")
    if step is not None:
        ckpt = ckpt_lib.Checkpointer(ckpt_dir, read_only=True)
        try:
            steps = sorted(ckpt.manager.all_steps())
        finally:
            ckpt.close()
        if int(step) not in steps:
            raise DittoError("The world-model step this policy was trained on is gone",
                             path=ckpt_dir, field="world_model.step", expected=int(step),
                             got=f"steps {steps}")
    wm_state, wm_meta = load_world_model(path, step=step)
    if recorded.get("model") is not None and wm_meta.get("model") is not None:
        from ditto_jax.provenance import changed_fields
        diff = changed_fields(recorded["model"], wm_meta["model"])
        if diff:
            raise DittoError("This world model is not the one the policy was trained on",
                             path=path, field="model." + next(iter(diff)),
                             expected=diff[next(iter(diff))][0],
                             got=diff[next(iter(diff))][1])
    return wm_state, wm_meta


def load_policy(workdir, *, greedy=False, wm=None):
    """Restores a trained policy for evaluation: (agent, config, meta).

    The world model is the one it was trained on, pinned by step; `wm` overrides its
    location (a copied run whose world model lives elsewhere).
    """
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise DittoError("No policy checkpoint here", path=ckpt_dir,
                         expected="the --workdir of a `ditto train-policy` run")
    ckpt = ckpt_lib.Checkpointer(ckpt_dir, read_only=True)
    try:
        meta = ckpt.read_meta()
        if "method" not in meta:
            raise DittoError("This is not a policy workdir (it holds a world model?)",
                             path=workdir, field="--workdir",
                             expected="the --workdir of `ditto train-policy` "
                                      "(or RUN/policies/METHOD of `ditto run`)")
        config = ml_collections.ConfigDict(meta["config"])
        wm_state, wm_meta = load_pinned_world_model(meta, workdir, wm)
        template, _, actor_apply = build_method(config, meta["method"], wm_state, wm_meta,
                                                key=jax.random.key(0))
        state, _ = ckpt.restore(template)
    finally:
        ckpt.close()
    agent = make_agent(meta["method"], config, wm_state, actor_apply, state, meta,
                       greedy=greedy)
    return agent, config, meta


def main(args):
    from ditto_jax.configs import config_overrides, load_config
    overrides = config_overrides(args.extra_args)
    config = load_config(args.config, overrides)
    parallel.enable_compilation_cache()
    train_policy(config, method=args.method, wm=args.wm, expert=args.expert,
                 workdir=args.workdir, data_dir=args.data_dir, split=args.split,
                 steps=args.steps, progress=not args.quiet)
    return 0
