import dataclasses

import numpy as np
import pytest

from sgma_keras.data.zsl_data import DataError
from sgma_keras.data.zsl_data import ImageSplit
from sgma_keras.data.zsl_data import split_images_per_class
from sgma_keras.data.zsl_data import split_seen_classes


def test_validate_accepts_builtin(builtin_data):
    assert builtin_data.validate() is builtin_data
    assert builtin_data.num_classes == 8 and builtin_data.semantic_dim == 20
    assert "trainval" in builtin_data.summary()


def _with_split(data, key, **changes):
    split = data.splits[key]
    data.splits[key] = dataclasses.replace(split, **changes)
    return data


def test_empty_split(builtin_data):
    data = _with_split(builtin_data, "test_seen", paths=[], labels=[])
    with pytest.raises(DataError, match="split 'test_seen' is empty"):
        data.validate()


def test_semantics_class_count_mismatch(builtin_data):
    builtin_data.semantics = builtin_data.semantics[:-1]
    with pytest.raises(DataError, match=r"builtin_manifest.json.*expected \(8, d\)"):
        builtin_data.validate()


def test_label_out_of_range(builtin_data):
    split = builtin_data.splits["trainval"]
    labels = split.labels.copy()
    labels[0] = 8
    data = _with_split(builtin_data, "trainval", labels=labels)
    with pytest.raises(DataError, match=r"'trainval' has labels in \[\d+, 8\]"):
        data.validate()


def test_unseen_images_in_seen_split(builtin_data):
    split = builtin_data.splits["test_seen"]
    labels = split.labels.copy()
    labels[0] = builtin_data.unseen_classes[0]
    data = _with_split(builtin_data, "test_seen", labels=labels)
    with pytest.raises(DataError, match="not seen classes"):
        data.validate()


def test_seen_unseen_overlap(builtin_data):
    builtin_data.unseen_classes = np.union1d(
        builtin_data.unseen_classes, builtin_data.seen_classes[:1]
    )
    with pytest.raises(DataError, match="both seen and unseen"):
        builtin_data.validate()


def test_train_val_must_be_class_disjoint(builtin_data):
    builtin_data.splits["val"] = builtin_data.splits["train"]
    with pytest.raises(DataError, match="class-disjoint"):
        builtin_data.validate()


def test_part_locs_shape(builtin_data):
    split = builtin_data.splits["val"]
    data = _with_split(builtin_data, "val", part_locs=split.part_locs[:, :1])
    with pytest.raises(DataError, match="part_locs has shape"):
        data.validate()


def test_split_helpers():
    train, val = split_seen_classes(np.arange(10), 0.2, seed=1)
    assert len(val) == 2 and not np.intersect1d(train, val).size
    assert np.array_equal(np.union1d(train, val), np.arange(10))
    np.testing.assert_array_equal(val, split_seen_classes(np.arange(10), 0.2, 1)[1])
    labels = np.repeat(np.arange(3), 10)
    held = split_images_per_class(labels, 0.2, seed=0)
    assert np.bincount(labels[held]).tolist() == [2, 2, 2]
    split = ImageSplit(["a", "b", "c"], [0, 1, 2]).select(np.array([True, False, True]))
    assert split.paths == ["a", "c"] and split.labels.tolist() == [0, 2]
    with pytest.raises(DataError, match="val_fraction"):
        split_seen_classes(np.arange(4), 1.0)
