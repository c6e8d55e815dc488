"""The run folder and its contract: one run, one process, one config.

A run folder (`train.py`'s `output_dir`):

    .lock                        OS lock (flock) held by the process training in the
                                 folder; its PID and host are written in it
    config.json, versions.json   the resolved config, package/backend versions
    run.json                     fingerprint of the result-changing keys, accepted changes
    state.json                   which stages are complete (resume point)
    checkpoints/                 warmup.weights.h5, init.weights.h5,
                                 best.keras (best validation metric), last.keras, best.json,
                                 choices.json (what was chosen on the validation classes),
                                 refit_*.weights.h5, refit.keras (the refit on all seen
                                 classes), final.keras (the scored model, with the choices)
    backup/<stage>/              BackupAndRestore state of the stage in progress
    logs/<stage>.csv             per-epoch logs; tensorboard/ for TensorBoard
    eval/                        the test report of final.keras (see `evaluation`)

`RunFolder` names these paths, holds the folder's lock and its stage state;
`results_folder` is the span an evaluation writes its results in; `accept_run_config`
keeps one config per run folder (a change that alters results is refused, or recorded
when allowed; a change of architecture is always refused). What is written into the
folder, and how, is `checkpoints`'.
"""

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import time

try:
    import fcntl
except ImportError:  # not POSIX: no run-folder lock
    fcntl = None

from sgma_keras.atomic_io import write_json_atomic
from sgma_keras.config import architecture_keys
from sgma_keras.config_output import save_resolved_config
from sgma_keras.errors import UserError
from sgma_keras.upgrade import upgrade_run_config

log = logging.getLogger("sgma_keras")


class FolderError(UserError):
    """An output folder that cannot be created or written."""


class RunFolderInUse(UserError):
    """Another live process holds the run folder's lock."""


class RunConfigChanged(UserError):
    """A config that changes results given for a run folder trained with another one."""


# --------------------------------------------------------------------------
# Run folder
# --------------------------------------------------------------------------


class RunFolder:
    """Paths of a run and its stage state (see the module docstring)."""

    def __init__(self, root):
        self.root = root
        self.checkpoints = os.path.join(root, "checkpoints")
        self.state_path = os.path.join(root, "state.json")
        self.lock_path = os.path.join(root, ".lock")
        self._lock_fd = None

    def lock(self):
        """Takes the folder's OS lock (`flock`) or raises RunFolderInUse; returns self.

        The lock belongs to the open file, so the kernel drops it when the process
        ends in any way (`kill -9` included): a dead process's lock never blocks.
        """
        if fcntl is None or self._lock_fd is not None:
            return self
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise RunFolderInUse(
                f"run folder {self.root!r} in use by {holder} (lock {self.lock_path!r}); "
                "wait for that run to end, or choose another --output-dir."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._lock_fd = fd
        return self

    def holder(self):
        """"PID n on host h" of another process holding the folder's lock, else None.

        Only looks (a shared lock taken and dropped at once): creates nothing.
        """
        if fcntl is None or self._lock_fd is not None:
            return None
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:  # no lock file: no run ever locked the folder
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _lock_holder(fd)
        finally:
            os.close(fd)  # also drops the shared lock
        return None

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self):
        return self.lock()

    def __exit__(self, *exc):
        self.unlock()

    def create(self):
        """Creates the folders training writes into; returns self."""
        os.makedirs(self.checkpoints, exist_ok=True)
        os.makedirs(os.path.join(self.root, "logs"), exist_ok=True)
        return self

    def completed(self):
        if not os.path.exists(self.state_path):
            return []
        with open(self.state_path) as handle:
            return json.load(handle).get("completed", [])

    def mark_completed(self, stage):
        done = self.completed()
        if stage not in done:
            write_json_atomic(self.state_path, {"completed": done + [stage]})

    def remove_backup(self, stage):
        """Deletes a stage's backup: only once its weights and state.json are written."""
        shutil.rmtree(self.backup(stage), ignore_errors=True)

    def clean_temporary(self):
        """Removes the `.tmp-*` files a killed writer left (call with the lock held)."""
        removed = []
        for folder, _, files in os.walk(self.root):
            for name in files:
                if name.startswith((".tmp-", ".write-test-")):
                    path = os.path.join(folder, name)
                    try:
                        os.remove(path)
                        removed.append(path)
                    except OSError:
                        pass
        if removed:
            log.info("Removed %d temporary file(s) of an interrupted run: %s", len(removed),
                     ", ".join(removed[:5]))
        return removed

    def stage_weights(self, stage):
        return os.path.join(self.checkpoints, f"{stage}.weights.h5")

    def backup(self, stage):
        return os.path.join(self.root, "backup", stage)

    def log_file(self, stage):
        return os.path.join(self.root, "logs", f"{stage}.csv")

    def tensorboard(self, stage):
        return os.path.join(self.root, "tensorboard", stage)

    @property
    def best(self):
        """The selection's checkpoint: the best validation epoch of the joint stage."""
        return os.path.join(self.checkpoints, "best.keras")

    @property
    def final(self):
        """The model the test splits score, with the choices made on validation."""
        return os.path.join(self.checkpoints, "final.keras")

    @property
    def eval(self):
        return os.path.join(self.root, "eval")


def _lock_holder(fd):
    """"PID n on host h" as the holder of a lock file wrote it."""
    holder = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
    pid = holder[0] if holder else "?"
    host = holder[1] if len(holder) > 1 else "?"
    return f"PID {pid} on host {host}"


