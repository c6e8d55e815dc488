"""The four SGMA objectives, each usable on its own.

All losses cast their inputs to float32 first, so they stay finite under
`mixed_float16` / `mixed_bfloat16`, and return a scalar averaged over the
batch.
"""

import keras
import numpy as np
from keras import ops

from sgma_keras.tensor_cache import cached_constant


def _f32(x):
    return ops.cast(x, "float32")


def concentrated_maps(maps, sigma=1.0):
    """Ideal maps: a 2-D Gaussian at the (stop-gradient) peak of each map.

    Args:
        maps: (B, H, W, K) attention maps.
        sigma: Gaussian width in map cells.
    """
    maps = ops.stop_gradient(_f32(maps))
    shape = ops.shape(maps)
    height, width, parts = shape[1], shape[2], shape[3]
    flat = ops.reshape(ops.transpose(maps, (0, 3, 1, 2)), (shape[0], parts, -1))
    peak = ops.argmax(flat, axis=-1)
    peak_row = _f32(peak // width)[..., None, None]
    peak_col = _f32(peak % width)[..., None, None]
    rows = ops.arange(height, dtype="float32")[:, None]
    cols = ops.arange(width, dtype="float32")[None, :]
    dist2 = (rows - peak_row) ** 2 + (cols - peak_col) ** 2
    ideal = ops.exp(-dist2 / (2.0 * sigma * sigma))  # (B, K, H, W)
    return ops.transpose(ideal, (0, 2, 3, 1))


def compactness_loss(maps, sigma=1.0):
    """`sum_i mean_z (m_i^z - m~_i^z)^2`, averaged over the batch.

    Example:

    >>> maps = concentrated_maps(np.random.rand(1, 6, 6, 2).astype("float32"))
    >>> float(compactness_loss(maps))  # an ideal map costs nothing
    0.0
    """
    maps = _f32(maps)
    ideal = concentrated_maps(maps, sigma)
    per_part = ops.mean((maps - ideal) ** 2, axis=(1, 2))  # (B, K)
    return ops.mean(ops.sum(per_part, axis=-1))


def diversity_loss(maps, margin=0.2, reduction="sum"):
    """`sum_i sum_z m_i^z max(0, max_{k != i} m_k^z - margin)`, batch mean.

    Args:
        maps: (B, H, W, K).
        margin: mrg; overlaps below it are free.
        reduction: "sum" over map positions (the paper) or "mean" (the same
            loss divided by H*W, independent of the map size).

    Example:

    >>> maps = np.zeros((1, 4, 4, 2), "float32")
    >>> maps[0, 0, 0, 0] = maps[0, 3, 3, 1] = 1.0  # no overlap
    >>> float(diversity_loss(maps))
    0.0
    """
    maps = _f32(maps)
    parts = maps.shape[-1]
    if parts is None or parts < 2:
        return ops.zeros((), "float32")
    flat = ops.reshape(maps, (ops.shape(maps)[0], -1, parts))  # (B, Z, K)
    others = ops.where(
        ops.eye(parts, dtype="bool")[None, None],  # (1, 1, K, K): [i, k] is k == i
        ops.zeros_like(flat[..., None, :]),
        ops.broadcast_to(flat[..., None, :], ops.shape(flat)[:2] + (parts, parts)),
    )
    strongest_other = ops.max(others, axis=-1)  # (B, Z, K)
    per_position = flat * ops.relu(strongest_other - margin)
    if reduction == "mean":
        per_sample = ops.sum(ops.mean(per_position, axis=1), axis=-1)
    elif reduction == "sum":
        per_sample = ops.sum(per_position, axis=(1, 2))
    else:
        raise ValueError(f"diversity_loss: reduction must be 'sum' or 'mean', got {reduction!r}.")
    return ops.mean(per_sample)


def embedding_softmax_loss(labels, scores, seen_classes=None):
    """Softmax cross-entropy over the seen classes of the compatibility scores.

    Args:
        labels: (B,) global class ids (each must be a seen class).
        scores: (B, num_classes) scores over all classes.
        seen_classes: int ids of the seen classes (the softmax support);
            None means every column of `scores`. Pass a NumPy array that is
            replaced, not mutated, when it changes: its tensors are cached
            (see `cached_constant`).
    """
    scores = _f32(scores)
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    if seen_classes is not None:
        seen = cached_constant(seen_classes, "int32", like=labels)
        scores = ops.take(scores, seen, axis=1)
        labels = seen_index(labels, seen_classes)
    return ops.mean(
        keras.losses.sparse_categorical_crossentropy(labels, scores, from_logits=True)
    )


def class_center_triplet_loss(labels, latent, centers, margin=0.8):
    """`sum_{k != y} max(0, mrg + ||u - C_y||^2 - ||u - C_k||^2)`, batch mean.

    All other centres are negatives (no triplet sampling).

    Args:
        labels: (B,) index of each sample's centre (0..num_centers-1).
        latent: (B, D) L2-normalised features `u_hat`.
        centers: (S, D) L2-normalised centres `C_hat`.
        margin: mrg.

    Example:

    >>> centers = np.eye(3, dtype="float32")
    >>> float(class_center_triplet_loss([0, 2], centers[[0, 2]], centers))
    0.0
    """
    latent = _f32(latent)
    centers = _f32(centers)
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    dist = (
        ops.sum(latent**2, axis=-1, keepdims=True)
        - 2.0 * ops.matmul(latent, ops.transpose(centers))
        + ops.sum(centers**2, axis=-1)[None, :]
    )
    onehot = ops.one_hot(labels, ops.shape(centers)[0], dtype="float32")
    positive = ops.sum(dist * onehot, axis=-1, keepdims=True)
    hinge = ops.relu(margin + positive - dist) * (1.0 - onehot)
    return ops.mean(ops.sum(hinge, axis=-1))


def _seen_lookup(seen_classes):
    """int32 table (max(seen) + 1,): the position in `seen_classes` of each class id."""
    seen = np.asarray(seen_classes, dtype="int64").reshape(-1)
    lookup = np.zeros(int(seen.max()) + 1, dtype="int32")
    lookup[seen] = np.arange(len(seen), dtype="int32")
    return lookup


def seen_index(labels, seen_classes):
    """Maps global class ids to positions in `seen_classes` (static ids).

    The lookup table is built and converted once per `seen_classes` array
    (`cached_constant`), not on every training step.
    """
    lookup = cached_constant(seen_classes, "int32", like=labels, build=_seen_lookup)
    # Labels of other classes (validation / test unseen images in `evaluate`)
    # must not index past the table: TF and PyTorch raise on an out-of-range
    # gather. They map to an arbitrary seen class, as ids below max(seen) do.
    labels = ops.clip(labels, 0, lookup.shape[0] - 1)
    return ops.take(lookup, labels, axis=0)
