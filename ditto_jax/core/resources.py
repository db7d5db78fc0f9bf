"""Where the experiment configs and grids (`experiments/configs`, `experiments/grids`) are,
independent of the current directory and of how ditto_jax was installed.

- A source checkout or editable install: `experiments/` next to the `ditto_jax` package.
- `pip install .` (not editable): setup.py installs them as data files under
  `<prefix>/share/ditto_jax/experiments/`; found through the distribution's file list,
  else under sys.prefix / the user base.

`resolve_config_spec` is an argparse type for `--config PATH[:PRESET]`: a relative path
that does not exist from the current directory, such as the documented
`experiments/configs/wm.py:paper`, is looked up in the installed experiments folder.
"""
import functools
import os
import sys

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SHARE = os.path.join("share", "ditto_jax", "experiments")


def _has_experiments(path):
    return os.path.isdir(os.path.join(path, "configs"))


@functools.lru_cache(maxsize=None)
def experiments_dir() -> str:
    """The `experiments` folder (holding configs/ and grids/)."""
    candidates = [os.path.join(_PACKAGE_PARENT, "experiments")]
    try:
        from importlib import metadata
        for f in metadata.distribution("ditto_jax").files or ():
            parts = f.parts
            if len(parts) >= 5 and "/".join(parts[-5:-2]) == "share/ditto_jax/experiments":
                candidates.append(os.path.dirname(os.path.dirname(os.fspath(f.locate()))))
                break
    except Exception:  # not installed as a distribution, or odd metadata  # noqa: BLE001
        pass
    import site
    bases = [sys.prefix, getattr(site, "USER_BASE", None) or site.getuserbase(),
             sys.base_prefix]
    candidates += [os.path.join(b, _SHARE) for b in bases if b]
    for path in candidates:
        if _has_experiments(path):
            return os.path.abspath(path)
    return os.path.join(_PACKAGE_PARENT, "experiments")  # messages then name this path


def config_path(name: str) -> str:
    """Absolute path of `experiments/configs/NAME`."""
    return os.path.join(experiments_dir(), "configs", name)


def grids_dir() -> str:
    return os.path.join(experiments_dir(), "grids")


def resolve_path(path: str) -> str:
    """`path` if it exists (or is absolute); else, for `experiments/...` or a bare
    `configs/...`/`grids/...` path, the file in the installed experiments folder."""
    if not path or os.path.isabs(path) or os.path.exists(path):
        return path
    norm = os.path.normpath(path).replace(os.sep, "/")
    for prefix in ("experiments/", ""):
        if norm.startswith(prefix) and norm[len(prefix):].split("/")[0] in ("configs",
                                                                             "grids"):
            candidate = os.path.join(experiments_dir(), norm[len(prefix):])
            if os.path.exists(candidate):
                return candidate
    return path


def resolve_config_spec(spec: str) -> str:
    """argparse type for `PATH[:PRESET]`: resolves PATH with `resolve_path`."""
    if not spec:
        return spec
    path, sep, preset = str(spec).partition(":")
    return resolve_path(path) + sep + preset
