"""Helpers for the data tests: small files of each kind."""

import io
import os

import numpy as np
from PIL import Image


def write_image(path, size=(40, 30), colour=(200, 30, 30), fmt="JPEG"):
    """Writes a small solid image (creating folders); returns the path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, colour).save(path, fmt)
    return str(path)


def truncate(path, keep=0.5):
    """Cuts the file to `keep` of its length (a truncated download)."""
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])


def write_lines(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(str(line) for line in lines) + "\n")


def assert_protocol(data):
    """Checks that hold for every ZeroShotData."""
    data.validate()
    assert not np.intersect1d(data.seen_classes, data.unseen_classes).size
    for key, split in data.splits.items():
        assert split.labels.dtype == np.int64
        assert all(os.path.isabs(p) for p in split.paths), key
    assert set(data.splits["test_unseen"].classes()) <= set(data.unseen_classes)
    assert set(data.splits["trainval"].classes()) <= set(data.seen_classes)


def quietly_corrupt_jpeg(path):
    """A 112-pixel built-in image with 200 random bytes a third of the way in: Pillow
    decodes it without a word, TensorFlow decodes garbage and libjpeg prints "Corrupt
    JPEG data: premature end of data segment" naming no file."""
    from sgma_keras.data.builtin import render_image, sample_classes

    image, _, _ = render_image(sample_classes(8, 0)[0], np.random.default_rng([0, 3, 0]), 112)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    third = len(data) // 3
    noise = np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(data[:third] + noise + data[third + 200:])
    with Image.open(path) as decoded:
        decoded.load()  # what the PIL decode check alone accepts
    return path
