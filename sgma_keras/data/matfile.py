"""Reading and writing the MATLAB files of the proposed split (v5 and v7.3).

MATLAB v5 files are read with `scipy.io.loadmat`; v7.3 files are HDF5 and read with
h5py, undoing MATLAB's layout: arrays are stored transposed (column-major), strings are
uint16 `char` arrays and cell arrays are arrays of object references into `#refs#`.
Both readers return the same thing: numeric arrays in MATLAB's own shape, and cell arrays
as object arrays of `str` (for char cells) or arrays.
"""

import os
import time

import h5py
import numpy as np
import scipy.io

from sgma_keras.atomic_io import atomic_save
from sgma_keras.data.zsl_data import DataError


def read_mat(path, keys):
    """Reads the variables `keys` that exist in the .mat file `path`.

    Only the requested variables are read (res101.mat also holds a large `features`
    matrix this project does not use).

    Returns:
        dict name -> value; keys absent from the file are absent from the dict.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: .mat file not found.")
    try:
        with open(path, "rb") as f:
            major, _ = scipy.io.matlab.matfile_version(f)
    except Exception as e:  # scipy raises several types for non-MAT files.
        raise DataError(f"{path}: not a MATLAB .mat file ({e}).") from None
    if major == 2:
        return _read_hdf5(path, keys)
    try:
        raw = scipy.io.loadmat(path, variable_names=list(keys), chars_as_strings=True)
    except Exception as e:
        raise DataError(f"{path}: could not read MATLAB v5 file ({e}).") from None
    return {k: _from_scipy(v) for k, v in raw.items() if k in keys}


def _from_scipy(value):
    if isinstance(value, np.ndarray) and value.dtype == object:
        out = np.empty(value.shape, dtype=object)
        for idx, item in np.ndenumerate(value):
            out[idx] = _from_scipy(item)
        return out
    if isinstance(value, np.ndarray) and value.dtype.kind == "U":
        # A char array: with chars_as_strings each row is one string.
        strings = value.reshape(-1)
        return str(strings[0]) if strings.size == 1 else [str(s) for s in strings]
    return value


def _read_hdf5(path, keys):
    out = {}
    try:
        with h5py.File(path, "r") as f:
            for key in keys:
                if key in f:
                    out[key] = _from_hdf5(f, f[key])
    except OSError as e:
        raise DataError(f"{path}: could not read MATLAB v7.3 (HDF5) file ({e}).") from None
    return out


def _from_hdf5(f, node):
    if isinstance(node, h5py.Group):  # A struct; the proposed split has none.
        return {k: _from_hdf5(f, node[k]) for k in node}
    matlab_class = node.attrs.get("MATLAB_class", b"")
    if isinstance(matlab_class, bytes):
        matlab_class = matlab_class.decode()
    if node.attrs.get("MATLAB_empty", 0):
        return np.zeros((0, 0))
    data = node[()]
    if matlab_class == "char":
        return "".join(chr(c) for c in np.asarray(data).T.reshape(-1))
    if node.dtype == h5py.ref_dtype or matlab_class == "cell":
        data = np.asarray(data).T
        out = np.empty(data.shape, dtype=object)
        for idx, ref in np.ndenumerate(data):
            out[idx] = _from_hdf5(f, f[ref])
        return out
    return np.asarray(data).T


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return f"a {type(value).__name__}"


def as_strings(value, path, key):
    """A cell array (or char matrix) of strings as a flat `list[str]`."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, np.ndarray) and value.dtype == object:
        out = []
        for item in value.reshape(-1, order="F"):
            while isinstance(item, np.ndarray) and item.dtype == object and item.size:
                item = item.reshape(-1)[0]
            if isinstance(item, list) and len(item) <= 1:
                item = item[0] if item else ""
            if isinstance(item, np.ndarray) and item.size == 0:
                item = ""
            if not isinstance(item, str):
                raise DataError(
                    f"{path}, key {key!r}: expected a cell array of strings; found "
                    f"{_describe(item)} in it."
                )
            out.append(item)
        return out
    raise DataError(
        f"{path}, key {key!r}: expected a cell array of strings, got {_describe(value)}."
    )


def as_matrix(value, path, key):
    """A numeric 2-D array (float64)."""
    if (
        not isinstance(value, np.ndarray)
        or value.dtype.kind not in "iufb"
        or value.ndim != 2
    ):
        raise DataError(
            f"{path}, key {key!r}: expected a numeric matrix, got {_describe(value)}."
        )
    return value.astype(np.float64)


def as_int_vector(value, path, key):
    """A numeric vector (N x 1 or 1 x N) of integral values as int64 (N,)."""
    matrix = as_matrix(value, path, key)
    if min(matrix.shape) > 1:
        raise DataError(
            f"{path}, key {key!r}: expected a vector (N x 1 or 1 x N), got shape "
            f"{matrix.shape}."
        )
    vector = matrix.reshape(-1)
    if not np.all(np.isfinite(vector)) or np.any(vector != np.round(vector)):
        raise DataError(f"{path}, key {key!r}: expected integer values.")
    return vector.astype(np.int64)


def save_mat(path, variables, version="5"):
    """Writes `variables` as a MATLAB v5 or v7.3 file, atomically.

    Values: numeric arrays (1-D arrays become N x 1 columns, as in the proposed split),
    or lists of strings (written as N x 1 cell arrays of char).
    """
    if version not in ("5", "7.3"):
        raise ValueError(f"version must be '5' or '7.3', got {version!r}.")

    def save(tmp):
        if version == "5":
            scipy.io.savemat(tmp, _to_scipy(variables), oned_as="column")
        else:
            _save_hdf5(tmp, variables)

    atomic_save(path, save)


def _to_scipy(variables):
    out = {}
    for key, value in variables.items():
        if isinstance(value, (list, tuple)):
            cell = np.empty((len(value), 1), dtype=object)
            for i, s in enumerate(value):
                cell[i, 0] = str(s)
            out[key] = cell
        else:
            out[key] = np.asarray(value, dtype=np.float64)
    return out


def _save_hdf5(path, variables):
    # MATLAB 7.3 = HDF5 with a 512-byte user block holding the MAT-file header.
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        for key, value in variables.items():
            if isinstance(value, (list, tuple)):
                cell = np.empty((1, len(value)), dtype=h5py.ref_dtype)  # (N x 1)^T
                for i, s in enumerate(value):
                    chars = np.frombuffer(str(s).encode("utf-16-le"), dtype=np.uint16)
                    ds = refs.create_dataset(f"{key}_{i}", data=chars.reshape(-1, 1))
                    ds.attrs["MATLAB_class"] = np.bytes_("char")
                    ds.attrs["MATLAB_int_decode"] = np.int32(2)
                    cell[0, i] = ds.ref
                ds = f.create_dataset(key, data=cell)
                ds.attrs["MATLAB_class"] = np.bytes_("cell")
            else:
                array = np.asarray(value, dtype=np.float64)
                if array.ndim == 1:
                    array = array[:, None]
                ds = f.create_dataset(key, data=array.T)
                ds.attrs["MATLAB_class"] = np.bytes_("double")
    header = (
        "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: "
        f"{time.strftime('%a %b %d %H:%M:%S %Y')} HDF5 schema 1.00 ."
    ).encode("ascii")
    header = header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header)
