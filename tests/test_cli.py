"""The `ditto` command line itself: start-up cost, help texts, argument validation,
default configs from any directory."""
import argparse
import json
import os
import subprocess
import sys

import pytest

from ditto_jax import cli
from ditto_jax.core.args import non_negative_int, positive_int
from tests.conftest import REPO, run_cli


def test_top_level_help_imports_neither_jax_nor_tensorflow():
    code = ("import sys\n"
            "from ditto_jax.cli import main\n"
            "try:\n"
            "    main(['--help'])\n"
            "except SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            "heavy = sorted(m for m in ('jax', 'jaxlib', 'tensorflow', 'flax', "
            "'tensorflow_datasets', 'ale_py') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout
    assert "train-policy" in proc.stdout  # the commands are listed


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_help_of_every_command_imports_neither_jax_nor_tensorflow(command):
    # train-wm and train-policy used to import jax and orbax to build their parser (2.4 s).
    code = ("import sys\n"
            "from ditto_jax.cli import main\n"
            "try:\n"
            f"    main([{command!r}, '--help'])\n"
            "except SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            "print('HEAVY', sorted(m for m in ('jax', 'jaxlib', 'tensorflow', 'flax', "
            "'orbax', 'tensorflow_datasets') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
    assert f"usage: ditto {command}" in proc.stdout
    if command == "info":
        assert "--split" in proc.stdout and "train[10%:]" in proc.stdout


def test_version_names_the_package_version():
    from importlib import metadata

    import ditto_jax
    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    try:
        expected = metadata.version("ditto_jax")
    except metadata.PackageNotFoundError:
        expected = ditto_jax.__version__
    assert proc.stdout.strip() == f"ditto {expected}"


def _subparsers():
    parser = cli.build_parser(commands=None)  # every command's options
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_option_has_help_and_commands_show_defaults():
    subs = _subparsers()
    assert set(subs) == set(cli.COMMANDS)
    missing = []
    for name, p in subs.items():
        assert p.formatter_class is cli.HelpFormatter, name
        for a in p._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            if not (a.help and a.help.strip()):
                missing.append(f"ditto {name} {'/'.join(a.option_strings) or a.dest}")
    assert not missing, f"options without help: {missing}"
    text = " ".join(subs["record"].format_help().split())
    assert "(default: 27000)" in text and "(default: expert)" in text


@pytest.mark.parametrize("argv, option", [
    (["record", "--game", "pong", "--out", "x", "--episodes", "0"], "--episodes"),
    (["record", "--game", "pong", "--out", "x", "--episodes", "2", "--max-steps", "-5"],
     "--max-steps"),
    (["record", "--game", "pong", "--out", "x", "--episodes", "2", "--epsilon", "1.5"],
     "--epsilon"),
    (["eval", "--workdir", "w", "--episodes", "-1"], "--episodes"),
    (["eval", "--workdir", "w", "--envs", "0"], "--envs"),
    (["train-wm", "--data", "d", "--workdir", "w", "--steps", "0"], "--steps"),
    (["train-policy", "--wm", "w", "--expert", "e", "--workdir", "w", "--steps", "-2"],
     "--steps"),
    (["report", "sweeps/x", "--reps", "0"], "--reps"),
    (["sweep", "paper", "--workers", "0"], "--workers"),
    (["sweep", "paper", "--retries", "-1"], "--retries"),
])
def test_bad_numbers_are_refused_by_argparse(argv, option, capsys):
    parser = cli.build_parser(commands=[argv[0]])
    with pytest.raises(SystemExit) as e:
        parser.parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "expected" in err, err


def test_positive_int_type():
    assert positive_int("3") == 3 and non_negative_int("0") == 0
    for bad in ("0", "-1", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)


@pytest.mark.parametrize("command, extra", [
    ("train-wm", ["--data", "d", "--workdir", "w"]),
    ("train-policy", ["--wm", "w", "--expert", "e", "--workdir", "w"]),
])
def test_default_configs_load_from_any_directory(command, extra, tmp_path, monkeypatch):
    from ditto_jax.core.config import load_config
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser(commands=[command]).parse_args([command, *extra])
    path = args.config.partition(":")[0]
    assert os.path.isabs(path) and os.path.isfile(path), args.config
    assert load_config(args.config).to_dict()
    # The documented relative form works from another directory too.
    args = cli.build_parser(commands=[command]).parse_args(
        [command, *extra, "--config", "experiments/configs/wm.py:paper"])
    assert os.path.isfile(args.config.partition(":")[0]) and args.config.endswith(":paper")


def test_train_wm_runs_its_default_config_from_another_directory(tmp_path):
    # The config loads (from the installed experiments folder), then the missing
    # dataset is reported: a clean error, not "config file not found".
    proc = run_cli("train-wm", "--data", tmp_path / "nope", "--workdir", tmp_path / "w",
                   cwd=str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "Dataset not found" in proc.stderr and "wm.py" not in proc.stderr


@pytest.mark.slow  # default-suite budget (README): run with `pytest -m slow`
def test_library_use_is_quiet(tmp_path):
    """No ALE banner and no TensorFlow start-up lines when used from Python."""
    code = ("from ditto_jax.stages.record import record\n"
            f"record(game='pong', policy='random', episodes=1, max_steps=5, "
            f"out={str(tmp_path / 'd')!r}, progress=False, log=lambda *a: None)\n"
            "from ditto_jax.data.reader import dataset_summary\n"
            f"print(dataset_summary({str(tmp_path / 'd')!r})['episodes'])\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"
    noise = proc.stdout + proc.stderr
    assert "A.L.E" not in noise and "Powered by Stella" not in noise, noise
    assert "oneDNN" not in noise and "cpu_feature_guard" not in noise, noise


@pytest.mark.parametrize("argv, flag, key", [
    (["train-policy", "--method", "dbc", "--config.method=ditto"], "--method", "method"),
    (["train-policy", "--steps", "5", "--config.steps=7"], "--steps", "steps"),
    (["train-wm", "--steps", "5", "--config.train.steps=7"], "--steps", "train.steps"),
])
def test_a_flag_and_its_config_override_must_agree(argv, flag, key, tmp_path, capsys):
    """`--method dbc --config.method=ditto` silently trained dbc before; now it is refused
    before anything is read or written. Agreeing values pass this check."""
    paths = (["--wm", str(tmp_path / "wm"), "--expert", str(tmp_path / "e")]
             if argv[0] == "train-policy" else ["--data", str(tmp_path / "d")])
    workdir = tmp_path / "out"
    assert cli.main(argv + paths + ["--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err
    assert f"{flag} and --config.{key} disagree" in err and f"Field: --config.{key}" in err
    assert not workdir.exists()
    same = [a.replace("=ditto", "=dbc").replace("=7", "=5") for a in argv]
    assert cli.main(same + paths + ["--workdir", str(workdir)]) == 2  # fails later: no data
    assert "disagree" not in capsys.readouterr().err
def test_provenance_records_tensorflow_rliable_and_ditto_jax():
    from importlib import metadata

    from ditto_jax.core.provenance import ditto_version, package_versions
    packages = package_versions()
    assert packages["ditto_jax"] == ditto_version()
    assert packages["rliable"] == metadata.version("rliable")
    # Whichever distribution provides `tensorflow/` (tensorflow, tensorflow-cpu, ...).
    assert packages["tensorflow"] == metadata.version(packages["tensorflow_dist"])
