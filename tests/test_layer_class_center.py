"""ClassCenterHead and its ridge transfer: closed forms, scores, the shared layer checks."""

import numpy as np
import pytest

from sgma_keras.layers import ClassCenterHead
from sgma_keras.layers.class_center import ridge_transfer
from tests.helpers import _seed, numpy  # noqa: F401 (_seed: a cheaper session reset)
from tests.layer_harness import run_layer_test


def test_ridge_transfer_closed_form_and_one_hot_seen_rows():
    rng = np.random.default_rng(8)
    phi = rng.normal(size=(6, 5))
    seen = phi[[0, 2, 3, 5]]
    transfer = ridge_transfer(seen, phi, ridge_lambda=0.5)
    for row, cls in enumerate([0, 2, 3, 5]):
        np.testing.assert_array_equal(transfer[cls], np.eye(4)[row])
    for cls in (1, 4):  # unseen: argmin ||phi_u - Phi_s b||^2 + 0.5 ||b||^2
        phi_s = seen.T  # seen vectors as columns
        beta = np.linalg.solve(phi_s.T @ phi_s + 0.5 * np.eye(4), phi_s.T @ phi[cls])
        np.testing.assert_allclose(transfer[cls], beta, rtol=1e-4, atol=1e-5)
        gradient = -2 * phi_s.T @ (phi[cls] - phi_s @ beta) + 2 * 0.5 * beta
        np.testing.assert_allclose(gradient, 0.0, atol=1e-9)


def test_class_center_head_scores():
    rng = np.random.default_rng(9)
    phi = rng.normal(size=(6, 5)).astype("float32")
    head = ClassCenterHead(phi[[0, 2, 3, 5]], phi, latent_dim=4, ridge_lambda=1.0)
    features = rng.normal(size=(3, 10)).astype("float32")
    u_hat, scores = (numpy(t) for t in head(features))
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    u = unit(features @ numpy(head.projection) + numpy(head.projection_bias))
    centers = unit(ridge_transfer(phi[[0, 2, 3, 5]], phi, 1.0) @ unit(numpy(head.centers)))
    np.testing.assert_allclose(u_hat, u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, u @ centers.T, rtol=1e-5, atol=1e-5)
    # Seen columns use the learned centres themselves.
    np.testing.assert_allclose(scores[:, 2], u @ unit(numpy(head.centers))[1], atol=1e-5)
    with pytest.raises(ValueError, match=r"has width 3, but the model was built for .* width 5"):
        head.set_semantics(np.ones((2, 3), "float32"))


def test_class_center_head_passes_the_layer_checks(tmp_path):
    rng = np.random.default_rng(10)
    phi = rng.normal(size=(6, 5)).astype("float32")
    features = rng.normal(size=(2, 7)).astype("float32")
    run_layer_test(ClassCenterHead, dict(seen_semantics=phi[[0, 2, 3, 5]],
                                         semantics=phi[[1, 4, 0]], latent_dim=4,
                                         ridge_lambda=0.3),
                   features, tmp_path, expected_output_shape=((2, 4), (2, 3)),
                   expected_num_trainable_weights=3)
