"""What training prints and logs: one line per epoch, attention images in TensorBoard.

`fit_verbosity(verbose)` chooses how `fit` reports: Keras's progress bar on a terminal,
and, when stdout is a file or a pipe, `EpochLine`: one plain line per epoch (the
stage, its epoch, the seconds it took, each loss term of the stage, the validation
metrics and the learning rate), written through the `sgma_keras` logger. A progress bar
written to a file is one line of backspaces and colour codes per epoch.

`AttentionImages` writes the attention maps of a few validation images to TensorBoard
at the end of each epoch (one small forward pass).
"""

import logging
import math
import os
import sys
import time

import keras
import numpy as np

log = logging.getLogger("sgma_keras")

# Log keys EpochLine leaves out (the learning rate is shown once, from the optimizer).
_SKIPPED = {"learning_rate", "lr"}


def fit_verbosity(verbose="auto", stream=None):
    """(verbose for keras fit, whether to add an EpochLine) for train(cfg, verbose).

    "auto": the progress bar on a terminal, one line per epoch otherwise. 0: silent,
    1: the progress bar, 2: one line per epoch (our EpochLine, not Keras's two lines).
    """
    if verbose == "auto":
        stream = sys.stdout if stream is None else stream
        verbose = 1 if getattr(stream, "isatty", lambda: False)() else 2
    if verbose == 2:
        return 0, True
    return verbose, False


def _format(value):
    if isinstance(value, (int, float, np.floating, np.integer)):
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


class EpochLine(keras.callbacks.Callback):
    """Logs one line per epoch: `<stage> epoch 3/6 12s loss 1.23 loss_cls 1.1 ... |
    val loss 1.4 val_zsl_acc 0.41 ... | lr 0.003`.

    Args:
        stage: the stage's name (the line's first word).
        epochs: the stage's number of epochs.
        terms: the loss terms the stage optimises (others, always 0, are left out);
            None keeps every training log.
    """

    def __init__(self, stage, epochs, terms=None):
        super().__init__()
        self.stage, self.epochs, self.terms = stage, epochs, terms
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.monotonic()

    def line(self, epoch, logs):
        logs = dict(logs or {})
        seconds = time.monotonic() - self._start if self._start is not None else 0.0
        train = [k for k in logs if not k.startswith("val_") and k not in _SKIPPED]
        if self.terms is not None:
            train = [k for k in train if not k.startswith("loss_") or k in self.terms]
        val = [k for k in logs if k.startswith("val_")]
        if self.terms is not None:
            val = [k for k in val if not k.startswith("val_loss_") or k[4:] in self.terms]
        parts = [f"{self.stage} epoch {epoch + 1}/{self.epochs} {seconds:.0f}s"]
        parts.append(" ".join(f"{k} {_format(logs[k])}" for k in sorted(train)))
        if val:
            parts.append(" ".join(f"{k} {_format(logs[k])}" for k in sorted(val)))
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            try:
                parts.append(f"lr {_format(keras.ops.convert_to_numpy(optimizer.learning_rate))}")
            except (TypeError, ValueError):
                pass
        return " | ".join(p for p in parts if p)

    def on_epoch_end(self, epoch, logs=None):
        log.info("%s", self.line(epoch, logs))


def attention_overlay(images, maps):
    """uint8 [n, S, (K + 1) * S, 3]: each image beside its K attention maps over it.

    Args:
        images: float [n, S, S, 3] in [0, 255].
        maps: [n, h, w, K] in [0, 1] (the model's `attention_maps`).
    """
    images = np.clip(np.asarray(images, np.float32), 0, 255)
    maps = np.asarray(maps, np.float32)
    n, size = images.shape[0], images.shape[1]
    rows = []
    for i in range(n):
        tiles = [images[i]]
        for k in range(maps.shape[-1]):
            m = maps[i, :, :, k]
            # Nearest-neighbour upsampling to the image (sizes are multiples in SGMA).
            ry, rx = -(-size // m.shape[0]), -(-size // m.shape[1])
            m = np.kron(m, np.ones((ry, rx), np.float32))[:size, :size]
            m = (m - m.min()) / max(float(m.max() - m.min()), 1e-6)
            heat = np.stack([255 * m, 64 * m, 255 * (1 - m)], axis=-1)
            tiles.append(0.45 * images[i] + 0.55 * heat)
        rows.append(np.concatenate(tiles, axis=1))
    return np.round(np.stack(rows)).astype(np.uint8)


class AttentionImages(keras.callbacks.Callback):
    """Writes the attention maps of a few validation images to TensorBoard each epoch.

    The images appear under "attention" in the run's TensorBoard (folder
    `<log_dir>/attention`), one per image: the image, then each part's map over it.
    Nothing is written while the model computes no maps (the warm-up stage).

    Args:
        log_dir: the stage's TensorBoard folder.
        images: float [n, S, S, 3] in [0, 255] (a handful: each epoch runs them once).
    """

    def __init__(self, log_dir, images):
        super().__init__()
        self.log_dir = log_dir
        self.images = np.asarray(images, np.float32)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if not len(self.images):
            return
        outputs = self.model(self.images, training=False)
        maps = outputs.get("attention_maps") if isinstance(outputs, dict) else None
        if maps is None:
            return
        grid = attention_overlay(self.images, keras.ops.convert_to_numpy(maps))
        import tensorflow as tf  # TensorBoard's writer; TensorFlow is there on every backend

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "attention"))
        with self._writer.as_default():
            tf.summary.image("attention_maps", grid, step=epoch, max_outputs=len(grid))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
