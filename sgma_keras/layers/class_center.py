"""Class-center branch: learned seen-class centres and ridge transfer to unseen classes."""

import keras
import numpy as np
from keras import ops

from sgma_keras.arguments import CLASS_CENTER
from sgma_keras.tensor_cache import cached_constant
from sgma_keras.layers.semantic_embedding import l2_normalize, as_semantic_matrix


def ridge_transfer(seen_semantics, semantics, ridge_lambda, seen_rows=None):
    """(num_classes, num_seen) weights that write each class from the seen ones.

    Row `c` solves `argmin_b ||phi_c - Phi_s b||^2 + lambda ||b||^2` in closed
    form, `(Phi_s^T Phi_s + lambda I)^-1 Phi_s^T phi_c`. Rows of trained
    (seen) classes are one-hot, so their centre is the learned one exactly.

    Args:
        seen_semantics: (num_seen, dim) semantics of the training classes.
        semantics: (num_classes, dim) semantics of the classes to score.
        ridge_lambda: ridge penalty (>= 0).
        seen_rows: int array (num_classes,), the training-class index of each
            row or -1; default: rows equal to a training class vector.
    """
    phi_s = np.asarray(seen_semantics, dtype="float64")
    phi = np.asarray(semantics, dtype="float64")
    gram = phi_s @ phi_s.T + ridge_lambda * np.eye(len(phi_s))
    transfer = np.linalg.solve(gram, phi_s @ phi.T).T
    if seen_rows is None:
        seen_rows = match_rows(phi_s, phi)
    for row, seen in enumerate(np.asarray(seen_rows)):
        if seen >= 0:
            transfer[row] = 0.0
            transfer[row, seen] = 1.0
    return transfer.astype("float32")


def match_rows(seen_semantics, semantics):
    """For each row of `semantics`, the index of the equal seen vector or -1."""
    seen = np.asarray(seen_semantics, dtype="float64")
    rows = np.asarray(semantics, dtype="float64")
    dist = np.abs(rows[:, None, :] - seen[None, :, :]).max(-1)
    match = dist.argmin(1)
    return np.where(dist[np.arange(len(rows)), match] <= 1e-6, match, -1)


@keras.saving.register_keras_serializable(package="sgma_keras")
class ClassCenterHead(keras.layers.Layer):
    """Projects features to a latent space and scores them against class centres.

    `u = g(theta)` (a dense projection of the concatenated branch features)
    and the learned seen-class centres `C` are both L2-normalised. Centres of
    other classes are ridge-regression combinations of the seen centres,
    weighted by how their semantic vector is written from the seen ones.

    Returns `(u_hat, scores)`: the normalised latent features (batch, latent)
    and the cosine scores `<u_hat, C_hat_y>` over all classes of `semantics`.

    Args:
        seen_semantics: (num_seen, dim) semantics of the training classes, in
            the order of the learned centres.
        semantics: (num_classes, dim) semantics of the classes to score.
        latent_dim: size of the latent space.
        ridge_lambda: ridge penalty of the transfer.
        center_stddev: standard deviation of the initial learned centres (they are
            L2-normalised where used: a larger one makes them move slower).

    Example:

    >>> phi = np.random.rand(6, 8).astype("float32")
    >>> head = ClassCenterHead(phi[:4], phi, latent_dim=16)
    >>> u, scores = head(np.random.rand(2, 64).astype("float32"))
    >>> tuple(u.shape), tuple(scores.shape)
    ((2, 16), (2, 6))
    """

    def __init__(self, seen_semantics, semantics, latent_dim=256, ridge_lambda=1.0,
                 center_stddev=1.0, **kwargs):
        values = CLASS_CENTER.check(locals())
        super().__init__(**kwargs)
        self.seen_semantics = as_semantic_matrix(seen_semantics, owner="ClassCenterHead")
        self.latent_dim = values["latent_dim"]
        self.ridge_lambda = values["ridge_lambda"]
        self.center_stddev = values["center_stddev"]
        self.set_semantics(semantics)

    @property
    def num_seen(self):
        return self.seen_semantics.shape[0]

    def set_semantics(self, semantics, seen_rows=None):
        """Sets the scored classes; their centres come by ridge transfer.

        `transfer` is a new array, so the next call makes (once) a new tensor of it.
        """
        self.semantics = as_semantic_matrix(
            semantics, self.seen_semantics.shape[1], owner="ClassCenterHead"
        )
        self.transfer = ridge_transfer(
            self.seen_semantics, self.semantics, self.ridge_lambda, seen_rows
        )

    def build(self, input_shape):
        self.projection = self.add_weight(
            (int(input_shape[-1]), self.latent_dim), "glorot_uniform", name="projection"
        )
        self.projection_bias = self.add_weight((self.latent_dim,), "zeros", name="projection_bias")
        self.centers = self.add_weight(
            (self.num_seen, self.latent_dim),
            keras.initializers.RandomNormal(stddev=self.center_stddev),
            name="centers",
        )

    def normalized_centers(self):
        """(num_seen, latent) L2-normalised learned centres, in float32."""
        return l2_normalize(ops.cast(self.centers, "float32"))

    def call(self, features):
        u_hat = l2_normalize(ops.matmul(features, self.projection) + self.projection_bias)
        # Converted once, not per step (a host-to-device copy on PyTorch).
        transfer = cached_constant(self.transfer, "float32", like=u_hat)
        centers = l2_normalize(ops.matmul(transfer, self.normalized_centers()))
        scores = ops.matmul(ops.cast(u_hat, "float32"), ops.transpose(centers))
        return u_hat, ops.cast(scores, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.latent_dim), (input_shape[0], self.semantics.shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            seen_semantics=self.seen_semantics.tolist(),
            semantics=self.semantics.tolist(),
            latent_dim=self.latent_dim,
            ridge_lambda=self.ridge_lambda,
            center_stddev=self.center_stddev,
        )
        return config
