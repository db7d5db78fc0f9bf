"""The prepared GPU shot (issue #17): the study at paper scale inside one clock deadline.

    OUT=DIR launch/device_study.sh [--tiny]      (the wrapper sets XLA flags, PYTHONPATH)
    python benchmarks/device_study.py --out DIR [--tiny]

Reads the episodes that launch/device_prepare.sh exported (`.npz`, no TensorFlow needed;
ditto_jax/data/export.py) from DEVICE_STUDY_DATA (default .device/data) and runs five
parts, each in its own process with a clock budget (seconds; env vars, so tests shrink
them), all inside one overall deadline:

  speed     benchmarks/device.py: fp32 / bf16 world-model step, MFU, DITTO update,
            acting (DEVICE_STUDY_SPEED_S, 75; DEVICE_STUDY_SPEED_PARTS)
  wm        experiments/configs/wm.py:paper in bfloat16 with the demo's world-model levers
            (learned background, relaxed latents) on the expert + noisy + random episodes,
            for as many updates as DEVICE_STUDY_WM_S (165) allows; then reconstruction
            and open-loop errors (ball position, benchmarks/wm_compare.py) on the held-out
            expert episode
  policies  DITTO, DITTO (BC init), D-BC and pixel BC (DEVICE_STUDY_METHODS) x seeds
            (DEVICE_STUDY_SEEDS, 0,1,2; vmapped where the method allows) x N_E
            (DEVICE_STUDY_NE, 5,30): experiments/configs/policy.py:paper with the study's
            offline-chosen settings (H 5, entropy 0.3, l2 reward, BC init 400 + 100);
            each (N_E, method) gets an equal share of DEVICE_STUDY_POLICY_S (90)
  eval      every policy in the real ALE, DEVICE_STUDY_EVAL_EPISODES (10) episodes on
            DEVICE_STUDY_EVAL_ENVS (16) emulators, `ditto` protocol, sampled actions,
            episodes capped at DEVICE_STUDY_EVAL_MAX_STEPS (27000) agent steps; round robin
            over seeds, then N_E, then methods, until DEVICE_STUDY_EVAL_S (75) is spent
  results   results.json / results.md (IQM with stratified-bootstrap 95% CIs per method
            and N_E; rliable's IQM when rliable is importable, else the same trimmed mean
            from scipy), scores.png, provenance.json, study.log, and the speed part's JSON:
            at most 8 files in OUT.

DEVICE_STUDY_DEADLINE_S (420) bounds the whole run: a part starts with what is left of it
minus the later parts' minimums, and is killed at its limit; whatever it wrote by then
is reported. Work files go to DEVICE_STUDY_WORK (default OUT/../device_study_work when
OUT is a subfolder of a temporary folder, else a fresh temporary folder).
--tiny: the same path with tiny models, budgets and episode counts, on a CPU in minutes.
"""
import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

PARTS = ("speed", "wm", "policies", "eval")
FULL = {"DEADLINE_S": 420, "SPEED_S": 75, "WM_S": 165, "POLICY_S": 90, "EVAL_S": 75,
        "SEEDS": "0,1,2", "NE": "5,30", "METHODS": "ditto,ditto_bcinit,dbc,bc",
        "EVAL_EPISODES": 10, "EVAL_ENVS": 16, "EVAL_MAX_STEPS": 27_000, "GAME": "pong",
        "SPEED_PARTS": "wm_bf16,ditto_update,act,wm_fp32",
        "DATA": os.path.join(ROOT, ".device", "data")}
# The CPU check: small enough for a loaded 2-core machine (each part compiles anew).
TINY = dict(FULL, DEADLINE_S=175, SPEED_S=25, WM_S=55, POLICY_S=55, EVAL_S=30,
            SEEDS="0,1", NE="1,2", METHODS="ditto_bcinit,bc", EVAL_EPISODES=10,
            EVAL_ENVS=10, EVAL_MAX_STEPS=40, SPEED_PARTS="act")
