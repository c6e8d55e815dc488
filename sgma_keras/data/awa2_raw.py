"""Loader for the raw Animals with Attributes 2 folder (`root` = Animals_with_Attributes2).

Files read (all as released):
    classes.txt: `<class id> <class name>` (tab separated), e.g. `1	antelope`.
    predicates.txt: `<id> <attribute name>` (85 attributes).
    predicate-matrix-continuous.txt: C rows of 85 values, the class semantics
        (`original_att`; "att" L2-normalises each row).
    JPEGImages/<class name>/*.jpg: the images of each class (sorted by file name).
    testclasses.txt (optional): the proposed split's 10 unseen classes, used as the class
        split when `class_split` is not given.

The zero-shot protocol comes from `raw_common.assemble`.
"""

import os

import numpy as np

from sgma_keras.data import raw_common
from sgma_keras.data import readers
from sgma_keras.data.zsl_data import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def list_images(folder):
    """Sorted image files of `folder` (by extension, case-insensitive)."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: class image folder not found.")
    names = sorted(
        n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)
    )
    return [os.path.join(folder, n) for n in names]


def load_awa2_raw(root, semantics="att", **protocol):
    """Loads the raw AwA2 folder; `protocol` goes to `raw_common.assemble`."""
    if not os.path.isdir(root):
        raise DataError(f"AwA2 root {root!r} is not a folder (data.root).")
    class_names = readers.read_numbered_table(os.path.join(root, "classes.txt"))
    predicates = readers.read_numbered_table(os.path.join(root, "predicates.txt"))
    matrix_file = os.path.join(root, "predicate-matrix-continuous.txt")
    matrix = readers.read_text_matrix(matrix_file)
    if matrix.shape != (len(class_names), len(predicates)):
        raise DataError(
            f"{matrix_file}: shape {matrix.shape}; expected ({len(class_names)}, "
            f"{len(predicates)}): one row per class in classes.txt, one column per "
            "attribute in predicates.txt."
        )
    paths, labels = [], []
    for label, name in enumerate(class_names):
        images = list_images(os.path.join(root, "JPEGImages", name))
        paths += images
        labels += [label] * len(images)
    protocol.setdefault("default_class_split", os.path.join(root, "testclasses.txt"))
    return raw_common.assemble(
        name="AWA2",
        source=root,
        class_names=class_names,
        semantics=raw_common.select_semantics(matrix, semantics),
        paths=paths,
        labels=np.asarray(labels, np.int64),
        **protocol,
    )
