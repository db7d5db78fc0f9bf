"""Trained world models side by side on held-out expert data (issue #9: the DreamerV2
recipe at the authors' scale against the demo's levers).

    python benchmarks/wm_compare.py --wm levers=runs/study/wm,authors=runs/authors_wm/wm \
        --expert runs/study/data/expert --out benchmarks/results/wm_compare.json \
        [--starts 64] [--seed 0] [--heldout 1] [--gap-batch 256]

For each NAME=WORKDIR, one JSON entry with
  train      the last training row of WORKDIR/metrics.jsonl (kl_loss, kl_post, recon_mse,
             recon_mse_fg), its last `val/` row, and the recipe fields of its config.json.
  open_loop  on the held-out expert episodes (the last --heldout, split as the policy
             stage's `load_expert` splits them): --starts windows of C + K = 5 + 15 steps
             inside one episode. The posterior filters window steps 0..C-1 (from the zero
             state and no previous action, as in training); the prior then imagines under
             the recorded actions, and the decoded frame after k open-loop steps (window
             index C - 1 + k) is compared with the real frame there. k = 0 is the posterior
             reconstruction of the last observed frame.
               fg_mse   squared error on the standardised pixel scale (as recon_mse_fg) over
                        foreground pixels, |real - background| > loss.object_threshold * 255;
                        background = per-pixel median of the held-out frames.
               ball_err_px  mean distance (64x64 pixels) between the ball in the real and the
                        predicted frame (`ball_position`, the world model's game: Pong, or
                        Breakout between the bricks and the paddle), where both show one;
                        None for a game without a locator (BALL_LAYOUTS);
               ball_found  fraction of frames with a real ball where the prediction has one;
               ball_spurious  fraction of frames without one where the prediction has one;
               static_ball_err_px  the same for a copy of the last observed frame.
  action_gap benchmarks/action_gap.py (`measure`) for latent part h, rewards maxcos and l2.
Arrays: frames uint8 (B, T, H, W, C) with T = C + K; ball positions (row, col) in pixels.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONTEXT, KS = 5, (0, 5, 10, 15)
BALL_THRESHOLD = 0.05 * 255.0  # loss.object_threshold's default, in 0..255 units
# Where `ball_position` looks for the ball in a 64x64 frame: a box of rows and columns in
# which the ball is the only moving object, and columns inside it masked out. Measured on
# ALE frames (make_env, 64x64):
# - Pong: score band rows 0-6, walls 7-10 and 59-63, paddles in columns 5-8 and 55-58
#   (one more column each side for a blurred prediction).
# - Breakout: score rows 0-4, top wall 5-9, side walls columns 0-3 and 60-63, bricks rows
#   17-28 (they vanish as they break, so they differ from the median background), the
#   paddle rows 57-58. The ball is looked for only between the bricks and the paddle,
#   where it flies toward the paddle and nothing else moves: rows 31-55, two rows clear
#   of the bricks and one of the paddle, which a blurred prediction smears into (a
#   200-update world model's brick edge put its "ball" in rows 29-30). Above the wall or
#   inside it, the ball is not found.
BALL_LAYOUTS = {
    "pong": {"rows": (11, 59), "cols": (0, 64), "masked_cols": ((4, 10), (54, 60))},
    "breakout": {"rows": (31, 56), "cols": (4, 60), "masked_cols": ()},
}


def ball_layout(game):
    """The locator's search box for `game` (a key of BALL_LAYOUTS); DittoError otherwise."""
    from ditto_jax.envs.atari import canonical_game
    from ditto_jax.errors import DittoError
    key = canonical_game(game) if game else None
    if key not in BALL_LAYOUTS:
        raise DittoError(f"No ball locator for game {game!r}", field="game",
                         expected=" | ".join(sorted(BALL_LAYOUTS)), got=repr(game))
    return BALL_LAYOUTS[key]