MIN_S = {"speed": 20, "wm": 30, "policies": 20, "eval": 15}  # a part's least useful time
MIN_S_TINY = {"speed": 10, "wm": 10, "policies": 10, "eval": 5}
RESULTS_RESERVE_S = 10  # kept for the results part at the end of the deadline


def settings(tiny):
    """The run's settings: defaults (FULL / TINY), each overridable by DEVICE_STUDY_<KEY>."""
    base = TINY if tiny else FULL
    out = {}
    for k, v in base.items():
        raw = os.environ.get(f"DEVICE_STUDY_{k}")
        out[k] = v if raw in (None, "") else type(v)(raw)
    out["tiny"] = bool(tiny)
    return out


def _ints(text):
    return [int(x) for x in str(text).split(",") if x.strip()]


def _log(msg, path=None):
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def _write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1, default=float)
    os.replace(path + ".tmp", path)


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- data
def data_paths(s):
    """{expert, wm: [expert, noisy, random]} .npz paths for the game; DittoError if absent."""
    from ditto_jax.errors import DittoError
    folder = os.path.join(s["DATA"], s["GAME"])
    paths = {k: os.path.join(folder, f"{k}.npz") for k in ("expert", "noisy", "random")}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise DittoError("The shot's episode exports are missing (run "
                         "launch/device_prepare.sh first)", path=missing[0],
                         expected="expert.npz, noisy.npz and random.npz per game")
    return {"expert": paths["expert"], "wm": [paths[k] for k in ("expert", "noisy", "random")]}


# ----------------------------------------------------------------------------- parts
def part_wm(s, work, limit_s):
    """Trains the paper world model until its clock budget ends, then measures it."""
    t_start = time.perf_counter()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import ml_collections
    from benchmarks.wm_compare import open_loop_errors
    from ditto_jax.core import parallel
    from ditto_jax.core.config import load_python_file
    from ditto_jax.models.world_model import background_frame
    from ditto_jax.stages.policy_data import load_expert
    from ditto_jax.stages.train_wm import train_world_model
    from ditto_jax.stages.wm_io import load_world_model
    parallel.enable_compilation_cache()
    paths = data_paths(s)
    cfg = load_python_file(os.path.join(ROOT, "experiments", "configs", "wm.py"),
                           "get_config").get_config("tiny" if s["tiny"] else "paper")
    # The demo's world-model levers (benchmarks/README.md "Small objects"); paper sizes.
    cfg.model.update(decoder_pixel_bias=True, latent="probs")
    if jax.default_backend() != "cpu":
        cfg.model.conv_impl = "lax"            # cuDNN convolutions, not the CPU's matmuls
        cfg.train.compute_dtype = "bfloat16"
    # Saved every few updates too, so a part killed at its hard limit still leaves a model.
    cfg.train.update(steps=4 if s["tiny"] else 1_000_000, log_every=2 if s["tiny"] else 25,
                     eval_every=0, strip_every=0, save_every=2 if s["tiny"] else 500,
                     keep_checkpoints=1, val_episodes=1)
    post_s = 10 if s["tiny"] else 25            # the measurements after training
    cfg.train.time_limit_s = max(5.0, limit_s - (time.perf_counter() - t_start) - 15 - post_s)
    wm_dir = os.path.join(work, "wm")
    t0 = time.perf_counter()
    train_world_model(cfg, data=",".join(paths["wm"]), workdir=wm_dir, progress=False)
    train_s = time.perf_counter() - t0
    rows = [json.loads(x) for x in open(os.path.join(wm_dir, "metrics.jsonl")) if x.strip()]
    rows = [r for r in rows if "loss" in r]
    out = {"workdir": wm_dir, "train_s": train_s, "time_limit_s": cfg.train.time_limit_s,
           "updates": rows[-1]["step"] if rows else 0,
           "settings": {"preset": cfg.preset, "batch": [int(cfg.train.batch_size),
                                                         int(cfg.train.seq_len)],
                        "conv_impl": cfg.model.conv_impl,
                        "compute_dtype": cfg.train.compute_dtype,
                        "decoder_pixel_bias": True, "latent": "probs", "lr": cfg.optim.lr},
           "last": {k: rows[-1].get(k) for k in ("loss", "image_loss", "kl_loss",
                                                 "recon_mse", "recon_mse_fg",
                                                 "steps_per_s")} if rows else {}}
    if rows:
        b, t = int(cfg.train.batch_size), int(cfg.train.seq_len)
        rate = [r["steps_per_s"] for r in rows[1:] if r.get("steps_per_s")]
        out["frames_per_s"] = b * t * float(np.median(rate)) if rate else None
    _write_json(os.path.join(work, "wm.json"), out)
    wm_state, meta = load_world_model(wm_dir)
    pcfg = ml_collections.ConfigDict(dict(expert_episodes=0, expert_selection="first",
                                          heldout_episodes=1, expert_resize=False))
    _, held, _ = load_expert(pcfg, paths["expert"], meta)
    bg = np.asarray(background_frame(jnp.asarray(held.observation[None]), "batch", 512)[0, 0])
    out["open_loop"] = open_loop_errors(wm_state, held, bg, starts=8 if s["tiny"] else 64,
                                        seed=0)
    out["open_loop_note"] = ("benchmarks/wm_compare.py's open-loop errors on the held-out "
                             "expert episode: k=0 is the posterior reconstruction, k>0 the "
                             "prior imagining k steps under the recorded actions")
    out["wall_s"] = time.perf_counter() - t_start
    _write_json(os.path.join(work, "wm.json"), out)
    return out


