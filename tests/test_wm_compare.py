"""benchmarks/wm_compare.py: the Pong ball locator (synthetic frames and real ALE frames
against the ball position in RAM), the ball-error summary, and the script end to end."""
import json
import os

import numpy as np
import pytest

from benchmarks.wm_compare import ball_errors, ball_position, main

GREY, WHITE = 87, 236


def _background():
    """A 64x64 Pong-like median frame: grey field, white walls, no paddles, no ball."""
    bg = np.full((64, 64), GREY, np.uint8)
    bg[7:10] = WHITE
    bg[59:] = WHITE
    return bg


def _with_ball(bg, row, col, patch=((WHITE, WHITE), (WHITE, WHITE))):
    f = bg.copy()
    patch = np.asarray(patch, np.uint8)
    f[row:row + patch.shape[0], col:col + patch.shape[1]] = patch
    return f


def test_ball_locator_on_synthetic_frames():
    bg = _background()
    assert ball_position(bg, bg) is None
    # Paddles, the score and noise under the threshold are not a ball.
    f = bg.copy()
    f[20:25, 6:8] = 148        # left paddle
    f[30:35, 56:58] = 147      # right paddle
    f[1:5, 46:49] = 147        # score digits
    f[12:58, 12:52] += 10      # below 0.05 * 255 = 12.75
    assert ball_position(f, bg) is None
    # A 2x2 ball: the centre of the block, with or without clutter around it.
    for frame in (_with_ball(bg, 30, 20), _with_ball(f, 30, 20)):
        r, c = ball_position(frame[..., None], bg[..., None])  # (64, 64, 1) works too
        assert abs(r - 30.5) < 1e-6 and abs(c - 20.5) < 1e-6, (r, c)
    # A resampled (partial) ball: the difference-weighted centroid.
    r, c = ball_position(_with_ball(bg, 40, 30, ((GREY + 100, GREY + 50),
                                                 (GREY + 50, GREY + 5))), bg)
    assert (r, c) == pytest.approx((40.25, 30.25))  # (100 * 40 + 2 * 50 * 40.5) / 200
    # In a paddle column or the score band it is not found.
    assert ball_position(_with_ball(bg, 30, 56), bg) is None
    assert ball_position(_with_ball(bg, 2, 30), bg) is None
    with pytest.raises(AssertionError, match="64x64"):
        ball_position(np.zeros((84, 84)), np.zeros((84, 84)))


def test_ball_errors_counts_and_distances():
    bg = _background()
    truth = np.stack([_with_ball(bg, 20, 20), _with_ball(bg, 30, 30), bg, bg])
    pred = np.stack([_with_ball(bg, 23, 24), bg, _with_ball(bg, 40, 40), bg])
    e = ball_errors(truth[..., None], pred[..., None], bg[..., None])
    assert e["ball_visible"] == 2
    assert e["ball_err_px"] == pytest.approx(5.0)      # (3, 4) pixels off
    assert e["ball_found"] == pytest.approx(0.5)       # the second ball is missing
    assert e["ball_spurious"] == pytest.approx(0.5)    # a ball where there is none
    same = ball_errors(truth, truth, bg)
    assert same["ball_err_px"] == 0.0 and same["ball_found"] == 1.0
    assert same["ball_spurious"] == 0.0


