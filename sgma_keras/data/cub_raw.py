"""Loader for the raw CUB-200-2011 folder (`root` = the CUB_200_2011 folder).

Files read (all as released):
    images.txt: `<image id> <path under images/>`.
    image_class_labels.txt: `<image id> <class id>` (1-based class ids).
    classes.txt: `<class id> <class name>`, e.g. `1 001.Black_footed_Albatross`.
    attributes/class_attribute_labels_continuous.txt: C rows of 312 values (0-100),
        the class semantics (`original_att`; "att" L2-normalises each row).
    parts/parts.txt, parts/part_locs.txt (optional): the 15 part names and
        `<image id> <part id> <x> <y> <visible>` in pixels; turned into `part_locs`
        relative to each image's size, read from the file header with PIL (no decode).
        Invisible parts are NaN.

The zero-shot protocol comes from `raw_common.assemble` (class split file or seeded).
"""

import os

import numpy as np
from PIL import Image

from sgma_keras.data import raw_common
from sgma_keras.data import readers
from sgma_keras.data.zsl_data import DataError

ATTRIBUTE_FILE = os.path.join("attributes", "class_attribute_labels_continuous.txt")


def image_size(path):
    """(width, height) from the image header, or None when unreadable."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # Reported by the missing/bad image checks instead.
        return None


def read_part_locs(root, paths):
    """Returns (part_names, (N, P, 2) relative part centres) or ((), None)."""
    image_ids_count = len(paths)
    names_file = os.path.join(root, "parts", "parts.txt")
    locs_file = os.path.join(root, "parts", "part_locs.txt")
    if not (os.path.isfile(names_file) and os.path.isfile(locs_file)):
        return (), None
    names = readers.read_numbered_table(names_file)
    locs = np.full((image_ids_count, len(names), 2), np.nan, np.float32)
    sizes = {}
    for lineno, line in readers.read_lines(locs_file):
        fields = line.split()
        try:
            image_id, part_id = int(fields[0]), int(fields[1])
            x, y, visible = float(fields[2]), float(fields[3]), float(fields[4])
        except (ValueError, IndexError):
            raise DataError(
                f"{locs_file}, line {lineno}: expected '<image id> <part id> <x> <y> "
                f"<visible>', got {line!r}."
            ) from None
        if not (1 <= image_id <= image_ids_count and 1 <= part_id <= len(names)):
            raise DataError(
                f"{locs_file}, line {lineno}: image id {image_id} or part id {part_id} "
                f"out of range [1, {image_ids_count}] / [1, {len(names)}]."
            )
        if not visible:
            continue
        i = image_id - 1
        if i not in sizes:
            sizes[i] = image_size(paths[i])
        if sizes[i] is not None:
            w, h = sizes[i]
            locs[i, part_id - 1] = (x / w, y / h)
    return names, locs


def load_cub_raw(root, semantics="att", read_parts=True, **protocol):
    """Loads the raw CUB_200_2011 folder; `protocol` goes to `raw_common.assemble`."""
    if not os.path.isdir(root):
        raise DataError(f"CUB root {root!r} is not a folder (data.root).")
    rel_paths = readers.read_numbered_table(os.path.join(root, "images.txt"))
    labels_file = os.path.join(root, "image_class_labels.txt")
    labels = np.asarray(readers.read_numbered_table(labels_file, int), np.int64)
    class_names = readers.read_numbered_table(os.path.join(root, "classes.txt"))
    if len(labels) != len(rel_paths):
        raise DataError(
            f"{labels_file}: {len(labels)} labels; expected one per line of images.txt "
            f"({len(rel_paths)})."
        )
    bad = np.flatnonzero((labels < 1) | (labels > len(class_names)))
    if bad.size:
        raise DataError(
            f"{labels_file}, line {bad[0] + 1}: class id {labels[bad[0]]} out of range; "
            f"expected 1-based ids in [1, {len(class_names)}] (classes.txt)."
        )
    attribute_file = os.path.join(root, ATTRIBUTE_FILE)
    matrix = readers.read_text_matrix(attribute_file)
    if matrix.shape[0] != len(class_names):
        raise DataError(
            f"{attribute_file}: {matrix.shape[0]} rows; expected one per class "
            f"({len(class_names)} in classes.txt)."
        )
    paths = [os.path.join(root, "images", p) for p in rel_paths]
    part_names, part_locs = (
        read_part_locs(root, paths) if read_parts else ((), None)
    )
    return raw_common.assemble(
        name="CUB",
        source=root,
        class_names=class_names,
        semantics=raw_common.select_semantics(matrix, semantics),
        paths=paths,
        labels=labels - 1,
        part_locs=part_locs,
        part_names=part_names,
        **protocol,
    )