def ball_position(frame, background, threshold=BALL_THRESHOLD, window=2, game="pong"):
    """The ball's (row, col) in a 64x64 frame of `game` (pong | breakout), or None.

    Inside the game's search box (BALL_LAYOUTS: score, walls, paddle columns and, in
    Breakout, bricks and paddle rows left out) the ball is the only object: the pixel
    differing most from `background` (the per-pixel median frame) is taken as the ball if
    it differs by more than `threshold`, and the position is the difference-weighted
    centroid of the above-threshold pixels in a (2 window + 1)^2 box around it.
    frame, background: (64, 64) or (64, 64, 1), any numeric dtype, 0..255. Outside the box
    (in Pong a ball passing through a paddle's columns) the ball is not found.
    """
    layout = BALL_LAYOUTS[game] if game in BALL_LAYOUTS else ball_layout(game)
    f = np.asarray(frame, np.float32).squeeze()
    bg = np.asarray(background, np.float32).squeeze()
    assert f.shape == bg.shape == (64, 64), (
        f"ball_position needs a 64x64 frame and background, got {f.shape}, {bg.shape}")
    diff = np.zeros_like(f)
    (r0, r1), (c0, c1) = layout["rows"], layout["cols"]
    diff[r0:r1, c0:c1] = np.abs(f - bg)[r0:r1, c0:c1]
    for lo, hi in layout["masked_cols"]:
        diff[:, lo:hi] = 0.0
    r, c = np.unravel_index(np.argmax(diff), diff.shape)
    if diff[r, c] <= threshold:
        return None
    r0, c0 = max(r - window, 0), max(c - window, 0)
    w = diff[r0:r + window + 1, c0:c + window + 1]
    w = np.where(w > threshold, w, 0.0)
    rows, cols = np.mgrid[r0:r0 + w.shape[0], c0:c0 + w.shape[1]]
    return float((w * rows).sum() / w.sum()), float((w * cols).sum() / w.sum())


def ball_errors(truth, pred, background, game="pong"):
    """Ball-position error of predicted frames (N, H, W, C) against real ones (N, H, W, C)."""
    assert truth.shape == pred.shape, f"truth {truth.shape} != prediction {pred.shape}"
    dist, visible, spurious = [], 0, 0
    for t, p in zip(truth, pred):
        bt, bp = ball_position(t, background, game=game), ball_position(p, background, game=game)
        if bt is None:
            spurious += bp is not None
            continue
        visible += 1
        if bp is not None:
            dist.append(float(np.hypot(bt[0] - bp[0], bt[1] - bp[1])))
    hidden = len(truth) - visible
    return {"ball_err_px": float(np.mean(dist)) if dist else None,
            "ball_found": len(dist) / visible if visible else None, "ball_visible": visible,
            "ball_spurious": spurious / hidden if hidden else None}


def open_loop_errors(wm_state, store, background, *, starts, seed, chunk=16, progress=None,
                     game="pong"):
    """Open-loop errors at k in KS (module docstring) from `starts` windows of `store`."""
    import jax
    from ditto_jax.models.train_step import open_loop
    from ditto_jax.stages.policy_data import inference_model
    horizon = max(KS)
    bg = np.asarray(background, np.float32)
    assert bg.shape == tuple(store.obs_shape), f"background {bg.shape} != {store.obs_shape}"
    win = store.sample_windows(np.random.default_rng([seed, 17]), starts, CONTEXT + horizon)
    state = wm_state.replace(model=inference_model(wm_state))
    run = jax.jit(lambda params, batch, key: open_loop(state.replace(params=params), batch, key,
                                                       context=CONTEXT, horizon=horizon))
    chunk = min(chunk, starts)
    truth, pred = [], []
    for i in range(0, starts, chunk):
        idx = np.arange(i, i + chunk) % starts  # the last chunk padded: one compiled shape
        batch = {k: win[k][idx] for k in ("observation", "action", "is_first")}
        t, p = run(wm_state.params, batch, jax.random.fold_in(jax.random.key(seed), i))
        n = min(chunk, starts - i)
        truth.append(np.asarray(t)[:n])
        pred.append(np.asarray(p)[:n])
        if progress is not None:
            progress.update(n)
    truth, pred = np.concatenate(truth), np.concatenate(pred)
    assert truth.shape == (starts, CONTEXT + horizon) + tuple(store.obs_shape), truth.shape
    thr = wm_state.loss_cfg.object_threshold * 255.0
    out = {}
    for k in KS:
        j = CONTEXT - 1 + k
        real, model = truth[:, j].astype(np.float32), pred[:, j].astype(np.float32)
        err = ((model - real) / 255.0) ** 2
        fg = np.abs(real - bg) > thr
        row = {"frame_index": j, "mse": float(err.mean()),
               "fg_mse": float((err * fg).sum() / max(fg.sum(), 1)),
               "fg_fraction": float(fg.mean())}
        if game in BALL_LAYOUTS:
            row.update(ball_errors(truth[:, j], pred[:, j], bg, game=game))
            row["static_ball_err_px"] = ball_errors(truth[:, j], truth[:, CONTEXT - 1],
                                                    bg, game=game)["ball_err_px"]
        else:  # no locator for this game: the pixel errors only
            row.update(ball_err_px=None, ball_found=None, ball_visible=None,
                       ball_spurious=None, static_ball_err_px=None)
        out[f"k={k}"] = row
    return out


