"""The plan of one `ditto run`, read off its config: where everything goes (`Layout`), the
cells (methods x N_E x seeds), what shapes each stage's output (its stamp), which
checkpoints and action rules are evaluated, and the checks made before anything runs.
Pure bookkeeping: no jax, no data, nothing written. `run.py` executes the plan, `run_eval.py`
evaluates it and `results.py` reads what it produced."""
import os

from ditto_jax.core import io
from ditto_jax.core.config import check_fields
from ditto_jax.core.provenance import config_hash
from ditto_jax.errors import DittoError
from ditto_jax.stages.train_policy import LOOP_FIELDS as POLICY_LOOP_FIELDS
from ditto_jax.stages.train_policy import validate_policy_config
from ditto_jax.stages.train_wm import LOOP_KEYS as WM_LOOP_KEYS
from ditto_jax.stages.train_wm import validate_wm_config

STAGES = ("data", "wm", "policy", "eval", "report")
# RL Unplugged's config names ({Game}_run_{n}).
RLU_NAMES = {"pong": "Pong", "breakout": "Breakout", "mspacman": "MsPacman",
             "beamrider": "BeamRider", "qbert": "Qbert", "spaceinvaders": "SpaceInvaders"}


class Layout:
    """Where every stage reads and writes inside a pipeline workdir."""

    def __init__(self, config, workdir):
        self.workdir = os.path.abspath(workdir)
        self.data = os.path.abspath(config.paths.data or os.path.join(workdir, "data"))
        self.wm = os.path.abspath(config.paths.wm or os.path.join(workdir, "wm"))
        self.eval = os.path.join(self.workdir, "eval")
        self.plots = os.path.join(self.workdir, "plots")
        self.primary_seed = int(config.seed)
        self.expert_episodes = expert_episode_counts(config)
        self.multi_ne = len(self.expert_episodes) > 1

    def seed_suffix(self, seed):
        """'' for the run's own seed (config.seed), '-sN' for the other policy seeds."""
        return "" if int(seed) == self.primary_seed else f"-s{int(seed)}"

    def name(self, method, seed=None, rule="sample", checkpoint="final", ne=None,
             multi=None):
        """`method[-neN][-sN][-greedy][-best]`: the policy's (and its evaluation file's)
        name; `-neN` (N_E) only when the run has several N_E values (`multi`)."""
        seed = self.primary_seed if seed is None else seed
        ne = self.expert_episodes[0] if ne is None else int(ne)
        multi = self.multi_ne if multi is None else multi
        return (method + (f"-ne{ne}" if multi else "") + self.seed_suffix(seed)
                + ("-greedy" if rule == "greedy" else "")
                + ("-best" if checkpoint == "best" else ""))

    def policy(self, method, seed=None, ne=None, multi=None):
        return os.path.join(self.workdir, "policies", self.name(method, seed, ne=ne,
                                                                multi=multi))


def methods_of(config):
    from ditto_jax.methods import names  # jax: imported here to keep it out of --help
    methods = [m.strip() for m in str(config.methods).split(",") if m.strip()]
    bad = [m for m in methods if m not in names()]
    if bad or not methods:
        raise DittoError("Unknown imitation method", field="config.methods",
                         expected=f"a comma-separated subset of {','.join(names())}",
                         got=config.methods)
    return methods


