"""Loader for the raw Oxford Flowers 102 folder (`root` holds jpg/ and imagelabels.mat).

Files read:
    imagelabels.mat: `labels`, 1 x N, 1-based class ids of jpg/image_00001.jpg ...
    jpg/image_%05d.jpg: the images, numbered from 1 like the labels.
    a semantic matrix file (`semantics_file`, required; the dataset has none): see
        `readers.read_semantic_matrix` (.npy (C, d), text rows, or .mat with (d, C)
        columns, e.g. FLO's att_splits.mat `att` with the 1024-d text embeddings).
    a class names file (`class_names_file`, optional): one name per line in label
        order; default "class_001" ... "class_102" (numbered like the labels, as for
        FLO's proposed split).

The zero-shot protocol comes from `raw_common.assemble` (a class split file or seeded).
"""

import os

from sgma_keras.data import matfile
from sgma_keras.data import raw_common
from sgma_keras.data import readers
from sgma_keras.data.zsl_data import DataError


def load_flowers_raw(
    root,
    semantics_file,
    semantics_key=None,
    class_names_file=None,
    semantics="att",
    **protocol,
):
    """Loads the raw Flowers 102 folder; `protocol` goes to `raw_common.assemble`."""
    if not os.path.isdir(root):
        raise DataError(f"Flowers root {root!r} is not a folder (data.root).")
    if not semantics_file:
        raise DataError(
            "flowers_raw needs a semantic matrix file: set data.flowers.semantics_file."
        )
    labels_file = os.path.join(root, "imagelabels.mat")
    values = matfile.read_mat(labels_file, ["labels"])
    if "labels" not in values:
        raise DataError(f"{labels_file}: missing key 'labels'.")
    labels = matfile.as_int_vector(values["labels"], labels_file, "labels")
    if class_names_file:
        class_names = readers.read_name_list(class_names_file)
    else:
        class_names = [f"class_{i:03d}" for i in range(1, int(labels.max()) + 1)]
    if labels.min() < 1 or labels.max() > len(class_names):
        raise DataError(
            f"{labels_file}, key 'labels': values in [{labels.min()}, {labels.max()}]; "
            f"expected 1-based class ids in [1, {len(class_names)}]."
        )
    matrix = readers.read_semantic_matrix(semantics_file, len(class_names), semantics_key)
    paths = [
        os.path.join(root, "jpg", f"image_{i:05d}.jpg") for i in range(1, labels.size + 1)
    ]
    return raw_common.assemble(
        name="FLO",
        source=root,
        class_names=class_names,
        semantics=raw_common.select_semantics(matrix, semantics),
        paths=paths,
        labels=labels - 1,
        **protocol,
    )
