"""`ditto eval`: evaluate a trained policy in the real game."""
import json
import os
import re

from ditto_jax.core import viz
from ditto_jax.core.args import non_negative_int, positive_int
from ditto_jax.core.io import write_json_atomic
from ditto_jax.data.source import read_dataset_metadata
from ditto_jax.errors import DittoError
from ditto_jax.stages.evaluation import ExpertAgreement, expert_spec_of, reference_returns


def add_arguments(p):
    p.add_argument("--workdir", required=True, help="workdir of `ditto train-policy`")
    p.add_argument("--episodes", type=positive_int, default=10, help="episodes to play")
    p.add_argument("--envs", type=positive_int, default=8, help="parallel environments")
    p.add_argument("--protocol", default="ditto", choices=["ditto", "machado"],
                   help="evaluation protocol (frame skip, sticky actions, episode caps)")
    p.add_argument("--seed", type=non_negative_int, default=12345,
                   help="seed of the environments and the policy's sampling")
    p.add_argument("--max-steps", type=positive_int, default=27_000,
                   help="agent steps per episode (the protocols' own caps still apply)")
    p.add_argument("--policy", default="sample", choices=["sample", "greedy"],
                   help="action rule: sample from pi (as the authors evaluate) or argmax")
    p.add_argument("--greedy", action="store_true", help="same as --policy greedy")
    p.add_argument("--checkpoint", default="final", choices=["final", "best"],
                   help="final: the last step (what tables report by default); best: the "
                        "step with the best held-out E[pi(a_E|s_E)] on expert states kept "
                        "out of training (offline model selection; no real return used)")
    p.add_argument("--act-matmul", default="float32", choices=["float32", "bfloat16"],
                   help="precision of the acting products (world-model policies): bfloat16 "
                        "rounds the encoder's and the RSSM's matmul operands to bf16 "
                        "(sums in float32): acting takes 0.7x the time at 8-16 envs on "
                        "a CPU with AMX-BF16, but with on-policy agreement the emulators "
                        "dominate and the evaluation gains nothing; an opt-in change of "
                        "the maths, written to eval_PROTOCOL[-best]-bf16.json")
    p.add_argument("--wm", default=None,
                   help="world-model workdir, if it moved since training (the recorded "
                        "step is still required)")
    p.add_argument("--no-agreement", action="store_true",
                   help="skip on-policy expert agreement (asking the scripted expert in "
                        "the learner's states)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-video", action="store_true", help="do not write episode videos")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _expert_spec(meta):
    """The scripted expert behind the policy's demonstrations, if it can be asked live."""
    source = meta.get("expert", {}).get("source")
    if not source:
        return None
    try:
        return expert_spec_of(read_dataset_metadata(source).get("policy"))
    except (DittoError, OSError, ValueError):
        return None  # the expert data is not here (a moved run): no live reference


def run_references(workdir, *, protocol, max_steps):
    """The expert and random references of the `ditto run` that trained this policy, when
    it lives in a run workdir (RUN/policies/NAME[-sN] -> RUN/eval/{expert,random}[-sN].json)
    and they were measured under this protocol and episode cap; else None.

    So `ditto eval` on a run's policy normalises against the very rows of its
    results.json, whatever seed or episode count it plays."""
    policies = os.path.dirname(os.path.abspath(workdir))
    if os.path.basename(policies) != "policies":
        return None
    run = os.path.dirname(policies)
    suffix = re.search(r"(-s\d+)?$", os.path.basename(os.path.abspath(workdir))).group(0)
    rows = {}
    for name in ("expert", "random"):
        path = os.path.join(run, "eval", f"{name}{suffix}.json")
        try:
            with open(path) as f:
                rows[name] = json.load(f)
        except (OSError, ValueError):
            return None
        settings = rows[name].get("settings") or {}
        if (settings.get("protocol"), settings.get("max_steps")) != (protocol, max_steps):
            return None
    expert = rows["expert"]
    return {"expert": expert["return_mean"] if expert.get("comparable", True) else None,
            "random": rows["random"]["return_mean"],
            "source": reference_source(run, suffix, expert.get("source"))}


