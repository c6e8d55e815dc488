"""Loader for the proposed split of Xian et al. (xlsa17: att_splits.mat + res101.mat).

Files (in `split_dir`, MATLAB v5 or v7.3):
    att_splits.mat: `trainval_loc`, `test_seen_loc`, `test_unseen_loc` (1-based indices
        into res101's `image_files`), `att` (d x C, one L2-normalised column per class),
        `original_att` (d x C, the raw attribute values; absent in FLO),
        `allclasses_names` (C cell array; absent in FLO: names become "class_001"...,
        numbered like the 1-based labels), optional `train_loc`/`val_loc`.
    res101.mat: `image_files` (N cell array of the authors' absolute paths), `labels`
        (N, 1-based). Its `features` matrix is never read.
    trainclasses1.txt / valclasses1.txt (optional): class names of the first
        train/val split of the seen classes.

Train/val (model selection): the class lists trainclasses1.txt/valclasses1.txt when
present, else the classes of `val_loc` (when class-disjoint from `train_loc`), else a
seeded class-disjoint split of the seen classes (`val_fraction`, `seed`).

Path remapping: `image_files` hold the authors' absolute paths, e.g.
'/BS/xian/work/data/CUB_200_2011/images/001.Black_footed_Albatross/x.jpg'. Each path is
split into components, empty components dropped (AwA2's paths hold '//'), and the longest
suffix of components that is an existing file under `root` is used: with root
'/data/CUB_200_2011' that is 'images/001.Black_footed_Albatross/x.jpg'; with root
'/data/CUB_200_2011/images' it is '001.Black_footed_Albatross/x.jpg'. The number of
leading components stripped for the first path is tried first for the others (one stat
per file). Files found nowhere are errors (or dropped with bad_images="skip").
"""

import os
import warnings

import numpy as np

from sgma_keras.data import matfile
from sgma_keras.data import readers
from sgma_keras.data.zsl_data import DataError
from sgma_keras.data.zsl_data import ImageSplit
from sgma_keras.data.zsl_data import ZeroShotData
from sgma_keras.data.zsl_data import split_seen_classes
from sgma_keras.data.zsl_data import train_val_splits
from sgma_keras.semantics import l2_normalize_rows

# (trainval, test_seen, test_unseen) image counts of the released files.
EXPECTED_SIZES = {
    "CUB": (7057, 1764, 2967),
    "AWA2": (23527, 5882, 7913),
    "FLO": (5631, 1403, 1155),
}
LOC_KEYS = ("trainval_loc", "test_seen_loc", "test_unseen_loc")
_ATT_KEYS = LOC_KEYS + (
    "train_loc",
    "val_loc",
    "att",
    "original_att",
    "allclasses_names",
)


def remap_paths(author_paths, root):
    """Maps the authors' absolute paths onto `root` (see the module docstring).

    Returns:
        list with the path under `root`, or None where no suffix exists under `root`.
    """
    strip = None
    out = []
    for author_path in author_paths:
        parts = [c for c in author_path.replace("\\", "/").split("/") if c]
        found = None
        if strip is not None and strip < len(parts):
            candidate = os.path.join(root, *parts[strip:])
            if os.path.isfile(candidate):
                found = candidate
        if found is None:
            for k in range(len(parts)):  # Longest suffix first.
                candidate = os.path.join(root, *parts[k:])
                if os.path.isfile(candidate):
                    found, strip = candidate, k
                    break
        out.append(found)
    return out


def _one_based(indices, path, key, upper, what):
    """Checks 1-based `indices` in [1, upper]; returns them 0-based."""
    if indices.size == 0:
        raise DataError(f"{path}, key {key!r}: empty; expected {what}.")
    lo, hi = int(indices.min()), int(indices.max())
    if lo == 0:
        raise DataError(
            f"{path}, key {key!r}: holds 0, so it looks 0-based; expected MATLAB "
            f"1-based {what} in [1, {upper}]."
        )
    if lo < 1 or hi > upper:
        bad = int(np.flatnonzero((indices < 1) | (indices > upper))[0])
        raise DataError(
            f"{path}, key {key!r}: value {int(indices[bad])} at position {bad + 1} is "
            f"out of range; expected 1-based {what} in [1, {upper}]."
        )
    return indices - 1


