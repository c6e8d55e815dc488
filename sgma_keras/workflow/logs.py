"""What training prints and logs: a progress line, one line per epoch, attention images
in TensorBoard.

`fit_verbosity(verbose)` chooses how `fit` reports. Always (but silent) `EpochLine`: one
plain line per epoch (the stage, its epoch, the seconds it took, each loss term of the
stage, the validation metrics and the learning rate), written through the `sgma_keras`
logger. On a terminal also `StepProgress`: one line redrawn in place at each step (stage,
epoch, step / total, ETA, the total loss and the figures of `WATCHED`), never wider than
the terminal, erased at the epoch's end, where the epoch line takes its place.

The progress line is tqdm's (already installed with tensorflow-datasets): it fits the
line to the terminal's width at each redraw (the bar shrinks, then the text is cut) and
estimates the ETA from a smoothed step rate. Keras's own bar has a fixed 30-character bar
followed by every logged value, so with SGMA's loss terms and metrics its line runs
past the terminal's width and each redraw leaves wrapped fragments behind; rich's live
display takes over the whole terminal, which the log lines printed between epochs
would have to be routed through.

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
    """(whether to add a StepProgress, whether to add an EpochLine) for
    train(cfg, verbose); Keras's own progress bar is never used.

    "auto": the progress line and the epoch lines on a terminal, the epoch lines only
    otherwise. 0: silent, 1: progress line and epoch lines, 2: epoch lines only.
    """
    if verbose == "auto":
        stream = sys.stdout if stream is None else stream
        verbose = 1 if getattr(stream, "isatty", lambda: False)() else 2
    return verbose == 1, verbose in (1, 2)


# What the progress line shows besides the total loss: (log key, label).
# The classification term tells whether training goes anywhere; the validation ZSL
# accuracy (of the epoch before) is what model selection follows. The other terms
# are in the epoch line, the CSV and TensorBoard.
WATCHED = (("loss_cls", "cls"), ("val_zsl_acc", "val zsl"))


class StepProgress(keras.callbacks.Callback):
    """One progress line per training step on a terminal, redrawn in place:
    `joint epoch 3/30 step 12/50 ETA 00:05, loss 1.234 cls 1.102 val zsl 41.2% ███▌   `.

    Never wider than the terminal (tqdm reads its width at each redraw); erased at
    the epoch's end (and by `close` when fit stops on an error), so the screen keeps
    only the epoch lines.

    Args:
        stage: the stage's name (the line's first word).
        epochs: the stage's number of epochs.
        terms: the loss terms the stage optimises; a watched term not among them is
            not shown.
        stream: where to draw (default: sys.stdout).
    """

    def __init__(self, stage, epochs, terms=None, stream=None):
        super().__init__()
        self.stage, self.epochs = stage, epochs
        self.watched = [(key, label) for key, label in WATCHED
                        if not key.startswith("loss_") or terms is None or key in terms]
        self.stream = stream
        self._bar = None
        self._last_val = {}
        self._epoch = 0

    def _figures(self, logs):
        values = {**self._last_val, **(logs or {})}
        shown = []
        if "loss" in values:
            shown.append(f"loss {_format(values['loss'])}")
        for key, label in self.watched:
            if key in values:
                value = values[key]
                shown.append(f"{label} {100 * value:.1f}%" if key.endswith("acc")
                             else f"{label} {_format(value)}")
        return " ".join(shown)

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm import tqdm

        self.close()
        self._epoch = epoch
        self._bar = tqdm(
            total=self.params.get("steps") if self.params else None,
            desc=f"{self.stage} epoch {epoch + 1}/{self.epochs}",
            # The bar last: it takes the width left; on a narrow terminal it shrinks
            # first, then the figures are cut from the right.
            bar_format="{desc} step {n_fmt}/{total_fmt} ETA {remaining}{postfix} {bar}",
            file=sys.stdout if self.stream is None else self.stream,
            dynamic_ncols=True, leave=False, mininterval=0.2, unit="step",
        )
        self._bar.set_postfix_str(self._figures({}), refresh=False)

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is None:
            return
        self._bar.set_postfix_str(self._figures(logs), refresh=False)
        self._bar.update(batch + 1 - self._bar.n)

    def on_test_begin(self, logs=None):
        if self._bar is not None:
            self._bar.set_description_str(
                f"{self.stage} epoch {self._epoch + 1}/{self.epochs} validating", refresh=True)

    def on_epoch_end(self, epoch, logs=None):
        self._last_val = {k: v for k, v in (logs or {}).items() if k.startswith("val_")}
        self.close()

    def on_train_end(self, logs=None):
        self.close()

    def close(self):
        """Erases the line (fit ending on an error calls no callback: the caller does)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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
