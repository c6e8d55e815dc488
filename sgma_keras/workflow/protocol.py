"""Which images and classes each phase sees: fit, validation (model selection), test.

Model selection never looks at test classes. With `train.fit_classes = "train"` the
model trains on the `train` classes; the held-out `val` classes play the unseen classes
and a share of each training class's images (`train.val_seen_fraction`) gives the
validation seen accuracy. With `"trainval"` (the final refit) there is no validation.
"""

import dataclasses

import numpy as np

from sgma_keras.data.zsl_data import ImageSplit, split_images_per_class


@dataclasses.dataclass
class Protocol:
    """The images and classes each part of training sees."""

    fit: ImageSplit
    val: ImageSplit | None
    seen_classes: np.ndarray  # classes the model is trained on
    val_classes: np.ndarray  # classes playing "unseen" during validation


def protocol(data, train_cfg, seed=0):
    """Fit/validation splits for `train.fit_classes` (never touching test data)."""
    if train_cfg["fit_classes"] == "trainval":
        return Protocol(data.splits["trainval"], None, np.asarray(data.seen_classes), np.array([], "int64"))
    train, val_unseen = data.splits["train"], data.splits["val"]
    held = split_images_per_class(train.labels, train_cfg["val_seen_fraction"], seed)
    fit = train.select(~held)
    val_seen = train.select(held)
    val = ImageSplit(
        paths=val_seen.paths + val_unseen.paths,
        labels=np.concatenate([val_seen.labels, val_unseen.labels]),
    )
    return Protocol(fit, val, np.unique(fit.labels), np.unique(val_unseen.labels))


def validation_protocol(data, cfg):
    """The validation split of `protocol` with the classes it plays.

    For `train.fit_classes = "trainval"` (no validation split during training) the
    `train`/`val` protocol of the same seed is used (to choose a calibration).
    """
    return protocol(data, {**cfg["train"], "fit_classes": "train"}, cfg["seed"])


def gzsl_test_split(data):
    """test_seen + test_unseen in one split (seen images first), for GZSL."""
    seen, unseen = data.splits["test_seen"], data.splits["test_unseen"]
    return ImageSplit(
        paths=seen.paths + unseen.paths,
        labels=np.concatenate([seen.labels, unseen.labels]),
    )