def policy_config(s, n_e):
    from ditto_jax.core.config import load_python_file
    c = load_python_file(os.path.join(ROOT, "experiments", "configs", "policy.py"),
                         "get_config").get_config("tiny" if s["tiny"] else "paper")
    # The study's settings, chosen offline (README "How DITTO's settings were chosen").
    c.update(horizon=5 if not s["tiny"] else c.horizon, entropy=0.3, reward="l2",
             bc_init_steps=4 if s["tiny"] else 400,
             critic_warmup_steps=2 if s["tiny"] else 100,
             expert_episodes=int(n_e), heldout_episodes=1, eval_every=0,
             steps=10 if s["tiny"] else 1_000_000, log_every=5 if s["tiny"] else 50,
             save_every=1_000_000, keep_checkpoints=1)
    return c


def part_policies(s, work, limit_s):
    """Every (N_E, method) for all seeds, each with an equal share of what is left."""
    t_start = time.perf_counter()
    from ditto_jax.core import parallel
    from ditto_jax.stages.train_policy import train_policy_seeds
    parallel.enable_compilation_cache()
    paths = data_paths(s)
    seeds, nes = _ints(s["SEEDS"]), _ints(s["NE"])
    methods = [m for m in s["METHODS"].split(",") if m]
    jobs = [(n, m) for n in nes for m in methods]
    done = _read_json(os.path.join(work, "policies.json")) or {"runs": []}
    for k, (n_e, method) in enumerate(jobs):
        left = limit_s - (time.perf_counter() - t_start) - 5
        share = left / (len(jobs) - k)
        if share < 3:
            done["runs"].append({"n_e": n_e, "method": method, "skipped": "time budget"})
            continue
        c = policy_config(s, n_e)
        c.time_limit_s = max(1.0, share - (3 if s["tiny"] else 15))  # compile, load, encode
        workdirs = {sd: os.path.join(work, "policies", f"ne{n_e}", method, f"seed{sd}")
                    for sd in seeds}
        t0 = time.perf_counter()
        rec = {"n_e": n_e, "method": method, "seeds": seeds,
               "workdirs": {str(k): v for k, v in workdirs.items()}}
        try:
            train_policy_seeds(c, method=method, wm=os.path.join(work, "wm"),
                               expert=paths["expert"], workdirs=workdirs, progress=False,
                               vmap=True)  # one program for the seeds (one compile)
            last = []
            for sd, w in workdirs.items():
                rows = [json.loads(x) for x in open(os.path.join(w, "metrics.jsonl"))
                        if x.strip()]
                rows = [r for r in rows if "step" in r]
                last.append(rows[-1] if rows else {})
            rec["updates"] = [r.get("step") for r in last]
            rec["heldout_accuracy"] = [r.get("heldout_accuracy") for r in last]
            rec["heldout_expert_prob"] = [r.get("heldout_expert_prob") for r in last]
            rec["updates_per_s"] = [r.get("steps_per_s") for r in last]
        except Exception as e:  # noqa: BLE001 - one failing method must not lose the rest
            rec["error"] = f"{type(e).__name__}: {e}"
        rec["wall_s"] = time.perf_counter() - t0
        rec["time_limit_s"] = c.time_limit_s
        done["runs"].append(rec)
        _write_json(os.path.join(work, "policies.json"), done)
    _write_json(os.path.join(work, "policies.json"), done)
    return done


