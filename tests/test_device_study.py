"""The prepared GPU shot (issue #17): the TF-free episode export, the prepared payload and
printed device call (launch/device_prepare.py), and the --tiny shot end to end with
TensorFlow and TFDS blocked (launch/device_study.sh)."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from tests.conftest import REPO

NO_TF = os.path.join(REPO, "launch", "no_tf")


def _py(args, env=None, timeout=600):
    full = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    full.update(env or {})
    return subprocess.run([sys.executable, *args], cwd=REPO, env=full, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def exported(pong_dataset, tmp_path_factory):
    from ditto_jax.data.export import export_npz
    path = str(tmp_path_factory.mktemp("export") / "pong.npz")
    return export_npz(pong_dataset, path)


def test_export_round_trips_every_step_field_and_the_metadata(pong_dataset, exported):
    from ditto_jax.data.reader import load_episodes
    from ditto_jax.data.source import read_dataset_metadata
    from ditto_jax.data.schema import STEP_FIELDS
    assert exported["episodes"] == 4 and exported["bytes"] > 0
    ref = load_episodes(pong_dataset)
    got = load_episodes(exported["path"])  # the same entry point, by file name
    assert len(got) == len(ref) == 4
    for a, b in zip(ref, got):
        for k in STEP_FIELDS:
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
        assert b.metadata["episode_return"] == a.metadata["episode_return"]
    assert read_dataset_metadata(exported["path"]) == read_dataset_metadata(pong_dataset)
    top = load_episodes(exported["path"], selection="top:2")
    rets = sorted((e.metadata["episode_return"] for e in ref), reverse=True)[:2]
    assert sorted((e.metadata["episode_return"] for e in top), reverse=True) == rets
    assert len(load_episodes(exported["path"], selection="first:3",
                             process_index=1, process_count=2)) == 1


def test_export_reads_without_tensorflow(exported):
    code = ("import sys\n"
            "from ditto_jax.data.reader import load_episodes\n"
            "from ditto_jax.data.source import read_dataset_metadata\n"
            f"eps = load_episodes({exported['path']!r}, expected_obs_shape=(64, 64, 1))\n"
            f"meta = read_dataset_metadata({exported['path']!r})\n"
            "assert len(eps) == 4 and meta['game'] == 'pong'\n"
            "assert sys.modules['tensorflow'] is None\n"
            "print('ok')\n")
    proc = _py(["-c", code], env={"PYTHONPATH": os.pathsep.join([NO_TF, REPO])})
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


def test_bad_exports_give_clear_errors(exported, tmp_path):
    from ditto_jax.data.npz import load_episodes
    from ditto_jax.errors import DittoError
    with pytest.raises(DittoError, match="not found"):
        load_episodes(str(tmp_path / "missing.npz"))
    cut = tmp_path / "cut.npz"
    with open(exported["path"], "rb") as f:
        cut.write_bytes(f.read()[:5000])
    with pytest.raises(DittoError, match="truncated or corrupt") as e:
        load_episodes(str(cut))
    assert str(cut) in str(e.value)
    other = tmp_path / "other.npz"
    np.savez(other, format=np.array("something/9"))
    with pytest.raises(DittoError, match="format") as e:
        load_episodes(str(other))
    assert "ditto_jax.episodes.npz/1" in str(e.value)
    with pytest.raises(DittoError, match="wrong shape"):
        load_episodes(exported["path"], expected_obs_shape=(84, 84, 1))
    with pytest.raises(DittoError, match="action set"):
        load_episodes(exported["path"], num_actions=1)
    assert zipfile.is_zipfile(exported["path"])


@pytest.fixture
def payload_dirs():
    """A fake wheel folder and export folder inside the repository (git-ignored .device/)."""
    base = os.path.join(REPO, ".device", f"test_{os.getpid()}")
    whl, data = os.path.join(base, "whl"), os.path.join(base, "data", "pong")
    os.makedirs(whl), os.makedirs(data)
    with open(os.path.join(whl, "fake-1.0-py3-none-any.whl"), "wb") as f:
        f.write(b"\0" * 100_000)
    for name in ("expert", "noisy", "random"):
        np.savez(os.path.join(data, f"{name}.npz"), x=np.zeros(10))
    yield os.path.relpath(whl, REPO), os.path.relpath(os.path.dirname(data), REPO)
    shutil.rmtree(base, ignore_errors=True)


def _prepare(whl, data, *extra):
    return _py(["launch/device_prepare.py", "--no-record", "--no-wheels", "--games", "pong",
                "--wheel-dir", whl, "--data-dir", data, "--json", *extra], timeout=300)


def test_prepared_payload_and_printed_call_are_valid(payload_dirs):
    whl, data = payload_dirs
    proc = _prepare(whl, data)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    call = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(call["command"]) <= 2000 and 1 <= call["timeout_s"] <= 600
    assert call["timeout_s"] >= 420 + 30  # the study's deadline, plus the wheel install
    assert call["carry"] == [whl, data] and len(call["carry"]) <= 8
    assert all(os.path.isdir(os.path.join(REPO, c)) for c in call["carry"])
    assert "--no-index --no-deps" in call["command"] and "launch/device_study.sh" in \
        call["command"] and "/tmp/site" in call["command"]
    assert "pip install" in call["command"] and "tensorflow" not in call["command"]
    assert f"{whl}/*.whl" in call["command"] and f"DEVICE_STUDY_DATA=$PWD/{data} " in \
        call["command"]
    sizes = call["payload"]
    assert sizes[whl] == 100_000 and sizes[data] > 0 and sizes["tracked"] > 100_000
    assert call["payload_bytes"] == sum(sizes.values()) <= 64 * 2 ** 20
    assert f"command   ({len(call['command'])} characters)" in proc.stdout


def test_payload_over_the_limit_is_refused(payload_dirs):
    whl, data = payload_dirs
    proc = _prepare(whl, data, "--limit-mib", "0.05")
    assert proc.returncode == 2
    assert "over the 0.05 MiB a device call carries" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _py(["launch/device_prepare.py", "--no-record", "--no-wheels", "--games", "pong",
                "--data-dir", "/tmp"])
    assert proc.returncode == 2 and "outside the repository" in proc.stderr


def test_device_call_checker_names_each_problem():
    sys.path.insert(0, os.path.join(REPO, "launch"))
    import device_prepare as dp
    assert dp.check_call(dp.device_call([".git", "tests"])) == []
    assert "DEVICE_STUDY_DATA=$PWD/tests " in dp.device_call([".git", "tests"])["command"]
    bad = dict(dp.device_call(["nope", "/abs"]), timeout_s=900, command="x" * 2001)
    problems = "; ".join(dp.check_call(bad))
    for text in ("2001 characters", "timeout_s 900", "'nope' does not exist",
                 "'/abs' is not relative"):
        assert text in problems, problems


def _tiny_shot(tmp_path, data, **env):
    out = tmp_path / "out"
    full = {"OUT": str(out), "DEVICE_STUDY_DATA": data, "PYTHON": sys.executable,
            "DEVICE_STUDY_WORK": str(tmp_path / "work"), **env}
    proc = subprocess.run(["bash", "launch/device_study.sh", "--tiny"], cwd=REPO,
                          env=dict(os.environ, **full), capture_output=True, text=True,
                          timeout=400)
    return proc, out


def test_a_missing_export_stops_the_shot_with_a_clear_message(tmp_path):
    proc, out = _tiny_shot(tmp_path, str(tmp_path / "nothing"))
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "launch/device_prepare.sh" in proc.stdout and "expert.npz" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


# ~2-3 min on a 2-core CPU (recording, then the whole --tiny shot): in the default suite,
# because issue #17 asks that the shot's --tiny path passes in CI.
def test_tiny_shot_end_to_end_with_tensorflow_blocked(tmp_path):
    rel = os.path.relpath(str(tmp_path), REPO)
    if not rel.startswith(".."):
        pytest.skip("tmp_path inside the repository")
    base = os.path.join(REPO, ".device", f"test_shot_{os.getpid()}")
    try:
        prep = _py(["launch/device_prepare.py", "--tiny", "--no-wheels", "--games",
                    "pong breakout", "--rlds-dir", str(tmp_path / "rlds"), "--data-dir",
                    os.path.relpath(os.path.join(base, "data"), REPO), "--wheel-dir",
                    os.path.relpath(os.path.join(base, "whl"), REPO)], timeout=600)
        # No wheels here (no download in tests): exports only, no device call.
        assert prep.returncode == 0 and "no wheels" in prep.stdout, \
            prep.stdout[-2000:] + prep.stderr[-2000:]
        proc, out = _tiny_shot(tmp_path, os.path.join(base, "data"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(os.listdir(out))
    assert len(files) <= 8 and all(os.path.getsize(out / f) <= 16 * 2 ** 20 for f in files)
    assert {"results.json", "results.md", "scores.png", "provenance.json",
            "study.log"} <= set(files)
    res = json.loads((out / "results.json").read_text())
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["tensorflow_blocked"] is True and prov["tensorflow_imported"] is False
    assert res["seeds"] == [0, 1] and res["N_E"] == [1, 2] and res["tiny"] is True
    assert res["methods"] == ["ditto_bcinit", "bc"] and res["total_s"] <= 180 + 10
    assert {(r["method"], r["n_e"]) for r in res["rows"]} == {
        (m, n) for m in res["methods"] for n in res["N_E"]}
    done = [r for r in res["rows"] if r["iqm"] is not None]
    assert done, res["parts"]  # at least one policy trained and evaluated in the budget
    for r in done:
        assert r["ci"][0] <= r["iqm"] <= r["ci"][1] and min(r["episodes"]) >= 10
    assert set(res["parts"]) == {"speed", "wm", "policies", "eval"}
    act = res["speed"]["act"]
    # The speed part either measured acting, or says that its budget cut it short.
    assert (isinstance(act, dict) and act.get("1", {}).get("ms_per_step", 0) > 0) or \
        "killed" in res["parts"]["speed"]["status"], (act, res["parts"]["speed"])
    assert res["world_model"]["updates"] >= 1 and "k=5" in res["world_model"]["open_loop"]
    assert "| ditto_bcinit | 1 |" in (out / "results.md").read_text()
