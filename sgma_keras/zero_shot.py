"""Zero-shot maths on collected predictions: accuracies, calibration,
seen-unseen curves and part localisation scores (NumPy; the few rule functions
named below also run on `keras.ops` tensors).

Everything here works on arrays gathered by `model.predict` (see
`evaluate.py`), with the conventions of `sgma_keras.metrics`, whose Keras
metrics call the same rule functions (`score_bias`, `predict_classes`,
`mean_class_accuracy`, `harmonic_mean`) with `keras.ops`:

- `scores`: `(N, num_classes)` over all classes, higher = more likely;
- `labels`: `(N,)` global class ids;
- a prediction is the argmax of the scores restricted to candidate classes,
  after a calibration constant is subtracted from the seen-class scores
  (calibrated stacking, Chao et al., "An Empirical Study and Analysis of
  Generalized Zero-Shot Learning for Object Recognition in the Wild", 2016).

Per-class mean top-1 accuracy averages the accuracy of each class that has at
least one sample; H is the harmonic mean `2us / (u + s)` (0 when `u + s = 0`).

Ties are broken like `numpy.argmax`: the lowest class id among the best
scores wins.
"""

import numpy as np

from sgma_keras.atomic_io import json_ready

__all__ = [
    "class_mask",
    "score_bias",
    "predict_classes",
    "class_accuracies",
    "mean_class_accuracy",
    "per_class_accuracy",
    "zsl_accuracy",
    "gzsl_accuracy",
    "harmonic_mean",
    "choose_calibration",
    "seen_unseen_curve",
    "ausuc",
    "part_localisation_score",
]


# --------------------------------------------------------------------------
# Accuracies
# --------------------------------------------------------------------------


def _to_numpy(x, dtype=None):
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, RuntimeError):
        # Backend tensors that NumPy cannot read directly (e.g. on GPU).
        import keras

        return np.asarray(keras.ops.convert_to_numpy(x), dtype=dtype)


def _ids(classes, num_classes, arg_name):
    ids = np.unique(_to_numpy(classes, "int64").reshape(-1))
    if ids.size == 0:
        raise ValueError(f"`{arg_name}` must not be empty.")
    if ids[0] < 0 or ids[-1] >= num_classes:
        raise ValueError(
            f"`{arg_name}` must hold class ids in [0, {num_classes}). "
            f"Received ids from {ids[0]} to {ids[-1]}."
        )
    return ids


def _check_scores_labels(scores, labels):
    scores = _to_numpy(scores, "float64")
    labels = _to_numpy(labels, "int64").reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(
            "Expected `scores` of shape (N, num_classes) and `labels` of "
            f"shape (N,). Received: {scores.shape} and {labels.shape}."
        )
    return scores, labels


# The accuracy rule, written once. `sgma_keras.metrics` calls these functions with
# `xp=keras.ops` on its accumulated counts (inside a compiled step); the functions
# below call them with `xp=numpy` on whole arrays. They only use what both
# namespaces share (`argmax`, `where`, `sum`, `maximum`, `divide`).


def class_mask(num_classes, classes, arg_name="classes"):
    """`(num_classes,)` float32 vector: 1 on the ids in `classes` (all ones for None).

    Raises a ValueError naming `arg_name` for an empty list or an id outside
    `[0, num_classes)`.
    """
    mask = np.zeros((num_classes,), dtype="float32")
    if classes is None:
        mask[:] = 1.0
    else:
        mask[_ids(classes, num_classes, arg_name)] = 1.0
    return mask


def score_bias(num_classes, candidates=None, calibration=0.0, calibrated_classes=None):
    """`(num_classes,)` float64 bias added to the scores before the argmax.

    `-calibration` on `calibrated_classes` (calibrated stacking) and `-inf` on the
    classes that are not `candidates` (None: every class is one), so that a
    non-candidate never wins, whatever the scale of the scores.
    """
    offset = np.zeros((num_classes,), "float64")
    if calibrated_classes is not None:
        offset = float(calibration) * class_mask(
            num_classes, calibrated_classes, "calibrated_classes"
        ).astype("float64")
    allowed = class_mask(num_classes, candidates, "candidates") > 0
    return np.where(allowed, -offset, -np.inf)


def predict_classes(scores, bias, xp=np):
    """Predicted class id per row: the argmax of `scores + bias` (see `score_bias`).

    Ties go to the lowest class id.
    """
    return xp.argmax(scores + bias, axis=-1)


def class_accuracies(correct, total, xp=np):
    """Per-class accuracy `correct / total` (0 where a class has no samples)."""
    present = total > 0
    return xp.where(present, xp.divide(correct, xp.where(present, total, 1.0)), 0.0)


