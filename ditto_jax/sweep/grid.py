"""Grid files for `ditto sweep`: finding and loading them, and helpers they use.

`load_grid("paper:games=breakout")` finds the grid file (a path, or a name looked up in
experiments/grids/ here, then in the installed grids) and calls its `get_grid(variant)`;
the returned dict is described in ditto_jax/sweep/command.py. Grid files read their variant
string with `parse_variant` and `seeds_list`; `rlu_ablation_grid` builds the RL Unplugged
ablation grids (horizon, reward).
"""
import os

from ditto_jax.core.config import load_python_file
from ditto_jax.core import resources
from ditto_jax.errors import DittoError

GRID_DIRS = ("experiments/grids", resources.grids_dir())  # cwd, then the installed grids


def parse_variant(variant, **defaults):
    """`key=value,key=a+b` -> defaults updated; `+` separates list items.

    Types follow the defaults: int, str, tuple (of the type of its first item). An int
    default accepts a list too (e.g. seeds=3 or seeds=0+4).
    """
    out = dict(defaults)
    for item in filter(None, (s.strip() for s in (variant or "").split(","))):
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in defaults:
            raise DittoError("Unknown grid variant setting", field=key or item,
                             expected=f"KEY=VALUE[,KEY=VALUE] with KEY in {sorted(defaults)}",
                             got=item)
        default = defaults[key]
        parts = [p for p in text.split("+") if p != ""]
        try:
            if isinstance(default, (tuple, list)) or (isinstance(default, int) and len(parts) > 1):
                kind = type(default[0]) if isinstance(default, (tuple, list)) and default else int
                value = tuple(kind(p) for p in parts)
            elif isinstance(default, bool):
                value = text.lower() in ("1", "true", "yes")
            else:
                value = type(default)(text)
        except ValueError as e:
            raise DittoError("Bad grid variant value", field=key,
                             expected=type(default).__name__, got=text) from e
        out[key] = value
    return out


def rlu_ablation_grid(variant, *, axis, values, config_key, name):
    """A DITTO-only ablation on RL Unplugged Breakout (horizon, reward grids): one config
    field varied beside game x seed; data and world models as in the paper grid."""
    v = parse_variant(variant, **{axis: values}, games=("breakout",), seeds=3, ne=1000,
                      rlu_run=0, expert_checkpoints="45-49", wm_checkpoints="0-49",
                      wm_episodes=1000, expert_episodes=1000, preset="paper")
    return dict(
        config=f"experiments/configs/pipeline.py:{v['preset']}",
        overrides={
            "methods": "ditto",
            "expert_episodes": v["ne"],
            "data.source": "rlu",
            "data.rlu_name": "rlu_atari_checkpoints_ordered",
            "data.expert_checkpoints": v["expert_checkpoints"],
            "data.expert_episodes": v["expert_episodes"],
            "data.wm_checkpoints": v["wm_checkpoints"],
            "data.wm_episodes": v["wm_episodes"],
        },
        axes={
            "game": list(v["games"]),
            "seed": [{"seed": s, "data.rlu_run": v["rlu_run"] or s % 5 + 1}
                     for s in seeds_list(v["seeds"])],
            config_key: list(v[axis]),
        },
        share_by=("game", "seed"),
        name=name,
    )


def seeds_list(seeds):
    """An int N means seeds 0..N-1; a tuple lists them."""
    return tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)


def resolve_grid_path(spec):
    """`path.py[:variant]` or a grid name (`paper`) -> (file, variant)."""
    path, _, variant = spec.partition(":")
    candidates = [path] if path.endswith(".py") or os.sep in path else []
    candidates += [os.path.join(d, path if path.endswith(".py") else path + ".py")
                   for d in GRID_DIRS]
    for c in candidates:
        if os.path.isfile(c):
            return c, variant
    known = sorted({f[:-3] for d in GRID_DIRS if os.path.isdir(d)
                    for f in os.listdir(d) if f.endswith(".py") and not f.startswith("_")})
    raise DittoError("Grid file not found", path=path,
                     expected=f"a grid file path.py[:variant] or one of {known}")


def load_grid(spec):
    """Loads a grid file and calls its get_grid(variant); returns (grid, path, variant)."""
    path, variant = resolve_grid_path(spec)
    module = load_python_file(path, "get_grid")
    try:
        grid = module.get_grid(variant)
    except DittoError:
        raise
    except (KeyError, ValueError, TypeError) as e:
        raise DittoError(f"Bad grid variant ({e})", path=path, field="variant",
                         got=repr(variant)) from e
    for key in ("config", "axes"):
        if key not in grid:
            raise DittoError("Grid description lacks a field", path=path, field=key)
    return dict(grid), path, variant
