import os

import h5py
import numpy as np
import pytest
import scipy.io

from sgma_keras.data import matfile
from sgma_keras.data.proposed_split import load_proposed_split
from sgma_keras.data.proposed_split import remap_paths
from sgma_keras.data.proposed_split import write_proposed_split
from sgma_keras.data.zsl_data import DataError
from sgma_keras.data.zsl_data import l2_normalize_rows
from tests.data.helpers import assert_protocol
from tests.data.helpers import write_image

AUTHOR_PREFIX = "/BS/xian/work/data/BUILTIN/"
ATT_KEYS = (
    "trainval_loc",
    "test_seen_loc",
    "test_unseen_loc",
    "train_loc",
    "val_loc",
    "att",
    "original_att",
    "allclasses_names",
)


def _write(data, builtin_root, out_dir, version="5"):
    write_proposed_split(
        data, str(out_dir), version, path_prefix=AUTHOR_PREFIX, image_root=builtin_root
    )
    return str(out_dir)


def _patch(path, version="5", **changes):
    """Rewrites some variables of a .mat file (None deletes one)."""
    keys = ATT_KEYS if path.endswith("att_splits.mat") else ("image_files", "labels")
    values = matfile.read_mat(path, keys)
    for key in ("allclasses_names", "image_files"):
        if key in values:
            values[key] = matfile.as_strings(values[key], path, key)
    for key, value in changes.items():
        if value is None:
            values.pop(key)
        else:
            values[key] = value
    matfile.save_mat(path, values, version)


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_roundtrip(builtin_data, builtin_root, tmp_path, version):
    split_dir = _write(builtin_data, builtin_root, tmp_path / "BUILTIN", version)
    att_path = os.path.join(split_dir, "att_splits.mat")
    with open(att_path, "rb") as f:
        assert scipy.io.matlab.matfile_version(f)[0] == (2 if version == "7.3" else 1)
    if version == "7.3":  # Laid out the way MATLAB writes HDF5: transposed, refs.
        with h5py.File(os.path.join(split_dir, "res101.mat"), "r") as f:
            assert f["image_files"].dtype == h5py.ref_dtype
            assert f["image_files"].shape == (1, 96)
        with h5py.File(att_path, "r") as f:
            assert f["att"].shape == (8, 20)  # MATLAB's (d, C) = 20 x 8.
    for root in (builtin_root, os.path.join(builtin_root, "images")):
        data = load_proposed_split(split_dir, root)
        assert_protocol(data)
        assert data.name == "BUILTIN"
        assert data.class_names == builtin_data.class_names
        np.testing.assert_allclose(
            data.semantics, l2_normalize_rows(builtin_data.semantics), atol=1e-6
        )
        np.testing.assert_array_equal(data.seen_classes, builtin_data.seen_classes)
        np.testing.assert_array_equal(data.unseen_classes, builtin_data.unseen_classes)
        for key in builtin_data.splits:
            assert data.splits[key].paths == builtin_data.splits[key].paths, key
            np.testing.assert_array_equal(
                data.splits[key].labels, builtin_data.splits[key].labels
            )
    original = load_proposed_split(split_dir, builtin_root, semantics="original_att")
    np.testing.assert_array_equal(original.semantics, builtin_data.semantics)


def test_remap_author_prefixes(tmp_path):
    root = str(tmp_path)
    cub = write_image(f"{root}/CUB_200_2011/images/001.Albatross/Albatross_0046_18.jpg")
    awa = write_image(f"{root}/Animals_with_Attributes2/JPEGImages/antelope/a_10001.jpg")
    flo = write_image(f"{root}/Flowers/jpg/image_00001.jpg")
    cases = [
        (
            "/BS/xian/work/data/CUB_200_2011/images/001.Albatross/Albatross_0046_18.jpg",
            [f"{root}/CUB_200_2011", f"{root}/CUB_200_2011/images", root],
            cub,
        ),
        (
            "/BS/xian/work/data/Animals_with_Attributes2//JPEGImages/antelope/a_10001.jpg",
            [f"{root}/Animals_with_Attributes2"],
            awa,
        ),
        ("/BS/xian/work/data/Flowers/jpg/image_00001.jpg", [f"{root}/Flowers"], flo),
    ]
    for author_path, roots, expected in cases:
        for image_root in roots:
            (found,) = remap_paths([author_path], image_root)
            assert os.path.samefile(found, expected), (author_path, image_root)
    assert remap_paths(["/BS/x/CUB_200_2011/images/nope.jpg"], root) == [None]


