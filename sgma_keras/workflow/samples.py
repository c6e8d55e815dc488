"""Sample images and class descriptions of a config's dataset, for a first prediction.

`write_samples(cfg, output)` copies a few test images of each unseen class (the classes
no model of the config trains on) to `<output>/images/<class>/`, and writes
`<output>/classes.csv`: one row per class, its name and its semantic vector exactly as
the model holds it (the dataset's attribute order, `data.normalize_semantics` applied),
under a header row naming the attributes. That is the `--classes` file `predict.py`
reads, so

    sgma-samples --config demo --output samples
    sgma-predict --model runs/demo/checkpoints/final.keras samples/images \\
        --classes samples/classes.csv --replace-classes

names the images among the described classes (`--replace-classes`: the file's classes
are already the model's, under the same names). The built-in dataset is generated first
if its cache does not hold it yet.
"""

import csv
import dataclasses
import io
import json
import os
import shutil

import numpy as np

from sgma_keras.atomic_io import write_text_atomic
from sgma_keras.data import load_dataset
from sgma_keras.data.builtin import MANIFEST
from sgma_keras.errors import UserError

CLASSES_FILE = "classes.csv"
IMAGES_FOLDER = "images"
SPLITS = ("test_unseen", "test_seen")


class SamplesError(UserError):
    """A sample set that cannot be written (empty split, output folder in the way)."""


@dataclasses.dataclass
class Samples:
    """What `write_samples` wrote.

    Attributes:
        images: the image folder (`<output>/images`); files: the copied images.
        classes_file: the `--classes` CSV; class_names: its classes, in its order.
        data_folder: where the dataset's images are; dataset: its name; split: the
            split the images come from.
    """

    images: str
    files: list
    classes_file: str
    class_names: list
    data_folder: str
    dataset: str
    split: str


def attribute_names(data):
    """Names of the semantic dimensions: the built-in manifest's, else a1, a2, ..."""
    source = data.source or ""
    if os.path.basename(source) == MANIFEST and os.path.isfile(source):
        with open(source, encoding="utf-8") as handle:
            names = json.load(handle).get("attribute_names")
        if names and len(names) == data.semantic_dim:
            return list(names)
    return [f"a{i + 1}" for i in range(data.semantic_dim)]


def _folder_name(name):
    """A class name as a folder name (path separators and leading dots replaced)."""
    safe = "".join("_" if c in "/\\:" else c for c in name).strip()
    return safe.lstrip(".") or "class"


def classes_csv(names, vectors, attributes):
    """The `--classes` CSV text: a header `name,<attributes>`, one row per class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", *attributes])
    for name, vector in zip(names, vectors):
        writer.writerow([name, *(f"{float(v):.9g}" for v in vector)])
    return buffer.getvalue()


def write_samples(cfg, output, per_class=2, split="test_unseen"):
    """Copies `per_class` images of each class of `split` and writes the classes CSV.

    Args:
        cfg: a resolved config (its `data` section is loaded).
        output: folder to write (`images/` and `classes.csv` inside; created).
        per_class: images per class (the first ones of the split).
        split: "test_unseen" (default: the zero-shot case) or "test_seen".

    Returns:
        `Samples`.
    """
    if split not in SPLITS:
        raise SamplesError(f"split must be one of {', '.join(SPLITS)}; got {split!r}.")
    output = os.path.abspath(os.path.expanduser(os.fspath(output)))
    if os.path.exists(output) and not os.path.isdir(output):
        raise SamplesError(f"Output {output!r} is a file; expected a folder to write "
                           "images/ and classes.csv in.")
    data = load_dataset(cfg["data"])
    images = data.splits.get(split)
    if images is None or not len(images):
        raise SamplesError(f"The {split} split of dataset {data.name!r} holds no images.")
    classes = [int(c) for c in images.classes()]
    chosen = []
    for c in classes:
        index = np.flatnonzero(images.labels == c)[:per_class]
        chosen += [(c, images.paths[i]) for i in index]
    image_folder = os.path.join(output, IMAGES_FOLDER)
    files = []
    for c, path in chosen:
        folder = os.path.join(image_folder, _folder_name(data.class_names[c]))
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, os.path.basename(path))
        shutil.copyfile(path, target)
        files.append(target)
    names = [data.class_names[c] for c in classes]
    classes_file = os.path.join(output, CLASSES_FILE)
    write_text_atomic(classes_file, classes_csv(names, data.semantics[classes],
                                                attribute_names(data)))
    return Samples(image_folder, files, classes_file, names, data.folder, data.name,
                   split)
