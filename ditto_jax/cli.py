"""The single `ditto` command line. Every entry point is a subcommand here.

Only the chosen subcommand's module is imported (to add its options), so `ditto --help`
starts without JAX or TensorFlow, and a missing optional dependency only affects the
command that needs it. Every option's help shows its default.
"""
import argparse
import glob
import importlib
import os
import signal
import sys
import threading

from ditto_jax.core.args import quiet_logs
from ditto_jax.errors import DittoError, Terminated
from ditto_jax.core.provenance import ditto_version

# name -> (module, one-line help). Each module defines `add_arguments(parser)`
# and `main(args)`.
COMMANDS = {
    "record": ("ditto_jax.stages.record", "record episodes of a policy as an RLDS dataset"),
    "info": ("ditto_jax.stages.info",
             "summarise an RLDS dataset (local directory or TFDS name)"),
    "train-wm": ("ditto_jax.stages.train_wm", "train the world model (stage 1)"),
    "train-policy": ("ditto_jax.stages.train_policy",
                     "train an imitation policy: ditto, dbc, dgail or bc (stage 2)"),
    "eval": ("ditto_jax.stages.evaluate", "evaluate a trained policy in the real game"),
    "run": ("ditto_jax.pipeline.run",
            "the whole pipeline: data, world model, all methods, evaluation, results"),
    "report": ("ditto_jax.report.command", "tables, IQM and plots for a sweep directory"),
    "sweep": ("ditto_jax.sweep.command",
              "run a grid of experiments (`ditto run` jobs), locally or on SLURM"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' after an option's help, except where there is nothing to
    show (None, a flag's False) or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or "%(default)" in text
                or "default" in text.lower() or not action.option_strings
                or action.default == []):
            return text
        return f"{text} (default: %(default)s)"


def _command_in(argv):
    """The subcommand named in argv (its first non-option word), or None."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(commands=()):
    """The `ditto` parser; only the subcommands in `commands` get their options (and
    their modules imported). `commands=None`: all of them."""
    parser = argparse.ArgumentParser(
        prog="ditto",
        description="DITTO: offline imitation learning with world models (JAX/Flax).",
        epilog="`ditto COMMAND --help` lists a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {ditto_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=HelpFormatter)
        if commands is None or name in commands:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def _terminate(signum, frame):
    raise Terminated()


def _what_was_kept(args):
    """One clause for the SIGTERM message: where the work is and how to go on."""
    where = getattr(args, "workdir", None) or getattr(args, "out", None)
    if not where:
        return "nothing already written was lost"
    where = os.path.abspath(where)
    steps = [p for pattern in ("checkpoints/*", "*/checkpoints/*", "*/*/checkpoints/*")
             for p in glob.glob(os.path.join(where, pattern)) if os.path.basename(p).isdigit()]
    newest = max(steps, key=os.path.getmtime, default=None)
    kept = f"what was written is kept in {where}"
    if newest:
        kept += f" (newest checkpoint: {newest})"
    again = ("run the same command with --resume to continue" if args.command == "record"
             else "run the same command again to resume")
    return f"{kept}; {again}"


def _exit_past_stuck_writers(code):
    """Exits now when a checkpoint save passed its deadline: Python's normal exit joins
    every non-daemon thread, and Orbax's stuck writer threads would never end."""
    # never import jax just for this
    checkpoint = sys.modules.get("ditto_jax.engine.checkpoint")
    if checkpoint is not None and checkpoint.abandoned_saves():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv=None):
    quiet_logs()  # before any subcommand module can import TensorFlow
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    command = _command_in(argv)
    parser = build_parser([command] if command else [])
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args._module, "ACCEPTS_EXTRA_ARGS", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.extra_args = unknown
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return args._module.main(args) or 0
    except DittoError as e:
        print(f"ditto {args.command}: error: {e}", file=sys.stderr)
        _exit_past_stuck_writers(2)
        return 2
    except Terminated:
        print(f"ditto {args.command}: terminated (SIGTERM); {_what_was_kept(args)}",
              file=sys.stderr, flush=True)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"ditto {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