def mean_class_accuracy(correct, total, mask=None, xp=np):
    """Mean of the per-class accuracies over the classes that have samples (and are 1
    in the 0/1 float `mask`, None: all); 0 when no such class has a sample.

    `correct` and `total` are per-class counts (or weight sums) over all classes.
    """
    present = xp.where(total > 0, 1.0 if mask is None else mask, 0.0)
    accuracy = class_accuracies(correct, total, xp)
    return xp.divide(xp.sum(accuracy * present), xp.maximum(xp.sum(present), 1.0))


def harmonic_mean(u, s, xp=np):
    """`2us / (u + s)`, 0 where `u + s = 0` (elementwise).

    A float for Python or NumPy scalars; arrays and `keras.ops` tensors
    (`xp=keras.ops`) stay arrays and tensors.
    """
    both = u + s
    positive = both > 0
    h = xp.where(positive, xp.divide(2.0 * u * s, xp.where(positive, both, 1.0)), 0.0)
    return float(h) if xp is np and np.ndim(h) == 0 else h


def _class_counts(correct, labels, classes, num_classes):
    """Per-class (correct, total) counts over `num_classes`, of the samples whose
    label is in `classes` (others are ignored)."""
    keep = np.isin(labels, classes)
    total = np.bincount(labels[keep], minlength=num_classes).astype("float64")
    hits = np.bincount(labels[keep], weights=correct[keep].astype("float64"),
                       minlength=num_classes)
    return hits, total


def _per_class(correct, total, classes):
    """(mean over `classes` that have samples, {class id: accuracy} of those)."""
    # Only those classes, in id order: NumPy then sums exactly the terms (and in
    # the order) a mean over the class accuracies would.
    present = classes[total[classes] > 0]
    correct, total = correct[present], total[present]
    mean = float(mean_class_accuracy(correct, total))
    accuracy = class_accuracies(correct, total)
    return mean, {int(c): float(a) for c, a in zip(present, accuracy)}


def per_class_accuracy(
    scores, labels, classes, candidates, calibration=0.0, seen_classes=None
):
    """Per-class mean top-1 accuracy with the argmax restricted to candidates.

    Args:
        scores: `(N, num_classes)` scores over all classes.
        labels: `(N,)` global class ids.
        classes: class ids to evaluate on; samples of other classes are
            ignored, and classes without samples do not enter the mean.
        candidates: class ids the prediction is chosen among.
        calibration: constant subtracted from the scores of `seen_classes`
            before the argmax.
        seen_classes: class ids lowered by `calibration` (`None`: none).

    Returns:
        `(mean, per_class)`: the mean over classes that have samples (0.0 when
        none has), and a dict `{class id: accuracy}` for those classes.

    Example:

    >>> scores = np.array([[1., 0.], [0., 1.], [0., 1.]])
    >>> per_class_accuracy(scores, [0, 0, 1], classes=[0, 1], candidates=[0, 1])
    (0.75, {0: 0.5, 1: 1.0})
    """
    scores, labels = _check_scores_labels(scores, labels)
    num_classes = scores.shape[1]
    classes = _ids(classes, num_classes, "classes")
    candidates = _ids(candidates, num_classes, "candidates")
    seen = None if seen_classes is None else _ids(seen_classes, num_classes, "seen_classes")
    bias = score_bias(num_classes, candidates, calibration, seen)
    correct = predict_classes(scores, bias) == labels
    return _per_class(*_class_counts(correct, labels, classes, num_classes), classes)


def zsl_accuracy(scores, labels, unseen_classes):
    """Conventional ZSL accuracy: unseen samples, predicted among unseen classes.

    Returns `(mean, {class id: accuracy})` as `per_class_accuracy`.
    """
    return per_class_accuracy(
        scores, labels, classes=unseen_classes, candidates=unseen_classes
    )