def part_eval(s, work, limit_s):
    """Real-ALE evaluation, round robin (seed, N_E, method), until the budget ends."""
    t_start = time.perf_counter()
    from ditto_jax.stages.evaluate import evaluate_workdir
    pol = _read_json(os.path.join(work, "policies.json")) or {"runs": []}
    order = []
    for sd in _ints(s["SEEDS"]):
        for r in pol["runs"]:
            if "workdirs" in r and "error" not in r and str(sd) in r["workdirs"]:
                order.append((r["n_e"], r["method"], sd, r["workdirs"][str(sd)]))
    out_dir = os.path.join(work, "eval")
    os.makedirs(out_dir, exist_ok=True)
    per = []
    for k, (n_e, method, sd, w) in enumerate(order):
        path = os.path.join(out_dir, f"ne{n_e}_{method}_seed{sd}.json")
        if os.path.exists(path):
            continue
        used = time.perf_counter() - t_start
        if per and used + max(per) > limit_s - 2:
            break  # the next one would not finish
        t0 = time.perf_counter()
        r = evaluate_workdir(w, episodes=int(s["EVAL_EPISODES"]), envs=int(s["EVAL_ENVS"]),
                             protocol="ditto", seed=12_345 + 1_000 * sd, video=False,
                             max_steps=int(s["EVAL_MAX_STEPS"]),
                             references={"expert": None, "random": None}, agreement=None)
        r.update(n_e=n_e, method=method, seed=sd, eval_s=time.perf_counter() - t0)
        per.append(r["eval_s"])
        _write_json(path, r)
    return {"evaluated": len(glob.glob(os.path.join(out_dir, "*.json"))),
            "policies": len(order)}


def run_part(name, s, work, limit_s):
    if name == "wm":
        return part_wm(s, work, limit_s)
    if name == "policies":
        return part_policies(s, work, limit_s)
    if name == "eval":
        return part_eval(s, work, limit_s)
    raise ValueError(name)


# ----------------------------------------------------------------------------- results
def _iqm_fn():
    try:
        from rliable import metrics
        return metrics.aggregate_iqm, "rliable.metrics.aggregate_iqm"
    except ImportError:
        import scipy.stats
        return (lambda x: scipy.stats.trim_mean(x, 0.25, axis=None),
                "scipy.stats.trim_mean(x, 0.25) (rliable's IQM; rliable not importable)")


