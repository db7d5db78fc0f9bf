"""The Colab notebook's install cell, run for real where ditto_jax is not installed.

The notebook as a whole runs in tests/test_pipeline.py (on the smoke workdir); here its
first cell runs in a fresh virtual environment that does not have ditto_jax, with a git
clone of this repository as its source, as on Colab.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

from tests.conftest import REPO

NOTEBOOK = os.path.join(REPO, "notebooks", "quickstart.ipynb")


def _cells():
    with open(NOTEBOOK, encoding="utf-8") as f:
        return json.load(f)["cells"]


def _dependencies_without_ditto_jax(target):
    """`target`: links to every entry of this environment's site-packages except ditto_jax's
    own (its package, dist-info and editable finder), so a venv can reuse the installed
    dependencies without seeing ditto_jax as installed."""
    site = sysconfig.get_paths()["purelib"]
    os.makedirs(target)
    for name in os.listdir(site):
        if "ditto_jax" in name:
            continue
        if name.endswith(".pth"):
            with open(os.path.join(site, name), errors="replace") as f:
                if "ditto_jax" in f.read():
                    continue
        os.symlink(os.path.join(site, name), os.path.join(target, name))
    return target


def _run(python, code, cwd, env, timeout=300):
    return subprocess.run([python, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_install_cell_installs_the_clone_where_ditto_jax_is_not_installed(tmp_path):
    """Cell 1 used to skip pip whenever `import ditto_jax` worked, and it always works from
    the source folder. Here: a venv (--system-site-packages from the base interpreter) that
    reaches this environment's dependencies through a .pth but has no ditto_jax; the cell
    clones the repository (file://) and installs it. pip runs with --no-deps
    --no-build-isolation --no-index (DITTO_PIP_ARGS): the dependencies are there already,
    so no network is needed and the install takes seconds."""
    if not os.path.isdir(os.path.join(REPO, ".git")) and not os.path.isfile(
            os.path.join(REPO, ".git")):
        pytest.skip("the repository is not a git checkout, so it cannot be cloned")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    pytest.importorskip("wheel")  # setuptools' editable build without build isolation
    base = getattr(sys, "_base_executable", None) or sys.executable
    venv = tmp_path / "venv"
    subprocess.run([base, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PIP_DISABLE_PIP_VERSION_CHECK="1",
               JAX_PLATFORMS="cpu")
    site = _run(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                tmp_path, env).stdout.strip()
    deps = _dependencies_without_ditto_jax(str(tmp_path / "deps"))
    with open(os.path.join(site, "ditto_test_deps.pth"), "w") as f:
        f.write(f"import site; site.addsitedir({deps!r})\n")
    work = tmp_path / "colab"
    work.mkdir()
    missing = _run(python, "import importlib.metadata as m\ntry:\n    m.distribution('ditto_jax')"
                           "\nexcept m.PackageNotFoundError:\n    print('absent')", work, env)
    assert missing.stdout.strip() == "absent", missing.stderr[-2000:]  # the precondition

    cell = "".join(_cells()[1]["source"])
    env_cell = dict(env, DITTO_REPO_URL=f"file://{REPO}",
                    DITTO_PIP_ARGS="--no-deps --no-build-isolation --no-index")
    proc = _run(python, cell, work, env_cell)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    clone = work / "ditto_jax_repo"
    assert "installing ditto_jax" in proc.stdout and f"working in {clone}" in proc.stdout

    # Installed as a distribution: from any directory, in a new process.
    check = _run(python, "import importlib.metadata as m, ditto_jax, ditto_jax.api\n"
                         "print(m.version('ditto_jax'), ditto_jax.__file__, "
                         "callable(ditto_jax.run))", tmp_path, env)
    assert check.returncode == 0, check.stderr[-3000:]
    version, path, has_run = check.stdout.split()
    assert version == "0.1.0" and has_run == "True"
    assert path == str(clone / "ditto_jax" / "__init__.py")
    # Run again, the cell sees the installed package and does not call pip.
    again = _run(python, cell, work, env_cell)
    assert again.returncode == 0 and "installing" not in again.stdout, again.stderr[-2000:]


def test_notebook_calls_the_public_api_and_tolerates_a_run_without_video():
    cells = _cells()
    pipeline = "".join(cells[2]["source"])
    assert "ditto_jax.run(" in pipeline and "run_pipeline" not in pipeline
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert '["artefacts"]' not in code  # every artefact through artefact(), which may be None
    scope = {"results": {"artefacts": {}}, "WORKDIR": "w", "os": os}
    artefact_def = "".join(cells[4]["source"])
    artefact_def = artefact_def[artefact_def.index("def artefact"):
                                artefact_def.index("display(Markdown")]
    exec(artefact_def, scope)  # noqa: S102
    exec("".join(cells[10]["source"]), scope)  # noqa: S102 - no KeyError, nothing shown
    assert scope["video"] is None


def test_notebook_time_claims_agree_with_the_readme():
    """Every "N minutes" / "N min" the notebook states is a figure the README states."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    text = "\n".join("".join(c["source"]) for c in _cells())
    claims = re.findall(r"(\d+)[- ]min(?:ute)?s?\b", text)
    assert claims, "the notebook states its run times"
    for minutes in claims:
        assert re.search(rf"\b{minutes} minutes\b", readme), minutes
    assert "about two minutes" in text and "about two minutes" in readme  # the smoke preset