def expert_episode_counts(config):
    """The N_E values of `config.expert_episodes` ("11", "1,2,4,11"; 0 = every recorded
    training episode), in the order given. Each N_E trains on the first N_E training
    episodes (nested subsets) and is checked against the same held-out episodes."""
    text = str(config.get("expert_episodes", 0)).strip().strip("()[]")
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values) or len(set(values)) != len(values):
        raise DittoError("N_E is a non-negative integer or a list of distinct ones",
                         field="config.expert_episodes",
                         expected="e.g. 11, or 1,2,4,11 (0 = every recorded episode)",
                         got=config.get("expert_episodes"))
    if len(values) > 1 and (0 in values or str(config.policy.expert_selection) != "first"):
        raise DittoError("A list of N_E values needs explicit counts and nested subsets",
                         field="config.expert_episodes",
                         expected="positive counts with config.policy.expert_selection="
                                  "first", got=f"{config.expert_episodes} with "
                                               f"expert_selection="
                                               f"{config.policy.expert_selection}")
    if config.data.source == "scripted":  # refused before hours of training, not after
        recorded, held = int(config.data.expert_episodes), int(config.policy.heldout_episodes)
        available = recorded - held if held < recorded else recorded
        if max(values) > available:
            raise DittoError("The expert dataset has fewer episodes than requested",
                             field="config.expert_episodes",
                             expected=f"at most {available} (config.data.expert_episodes "
                                      f"{recorded} recorded, the last {held} held out)",
                             got=config.expert_episodes)
    return values


def featured_method(config):
    """The method whose agent video the run shows: the first of `config.methods`."""
    return methods_of(config)[0]


def data_sources(config, layout):
    """(world-model sources, expert source, kwargs for the readers) for the data config."""
    d = config.data
    if d.source == "scripted":
        wm = [os.path.join(layout.data, n) for n, count in
              (("expert", d.expert_episodes), ("noisy", d.noisy_episodes),
               ("random", d.random_episodes)) if count > 0]
        return wm, os.path.join(layout.data, "expert"), {}
    if d.source == "rlu":
        name = RLU_NAMES.get(config.game, config.game)
        tfds_name = f"{d.rlu_name}/{name}_run_{int(d.rlu_run)}"
        reader = {"data_dir": d.rlu_data_dir or None}
        return [tfds_name], tfds_name, reader
    raise DittoError("Unknown data source", field="config.data.source",
                     expected="scripted or rlu", got=d.source)


def checkpoint_range(text, field):
    a, _, b = str(text).partition("-")
    try:
        return int(a), int(b or a)
    except ValueError:
        raise DittoError("A checkpoint range looks like A-B", field=field, got=text) from None


def run_seeds(config):
    """The policy seeds: `config.seeds` ("0,1,2"), or just `config.seed`."""
    text = str(config.get("seeds", "") or "").strip()
    if not text:
        return [int(config.seed)]
    try:
        seeds = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise DittoError("Seeds are comma-separated integers", field="config.seeds",
                         expected="e.g. 0,1,2", got=text) from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise DittoError("Seeds must be distinct integers", field="config.seeds", got=text)
    return seeds


def eval_rules(config):
    rule = str(config.eval.policy)
    if rule not in ("sample", "greedy", "both"):
        raise DittoError("Unknown evaluation action rule", field="config.eval.policy",
                         expected="sample, greedy or both", got=rule)
    return ["sample", "greedy"] if rule == "both" else [rule]


def eval_checkpoints(config, method=None):
    """Which checkpoint(s) of a policy are evaluated (`config.eval.checkpoint`): final,
    best (by held-out E[pi(a_E)], offline selection) or both. `best` exists only for
    methods acting on world-model latents (pixel BC has no held-out signal: final only)."""
    from ditto_jax.methods import get  # jax: imported here to keep it out of --help
    which = str(config.eval.get("checkpoint", "final"))
    if which not in ("final", "best", "both"):
        raise DittoError("Unknown checkpoint choice", field="config.eval.checkpoint",
                         expected="final, best or both", got=which)
    out = ["final", "best"] if which == "both" else [which]
    if method is not None and not get(method).uses_latents:
        out = ["final"]
    return out




# Config fields that do not shape a stage's output: changing them never invalidates a
# finished stage. The stages' own loop settings (the fields free to change on resume), and
# for a policy also `method` (stamped on its own) and `eval_protocol` (it only changes the
# evaluations made during training).
POLICY_UNSTAMPED = POLICY_LOOP_FIELDS + ("eval_protocol", "method")


