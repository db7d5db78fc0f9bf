"""The package's floors: every module sits in a layer (benchmarks/import_graph.py's `LAYERS`,
the one place the order is written) and imports only its own layer and the ones below,
function-local imports included; no private name crosses a package; no import cycle; no
code outside the method registry branches on a method's name. Read from the source (an
AST walk), so a violation fails here before it fails anywhere else."""
import os
import re
import subprocess
import sys

import pytest

from benchmarks import import_graph
from tests.conftest import REPO

# Known violations, removed by work in progress elsewhere (the acting agents move from
# stages/policy_agents.py to agents/acting.py). Exact: the test also fails when one of
# them no longer exists, so this list can only shrink.
ALLOWED_UPWARD = set()  # (importer, imported) pairs allowed to go up: none
ALLOWED_CYCLES = set()  # module tuples allowed to form a cycle: none

METHOD_NAMES = "ditto|ditto_bcinit|ditto_bctr|dgail|dbc|bc"
BRANCH = re.compile(rf"""(==|!=|\bin|\bnot in)\s*\(?\s*["']({METHOD_NAMES})["']"""
                    rf"""|["']({METHOD_NAMES})["']\s*(==|!=)""")


def test_the_top_holds_only_the_entry_points():
    top = sorted(f for f in os.listdir(os.path.join(REPO, "ditto_jax")) if f.endswith(".py"))
    assert top == ["__init__.py", "api.py", "cli.py", "errors.py"], top


def test_every_module_has_a_layer():
    floors = {import_graph.floor(m) for m in import_graph.modules(REPO)}
    assert floors <= set(import_graph.LAYER_OF), sorted(floors - set(import_graph.LAYER_OF))


def test_imports_only_go_down():
    found = {(s, t) for s, t, _ in import_graph.upward(REPO)}
    lines = [f"{s}:{line} imports {t or '(a module with no layer)'}"
             for s, t, line in import_graph.upward(REPO) if (s, t) not in ALLOWED_UPWARD]
    assert not lines, "imports into a higher layer (benchmarks/import_graph.py LAYERS):\n" \
        + "\n".join(lines)
    gone = ALLOWED_UPWARD - found
    assert not gone, f"allowed upward imports that no longer exist (remove them): {gone}"


def test_no_private_name_crosses_a_package():
    found = import_graph.private_across(REPO)
    assert not found, "private names imported from another package:\n" + "\n".join(
        f"{s}:{line} {t}.{n}" for s, t, n, line in found)


def test_no_import_cycles():
    found = set(import_graph.cycles(REPO))
    assert found <= ALLOWED_CYCLES, "import cycles:\n" + "\n".join(
        " <-> ".join(c) for c in sorted(found - ALLOWED_CYCLES))
    gone = ALLOWED_CYCLES - found
    assert not gone, f"allowed cycles that no longer exist (remove them): {gone}"


def test_the_scan_sees_function_local_imports(tmp_path):
    """An upward import hidden inside a function is found, as is a cycle through it."""
    pkg = tmp_path / "ditto_jax"
    for folder in ("core", "stages"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "io.py").write_text(
        "def f():\n    from ditto_jax.stages.run import _go\n    return _go\n")
    (pkg / "stages" / "run.py").write_text("from ditto_jax.core import io\n\n\ndef _go():\n"
                                           "    return io\n")
    root = str(tmp_path)
    assert import_graph.upward(root) == [("ditto_jax.core.io", "ditto_jax.stages.run", 2)]
    assert import_graph.private_across(root) == [
        ("ditto_jax.core.io", "ditto_jax.stages.run", "_go", 2)]
    assert import_graph.cycles(root) == [("ditto_jax.core.io", "ditto_jax.stages.run")]
    assert import_graph.local_from_imports(root) == [("ditto_jax.core.io", 2)]


def test_nothing_branches_on_method_names():
    """Drivers, stages, reports and sweeps ask the method registry; only a method's own
    class names it. (`protocol == "ditto"` is the evaluation protocol, not the method.)"""
    hits = []
    for path in import_graph.modules(REPO).values():
        for n, line in enumerate(open(path), 1):
            code = line.split("#")[0]
            if BRANCH.search(code) and "protocol" not in code:
                hits.append(f"{os.path.relpath(path, REPO)}:{n}: {line.strip()}")
    assert not hits, "method-name branches:\n" + "\n".join(hits)


@pytest.mark.parametrize("pattern", ['if config.method == "dbc":', "m in ('dbc', 'bc')",
                                     'if "dgail" != name:'])
def test_the_method_name_guard_catches_branches(pattern):
    assert BRANCH.search(pattern)


def test_the_script_reports_the_numbers():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "import_graph.py")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    local = len(import_graph.local_from_imports(REPO))
    assert f"function-local `from ditto_jax` imports: {local}\n" in proc.stdout
    assert f"import cycles: {len(import_graph.cycles(REPO))}\n" in proc.stdout
