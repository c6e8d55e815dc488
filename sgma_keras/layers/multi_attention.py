"""Channel-grouping multi-attention maps (the SGMA multi-attention subnet)."""

import keras
import numpy as np
from keras import ops

from sgma_keras.arguments import MULTI_ATTENTION


@keras.saving.register_keras_serializable(package="sgma_keras")
class MultiAttention(keras.layers.Layer):
    """K attention maps from a feature map by soft channel grouping.

    For each part `i`, a channel descriptor `p = GAP(F)` goes through two
    dense layers, `a_i = sigmoid(W2_i relu(W1_i p))`, giving one weight per
    channel; the map is `M_i = sigmoid(sum_c a_i^c F_c / norm + b_i)`.

    `normalize=True` divides the weighted sum by `sum_c a_i^c` (a weighted
    channel mean): with 512 ReLU channels the plain sum saturates the sigmoid
    at 1 everywhere and the map carries no gradient. `normalize=False` is the
    paper's literal formula.

    The layer computes in float32 under a mixed-precision policy (the maps are
    returned in the compute dtype): the channel sums overflow float16.

    Args:
        num_parts: K, the number of attention maps (>= 1).
        reduction: hidden width of the first dense layer is `C // reduction`.
        normalize: divide the weighted channel sum by the sum of weights.

    Example:

    >>> features = np.random.rand(2, 14, 14, 64).astype("float32")
    >>> maps = MultiAttention(num_parts=2)(features)
    >>> tuple(maps.shape)
    (2, 14, 14, 2)
    """

    def __init__(self, num_parts=2, reduction=16, normalize=True, **kwargs):
        values = MULTI_ATTENTION.check(locals())
        super().__init__(**kwargs)
        for name, value in values.items():
            setattr(self, name, value)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "MultiAttention expects a feature map of shape (batch, height, "
                f"width, channels) with known channels, got {input_shape}."
            )
        channels = int(input_shape[-1])
        hidden = max(1, channels // self.reduction)
        k = self.num_parts
        # Read in float32 under mixed precision too: the layer computes in float32.
        f32 = dict(autocast=False)
        self.w1 = self.add_weight((k, channels, hidden), "glorot_uniform", name="w1", **f32)
        self.b1 = self.add_weight((k, hidden), "zeros", name="b1", **f32)
        self.w2 = self.add_weight((k, hidden, channels), "glorot_uniform", name="w2", **f32)
        self.b2 = self.add_weight((k, channels), "zeros", name="b2", **f32)
        self.map_bias = self.add_weight((k,), "zeros", name="map_bias", **f32)
        self.channels = channels

    def channel_weights(self, features):
        """Per-part channel weights `a` of shape (batch, K, C), in float32."""
        descriptor = ops.mean(ops.cast(features, "float32"), axis=(1, 2))
        hidden = ops.relu(ops.einsum("bc,kch->bkh", descriptor, self.w1) + self.b1)
        return ops.sigmoid(ops.einsum("bkh,khc->bkc", hidden, self.w2) + self.b2)

    def call(self, features):
        # In float32 under mixed precision: the weighted sum over C channels (512 in
        # VGG) of large activations overflows float16 (max 65504) before the division
        # brings it back, and an infinite logit gives NaN gradients.
        features = ops.cast(features, "float32")
        weights = self.channel_weights(features)
        logits = ops.einsum("bhwc,bkc->bhwk", features, weights)
        if self.normalize:
            logits = logits / (ops.sum(weights, axis=-1)[:, None, None, :] + 1e-6)
        maps = ops.sigmoid(logits + self.map_bias)
        return ops.cast(maps, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.num_parts,)

    # --- initialisation from channel clustering (spec: "initialisation") ---

    def fit_channel_groups(self, features, iterations=100, seed=0):
        """Groups channels by k-means over their peak coordinates.

        A channel that is all zero on an image (a dead ReLU channel there) has
        no peak on it: its argmax would be cell (0, 0), a vote for the corner.
        Such a (channel, image) coordinate is replaced by the channel's mean
        peak over the images where it fires; a channel that fires on no image
        takes no part in the k-means and joins the group whose centre is
        nearest to the map centre (it adds nothing to any map on this sample).

        Args:
            features: array (N, H, W, C) of feature maps over a sample of
                training images, from a backbone trained for classification.
            iterations: k-means iterations.
            seed: seed of the k-means initialisation.

        Returns:
            int array (C,): the group (part) index of each channel.
        """
        features = np.asarray(keras.ops.convert_to_numpy(features), dtype="float32")
        n, h, w, c = features.shape
        flat = features.reshape(n, h * w, c)
        peak = flat.argmax(axis=1)  # (N, C): where each channel fires most
        alive = flat.max(axis=1) > 0.0  # (N, C)
        rows = (peak // w) / max(h - 1, 1)
        cols = (peak % w) / max(w - 1, 1)
        fires = alive.any(axis=0)  # (C,)
        count = np.maximum(alive.sum(axis=0), 1)
        for coords in (rows, cols):
            mean = np.where(alive, coords, 0.0).sum(axis=0) / count
            coords[...] = np.where(alive, coords, mean[None, :])
        # One vector per channel: its peak coordinates on every image, in [0,1].
        points = np.concatenate([rows, cols], axis=0).T
        groups = np.zeros(c, dtype="int64")
        if not fires.any():
            return groups
        groups[fires] = kmeans(points[fires], self.num_parts, iterations=iterations, seed=seed)
        if not fires.all():
            centres = np.stack([
                points[fires][groups[fires] == j].mean(0) if np.any(groups[fires] == j)
                else np.full(2 * n, np.inf) for j in range(self.num_parts)
            ])
            middle = np.full(2 * n, 0.5)
            groups[~fires] = ((centres - middle) ** 2).sum(-1).argmin()
        return groups

    def prefit(self, features, groups, target_logit=3.0, l2=1e-3):
        """Fits the second dense layer so that `a_i` matches group i's indicator.

        The first layer is kept; the second is solved in closed form by ridge
        regression of the indicator logits (+/- `target_logit`) on the hidden
        activations, which is the spec's "L2 regression" pre-fit.

        Args:
            features: array (N, H, W, C) of feature maps (a sample of images).
            groups: int array (C,) from `fit_channel_groups`.
            target_logit: logit of the 0/1 targets (3.0 -> sigmoid 0.95/0.05).
            l2: ridge penalty.
        """
        features = np.asarray(keras.ops.convert_to_numpy(features), dtype="float64")
        groups = np.asarray(groups)
        if groups.shape != (self.channels,):
            raise ValueError(
                f"MultiAttention.prefit: `groups` must have shape ({self.channels},), "
                f"got {groups.shape}."
            )
        descriptor = features.mean(axis=(1, 2))
        w1 = keras.ops.convert_to_numpy(self.w1).astype("float64")
        b1 = keras.ops.convert_to_numpy(self.b1).astype("float64")
        new_w2, new_b2 = [], []
        for part in range(self.num_parts):
            hidden = np.maximum(descriptor @ w1[part] + b1[part], 0.0)
            design = np.concatenate([hidden, np.ones((len(hidden), 1))], axis=1)
            target = np.where(groups == part, target_logit, -target_logit)
            target = np.broadcast_to(target, (len(hidden), self.channels))
            gram = design.T @ design + l2 * np.eye(design.shape[1])
            solution = np.linalg.solve(gram, design.T @ target)
            new_w2.append(solution[:-1])
            new_b2.append(solution[-1])
        self.w2.assign(np.stack(new_w2).astype(self.w2.dtype))
        self.b2.assign(np.stack(new_b2).astype(self.b2.dtype))

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in MULTI_ATTENTION.names})
        return config


