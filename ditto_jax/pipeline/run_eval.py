"""`ditto run`'s evaluation stage: the expert and random references, and every trained
policy in the real game, under one protocol, cap, seeds and action rules; each file is
redone only when what it measured changed (settings recorded inside it)."""
import json
import os
import time

from ditto_jax.core import provenance as prov
from ditto_jax.core.io import write_json
from ditto_jax.data.reader import dataset_summary
from ditto_jax.pipeline.plan import (checkpoint_range, checkpoint_step, data_sources,
                                     eval_checkpoints, eval_rules, expert_episode_counts,
                                     featured_method, methods_of, policy_meta, run_seeds)
from ditto_jax.stages.evaluate import evaluate_workdir, reference_source
from ditto_jax.stages.evaluation import expert_spec_of, reference_returns, summarize


def _eval_settings(config, seed):
    e = config.eval
    return {"episodes": int(e.episodes), "protocol": str(e.protocol),
            "max_steps": int(e.max_steps), "seed": 12_345 + 1_000 * int(seed),
            "expert": _expert_spec(config)}


def _expert_spec(config):
    """The scripted expert measured live as the expert reference, if there is one."""
    if config.data.source != "scripted" or str(config.eval.expert) != "live":
        return None
    return expert_spec_of(config.data.expert_policy)


def _fresh(path, settings):
    """The evaluation file at `path`, if it was made with these settings."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            result = json.load(f)
    except ValueError:
        return None  # a torn file is simply redone
    return result if result.get("settings") == settings else None


def references(config, layout, seed, *, log):
    """eval/random[-sN].json and eval/expert[-sN].json for one evaluation seed: measured
    under the learners' own protocol, cap, seeds and loop (`reference_returns`)."""
    settings = _eval_settings(config, seed)
    suffix = layout.seed_suffix(seed)
    paths = {k: os.path.join(layout.eval, f"{k}{suffix}.json") for k in ("random", "expert")}
    cached = {k: _fresh(p, settings) for k, p in paths.items()}
    if all(cached.values()):
        return cached
    refs = reference_returns(config.game, protocol=settings["protocol"],
                             max_steps=settings["max_steps"], episodes=settings["episodes"],
                             seed=settings["seed"], num_envs=int(config.eval.envs),
                             size=(int(config.data.size),) * 2, expert_spec=settings["expert"])
    if refs["expert"] is None:  # no live expert: its demonstrations, labelled as such
        refs["expert"] = expert_result(config, layout, settings)
    else:
        refs["expert"]["source"] = (f"{settings['expert']} expert played live, "
                                    f"{settings['protocol']} protocol, at most "
                                    f"{settings['max_steps']} steps")
    exp, rnd = refs["expert"]["return_mean"], refs["random"]["return_mean"]
    comparable = refs["expert"].get("comparable", True)
    for name, r in refs.items():
        r.update(summarize(r["returns"], r["lengths"], game=r["game"], protocol=r["protocol"],
                           expert_return=exp if comparable else None, random_return=rnd,
                           max_steps=settings["max_steps"]))
        r.update(method=name, settings=settings, seed=int(seed))
        write_json(paths[name], r)
        log(f"eval/{name}{suffix}: return {r['return_mean']:.2f} ± {r['return_se']:.2f}"
            + (f" ({r['source']})" if r.get("source") else ""))
    return refs


def stage_eval(config, layout, *, progress, log):
    rules = eval_rules(config)
    ne_values = expert_episode_counts(config)
    jobs = [(method, ne, rule, ck) for method in methods_of(config) for ne in ne_values
            for rule in rules for ck in eval_checkpoints(config, method)]
    for seed in run_seeds(config):
        refs = references(config, layout, seed, log=log)
        exp, rnd = refs["expert"]["return_mean"], refs["random"]["return_mean"]
        if not refs["expert"].get("comparable", True):
            exp = None
        source = reference_source(layout.workdir, layout.seed_suffix(seed),
                                  refs["expert"].get("source"))  # as `ditto eval` names it
        for method, ne, rule, ck in jobs:
            workdir = layout.policy(method, seed, ne)
            name = layout.name(method, seed, rule, ck, ne)
            out = os.path.join(layout.eval, f"{name}.json")
            # Redone when the policy, its config or its world model changed since.
            settings = dict(_eval_settings(config, seed), rule=rule,
                            **({"checkpoint": ck} if ck != "final" else {}),
                            policy_step=checkpoint_step(workdir),
                            policy_stamp=(prov.read_stamp(workdir) or {}).get(
                                "fingerprint"),
                            wm_step=policy_meta(workdir).get("world_model", {}).get(
                                "step"),
                            references=[exp, rnd])
            if _fresh(out, settings):
                log(f"eval/{name}: done")
                continue
            t0 = time.perf_counter()
            result = evaluate_workdir(
                workdir, episodes=settings["episodes"], envs=int(config.eval.envs),
                protocol=settings["protocol"], seed=settings["seed"],
                greedy=rule == "greedy", max_steps=settings["max_steps"],
                video=bool(config.eval.video) and method == featured_method(config)
                and rule == rules[0] and ck == eval_checkpoints(config)[0]
                and seed == run_seeds(config)[0] and ne == ne_values[0], checkpoint=ck,
                references={"expert": exp, "random": rnd, "source": source},
                agreement=settings["expert"] if bool(config.eval.agreement) else None,
                progress=progress)
            result.update(settings=settings, seed=int(seed), rule=rule)
            write_json(out, result)
            agree = result.get("expert_agreement")
            log(f"eval/{name}: return {result['return_mean']:.2f} ± "
                f"{result['return_se']:.2f}, length {result['length_mean']:.0f}"
                + (f", on-policy expert agreement {agree:.3f}" if agree is not None
                   else "") + f" ({time.perf_counter() - t0:.0f} s)")


def expert_result(config, layout, settings):
    """The expert's demonstrations as its row, when it cannot be played live (RL Unplugged
    or a non-scripted policy). Comparable with the learners only when recorded under the
    evaluation's protocol and cap; otherwise expert-normalised scores are left empty.
    """
    _, expert, reader = data_sources(config, layout)
    kw = {}
    if config.data.source == "rlu":
        lo, hi = checkpoint_range(config.data.expert_checkpoints,
                                   "config.data.expert_checkpoints")
        kw = dict(split=f"checkpoint_{lo:02d}:checkpoint_{hi:02d}",
                  selection=f"top:{int(config.data.expert_episodes)}")
    summary = dataset_summary(expert, **reader, **kw)
    returns = summary["returns"]
    result = summarize(returns, summary["lengths"], game=config.game,
                       protocol=str(config.data.protocol))
    comparable = (config.data.source == "scripted"
                  and str(config.data.protocol) == settings["protocol"]
                  and int(config.data.max_steps) == settings["max_steps"])
    source = (f"{len(returns)} recorded demonstrations ({summary.get('policy', 'expert')}, "
              f"{config.data.protocol} protocol, at most {config.data.max_steps} steps)")
    return dict(result, method="expert", source=source, comparable=comparable)