def gzsl_accuracy(
    scores, labels, seen_classes, unseen_classes, calibration=0.0, per_class=False
):
    """GZSL accuracies u, s and H, predicting among seen + unseen classes.

    Seen-label samples (test_seen) give `s`, unseen-label samples
    (test_unseen) give `u`; pass both sets together.

    Args:
        scores, labels: see `per_class_accuracy`.
        seen_classes, unseen_classes: disjoint lists of global class ids.
        calibration: constant subtracted from the seen-class scores.
        per_class: also return `{"per_class": {class id: accuracy}}`.

    Returns:
        dict with float `u`, `s`, `h` (and `per_class` if asked).

    Example:

    >>> scores = np.array([[5., 1., 0.], [5., 1., 0.], [0., 0., 1.]])
    >>> r = gzsl_accuracy(scores, [0, 1, 2], seen_classes=[0],
    ...                   unseen_classes=[1, 2])
    >>> r["u"], r["s"], round(r["h"], 4)
    (0.5, 1.0, 0.6667)
    """
    scores, labels = _check_scores_labels(scores, labels)
    num_classes = scores.shape[1]
    seen, unseen = _split(num_classes, seen_classes, unseen_classes)
    candidates = np.union1d(seen, unseen)
    bias = score_bias(num_classes, candidates, calibration, seen)
    correct = predict_classes(scores, bias) == labels
    counts = _class_counts(correct, labels, candidates, num_classes)
    s, accs_s = _per_class(*counts, seen)
    u, accs_u = _per_class(*counts, unseen)
    result = {"u": u, "s": s, "h": harmonic_mean(u, s)}
    if per_class:
        result["per_class"] = {**accs_s, **accs_u}
    return result


def _split(num_classes, seen_classes, unseen_classes):
    seen = _ids(seen_classes, num_classes, "seen_classes")
    unseen = _ids(unseen_classes, num_classes, "unseen_classes")
    overlap = np.intersect1d(seen, unseen)
    if overlap.size:
        raise ValueError(
            "`seen_classes` and `unseen_classes` must be disjoint. Both "
            f"contain: {overlap[:10].tolist()}"
        )
    return seen, unseen


# --------------------------------------------------------------------------
# Calibration and seen-unseen curves
# --------------------------------------------------------------------------


class _GapModel:
    """Reduces GZSL prediction under any calibration to per-sample quantities.

    With calibration `gamma`, sample i is predicted as its best seen class if
    `gap_i = best_seen_score_i - best_unseen_score_i > gamma`, as its best
    unseen class if `gap_i < gamma` (ties go to the lower class id). So u(gamma)
    and s(gamma) change only at the gaps, and s decreases while u increases
    with gamma.
    """

    def __init__(self, scores, labels, seen_classes, unseen_classes):
        scores, labels = _check_scores_labels(scores, labels)
        seen, unseen = _split(scores.shape[1], seen_classes, unseen_classes)
        keep = np.isin(labels, np.union1d(seen, unseen))
        scores, labels = scores[keep], labels[keep]

        best_seen = seen[np.argmax(scores[:, seen], axis=1)]
        best_unseen = unseen[np.argmax(scores[:, unseen], axis=1)]
        rows = np.arange(labels.size)
        self.gap = scores[rows, best_seen] - scores[rows, best_unseen]
        self.tie_to_seen = best_seen < best_unseen
        self.hit_if_seen = best_seen == labels
        self.hit_if_unseen = best_unseen == labels

        # Weight of each sample in s (resp. u): 1 / (count of its class x
        # number of seen (resp. unseen) classes present), so that summing the
        # hits gives the per-class mean directly.
        is_seen = np.isin(labels, seen)
        present, inverse, counts = np.unique(
            labels, return_inverse=True, return_counts=True
        )
        n_seen = np.isin(present, seen).sum()
        n_unseen = present.size - n_seen
        per_sample = 1.0 / counts[inverse]
        self.w_seen = np.where(is_seen, per_sample / max(n_seen, 1), 0.0)
        self.w_unseen = np.where(is_seen, 0.0, per_sample / max(n_unseen, 1))

    def evaluate(self, gamma):
        """(s, u) at calibration `gamma`."""
        to_seen = (self.gap > gamma) | ((self.gap == gamma) & self.tie_to_seen)
        hit = np.where(to_seen, self.hit_if_seen, self.hit_if_unseen)
        return float(hit @ self.w_seen), float(hit @ self.w_unseen)

    def sweep(self):
        """Exact (gammas, s, u) at every change of prediction.

        The first gamma lies below every gap (all samples predicted seen), the
        last above every gap (all predicted unseen), and the ones between are
        the midpoints of consecutive distinct gaps.
        """
        order = np.argsort(self.gap, kind="stable")
        gap = self.gap[order]
        if gap.size == 0:
            return np.zeros(1), np.zeros(1), np.zeros(1)
        # Raising gamma past gap_i moves sample i from its seen to its unseen
        # prediction: s loses its seen hit, u gains its unseen hit.
        d_s = -(self.hit_if_seen[order] * self.w_seen[order])
        d_u = self.hit_if_unseen[order] * self.w_unseen[order]
        s0 = float(self.hit_if_seen @ self.w_seen)
        s = np.concatenate([[s0], s0 + np.cumsum(d_s)])
        u = np.concatenate([[0.0], np.cumsum(d_u)])
        # Only the state after the last sample of a run of equal gaps exists.
        last_of_run = np.append(gap[1:] != gap[:-1], True)
        keep = np.concatenate([[True], last_of_run])
        # One gamma inside each interval between distinct gaps; the two
        # unbounded ends get a point one margin beyond the extreme gaps.
        g = gap[last_of_run]
        margin = max(1.0, float(np.abs(g).max()))
        gammas = np.concatenate(
            [[g[0] - margin], 0.5 * (g[:-1] + g[1:]), [g[-1] + margin]]
        )
        # Rounding in the cumulative sums must not leave tiny negatives.
        return gammas, np.clip(s[keep], 0.0, 1.0), np.clip(u[keep], 0.0, 1.0)


