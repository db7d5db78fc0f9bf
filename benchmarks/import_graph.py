"""The import graph of `ditto_jax/`, read from the source (an AST walk, nothing imported).

  python benchmarks/import_graph.py            counts, cycles and layer violations
  python benchmarks/import_graph.py --root DIR   the same for another checkout

Every `import` / `from ... import` is read, at module level and inside functions alike. It
prints the number of function-local `from ditto_jax...` imports, the import cycles between
files (strongly connected components of the file graph), the imports into a higher layer
(`LAYERS` below: the one place the layer order is written) and the private names (`_x`)
imported across packages. `tests/test_layers.py` asserts on the same functions.
"""
import argparse
import ast
import dataclasses
import os
import sys

PACKAGE = "ditto_jax"

# The layers, lowest first: the one place the order is written (README's "Layout" says
# why). A module may import its own layer and the ones before it. The key is the module's
# folder below `ditto_jax` (or the name of a top-level module).
LAYERS = (
    ("errors",),                              # DittoError: every layer raises it
    ("core",),                                # config, io, devices, provenance, media, ...
    ("envs", "data", "models", "engine"),     # independent of each other
    ("experts",),                             # play envs
    ("agents",),                              # imitation maths on the models
    ("methods",),                             # the registry of imitation methods
    ("stages",),                              # one `ditto` command each
    ("report",),                              # `ditto report`; results.json read back
    ("pipeline",),                            # `ditto run`: runs the stages, writes results
    ("sweep",),                               # `ditto sweep`: grids of `ditto run` jobs
    ("api",),                                 # the Python API
    ("cli", "__init__"),                      # the `ditto` command, the package
)
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


@dataclasses.dataclass(frozen=True)
class Edge:
    source: str      # importing module, dotted (ditto_jax.pipeline.run)
    target: str      # imported module, dotted (the module a name was taken from)
    names: tuple     # the names taken (empty for `import x`)
    line: int
    local: bool      # inside a function body
    is_from: bool    # an ImportFrom node


def modules(root):
    """{dotted module name: file path} of every module under root/ditto_jax."""
    out = {}
    base = os.path.join(root, PACKAGE)
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                parts = os.path.relpath(path, root)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                out[".".join(parts)] = path
    return out


def _is_package(name, mods):
    return any(m.startswith(name + ".") for m in mods)


def _resolve(module, level, source, mods):
    if not level:
        return module
    base = source.split(".")
    if not _is_package(source, mods):
        base = base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def edges(root):
    """Every import of a ditto_jax module by a ditto_jax module."""
    mods = modules(root)
    out = []
    for source, path in mods.items():
        tree = ast.parse(open(path).read(), path)
        local = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        local.add(id(inner))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        out.append(Edge(source, alias.name, (), node.lineno,
                                        id(node) in local, False))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(node.module, node.level, source, mods)
                if not target or target.split(".")[0] != PACKAGE:
                    continue
                if target == PACKAGE and all(a.name.startswith("__") for a in node.names):
                    continue  # `from ditto_jax import __version__`: the package's metadata
                taken = []
                for alias in node.names:   # `from pkg import submodule` imports the submodule
                    sub = f"{target}.{alias.name}"
                    if sub in mods:
                        out.append(Edge(source, sub, (), node.lineno, id(node) in local, True))
                    else:
                        taken.append(alias.name)
                if taken or not node.names:
                    out.append(Edge(source, target, tuple(taken), node.lineno,
                                    id(node) in local, True))
    return out


def local_from_imports(root):
    """The function-local `from ditto_jax... import` statements: (file, line) pairs."""
    return sorted({(e.source, e.line) for e in edges(root) if e.local and e.is_from})


def _ancestors(module):
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def cycles(root):
    """Import cycles between files: the strongly connected components with more than one
    module (Tarjan), each a sorted tuple, module-level and function-local imports alike.
    Importing `a.b.c` first runs the package `a.b`'s `__init__`, so that is an edge too
    (unless the importer sits inside that package, which is then already importing)."""
    mods = set(modules(root))
    graph = {m: set() for m in mods}
    for e in edges(root):
        for target in {e.target} | (_ancestors(e.target) - _ancestors(e.source) - {e.source}):
            if target in mods and target != e.source:
                graph[e.source].add(target)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(tuple(sorted(comp)))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(mods):
        if v not in index:
            visit(v)
    return sorted(out)


def floor(module):
    """The key of `module` in LAYERS: its folder below ditto_jax, or its own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward(root):
    """Imports into a higher layer: (source, target, line) triples. A module outside LAYERS
    is reported as its own violation (target None): every module must have a layer."""
    out = []
    for e in edges(root):
        s, t = floor(e.source), floor(e.target)
        if s not in LAYER_OF:
            out.append((e.source, None, e.line))
        elif t in LAYER_OF and LAYER_OF[t] > LAYER_OF[s]:
            out.append((e.source, e.target, e.line))
    return sorted(set(out), key=lambda x: (x[0], x[1] or "", x[2]))


def private_across(root):
    """Private names (`_x`) imported from another package: (source, target, name, line).
    Within one folder (e.g. pipeline/run.py from pipeline/run_eval.py) this is allowed."""
    out = []
    for e in edges(root):
        if floor(e.source) == floor(e.target):
            continue
        for n in e.names:
            if n.startswith("_") and not n.startswith("__"):
                out.append((e.source, e.target, n, e.line))
    return sorted(set(out))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p.add_argument("--root", default=here)
    p.add_argument("--list", action="store_true", help="list the function-local imports")
    args = p.parse_args(argv)
    local = local_from_imports(args.root)
    print(f"function-local `from {PACKAGE}` imports: {len(local)}")
    if args.list:
        for m, line in local:
            print(f"  {m}:{line}")
    found = cycles(args.root)
    print(f"import cycles: {len(found)}")
    for c in found:
        print("  " + " <-> ".join(c))
    up = upward(args.root)
    print(f"imports into a higher layer: {len(up)}")
    for s, t, line in up:
        print(f"  {s}:{line} -> {t or '(module has no layer)'}")
    priv = private_across(args.root)
    print(f"private names imported across packages: {len(priv)}")
    for s, t, n, line in priv:
        print(f"  {s}:{line} {t}.{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
