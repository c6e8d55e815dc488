"""Crash-safe file writing: write beside the target, fsync, rename over it.

A crash or kill (even `kill -9`) at any moment leaves either the old file or
the new one, never a truncated one, because `os.replace` within one folder is
atomic on POSIX. Every results, config, checkpoint and dataset file of
sgma_keras is written through this module.

Example:

```python
write_json_atomic("run/results.json", {"zsl_top1": np.float32(0.71)})
atomic_save("run/best.keras", model.save)  # writers that take a path
```
"""

import json
import math
import os
import uuid

import numpy as np

__all__ = [
    "atomic_save",
    "atomic_write",
    "json_ready",
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
