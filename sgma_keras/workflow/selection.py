"""The choices made on the validation classes after the checkpoint is selected.

Training's selection phase fits on the `train` classes and keeps the best validation
epoch (`best.keras`). On that model's validation predictions this module chooses:

- the head scales: each head's spread (`head_spread`) on the validation images, so
  that the heads enter the fused score (`sgma_keras.model.fuse_scores`) on one scale;
- `gamma_cc`, the weight of the class-center head in it, from `GAMMA_CC_GRID` by
  validation ZSL (or the configured `model.gamma_cc`, measured but not searched);
- the calibration constant of calibrated stacking, by validation H at that `gamma_cc`.

The validation "unseen" classes are the held-out `val` classes and the "seen" ones the
held-out images of the training classes (`protocol.validation_protocol`); test splits
are never read here.
"""

import numpy as np

from sgma_keras import zero_shot
from sgma_keras.model import fuse_scores
from sgma_keras.workflow.split_outputs import collect_predictions, to_numpy
from sgma_keras.workflow.protocol import validation_protocol

# What `choose_on_validation` writes into the run folder's checkpoints/.
CHOICES_FILE = "choices.json"
# Weights of the class-center head tried on standardised heads: 0 is the embedding
# head alone, 16 all but the center head alone.
GAMMA_CC_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 16.0)


def head_spread(scores):
    """A head's typical spread: the standard deviation of its scores over the
    classes, averaged over the images."""
    return float(np.mean(np.std(np.asarray(scores, "float64"), axis=1)))


def fused(pred, gamma_cc, head_scales):
    """The fused scores of recorded head scores (NumPy), as the model computes them."""
    if pred["center_scores"] is None:
        return pred["embedding_scores"]
    return to_numpy(fuse_scores(pred["embedding_scores"], pred["center_scores"], gamma_cc,
                                head_scales))


def choose_on_validation(model, data, cfg):
    """Head scales, gamma_cc and the calibration constant of `model`, chosen on the
    validation split.

    Returns a JSON-ready dict: `head_scales`, `gamma_cc` (`value`, `val_zsl` at each
    weight tried and how it was set) and `calibration` (`gamma`, the validation u/s/H
    before and after).
    """
    proto = validation_protocol(data, cfg)
    leaked = np.intersect1d(np.asarray(model.seen_classes), proto.val_classes)
    if leaked.size:
        raise ValueError(
            f"choose_on_validation: the model was trained on the validation classes "
            f"{leaked[:10].tolist()}; they cannot play the unseen classes.")
    pred = collect_predictions(model, proto.val, cfg, what="validation images")
    scales = model.head_scales
    if pred["center_scores"] is not None:
        scales = (head_spread(pred["embedding_scores"]), head_spread(pred["center_scores"]))
        scales = tuple(v if v > 0 else 1.0 for v in scales)
    configured = cfg["model"]["gamma_cc"]
    if pred["center_scores"] is None:
        tried, how = [model.gamma_cc], "no class-center head: the embedding scores alone"
    elif configured is not None:
        tried, how = [float(configured)], "model.gamma_cc (fixed in the config)"
    else:
        tried, how = list(GAMMA_CC_GRID), ("best validation ZSL over the grid (ties: the "
                                           "weight closest to 1, equal heads)")
    val_zsl = {}
    for gamma_cc in tried:
        val_zsl[gamma_cc], _ = zero_shot.zsl_accuracy(fused(pred, gamma_cc, scales),
                                                      pred["labels"], proto.val_classes)
    value = max(tried, key=lambda g: (val_zsl[g], -abs(g - 1.0)))
    scores = fused(pred, value, scales)
    gamma, _ = zero_shot.choose_calibration(scores, pred["labels"], proto.seen_classes,
                                            proto.val_classes)
    before = zero_shot.gzsl_accuracy(scores, pred["labels"], proto.seen_classes,
                                     proto.val_classes)
    after = zero_shot.gzsl_accuracy(scores, pred["labels"], proto.seen_classes,
                                    proto.val_classes, calibration=gamma)
    return {
        "split": "validation",
        "seen_classes": proto.seen_classes.tolist(),
        "unseen_classes": proto.val_classes.tolist(),
        "num_images": int(len(pred["labels"])),
        "gamma_cc": {"value": float(value), "how": how, "val_zsl": val_zsl[value],
                     "val_zsl_by_gamma_cc": {str(g): z for g, z in val_zsl.items()},
                     },
        "head_scales": list(scales),
        "calibration": {
            "split": "validation",
            "gamma": float(gamma),
            "val_u": before["u"], "val_s": before["s"], "val_h": before["h"],
            "val_cal_u": after["u"], "val_cal_s": after["s"], "val_cal_h": after["h"],
        },
    }