def load_proposed_split(
    split_dir,
    root,
    semantics="att",
    name=None,
    val_fraction=0.2,
    seed=0,
    bad_images="error",
):
    """Loads the proposed split (see the module docstring).

    Args:
        split_dir: folder with att_splits.mat and res101.mat (e.g. xlsa17/data/CUB).
        root: image root the authors' paths are remapped onto.
        semantics: "att" or "original_att".
        name: dataset name; default: the folder name of `split_dir` upper-cased ("CUB").
            Split sizes of known names (CUB, AWA2, FLO) are checked (a warning).
        val_fraction, seed: the seeded train/val class split, when the files give none.
        bad_images: "error" or "skip" for images missing under `root`.
    """
    att_path = os.path.join(split_dir, "att_splits.mat")
    res_path = os.path.join(split_dir, "res101.mat")
    att = matfile.read_mat(att_path, _ATT_KEYS)
    res = matfile.read_mat(res_path, ("image_files", "labels"))
    for path, values, keys in (
        (att_path, att, LOC_KEYS + ("att",)),
        (res_path, res, ("image_files", "labels")),
    ):
        for key in keys:
            if key not in values:
                raise DataError(f"{path}: missing key {key!r}.")
    if semantics not in ("att", "original_att"):
        raise DataError(f"semantics must be 'att' or 'original_att'; got {semantics!r}.")
    if semantics not in att:
        raise DataError(
            f"{att_path}: missing key {semantics!r} (FLO's file only has 'att'); set "
            "semantics to 'att'."
        )

    matrix = matfile.as_matrix(att[semantics], att_path, semantics).T  # (C, d)
    if "allclasses_names" in att:
        class_names = matfile.as_strings(
            att["allclasses_names"], att_path, "allclasses_names"
        )
        if matrix.shape[0] != len(class_names):
            raise DataError(
                f"{att_path}, key {semantics!r}: has {matrix.shape[0]} columns "
                f"(shape {matrix.T.shape}); expected one column per class, "
                f"{len(class_names)} as in 'allclasses_names'."
            )
    else:
        class_names = [f"class_{i + 1:03d}" for i in range(matrix.shape[0])]
    num_classes = len(class_names)

    image_files = matfile.as_strings(res["image_files"], res_path, "image_files")
    labels = matfile.as_int_vector(res["labels"], res_path, "labels")
    if labels.size != len(image_files):
        raise DataError(
            f"{res_path}: 'labels' has {labels.size} entries; expected one per "
            f"'image_files' entry ({len(image_files)})."
        )
    labels = _one_based(labels, res_path, "labels", num_classes, "class labels")
    locs = {
        key: _one_based(
            matfile.as_int_vector(att[key], att_path, key),
            att_path,
            key,
            len(image_files),
            "indices into res101.mat 'image_files'",
        )
        for key in LOC_KEYS + ("train_loc", "val_loc")
        if key in att
    }

    if not root or not os.path.isdir(root):
        raise DataError(f"Image root {root!r} is not a folder (data.root).")
    paths = remap_paths(image_files, root)
    used = np.unique(np.concatenate([locs[k] for k in LOC_KEYS]))
    missing = [image_files[i] for i in used if paths[i] is None]
    if missing:
        message = (
            f"{res_path}: {len(missing)} of {len(used)} 'image_files' have no suffix "
            f"that exists under root {root!r} (e.g. {missing[:3]})."
        )
        if bad_images != "skip":
            raise DataError(message + " Set bad_images='skip' to drop them.")
        warnings.warn(message + " Dropping them.", stacklevel=2)

    def split(key):
        index = np.asarray([i for i in locs[key] if paths[i] is not None], np.int64)
        return ImageSplit([paths[i] for i in index], labels[index])

    splits = {key[: -len("_loc")]: split(key) for key in LOC_KEYS}
    seen = splits["trainval"].classes()
    unseen = splits["test_unseen"].classes()
    name = name or os.path.basename(os.path.normpath(split_dir)).upper()
    val_classes = _val_classes(
        split_dir, att_path, class_names, labels, locs, seen, val_fraction, seed
    )
    splits["train"], splits["val"] = train_val_splits(splits["trainval"], val_classes)
    if semantics == "att":
        matrix = l2_normalize_rows(matrix)  # Already so in the released files.
    data = ZeroShotData(
        name=name,
        class_names=class_names,
        semantics=matrix,
        seen_classes=seen,
        unseen_classes=unseen,
        splits=splits,
        source=att_path,
    ).validate()
    _check_sizes(data, att_path)
    return data


