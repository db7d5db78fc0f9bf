"""The single `ditto` command line. Every entry point is a subcommand here.

Subcommand modules are imported lazily so `ditto --help` stays fast and a
missing optional dependency only affects the command that needs it.
"""
import argparse
import importlib
import os
import sys

from ditto_jax.errors import DittoError

# name -> (module, one-line help). Each module defines `add_arguments(parser)`
# and `main(args)`.
COMMANDS = {
    "record": ("ditto_jax.data.recorder", "record episodes of a policy as an RLDS dataset"),
    "info": ("ditto_jax.data.info", "summarise an RLDS dataset (local directory or TFDS name)"),
    "train-wm": ("ditto_jax.stages.train_wm", "train the world model (stage 1)"),
    "train-policy": ("ditto_jax.stages.train_policy",
                     "train an imitation policy: ditto, dbc, dgail or bc (stage 2)"),
    "eval": ("ditto_jax.stages.evaluate", "evaluate a trained policy in the real game"),
    "run": ("ditto_jax.stages.run",
            "the whole pipeline: data, world model, all methods, evaluation, results"),
    "report": ("ditto_jax.report", "tables, IQM and plots for a sweep directory"),
    "sweep": ("ditto_jax.sweep",
              "run a grid of experiments (`ditto run` jobs), locally or on SLURM"),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ditto",
        description="DITTO: offline imitation learning with world models (JAX/Flax).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv=None):
    # TF prints pages of start-up chatter; keep the console readable.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax/TFDS info chatter
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args._module, "ACCEPTS_EXTRA_ARGS", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.extra_args = unknown
    try:
        return args._module.main(args) or 0
    except DittoError as e:
        print(f"ditto {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ditto {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
