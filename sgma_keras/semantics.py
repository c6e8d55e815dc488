"""What the data pipeline does to class semantic vectors, so that vectors given later get it too.

A model scores a class by the dot product of image features with the class's semantic
vector, so a vector must be in the form the model was trained on: a raw 0/1 or 0-100
attribute vector scores several times higher than the same class's unit-norm training
vector. The pipeline's transform (`TRANSFORMS`) is recorded with the model
(`SGMA(semantics_transform=...)`) and applied to every raw vector that comes in later
(`SGMA.set_class_semantics`, `SGMA.add_classes`, `predict.py --classes`,
`export.py --semantics`).

Two forms of a vector, never mixed up:
- raw: as the user or dataset file gives it (the dataset's attribute order and scale);
- stored: raw with the transform applied; what the model holds (`SGMA.semantics`) and
  what the data loader hands to training.

NumPy only: the data loader and the model both use it.

>>> raw = np.array([[0.0, 1.0, 1.0], [3.0, 0.0, 4.0]], "float32")
>>> print(apply_transform(raw, "l2").round(3))
[[0.    0.707 0.707]
 [0.6   0.    0.8  ]]
>>> infer_transform(apply_transform(raw, "l2")), infer_transform(raw)
('l2', None)
"""

import numpy as np

# None: vectors as given; "l2": each row scaled to unit L2 norm (zero rows stay zero).
TRANSFORMS = (None, "l2")

# How far from 1 a stored row's norm may be and still count as unit norm (float32
# values written to JSON and read back).
_UNIT_TOLERANCE = 1e-4


def l2_normalize_rows(matrix):
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def check_transform(transform, owner="SGMA"):
    """`transform` if it is one of `TRANSFORMS`, else a ValueError naming it."""
    if transform not in TRANSFORMS:
        raise ValueError(
            f"{owner}: `semantics_transform` must be one of {TRANSFORMS}, got {transform!r}."
        )
    return transform


def apply_transform(raw, transform):
    """The stored form of raw vectors `raw` (n, dim) under `transform`, float32."""
    check_transform(transform)
    if transform == "l2":
        return l2_normalize_rows(raw)
    return np.asarray(raw, dtype=np.float32)


def off_form_rows(stored, transform):
    """Indices of rows of `stored` that no raw vector maps to under `transform` (for
    "l2": rows neither unit-norm nor zero); empty when `stored` is in stored form."""
    if transform != "l2":
        return np.zeros(0, "int64")
    norms = np.linalg.norm(np.asarray(stored, dtype=np.float64), axis=1)
    return np.flatnonzero((np.abs(norms - 1.0) > _UNIT_TOLERANCE) & (norms > 0))


def infer_transform(stored):
    """The transform a matrix `stored` of a model saved without one was trained under.

    "l2" when every row has unit norm or is zero (the data loader's default, and the released
    `att` matrices), else None (the rows were used as given). A model trained on raw
    vectors that all happen to have unit norm is read as "l2": for such vectors the
    transform changes nothing.
    """
    norms = np.linalg.norm(np.asarray(stored, dtype=np.float64), axis=1)
    unit = np.abs(norms - 1.0) <= _UNIT_TOLERANCE
    if unit.any() and np.all(unit | (norms == 0)):
        return "l2"
    return None