def test_train_val_fallbacks(builtin_data, builtin_root, tmp_path):
    split_dir = _write(builtin_data, builtin_root, tmp_path / "d")
    for name in ("trainclasses1.txt", "valclasses1.txt"):
        os.remove(os.path.join(split_dir, name))
    data = load_proposed_split(split_dir, builtin_root)  # From train_loc / val_loc.
    np.testing.assert_array_equal(
        data.splits["val"].classes(), builtin_data.splits["val"].classes()
    )
    _patch(os.path.join(split_dir, "att_splits.mat"), train_loc=None, val_loc=None)
    data = load_proposed_split(split_dir, builtin_root, val_fraction=0.5, seed=3)
    assert len(data.splits["val"].classes()) == 3  # Seeded: half of 6 seen classes.
    assert_protocol(data)


def test_flo_style_file(builtin_data, builtin_root, tmp_path):
    split_dir = _write(builtin_data, builtin_root, tmp_path / "d")
    att_path = os.path.join(split_dir, "att_splits.mat")
    _patch(att_path, allclasses_names=None, original_att=None)
    for name in ("trainclasses1.txt", "valclasses1.txt"):
        os.remove(os.path.join(split_dir, name))
    data = load_proposed_split(split_dir, builtin_root)
    assert data.class_names[:2] == ["class_001", "class_002"]
    with pytest.raises(DataError, match="missing key 'original_att'.*set semantics"):
        load_proposed_split(split_dir, builtin_root, semantics="original_att")


def _split_dir(builtin_data, builtin_root, tmp_path):
    split_dir = _write(builtin_data, builtin_root, tmp_path / "d")
    att = os.path.join(split_dir, "att_splits.mat")
    res = os.path.join(split_dir, "res101.mat")
    locs = matfile.as_int_vector(
        matfile.read_mat(att, ["test_seen_loc"])["test_seen_loc"], att, "x"
    )
    labels = matfile.as_int_vector(matfile.read_mat(res, ["labels"])["labels"], res, "x")
    return split_dir, att, res, locs, labels


def test_zero_based_indices(builtin_data, builtin_root, tmp_path):
    split_dir, att, _, locs, _ = _split_dir(builtin_data, builtin_root, tmp_path)
    _patch(att, test_seen_loc=(locs - locs.min()).astype(float))
    with pytest.raises(DataError, match=r"att_splits.mat, key 'test_seen_loc'.*0-based"):
        load_proposed_split(split_dir, builtin_root)


def test_labels_out_of_range(builtin_data, builtin_root, tmp_path):
    split_dir, _, res, _, labels = _split_dir(builtin_data, builtin_root, tmp_path)
    labels[5] = 9
    _patch(res, labels=labels.astype(float))
    with pytest.raises(DataError, match=r"res101.mat, key 'labels': value 9 at position 6"):
        load_proposed_split(split_dir, builtin_root)
    _patch(res, labels=(labels - 1).astype(float))
    with pytest.raises(DataError, match="0-based"):
        load_proposed_split(split_dir, builtin_root)


def test_semantic_matrix_class_count(builtin_data, builtin_root, tmp_path):
    split_dir, att, _, _, _ = _split_dir(builtin_data, builtin_root, tmp_path)
    _patch(att, att=builtin_data.semantics[:-1].T)
    with pytest.raises(DataError, match=r"key 'att': has 7 columns.*8 as in"):
        load_proposed_split(split_dir, builtin_root)


def test_missing_key(builtin_data, builtin_root, tmp_path):
    split_dir, att, _, _, _ = _split_dir(builtin_data, builtin_root, tmp_path)
    _patch(att, test_unseen_loc=None)
    with pytest.raises(DataError, match="att_splits.mat: missing key 'test_unseen_loc'"):
        load_proposed_split(split_dir, builtin_root)


def test_missing_images(builtin_data, builtin_root, tmp_path):
    split_dir, _, res, _, _ = _split_dir(builtin_data, builtin_root, tmp_path)
    files = matfile.as_strings(
        matfile.read_mat(res, ["image_files"])["image_files"], res, "image_files"
    )
    files[3] = AUTHOR_PREFIX + "images/gone/00001.jpg"
    _patch(res, image_files=files)
    with pytest.raises(DataError, match=r"1 of 96 'image_files'.*gone/00001.jpg"):
        load_proposed_split(split_dir, builtin_root)
    with pytest.warns(UserWarning, match="Dropping them"):
        data = load_proposed_split(split_dir, builtin_root, bad_images="skip")
    assert sum(len(data.splits[k]) for k in ("trainval", "test_seen", "test_unseen")) == 95


def test_known_dataset_size_warning(builtin_data, builtin_root, tmp_path):
    split_dir = _write(builtin_data, builtin_root, tmp_path / "CUB")
    with pytest.warns(UserWarning, match=r"released proposed split has \(7057, 1764"):
        data = load_proposed_split(split_dir, builtin_root)
    assert data.name == "CUB"


def test_not_a_mat_file(tmp_path):
    (tmp_path / "att_splits.mat").write_bytes(b"hello")
    with pytest.raises(DataError, match="att_splits.mat: not a MATLAB"):
        load_proposed_split(str(tmp_path), str(tmp_path))