def test_ball_locator_agrees_with_the_ale_ram():
    """Real 64x64 frames (make_env, as the datasets): the located ball is where RAM bytes
    49 (x) and 54 (y) put it, mapped linearly from the 160x210 screen to 64x64."""
    from ditto_jax.envs.atari import make_env
    env = make_env("pong", seed=0, noop_max=0)
    env.reset()
    rng = np.random.default_rng(0)
    frames, rams = [], []
    for _ in range(300):
        obs, _, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(obs[..., 0])
        rams.append(env.unwrapped.ale.getRAM().copy())
        if term or trunc:
            break
    env.close()
    frames, rams = np.array(frames), np.array(rams)
    bg = np.median(frames, 0)
    # Scale 64/160 and 64/210; offsets measured (the playfield starts at x 48, y 14).
    col = 0.4 * rams[:, 49].astype(float) - 19.75
    row = 64 / 210 * rams[:, 54].astype(float) - 4.2
    in_play = ((rams[:, 54] > 0) & (row > 12) & (row < 57)
               & (col > 11) & (col < 52))  # clear of the masked paddle columns
    assert in_play.sum() > 100, "too few frames with the ball in play"
    found = [(i, ball_position(frames[i], bg)) for i in np.flatnonzero(in_play)]
    hits = [(i, p) for i, p in found if p is not None]
    assert len(hits) >= 0.97 * len(found), f"ball found in {len(hits)} of {len(found)}"
    err_r = np.array([p[0] - row[i] for i, p in hits])
    err_c = np.array([p[1] - col[i] for i, p in hits])
    assert np.abs(err_r).mean() < 0.4 and np.abs(err_c).mean() < 0.4, (err_r, err_c)
    assert np.abs(err_r).max() < 1.5 and np.abs(err_c).max() < 1.5, (err_r, err_c)
    # No ball while it is out of play (after a point; from the second frame on, as the
    # frame max-pools the last two emulator frames).
    out = np.flatnonzero((rams[1:, 54] == 0) & (rams[:-1, 54] == 0)) + 1
    assert len(out) > 10 and all(ball_position(frames[i], bg) is None for i in out)


@pytest.mark.slow  # default-suite budget (README); the locator tests above stay
def test_wm_compare_end_to_end_on_the_tiny_world_model(tiny_wm, pong_dataset, tmp_path,
                                                       capsys):
    out = tmp_path / "compare.json"
    main(["--wm", f"tiny={tiny_wm}", "--expert", pong_dataset, "--out", str(out),
          "--starts", "4", "--gap-batch", "8"])
    result = json.loads(out.read_text())
    assert "| tiny | 4 |" in capsys.readouterr().out
    assert result["settings"]["starts"] == 4 and result["git"]["sha"]
    m = result["models"]["tiny"]
    rows = [json.loads(x) for x in open(os.path.join(tiny_wm, "metrics.jsonl"))]
    cfg = json.load(open(os.path.join(tiny_wm, "config.json")))
    train = m["train"]
    assert train["step"] == 4 == rows[-1]["step"] == m["wm_step"]
    assert train["recon_mse_fg"] == rows[-1]["recon_mse_fg"]
    assert train["val/kl_loss"] is None  # the fixture trains without validation
    assert train["config"]["model.latent"] == cfg["model"]["latent"]
    assert train["config"]["loss.image_weight"] == cfg["loss"]["image_weight"]
    for k in (0, 5, 10, 15):
        r = m["open_loop"][f"k={k}"]
        assert r["frame_index"] == 4 + k
        assert 0.0 <= r["fg_mse"] <= 1.0 and 0.0 <= r["mse"] <= 1.0
        assert r["ball_visible"] <= 4
        if r["ball_found"] is not None:
            assert 0.0 <= r["ball_found"] <= 1.0
    if m["open_loop"]["k=0"]["ball_visible"]:
        assert m["open_loop"]["k=0"]["static_ball_err_px"] == 0.0  # the frame itself
    # A 4-update model decodes a blur: far worse than the 1e-3 of a trained one.
    assert m["open_loop"]["k=5"]["fg_mse"] > 0.01
    gap = m["action_gap"]
    assert set(gap) == {"h/maxcos", "h/l2"} and m["action_gap_settings"]["starts"] == 8
    assert gap["h/l2"]["return_expert"] <= 0
    assert abs(gap["h/maxcos"]["return_expert"]) <= sum(0.95 ** k for k in range(15)) + 1e-5
    assert gap["h/maxcos"]["gap_deviate_norm"] == pytest.approx(
        gap["h/maxcos"]["gap_deviate"] / gap["h/maxcos"]["advantage_scale"])
    # Bad input names the path, without a traceback.
    with pytest.raises(SystemExit, match="no-such-wm"):
        main(["--wm", f"x={tmp_path / 'no-such-wm'}", "--expert", pong_dataset,
              "--out", str(out)])
    bare = tmp_path / "bare_wm"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="metrics.jsonl"):
        main(["--wm", f"x={bare}", "--expert", pong_dataset, "--out", str(out)])


