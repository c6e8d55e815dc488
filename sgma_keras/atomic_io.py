"""Crash-safe file writing: write beside the target, fsync, rename over it.

A crash or kill (even `kill -9`) at any moment leaves either the old file or
the new one, never a truncated one, because `os.replace` within one folder is
atomic on POSIX. Every results, config, checkpoint and dataset file of
sgma_keras is written through this module.

A write that fails (a full disk, an I/O error, a read-only file system, a file
size limit) raises an `OSError` whose `filename` is the target path and whose
text is the system's one-line reason: the caller can report it as one line
naming the file, and the previous file is left as it was.

Example:

```python
write_json_atomic("run/results.json", {"zsl_top1": np.float32(0.71)})
atomic_save("run/best.keras", model.save)  # writers that take a path
```
"""

import contextlib
import json
import math
import os
import uuid

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: no file locks
    fcntl = None

__all__ = [
    "atomic_save",
    "atomic_write",
    "exclusive_lock",
    "json_ready",
    "named_os_error",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def _temporary_sibling(path):
    """A fresh hidden name in `path`'s folder that still ends with `path`'s
    name, so writers that check the extension (`model.save`: `.keras`,
    `save_weights`: `.weights.h5`) accept it."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".tmp-{uuid.uuid4().hex[:8]}-{name}")


def _make_folder(path):
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise OSError(
            e.errno, f"Cannot write {os.fspath(path)!r}: cannot create folder {folder!r} ({e.strerror})"
        ) from e
    return folder


def _fsync_folder(folder):
    """Makes the rename itself durable (POSIX); best effort elsewhere."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def named_os_error(error, path):
    """`error` (an OSError) as one naming `path`, with the system's short reason.

    Writers that fail inside a file object (`zipfile`, `csv`, h5py) raise an OSError
    without a file name, or with a temporary name and a multi-line text.
    """
    code = error.errno
    reason = os.strerror(code) if code else (error.strerror or str(error))
    return OSError(code, " ".join(str(reason).split()), os.fspath(path))


@contextlib.contextmanager
def _naming_failures(path):
    """Re-raises an OSError inside the block as `named_os_error(error, path)`."""
    try:
        yield
    except OSError as error:
        if error.filename == os.fspath(path) and error.errno:
            raise
        raise named_os_error(error, path) from error


def atomic_save(path, save_fn):
    """Runs `save_fn(temporary_path)`, then renames the result onto `path`.

    For writers that take a path rather than a file object
    (`model.save`, `model.save_weights`, `scipy.io.savemat`). The temporary
    file sits in the same folder and ends with the same name.
    """
    path = os.fspath(path)
    folder = _make_folder(path)
    tmp = _temporary_sibling(path)
    try:
        with _naming_failures(path):
            save_fn(tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_folder(folder)
    return path


def atomic_write(path, write_fn, binary=False, fsync=True):
    """Opens a temporary sibling of `path`, runs `write_fn(file)`, renames it.

    Text files are UTF-8 with newlines written as given. A failure in
    `write_fn` leaves the previous `path` (if any) untouched and no
    temporary file behind; an unwritable folder raises an `OSError` that
    names `path`. `fsync=False` skips the flush to disk (still never a
    truncated file after a crash of the process, but not after a power
    loss): for the thousands of images of a generated dataset, whose
    completion a marker file records.
    """
    path = os.fspath(path)
    folder = _make_folder(path)
    tmp = _temporary_sibling(path)
    try:
        # os.open with 0o666 lets the umask set the permissions, as for a
        # plain open() (tempfile.mkstemp would make the result private).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise OSError(
            e.errno, f"Cannot write {path!r}: cannot create a file in folder {folder!r} ({e.strerror})"
        ) from e
    try:
        text_args = {} if binary else {"encoding": "utf-8", "newline": ""}
        with _naming_failures(path):
            # The file is closed (its last buffer written) inside: a full disk shows
            # at the close as often as at a write.
            with os.fdopen(fd, "wb" if binary else "w", **text_args) as handle:
                write_fn(handle)
                if fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    if fsync:
        _fsync_folder(folder)
    return path


def write_bytes_atomic(path, data, fsync=True):
    """Writes `data` (bytes) to `path` atomically (see `atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(data), binary=True, fsync=fsync)


def write_text_atomic(path, text):
    """Writes `text` (str) to `path` atomically, UTF-8."""
    return atomic_write(path, lambda handle: handle.write(text))


@contextlib.contextmanager
def exclusive_lock(path, waiting=None):
    """Holds an OS lock (`flock`) on the file `path` (created) for the `with` block.

    For writers that build a shared folder (a dataset cache) that two processes may
    start at once: the second waits until the first is done, then finds its result.
    The lock belongs to the open file, so the kernel drops it when its holder ends in
    any way (`kill -9` included). `waiting()` is called first if another process holds
    the lock. Without `fcntl` (not POSIX), where the lock file cannot be made (a
    read-only folder) or locks are not supported (some NFS setups) the block runs
    unlocked.
    """
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by another process: wait for it
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)  # a signal handler's exception ends the wait
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def json_ready(obj):
    """NumPy values to Python ones; NaN / inf to None (strict JSON); keys to str."""
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_json_atomic(path, obj, indent=2, sort_keys=False):
    """Writes `obj` as strict JSON to `path` atomically.

    NumPy scalars and arrays are converted and non-finite floats become
    `null` (`json_ready`). The text is made before any file is touched, so
    an unserialisable `obj` raises `TypeError` and changes nothing.
    """
    text = json.dumps(json_ready(obj), indent=indent, allow_nan=False, sort_keys=sort_keys)
    return write_text_atomic(path, text + "\n")