def choose_calibration(scores, labels, seen_classes, unseen_classes, grid=None):
    """Calibration constant maximising H on a validation set.

    Must be run on VALIDATION data only: scores of held-out *seen* classes
    (the validation split of the training classes) playing the unseen role,
    never on test_seen / test_unseen, where it would leak the test labels.

    Args:
        scores: `(N, num_classes)` validation scores.
        labels: `(N,)` validation labels (global ids).
        seen_classes: ids playing the seen role (the classes trained on).
        unseen_classes: ids playing the unseen role (held-out seen classes).
        grid: calibration values to try. `None`: the exact optimum over all
            values, found from the score gaps (H only changes there), as the
            midpoint of the best interval between consecutive gaps (or a
            point beyond the extreme gap if the best is to predict all seen
            or all unseen).

    Returns:
        `(gamma, H)`: the best calibration and the H it gives. Ties go to the
        smallest `|gamma|`.

    Example:

    >>> # Seen class 0 outscores the right unseen class 1 by 1.0 on sample 2.
    >>> scores = np.array([[3., 0.], [3., 2.], [0., 1.]])
    >>> # H = 1 for 1 < gamma < 3 (sample 0 keeps its seen prediction).
    >>> choose_calibration(scores, [0, 1, 1], [0], [1])
    (2.0, 1.0)
    """
    model = _GapModel(scores, labels, seen_classes, unseen_classes)
    if grid is None:
        gammas, s, u = model.sweep()
    else:
        gammas = np.asarray(grid, dtype="float64").reshape(-1)
        if gammas.size == 0:
            raise ValueError("`grid` must not be empty.")
        s, u = np.array([model.evaluate(g) for g in gammas]).T
    h = harmonic_mean(u, s)
    best = np.flatnonzero(h >= h.max() - 1e-12)
    i = best[np.argmin(np.abs(gammas[best]))]
    return float(gammas[i]), float(h[i])


def seen_unseen_curve(
    scores,
    labels,
    seen_classes,
    unseen_classes,
    num_points=None,
    return_gammas=False,
):
    """Seen-unseen accuracy curve over a calibration sweep (Chao et al. 2016).

    The sweep goes from a calibration below every score gap (everything
    predicted seen: `(s_max, 0)`) to one above every gap (everything predicted
    unseen: `(0, u_max)`), so both ends of the curve are reached.

    Args:
        scores, labels, seen_classes, unseen_classes: see `gzsl_accuracy`.
        num_points: `None` for the exact curve (one point per distinct gap,
            plus the ends); otherwise at most this many points (>= 2) taken
            evenly along the exact sweep, ends included.
        return_gammas: also return the calibration of each point.

    Returns:
        `(s, u)` arrays ordered by increasing calibration (s decreasing, u
        increasing), or `(s, u, gammas)`.
    """
    gammas, s, u = _GapModel(scores, labels, seen_classes, unseen_classes).sweep()
    if num_points is not None:
        if num_points < 2:
            raise ValueError(f"`num_points` must be >= 2. Received: {num_points}")
        if num_points < gammas.size:
            pick = np.unique(
                np.linspace(0, gammas.size - 1, num_points).round().astype(int)
            )
            gammas, s, u = gammas[pick], s[pick], u[pick]
    return (s, u, gammas) if return_gammas else (s, u)


