import json
import logging
import os

import numpy as np
import pytest

from sgma_keras.data import matfile
from sgma_keras.data.awa2_raw import load_awa2_raw
from sgma_keras.data.cub_raw import load_cub_raw
from sgma_keras.data.flowers_raw import load_flowers_raw
from sgma_keras.data.zsl_data import DataError
from tests.data.helpers import assert_protocol
from tests.data.helpers import write_image
from tests.data.helpers import write_lines

CUB_CLASSES = ["001.Albatross", "002.Auklet", "003.Cardinal", "004.Dove"]


def make_cub(root, per_class=3):
    """A 4-class CUB_200_2011 folder: 12 images of 40x30, 5 attributes, 2 parts."""
    write_lines(f"{root}/classes.txt", [f"{i + 1} {c}" for i, c in enumerate(CUB_CLASSES)])
    images, labels, locs = [], [], []
    for c, name in enumerate(CUB_CLASSES):
        for k in range(per_class):
            i = len(images) + 1
            rel = f"{name}/{name[4:]}_{k}.jpg"
            write_image(f"{root}/images/{rel}", size=(40, 30))
            images.append(f"{i} {rel}")
            labels.append(f"{i} {c + 1}")
            locs.append(f"{i} 1 10.0 15.0 1")
            locs.append(f"{i} 2 0 0 0")  # Not visible.
    write_lines(f"{root}/images.txt", images)
    write_lines(f"{root}/image_class_labels.txt", labels)
    rows = np.arange(20, dtype=float).reshape(4, 5) * 5
    write_lines(
        f"{root}/attributes/class_attribute_labels_continuous.txt",
        [" ".join(map(str, r)) for r in rows],
    )
    write_lines(f"{root}/parts/parts.txt", ["1 back", "2 left eye"])
    write_lines(f"{root}/parts/part_locs.txt", locs)
    return str(root)


def test_cub_raw(tmp_path):
    root = make_cub(tmp_path / "CUB_200_2011")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"unseen": ["004.Dove"], "val": ["002.Auklet"]}))
    data = load_cub_raw(root, class_split=str(split), test_seen_fraction=0.34)
    assert_protocol(data)
    assert data.class_names == CUB_CLASSES
    assert data.unseen_classes.tolist() == [3]
    assert data.splits["val"].classes().tolist() == [1]
    assert len(data.splits["test_unseen"]) == 3 and len(data.splits["test_seen"]) == 3
    assert data.semantics.shape == (4, 5)
    np.testing.assert_allclose(np.linalg.norm(data.semantics[1:], axis=1), 1, atol=1e-6)
    assert data.part_names == ["back", "left eye"]
    locs = data.splits["trainval"].part_locs
    np.testing.assert_allclose(locs[:, 0], [[0.25, 0.5]] * len(locs))
    assert np.isnan(locs[:, 1]).all()
    first = data.splits["trainval"].paths[0]
    assert first.startswith(os.path.join(root, "images", "00"))
    raw = load_cub_raw(root, semantics="original_att", class_split=str(split))
    assert raw.semantics.max() == 95.0


def test_cub_seeded_split_and_txt_split(tmp_path):
    root = make_cub(tmp_path / "CUB_200_2011")
    data = load_cub_raw(root, unseen_fraction=0.25, seed=1)
    assert len(data.unseen_classes) == 1
    again = load_cub_raw(root, unseen_fraction=0.25, seed=1)
    assert data.splits["trainval"].paths == again.splits["trainval"].paths
    write_lines(tmp_path / "testclasses.txt", ["003.Cardinal", "004.Dove"])
    data = load_cub_raw(root, class_split=str(tmp_path / "testclasses.txt"))
    assert data.unseen_classes.tolist() == [2, 3]


def test_cub_malformed_files(tmp_path):
    root = make_cub(tmp_path / "CUB_200_2011")
    write_lines(f"{root}/image_class_labels.txt", ["1 1", "2 x"])
    with pytest.raises(DataError, match=r"image_class_labels.txt, line 2: expected"):
        load_cub_raw(root)
    write_lines(f"{root}/image_class_labels.txt", [f"{i} 5" for i in range(1, 13)])
    with pytest.raises(DataError, match=r"line 1: class id 5 out of range.*\[1, 4\]"):
        load_cub_raw(root)
    make_cub(root)
    write_lines(f"{root}/attributes/class_attribute_labels_continuous.txt", ["1 2"] * 3)
    with pytest.raises(DataError, match="3 rows; expected one per class"):
        load_cub_raw(root)
    make_cub(root)
    write_lines(tmp_path / "s.txt", ["005.Eagle"])
    with pytest.raises(DataError, match=r"s.txt: unseen class names \['005.Eagle'\]"):
        load_cub_raw(root, class_split=str(tmp_path / "s.txt"))


