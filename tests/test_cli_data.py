"""`ditto record` and `ditto info` end to end, through the real CLI process."""
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
