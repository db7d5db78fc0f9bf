"""User-facing errors.

Anything the user can fix (a wrong path, a bad dataset, an unknown game) raises
`DittoError`. The CLI prints its message as one paragraph and exits non-zero,
without a traceback.
"""
import contextlib
import signal
import threading


class DittoError(Exception):
    """An error caused by input the user can fix; printed without a traceback."""

    def __init__(self, message, *, path=None, field=None, expected=None, got=None):
        parts = [message.rstrip(".") + "."]
        if path is not None:
            parts.append(f"File: {path}.")
        if field is not None:
            parts.append(f"Field: {field}.")
        if expected is not None:
            parts.append(f"Expected: {expected}.")
        if got is not None:
            parts.append(f"Got: {got}.")
        super().__init__(" ".join(parts))
        self.path, self.field, self.expected, self.got = path, field, expected, got


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the `ditto` command's handler: the cleanup
    that follows Ctrl-C (checkpoints finished, locks released, sweep jobs stopped) runs
    for it too, then the command says what was kept and exits 143 (128 + SIGTERM)."""


@contextlib.contextmanager
def interruptions_held():
    """Holds Ctrl-C and SIGTERM until the block ends, then delivers the first one.

    For work that must not stop half-way in the main thread: an Orbax save interrupted
    inside `CheckpointManager.save` leaves its writer threads behind a closed event loop,
    so the step is lost and each thread prints a traceback at exit. Held, the save is
    handed to its writer threads first, and the command's cleanup then waits for it.
    Outside the main thread (where handlers cannot be set) the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    kinds = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in kinds}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if held:
            signal.raise_signal(held[0])  # runs the restored handler here