def kmeans(points, k, iterations=100, seed=0, restarts=10):
    """k-means (k-means++ seeding), best of `restarts` seedings by within-cluster
    sum of squares; returns the cluster of each point.

    One seeding can stop in a poor local optimum: on a warmed-up demo backbone, one
    of six seedings split 128 channels into groups of 127 and 1 (sum of squares
    7230, against 6394 for the best 70/58 split), leaving one part a single channel.
    """
    points = np.asarray(points, dtype="float64")
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(restarts):
        assign = _kmeans_once(points, k, iterations, rng)
        cost = sum(((points[assign == j] - points[assign == j].mean(0)) ** 2).sum()
                   for j in np.unique(assign))
        if cost < best_cost - 1e-9:
            best, best_cost = assign, cost
    return best


def _kmeans_once(points, k, iterations, rng):
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        dist = np.min([((points - c) ** 2).sum(1) for c in centres], axis=0)
        probs = dist / dist.sum() if dist.sum() > 0 else None
        centres.append(points[rng.choice(len(points), p=probs)])
    centres = np.stack(centres)
    for _ in range(iterations):
        assign = ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        new = np.stack(
            [points[assign == j].mean(0) if np.any(assign == j) else centres[j] for j in range(k)]
        )
        if np.allclose(new, centres):
            break
        centres = new
    return ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
