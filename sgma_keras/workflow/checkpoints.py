"""Checkpoints: crash-safe saving, resumable backups, sizes, read/check/load.

What training writes into its run folder (`run_folder` names the paths and keeps the
folder's contract): stage weights, `best.keras`/`last.keras` (`BestAndLastCheckpoint`),
the stage backups (`SafeBackupAndRestore`), trimmed epoch logs.

Every file is written beside its target and renamed over it (`sgma_keras.atomic_io`): a
kill, even `kill -9`, at any moment leaves the old file or the new one, never a
truncated one. Checkpoints are checked (`read_checkpoint_config`,
`check_checkpoint_matches`) from the `.keras` archive's JSON before any model is built.
"""

import io
import json
import logging
import math
import os
import shutil
import tempfile
import warnings

import keras
import numpy as np

# Keras's base of ModelCheckpoint/EarlyStopping: monitor, mode and "is it better".
from keras.src.callbacks.monitor_callback import MonitorCallback

import sgma_keras.model  # noqa: F401  (registers SGMA and its layers for load_model)
from sgma_keras.atomic_io import (
    atomic_save,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from sgma_keras.config import architecture_keys
from sgma_keras.multi_process import process_local
from sgma_keras.upgrade import saved_semantics, saved_settings
from sgma_keras.workflow.files import (  # noqa: F401  (CheckpointError: raised here too)
    CheckpointError,
    default_checkpoint_path,
    read_checkpoint_config,
)
from sgma_keras.workflow.run_folder import FolderError, flat_config

log = logging.getLogger("sgma_keras")


# --------------------------------------------------------------------------
# Saving during training
# --------------------------------------------------------------------------


def save_model_atomic(model, path):
    """`model.save(path)` (a `.keras` file), atomically (by this process alone, also in
    a multi-process launch: `multi_process.process_local`)."""
    with process_local():
        atomic_save(path, model.save)


class _NamedBuffer(io.BytesIO):
    """An in-memory file whose `str()` is a file name: Keras checks the `.weights.h5`
    ending on `str(filepath)` and writes HDF5 into an `io.BytesIO` as it is."""

    def __init__(self, name):
        super().__init__()
        self._name = name

    def __str__(self):
        return self._name


def weights_file_bytes(model):
    """The bytes of `model.save_weights` (a `.weights.h5` file), made in memory.

    HDF5 writing straight to a file that fails part-way (a full disk) leaves the
    library unable to close it: h5py then raises from finalizers and the process
    crashes at exit (SIGSEGV). Made in memory, only plain file writes touch the disk,
    and their failures are ordinary OSErrors. A `.keras` save holds its weights in
    memory the same way. None when Keras does not take an in-memory file.
    """
    buffer = _NamedBuffer("memory.weights.h5")
    try:
        model.save_weights(buffer)
    except TypeError:  # a Keras that takes paths only
        return None
    return buffer.getvalue()


def save_weights_atomic(model, path):
    """`model.save_weights(path)` (a `.weights.h5` file), atomically (by this process
    alone, also in a multi-process launch: `multi_process.process_local`).

    A failed write (full disk, I/O error) raises an OSError naming `path` and leaves
    the previous file intact (see `weights_file_bytes`).
    """
    with process_local():
        data = weights_file_bytes(model)
        if data is None:
            atomic_save(path, model.save_weights)
    if data is not None:
        write_bytes_atomic(path, data)


def _finite(logs):
    loss = (logs or {}).get("loss")
    return loss is None or math.isfinite(float(loss))


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose backups are atomic and never hold NaN weights.

    A run killed at any point resumes from the last backup (every
    `save_freq` steps and at every epoch end) with the same command. The
    epoch in progress is replayed from its start with the backed-up weights.
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=delete_checkpoint)
        self._last_logs_finite = True
        self.restored_epoch = None
        # False in the non-chief processes of a launch: they restore, never write.
        self.writes = True

    def on_train_begin(self, logs=None):
        # `fit` starts at `model._initial_epoch` whenever it is set, and only a restore
        # sets it: left over from the previous stage's restore, it would skip this
        # stage's first epochs. Cleared here, it is set again only by this backup.
        self.model._initial_epoch = None
        super().on_train_begin(logs)
        if os.path.exists(self._training_metadata_path):
            self.restored_epoch = self.model._initial_epoch
            log.info(
                "Resuming from backup %s at epoch %d", self.backup_dir, self.restored_epoch + 1
            )

    def on_train_batch_end(self, batch, logs=None):
        self._last_logs_finite = _finite(logs)
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        # Keras saves at an epoch end only with save_freq="epoch"; with a step count a
        # kill after finished epochs would replay them. Every epoch end is saved here.
        self._last_logs_finite = _finite(logs)
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        self._batches_seen_since_last_saving = 0
        self._save_model()

    def on_train_end(self, logs=None):
        # The backup outlives fit(): training removes it once the stage's weights and
        # state.json are written (RunFolder.remove_backup), and keeps it on divergence.
        pass

    def _save_model(self):
        if not self._last_logs_finite or not self.writes:
            return  # keep the last good backup
        os.makedirs(self.backup_dir, exist_ok=True)
        save_weights_atomic(self.model, self._weights_path)
        write_json_atomic(
            self._training_metadata_path,
            {"epoch": self._current_epoch, "batch": self._last_batch_seen},
        )


