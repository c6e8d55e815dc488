"""A model run over a split of images, in order: scores, boxes, attention maps.

`collect_predictions` is what evaluation and calibration read; the images are
decoded by the same pipeline as in training (`sgma_keras.data.pipeline`), unshuffled,
so row i of every output is `split.paths[i]`.
"""

import keras
import numpy as np

from sgma_keras.data.image_check import handle_bad_images, iterate_naming_bad_images
from sgma_keras.data.pipeline import make_dataset
from sgma_keras.workflow.build import eval_batch_size


def readable_split(split, cfg, what):
    """The split without unreadable images (bad_images="skip") or an error."""
    keep = np.asarray(handle_bad_images(split.paths, cfg["data"]["bad_images"], "header", what), bool)
    return split if keep.all() else split.select(keep)


def to_numpy(x):
    """A backend tensor (or array) as a NumPy array."""
    return np.asarray(keras.ops.convert_to_numpy(x))


def collect_predictions(model, split, cfg, keep=(), what="images"):
    """Runs the model over `split` in order.

    Args:
        keep: indices (into the readable split) whose images and attention
            maps are also returned (for the figures).

    Returns:
        dict: `split` (the readable images), `labels` (N,), `scores`
        (N, num_classes) float32 (the fused score), `embedding_scores` and
        `center_scores` (each head alone, or None), `boxes` (N, K, 3) or None, and `kept`:
        `images`, `attention_maps` (or None), `boxes` of the `keep` indices.
    """
    split = readable_split(split, cfg, what)
    ds = make_dataset(
        split,
        image_size=cfg["input"]["image_size"],
        batch_size=eval_batch_size(cfg),
        training=False,
        deterministic=True,  # outputs in split order (part_locs line up)
        seed=cfg["seed"],
        check="none",
    )
    keep = set(int(i) for i in keep)
    scores, boxes, labels = [], [], []
    heads = {"embedding_scores": [], "center_scores": []}
    kept = {"images": [], "attention_maps": [], "boxes": []}
    start = 0
    for images, y in iterate_naming_bad_images(ds, split.paths, what):
        images = images.numpy()
        out = model.predict_on_batch(images)
        batch_scores = to_numpy(out["scores"]).astype("float32")
        scores.append(batch_scores)
        for head, rows in heads.items():
            if head in out:
                rows.append(to_numpy(out[head]).astype("float32"))
        labels.append(y.numpy().astype("int64"))
        batch_boxes = to_numpy(out["boxes"]) if "boxes" in out else None
        if batch_boxes is not None:
            boxes.append(batch_boxes.astype("float32"))
        rows = [i - start for i in range(start, start + len(images)) if i in keep]
        if rows:
            kept["images"].append(images[rows])
            if "attention_maps" in out:
                kept["attention_maps"].append(to_numpy(out["attention_maps"])[rows])
            if batch_boxes is not None:
                kept["boxes"].append(batch_boxes[rows])
        start += len(images)
    labels = np.concatenate(labels)
    if not np.array_equal(labels, split.labels):
        raise RuntimeError("evaluation: the input pipeline changed the order of the images.")
    return {
        "split": split,
        "labels": labels,
        "scores": np.concatenate(scores),
        **{head: (np.concatenate(rows) if rows else None) for head, rows in heads.items()},
        "boxes": np.concatenate(boxes) if boxes else None,
        "kept": {k: (np.concatenate(v) if v else None) for k, v in kept.items()},
    }
