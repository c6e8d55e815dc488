"""SemanticEmbedding: scores against NumPy, swapped semantics, the shared layer checks."""

import numpy as np
import pytest

from sgma_keras.layers import SemanticEmbedding
from tests.helpers import _seed, numpy  # noqa: F401 (_seed: a cheaper session reset)
from tests.layer_harness import run_layer_test


def test_semantic_embedding_matches_numpy_and_swaps_semantics():
    rng = np.random.default_rng(6)
    phi = rng.normal(size=(5, 4)).astype("float32")
    theta = rng.normal(size=(3, 2, 6)).astype("float32")
    layer = SemanticEmbedding(phi)
    scores = numpy(layer(theta))
    w = numpy(layer.kernel)
    expected = np.einsum("bnc,cd,jd->bj", theta, w, phi)  # sum over branches
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)

    new_phi = rng.normal(size=(2, 4)).astype("float32")
    layer.set_semantics(new_phi)
    np.testing.assert_allclose(
        numpy(layer(theta)), np.einsum("bnc,cd,jd->bj", theta, w, new_phi), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match=r"has width 3, but the model was built for .* width 4"):
        layer.set_semantics(np.ones((5, 3), "float32"))
    with pytest.raises(ValueError, match=r"must have shape \(num_classes, dim\)"):
        SemanticEmbedding(np.ones(4, "float32"))


def test_semantic_embedding_normalized():
    rng = np.random.default_rng(7)
    phi = rng.normal(size=(5, 4)).astype("float32")
    theta = rng.normal(size=(3, 2, 6)).astype("float32")
    layer = SemanticEmbedding(phi, normalize=True, scale=10.0)
    scores = numpy(layer(theta))
    w = numpy(layer.kernel)
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    expected = 10.0 * np.einsum("bnc,cd,jd->bj", unit(theta), w, unit(phi))
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert layer.scale.trainable


@pytest.mark.parametrize("kwargs, trainable", [
    (dict(normalize=True, scale=5.0, learn_scale=True), 2),  # kernel and scale
    (dict(normalize=True, scale=5.0, learn_scale=False), 1),
    (dict(), 1),  # no normalisation: the scale is unused and not trained
])
def test_semantic_embedding_passes_the_layer_checks(kwargs, trainable, tmp_path):
    rng = np.random.default_rng(10)
    phi = rng.normal(size=(6, 5)).astype("float32")
    theta = rng.normal(size=(2, 3, 7)).astype("float32")
    run_layer_test(SemanticEmbedding, dict(semantics=phi, **kwargs), theta, tmp_path,
                   expected_output_shape=(2, 6), expected_num_trainable_weights=trainable)