def backup_epoch(backup_dir):
    """The epoch a stage resumes at from `backup_dir` (0 without a backup)."""
    path = os.path.join(backup_dir, "training_metadata.json")
    try:
        with open(path) as handle:
            return int(json.load(handle)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def trim_epoch_log(path, first_epoch):
    """Drops the rows of epochs >= `first_epoch` from a CSVLogger file (atomically).

    A resumed stage replays from its backup's epoch; rows of that epoch or later come
    from the interrupted attempt and would be written again.
    """
    if not os.path.exists(path):
        return 0
    with open(path, newline="") as handle:
        lines = handle.read().splitlines(keepends=True)
    if len(lines) < 2:
        return 0

    def epoch_of(line):
        try:
            return int(line.split(",", 1)[0])
        except ValueError:
            return None

    kept = [lines[0]] + [line for line in lines[1:]
                         if epoch_of(line) is not None and epoch_of(line) < first_epoch]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(kept))
    return len(lines) - len(kept)


def load_weights_quietly(model, path):
    """Loads model weights saved at a stage end (their optimizer state is not reused)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)


def monitor_mode(monitor, metrics=()):
    """"min" or "max" for a monitored log key, from the direction of its metric.

    Losses are minimised; a metric says its direction (`_direction`, as Keras's own
    do). A dict metric's entries (`gzsl` -> `gzsl_h`) take the metric's direction.

    Args:
        monitor: the log key, e.g. "val_zsl_acc", "val_gzsl_h", "loss".
        metrics: the metric objects compiled on the model.
    """
    name = monitor.removeprefix("val_")
    if name == "loss" or name.startswith("loss_"):
        return "min"
    for metric in metrics:
        if name == metric.name or name.startswith(metric.name + "_"):
            direction = getattr(metric, "_direction", None)
            if direction in ("up", "down"):
                return "max" if direction == "up" else "min"
    raise ValueError(
        f"train.monitor={monitor!r}: cannot tell whether it should go up or down; "
        "monitor `loss`, `val_loss` or a compiled metric (e.g. val_zsl_acc, val_gzsl_h)."
    )


class BestAndLastCheckpoint(MonitorCallback):
    """Saves `last.keras` every epoch and `best.keras` when `monitor` improves.

    Both atomically, and only when the epoch's loss is finite, so a run that
    diverges keeps its last good checkpoints. `best.json` records the best value,
    so a resumed run does not forget it. Improvement is Keras's (`MonitorCallback`).
    """

    def __init__(self, folder, monitor="val_zsl_acc", mode="auto"):
        super().__init__(monitor, mode)
        self.folder = folder
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        # A resumed run must not forget the best value it had reached.
        record = os.path.join(self.folder, "best.json")
        if self.best is None and os.path.exists(record):
            with open(record) as handle:
                saved = json.load(handle)
            if saved.get("monitor") == self.monitor:
                self.best = float(saved["value"])
                self.best_epoch = int(saved["epoch"]) - 1

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not _finite(logs):
            return
        save_model_atomic(self.model, os.path.join(self.folder, "last.keras"))
        value = logs.get(self.monitor)
        if value is not None and math.isfinite(float(value)) and self._is_improvement(
                float(value), self.best):
            self.best = float(value)
            self.best_epoch = epoch
            save_model_atomic(self.model, os.path.join(self.folder, "best.keras"))
            write_json_atomic(
                os.path.join(self.folder, "best.json"),
                {"monitor": self.monitor, "value": self.best, "epoch": epoch + 1},
            )


# --------------------------------------------------------------------------
# Reading and checking checkpoints (no model is built until `load_checkpoint`)
# --------------------------------------------------------------------------


def default_checkpoint(cfg):
    """The model `train.py` hands over in the config's run folder (`files`)."""
    return default_checkpoint_path(cfg["output_dir"])


