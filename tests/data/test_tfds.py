import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from sgma_keras.data.tfds_source import export_tfds_images  # noqa: E402
from sgma_keras.data.tfds_source import load_tfds  # noqa: E402
from tests.data.helpers import assert_protocol  # noqa: E402


def _jpeg(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def _fake_as_dataset(per_split):
    """An `as_dataset` returning `per_split` encoded JPEGs, labels cycling over 0..3."""

    def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
        examples = {
            "image": [_jpeg((10 * i, 0, 0)) for i in range(per_split)],
            "label": np.arange(per_split, dtype=np.int64) % 4,
        }
        if "label_name" in self.info.features:
            examples["label_name"] = [f"bird_{i % 4}" for i in range(per_split)]
        return tf.data.Dataset.from_tensor_slices(examples)

    return as_dataset


def test_flowers_random_mock_export(tmp_path):
    with tfds.testing.mock_data(num_examples=3):
        paths, labels, names = export_tfds_images("oxford_flowers102", str(tmp_path))
    assert len(paths) == 9 and labels.shape == (9,)  # 3 splits x 3 examples.
    assert names[0] == "pink primrose" and len(names) == 102
    assert all(os.path.isfile(p) for p in paths)
    # Reused from the cache: no TFDS call is needed any more.
    again = export_tfds_images("oxford_flowers102", str(tmp_path))
    assert again[0] == paths


@pytest.mark.parametrize(
    "name,per_split,class_name",
    [("oxford_flowers102", 4, None), ("caltech_birds2011", 6, "bird_{}")],
)
def test_load_tfds(tmp_path, name, per_split, class_name):
    with tfds.testing.mock_data(as_dataset_fn=_fake_as_dataset(per_split)):
        _, labels, names = export_tfds_images(name, str(tmp_path / "cache"))
    if class_name:
        assert names[:4] == [class_name.format(i) for i in range(4)]
        assert names[4] == "class_005"  # No example gave it a name.
    semantics = np.random.default_rng(0).normal(size=(len(names), 5))
    np.save(tmp_path / "sem.npy", semantics)
    split = {"seen": names[:3], "unseen": [names[3]], "val": [names[0]]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    data = load_tfds(
        name,
        str(tmp_path / "cache"),
        str(tmp_path / "sem.npy"),
        class_split=str(tmp_path / "split.json"),
        test_seen_fraction=0.34,
    )
    assert_protocol(data)
    assert data.unseen_classes.tolist() == [3]
    assert len(data.splits["test_unseen"]) == np.sum(labels == 3)
    assert data.splits["trainval"].paths[0].endswith(".jpg")


def test_two_exports_of_one_dataset_at_once_export_it_once(tmp_path):
    import logging
    import threading

    from sgma_keras.data import tfds_source

    waiting = threading.Event()
    calls = []

    class Seen(logging.Handler):
        def emit(self, record):
            if "Waiting for another process" in record.getMessage():
                waiting.set()

    fake = _fake_as_dataset(3)

    def as_dataset(self, split, **kwargs):
        calls.append(split)
        if len(calls) == 1:  # the first export holds on until the second one waits
            waiting.wait(timeout=20)
        return fake(self, split, **kwargs)

    handler = Seen()
    tfds_source.logger.addHandler(handler)
    tfds_source.logger.setLevel(logging.INFO)
    results, errors = [], []

    def export():
        try:
            results.append(export_tfds_images("oxford_flowers102", str(tmp_path)))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    try:
        with tfds.testing.mock_data(as_dataset_fn=as_dataset):
            threads = [threading.Thread(target=export) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
    finally:
        tfds_source.logger.removeHandler(handler)
    assert not errors and len(results) == 2
    assert waiting.is_set()
    assert calls == ["train", "validation", "test"]  # exported once
    assert results[0][0] == results[1][0] and results[0][2] == results[1][2]
    assert np.array_equal(results[0][1], results[1][1])
