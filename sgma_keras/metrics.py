"""Zero-shot accuracy metrics (per-class mean top-1, ZSL and GZSL).

The zero-shot protocol (Xian et al., "Zero-Shot Learning - The Good, the Bad
and the Ugly") scores a model by *per-class mean* top-1 accuracy: the accuracy
of each class is computed on its own and the class accuracies are averaged, so
that frequent classes do not dominate. This differs from the per-sample
accuracy reported by `keras.metrics.SparseCategoricalAccuracy` whenever the
test classes are imbalanced.

Conventions (shared with the model and `sgma_keras.zero_shot`):

- labels are *global* class ids, `0 <= y < num_classes`, over all classes of
  the dataset (seen and unseen);
- `y_pred` are scores of shape `(batch, num_classes)` over all classes, higher
  meaning more likely;
- a prediction is the argmax of the scores restricted to a set of candidate
  classes (the unseen classes for ZSL, seen + unseen for GZSL).

The metrics keep per-class `correct` and `total` counts in (non-trainable)
vector variables, so they are exact over a whole `evaluate()` pass whatever
the batching, and they only use `keras.ops` so that they run on TensorFlow,
JAX and PyTorch, inside or outside a compiled (jit) step. The prediction rule,
the per-class mean and H are `sgma_keras.zero_shot`'s functions called with
`keras.ops`, so these metrics and the NumPy evaluation report one rule
(`tests/test_accuracy_parity.py`).
"""

import keras
import numpy as np
from keras import ops

from sgma_keras import zero_shot

__all__ = ["PerClassAccuracy", "ZSLAccuracy", "GZSLAccuracy"]


def _as_id_list(classes):
    """Normalises a class-id collection to a sorted list of Python ints."""
    if classes is None:
        return None
    return sorted({int(c) for c in np.asarray(classes).reshape(-1)})