def _check_dir(path, what):
    from ditto_jax.errors import DittoError
    if not os.path.isdir(path):
        raise DittoError(f"No {what} here", path=path)


def training_summary(workdir):
    """Last training / validation rows of metrics.jsonl and the recipe from config.json."""
    from ditto_jax.errors import DittoError
    path, cfg_path = os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "config.json")
    for p in (path, cfg_path):
        if not os.path.isfile(p):
            raise DittoError("Missing world-model file", path=p,
                             expected="a workdir written by `ditto train-wm`")
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line being written by a run in progress
    train = [r for r in rows if "kl_loss" in r]
    val = [r for r in rows if any(k.startswith("val/") for k in r)]
    if not train:
        raise DittoError("No training row in the metrics", path=path,
                         expected="rows with kl_loss (logged every train.log_every steps)")
    keys = ("kl_loss", "kl_post", "recon_mse", "recon_mse_fg")
    out = {"step": train[-1]["step"], **{k: train[-1].get(k) for k in keys},
           "val_step": val[-1]["step"] if val else None,
           **{f"val/{k}": val[-1].get(f"val/{k}") if val else None for k in keys}}
    with open(cfg_path) as f:
        cfg = json.load(f)
    m, loss, optim = cfg.get("model", {}), cfg.get("loss", {}), cfg.get("optim", {})
    out["config"] = {"loss.image_weight": loss.get("image_weight"),
                     "loss.recon": loss.get("recon"), "model.latent": m.get("latent"),
                     "model.decoder_pixel_bias": m.get("decoder_pixel_bias"),
                     "optim.lr": optim.get("lr"), "model.deter": m.get("deter"),
                     "model.cnn_depth": m.get("cnn_depth")}
    return out