def ensure_writable_dir(path, what="results folder", hint="choose another with --output"):
    """Creates `path` if needed and checks a file can be written in it.

    Returns the absolute path; raises FolderError naming the folder.
    """
    full = os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        os.makedirs(full, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=full, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise FolderError(
            f"The {what} {full!r} is not writable ({reason}); {hint}."
        ) from None
    return full


# HDF5 stores each variable as a dataset in its own group: about this many bytes of
# headers per variable (1.8 KB measured for a .weights.h5 of the tiny model).
_BYTES_PER_VARIABLE = 2048
# A cell of the evaluation figures is 2.2 in at 100 dpi: 220 px a side.
_FIGURE_CELL_PX = 220


def _variable_bytes(variables):
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)


def checkpoint_bytes(model, optimizer_slots=2):
    """About the size of one `.weights.h5` of `model` with its optimizer's state (bytes).

    `optimizer_slots` values per trainable value (Adam: 2, SGD with momentum: 1), and
    the HDF5 headers of every variable (they dominate for a tiny model).
    """
    trainable = [v for v in model.weights if v.trainable]
    values = _variable_bytes(model.weights) + optimizer_slots * _variable_bytes(trainable)
    count = len(model.weights) + optimizer_slots * len(trainable) + 8
    return values + _BYTES_PER_VARIABLE * count