def collect(s, work, speed, log_path):
    """results.json's content from the parts' files (whatever exists)."""
    import numpy as np
    from ditto_jax.report.stats import stratified_bootstrap_ci
    iqm, iqm_impl = _iqm_fn()
    evals = [_read_json(p) for p in sorted(glob.glob(os.path.join(work, "eval", "*.json")))]
    evals = [e for e in evals if e]
    rows = []
    methods = [m for m in s["METHODS"].split(",") if m]
    for n_e in _ints(s["NE"]):
        for m in methods:
            mine = [e for e in evals if e["n_e"] == n_e and e["method"] == m]
            per_seed = [np.asarray(e["returns"], np.float64) for e in mine if e.get("returns")]
            row = {"method": m, "n_e": n_e, "seeds": [e["seed"] for e in mine],
                   "episodes": [len(e.get("returns") or []) for e in mine],
                   "returns": {str(e["seed"]): e.get("returns") for e in mine},
                   "lengths_mean": float(np.mean([e["length_mean"] for e in mine]))
                   if mine else None, "iqm": None, "ci": None}
            if per_seed:
                point, (lo, hi) = stratified_bootstrap_ci(
                    per_seed, lambda x: np.array([iqm(x)]), reps=2000,
                    rng=np.random.default_rng(0))
                row.update(iqm=float(point[0]), ci=[float(lo[0]), float(hi[0])],
                           mean=float(np.mean(np.concatenate(per_seed))))
            rows.append(row)
    wm = _read_json(os.path.join(work, "wm.json"))
    pol = _read_json(os.path.join(work, "policies.json"))
    parts = _read_json(os.path.join(work, "parts.json")) or {}
    sp = (speed or {}).get("parts", {})

    def pick(name, *keys):
        r = sp.get(name) or {}
        return {k: r.get(k) for k in keys} if r else None
    return {
        "schema": 1, "tiny": s["tiny"], "game": s["GAME"],
        "seeds": _ints(s["SEEDS"]), "N_E": _ints(s["NE"]), "methods": methods,
        "protocol": "ditto", "action_rule": "sample", "checkpoint": "final",
        "eval": {"episodes": int(s["EVAL_EPISODES"]), "envs": int(s["EVAL_ENVS"]),
                 "max_steps": int(s["EVAL_MAX_STEPS"])},
        "iqm_impl": iqm_impl, "ci": "95% stratified bootstrap over episodes within seeds "
                                    "(ditto_jax.report.stats), 2000 resamples",
        "rows": rows,
        "speed": {"device_kind": (speed or {}).get("device_kind"),
                  "backend": (speed or {}).get("backend"),
                  "wm_bf16": pick("wm_bf16", "frames_per_s", "step_s", "mfu", "compile_s",
                                  "peak_memory_bytes", "error", "skipped"),
                  "wm_fp32": pick("wm_fp32", "frames_per_s", "step_s", "mfu", "compile_s",
                                  "peak_memory_bytes", "error", "skipped"),
                  "ditto_update": pick("ditto_update", "update_s", "imagined_steps_per_s",
                                       "error", "skipped"),
                  "act": (sp.get("act") or {}).get("envs") or pick("act", "error", "skipped")},
        "world_model": wm, "policies": pol, "parts": parts,
        "settings": {k: v for k, v in s.items() if k != "DATA"},
    }


