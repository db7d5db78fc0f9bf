"""User-facing errors.

Anything the user can fix (a wrong path, a bad dataset, an unknown game) raises
`DittoError`. The CLI prints its message as one paragraph and exits non-zero,
without a traceback.
"""


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
