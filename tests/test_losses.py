"""The four SGMA objectives against NumPy references on hand-made inputs."""

import keras
import numpy as np
import pytest

from sgma_keras import losses
from tests.helpers import _seed, numpy  # noqa: F401 (_seed: a cheaper session reset)

RTOL = 1e-5
ATOL = 1e-6


# -- NumPy references ------------------------------------------------------------------


def np_compactness(maps, sigma):
    """sum over parts of mean_z (m - gaussian at the argmax)^2, batch mean."""
    batch, height, width, parts = maps.shape
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    total = 0.0
    for b in range(batch):
        for k in range(parts):
            peak_row, peak_col = np.unravel_index(np.argmax(maps[b, :, :, k]), (height, width))
            ideal = np.exp(-((rows - peak_row) ** 2 + (cols - peak_col) ** 2) / (2 * sigma**2))
            total += np.mean((maps[b, :, :, k] - ideal) ** 2)
    return total / batch


def np_diversity(maps, margin, reduction="sum"):
    batch, height, width, parts = maps.shape
    total = 0.0
    for b in range(batch):
        for i in range(parts):
            others = np.max([maps[b, :, :, k] for k in range(parts) if k != i], axis=0)
            term = np.sum(maps[b, :, :, i] * np.maximum(0.0, others - margin))
            total += term / (height * width) if reduction == "mean" else term
    return total / batch


def np_softmax_ce(labels, scores, seen):
    """Cross-entropy of a log-softmax over the seen columns; labels are global ids."""
    sub = scores[:, seen].astype("float64")
    log_softmax = sub - sub.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    position = [list(seen).index(c) for c in labels]
    return -np.mean(log_softmax[np.arange(len(labels)), position])


def np_triplet(labels, latent, centers, margin):
    total = 0.0
    for u, y in zip(latent.astype("float64"), labels):
        dist = ((u[None] - centers) ** 2).sum(1)
        total += sum(max(0.0, margin + dist[y] - dist[k]) for k in range(len(centers)) if k != y)
    return total / len(labels)