def _file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _folder_size(path):
    return sum(_file_size(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names)


def run_write_bytes(model, cfg, optimizer_slots=2, root=None):
    """What training `cfg` writes into its run folder, in bytes, by kind of file.

    Counts what is on disk at once at the worst moment (the last stage): the stage
    weights, a backup, best.keras and last.keras (each with the optimizer state), the
    temporary copy an atomic save makes beside its target, the CSV logs, TensorBoard
    (scalars and the attention images of `AttentionImages`) and the evaluation folder
    (results, figures). Files of `root` (a run being resumed) that will be replaced
    are subtracted. Returns {kind: bytes}; `sum()` it for the total before the margin.
    """
    root = root or cfg["output_dir"]
    train_cfg, ev = cfg["train"], cfg["eval"]
    weights = checkpoint_bytes(model, optimizer_slots)
    config_json = len(json.dumps(model.get_config(), default=str)) + 8192
    keras_file = weights + config_json
    checkpoints = os.path.join(root, "checkpoints")
    stage_files = [os.path.join(checkpoints, f"{stage}.weights.h5") for stage in ("warmup", "init")]
    kept = {path: weights for path in stage_files}
    kept.update({os.path.join(checkpoints, name): keras_file
                 for name in ("best.keras", "last.keras")})
    parts = {
        "checkpoints": sum(max(0, size - _file_size(path)) for path, size in kept.items()),
        "backup": max(0, weights - _folder_size(os.path.join(root, "backup"))),
        "temporary copy": keras_file,
    }
    epochs = sum(int(train_cfg[stage].get("epochs", 0)) for stage in ("warmup", "joint"))
    parts["logs"] = 1024 * epochs
    if train_cfg["tensorboard"]:
        size = cfg["input"]["image_size"]
        maps = model.num_parts if getattr(model, "box_source", None) == "attention" else 0
        # 4 validation images and their part overlays per joint epoch, as PNG: at most raw.
        images = 4 * size * size * (maps + 1) * 3 if maps else 0
        parts["tensorboard"] = 8192 * epochs + images * int(train_cfg["joint"].get("epochs", 0))
    # Figures: per drawn image, the image and its K maps, and its K part crops. A cell
    # holds no more detail than the input image (measured: 3.3 bytes per input pixel
    # at 112 px, as PNG); 4 bytes per pixel of the smaller of the two.
    count, parts_k = int(ev["visualize_images"]), int(model.num_parts)
    side = min(_FIGURE_CELL_PX, max(int(cfg["input"]["image_size"]), 64))
    figures = 4 * side * side * count * (2 * parts_k + 1) + 2**18  # + the curve, colour bars
    tables = 65536 + 96 * int(ev["calibration_points"]) + 512 * int(model.num_classes)
    parts["evaluation"] = max(0, figures + tables - _folder_size(os.path.join(root, "eval")))
    return parts


def check_free_space(path, need=None, what="run folder", hint="free space or choose another "
                     "--output-dir", *, cfg=None, model=None, optimizer_slots=2, margin=0.25):
    """Raises FolderError when the file system of `path` has too little space free.

    `need` in bytes; or, given the run's `cfg` and built `model`, what the run writes
    (`run_write_bytes`) plus `margin` (a fraction) and 1 MiB for the small files.
    Returns the free bytes.
    """
    parts = None
    if need is None:
        parts = run_write_bytes(model, cfg, optimizer_slots, path)
        need = int(sum(parts.values()) * (1 + margin)) + 2**20
    try:
        free = shutil.disk_usage(path).free
    except OSError as error:
        raise FolderError(f"Cannot read the free space of the {what} {path!r} "
                          f"({error.strerror or error}); {hint}.") from None
    if free < need:
        if parts is None:
            detail = ""
        else:
            listed = ", ".join(f"{kind} {size / 2**20:.1f}" for kind, size in parts.items())
            detail = (f" ({listed} MiB, and a {margin:.0%} margin; the checkpoints, backup "
                      "and temporary copy hold the optimizer state)")
        raise FolderError(
            f"The {what} {path!r} has {free / 2**20:.1f} MiB free; training writes about "
            f"{need / 2**20:.1f} MiB there{detail}; {hint}."
        )
    return free


def model_description(model):
    """The facts `check_checkpoint_matches` compares, from a live model."""
    return {
        "semantics": np.asarray(model.semantics, dtype="float32"),
        "seen_classes": None if model.seen_classes is None else np.asarray(model.seen_classes),
        "image_size": int(model.image_size),
        "arguments": model.get_config(),
    }


def describe_checkpoint(saved):
    """The facts `check_checkpoint_matches` compares, from `read_checkpoint_config`."""
    seen = saved.get("seen_classes")
    return {
        "semantics": np.asarray(saved_semantics(saved), dtype="float32"),
        "seen_classes": None if seen is None else np.asarray(seen, dtype="int64"),
        "image_size": int(saved["image_size"]),
        "arguments": saved,
    }


def architecture_differences(arguments, cfg):
    """[(config key, model's value, config's value)] of the architecture keys that
    differ (`config.architecture_keys`), the class-center branch's presence included.

    `arguments`: a saved SGMA config (either layout). Settings that do not apply are
    skipped: `tiny_width` of another backbone, a null `global_size` or
    `feature_layer` (the model's default), a piece the model does not have.
    """
    saved = saved_settings(arguments)
    flat = flat_config(cfg)
    found = []
    if "model.center" in saved or (cfg.get("model") or {}).get("center", {}) is None:
        theirs = "null" if saved.get("model.center", {}) is None else "on"
        ours = "null" if cfg["model"]["center"] is None else "on"
        if theirs != ours:
            found.append(("model.center", theirs, ours))
    for key in sorted(architecture_keys()):  # model.center's presence: compared above
        if key not in saved or key not in flat or key == "input.image_size":
            continue
        theirs, ours = saved[key], flat[key]
        if ours is None or (key == "model.backbone.tiny_width"
                            and flat.get("model.backbone.name") != "tiny"):
            continue
        same = (math.isclose(float(theirs), float(ours), rel_tol=1e-6)
                if isinstance(ours, float) and isinstance(theirs, (int, float)) else theirs == ours)
        if not same:
            found.append((key, theirs, ours))
    return found


def check_checkpoint_matches(description, cfg=None, data=None, checkpoint="the model"):
    """Raises CheckpointError listing every way the model differs from cfg/data.

    Args:
        description: `describe_checkpoint(read_checkpoint_config(path))` or
            `model_description(model)`.
        cfg: the resolved config (its `input.image_size` is checked) or None.
        data: the `ZeroShotData` (classes, semantic matrix, seen classes) or None.
        checkpoint: how to name the model in the message (its path).
    """
    semantics = description["semantics"]
    problems = []
    if cfg is not None and description["image_size"] != cfg["input"]["image_size"]:
        problems.append(
            f"image size: the model takes {description['image_size']} px images, the "
            f"config has input.image_size={cfg['input']['image_size']}"
        )
    if cfg is not None and description.get("arguments"):
        for key, theirs, ours in architecture_differences(description["arguments"], cfg):
            problems.append(f"architecture: the model has {key}={json.dumps(theirs)}, the "
                            f"config has {key}={json.dumps(ours)}")
    if data is not None:
        theirs = np.asarray(data.semantics, dtype="float32")
        if semantics.shape[0] != theirs.shape[0]:
            problems.append(
                f"number of classes: the model scores {semantics.shape[0]} classes, the "
                f"dataset {data.name!r} has {theirs.shape[0]}"
            )
        if semantics.shape[1] != theirs.shape[1]:
            problems.append(
                f"semantic width: the model was trained on {semantics.shape[1]}-d class "
                f"semantic vectors, the dataset's semantic matrix is {theirs.shape[1]}-d "
                f"(shape {theirs.shape})"
            )
        if semantics.shape == theirs.shape:
            diff = float(np.max(np.abs(semantics - theirs))) if semantics.size else 0.0
            if not diff <= 1e-5:
                problems.append(
                    "semantic values: the class semantic vectors differ from the dataset's "
                    f"(max abs difference {diff:.3g}); check data.semantics and "
                    "data.normalize_semantics against the training run's config.json"
                )
        seen = description["seen_classes"]
        if seen is not None and semantics.shape[0] == theirs.shape[0]:
            stray = np.setdiff1d(seen, data.seen_classes)
            if stray.size:
                problems.append(
                    f"training classes: the model was trained on classes {stray[:10].tolist()} "
                    "that the dataset lists as unseen (test) classes"
                )
    if problems:
        raise CheckpointError(
            f"Checkpoint {checkpoint} does not match the config/data:\n  - "
            + "\n  - ".join(problems)
        )


def load_checkpoint(path):
    """Loads an SGMA `.keras` file (any backend), uncompiled."""
    read_checkpoint_config(path)  # clear errors for missing / wrong files
    try:
        return keras.saving.load_model(path, compile=False)  # safe mode: no lambdas
    except Exception as error:  # noqa: BLE001 - reported with the file name
        # Keras's messages quote whole configs over many lines: the first line only.
        lines = str(error).strip().splitlines() or [type(error).__name__]
        first = lines[0] if len(lines[0]) <= 300 else lines[0][:300] + " ..."
        raise CheckpointError(f"Cannot load checkpoint {path!r}: {first}") from error