def reference_source(run, suffix, expert_source):
    """How `ditto run` and `ditto eval` name a run's references (one text for both)."""
    return (f"the run's eval/expert{suffix}.json ({expert_source or 'expert'}) and "
            f"eval/random{suffix}.json (random play), in {run}")


# What `ditto eval` writes to TensorBoard, as eval/PROTOCOL[-best]/RULE/NAME.
EVAL_SCALARS = ("return_mean", "return_se", "length_mean", "expert_normalized_mean",
                "human_normalized", "expert_agreement", "expert_prob_on_policy",
                "argmax_agreement_on_policy")


def evaluate_workdir(workdir, *, episodes=10, envs=8, protocol="ditto", seed=12345,
                     video=True, greedy=False, max_steps=27_000, references=None,
                     agreement="auto", progress=False, wm=None, checkpoint="final",
                     act_matmul="float32"):
    """Evaluates a trained policy in the real game; returns (and writes) its result.

    references: {"expert": R_E, "random": R_R, "source": text} measured under this
        protocol and cap. None: the references of the `ditto run` the policy belongs to
        (`run_references`), so `ditto eval` and that run's results.json normalise against
        one reference; else measured here (random play, and the scripted expert live when
        the policy's demonstrations came from one) with this evaluation's seed. The
        result's `reference` names the one used.
    agreement: scripted-expert spec to ask in the learner's own states ("auto": the
        policy's demonstrator if scripted; None: off).
    checkpoint: "final", or "best" by the held-out validation signal (never real return);
        the result's `checkpoint` records which step was evaluated. Its files are
        eval_PROTOCOL[-best][-bf16].json/.mp4.
    act_matmul: "float32", or "bfloat16" acting products (`WorldModelAgent`, opt-in); the
        result's `act_matmul` records it, and its files end in -bf16.
    """
    # jax: imported on use, never by --help
    from ditto_jax.stages.policy_agents import evaluate_agent, load_policy
    if episodes < 1:
        raise DittoError("Nothing to evaluate", field="--episodes", expected=">= 1",
                         got=episodes)
    agent, config, meta = load_policy(workdir, greedy=greedy, wm=wm, checkpoint=checkpoint,
                                      matmul_dtype=act_matmul)
    config.eval_envs = envs
    config.eval_max_steps = max_steps
    spec = _expert_spec(meta) if agreement == "auto" or references is None else None
    if agreement == "auto":
        agreement = spec
    bar = _progress_bar(progress, episodes, f"eval/{meta['method']}")
    if references is None:
        references = run_references(workdir, protocol=protocol, max_steps=max_steps)
    if references is None:
        refs = reference_returns(meta["game"], protocol=protocol, max_steps=max_steps,
                                 episodes=episodes, seed=seed, num_envs=envs,
                                 size=tuple(meta["obs_shape"][:2]), expert_spec=spec)
        references = {"random": refs["random"]["return_mean"],
                      "expert": refs["expert"]["return_mean"] if refs["expert"] else None,
                      "source": f"measured by ditto eval: random play"
                                + (f" and the {spec} expert played live" if spec else "")
                                + f", {protocol} protocol, at most {max_steps} steps, "
                                  f"{episodes} episodes, seed {seed}"}
    observer = None
    if agreement:
        from ditto_jax.envs import atari
        observer = ExpertAgreement(agreement, atari.canonical_game(meta["game"]),
                                   int(meta["num_actions"]))
    try:
        result = evaluate_agent(agent, config, meta, seed=seed, episodes=episodes,
                                protocol=protocol, record_first=video,
                                references=references, observer=observer,
                                progress=bar.callback if bar else None)
    finally:
        if bar:
            bar.close()
    if observer is not None:
        result.update(observer.result())
    result["rule"] = "greedy" if greedy else "sample"
    result["act_matmul"] = act_matmul
    result["reference"] = {"expert": references.get("expert"),
                           "random": references.get("random"),
                           "source": references.get("source", "given by the caller")}
    frames = result.pop("frames")
    result["method"] = meta["method"]
    result["checkpoint"] = meta["checkpoint"]
    tag = (protocol + ("-best" if checkpoint == "best" else "")
           + ("-bf16" if act_matmul == "bfloat16" else ""))
    if video and frames is not None:
        result["video"] = viz.save_video(frames, os.path.join(workdir, f"eval_{tag}.mp4"))
    # The scores (and the episode) in TensorBoard and wandb, at the evaluated checkpoint's
    # training step, so they line up with the training curves.
    from ditto_jax.engine.metrics import log_media  # jax: imported on use, never by --help
    prefix = f"eval/{tag}/{result['rule']}/"
    log_media(workdir, step=int(meta["checkpoint"]["step"]),
              video=frames if video else None, tag=f"eval/{tag}_episode",
              tracking=dict(config.get("tracking") or {}),
              scalars={prefix + k: result.get(k) for k in EVAL_SCALARS})
    write_json_atomic(os.path.join(workdir, f"eval_{tag}.json"), result)
    return result