def test_cub_missing_images(tmp_path, caplog):
    root = make_cub(tmp_path / "CUB_200_2011")
    os.remove(f"{root}/images/001.Albatross/Albatross_1.jpg")
    expected = r"(?s)1 of 12 images.*Albatross_1.jpg: file not found"
    with pytest.raises(DataError, match=expected):
        load_cub_raw(root)
    with caplog.at_level(logging.WARNING, logger="sgma_keras.data"):
        data = load_cub_raw(root, bad_images="skip", unseen_fraction=0.25)
    assert "Skipping 1 of 12" in caplog.text
    assert sum(len(data.splits[k]) for k in ("trainval", "test_seen", "test_unseen")) == 11


def make_awa2(root):
    classes = ["antelope", "bat", "cow", "dolphin"]
    write_lines(f"{root}/classes.txt", [f"\t{i + 1}\t{c}" for i, c in enumerate(classes)])
    write_lines(f"{root}/predicates.txt", ["1\tblack", "2\twhite", "3\tbrown"])
    write_lines(
        f"{root}/predicate-matrix-continuous.txt",
        ["  1.0  2.0  3.0", "  0.0 -1.0  4.0", "  5.0  5.0  5.0", "  2.0  0.0  1.0"],
    )
    for c in classes:
        for k in range(3):
            write_image(f"{root}/JPEGImages/{c}/{c}_{10001 + k}.jpg")
    write_lines(f"{root}/testclasses.txt", ["dolphin"])
    return str(root)


def test_awa2_raw(tmp_path):
    root = make_awa2(tmp_path / "Animals_with_Attributes2")
    data = load_awa2_raw(root, semantics="original_att")
    assert_protocol(data)
    assert data.class_names == ["antelope", "bat", "cow", "dolphin"]
    assert data.unseen_classes.tolist() == [3]  # From testclasses.txt.
    assert data.semantics[1].tolist() == [0.0, -1.0, 4.0]
    assert data.splits["test_unseen"].paths[0].endswith("dolphin_10001.jpg")
    os.remove(f"{root}/predicates.txt")
    write_lines(f"{root}/predicates.txt", ["1\tblack", "2\twhite"])
    with pytest.raises(DataError, match=r"predicate-matrix-continuous.txt: shape \(4, 3\)"):
        load_awa2_raw(root)


def make_flowers(root, num=12):
    labels = np.array([1 + i % 4 for i in range(num)], float)[None, :]  # MATLAB 1 x N.
    matfile.save_mat(f"{root}/imagelabels.mat", {"labels": labels})
    for i in range(1, num + 1):
        write_image(f"{root}/jpg/image_{i:05d}.jpg")
    return str(root)


@pytest.mark.parametrize("fmt", ["npy", "txt", "mat"])
def test_flowers_raw(tmp_path, fmt):
    root = make_flowers(tmp_path / "flowers")
    semantics = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    path = str(tmp_path / f"sem.{fmt}")
    if fmt == "npy":
        np.save(path, semantics)
    elif fmt == "txt":
        np.savetxt(path, semantics)
    else:  # Like FLO's att_splits.mat: (d, C), one column per class.
        matfile.save_mat(path, {"att": semantics.T})
    write_lines(tmp_path / "unseen.txt", ["class_002"])
    data = load_flowers_raw(
        root, path, class_split=str(tmp_path / "unseen.txt"), semantics="original_att"
    )
    assert_protocol(data)
    assert data.class_names == ["class_001", "class_002", "class_003", "class_004"]
    assert data.unseen_classes.tolist() == [1]
    np.testing.assert_allclose(data.semantics, semantics, rtol=1e-5)
    assert data.splits["test_unseen"].paths[0].endswith("image_00002.jpg")


def test_flowers_errors(tmp_path):
    root = make_flowers(tmp_path / "flowers")
    with pytest.raises(DataError, match="data.flowers.semantics_file"):
        load_flowers_raw(root, None)
    np.save(tmp_path / "sem.npy", np.zeros((3, 6)))
    with pytest.raises(DataError, match=r"sem.npy: semantic matrix has shape \(3, 6\)"):
        load_flowers_raw(root, str(tmp_path / "sem.npy"))
    matfile.save_mat(f"{root}/imagelabels.mat", {"labels": np.zeros((1, 12))})
    with pytest.raises(DataError, match="imagelabels.mat, key 'labels'.*1-based"):
        load_flowers_raw(root, str(tmp_path / "sem.npy"))