def _breakout_frames(steps, seed=0):
    """Real 64x64 Breakout frames (make_env, as the datasets) and the RAM after each step,
    under uniform random play (FIRE a quarter of the time: balls launched and lost),
    episode after episode."""
    from ditto_jax.envs.atari import make_env
    env = make_env("breakout", seed=seed, noop_max=0)
    env.reset()
    rng = np.random.default_rng(seed)
    frames, rams = [], []
    for _ in range(steps):
        obs, _, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(obs[..., 0])
        rams.append(env.unwrapped.ale.getRAM().copy())
        if term or trunc:  # random play loses its five balls in about 200 steps
            env.reset()
    env.close()
    return np.array(frames), np.array(rams)


def test_breakout_ball_locator_agrees_with_the_ale_ram():
    """Real Breakout frames: between the bricks and the paddle the located ball is where
    RAM bytes 99 (x) and 101 (y) put it; broken bricks, the paddle and the score are never
    taken for it; with no ball in play none is found."""
    frames, rams = _breakout_frames(800)
    bg = np.median(frames, 0)
    # Linear fits (least squares) on tracker play, seed 0, 600 steps: scale ~64/160, 64/210.
    col = 0.4 * rams[:, 99].astype(float) - 19.5
    row = 0.302 * rams[:, 101].astype(float) + 3.17
    in_box = (rams[:, 101] > 0) & (row > 32) & (row < 54.5) & (col > 5) & (col < 58)
    assert in_box.sum() > 100, f"only {in_box.sum()} frames with the ball in the box"
    found = [(i, ball_position(frames[i], bg, game="breakout")) for i in np.flatnonzero(in_box)]
    hits = [(i, p) for i, p in found if p is not None]
    assert len(hits) >= 0.97 * len(found), f"ball found in {len(hits)} of {len(found)}"
    err_r = np.array([p[0] - row[i] for i, p in hits])
    err_c = np.array([p[1] - col[i] for i, p in hits])
    assert np.abs(err_r).mean() < 0.5 and np.abs(err_c).mean() < 0.5, (err_r, err_c)
    assert np.abs(err_r).max() < 2.0 and np.abs(err_c).max() < 2.0, (err_r, err_c)
    # The world model's object-weighted loss marks pixels 0.05 * 255 over the median frame:
    # the ball clears that three times over in every frame (its peak is 53-108 here).
    peaks = [np.abs(frames[i].astype(float) - bg)[int(round(row[i])) - 2:int(round(row[i])) + 3,
                                                   int(round(col[i])) - 2:int(round(col[i])) + 3].max()
             for i, _ in hits]
    assert min(peaks) > 3 * 0.05 * 255, min(peaks)
    # Random play breaks bricks (the frames differ from the median there) and loses balls.
    broken = (np.abs(frames.astype(float) - bg)[:, 17:29] > 12.75).any(axis=(1, 2))
    assert broken.sum() > 100, "too few frames with a brick broken"
    out = np.flatnonzero((rams[1:, 101] == 0) & (rams[:-1, 101] == 0)) + 1
    assert len(out) > 10
    assert all(ball_position(frames[i], bg, game="breakout") is None for i in out)
    # A game without a locator is a clear error.
    from ditto_jax.errors import DittoError
    with pytest.raises(DittoError, match="ball locator"):
        ball_position(frames[0], bg, game="qbert")