def format_md(res):
    def f(x, spec=".2f"):
        return "—" if x is None else format(x, spec)
    kind = "tiny, CPU plumbing check" if res["tiny"] else "paper-size world model"
    lines = [f"# GPU shot: {res['game']} ({kind})",
             "", f"Protocol `{res['protocol']}`, {res['action_rule']}d actions, final "
             f"policies, up to {res['eval']['episodes']} episodes per seed capped at "
             f"{res['eval']['max_steps']} agent steps; IQM [95% CI] over seeds x episodes "
             f"({res['iqm_impl']}).", "",
             "| method | N_E | return IQM [95% CI] | mean | episode length | seeds x episodes |",
             "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        ci = f"[{f(r['ci'][0])}, {f(r['ci'][1])}]" if r["ci"] else ""
        lines.append(f"| {r['method']} | {r['n_e']} | {f(r['iqm'])} {ci} | "
                     f"{f(r.get('mean'))} | {f(r['lengths_mean'], '.0f')} | "
                     f"{len(r['seeds'])} x {sum(r['episodes'])} |")
    sp = res["speed"]
    lines += ["", f"## Speed ({sp.get('device_kind')}, {sp.get('backend')})", ""]
    for name in ("wm_bf16", "wm_fp32"):
        r = sp.get(name) or {}
        if r.get("frames_per_s"):
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
            lines.append(f"- {name}: {r['frames_per_s']:.0f} frames/s, {r['step_s']:.3f} "
                         f"s/step, MFU {mfu}")
        else:
            lines.append(f"- {name}: {r.get('error') or r.get('skipped') or 'not run'}")
    u = sp.get("ditto_update") or {}
    lines.append(f"- DITTO update: {f(1e3 * u['update_s'], '.1f')} ms" if u.get("update_s")
                 else f"- DITTO update: {u.get('error') or u.get('skipped') or 'not run'}")
    if isinstance(sp.get("act"), dict) and all(isinstance(v, dict) for v in sp["act"].values()):
        lines.append("- acting: " + ", ".join(f"{n} env(s) {e['ms_per_step']:.2f} ms/step"
                                             for n, e in sp["act"].items()))
    wm = res.get("world_model") or {}
    lines += ["", "## World model", ""]
    if wm:
        lines.append(f"- {wm.get('updates')} updates in {f(wm.get('train_s'), '.0f')} s "
                     f"({f(wm.get('frames_per_s'), '.0f')} frames/s in training), "
                     f"{wm['settings']['compute_dtype']}, conv {wm['settings']['conv_impl']}")
        last = wm.get("last") or {}
        lines.append(f"- last: recon_mse {f(last.get('recon_mse'), '.2e')}, recon_mse_fg "
                     f"{f(last.get('recon_mse_fg'), '.2e')}, kl {f(last.get('kl_loss'), '.3f')}")
        for k, row in (wm.get("open_loop") or {}).items():
            lines.append(f"- open loop {k}: fg_mse {f(row['fg_mse'], '.2e')}, ball error "
                         f"{f(row['ball_err_px'])} px (found {f(row['ball_found'])})")
    else:
        lines.append("- not trained (see study.log)")
    lines += ["", "## Parts", ""]
    for k, v in (res.get("parts") or {}).items():
        lines.append(f"- {k}: {v.get('status')} in {f(v.get('wall_s'), '.0f')} s "
                     f"(limit {f(v.get('limit_s'), '.0f')} s)")
    return "\n".join(lines) + "\n"


def plot_scores(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in res["rows"] if r["iqm"] is not None]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    nes = sorted({r["n_e"] for r in rows})
    methods = [m for m in res["methods"] if any(r["method"] == m for r in rows)]
    width = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        xs, ys, err = [], [], [[], []]
        for i, n in enumerate(nes):
            r = next((r for r in rows if r["method"] == m and r["n_e"] == n), None)
            if r:
                xs.append(i + j * width)
                ys.append(r["iqm"])
                err[0].append(r["iqm"] - r["ci"][0])
                err[1].append(r["ci"][1] - r["iqm"])
        ax.bar(xs, ys, width, yerr=err, label=m, capsize=2)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(nes))], [f"N_E={n}" for n in nes])
    ax.set_ylabel("return IQM (95% CI)")
    ax.set_title(f"{res['game']}, {res['protocol']} protocol")
    if methods:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- driver