def ausuc(s, u):
    """Area under the seen-unseen curve (AUSUC, Chao et al. 2016).

    Trapezoid rule over the curve sorted by s, with the end points `(0, u_max)`
    and `(s_max, 0)` added, so a partial sweep is closed the same way as a
    full one.

    Example:

    >>> round(ausuc(np.array([0.8, 0.4, 0.0]), np.array([0.0, 0.5, 0.6])), 4)
    0.32
    """
    s = np.asarray(s, dtype="float64").reshape(-1)
    u = np.asarray(u, dtype="float64").reshape(-1)
    if s.shape != u.shape or s.size == 0:
        raise ValueError(
            f"`s` and `u` must be non-empty and of one shape: {s.shape}, {u.shape}"
        )
    s = np.concatenate([[0.0], s, [s.max()]])
    u = np.concatenate([[u.max()], u, [0.0]])
    # At equal s, highest u first: that is the order of a calibration sweep
    # (s falls as u rises), so a vertical step is walked down before moving
    # right and each trapezoid joins neighbouring points of the sweep.
    order = np.lexsort((-u, s))
    s, u = s[order], u[order]
    return float(np.sum(np.diff(s) * 0.5 * (u[1:] + u[:-1])))


# --------------------------------------------------------------------------
# Part localisation
# --------------------------------------------------------------------------


def part_localisation_score(boxes, part_locs, part_names=None):
    """How often each predicted part box contains annotated part centres.

    A ground-truth point `(x, y)` is inside a predicted square
    `(t_x, t_y, t_s)` if `|x - t_x| <= t_s / 2` and `|y - t_y| <= t_s / 2`
    (all image-relative). Images without any visible ground-truth part are
    left out.

    Args:
        boxes: `(N, K, 3)` predicted squares `(t_x, t_y, t_s)` in [0, 1].
        part_locs: `(N, P, 2)` ground-truth `(x, y)` in [0, 1], NaN where
            the part is not visible.
        part_names: optional P names of the ground-truth parts.

    Returns:
        A JSON-ready dict:
        - `num_images`: images with at least one visible part;
        - `part_hit_rate`: K floats, the share of those images whose k-th box
          contains at least one visible part centre;
        - `gt_part_names`, `gt_visible_counts`: per ground-truth part;
        - `hit_matrix`: K x P, share of the images where part p is visible
          whose k-th box contains it (`None` if p is never visible);
        - `best_gt_part`: per predicted part, the ground-truth part it hits
          most often (`None` if none is ever visible).

    Example:

    >>> boxes = np.array([[[0.5, 0.5, 0.2]]])      # 1 image, 1 box
    >>> locs = np.array([[[0.55, 0.45], [0.9, 0.9]]])
    >>> r = part_localisation_score(boxes, locs, ["head", "tail"])
    >>> r["part_hit_rate"], r["hit_matrix"]
    ([1.0], [[1.0, 0.0]])
    """
    boxes = _to_numpy(boxes, "float64")
    locs = _to_numpy(part_locs, "float64")
    if boxes.ndim != 3 or boxes.shape[-1] != 3:
        raise ValueError(f"`boxes` must have shape (N, K, 3). Received: {boxes.shape}")
    if locs.ndim != 3 or locs.shape[-1] != 2 or locs.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"`part_locs` must have shape (N, P, 2) with N = {boxes.shape[0]}. "
            f"Received: {locs.shape}"
        )
    num_parts = locs.shape[1]
    if part_names is None:
        part_names = [f"part_{p}" for p in range(num_parts)]
    elif len(part_names) != num_parts:
        raise ValueError(f"Expected {num_parts} `part_names`, got {len(part_names)}.")

    visible = np.all(np.isfinite(locs), axis=-1)  # (N, P)
    half = boxes[:, :, None, 2] / 2.0  # (N, K, 1)
    with np.errstate(invalid="ignore"):  # NaN comparisons are simply False
        inside = (
            (np.abs(locs[:, None, :, 0] - boxes[:, :, None, 0]) <= half)
            & (np.abs(locs[:, None, :, 1] - boxes[:, :, None, 1]) <= half)
            & visible[:, None, :]
        )  # (N, K, P)

    valid = visible.any(axis=1)
    n_valid = int(valid.sum())
    any_hit = inside.any(axis=2)[valid]  # (n_valid, K)
    part_hit_rate = any_hit.mean(axis=0) if n_valid else np.full(boxes.shape[1], np.nan)

    visible_counts = visible.sum(axis=0)  # (P,)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = inside.sum(axis=0) / visible_counts[None, :]  # (K, P)

    best = []
    for row in matrix:
        if np.all(np.isnan(row)):
            best.append(None)
        else:
            p = int(np.nanargmax(row))
            best.append({"gt_part": part_names[p], "hit_rate": float(row[p])})

    return json_ready(
        {
            "num_images": n_valid,
            "part_hit_rate": part_hit_rate,
            "gt_part_names": list(part_names),
            "gt_visible_counts": visible_counts,
            "hit_matrix": matrix,
            "best_gt_part": best,
        }
    )
