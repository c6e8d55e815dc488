"""Shared by the loaders of raw dataset folders and TFDS: protocol splits from a full
image list.

Raw datasets come without a zero-shot protocol, so it is made here:

- seen/unseen classes: from a class split file (`readers.read_class_split`: a JSON
  object or a text list of unseen class names), else the dataset's own default file when
  it has one (AwA2's testclasses.txt), else a seeded random split with
  `unseen_fraction` of the classes unseen.
- test_seen: a seeded `test_seen_fraction` of each seen class's images; trainval: the
  rest of the seen-class images; test_unseen: all unseen-class images.
- train/val: the split file's "val" classes, else a seeded class-disjoint split of the
  seen classes (`val_fraction`).
"""

import os

import numpy as np

from sgma_keras.data import readers
from sgma_keras.data.image_check import handle_bad_images
from sgma_keras.data.zsl_data import DataError
from sgma_keras.data.zsl_data import ImageSplit
from sgma_keras.data.zsl_data import ZeroShotData
from sgma_keras.data.zsl_data import split_images_per_class
from sgma_keras.data.zsl_data import split_seen_classes
from sgma_keras.data.zsl_data import train_val_splits
from sgma_keras.semantics import l2_normalize_rows


def select_semantics(matrix, semantics):
    """"att": rows L2-normalised (the proposed split's `att`); "original_att": as read."""
    if semantics == "att":
        return l2_normalize_rows(matrix)
    if semantics == "original_att":
        return np.asarray(matrix, np.float32)
    raise DataError(f"semantics must be 'att' or 'original_att'; got {semantics!r}.")


def seeded_unseen(num_classes, unseen_fraction, seed):
    if not 0.0 < unseen_fraction < 1.0:
        raise DataError(f"unseen_fraction must be in (0, 1); got {unseen_fraction}.")
    if num_classes < 3:
        raise DataError(
            f"Need at least 3 classes for a zero-shot split; got {num_classes}."
        )
    count = int(np.clip(round(unseen_fraction * num_classes), 1, num_classes - 2))
    rng = np.random.default_rng([seed, 7])
    return np.sort(rng.choice(num_classes, size=count, replace=False))


def assemble(
    name,
    source,
    class_names,
    semantics,
    paths,
    labels,
    class_split=None,
    default_class_split=None,
    unseen_fraction=0.25,
    test_seen_fraction=0.2,
    val_fraction=0.2,
    seed=0,
    bad_images="error",
    part_locs=None,
    part_names=(),
):
    """Builds a validated ZeroShotData from every image of a dataset (module docstring).

    Args:
        name, source: dataset name and the file/folder named in errors.
        class_names, semantics: (C,) names and (C, d) class semantics.
        paths, labels: every image and its 0-based global label.
        class_split: path of a class split file, or None.
        default_class_split: the dataset's own split file, used when it exists and
            `class_split` is None.
        part_locs, part_names: optional ground-truth parts, (N, P, 2).
    """
    labels = np.asarray(labels, np.int64)
    everything = ImageSplit(paths, labels, part_locs)
    keep = handle_bad_images(everything.paths, bad_images, "exists", f"images of {source}")
    everything = everything.select(np.asarray(keep, bool))

    val = None
    split_file = class_split or (
        default_class_split
        if default_class_split and os.path.isfile(default_class_split)
        else None
    )
    if split_file:
        seen, unseen, val = readers.read_class_split(split_file, class_names)
    else:
        unseen = seeded_unseen(len(class_names), unseen_fraction, seed)
        seen = np.setdiff1d(np.arange(len(class_names)), unseen)
    if val is None:
        val = split_seen_classes(seen, val_fraction, seed)[1]

    is_seen = np.isin(everything.labels, seen)
    held = split_images_per_class(everything.labels, test_seen_fraction, seed)
    splits = {
        "trainval": everything.select(is_seen & ~held),
        "test_seen": everything.select(is_seen & held),
        "test_unseen": everything.select(np.isin(everything.labels, unseen)),
    }
    splits["train"], splits["val"] = train_val_splits(splits["trainval"], val)
    return ZeroShotData(
        name=name,
        class_names=class_names,
        semantics=semantics,
        seen_classes=seen,
        unseen_classes=unseen,
        splits=splits,
        part_names=part_names,
        source=source,
    ).validate()