class _progress_bar:
    """tqdm over finished episodes (with an ETA), fed by `run_episodes`' callback."""

    def __new__(cls, enabled, total, desc):
        if not enabled:
            return None
        return super().__new__(cls)

    def __init__(self, enabled, total, desc):
        from tqdm import tqdm
        self.bar = tqdm(total=total, desc=desc, unit="episode", dynamic_ncols=True)

    def callback(self, done, total, elapsed):
        self.bar.update(done - self.bar.n)

    def close(self):
        self.bar.close()


def format_result(r):
    ck = r.get("checkpoint") or {}
    which = (f"best checkpoint by {ck.get('metric')} = {ck.get('value', 0):.4f}, step "
             f"{ck.get('step')}" if ck.get("kind") == "best" else
             f"final checkpoint, step {ck.get('step')}" if ck else "final checkpoint")
    precision = (", bfloat16 acting products" if r.get("act_matmul") == "bfloat16" else "")
    lines = [f"{r['method']} on {r['game']} ({r['protocol']} protocol, {r['episodes']} "
             f"episodes, {r.get('rule', 'sample')} actions, {which}{precision})",
             f"  return           {r['return_mean']:.2f} ± {r['return_se']:.2f} (s.e.)",
             f"  episode length   {r['length_mean']:.0f}"]
    if r.get("expert_normalized_mean") is not None:
        lines.append(f"  expert-normalised {r['expert_normalized_mean']:.3f} "
                     f"(expert {r['expert_return']:.2f}, random {r['random_return']:.2f})")
    else:
        lines.append("  expert-normalised —  (no expert reference measured under this "
                     "protocol and cap)")
    if (r.get("reference") or {}).get("source"):
        lines.append(f"  reference        {r['reference']['source']}")
    if r.get("expert_agreement") is not None:
        lines.append(f"  on-policy expert agreement {r['expert_agreement']:.3f} "
                     f"({r['expert_agreement_steps']} learner states, asked "
                     f"{r['expert_agreement_with']})")
    if r.get("expert_prob_on_policy") is not None:
        lines.append(f"  in those states  E[pi(a_E)] {r['expert_prob_on_policy']:.3f}, "
                     f"argmax pi = a_E {r['argmax_agreement_on_policy']:.3f}")
    if r.get("human_normalized") is not None:
        lines.append(f"  human-normalised  {r['human_normalized']:.3f}")
    if r.get("video"):
        lines.append(f"  video            {r['video']}")
    return "\n".join(lines)


def main(args):
    result = evaluate_workdir(args.workdir, episodes=args.episodes, envs=args.envs,
                              protocol=args.protocol, seed=args.seed,
                              video=not args.no_video,
                              greedy=args.greedy or args.policy == "greedy",
                              max_steps=args.max_steps, wm=args.wm,
                              agreement=None if args.no_agreement else "auto",
                              checkpoint=args.checkpoint, act_matmul=args.act_matmul,
                              progress=not (args.quiet or args.json))
    print(json.dumps(result) if args.json else format_result(result))
    return 0