def _val_classes(split_dir, att_path, class_names, labels, locs, seen, fraction, seed):
    train_file = os.path.join(split_dir, "trainclasses1.txt")
    val_file = os.path.join(split_dir, "valclasses1.txt")
    if os.path.isfile(val_file):
        index = {n: i for i, n in enumerate(class_names)}
        names = readers.read_name_list(val_file)
        if os.path.isfile(train_file):
            names_train = readers.read_name_list(train_file)
            overlap = set(names) & set(names_train)
            if overlap:
                raise DataError(
                    f"{val_file}: classes {sorted(overlap)[:5]} are also in "
                    f"{train_file}; expected class-disjoint lists."
                )
        bad = [n for n in names if n not in index]
        if bad:
            raise DataError(
                f"{val_file}: class names {bad[:5]} are not in 'allclasses_names'."
            )
        val = np.unique([index[n] for n in names])
        if np.setdiff1d(val, seen).size:
            raise DataError(f"{val_file}: lists classes that are not seen classes.")
        return val
    if "train_loc" in locs and "val_loc" in locs:
        val = np.unique(labels[locs["val_loc"]])
        train = np.unique(labels[locs["train_loc"]])
        if not np.intersect1d(val, train).size and not np.setdiff1d(val, seen).size:
            return val
        warnings.warn(
            f"{att_path}: 'train_loc'/'val_loc' are not a class-disjoint split of the "
            "seen classes; using a seeded class split instead.",
            stacklevel=3,
        )
    return split_seen_classes(seen, fraction, seed)[1]


def _check_sizes(data, att_path):
    expected = EXPECTED_SIZES.get(data.name.upper())
    if expected is None:
        return
    got = tuple(len(data.splits[k]) for k in ("trainval", "test_seen", "test_unseen"))
    if got != expected:
        warnings.warn(
            f"{att_path}: {data.name} split sizes (trainval, test_seen, test_unseen) "
            f"are {got}; the released proposed split has {expected}.",
            stacklevel=3,
        )


def write_proposed_split(
    data, out_dir, version="5", path_prefix=None, image_root=None, class_lists=True
):
    """Writes `data` in the proposed-split layout (att_splits.mat + res101.mat).

    Indices and labels are written 1-based, `att`/`original_att` as (d, C) with one column
    per class (`att` L2-normalised), `image_files` as a cell array. res101.mat gets no
    `features` (this project never reads them).

    Args:
        data: a ZeroShotData.
        out_dir: output folder (created).
        version: MATLAB file version, "5" or "7.3".
        path_prefix: when given, `image_files` are written as `path_prefix` + the path
            relative to `image_root`, imitating the authors' absolute paths (e.g.
            "/BS/xian/work/data/BUILTIN/"); else the absolute paths.
        image_root: root the paths are made relative to; default: their common folder.
        class_lists: also write trainclasses1.txt / valclasses1.txt (the train/val
            class split).
    """
    order, position = [], {}
    for key in ("trainval", "test_seen", "test_unseen"):
        for path, label in zip(data.splits[key].paths, data.splits[key].labels):
            if path not in position:
                position[path] = len(order)
                order.append((path, label))
    files = [p for p, _ in order]
    if path_prefix is not None:
        image_root = image_root or os.path.commonpath([os.path.dirname(p) for p in files])
        prefix = path_prefix.rstrip("/") + "/"
        files = [
            prefix + os.path.relpath(p, image_root).replace(os.sep, "/") for p in files
        ]

    def locs(key):
        return np.array([position[p] + 1 for p in data.splits[key].paths], np.float64)

    os.makedirs(out_dir, exist_ok=True)
    original = data.semantics.astype(np.float64)
    matfile.save_mat(
        os.path.join(out_dir, "att_splits.mat"),
        {
            **{k: locs(k[: -len("_loc")]) for k in LOC_KEYS + ("train_loc", "val_loc")},
            "att": l2_normalize_rows(original).T,
            "original_att": original.T,
            "allclasses_names": list(data.class_names),
        },
        version,
    )
    matfile.save_mat(
        os.path.join(out_dir, "res101.mat"),
        {
            "image_files": files,
            "labels": np.array([label + 1 for _, label in order], np.float64),
        },
        version,
    )
    if class_lists:
        for key in ("train", "val"):
            names = [data.class_names[c] for c in data.splits[key].classes()]
            with open(os.path.join(out_dir, f"{key}classes1.txt"), "w") as f:
                f.write("\n".join(names) + "\n")
