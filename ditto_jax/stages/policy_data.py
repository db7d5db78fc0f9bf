"""Expert data for the imitation stage: loading, checking against the world model, and
encoding every expert step into the world model's latent space (host side, once)."""
import jax
import jax.numpy as jnp
import numpy as np

from ditto_jax import methods
from ditto_jax.agents.rewards import latent_part
from ditto_jax.data.reader import load_episodes
from ditto_jax.data.schema import Selection
from ditto_jax.data.source import read_dataset_metadata
from ditto_jax.data.store import EpisodeStore
from ditto_jax.errors import DittoError
from ditto_jax.models.rssm import get_feat
from ditto_jax.models.world_model import WorldModel


def load_expert(config, expert, wm_meta, *, data_dir=None, split=None, progress=False,
                cache=None):
    """Expert episodes checked against the world model: (train store, held-out store, info).
    `cache` (a dict shared by the N_E values of one `ditto run`): the dataset is read once."""
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
    n, held = int(config.expert_episodes), int(config.heldout_episodes)
    # Frames are resized only on request (e.g. RL Unplugged's 84x84 for a 64x64 model):
    # a silent resize would hide data that does not belong to this world model.
    resize = obs_shape[:2] if config.expert_resize else None
    top = config.expert_selection == "top"
    selection = Selection(top=n + held) if top and n > 0 else None
    key = ("episodes", expert, data_dir, split, str(selection), resize)
    episodes = (cache or {}).get(key)
    if episodes is None:
        episodes = load_episodes(expert, data_dir=data_dir, split=split,
                                 selection=selection, resize=resize,
                                 expected_obs_shape=obs_shape,
                                 num_actions=int(wm_meta["num_actions"]), progress=progress)
        if cache is not None:
            cache[key] = episodes
    train_eps, held_eps = split_expert(episodes, n, held, path=expert)
    info = {
        "episodes": len(train_eps), "heldout_episodes": len(held_eps),
        # Which episodes: nested over N_E, the held-out ones the same for every N_E.
        "episode_ids": [e.metadata.get("episode_id") for e in train_eps],
        "heldout_episode_ids": [e.metadata.get("episode_id") for e in held_eps],
        "expert_return": float(np.mean([e.metadata.get("episode_return", np.nan)
                                        for e in train_eps])),
        "game": ds_game or wm_game,
    }
    num_actions = int(wm_meta["num_actions"])
    store = EpisodeStore.from_episodes(train_eps, num_actions=num_actions)
    held_store = EpisodeStore.from_episodes(held_eps, num_actions=num_actions) \
        if held_eps else None
    if cache is not None:  # the training pool every N_E takes its prefix of
        pool = key + ("pool", held)
        if pool not in cache:
            cache[pool] = EpisodeStore.from_episodes(
                split_expert(episodes, 0, held, path=expert)[0], num_actions=num_actions)
        store.pool_key, store.pool = pool, cache[pool]
        if held_store is not None:
            held_store.pool_key = key + ("held", held)
    return store, held_store, info


def split_expert(episodes, n, held, *, path):
    """(training, held-out) episodes for N_E = `n` (0: all): the held-out ones are the LAST
    `held` episodes of the dataset, the same for every N_E and never trained on; training
    takes the first `n` of the others, so the subsets are nested (N_E = 2 contains
    N_E = 1). With `expert_selection=top`, `episodes` is already the top n + held."""
    if held >= len(episodes) and n == 0:
        held = 0   # a single episode: trained on, none held out (as before)
    available = len(episodes) - held
    if n > available or available < 1:
        # Training on fewer episodes than asked would label the run with the wrong N_E.
        raise DittoError("The expert dataset has fewer episodes than requested",
                         path=path, field="expert_episodes",
                         expected=f"{n} for training + {held} held out = {n + held}",
                         got=f"{len(episodes)} episodes ({max(available, 0)} available "
                             f"for training)")
    pool, held_eps = episodes[:available], episodes[available:]
    return (pool[:n] if n > 0 else pool), held_eps


def encode_expert(wm_state, store, *, seed, cache=None):
    """`encode_store(wm_state, store, seed=seed)`, through `cache`: the whole training
    pool is encoded once per seed and each N_E subset takes its prefix. The filter runs
    causally in fixed chunks keyed by their flat offset, so the prefix equals encoding the
    subset alone (tests/test_train_policy.py checks it)."""
    pool_key = getattr(store, "pool_key", None)
    if cache is None or pool_key is None:
        return encode_store(wm_state, store, seed=seed)
    pool = getattr(store, "pool", store)
    key = ("latents", pool_key, seed)
    if key not in cache:
        cache[key] = encode_store(wm_state, pool, seed=seed)
    return jax.tree.map(lambda x: x[:store.num_steps], cache[key])


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


def make_context(config, wm_state, wm_meta):
    """The `methods.Context` of this world model and game (shapes only, no params)."""
    model = wm_state.model
    dummy = model.apply(wm_state.params, 1, method=WorldModel.initial_state)
    return methods.Context(num_actions=int(wm_meta["num_actions"]),
                           obs_shape=tuple(wm_meta["obs_shape"]),
                           action_dim=int(model.action_dim),
                           feat_dim=int(get_feat(dummy).shape[-1]),
                           part_dim=int(latent_part(dummy, config.latent).shape[-1]),
                           wm_model=model)


def policy_method(name, config, wm_state, wm_meta):
    """(the registered method `name`, its Context for this world model). Needs no
    emulator (ale-py), so the accelerator host's benchmarks build methods with it."""
    return methods.get(name), make_context(config, wm_state, wm_meta)


def heldout_diagnostics(actor_apply, actor_params, latents, store):
    """The actor on held-out expert states (never trained on):

    heldout_action_accuracy  greedy action == expert action
    heldout_expert_prob      E[pi(a_E | s_E)], what a sampling policy actually does
    heldout_entropy          mean policy entropy in nats
    These see expert states only, so they cannot show covariate shift; the on-policy
    expert agreement measured during evaluation does.
    """
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


