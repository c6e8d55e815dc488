"""Readers for the small text/array files that dataset folders are made of.

Every reader raises `DataError` naming the file (and line or key) on malformed input.
"""

import json
import os

import numpy as np

from sgma_keras.data.zsl_data import DataError


def require_file(path, what="file"):
    """Returns `path` if it is an existing file, else raises DataError."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: {what} not found.")
    return path


def read_lines(path):
    """Non-empty, stripped lines as `(line_number, text)`; `#` lines are comments."""
    require_file(path)
    with open(path, encoding="utf-8") as f:
        return [
            (i, line.strip())
            for i, line in enumerate(f, start=1)
            if line.strip() and not line.lstrip().startswith("#")
        ]


def read_numbered_table(path, value_type=str, num_values=1):
    """Reads lines `<id> <value>...` with ids 1..N in order (CUB/AwA2 style).

    With `value_type=str` and `num_values=1` the value is the rest of the line (names may
    hold spaces, e.g. CUB's "left eye").

    Returns:
        list of values (or tuples of `num_values` values) in id order.
    """
    rows = []
    for lineno, line in read_lines(path):
        if value_type is str and num_values == 1:
            fields = line.split(None, 1)
        else:
            fields = line.split()
        if len(fields) != num_values + 1:
            raise DataError(
                f"{path}, line {lineno}: expected '<id> <{num_values} value(s)>', got "
                f"{line!r}."
            )
        try:
            ident = int(fields[0])
            values = [value_type(v) for v in fields[1:]]
        except ValueError:
            raise DataError(
                f"{path}, line {lineno}: expected an integer id and "
                f"{value_type.__name__} value(s), got {line!r}."
            ) from None
        if ident != len(rows) + 1:
            raise DataError(
                f"{path}, line {lineno}: expected id {len(rows) + 1} (ids are 1-based "
                f"and consecutive), got {ident}."
            )
        rows.append(values[0] if num_values == 1 else tuple(values))
    if not rows:
        raise DataError(f"{path}: file is empty.")
    return rows


def read_name_list(path):
    """One name per line (e.g. the xlsa17 `testclasses.txt`)."""
    names = [line for _, line in read_lines(path)]
    if not names:
        raise DataError(f"{path}: expected one name per line; file is empty.")
    return names


def read_text_matrix(path):
    """A whitespace- or comma-separated float matrix, one row per line."""
    rows = []
    for lineno, line in read_lines(path):
        try:
            row = [float(v) for v in line.replace(",", " ").split()]
        except ValueError:
            raise DataError(
                f"{path}, line {lineno}: expected numbers, got {line[:80]!r}."
            ) from None
        if rows and len(row) != len(rows[0]):
            raise DataError(
                f"{path}, line {lineno}: expected {len(rows[0])} values like line 1, "
                f"got {len(row)}."
            )
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: expected a matrix; file is empty.")
    return np.asarray(rows, dtype=np.float32)


def read_semantic_matrix(path, num_classes, key=None):
    """Reads a class semantic matrix; returns (num_classes, d) float32.

    Formats, chosen by extension:
        - `.npy`: a (C, d) array.
        - `.txt`/`.csv`/`.tsv`/other: text, one row per class in class-id order.
        - `.mat`: variable `key` (default `att`, as in xlsa17's att_splits.mat), stored
          (d, C) with one column per class, the Xian et al. convention.
    """
    from sgma_keras.data import matfile

    require_file(path, "semantic matrix file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        matrix = np.load(path)
    elif ext == ".mat":
        key = key or "att"
        matrix = matfile.as_matrix(matfile.read_mat(path, [key])[key], path, key).T
    else:
        matrix = read_text_matrix(path)
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != num_classes:
        if ext == ".mat":
            raise DataError(
                f"{path}, key {key!r}: semantic matrix has shape {matrix.T.shape}; "
                f"expected (d, {num_classes}): one column per class."
            )
        raise DataError(
            f"{path}: semantic matrix has shape {matrix.shape}; expected "
            f"({num_classes}, d): one row per class."
        )
    return matrix


def read_class_split(path, class_names):
    """Reads a seen/unseen class split file.

    Formats:
        - `.json`: `{"unseen": [names], "seen": [names] (optional, default: all other
          classes), "val": [names] (optional: seen classes held out for validation)}`.
        - anything else: text, one unseen class name per line (like xlsa17's
          `testclasses.txt`); all other classes are seen.

    Names must match `class_names` exactly.

    Returns:
        (seen, unseen, val): sorted int64 id arrays; `val` is None when not given.
    """
    require_file(path, "class split file")
    if path.lower().endswith(".json"):
        with open(path, encoding="utf-8") as f:
            try:
                spec = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: invalid JSON ({e}).") from None
        if not isinstance(spec, dict) or "unseen" not in spec:
            raise DataError(
                f"{path}: expected a JSON object with key 'unseen' (and optional "
                "'seen', 'val'), each a list of class names."
            )
        unknown = set(spec) - {"seen", "unseen", "val"}
        if unknown:
            raise DataError(
                f"{path}: unknown keys {sorted(unknown)}; expected 'seen', 'unseen', "
                "'val'."
            )
        lists = {k: spec.get(k) for k in ("seen", "unseen", "val")}
    else:
        lists = {"seen": None, "unseen": read_name_list(path), "val": None}

    index = {name: i for i, name in enumerate(class_names)}
    ids = {}
    for key, names in lists.items():
        if names is None:
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{path}: key {key!r} must be a list of class names.")
        bad = [n for n in names if n not in index]
        if bad:
            raise DataError(
                f"{path}: {key} class names {bad[:5]} are not dataset classes "
                f"(e.g. {class_names[:3]})."
            )
        ids[key] = np.unique([index[n] for n in names]).astype(np.int64)
    unseen = ids["unseen"]
    seen = ids.get("seen")
    if seen is None:
        seen = np.setdiff1d(np.arange(len(class_names)), unseen)
    if np.intersect1d(seen, unseen).size:
        raise DataError(f"{path}: some classes are listed as both seen and unseen.")
    val = ids.get("val")
    if val is not None and np.setdiff1d(val, seen).size:
        raise DataError(f"{path}: 'val' classes must be seen classes.")
    return seen, unseen, val