def parse_wms(text):
    """'a=DIR,b=DIR' -> {name: dir}; a bare DIR is named after itself."""
    pairs = [s.strip() for s in text.split(",") if s.strip()]
    out = {}
    for s in pairs:
        name, _, path = s.partition("=") if "=" in s else (s, "", s)
        out[name.strip()] = path.strip()
    return out


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def format_table(result):
    ks = [k for k in KS if k]
    head = (["wm", "step", "KL", "val KL", "fg mse", "val fg"] + [f"fg@{k}" for k in ks]
            + [f"ball px@{k} (found/spurious)" for k in ks] + ["gap/scale h/maxcos", "gap/scale h/l2"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in result["models"].items():
        t, ol, gap = r["train"], r["open_loop"], r["action_gap"]
        cells = [name, str(t["step"]), _fmt(t["kl_loss"], ".3f"), _fmt(t["val/kl_loss"], ".3f"),
                 _fmt(t["recon_mse_fg"], ".2e"), _fmt(t["val/recon_mse_fg"], ".2e")]
        cells += [_fmt(ol[f"k={k}"]["fg_mse"], ".2e") for k in ks]
        cells += [f"{_fmt(ol[f'k={k}']['ball_err_px'], '.2f')} "
                  f"({_fmt(ol[f'k={k}']['ball_found'], '.2f')}/"
                  f"{_fmt(ol[f'k={k}']['ball_spurious'], '.2f')})" for k in ks]
        cells += [f"{_fmt(gap[p]['gap_deviate_norm'], '.2f')} (rank "
                  f"{_fmt(gap[p]['rank_deviate'], '.2f')})" for p in ("h/maxcos", "h/l2")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--wm", required=True, help="NAME=WORKDIR[,NAME=WORKDIR...]")
    p.add_argument("--expert", required=True, help="expert RLDS dataset")
    p.add_argument("--out", default="benchmarks/results/wm_compare.json", help="JSON output")
    p.add_argument("--starts", type=int, default=64, help="open-loop windows")
    p.add_argument("--seed", type=int, default=0, help="window, prior-noise and gap seed")
    p.add_argument("--heldout", type=int, default=1, help="last N expert episodes held out")
    p.add_argument("--gap-batch", type=int, default=256, help="action-gap start states")
    args = p.parse_args(argv)
    from ditto_jax.errors import DittoError
    try:
        result = compare(args, argv)
    except DittoError as e:
        raise SystemExit(f"wm_compare: {e}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(format_table(result))
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")
    return result


def compare(args, argv):
    t0 = time.perf_counter()
    wms = parse_wms(args.wm)
    for path in wms.values():
        _check_dir(path, "world-model workdir")
    _check_dir(args.expert, "expert dataset")
    summaries = {name: training_summary(path) for name, path in wms.items()}  # fail early
    import jax.numpy as jnp
    import ml_collections
    from tqdm import tqdm
    from ditto_jax.core import parallel
    from ditto_jax.core import provenance
    from ditto_jax.envs import atari
    from ditto_jax.errors import DittoError
    from ditto_jax.models.world_model import background_frame
    from ditto_jax.stages.policy_data import load_expert
    from ditto_jax.stages.wm_io import load_world_model
    from benchmarks.action_gap import measure
    parallel.enable_compilation_cache()  # DITTO_XLA_CACHE, as the CLI
    cfg = ml_collections.ConfigDict(dict(expert_episodes=0, expert_selection="first",
                                         heldout_episodes=args.heldout, expert_resize=False))
    experts, models = {}, {}
    for name, path in wms.items():
        wm_state, meta = load_world_model(path)
        key = (tuple(meta["obs_shape"]), int(meta["num_actions"]), meta.get("game"))
        if key not in experts:
            _, held, info = load_expert(cfg, args.expert, meta, progress=True)
            if held is None:
                raise DittoError("No held-out episodes: the dataset needs more than --heldout",
                                 path=args.expert)
            bg = background_frame(jnp.asarray(held.observation[None]), "batch", 512)[0, 0]
            experts[key] = (held, info, np.asarray(bg))
        held, info, bg = experts[key]
        bar = tqdm(total=args.starts, desc=f"{name}: open loop", unit="start")
        game = atari.canonical_game(meta["game"]) if meta.get("game") else None
        ol = open_loop_errors(wm_state, held, bg, starts=args.starts, seed=args.seed,
                              progress=bar, game=game)
        bar.set_description(f"{name}: action gap")
        gap = measure(wm_state, held, batch=args.gap_batch, seed=args.seed, parts=("h",),
                      rewards=("maxcos", "l2"))
        bar.close()
        models[name] = {"workdir": os.path.abspath(path), "wm_step": meta.get("step"),
                        "game": game,
                        "train": summaries[name], "open_loop": ol,
                        "action_gap": {k: {f: v[f] for f in (
                            "return_expert", "gap_deviate", "advantage_scale",
                            "gap_deviate_norm", "rank_deviate")} | {"step1_gap": v["step_gap"][0]}
                            for k, v in gap["results"].items()},
                        "action_gap_settings": {k: gap[k] for k in (
                            "horizon", "gamma", "starts", "alternatives")},
                        "heldout_episodes": info["heldout_episodes"],
                        "heldout_steps": int(held.num_steps)}
    return {"command": "python benchmarks/wm_compare.py " + " ".join(
                argv if argv is not None else sys.argv[1:]),
            "git": provenance.git_info(), "expert": os.path.abspath(args.expert),
            "settings": {"starts": args.starts, "seed": args.seed, "heldout": args.heldout,
                         "gap_batch": args.gap_batch, "context": CONTEXT, "ks": list(KS)},
            "models": models, "seconds": time.perf_counter() - t0}


if __name__ == "__main__":
    main()
