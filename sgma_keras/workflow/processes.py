"""The run folder in a multi-process launch: one writer, one lock, one config.

- Only the chief (process 0) writes the run folder: checkpoints, backups, logs,
  TensorBoard, `eval/`. The other processes read it (resume points, backups), so it
  must lie on a file system every host sees. They write nothing there.
- The chief takes the folder's lock (`RunFolder.lock`) and checks the config contract
  (`accept_run_config`) for the whole launch: a second launch into a busy folder stops
  in every one of its processes; the processes of one launch never take the lock, so
  their own chief never refuses them.
- Every process must run the same config: they compare theirs before any work.

With one process all of this is what `train` always did.
"""

import contextlib
import json

import keras

from sgma_keras.multi_process import (
    MultiProcessError,
    chief_value,
    gather_values,
    is_chief,
    process_count,
)
from sgma_keras.workflow.checkpoints import (
    BestAndLastCheckpoint,
    SafeBackupAndRestore,
    ensure_writable_dir,
)
from sgma_keras.workflow.logs import AttentionImages
from sgma_keras.workflow.run_folder import RunFolder, accept_run_config, flat_config


def _same_config_everywhere(cfg):
    """Raises MultiProcessError naming the keys in which some process's config
    differs from the chief's."""
    flat = json.loads(json.dumps(flat_config(cfg), default=str))
    configs = gather_values("config", flat)
    differences = []
    for index, other in enumerate(configs[1:], start=1):
        keys = sorted(k for k in flat.keys() | other.keys() if configs[0].get(k) != other.get(k))
        if keys:
            shown = ", ".join(f"{k} ({json.dumps(configs[0].get(k))} vs "
                              f"{json.dumps(other.get(k))})" for k in keys[:5])
            differences.append(f"process {index}: {shown}")
    if differences:
        raise MultiProcessError(
            "The processes of this launch were given different configs (process 0's vs "
            f"theirs): {'; '.join(differences)}. Start every process with the same "
            "--config and --set options.")


@contextlib.contextmanager
def claim_run_folder(cfg, allow_config_change=False):
    """The run folder of `cfg`, locked and checked by the chief for the whole launch.

    Raises, in every process of the launch, `RunFolderInUse` (as a
    `multi_process.OtherProcessFailed` in the non-chief processes), `RunConfigChanged`
    or `FolderError`, before any training.
    """
    if process_count() > 1:
        _same_config_everywhere(cfg)
    folder = RunFolder(cfg["output_dir"])

    def claim():
        ensure_writable_dir(cfg["output_dir"], "run folder", "choose another with --output-dir")
        folder.lock()
        accept_run_config(folder, cfg, allow_config_change)
        folder.clean_temporary()
        folder.create()
        return folder.root

    try:
        chief_value("run_folder", claim)
        yield folder
    finally:
        folder.unlock()


def this_process_callbacks(callbacks):
    """`callbacks` as this process runs them: all of them on the chief; elsewhere
    without the ones that write files, the backup restoring only, and the
    attention images computed (every process takes part in the model's call under
    JAX) but not written."""
    if is_chief():
        return callbacks
    writers = (keras.callbacks.CSVLogger, keras.callbacks.TensorBoard,
               keras.callbacks.ModelCheckpoint, BestAndLastCheckpoint)
    kept = []
    for callback in callbacks:
        if isinstance(callback, SafeBackupAndRestore):
            callback.writes = False
        elif isinstance(callback, AttentionImages):
            callback = _ModelCallOnly(callback.images)
        elif isinstance(callback, writers):
            continue
        kept.append(callback)
    return kept


class _ModelCallOnly(keras.callbacks.Callback):
    """The chief's `AttentionImages` model call, without the writing."""

    def __init__(self, images):
        super().__init__()
        self.images = images

    def on_epoch_end(self, epoch, logs=None):
        if len(self.images):
            self.model(self.images, training=False)
