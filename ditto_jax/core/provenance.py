"""What ran: config fingerprints of stages, and the provenance of every result.

A stage's output (a dataset, a world model, a policy) is stamped with the config fields
that shape it (`STAMP` = `ditto_stage.json` inside the output directory). `ditto run`
compares the stamp with the fields it is about to use, and moves a stage trained under
other fields aside before retraining it, so a result is never labelled with a config that
did not produce it.

`provenance()` records the code (git SHA, dirty flag), the package versions, the devices
and the seeds next to every result.
"""
import hashlib
import json
import os
import platform
import subprocess
import sys
from ditto_jax.core.io import write_json_atomic

STAMP = "ditto_stage.json"
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy",
             "tensorflow-datasets", "gymnasium", "ale-py", "ml_collections",
             "rliable")  # rliable defines the IQM and the bootstrap CIs of every table
# TensorFlow ships under several distribution names, all providing `tensorflow/`; the
# first one installed is recorded as "tensorflow" (and its name as "tensorflow_dist").
_TENSORFLOW = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel",
               "tf-nightly", "tf-nightly-cpu")
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _plain(x):
    """JSON-able, order-stable form of a config value (tuples as lists, dicts sorted)."""
    if hasattr(x, "to_dict"):
        x = x.to_dict()
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in sorted(x.items())}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, float) and x.is_integer():
        return x  # 1.0 and 1 hash alike only if written alike; keep floats as floats
    return x


def config_hash(fields):
    """A short, stable hash of a config (dict or ConfigDict)."""
    text = json.dumps(_plain(fields), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def flatten(d, prefix=""):
    out = {}
    for k, v in _plain(d).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def changed_fields(old, new):
    """Dotted names of the fields that differ between two field dicts, with both values."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k, "<absent>"), b.get(k, "<absent>"))
            for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")}


def read_stamp(directory):
    path = os.path.join(directory, STAMP)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"fields": {"<unreadable stamp>": path}, "fingerprint": None}


def write_stamp(directory, stage, fields):
    os.makedirs(directory, exist_ok=True)
    stamp = {"stage": stage, "fingerprint": config_hash(fields), "fields": _plain(fields)}
    write_json_atomic(os.path.join(directory, STAMP), stamp, default=str)
    return stamp


def stale_fields(directory, fields, *, legacy=None):
    """{} when `directory` was produced with `fields`; else the differing fields.

    A directory without a stamp (written before stamps existed) is judged by `legacy`, a
    callable returning the fields it can recover from the directory's own metadata, or
    accepted when there is none.
    """
    stamp = read_stamp(directory)
    if stamp is None:
        old = legacy() if legacy else None
        if old is None:
            return {}
        return changed_fields(old, fields)
    # Fields the stamp does not know were added by a newer version of the code (with their
    # defaults): they are not compared, so upgrading does not invalidate finished stages.
    return {k: v for k, v in changed_fields(stamp.get("fields", {}), fields).items()
            if v[0] != "<absent>"}


def move_aside(directory, tag):
    """Renames `directory` to `directory.stale-TAG[-n]` and returns the new path."""
    base = f"{directory}.stale-{tag}"
    target, n = base, 1
    while os.path.exists(target):
        n += 1
        target = f"{base}-{n}"
    os.replace(directory, target)
    return target


def describe_changes(changes, limit=6):
    items = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()]
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


# --------------------------------------------------------------------- provenance
def _git(*args):
    try:
        out = subprocess.run(["git", "-C", _REPO, *args], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info():
    sha = _git("rev-parse", "HEAD")
    if sha is None:
        return {"sha": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(status)}


def ditto_version():
    """ditto_jax's own version: the installed distribution's, else the source tree's."""
    from importlib import metadata
    try:
        return metadata.version("ditto_jax")
    except metadata.PackageNotFoundError:
        from ditto_jax import __version__
        return __version__


def package_versions():
    from importlib import metadata
    out = {"ditto_jax": ditto_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    for name in _TENSORFLOW:
        try:
            out["tensorflow"], out["tensorflow_dist"] = metadata.version(name), name
            break
        except metadata.PackageNotFoundError:
            continue
    return out


def device_info():
    if "jax" not in sys.modules:  # never import jax just to describe it
        return {"backend": None, "device_kind": None, "device_count": None}
    import jax
    devices = jax.devices()
    return {"backend": jax.default_backend(), "device_kind": devices[0].device_kind,
            "device_count": len(devices), "process_count": jax.process_count()}


def provenance(config=None, *, seeds=None):
    """Code, packages, devices, config hash and seeds: attached to every result."""
    return {
        "git": git_info(), "packages": package_versions(), "device": device_info(),
        "python": platform.python_version(),
        "config_hash": config_hash(config) if config is not None else None,
        "seeds": list(seeds) if seeds is not None else None,
    }