class _PerClassCounts(keras.metrics.Metric):
    """Accumulates per-class correct/total counts of restricted-argmax predictions.

    Base class of the public metrics; subclasses only differ in `result()`.

    Args:
        num_classes: number of classes the scores are over.
        classes: class ids whose samples are counted (`None`: all). Samples
            with other labels are ignored.
        candidates: class ids the argmax is taken over (`None`: all).
        calibration: constant subtracted from the scores of
            `calibrated_classes` before the argmax (calibrated stacking,
            Chao et al. 2016).
        calibrated_classes: class ids whose scores are lowered by
            `calibration` (`None`: none).
    """

    def __init__(
        self,
        num_classes,
        classes=None,
        candidates=None,
        calibration=0.0,
        calibrated_classes=None,
        name=None,
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        # Accuracies go up: Keras callbacks in mode "auto" read this (MonitorCallback).
        self._direction = "up"
        num_classes = int(num_classes)
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be positive. Received: {num_classes}")
        self.num_classes = num_classes
        self.classes = _as_id_list(classes)
        self.candidates = _as_id_list(candidates)
        self.calibration = float(calibration)
        self.calibrated_classes = _as_id_list(calibrated_classes)

        # Masks are numpy constants, baked into the traced step: changing
        # `calibration` needs a new metric (and a recompile).
        self._class_mask = zero_shot.class_mask(num_classes, classes, "classes")
        # The prediction rule of `sgma_keras.zero_shot`: one additive bias does
        # both the calibration and the restriction to candidates.
        self._score_bias = zero_shot.score_bias(
            num_classes, candidates, self.calibration, calibrated_classes
        ).astype("float32")

        self.correct = self.add_variable(
            shape=(num_classes,),
            initializer="zeros",
            dtype="float32",
            name="correct",
        )
        self.total = self.add_variable(
            shape=(num_classes,),
            initializer="zeros",
            dtype="float32",
            name="total",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        y_hat = zero_shot.predict_classes(
            ops.cast(y_pred, "float32"), ops.convert_to_tensor(self._score_bias), xp=ops
        )
        y_hat = ops.cast(y_hat, "int32")
        hit = ops.cast(ops.equal(y_hat, y_true), "float32")

        # Weight of each sample: 0 when its class is not counted.
        weight = ops.take(ops.convert_to_tensor(self._class_mask), y_true)
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            weight = weight * ops.reshape(sample_weight, (-1,))
        # Per-class sums by multiply + sum rather than a matmul, which may
        # run at reduced precision (TF32, bf16 passes) on accelerators.
        one_hot = ops.one_hot(y_true, self.num_classes, dtype="float32")
        self.total.assign_add(ops.sum(one_hot * weight[:, None], axis=0))
        self.correct.assign_add(ops.sum(one_hot * (weight * hit)[:, None], axis=0))

    def per_class_accuracy(self):
        """Per-class accuracy vector (0 for classes without samples)."""
        return zero_shot.class_accuracies(
            ops.convert_to_tensor(self.correct), ops.convert_to_tensor(self.total), xp=ops
        )

    def _mean_over(self, mask):
        """Per-class mean accuracy over the classes in `mask` that have samples."""
        mean = zero_shot.mean_class_accuracy(
            ops.convert_to_tensor(self.correct),
            ops.convert_to_tensor(self.total),
            None if mask is None else ops.convert_to_tensor(mask),
            xp=ops,
        )
        return ops.cast(mean, self.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
        }


@keras.saving.register_keras_serializable(package="sgma_keras")
class PerClassAccuracy(_PerClassCounts):
    """Per-class mean top-1 accuracy, with the argmax restricted to candidates.

    Each class in `classes` that has at least one sample contributes its own
    accuracy `correct_c / total_c`; the result is the mean of those.
    Samples whose label is not in `classes` are ignored.

    Args:
        num_classes: number of classes the scores `y_pred` are over.
        classes: global class ids to evaluate on (`None`: all classes).
        candidates: global class ids the prediction is chosen among (`None`:
            all classes).
        calibration: constant subtracted from the scores of
            `calibrated_classes` before the argmax.
        calibrated_classes: class ids lowered by `calibration` (typically the
            seen classes; `None`: no calibration).
        name: name of the metric.
        dtype: dtype of the result.

    Example:

    >>> m = PerClassAccuracy(num_classes=3)
    >>> # Class 0: 2 samples, 1 right; class 1: 1 sample, right.
    >>> m.update_state([0, 0, 1], [[1., 0., 0.], [0., 1., 0.], [0., 1., 0.]])
    >>> float(m.result())  # (1/2 + 1/1) / 2, while per-sample accuracy is 2/3
    0.75
    """

    def __init__(
        self,
        num_classes,
        classes=None,
        candidates=None,
        calibration=0.0,
        calibrated_classes=None,
        name="per_class_acc",
        dtype=None,
    ):
        super().__init__(
            num_classes,
            classes=classes,
            candidates=candidates,
            calibration=calibration,
            calibrated_classes=calibrated_classes,
            name=name,
            dtype=dtype,
        )

    def result(self):
        return self._mean_over(None)

    def get_config(self):
        return {
            **super().get_config(),
            "classes": self.classes,
            "candidates": self.candidates,
            "calibration": self.calibration,
            "calibrated_classes": self.calibrated_classes,
        }


@keras.saving.register_keras_serializable(package="sgma_keras")
class ZSLAccuracy(PerClassAccuracy):
    """Conventional zero-shot accuracy: unseen samples, unseen candidates.

    Per-class mean top-1 over the unseen classes, predicting among the unseen
    classes only (the scores of seen classes are ignored).

    Args:
        num_classes: number of classes the scores are over (seen + unseen).
        unseen_classes: global ids of the unseen classes.
        name: name of the metric.
        dtype: dtype of the result.

    Example:

    >>> m = ZSLAccuracy(num_classes=3, unseen_classes=[1, 2])
    >>> # Seen class 0 has the top score, but only classes 1 and 2 compete.
    >>> m.update_state([1, 2], [[9., 2., 1.], [9., 2., 1.]])
    >>> float(m.result())
    0.5
    """

    def __init__(self, num_classes, unseen_classes, name="zsl_acc", dtype=None):
        super().__init__(
            num_classes,
            classes=unseen_classes,
            candidates=unseen_classes,
            name=name,
            dtype=dtype,
        )
        self.unseen_classes = self.classes

    def get_config(self):
        return {
            "name": self.name,
            "dtype": self.dtype,
            "num_classes": self.num_classes,
            "unseen_classes": self.unseen_classes,
        }


@keras.saving.register_keras_serializable(package="sgma_keras")
class GZSLAccuracy(_PerClassCounts):
    """Generalized zero-shot accuracy: u, s and their harmonic mean H.

    Predictions are the argmax over all seen + unseen classes, after the
    seen-class scores are lowered by `calibration` (calibrated stacking).
    Fed with test_seen and test_unseen samples together (in one `evaluate`
    pass), it reports:

    - `s`: per-class mean accuracy over the samples of seen classes;
    - `u`: per-class mean accuracy over the samples of unseen classes;
    - `H = 2 u s / (u + s)` (0 when `u + s = 0`).

    `result()` is a dict with keys `f"{name}_u"`, `f"{name}_s"` and
    `f"{name}_h"`. Keras flattens dict results into the logs of `fit` and
    `evaluate`, so with the default name the logs get `gzsl_u`, `gzsl_s` and
    `gzsl_h` (also when the metric is attached to one output of a
    multi-output model, where scalar metrics get the output name as prefix,
    e.g. `scores_zsl_acc`, but dict results keep their own keys).

    Args:
        num_classes: number of classes the scores are over.
        seen_classes: global ids of the seen (training) classes.
        unseen_classes: global ids of the unseen classes.
        calibration: constant subtracted from the seen-class scores. Choose it
            on validation data (`evaluation_utils.choose_calibration`), never
            on the test set.
        name: name of the metric, prefix of the result keys.
        dtype: dtype of the results.

    Example:

    >>> m = GZSLAccuracy(num_classes=3, seen_classes=[0], unseen_classes=[1, 2])
    >>> m.update_state([0, 1, 2], [[5., 1., 0.], [5., 1., 0.], [0., 0., 1.]])
    >>> {k: float(v) for k, v in m.result().items()}
    {'gzsl_u': 0.5, 'gzsl_s': 1.0, 'gzsl_h': 0.6666666865348816}
    """

    def __init__(
        self,
        num_classes,
        seen_classes,
        unseen_classes,
        calibration=0.0,
        name="gzsl",
        dtype=None,
    ):
        seen = _as_id_list(seen_classes)
        unseen = _as_id_list(unseen_classes)
        if seen is None or unseen is None or not seen or not unseen:
            raise ValueError(
                "`seen_classes` and `unseen_classes` must both be non-empty."
            )
        overlap = set(seen) & set(unseen)
        if overlap:
            raise ValueError(
                "`seen_classes` and `unseen_classes` must be disjoint. "
                f"Both contain: {sorted(overlap)[:10]}"
            )
        both = sorted(seen + unseen)
        super().__init__(
            num_classes,
            classes=both,
            candidates=both,
            calibration=calibration,
            calibrated_classes=seen,
            name=name,
            dtype=dtype,
        )
        self.seen_classes = seen
        self.unseen_classes = unseen
        self._seen_mask = zero_shot.class_mask(num_classes, seen, "seen_classes")
        self._unseen_mask = zero_shot.class_mask(num_classes, unseen, "unseen_classes")

    def result(self):
        u = self._mean_over(self._unseen_mask)
        s = self._mean_over(self._seen_mask)
        h = zero_shot.harmonic_mean(u, s, xp=ops)
        return {
            f"{self.name}_u": u,
            f"{self.name}_s": s,
            f"{self.name}_h": h,
        }

    def get_config(self):
        return {
            **super().get_config(),
            "seen_classes": self.seen_classes,
            "unseen_classes": self.unseen_classes,
            "calibration": self.calibration,
        }
