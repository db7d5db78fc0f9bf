"""What every command's options share: the argparse number types (bad numbers are refused
by argparse, before anything runs) and the quieting of TensorFlow / absl start-up logs. Only
the standard library: `ditto --help` imports this."""
import argparse
import logging
import os


def _number(kind, text, low, inclusive, what):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low or (not inclusive and value == low):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text):
    """argparse type: an integer >= 1."""
    return _number(int, text, 0, False, "a positive integer")


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    return _number(int, text, 0, True, "a non-negative integer")


def probability(text):
    """argparse type: a number in [0, 1]."""
    value = _number(float, text, 0.0, True, "a number in [0, 1]")
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def quiet_logs():
    """Silences TensorFlow's C++ start-up chatter and absl/TFDS/Orbax INFO lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")   # its note ignores the level above
    logging.getLogger("absl").setLevel(logging.ERROR)
