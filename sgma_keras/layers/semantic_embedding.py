"""Compatibility scores between visual features and class semantic vectors."""

import keras
import numpy as np
from keras import ops

from sgma_keras.arguments import SEMANTIC_EMBEDDING
from sgma_keras.tensor_cache import cached_constant


def as_semantic_matrix(semantics, expected_dim=None, owner="SemanticEmbedding"):
    """Validates a (num_classes, dim) class-semantics matrix; returns float32 numpy.

    Always a new array: its owner's cached backend tensor (`cached_constant`)
    is keyed by the array, so the caller's array must not be shared with it.
    """
    matrix = np.array(semantics, dtype="float32")
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
        raise ValueError(
            f"{owner}: the class-semantics matrix must have shape (num_classes, dim), "
            f"got shape {matrix.shape}."
        )
    if expected_dim is not None and matrix.shape[1] != expected_dim:
        raise ValueError(
            f"{owner}: the class-semantics matrix has width {matrix.shape[1]}, but "
            f"the model was built for semantic vectors of width {expected_dim}."
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{owner}: the class-semantics matrix holds NaN or inf values.")
    return matrix


@keras.saving.register_keras_serializable(package="sgma_keras")
class SemanticEmbedding(keras.layers.Layer):
    """Scores `s_j = sum_b theta_b^T W phi(y_j)` against every class.

    Input: branch features `theta` of shape (batch, branches, C). One `W`
    (C x dim) is shared by all branches, so the late fusion over branches is
    a sum of per-branch compatibility scores. The class-semantics matrix is a
    constant, not a weight: `set_semantics` swaps it (for example from the
    seen classes to seen + unseen, or to new classes) without rebuilding the
    layer or touching `W`.

    With `normalize=True`, each `theta_b` and each `phi` is L2-normalised and
    the scores are multiplied by `scale` (NormFace style; learnable if
    `learn_scale`).

    Args:
        semantics: (num_classes, dim) class semantic vectors.
        normalize: L2-normalise features and semantics.
        scale: score scale when normalising.
        learn_scale: whether the scale is trained.

    Example:

    >>> phi = np.random.rand(5, 16).astype("float32")
    >>> theta = np.random.rand(2, 3, 32).astype("float32")
    >>> tuple(SemanticEmbedding(phi)(theta).shape)
    (2, 5)
    """

    def __init__(self, semantics, normalize=False, scale=16.0, learn_scale=True, **kwargs):
        values = SEMANTIC_EMBEDDING.check(locals())
        super().__init__(**kwargs)
        self.semantics = as_semantic_matrix(semantics)
        self.normalize = values["normalize"]
        self.initial_scale = values["scale"]  # `scale` is the weight
        self.learn_scale = values["learn_scale"]

    @property
    def num_classes(self):
        return self.semantics.shape[0]

    @property
    def semantic_dim(self):
        return self.semantics.shape[1]

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                "SemanticEmbedding expects branch features of shape (batch, branches, "
                f"channels), got {input_shape}."
            )
        self.kernel = self.add_weight(
            (int(input_shape[-1]), self.semantic_dim), "glorot_uniform", name="kernel"
        )
        self.scale = self.add_weight(
            (),
            keras.initializers.Constant(self.initial_scale),
            # Without normalisation the scale is unused: keep it out of training.
            trainable=self.learn_scale and self.normalize,
            name="scale",
        )

    def set_semantics(self, semantics):
        """Replaces the class-semantics matrix (any number of classes, same width).

        A new array, so the next call makes (once) a new tensor of it.
        """
        self.semantics = as_semantic_matrix(semantics, self.semantic_dim)

    def call(self, theta):
        # Converted once, not per step (a host-to-device copy on PyTorch).
        phi = cached_constant(self.semantics, self.compute_dtype, like=theta)
        if self.normalize:
            theta = l2_normalize(theta)
            phi = l2_normalize(phi)
        projected = ops.einsum("bnc,cd->bnd", theta, self.kernel)
        scores = ops.matmul(ops.sum(projected, axis=1), ops.transpose(phi))
        if self.normalize:
            scores = scores * ops.cast(self.scale, scores.dtype)
        return scores

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            semantics=self.semantics.tolist(),
            normalize=self.normalize,
            scale=self.initial_scale,
            learn_scale=self.learn_scale,
        )
        return config


def l2_normalize(x):
    """`keras.ops.normalize` over the last axis, computed in float32.

    A float16 sum of squares overflows for wide features (mixed precision).
    """
    return ops.cast(ops.normalize(ops.cast(x, "float32"), axis=-1), x.dtype)