def _subprocess(cmd, limit_s, log_path, env=None):
    """Runs cmd with a hard wall-clock limit; its output goes to the log. -> (status, s)."""
    t0 = time.perf_counter()
    with open(log_path, "a") as logf:
        logf.flush()
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=ROOT,
                             env=env or os.environ.copy(), start_new_session=True)
        try:
            rc = p.wait(timeout=max(1.0, limit_s))
            status = "ok" if rc == 0 else f"exit code {rc}"
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()
            status = f"killed at its {limit_s:.0f} s limit"
    return status, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT"),
                   help="folder for the <= 8 result files (default: $OUT)")
    p.add_argument("--tiny", action="store_true", help="tiny models and budgets (CPU check)")
    p.add_argument("--work", default=os.environ.get("DEVICE_STUDY_WORK"),
                   help="folder for checkpoints and per-part files")
    p.add_argument("--_part", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_limit", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    s = settings(args.tiny)
    if args._part:
        rec = run_part(args._part, s, args.work, args._limit)
        print(f"part {args._part}: done", flush=True)
        return 0 if rec is not None else 1
    if not args.out:
        p.error("no output folder: pass --out DIR or set OUT")
    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="ditto_device_study_")
    os.makedirs(work, exist_ok=True)
    log_path = os.path.join(args.out, "study.log")
    _log(f"device study{' (tiny)' if s['tiny'] else ''}: out {args.out}, work {work}, "
         f"deadline {s['DEADLINE_S']} s", log_path)
    from ditto_jax.errors import DittoError
    try:
        data_paths(s)
    except DittoError as e:
        _log(f"error: {e}", log_path)
        return 2
    budgets = {"speed": s["SPEED_S"], "wm": s["WM_S"], "policies": s["POLICY_S"],
               "eval": s["EVAL_S"]}
    mins = MIN_S_TINY if s["tiny"] else MIN_S
    parts = {}
    speed_dir = os.path.join(work, "speed")
    for i, name in enumerate(PARTS):
        left = s["DEADLINE_S"] - (time.time() - t_start) - RESULTS_RESERVE_S
        later = sum(mins[n] for n in PARTS[i + 1:])
        limit = min(float(budgets[name]), left - later)
        if limit < mins[name]:
            parts[name] = {"status": f"skipped: {left:.0f} s left", "limit_s": limit}
            _log(f"{name}: skipped ({left:.0f} s left of the deadline)", log_path)
            continue
        _log(f"{name}: start, limit {limit:.0f} s", log_path)
        if name == "speed":
            cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "device.py"),
                   "--out-dir", speed_dir, "--budget-s", str(max(5.0, limit - 10)),
                   "--min-part-s", "5" if s["tiny"] else "15",
                   "--parts", s["SPEED_PARTS"]] + (
                       ["--tiny"] if s["tiny"] else [])
        else:
            cmd = [sys.executable, os.path.abspath(__file__), "--work", work, "--_part",
                   name, "--_limit", str(limit - 3)] + (["--tiny"] if s["tiny"] else [])
        status, wall = _subprocess(cmd, limit, log_path)
        parts[name] = {"status": status, "wall_s": wall, "limit_s": limit}
        _write_json(os.path.join(work, "parts.json"), parts)
        _log(f"{name}: {status} after {wall:.0f} s", log_path)

    # Results: written from whatever the parts left, so a cut-short run still reports.
    speed_files = sorted(glob.glob(os.path.join(speed_dir, "device-*.json")))
    speed = _read_json(speed_files[-1]) if speed_files else None
    res = collect(s, work, speed, log_path)
    res["total_s"] = time.time() - t_start
    res["within_deadline"] = res["total_s"] <= s["DEADLINE_S"]
    _write_json(os.path.join(args.out, "results.json"), res)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(format_md(res))
    try:
        plot_scores(res, os.path.join(args.out, "scores.png"))
    except Exception as e:  # noqa: BLE001 - a plot must not cost the numbers
        _log(f"scores.png: {type(e).__name__}: {e}", log_path)
    from ditto_jax.core import provenance
    # launch/device_study.sh --tiny blocks these (a sitecustomize sets them to None), as
    # the GPU host lacks them; on the host itself they are simply not installed.
    blocked = [n for n in ("tensorflow", "tensorflow_datasets")
               if n in sys.modules and sys.modules[n] is None]
    _write_json(os.path.join(args.out, "provenance.json"), {
        "git": provenance.git_info(), "argv": sys.argv, "python": platform.python_version(),
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("DEVICE_STUDY_", "XLA_", "JAX_", "DITTO_"))},
        "tensorflow_blocked": blocked == ["tensorflow", "tensorflow_datasets"],
        "tensorflow_imported": any(sys.modules.get(n) is not None
                                   for n in ("tensorflow", "tensorflow_datasets")),
        "packages": _versions()})
    if speed_files:
        import shutil
        shutil.copy(speed_files[-1], os.path.join(args.out, os.path.basename(speed_files[-1])))
    _log(f"done in {res['total_s']:.0f} s: {sorted(os.listdir(args.out))}", log_path)
    print(format_md(res))
    return 0


def _versions():
    import importlib.metadata as md
    out = {}
    for n in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml_collections",
              "gymnasium", "ale-py", "rliable", "jax-cuda13-plugin", "jax-cuda12-plugin"):
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = None
    return out


if __name__ == "__main__":
    sys.exit(main())
