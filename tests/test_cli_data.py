"""`ditto record` and `ditto info` end to end, through the real CLI process."""
import pytest
import json
import os

from tests.conftest import run_cli


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _fails_cleanly(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle.lower() in proc.stderr.lower(), proc.stderr[-3000:]


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_record_then_info_json(tmp_path):
    out = tmp_path / "rand"
    _ok(run_cli("record", "--game", "pong", "--policy", "random", "--episodes", 2,
                "--max-steps", 40, "--out", out, "--quiet"))
    info = json.loads(_ok(run_cli("info", out, "--json")).stdout)
    assert info["episodes"] == 2
    assert info["steps"] == 80
    assert info["obs_shape"] == [64, 64, 1]
    assert "return_mean" in info
    text = _ok(run_cli("info", out)).stdout
    assert "episodes:" in text and "NOOP" in text  # action histogram names the actions


def test_record_refuses_to_overwrite(tmp_path):
    out = tmp_path / "d"
    _ok(run_cli("record", "--game", "pong", "--policy", "random", "--episodes", 1,
                "--max-steps", 10, "--out", out, "--quiet"))
    before = sorted(os.listdir(out))
    _fails_cleanly(run_cli("record", "--game", "pong", "--policy", "random", "--episodes", 1,
                           "--max-steps", 10, "--out", out, "--quiet"), "already exists")
    assert sorted(os.listdir(out)) == before


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_interrupted_recording_keeps_episodes_and_resumes(tmp_path):
    out = tmp_path / "d"
    args = ["record", "--game", "pong", "--policy",
            "tests.policies_for_tests:interrupt_in_third_episode", "--episodes", 4,
            "--max-steps", 30, "--out", out, "--quiet"]
    _fails_cleanly(run_cli(*args), "--resume")
    # Two finished episodes survive, and nothing looks like a complete dataset.
    assert not os.path.exists(out / "dataset_info.json")
    _fails_cleanly(run_cli("info", out), str(out))
    _fails_cleanly(run_cli(*args), "already exists")
    proc = _ok(run_cli(*args, "--resume"))
    assert "2 finished episode(s) kept" in proc.stdout
    info = json.loads(_ok(run_cli("info", out, "--json")).stdout)
    assert info["episodes"] == 4 and info["steps"] == 120


def test_resume_with_different_arguments_is_refused(tmp_path):
    out = tmp_path / "d"
    args = ["record", "--game", "pong", "--policy",
            "tests.policies_for_tests:interrupt_in_third_episode", "--episodes", 4,
            "--max-steps", 30, "--out", out, "--quiet"]
    run_cli(*args)
    _fails_cleanly(run_cli(*args, "--resume", "--seed", 5), "seed")


def test_unknown_game(tmp_path):
    _fails_cleanly(run_cli("record", "--game", "notagame", "--episodes", 1,
                           "--out", tmp_path / "x", "--quiet"), "notagame", "game")
    assert not os.path.exists(tmp_path / "x" / "dataset_info.json")


def test_info_missing_path(tmp_path):
    _fails_cleanly(run_cli("info", tmp_path / "nope"), str(tmp_path / "nope"))


def test_info_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "junk.txt").write_text("hello")
    _fails_cleanly(run_cli("info", tmp_path), str(tmp_path))


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_info_split_expressions(tmp_path):
    out = tmp_path / "three"
    _ok(run_cli("record", "--game", "pong", "--policy", "random", "--episodes", 3,
                "--max-steps", 10, "--out", out, "--quiet"))
    assert json.loads(_ok(run_cli("info", out, "--split", "train[:2]", "--json")).stdout)[
        "episodes"] == 2
    assert json.loads(_ok(run_cli("info", out, "--split", "train[-1:]+train[:1]",
                                  "--json")).stdout)["episodes"] == 2
    proc = run_cli("info", out, "--split", "test[:2]")
    _fails_cleanly(proc, "unknown split", "test", str(out), "one of train")
    _fails_cleanly(run_cli("info", out, "--split", "train[:x]"), "split", "train[:x]",
                   str(out))


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_policy_typo_leaves_nothing_behind(tmp_path):
    out = tmp_path / "d"
    args = ["record", "--game", "pong", "--episodes", 1, "--max-steps", 10, "--out", out,
            "--quiet"]
    _fails_cleanly(run_cli(*args, "--policy", "randmo"), "randmo", "policy")
    assert not os.path.exists(out)
    _ok(run_cli(*args, "--policy", "random"))  # the corrected command just works


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_resume_sets_a_damaged_staged_episode_aside(tmp_path):
    out = tmp_path / "d"
    args = ["record", "--game", "pong", "--policy",
            "tests.policies_for_tests:interrupt_in_third_episode", "--episodes", 4,
            "--max-steps", 30, "--out", out, "--quiet"]
    _fails_cleanly(run_cli(*args), "--resume")
    staged = out / ".staging" / "episode_00000000.npz"
    staged.write_bytes(staged.read_bytes()[:200])  # damaged
    # Two episodes in all: the damaged episode 0 is recorded again (the test policy
    # would interrupt a third one).
    args[args.index("--episodes") + 1] = 2
    proc = _ok(run_cli(*args, "--resume"))
    assert "damaged" in proc.stdout and "episode_00000000.npz" in proc.stdout
    info = json.loads(_ok(run_cli("info", out, "--json")).stdout)
    assert info["episodes"] == 2 and info["steps"] == 60
    assert os.listdir(out / ".damaged") == ["episode_00000000.npz"]  # kept


def test_non_positive_counts_are_refused(tmp_path):
    for bad in ("0", "-3", "two"):
        proc = run_cli("record", "--game", "pong", "--episodes", bad, "--out", tmp_path / "x")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "--episodes" in proc.stderr and "positive integer" in proc.stderr
    assert not os.path.exists(tmp_path / "x")


def test_info_refuses_a_corrupt_metadata_json(tmp_path):
    """A torn or mistyped metadata.json used to read as {} (blank action names, exit 0)."""
    import numpy as np
    import pytest
    from ditto_jax.data.reader import dataset_summary
    from ditto_jax.errors import DittoError
    from tests.test_rlds import ACTIONS, make_episode, write_dataset
    rng = np.random.default_rng(0)
    out = write_dataset(str(tmp_path / "ds"), [make_episode(rng, 4) for _ in range(2)])
    meta_path = os.path.join(out, "metadata.json")
    with open(meta_path) as f:
        good = f.read()
    assert dataset_summary(out)["action_meanings"] == ACTIONS
    with open(meta_path, "w") as f:
        f.write(good[: len(good) // 2])  # torn
    _fails_cleanly(run_cli("info", out), meta_path, "metadata.json is corrupt", "JSON")
    with open(meta_path) as f:
        assert f.read() == good[: len(good) // 2]  # nothing rewritten
    cases = [("[1, 2]", "a JSON object"),
             (json.dumps({**json.loads(good), "action_meanings": ["NOOP", "", "UP", "DOWN"]}),
              "Field: action_meanings"),
             (json.dumps({**json.loads(good), "action_meanings": 4}), "Field: action_meanings"),
             (json.dumps({**json.loads(good), "num_actions": 6}), "Field: num_actions"),
             (json.dumps({**json.loads(good), "obs_shape": [16, 16]}), "Field: obs_shape")]
    for text, needle in cases:
        with open(meta_path, "w") as f:
            f.write(text)
        with pytest.raises(DittoError, match="metadata.json is corrupt") as e:
            dataset_summary(out)
        assert needle in str(e.value) and meta_path in str(e.value)
