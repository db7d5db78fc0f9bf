"""A fallback for `ml_collections.ConfigDict` on machines without ml_collections.

Only for code that must run where ml_collections is not installed (benchmarks/device.py
on a bare accelerator host with just jax, flax, optax, orbax, chex and numpy):
`install()` registers this module as `ml_collections` when the real package cannot be
imported, and does nothing otherwise. Everything else in ditto_jax uses ml_collections.

Covers what the experiment configs and ditto_jax use: attribute and item access, nested
dicts turned into ConfigDicts, update(), get(), keys()/items(), `in`, to_dict(),
copy_and_resolve_references(), and the context managers ignore_type() / unlocked()
(no-ops: this shim neither type-checks nor locks).
"""
import contextlib
import copy
import sys


class ConfigDict:
    """Attribute-access dict; nested dicts become ConfigDicts. No type safety, no locking."""

    def __init__(self, initial=None, **kwargs):
        object.__setattr__(self, "_fields", {})
        for source in (initial or {}, kwargs):
            items = source.items() if hasattr(source, "items") else dict(source).items()
            for k, v in items:
                self[k] = v

    # mapping -------------------------------------------------------------
    def __setitem__(self, key, value):
        if isinstance(value, dict):
            value = ConfigDict(value)
        elif isinstance(value, ConfigDict):
            pass
        self._fields[key] = value

    def __getitem__(self, key):
        return self._fields[key]

    def __delitem__(self, key):
        del self._fields[key]

    def __contains__(self, key):
        return key in self._fields

    def __iter__(self):
        return iter(self._fields)

    def __len__(self):
        return len(self._fields)

    def keys(self):
        return self._fields.keys()

    def values(self):
        return self._fields.values()

    def items(self):
        return self._fields.items()

    def get(self, key, default=None):
        return self._fields.get(key, default)

    def update(self, *others, **kwargs):
        for other in others + (kwargs,):
            for k, v in (other.items() if hasattr(other, "items") else dict(other).items()):
                if isinstance(v, (dict, ConfigDict)) and isinstance(self._fields.get(k),
                                                                    ConfigDict):
                    self._fields[k].update(v)
                else:
                    self[k] = v

    # attributes ----------------------------------------------------------
    def __getattr__(self, name):
        fields = object.__getattribute__(self, "_fields")
        if name in fields:
            return fields[name]
        raise AttributeError(f"ConfigDict has no field {name!r}")

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]

    # ml_collections API --------------------------------------------------
    def to_dict(self):
        return {k: v.to_dict() if isinstance(v, ConfigDict) else copy.deepcopy(v)
                for k, v in self._fields.items()}

    def copy_and_resolve_references(self):
        return ConfigDict(self.to_dict())

    def ignore_type(self):
        return contextlib.nullcontext()

    def unlocked(self):
        return contextlib.nullcontext()

    def lock(self):
        return self

    def __eq__(self, other):
        if isinstance(other, ConfigDict):
            return self.to_dict() == other.to_dict()
        return NotImplemented

    def __repr__(self):
        return f"ConfigDict({self.to_dict()!r})"

    def __deepcopy__(self, memo):
        return ConfigDict(self.to_dict())


FrozenConfigDict = ConfigDict


def install():
    """Registers this module as `ml_collections` if the real one cannot be imported.

    Returns True when the shim was installed. A module blocked with
    `sys.modules["ml_collections"] = None` counts as missing.
    """
    try:
        import ml_collections  # noqa: F401
        return False
    except ImportError:
        sys.modules["ml_collections"] = sys.modules[__name__]
        return True
