"""Crash-safe saving: every file is written beside its target, then renamed over it.

A kill (even `kill -9`) at any moment leaves either the old file or the new
one, never a truncated one, because `os.replace` is atomic on POSIX.
"""

import json
import logging
import math
import os

import keras

from sgma_keras.atomic_io import atomic_save, write_json_atomic


def save_model_atomic(model, path):
    """`model.save(path)` (a `.keras` file), atomically."""
    atomic_save(path, model.save)


def save_weights_atomic(model, path):
    """`model.save_weights(path)` (a `.weights.h5` file), atomically."""
    atomic_save(path, model.save_weights)


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

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if os.path.exists(self._training_metadata_path):
            self.restored_epoch = self.model._initial_epoch
            logging.getLogger("sgma_keras").info(
                "Resuming from backup %s at epoch %d", self.backup_dir, self.restored_epoch + 1
            )

    def on_train_batch_end(self, batch, logs=None):
        self._last_logs_finite = _finite(logs)
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._last_logs_finite = _finite(logs)
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        if not self._last_logs_finite:
            return  # keep the last good backup
        os.makedirs(self.backup_dir, exist_ok=True)
        save_weights_atomic(self.model, self._weights_path)
        write_json_atomic(
            self._training_metadata_path,
            {"epoch": self._current_epoch, "batch": self._last_batch_seen},
        )


class BestAndLastCheckpoint(keras.callbacks.Callback):
    """Saves `last.keras` every epoch and `best.keras` when `monitor` improves.

    Both atomically, and only when the epoch's loss is finite, so a run that
    diverges keeps its last good checkpoints.
    """

    def __init__(self, folder, monitor="val_zsl_acc", mode="max"):
        super().__init__()
        self.folder = folder
        self.monitor = monitor
        self.mode = mode
        self.best = None
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        # A resumed run must not forget the best value it had reached.
        record = os.path.join(self.folder, "best.json")
        if self.best is None and os.path.exists(record):
            with open(record) as handle:
                saved = json.load(handle)
            if saved.get("monitor") == self.monitor:
                self.best = float(saved["value"])
                self.best_epoch = int(saved["epoch"]) - 1

    def _improved(self, value):
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not _finite(logs):
            return
        save_model_atomic(self.model, os.path.join(self.folder, "last.keras"))
        value = logs.get(self.monitor)
        if value is not None and math.isfinite(float(value)) and self._improved(float(value)):
            self.best = float(value)
            self.best_epoch = epoch
            save_model_atomic(self.model, os.path.join(self.folder, "best.keras"))
            write_json_atomic(
                os.path.join(self.folder, "best.json"),
                {"monitor": self.monitor, "value": self.best, "epoch": epoch + 1},
            )