def unit_rows(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype("float32")


# -- compactness ----------------------------------------------------------------------


def test_concentrated_maps_is_a_gaussian_at_the_peak():
    maps = np.zeros((1, 5, 6, 2), "float32")
    maps[0, 1, 4, 0] = 0.9
    maps[0, 3, 0, 1] = 0.7
    ideal = numpy(losses.concentrated_maps(maps, sigma=1.5))
    rows, cols = np.meshgrid(np.arange(5), np.arange(6), indexing="ij")
    expected0 = np.exp(-((rows - 1) ** 2 + (cols - 4) ** 2) / (2 * 1.5**2))
    expected1 = np.exp(-((rows - 3) ** 2 + (cols - 0) ** 2) / (2 * 1.5**2))
    np.testing.assert_allclose(ideal[0, :, :, 0], expected0, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(ideal[0, :, :, 1], expected1, rtol=RTOL, atol=ATOL)
    assert ideal.max() == pytest.approx(1.0)


def test_compactness_of_an_ideal_map_is_zero():
    maps = numpy(losses.concentrated_maps(np.random.rand(3, 6, 5, 2).astype("float32"), 1.0))
    assert float(numpy(losses.compactness_loss(maps, sigma=1.0))) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("sigma", [1.0, 0.7])
def test_compactness_matches_numpy(sigma):
    maps = np.random.default_rng(1).random((3, 6, 5, 2)).astype("float32")
    expected = np_compactness(maps, sigma)
    got = float(numpy(losses.compactness_loss(maps, sigma=sigma)))
    assert expected > 0.05  # a real, non-trivial value
    assert got == pytest.approx(expected, rel=RTOL)


# -- diversity ------------------------------------------------------------------------


def test_diversity_of_non_overlapping_maps_is_zero():
    maps = np.zeros((2, 4, 4, 3), "float32")
    maps[:, :2, :2, 0] = 1.0
    maps[:, 2:, :, 1] = 0.9
    maps[:, :2, 2:, 2] = 0.8
    assert float(numpy(losses.diversity_loss(maps))) == 0.0
    # Maps that overlap everywhere, but below the margin, are free too.
    faint = np.full((1, 4, 4, 2), 0.15, "float32")
    assert float(numpy(losses.diversity_loss(faint, margin=0.2))) == 0.0
    assert float(numpy(losses.diversity_loss(faint, margin=0.1))) == pytest.approx(
        2 * 16 * 0.15 * 0.05, rel=1e-5
    )


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("parts", [2, 3])
def test_diversity_matches_numpy(reduction, parts):
    maps = np.random.default_rng(parts).random((2, 4, 5, parts)).astype("float32")
    expected = np_diversity(maps, 0.2, reduction)
    got = float(numpy(losses.diversity_loss(maps, margin=0.2, reduction=reduction)))
    assert expected > 0.1
    assert got == pytest.approx(expected, rel=RTOL)


def test_diversity_hand_case():
    # One position where both maps fire: 0.9 * (0.5 - 0.2) + 0.5 * (0.9 - 0.2).
    maps = np.zeros((1, 2, 2, 2), "float32")
    maps[0, 0, 1] = [0.9, 0.5]
    assert float(numpy(losses.diversity_loss(maps))) == pytest.approx(0.27 + 0.35, rel=1e-6)
    assert float(numpy(losses.diversity_loss(maps, reduction="mean"))) == pytest.approx(
        (0.27 + 0.35) / 4, rel=1e-6
    )


def test_diversity_single_part_and_bad_reduction():
    assert float(numpy(losses.diversity_loss(np.ones((2, 3, 3, 1), "float32")))) == 0.0
    with pytest.raises(ValueError, match="reduction must be 'sum' or 'mean'"):
        losses.diversity_loss(np.ones((1, 3, 3, 2), "float32"), reduction="max")


# -- embedding softmax ----------------------------------------------------------------


def test_embedding_softmax_matches_numpy_over_seen_columns():
    rng = np.random.default_rng(2)
    seen = [0, 2, 3, 5]
    scores = (rng.normal(size=(5, 6)) * 3).astype("float32")
    labels = np.array([5, 0, 3, 2, 5], "int32")  # global ids of seen classes
    expected = np_softmax_ce(labels, scores, seen)
    got = float(numpy(losses.embedding_softmax_loss(labels, scores, seen)))
    assert got == pytest.approx(expected, rel=1e-5)
    # The unseen columns are outside the softmax support: changing them changes nothing.
    scores[:, [1, 4]] += 100.0
    assert float(numpy(losses.embedding_softmax_loss(labels, scores, seen))) == pytest.approx(
        expected, rel=1e-5
    )


def test_embedding_softmax_without_seen_uses_every_column():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(4, 3)).astype("float32")
    labels = np.array([2, 0, 1, 1])
    expected = np_softmax_ce(labels, scores, [0, 1, 2])
    assert float(numpy(losses.embedding_softmax_loss(labels, scores))) == pytest.approx(
        expected, rel=1e-5
    )


# -- class-center triplet -------------------------------------------------------------


def test_triplet_at_own_centre_with_far_negatives_is_zero():
    centers = np.eye(4, dtype="float32")  # negatives at squared distance 2 > margin
    labels = np.array([3, 0, 1])
    assert float(numpy(losses.class_center_triplet_loss(labels, centers[labels], centers))) == 0.0


def test_triplet_hand_case():
    # u between centres 0 and 1: ||u-C0||^2 = ||u-C1||^2 = 2 - sqrt(2), ||u-C2||^2 = 2.
    centers = np.eye(3, dtype="float32")
    u = unit_rows(np.array([[1.0, 1.0, 0.0]]))
    d01 = 2.0 - np.sqrt(2.0)
    expected = max(0.0, 0.8 + d01 - d01) + max(0.0, 0.8 + d01 - 2.0)  # 0.8 + 0.2142
    got = float(numpy(losses.class_center_triplet_loss([0], u, centers, margin=0.8)))
    assert got == pytest.approx(expected, rel=1e-5)
    assert got == pytest.approx(np_triplet([0], u, centers, 0.8), rel=1e-5)


def test_triplet_matches_numpy():
    rng = np.random.default_rng(4)
    latent = unit_rows(rng.normal(size=(6, 5)))
    centers = unit_rows(rng.normal(size=(4, 5)))
    labels = np.array([0, 3, 1, 2, 2, 0])
    expected = np_triplet(labels, latent, centers, 0.8)
    assert expected > 0.5
    got = float(numpy(losses.class_center_triplet_loss(labels, latent, centers, 0.8)))
    assert got == pytest.approx(expected, rel=1e-5)


# -- dtypes ---------------------------------------------------------------------------


def test_float16_inputs_give_finite_float32_losses():
    rng = np.random.default_rng(5)
    maps = rng.random((2, 4, 4, 2)).astype("float16")
    scores = (rng.normal(size=(3, 6)) * 300).astype("float16")  # exp() overflows float16
    latent = (rng.normal(size=(3, 4)) * 200).astype("float16")  # squares overflow float16
    centers = unit_rows(rng.normal(size=(4, 4))).astype("float16")
    labels = np.array([0, 3, 5])
    results = {
        "cpt": (losses.compactness_loss(maps), np_compactness(maps.astype("float32"), 1.0)),
        "div": (losses.diversity_loss(maps), np_diversity(maps.astype("float32"), 0.2)),
        "cls": (
            losses.embedding_softmax_loss(labels, scores, [0, 2, 3, 5]),
            np_softmax_ce(labels, scores.astype("float32"), [0, 2, 3, 5]),
        ),
        "cct": (
            losses.class_center_triplet_loss([0, 3, 1], latent, centers),
            np_triplet([0, 3, 1], latent.astype("float32"), centers.astype("float32"), 0.8),
        ),
    }
    for name, (loss, expected) in results.items():
        assert keras.backend.standardize_dtype(loss.dtype) == "float32", (name, loss.dtype)
        value = float(numpy(loss))
        assert np.isfinite(value), name
        assert value == pytest.approx(expected, rel=1e-3), name
