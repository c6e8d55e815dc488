import logging
import os

import keras
import numpy as np
import pytest

from sgma_keras.data.pipeline import make_dataset
from sgma_keras.data.zsl_data import DataError
from sgma_keras.data.zsl_data import ImageSplit
from tests.data.helpers import quietly_corrupt_jpeg
from tests.data.helpers import truncate
from tests.data.helpers import write_image

SIZE = 32


def _arrays(ds):
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_shapes_dtypes_ranges(builtin_data):
    split = builtin_data.splits["test_seen"]
    ds = make_dataset(split, SIZE, 5, training=False)
    for x, y in ds:
        assert x.dtype.name == "float32" and y.dtype.name == "int32"
        assert x.shape[1:] == (SIZE, SIZE, 3) and x.shape[0] == y.shape[0] <= 5
    images, labels = _arrays(ds)
    assert len(images) == len(split)  # Evaluation keeps the last partial batch ...
    np.testing.assert_array_equal(labels, split.labels)  # ... and the order.
    assert images.min() >= 0 and images.max() <= 255 and images.max() > 100

    train = make_dataset(builtin_data.splits["trainval"], SIZE, 8, training=True)
    images, labels = _arrays(train)
    assert len(images) == len(builtin_data.splits["trainval"]) // 8 * 8
    assert images.min() >= 0 and images.max() <= 255
    assert set(labels) <= set(builtin_data.seen_classes)


def test_deterministic_mode(builtin_data):
    split = builtin_data.splits["trainval"]

    def first_epochs(seed):
        ds = make_dataset(split, SIZE, 8, training=True, deterministic=True, seed=seed)
        return _arrays(ds.take(3)), _arrays(ds.take(3))

    (a1, la1), (a2, la2) = first_epochs(1)
    (b1, lb1), _ = first_epochs(1)
    (c1, lc1), _ = first_epochs(2)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(la1, lb1)
    assert not np.array_equal(la1, lc1)  # Another seed, another order.
    assert not np.array_equal(la1, la2)  # Each epoch is reshuffled.


def test_augmentation_only_in_training(builtin_data):
    split = builtin_data.splits["test_seen"]
    n = len(split)
    evaluation = _arrays(make_dataset(split, SIZE, n, training=False))[0]
    again = _arrays(make_dataset(split, SIZE, n, training=False, augment=True))[0]
    np.testing.assert_array_equal(evaluation, again)
    plain = make_dataset(split, SIZE, n, training=True, shuffle=False, augment=False)
    np.testing.assert_allclose(_arrays(plain)[0], evaluation, atol=1e-3)
    augmented = make_dataset(
        split, SIZE, n, training=True, shuffle=False, deterministic=True
    )
    images = _arrays(augmented)[0]
    assert images.shape == evaluation.shape
    changed = np.abs(images - evaluation).reshape(n, -1).mean(axis=1) > 1.0
    assert changed.mean() > 0.8
    assert images.min() >= 0 and images.max() <= 255


def test_cache(builtin_data, tmp_path):
    split = builtin_data.splits["test_seen"]
    plain = _arrays(make_dataset(split, SIZE, 4, training=False))[0]
    for cache in (True, str(tmp_path / "cache")):
        ds = make_dataset(split, SIZE, 4, training=False, cache=cache)
        for _ in range(2):  # Filled on the first pass, read on the second.
            np.testing.assert_allclose(_arrays(ds)[0], plain, atol=0.51)
    train = make_dataset(split, SIZE, 4, training=True, cache=True, repeat=True)
    x, y = next(iter(train))
    assert x.shape == (4, SIZE, SIZE, 3)


def _bad_files_split(tmp_path):
    good = [write_image(str(tmp_path / f"ok{i}.jpg")) for i in range(4)]
    truncated = write_image(str(tmp_path / "cut.jpg"), size=(64, 64))
    truncate(truncated)
    text = str(tmp_path / "notes.jpg")
    with open(text, "w") as f:
        f.write("not an image")
    missing = str(tmp_path / "gone.jpg")
    paths = good + [truncated, text, missing]
    return ImageSplit(paths, np.arange(len(paths)) % 2), good


