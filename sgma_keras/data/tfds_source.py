"""Loader for TensorFlow Datasets: `caltech_birds2011` and `oxford_flowers102`.

The images are exported once, as their original encoded bytes (no re-encoding), to
`cache_dir/<name>/<split>/<index>.<jpg|png>`, so that the same file-based pipeline
serves every source. A manifest (labels, class names) is written last and atomically;
an export is reused when its manifest and files are complete. The export holds an OS
lock on `cache_dir/<name>.lock`: of two processes that need it at once, one exports and
the other waits, then reuses it.

Class names: the `label` feature's names, or for caltech_birds2011 (whose labels have
no names) the `label_name` text of the examples. TFDS has no class semantics: a
semantic matrix file (`semantics_file`, see `readers.read_semantic_matrix`) is
required. All TFDS splits are pooled; the zero-shot protocol comes from
`raw_common.assemble`. Nothing is downloaded unless `download` is true.
"""

import json
import logging
import os

import numpy as np

from sgma_keras.atomic_io import exclusive_lock, write_bytes_atomic
from sgma_keras.data import raw_common
from sgma_keras.data import readers
from sgma_keras.data.zsl_data import DataError

TFDS_SPLITS = {
    "caltech_birds2011": ("train", "test"),
    "oxford_flowers102": ("train", "validation", "test"),
}
_MANIFEST = "manifest.json"

logger = logging.getLogger("sgma_keras.data")


def _extension(data):
    return ".png" if data.startswith(b"\x89PNG") else ".jpg"


def _complete_export(out_dir):
    """(paths, labels, class_names) of a complete export in `out_dir`, else None."""
    manifest_path = os.path.join(out_dir, _MANIFEST)
    if not os.path.isfile(manifest_path):
        return None
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    paths = [os.path.join(out_dir, p) for p in manifest["files"]]
    if not all(os.path.isfile(p) for p in paths):
        return None
    return paths, np.asarray(manifest["labels"], np.int64), manifest["class_names"]


def export_tfds_images(name, cache_dir, data_dir=None, download=False):
    """Exports (or reuses) the images of TFDS dataset `name`.

    Returns:
        (paths, 0-based labels, class_names).
    """
    if name not in TFDS_SPLITS:
        raise DataError(f"tfds.name must be one of {sorted(TFDS_SPLITS)}; got {name!r}.")
    if not cache_dir:
        raise DataError("tfds source needs data.tfds.cache_dir to export images to.")
    out_dir = os.path.join(cache_dir, name)
    found = _complete_export(out_dir)
    if found is not None:
        return found
    os.makedirs(cache_dir, exist_ok=True)

    def waiting():
        logger.info("Waiting for another process that exports %s to %s", name, out_dir)

    with exclusive_lock(os.path.join(cache_dir, f"{name}.lock"), waiting):
        # Read again under the lock: the process we waited for may have exported it.
        found = _complete_export(out_dir)
        if found is not None:
            return found
        return _export(name, out_dir, data_dir, download)


def _export(name, out_dir, data_dir, download):
    """Writes the images of every split, then the manifest (call with the lock held)."""
    import tensorflow_datasets as tfds

    manifest_path = os.path.join(out_dir, _MANIFEST)
    if os.path.exists(manifest_path):  # an incomplete export: not to be reused
        os.remove(manifest_path)
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    label_feature = builder.info.features["label"]
    num_classes = label_feature.num_classes
    names = list(label_feature.names)
    # Keep the encoded bytes; skip decoding the (unused) segmentation masks too.
    decoders = {
        key: tfds.decode.SkipDecoding()
        for key in ("image", "segmentation_mask")
        if key in builder.info.features
    }
    text_names = {}
    files, labels = [], []
    for split in TFDS_SPLITS[name]:
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        try:
            ds = builder.as_dataset(split=split, decoders=decoders)
        except Exception as e:  # TFDS raises assorted errors when data is absent.
            raise DataError(
                f"TFDS dataset {name!r} split {split!r} is not available in data_dir "
                f"{data_dir or '~/tensorflow_datasets'} ({type(e).__name__}: {e}). "
                "Prepare it there first or set data.tfds.download."
            ) from None
        for i, example in enumerate(tfds.as_numpy(ds)):
            data, label = bytes(example["image"]), int(example["label"])
            rel = f"{split}/{i:05d}{_extension(data)}"
            write_bytes_atomic(os.path.join(out_dir, rel), data, fsync=False)
            files.append(rel)
            labels.append(label)
            if "label_name" in example:
                text_names.setdefault(label, example["label_name"].decode("utf-8"))
    if names == [str(i) for i in range(num_classes)]:  # Unnamed labels.
        names = [text_names.get(i, f"class_{i + 1:03d}") for i in range(num_classes)]
    manifest = {"name": name, "files": files, "labels": labels, "class_names": names}
    write_bytes_atomic(manifest_path, json.dumps(manifest).encode("utf-8"))
    return [os.path.join(out_dir, p) for p in files], np.asarray(labels, np.int64), names


def load_tfds(
    name,
    cache_dir,
    semantics_file,
    semantics_key=None,
    data_dir=None,
    download=False,
    semantics="att",
    **protocol,
):
    """Loads a TFDS dataset as ZeroShotData; `protocol` goes to `raw_common.assemble`."""
    if not semantics_file:
        raise DataError(
            "tfds source needs a semantic matrix file: set data.tfds.semantics_file."
        )
    paths, labels, class_names = export_tfds_images(name, cache_dir, data_dir, download)
    matrix = readers.read_semantic_matrix(semantics_file, len(class_names), semantics_key)
    return raw_common.assemble(
        name=name,
        source=os.path.join(cache_dir, name),
        class_names=class_names,
        semantics=raw_common.select_semantics(matrix, semantics),
        paths=paths,
        labels=labels,
        **protocol,
    )
