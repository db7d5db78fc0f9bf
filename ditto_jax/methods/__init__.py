"""Imitation methods as objects behind one registry (acme's one-package-per-agent idea).

Each method owns its config check, train state, `init`, a pure `train_step`, its batch
sampling (on device) and its acting policy. Stage drivers, reports and sweeps only look
methods up here, so adding a method is one `register(...)` call:

    from ditto_jax import methods
    methods.register(MyMethod())          # a `methods.Method` subclass
    # then: ditto train-policy --method my_method ...   (or train_policy(...) in Python)

Built in: ditto, ditto_bcinit, ditto_bctr (methods/trust_region.py), dgail (DITTO's actor-critic with a discriminator reward
plugged in), dbc and bc (pixel behaviour cloning).
"""
from ditto_jax.errors import DittoError
from ditto_jax.methods.base import Context, Method, WindowTable  # noqa: F401

_REGISTRY = {}
_BUILTINS_LOADED = False


def _load_builtins():
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        from ditto_jax.methods import cloning, imagination, trust_region
        for m in (imagination.Ditto(), imagination.DittoBCInit(),
                  trust_region.DittoBCTrustRegion(), imagination.DGail(),
                  cloning.DBC(), cloning.PixelBC()):
            _REGISTRY.setdefault(m.name, m)


def register(method, *, replace=False):
    """Adds a `Method` instance under `method.name`; returns it."""
    _load_builtins()
    if not isinstance(method, Method):
        raise TypeError(f"expected a ditto_jax.methods.Method, got {type(method).__name__}")
    if method.name in _REGISTRY and not replace:
        raise ValueError(f"method {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def unregister(name):
    _REGISTRY.pop(name, None)


def get(name):
    """The registered method `name`; a DittoError naming the choices otherwise."""
    _load_builtins()
    if name not in _REGISTRY:
        raise DittoError("Unknown imitation method", field="method",
                         expected=", ".join(names()), got=name)
    return _REGISTRY[name]


def names():
    """Registered method names, in report order."""
    _load_builtins()
    return tuple(m.name for m in sorted(_REGISTRY.values(), key=lambda m: (m.order, m.name)))


def label(name):
    """The display name of a method (its name if it is not registered)."""
    _load_builtins()
    m = _REGISTRY.get(name)
    return m.label if m is not None else name
