"""Loads ml_collections experiment configs: `path.py[:preset]` plus overrides.

Same convention as the flax examples and big_vision: a config file defines
`get_config(preset)`; overrides are `--config.section.key=value`.
"""
import ast
import importlib.util
import os

import ml_collections

from ditto_jax.errors import DittoError


def _parse_value(text, current, key):
    """Parses an override to the type of the field it replaces."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # a bare string such as `depth_to_space`
    if isinstance(current, str) and not isinstance(value, str):
        value = text  # a string field takes the text as written ("0,1,2", "1e-3")
    if isinstance(current, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise DittoError("Config override has the wrong type", field=f"config.{key}",
                             expected="true or false", got=text)
    elif isinstance(current, float) and isinstance(value, int):
        value = float(value)
    elif isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    elif current is not None and not isinstance(value, type(current)):
        raise DittoError("Config override has the wrong type", field=f"config.{key}",
                         expected=type(current).__name__, got=repr(text))
    return value


def load_python_file(path, function):
    """Imports the Python file `path` (a config or grid file) and checks it defines `function`."""
    if not os.path.isfile(path):
        raise DittoError("File not found", path=path,
                         expected=f"a Python file defining {function}(...)")
    module_spec = importlib.util.spec_from_file_location(
        f"ditto_{function}_{abs(hash(os.path.abspath(path)))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, function):
        raise DittoError(f"The file defines no {function}()", path=path)
    return module


def load_config(spec, overrides=()):
    """Loads `path.py[:preset]` and applies `key=value` overrides (dotted keys)."""
    path, _, preset = spec.partition(":")
    module = load_python_file(path, "get_config")
    try:
        config = module.get_config(preset) if preset else module.get_config()
    except (KeyError, ValueError) as e:
        raise DittoError("Unknown config preset", path=path, field="preset",
                         expected=getattr(module, "PRESETS", "a known preset"), got=preset) from e
    return apply_overrides(config, overrides)


def apply_overrides(config, overrides):
    config = ml_collections.ConfigDict(config)
    for item in overrides:
        item = item[len("--config."):] if item.startswith("--config.") else item
        if "=" not in item:
            raise DittoError("Config override must look like --config.KEY=VALUE", got=item)
        key, text = item.split("=", 1)
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            if part not in node:
                raise DittoError("Unknown config key", field=f"config.{key}",
                                 expected=f"one of {sorted(node.keys())}")
            node = node[part]
        if parts[-1] not in node:
            raise DittoError("Unknown config key", field=f"config.{key}",
                             expected=f"one of {sorted(node.keys())}")
        with node.ignore_type():
            node[parts[-1]] = _parse_value(text, node[parts[-1]], key)
    return config


def split_config_args(extra_args):
    """Separates `--config.x=y` overrides from other unparsed CLI arguments."""
    overrides, rest = [], []
    for arg in extra_args:
        (overrides if arg.startswith("--config.") else rest).append(arg)
    return overrides, rest


def config_overrides(extra_args, expected="--config.KEY=VALUE overrides"):
    """The `--config.x=y` overrides among unparsed CLI arguments; anything else is an error."""
    overrides, rest = split_config_args(extra_args or [])
    if rest:
        raise DittoError("Unrecognised arguments", got=" ".join(rest), expected=expected)
    return overrides


def refuse_conflicts(config, overrides, options):
    """An option given both as a flag and as --config.KEY, with different values, is refused
    (neither silently wins). `options`: (flag, flag value or None, config key) triples."""
    given = {item[len("--config."):].split("=", 1)[0] if item.startswith("--config.")
             else item.split("=", 1)[0] for item in overrides}
    for flag, value, key in options:
        if value is None or key not in given:
            continue
        current = _get(config, key)
        if str(current) != str(value):
            raise DittoError(f"{flag} and --config.{key} disagree; give only one of them",
                             field=f"--config.{key}", expected=f"{value}, as {flag} says",
                             got=current)


# ------------------------------------------------------------------ validation
# Checked when a config is loaded, before any data or checkpoint is read, so a typo costs
# seconds, not a training run. (field, allowed values) and (field, lower bound, strict).
# The methods' own fields (reward, latent, first_step, ...) are checked by each method's
# `resolve_config`, against the enums of the code that uses them.
_POLICY_CHOICES = {
    "expert_selection": ("first", "top"),
    "eval_protocol": ("ditto", "machado"),
}
_POLICY_BOUNDS = {
    "lr": (0, True), "disc_lr": (0, True), "eps": (0, True), "clip": (0, True),
    "horizon": (1, False), "batch_size": (1, False), "bc_batch_size": (1, False),
    "steps": (0, False), "log_every": (1, False), "save_every": (1, False),
    "target_every": (1, False), "gamma": (0, False), "lam": (0, False),
    "entropy": (0, False), "dbc_entropy": (0, False), "expert_episodes": (0, False),
    "heldout_episodes": (0, False), "eval_every": (0, False), "eval_episodes": (1, False),
    "eval_envs": (1, False), "eval_max_steps": (1, False), "bc_init_steps": (0, False),
    "critic_warmup_steps": (0, False), "bc_frame_stack": (1, False),
    "probe_every": (0, False), "probe_batch": (1, False), "drift_length": (1, False),
}
_WM_CHOICES = {
    "model.decoder": ("conv_transpose", "upsample", "depth_to_space"),
    "model.latent": ("sample", "probs"),
    "model.conv_impl": ("auto", "matmul", "lax"),
    "loss.recon": ("mse", "object_weighted", "motion_weighted", "object_motion"),
    "optim.name": ("adam", "adamw"),
    "train.compute_dtype": ("auto", "float32", "bfloat16"),
    "loss.image_scale": ("none", "authors"),
}
_WM_BOUNDS = {
    "optim.lr": (0, True), "optim.eps": (0, True), "optim.clip": (0, True),
    "loss.beta": (0, False), "loss.image_weight": (0, True), "train.batch_size": (1, False),
    "train.seq_len": (2, False), "train.steps": (0, False), "train.log_every": (1, False),
    "train.save_every": (1, False), "model.deter": (1, False), "model.stoch": (1, False),
    "model.classes": (1, False),
}


def _get(config, dotted):
    node = config
    for part in dotted.split("."):
        if part not in node:
            return None
        node = node[part]
    return node


def _check(config, choices, bounds, prefix):
    for key, allowed in choices.items():
        value = _get(config, key)
        if value is not None and value not in allowed:
            raise DittoError("Unknown config value", field=f"{prefix}{key}",
                             expected=" | ".join(allowed), got=value)
    for key, (low, strict) in bounds.items():
        value = _get(config, key)
        if value is None or isinstance(value, bool):
            continue
        if (value <= low) if strict else (value < low):
            raise DittoError("Config value out of range", field=f"{prefix}{key}",
                             expected=f"{'>' if strict else '>='} {low}", got=value)


def validate_policy_config(config, prefix="config."):
    from ditto_jax import methods  # the registry: built-in and user-registered methods
    _check(config, dict(_POLICY_CHOICES, method=methods.names()), _POLICY_BOUNDS, prefix)
    if _get(config, "gamma") is not None and not 0 <= config.gamma <= 1:
        raise DittoError("Config value out of range", field=f"{prefix}gamma",
                         expected="in [0, 1]", got=config.gamma)
    return config


def validate_wm_config(config, prefix="config."):
    _check(config, _WM_CHOICES, _WM_BOUNDS, prefix)
    return config


def validate_pipeline_config(config):
    """The whole `ditto run` config, including the embedded wm and policy configs."""
    validate_wm_config(config.wm, "config.wm.")
    validate_policy_config(config.policy, "config.policy.")
    _check(config, {"eval.protocol": ("ditto", "machado"), "data.protocol": ("ditto", "machado"),
                    "data.source": ("scripted", "rlu"), "eval.expert": ("live", "demos")},
           {"eval.episodes": (1, False), "eval.envs": (1, False), "eval.max_steps": (1, False),
            "data.max_steps": (1, False), "data.size": (16, False)}, "config.")
    return config
