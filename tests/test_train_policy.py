"""Imitation stage end to end: a tiny world model, each method, eval in the real ALE."""
import json
import os

import numpy as np
import pytest

from tests.conftest import REPO, run_cli

WM_CONFIG = os.path.join(REPO, "experiments/configs/wm.py:tiny")
POLICY_CONFIG = os.path.join(REPO, "experiments/configs/policy.py:tiny")


def _policy(tiny_wm, expert, workdir, method, steps, *extra):
    return run_cli("train-policy", "--method", method, "--config", POLICY_CONFIG, "--wm",
                   tiny_wm, "--expert", expert, "--workdir", workdir, "--steps", steps,
                   "--quiet", *extra)


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_ditto_20_updates_then_eval_in_real_env(tiny_wm, pong_dataset, tmp_path):
    proc = _policy(tiny_wm, pong_dataset, tmp_path, "ditto", 20)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(tmp_path)
    train = [r for r in rows if "reward" in r]
    assert train[-1]["step"] == 20 and -1 <= train[-1]["reward"] <= 1
    assert any("eval/return_last10" in r for r in rows)
    assert any("heldout_action_accuracy" in r for r in rows)
    proc = run_cli("eval", "--workdir", tmp_path, "--episodes", 2, "--envs", 2, "--max-steps",
                   100, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["episodes"] == 2 and result["lengths"] == [100, 100]
    for key in ("return_mean", "return_se"):
        assert np.isfinite(result[key]), key
    # Capped at 100 steps: the full-game human-normalised score would be meaningless, and
    # the expert-normalised one uses references measured under the same cap (the scripted
    # look-ahead expert behind the demonstrations, played live, and random play).
    assert result["human_normalized"] is None and result["capped_episodes"] == 2
    assert np.isfinite(result["expert_return"]) and np.isfinite(result["random_return"])
    if result["expert_return"] != result["random_return"]:
        assert result["expert_normalized_mean"] == pytest.approx(
            (result["return_mean"] - result["random_return"])
            / (result["expert_return"] - result["random_return"]))
    assert 0.0 <= result["expert_agreement"] <= 1.0
    assert os.path.exists(result["video"])


@pytest.mark.parametrize("method", [pytest.param("dbc", marks=pytest.mark.slow), pytest.param("dgail", marks=pytest.mark.slow), "bc"])
def test_baselines_train_and_checkpoint(method, tiny_wm, pong_dataset, tmp_path):
    proc = _policy(tiny_wm, pong_dataset, tmp_path, method, 10, "--config.eval_every=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(tmp_path)
    assert rows[-1]["step"] == 10
    if method == "dgail":
        assert "disc_collapsed" in rows[-1] and "disc_expert" in rows[-1]
    if method in ("dbc", "bc"):
        assert 0 <= rows[-1]["accuracy"] <= 1
    assert "10" in os.listdir(tmp_path / "checkpoints")


def test_offline_probes_run_for_a_learned_reward(tiny_wm, pong_dataset, tmp_path):
    """D-GAIL's config has no latent reward (nor its `sparse_threshold`): the reward-spread
    and drift probes, on in the demo preset, must still run for it. They crashed the
    demo's policy stage once, unseen because the tiny preset turns them off."""
    proc = _policy(tiny_wm, pong_dataset, tmp_path, "dgail", 4, "--config.eval_every=0",
                   "--config.probe_every=2", "--config.probe_batch=4",
                   "--config.drift_length=3", "--config.log_every=2")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    probed = [r for r in _rows(tmp_path) if "drift_mean" in r]
    assert [r["step"] for r in probed] == [2, 4]
    for key in ("spread/maxcos/margin_deviate", "spread/l2/margin_random", "drift_expert"):
        assert np.isfinite(probed[-1][key]), key
    assert not any(k.startswith("spread/sparse") for k in probed[-1])


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_resume_matches_uninterrupted(tiny_wm, pong_dataset, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    args = ("--config.eval_every=0", "--config.log_every=1", "--config.save_every=5")
    assert _policy(tiny_wm, pong_dataset, a, "ditto", 10, *args).returncode == 0
    assert _policy(tiny_wm, pong_dataset, b, "ditto", 5, *args).returncode == 0
    proc = _policy(tiny_wm, pong_dataset, b, "ditto", 10, *args)
    assert proc.returncode == 0 and "resumed from step 5" in proc.stdout
    ra = [r["actor_loss"] for r in _rows(a)]
    rb = [r["actor_loss"] for r in _rows(b)]
    np.testing.assert_allclose(ra, rb, rtol=1e-5)


def _fails(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_bad_inputs(tiny_wm, pong_dataset, tmp_path):
    _fails(_policy(str(tmp_path / "nowm"), pong_dataset, tmp_path / "w1", "ditto", 1),
           "No world-model checkpoint")
    _fails(_policy(tiny_wm, str(tmp_path / "noexpert"), tmp_path / "w2", "ditto", 1),
           "noexpert")
    other = tmp_path / "breakout"
    assert run_cli("record", "--game", "breakout", "--policy", "random", "--episodes", 2,
                   "--max-steps", 20, "--out", other, "--quiet").returncode == 0
    _fails(_policy(tiny_wm, other, tmp_path / "w3", "ditto", 1), "different games")
    small = tmp_path / "small"
    assert run_cli("record", "--game", "pong", "--policy", "random", "--episodes", 2,
                   "--max-steps", 20, "--size", 48, "--out", small, "--quiet").returncode == 0
    _fails(_policy(tiny_wm, small, tmp_path / "w4", "ditto", 1), "observation")
    # Without metadata.json nothing says which game the data is from: refused, by name.
    import shutil
    bare = tmp_path / "bare"
    shutil.copytree(other, bare)
    for meta in bare.rglob("metadata.json"):
        meta.unlink()
    _fails(_policy(tiny_wm, bare, tmp_path / "w5", "ditto", 1), "metadata")
    # Asking for more expert episodes than exist would mislabel N_E: refused.
    _fails(_policy(tiny_wm, pong_dataset, tmp_path / "w6", "dbc", 1,
                   "--config.expert_episodes=50"), "fewer episodes than requested")



def test_reward_action_gap_diagnostic(tiny_wm, pong_dataset, tmp_path):
    """benchmarks/action_gap.py on a tiny world model: every (part, reward) is reported,
    maxcos/cosine returns are bounded by the discounted horizon, l2 returns are <= 0."""
    import subprocess
    import sys
    out = tmp_path / "gap.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "action_gap.py"),
                           "--wm", tiny_wm, "--expert", pong_dataset, "--horizon", "3",
                           "--batch", "8", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["results"]) == {f"{p}/{r}" for p in ("h", "z", "h+z")
                                      for r in ("maxcos", "cosine", "l2")}
    bound = sum(0.95 ** k for k in range(3))
    for key, r in result["results"].items():
        assert 0.0 <= r["rank_deviate"] <= 1.0 and len(r["step_gap"]) == 3
        if key.endswith("l2"):
            assert r["return_expert"] <= 0 and r["return_random"] <= 0
        else:
            assert abs(r["return_expert"]) <= bound + 1e-5
    assert "h/maxcos" in proc.stdout


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_wrong_kind_of_workdir_and_config_typos_are_named(tiny_wm, pong_dataset, tmp_path):
    policy = tmp_path / "dbc"
    proc = _policy(tiny_wm, pong_dataset, policy, "dbc", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # A policy workdir where a world model belongs, and the other way round.
    _fails(_policy(str(policy), pong_dataset, tmp_path / "w", "ditto", 1),
           "not a world-model workdir")
    proc = run_cli("eval", "--workdir", tiny_wm, "--episodes", 1, "--no-video")
    assert proc.returncode == 2 and "not a policy workdir" in proc.stderr
    assert "Traceback" not in proc.stderr
    # Enum typos and impossible values stop before any data or checkpoint is read: the
    # expert path below does not exist, and the error is still about the config.
    for override, field in (("--config.reward=maxcoss", "config.reward"),
                            ("--config.latent=w", "config.latent"),
                            ("--config.lr=-0.001", "config.lr"),
                            ("--config.eval_protocol=machadoo", "config.eval_protocol"),
                            ("--config.imagine_matmul=float16", "config.imagine_matmul")):
        proc = _policy(tiny_wm, str(tmp_path / "absent"), tmp_path / "w2", "ditto", 1,
                       override)
        assert proc.returncode == 2 and field in proc.stderr, (override, proc.stderr[-500:])
        assert "Traceback" not in proc.stderr


def test_expert_subsets_are_nested_share_the_heldout_and_encode_once(tiny_wm, pong_dataset):
    """N_E subsets: the first N_E episodes (nested), the last episode held out for every
    N_E, and the cached pool encoding's prefix equal to encoding the subset alone."""
    from ditto_jax.core.config import load_config
    from ditto_jax.errors import DittoError
    from ditto_jax.stages.policy_data import encode_expert, encode_store, load_expert
    from ditto_jax.stages.wm_io import load_world_model
    config = load_config(POLICY_CONFIG)      # heldout_episodes 1; the dataset has 4
    wm_state, wm_meta = load_world_model(tiny_wm)
    cache, ids = {}, {}
    for n in (1, 2, 3):
        config.expert_episodes = n
        store, held, info = load_expert(config, pong_dataset, wm_meta, cache=cache)
        ids[n] = info["episode_ids"]
        assert info["heldout_episode_ids"] == [3] and store.num_episodes == n
        lat = encode_expert(wm_state, store, seed=7, cache=cache)
        alone = encode_store(wm_state, store, seed=7)
        for k in alone:
            np.testing.assert_allclose(lat[k], alone[k], rtol=1e-5, atol=1e-5)
    assert ids == {1: [0], 2: [0, 1], 3: [0, 1, 2]}
    assert sum(k[0] == "latents" for k in cache) == 1      # the pool, encoded once
    config.expert_episodes = 4                             # 3 + the held-out one exist
    with pytest.raises(DittoError, match="fewer episodes than requested"):
        load_expert(config, pong_dataset, wm_meta, cache=cache)


def _train_wm(data, workdir, *extra):
    proc = run_cli("train-wm", "--config", WM_CONFIG, "--data", data, "--workdir", workdir,
                   "--steps", 4, "--quiet", "--config.train.strip_every=0",
                   "--config.train.eval_every=0", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _strip_params_hash(policy):
    """Makes `policy` look trained before the world model's parameter digest existed."""
    for path in [policy / "config.json"] + sorted(policy.glob("checkpoints/*/meta/metadata")):
        with open(path) as f:
            meta = json.load(f)
        del meta["world_model"]["params_hash"]
        with open(path, "w") as f:
            json.dump(meta, f)


def test_a_policy_refuses_a_world_model_with_other_data_or_parameters(tiny_wm, pong_dataset,
                                                                      tmp_path):
    """The pin: same step and architecture are not enough; the dataset fingerprint and a
    digest of the parameters must match too, for `ditto eval`, `--wm` and `load_policy`."""
    import shutil
    from ditto_jax.errors import DittoError
    from ditto_jax.stages.policy_agents import load_policy
    from ditto_jax.stages.wm_io import load_world_model
    wm = tmp_path / "wm"
    shutil.copytree(tiny_wm, wm)
    policy = tmp_path / "dbc"
    proc = _policy(str(wm), pong_dataset, policy, "dbc", 2, "--config.eval_every=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    pinned = json.load(open(policy / "config.json"))["world_model"]
    _, wm_meta = load_world_model(str(wm))
    assert pinned["params_hash"] == wm_meta["params_hash"] and len(pinned["params_hash"]) == 16
    # Retrained to the same step with the same config: another seed, another data selection.
    _train_wm(pong_dataset, tmp_path / "reseeded", "--config.train.seed=1")
    _train_wm(pong_dataset, tmp_path / "subset", "--split", "train[:3]")
    for other, field in (("reseeded", "world_model.params_hash"),
                         ("subset", "world_model.dataset")):
        _, other_meta = load_world_model(str(tmp_path / other))
        assert other_meta["step"] == pinned["step"] and other_meta["model"] == pinned["model"]
        key = field.split(".")[1]
        with pytest.raises(DittoError) as e:
            load_policy(str(policy), wm=str(tmp_path / other))
        assert e.value.field == f"{field} (--wm)" and e.value.path == str(tmp_path / other)
        assert e.value.expected == pinned[key] and e.value.got == other_meta[key]
        proc = run_cli("eval", "--workdir", policy, "--wm", tmp_path / other, "--episodes", 1,
                       "--max-steps", 20, "--no-video", "--no-agreement")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert "not the one the policy was trained on" in proc.stderr
        assert f"Field: {field} (--wm)" in proc.stderr and pinned[key] in proc.stderr
        assert not os.path.exists(policy / "eval_dbc.json")
    # The recorded folder replaced by a retrain (no --wm) is refused the same way.
    os.replace(wm, tmp_path / "wm.orig")
    os.replace(tmp_path / "reseeded", wm)
    with pytest.raises(DittoError, match="other parameters") as e:
        load_policy(str(policy))
    assert e.value.field == "world_model.params_hash (world_model.workdir)"
    os.replace(wm, tmp_path / "reseeded")
    os.replace(tmp_path / "wm.orig", wm)
    load_policy(str(policy))  # its own world model still loads
    # A policy from before the digest existed loads, with one warning line.
    _strip_params_hash(policy)
    proc = run_cli("eval", "--workdir", policy, "--episodes", 1, "--max-steps", 20,
                   "--envs", 1, "--no-video", "--no-agreement")
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [ln for ln in proc.stderr.splitlines() if "predates" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("ditto: warning: policy ")
