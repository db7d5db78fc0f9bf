"""Crash-safe state files: atomic JSON, tolerant JSONL, disk errors, the workdir lock.

Every JSON file a stage writes (config.json, eval/*.json, pipeline_config.json,
stage_seconds.json, ...) goes through `write_json_atomic`: a killed process or
a full disk leaves either the old file or the new one, never half of one.
Readers name the file when it is corrupt (`read_json`), and `read_jsonl`
drops a torn last line of an append-only log with a warning instead of
refusing the whole log.
"""
import contextlib
import errno
import json
import os
import re
import sys

from ditto_jax.errors import DittoError

_MISSING = object()


def warn(message):
    """One line on stderr, for problems ditto worked around."""
    print(f"ditto: warning: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ disk errors
def os_error_to_ditto(exc, path, action="writing"):
    """A DittoError for an OSError (or an error caused by one) while handling `path`."""
    err = _find_os_error(exc)
    if err is not None and err.errno == errno.ENOSPC:
        return DittoError(f"No space left on device while {action} {path}; free some space "
                          f"and re-run (what was already written is kept)", path=path)
    reason = err.strerror if err is not None and err.strerror else str(exc)
    return DittoError(f"Could not finish {action} {path}: {reason}", path=path)


# TensorStore (Orbax's writer) and TensorFlow report a full disk as their own error types
# (ValueError "RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']",
# tf.errors.ResourceExhaustedError); only their message says what happened.
_DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded|"
                        r"os_error_code='(?:28|122)'|\[Errno (?:28|122)\]")


def _find_os_error(exc):
    """The OSError behind `exc` (its cause chain), or an ENOSPC OSError standing for a
    library's full-disk error; None otherwise."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            return exc
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    if any(_DISK_FULL.search(str(e)) for e in chain):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def is_os_error(exc):
    return _find_os_error(exc) is not None


@contextlib.contextmanager
def disk_errors(path, action="writing"):
    """Turns an OSError (full disk, read-only filesystem, ...) into a DittoError."""
    try:
        yield
    except DittoError:
        raise
    except Exception as e:
        if not is_os_error(e):
            raise
        raise os_error_to_ditto(e, path, action) from None


# ------------------------------------------------------------------------- JSON
def write_json_atomic(path, obj, *, indent=2, default=None):
    """Writes `obj` as JSON to `path` via tmp + fsync + os.replace."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp{os.getpid()}"
    text = json.dumps(obj, indent=indent, default=default)
    try:
        os.makedirs(directory, exist_ok=True)
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(directory)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise os_error_to_ditto(e, path) from None
    return path


def write_json(path, obj):
    """A run's JSON record (`ditto run`'s files): atomic (tmp + fsync + replace, so a killed
    run never leaves half a file, and a full disk is named), numpy scalars as floats."""
    return write_json_atomic(path, obj, default=float)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_bytes(path, what):
    """The file's bytes, None if it does not exist; other OS errors name the file."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise os_error_to_ditto(e, path, "reading") from None


def read_json(path, *, what="JSON file", default=_MISSING, tolerate=False):
    """The parsed content of `path`; a DittoError naming the file if it is corrupt.

    With `default`, a missing file gives `default` instead of an error; with
    `tolerate=True` too, so does a corrupt one (for caches that are rebuilt),
    after a one-line warning naming the file.
    """
    data = _read_bytes(path, what)
    if data is None:
        if default is not _MISSING:
            return default
        raise DittoError(f"The {what} is missing", path=path)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        if tolerate and default is not _MISSING:
            warn(f"ignoring the {what} {path}: it is corrupt or was cut short ({e}); it "
                 f"will be rebuilt")
            return default
        raise DittoError(
            f"The {what} is corrupt or was cut short (not valid JSON: {e}); restore it, "
            f"or delete it to have ditto rebuild it", path=path,
            expected="a complete JSON document", got=f"{len(data)} bytes") from None


# ------------------------------------------------------------------------ JSONL
def read_jsonl(path, *, what="JSON-lines log", repair=False, default=_MISSING):
    """The records of a JSONL file.

    A torn last line (a process killed mid-write) is dropped with a warning;
    with `repair=True` it is also cut from the file. A corrupt line elsewhere
    is a DittoError naming the file and line.
    """
    data = _read_bytes(path, what)
    if data is None:
        if default is not _MISSING:
            return default
        raise DittoError(f"The {what} is missing", path=path)
    records, offset, good_end = [], 0, 0
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        end = offset + len(line) + (1 if i < len(lines) - 1 else 0)
        if line.strip():
            try:
                records.append(json.loads(line.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                if any(rest.strip() for rest in lines[i + 1:]):
                    raise DittoError(f"The {what} has a corrupt line {i + 1} ({e})", path=path,
                                     expected="one JSON object per line") from None
                warn(f"{path}: dropped a torn last line ({len(line)} bytes) left by an "
                     f"interrupted write")
                if repair:
                    with disk_errors(path), open(path, "r+b") as f:
                        f.truncate(good_end)
                return records
        offset = end
        good_end = end
    if repair and data and not data.endswith(b"\n"):
        # A complete record without its newline: add it so the next append is a new line.
        with disk_errors(path), open(path, "ab") as f:
            f.write(b"\n")
    return records


def append_jsonl(path, record):
    """Appends one JSON line; on failure the file is cut back to its old length."""
    line = (json.dumps(record) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise os_error_to_ditto(e, path) from None
    try:
        size = os.fstat(fd).st_size
        try:
            written = 0
            while written < len(line):
                written += os.write(fd, line[written:])
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # no torn line left behind
            raise os_error_to_ditto(e, path) from None
    finally:
        os.close(fd)


# ------------------------------------------------------------------ workdir lock
class WorkdirLock:
    """An exclusive advisory lock on WORKDIR/.lock (fcntl.flock), for one writer.

    The kernel drops the lock when its process dies, so a killed run never
    leaves a stale lock behind. The file holds the holder's PID for the message
    a second writer gets.
    """

    def __init__(self, workdir, command="ditto"):
        import fcntl
        self.workdir = os.path.abspath(workdir)
        self.path = os.path.join(self.workdir, ".lock")
        try:
            os.makedirs(self.workdir, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise os_error_to_ditto(e, self.path, "creating") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise os_error_to_ditto(e, self.path, "locking") from None
            raise DittoError(
                f"Another process ({holder}) is writing to this workdir; wait for it to "
                f"finish or stop it, or use a different --workdir", path=self.workdir,
                field="lock file .lock", expected="no other ditto process on this workdir",
                got=holder) from None
        self._fd = fd
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"PID {os.getpid()} ({command})\n".encode(), 0)

    def release(self):
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock

    __del__ = release

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd):
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "PID unknown"


def lock_workdir(workdir, command="ditto"):
    """Takes WORKDIR/.lock or raises a DittoError naming the PID that holds it."""
    return WorkdirLock(workdir, command)