def test_bad_files_error_names_them(tmp_path):
    split, _ = _bad_files_split(tmp_path)
    with pytest.raises(DataError) as info:
        make_dataset(split, SIZE, 2, training=False)
    message = str(info.value)
    assert "3 of 7 images are missing or unreadable" in message
    assert "cut.jpg: truncated JPEG" in message
    assert "notes.jpg: not a JPEG/PNG" in message
    assert "gone.jpg: file not found" in message


def test_bad_files_skip(tmp_path, caplog):
    split, good = _bad_files_split(tmp_path)
    with caplog.at_level(logging.WARNING, logger="sgma_keras.data"):
        ds = make_dataset(split, SIZE, 2, training=False, bad_images="skip")
    assert "Skipping 3 of 7 images" in caplog.text
    images, labels = _arrays(ds)
    assert len(images) == len(good)


def test_decode_check_catches_corrupt_data(tmp_path):
    path = str(tmp_path / "garbage.jpg")
    with open(path, "wb") as f:  # Valid signature and end marker, garbage inside.
        f.write(b"\xff\xd8\xff\xe0" + os.urandom(300) + b"\xff\xd9")
    split = ImageSplit([path], [0])
    make_dataset(split, SIZE, 1, training=False)  # The header check passes it ...
    with pytest.raises(DataError, match="garbage.jpg: cannot be decoded"):
        make_dataset(split, SIZE, 1, training=False, check="decode")  # ... not this.
    # With bad_images="skip", what the header check misses is dropped while reading.
    good = write_image(str(tmp_path / "good.jpg"))
    ds = make_dataset(
        ImageSplit([path, good], [0, 1]), SIZE, 2, training=False, bad_images="skip"
    )
    assert _arrays(ds)[1].tolist() == [1]


def test_decode_check_fails_a_jpeg_that_decodes_with_corrupt_data_warnings(tmp_path, capfd):
    bad = quietly_corrupt_jpeg(str(tmp_path / "quiet.jpg"))
    good = write_image(str(tmp_path / "good.jpg"))
    with pytest.raises(DataError) as info:
        make_dataset(ImageSplit([good, bad], [0, 1]), SIZE, 1, training=False, check="decode")
    message = str(info.value)
    assert "1 of 2 images" in message
    assert f"{bad}: cannot be decoded cleanly (libjpeg: Corrupt JPEG data:" in message
    assert "Corrupt JPEG data" not in capfd.readouterr().err  # told once, with its file
    ds = make_dataset(ImageSplit([good, bad], [0, 1]), SIZE, 2, training=False, check="decode",
                      bad_images="skip")
    assert _arrays(ds)[1].tolist() == [0]


def test_png_and_argument_errors(tmp_path):
    png = write_image(str(tmp_path / "a.png"), fmt="PNG")
    x, _ = next(iter(make_dataset(ImageSplit([png], [0]), SIZE, 1, training=False)))
    assert x.shape == (1, SIZE, SIZE, 3) and float(x[0, 0, 0, 0]) == pytest.approx(200)
    with pytest.raises(DataError, match="split is empty"):
        make_dataset(ImageSplit([], []), SIZE, 1, training=False)
    with pytest.raises(DataError, match="fewer than batch_size"):
        make_dataset(ImageSplit([png], [0]), SIZE, 2, training=True)
    with pytest.raises(DataError, match="augment: unknown keys"):
        make_dataset(ImageSplit([png], [0]), SIZE, 1, training=True, augment={"zoom": 1})


def test_feeds_model_fit_on_current_backend(builtin_data):
    n = builtin_data.num_classes
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(n),
        ]
    )
    model.compile(
        "sgd",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    trainval, test_seen = builtin_data.splits["trainval"], builtin_data.splits["test_seen"]
    train = make_dataset(trainval, SIZE, 8, training=True, repeat=True)
    history = model.fit(train, epochs=2, steps_per_epoch=2, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    test = make_dataset(test_seen, SIZE, 8, training=False)
    loss, accuracy = model.evaluate(test, verbose=0)
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    assert model.predict(test, verbose=0).shape == (len(test_seen), n)