def data_fields(config, name=None):
    """The fields that shape the recorded datasets (all of them, or dataset `name`)."""
    d = config.data
    if d.source != "scripted":
        return {"source": d.source, "game": config.game,
                **{k: d[k] for k in ("rlu_name", "rlu_run", "expert_checkpoints",
                                     "wm_checkpoints", "wm_episodes", "expert_episodes")}}
    plan = {"expert": (d.expert_policy, 0.0, d.expert_episodes),
            "noisy": (d.noisy_policy or d.expert_policy, d.noisy_epsilon, d.noisy_episodes),
            "random": ("random", 0.0, d.random_episodes)}
    out = {n: {"game": config.game, "seed": int(config.seed), "policy": pol,
               "epsilon": float(eps), "episodes": int(n_ep), "protocol": d.protocol,
               "max_steps": int(d.max_steps), "size": int(d.size)}
           for n, (pol, eps, n_ep) in plan.items() if int(n_ep) > 0}
    return out[name] if name else out


def wm_fields(config):
    wm = config.wm.to_dict()
    wm.pop("tracking", None)  # logging only
    wm["train"] = {k: v for k, v in wm["train"].items() if k not in WM_LOOP_KEYS}
    wm["train"]["seed"] = int(config.seed)
    return {"game": config.game, "data": data_fields(config), "wm": wm}


def policy_fields(config, method, seed, ne=None):
    """What shapes one policy cell (method x seed x N_E): its stamp."""
    ne = expert_episode_counts(config)[0] if ne is None else int(ne)
    pc = {k: v for k, v in config.policy.to_dict().items() if k not in POLICY_UNSTAMPED}
    pc.update(seed=int(seed), expert_episodes=ne)
    return {"method": method, "policy": pc, "wm": config_hash(wm_fields(config))}


# ------------------------------------------------------------------ the workdir
def checkpoint_step(workdir):
    """The newest readable checkpoint step of a stage's workdir (None: none yet)."""
    from ditto_jax.engine import resume_step  # jax: imported here to keep it out of --help
    return resume_step(workdir)


def policy_meta(workdir):
    """A policy's config.json ({} before it exists; rebuilt from its checkpoint if deleted)."""
    meta = io.read_json(os.path.join(workdir, "config.json"), what="policy config.json",
                        default=None)
    if meta is None and os.path.isdir(os.path.join(workdir, "checkpoints")):
        from ditto_jax.engine.fit import rebuild_config_json  # jax: only when needed
        meta = rebuild_config_json(workdir)
    return meta or {}


# ------------------------------------------------------------------ checks
def validate_pipeline_config(config):
    """The whole `ditto run` config, including the embedded wm and policy configs (each
    checked by its own stage)."""
    validate_wm_config(config.wm, "config.wm.")
    validate_policy_config(config.policy, "config.policy.")
    check_fields(config, {"eval.protocol": ("ditto", "machado"),
                          "data.protocol": ("ditto", "machado"),
                          "data.source": ("scripted", "rlu"), "eval.expert": ("live", "demos")},
                 {"eval.episodes": (1, False), "eval.envs": (1, False),
                  "eval.max_steps": (1, False), "data.max_steps": (1, False),
                  "data.size": (16, False)}, "config.")
    return config


def check_pipeline_config(config, stages=STAGES):
    """Every check `ditto run` makes before it touches the workdir (also `ditto sweep
    --dry-run`'s): the game, the stages, value bounds and choices, methods, seeds, rules.
    Sets `config.game` to its canonical name."""
    from ditto_jax.envs.atari import canonical_game  # gymnasium: kept out of --help
    config.game = canonical_game(config.game)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise DittoError("Unknown pipeline stage", field="--stages",
                         expected=f"a comma-separated subset of {','.join(STAGES)}",
                         got=",".join(unknown))
    validate_pipeline_config(config)
    from ditto_jax import methods  # the registry (jax): kept out of `ditto run --help`
    for name in methods_of(config):  # each method checks its own block of config.policy
        methods.get(name).resolve_config(config.policy.copy_and_resolve_references())
    run_seeds(config)
    expert_episode_counts(config)
    eval_rules(config)
    eval_checkpoints(config)