@contextlib.contextmanager
def results_folder(output_dir, run_root=None, checkpoint=None):
    """The span in which an evaluation writes its results folder `output_dir`.

    Every evaluation holds a shared `flock` on the folder itself (no lock file) while
    it writes there. The first to find no other holder (an exclusive lock granted)
    removes the `.tmp-*` files a killed evaluation left, as training does in its run
    folder, except while a training run holds `run_root` and the results folder lies
    inside it (that run writes its own evaluation there). Where the file system
    cannot lock folders, nothing is removed.

    A checkpoint inside a run folder that a training run holds is named in a
    warning: it is the run's current best, which the run may still replace.
    """
    training = RunFolder(run_root).holder() if run_root else None
    if training and checkpoint is not None and _inside(checkpoint, run_root):
        log.warning("Run folder %s is in use by a training run (%s): evaluating the "
                    "checkpoint it has written so far, %s.", run_root, training, checkpoint)
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(output_dir, os.O_RDONLY)
        except OSError:
            fd = None
    try:
        alone = False
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:  # another evaluation is writing here
                pass
            except OSError:  # no folder locks on this file system
                os.close(fd)
                fd = None
        if alone and not (training and _inside(output_dir, run_root)):
            RunFolder(output_dir).clean_temporary()
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while another one cleans
        yield output_dir
    finally:
        if fd is not None:
            os.close(fd)  # drops the lock


def _inside(path, root):
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# --------------------------------------------------------------------------
# Run-folder contract: one config per run folder
# --------------------------------------------------------------------------

# Config keys that say where things are or how the run is carried out, not what it
# computes: they may differ between the runs of one folder.
RESULT_NEUTRAL_KEYS = frozenset({
    "name", "output_dir", "data.root", "data.split_dir", "data.builtin.cache_dir",
    "data.tfds.data_dir", "data.tfds.cache_dir", "data.tfds.download", "data.check_images",
    "input.cache", "train.backup_every_steps", "train.tensorboard", "train.jit",
    # One device, several, or several processes train on the same global batches.
    "train.distribute",
    "eval.batch_size", "eval.visualize_images",
})


def flat_config(cfg, prefix=""):
    """{"a.b": value} of a nested config."""
    flat = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def result_keys(cfg):
    """The flattened config without `RESULT_NEUTRAL_KEYS`."""
    return {k: v for k, v in flat_config(cfg).items() if k not in RESULT_NEUTRAL_KEYS}


def config_fingerprint(cfg):
    """A short hash of the keys that change results (same config -> same hash)."""
    text = json.dumps(result_keys(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_differences(old, new):
    """{key: (old value, new value)} of the result-changing keys that differ.

    A section that one config turns off (null: `model.center`) and the other has
    differs as a whole: {"model.center": (None, {...its values})}. Other keys one
    config lacks (written by another version) are not compared.
    """
    old_flat, new_flat = result_keys(old), result_keys(new)
    diffs = {k: (old_flat[k], new_flat[k]) for k in old_flat.keys() & new_flat.keys()
             if old_flat[k] != new_flat[k]}
    for key in old_flat.keys() ^ new_flat.keys():
        if key in old_flat and old_flat[key] is None and _has_section(new_flat, key):
            diffs[key] = (None, _section(new, key))
        elif key in new_flat and new_flat[key] is None and _has_section(old_flat, key):
            diffs[key] = (_section(old, key), None)
    return dict(sorted(diffs.items()))


def _has_section(flat, key):
    return any(k.startswith(key + ".") for k in flat)


def _section(cfg, key):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def accept_run_config(folder, cfg, allow_change=False):
    """Checks `cfg` against the run's recorded config, then records it.

    A new folder takes `cfg`. A folder trained with a config whose result-changing
    keys differ stops here (RunConfigChanged listing them), before any work and
    before `config.json` is touched, unless `allow_change`: then the change is
    appended to `run.json` and the run continues. Architecture keys can never change
    within a run (the saved weights would not fit). Returns the differences.
    """
    config_path = os.path.join(folder.root, "config.json")
    record_path = os.path.join(folder.root, "run.json")
    diffs = {}
    if os.path.exists(config_path):
        try:
            with open(config_path) as handle:
                old = upgrade_run_config(json.load(handle), config_path)
        except (OSError, ValueError) as error:
            raise RunConfigChanged(
                f"Cannot read {config_path!r} ({error}); the run folder's config is unknown. "
                "Choose a new --output-dir."
            ) from None
        diffs = config_differences(old, cfg)
    if diffs:
        lines = "\n".join(f"  - {k}: {json.dumps(a, default=str)} -> "
                          f"{json.dumps(b, default=str)}" for k, (a, b) in diffs.items())
        fixed = [k for k in diffs if k in architecture_keys()]
        if fixed:
            raise RunConfigChanged(
                f"Run folder {folder.root!r} holds a model of another architecture; the "
                f"config differs from its config.json in:\n{lines}\n{', '.join(fixed)} "
                "cannot change within a run. Train into a new run folder (--output-dir NEW)."
            )
        if not allow_change:
            raise RunConfigChanged(
                f"Run folder {folder.root!r} was trained with another config; these keys "
                f"differ from its config.json:\n{lines}\nNothing was changed. Either train "
                "into a new run folder (--output-dir NEW), or continue this run with the new "
                "values with --allow-config-change (the change is recorded in run.json)."
            )
    record = {}
    if os.path.exists(record_path):
        try:
            with open(record_path) as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            record = {}
    changes = list(record.get("changes", []))
    if diffs:
        changes.append({
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "completed_stages": folder.completed(),
            "keys": {k: [a, b] for k, (a, b) in diffs.items()},
        })
        log.warning("Run %s continues with a changed config: %s", folder.root, ", ".join(diffs))
    write_json_atomic(record_path, {"fingerprint": config_fingerprint(cfg), "changes": changes})
    save_resolved_config(cfg, folder.root)
    return diffs
