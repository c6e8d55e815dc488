"""The in-memory description of a zero-shot learning dataset.

Every loader (proposed split, raw folders, TFDS, the built-in generator) returns a
`ZeroShotData`: class names, the class semantic matrix, the seen/unseen class split and
one `ImageSplit` (image paths + global labels) per protocol split:

- `trainval`: images of the seen classes used for the final training run.
- `test_seen`: held-out images of the seen classes (GZSL "s").
- `test_unseen`: images of the unseen classes (ZSL, GZSL "u").
- `train` / `val`: a class-disjoint split of `trainval` for model selection: the `val`
  classes are seen classes held out from `train`, so hyper-parameters are never chosen on
  test classes.

Labels are always global, 0-based class ids indexing `class_names` and the rows of
`semantics`, whatever split they belong to.
"""

import dataclasses
import os

import numpy as np

from sgma_keras.errors import UserError
from sgma_keras.semantics import l2_normalize_rows  # noqa: F401  (re-exported)

SPLIT_NAMES = ("trainval", "test_seen", "test_unseen", "train", "val")


class DataError(UserError):
    """Bad dataset input. The message names the file (and line or key) and what was
    expected, so a user can fix the data without reading a traceback."""


@dataclasses.dataclass
class ImageSplit:
    """Images of one split.

    Attributes:
        paths: absolute image paths.
        labels: int64 global class ids, 0-based, one per path.
        part_locs: optional (N, P, 2) float32 ground-truth part centres (x, y) relative to
            the image width/height (in [0, 1]); NaN where a part is not visible.
        part_boxes: optional (N, P, 4) float32 part boxes (x0, y0, x1, y1), relative like
            `part_locs`; NaN where a part is not visible (only the built-in dataset has
            them).
    """

    paths: list[str]
    labels: np.ndarray
    part_locs: np.ndarray | None = None
    part_boxes: np.ndarray | None = None

    def __post_init__(self):
        self.paths = [str(p) for p in self.paths]
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if self.part_locs is not None:
            self.part_locs = np.asarray(self.part_locs, dtype=np.float32)
        if self.part_boxes is not None:
            self.part_boxes = np.asarray(self.part_boxes, dtype=np.float32)

    def __len__(self):
        return len(self.paths)

    def select(self, index):
        """Returns the sub-split at `index` (an int array or boolean mask)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return ImageSplit(
            paths=[self.paths[i] for i in index],
            labels=self.labels[index],
            part_locs=None if self.part_locs is None else self.part_locs[index],
            part_boxes=None if self.part_boxes is None else self.part_boxes[index],
        )

    def classes(self):
        """Sorted unique labels."""
        return np.unique(self.labels)


@dataclasses.dataclass
class ZeroShotData:
    """A zero-shot dataset: classes, semantics, seen/unseen split and image splits.

    Attributes:
        name: dataset name (e.g. "CUB", "builtin").
        class_names: one name per class; index = global class id.
        semantics: (num_classes, d) float32, row c describes class c.
        seen_classes: sorted int64 global ids of the training classes.
        unseen_classes: sorted int64 global ids of the test-only classes (disjoint from
            `seen_classes`).
        splits: `ImageSplit` per name in `SPLIT_NAMES`.
        part_names: names of the P ground-truth parts in `ImageSplit.part_locs`, if any.
        source: the file or folder the data came from (named in error messages).
    """

    name: str
    class_names: list[str]
    semantics: np.ndarray
    seen_classes: np.ndarray
    unseen_classes: np.ndarray
    splits: dict[str, ImageSplit]
    part_names: list[str] = ()
    source: str = ""

    def __post_init__(self):
        self.class_names = [str(c) for c in self.class_names]
        self.semantics = np.asarray(self.semantics, dtype=np.float32)
        self.seen_classes = np.asarray(self.seen_classes, dtype=np.int64).reshape(-1)
        self.unseen_classes = np.asarray(self.unseen_classes, dtype=np.int64).reshape(-1)
        self.part_names = [str(p) for p in self.part_names]

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def semantic_dim(self):
        return int(self.semantics.shape[1])

    @property
    def folder(self):
        """The folder the dataset was read from (its `source` file's folder), or ""."""
        source = self.source or ""
        return os.path.dirname(source) if os.path.isfile(source) else source

    def summary(self):
        """One line per split: image and class counts."""
        lines = [
            f"{self.name}: {self.num_classes} classes "
            f"({len(self.seen_classes)} seen, {len(self.unseen_classes)} unseen), "
            f"semantics {self.semantic_dim}-d"
        ]
        for key in SPLIT_NAMES:
            split = self.splits.get(key)
            if split is not None:
                lines.append(
                    f"  {key}: {len(split)} images, {len(split.classes())} classes"
                )
        return "\n".join(lines)

    def validate(self):
        """Checks shapes, label ranges, class disjointness and non-empty splits.

        Returns:
            self, so that loaders can `return data.validate()`.

        Raises:
            DataError: naming `source` and the offending split/key.
        """
        where = self.source or self.name
        n = self.num_classes
        if n == 0:
            raise DataError(f"{where}: no classes.")
        if self.semantics.ndim != 2 or self.semantics.shape[0] != n:
            raise DataError(
                f"{where}: semantic matrix has shape {self.semantics.shape}; expected "
                f"({n}, d): one row per class ({n} class names)."
            )
        if not np.all(np.isfinite(self.semantics)):
            raise DataError(f"{where}: semantic matrix holds NaN or infinite values.")
        for key, ids in (("seen", self.seen_classes), ("unseen", self.unseen_classes)):
            if ids.size == 0:
                raise DataError(f"{where}: no {key} classes.")
            if np.any(np.diff(ids) <= 0):
                raise DataError(f"{where}: {key} class ids must be sorted and unique.")
            if ids[0] < 0 or ids[-1] >= n:
                raise DataError(
                    f"{where}: {key} class ids must be in [0, {n}); got "
                    f"[{ids[0]}, {ids[-1]}]."
                )
        both = np.intersect1d(self.seen_classes, self.unseen_classes)
        if both.size:
            raise DataError(
                f"{where}: classes {self._names(both)} are both seen and unseen."
            )
        missing = [k for k in SPLIT_NAMES if k not in self.splits]
        if missing:
            raise DataError(f"{where}: missing splits {missing}.")
        allowed = {
            "trainval": self.seen_classes,
            "test_seen": self.seen_classes,
            "train": self.seen_classes,
            "val": self.seen_classes,
            "test_unseen": self.unseen_classes,
        }
        for key in SPLIT_NAMES:
            self._validate_split(where, key, self.splits[key], allowed[key])
        overlap = np.intersect1d(
            self.splits["train"].classes(), self.splits["val"].classes()
        )
        if overlap.size:
            raise DataError(
                f"{where}: splits 'train' and 'val' must be class-disjoint; both hold "
                f"{self._names(overlap)}."
            )
        return self

    def _validate_split(self, where, key, split, allowed):
        n = len(split.paths)
        if n == 0:
            raise DataError(f"{where}: split '{key}' is empty; expected images.")
        if split.labels.shape != (n,):
            raise DataError(
                f"{where}: split '{key}' has {split.labels.shape[0]} labels for {n} "
                "paths."
            )
        lo, hi = split.labels.min(), split.labels.max()
        if lo < 0 or hi >= self.num_classes:
            raise DataError(
                f"{where}: split '{key}' has labels in [{lo}, {hi}]; expected 0-based "
                f"ids in [0, {self.num_classes})."
            )
        stray = np.setdiff1d(np.unique(split.labels), allowed)
        if stray.size:
            kind = "unseen" if key == "test_unseen" else "seen"
            raise DataError(
                f"{where}: split '{key}' holds images of classes "
                f"{self._names(stray)} that are not {kind} classes."
            )
        for field, last in (("part_locs", 2), ("part_boxes", 4)):
            value = getattr(split, field)
            if value is None:
                continue
            p = len(self.part_names) or (value.shape[1] if value.ndim == 3 else -1)
            if value.shape != (n, p, last):
                raise DataError(
                    f"{where}: split '{key}' {field} has shape {value.shape}; "
                    f"expected ({n}, {p}, {last})."
                )

    def _names(self, ids, limit=5):
        names = [f"{i} ({self.class_names[i]})" for i in ids[:limit]]
        more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
        return ", ".join(names) + more


def split_seen_classes(seen_classes, val_fraction=0.2, seed=0):
    """Seeded class-disjoint split of the seen classes into train and val classes.

    At least one class goes to each side (so needs two or more seen classes).

    Returns:
        (train_classes, val_classes): sorted int64 arrays.
    """
    seen = np.unique(np.asarray(seen_classes, dtype=np.int64))
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1); got {val_fraction}.")
    if seen.size < 2:
        raise DataError(
            f"Need at least 2 seen classes for a train/val class split; got {seen.size}."
        )
    num_val = int(np.clip(round(val_fraction * seen.size), 1, seen.size - 1))
    rng = np.random.default_rng(seed)
    val = np.sort(rng.choice(seen, size=num_val, replace=False))
    return np.setdiff1d(seen, val), val


def train_val_splits(trainval, val_classes):
    """Splits `trainval` images by class: `(train, val)` with val = `val_classes`."""
    in_val = np.isin(trainval.labels, val_classes)
    return trainval.select(~in_val), trainval.select(in_val)


def split_images_per_class(labels, fraction, seed=0):
    """Seeded per-class holdout: a boolean mask selecting `fraction` of each class's
    images (at least one when the class has two or more images)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = np.zeros(labels.shape, dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(fraction * idx.size))
        if fraction > 0 and idx.size >= 2:
            k = int(np.clip(k, 1, idx.size - 1))
        held[rng.choice(idx, size=k, replace=False)] = True
    return held
