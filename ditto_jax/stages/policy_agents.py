"""Restoring and evaluating trained policies.

`load_policy` rebuilds a trained policy's agent (`agents/acting.py`, made by its method)
from its workdir alone (its method, config and the pinned world model);
`evaluate_agent` plays it in the real game.
"""
import os

import jax
import ml_collections

from ditto_jax.core import io
from ditto_jax.core.provenance import changed_fields
from ditto_jax.engine import BEST_DIR
from ditto_jax.engine import checkpoint as ckpt_lib
from ditto_jax.envs import atari
from ditto_jax.envs.vector import make_vector_env
from ditto_jax.errors import DittoError
from ditto_jax.stages.evaluation import OVERLAP_MIN_ENVS, run_episodes, summarize
from ditto_jax.stages.policy_data import policy_method
from ditto_jax.stages.wm_io import load_world_model


def _relpath(path, start):
    try:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(start))
    except ValueError:  # another drive (Windows)
        return os.path.abspath(path)


def resolve_wm_path(meta, workdir):
    """The world-model workdir recorded in a policy's meta (relative to the policy's)."""
    path = meta["world_model"]["workdir"]
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(workdir, path))


def evaluate_agent(agent, config, meta, *, seed, episodes=None, protocol=None,
                   record_first=False, references=None, observer=None, progress=None):
    """Plays `agent` in the real game. `references` ({"expert", "random"} returns measured
    under the same protocol and cap) give the expert-normalised score; without them it is
    None (the demonstrations' return is not comparable with capped evaluations)."""
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
        observer=observer, progress=progress,
        # Python emulators step on one core: overlap them with the device's acting
        overlap=backend == "sync" and hasattr(agent, "act_async")
        and not hasattr(agent, "bind") and int(config.eval_envs) >= OVERLAP_MIN_ENVS)
    refs = references or {}
    result = summarize(returns, lengths, game=game, protocol=protocol,
                       expert_return=refs.get("expert"), random_return=refs.get("random"),
                       max_steps=int(config.eval_max_steps))
    result["frames"] = frames
    return result


def load_pinned_world_model(meta, workdir, wm=None):
    """The world model a policy was trained on: its recorded workdir (or `wm`), at the
    recorded step, with the recorded architecture, dataset fingerprint and parameter
    digest. Anything else is refused, so a world model trained further, on other data or
    with another seed is never used silently. A policy trained before parameter digests
    were recorded loads with a one-line warning."""
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
    field = "world_model.workdir" if not wm else "--wm"
    if recorded.get("model") is not None and wm_meta.get("model") is not None:
        diff = changed_fields(recorded["model"], wm_meta["model"])
        if diff:
            raise DittoError("This world model is not the one the policy was trained on",
                             path=path, field="model." + next(iter(diff)),
                             expected=diff[next(iter(diff))][0],
                             got=diff[next(iter(diff))][1])
    for key, what in (("dataset", "was trained on other data (dataset fingerprint)"),
                      ("params_hash", "has other parameters (another seed or run)")):
        want, got = recorded.get(key), wm_meta.get(key)
        if want is not None and want != got:
            raise DittoError(f"This world model is not the one the policy was trained on: "
                             f"it {what}", path=path, field=f"world_model.{key} ({field})",
                             expected=want, got=got)
    if recorded.get("params_hash") is None:
        io.warn(f"policy {os.path.abspath(workdir)} predates world-model parameter digests; "
                f"its world model {path} is checked by step, model and dataset only")
    return wm_state, wm_meta


CHECKPOINTS = ("final", "best")


def load_policy(workdir, *, greedy=False, wm=None, checkpoint="final", matmul_dtype="float32"):
    """Restores a trained policy for evaluation: (agent, config, meta).

    checkpoint: "final" (the newest step) or "best" (the step with the best held-out
        E[pi(a_E | s_E)], kept by training in checkpoints_best: offline selection, no
        real return). `meta["checkpoint"]` says which step was read and why.
    The world model is the one it was trained on, pinned by step; `wm` overrides its
    location (a copied run whose world model lives elsewhere). matmul_dtype: the acting
    products' ("bfloat16": opt-in, `WorldModelAgent`).
    """
    if checkpoint not in CHECKPOINTS:
        raise DittoError("Unknown checkpoint choice", field="--checkpoint",
                         expected=" or ".join(CHECKPOINTS), got=checkpoint)
    ckpt_dir = os.path.join(workdir, "checkpoints" if checkpoint == "final" else BEST_DIR)
    if not os.path.isdir(ckpt_dir):
        if checkpoint == "best" and os.path.isdir(os.path.join(workdir, "checkpoints")):
            raise DittoError(
                "This policy has no selected checkpoint", path=ckpt_dir,
                expected="a policy trained with held-out expert episodes "
                         "(heldout_episodes >= 1) by a method that acts on world-model "
                         "latents; otherwise evaluate --checkpoint final")
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
        method, ctx = policy_method(meta["method"], config, wm_state, wm_meta)
        template = jax.eval_shape(lambda: method.init(config, ctx, jax.random.key(0)))
        state, _ = ckpt.restore(template)
        meta["checkpoint"] = dict(meta.get("selected") or {}, kind=checkpoint,
                                  step=int(ckpt.restored_step))
    finally:
        ckpt.close()
    agent = method.make_agent(config, ctx, wm_state, state, greedy=greedy,
                              matmul_dtype=matmul_dtype)
    return agent, config, meta

