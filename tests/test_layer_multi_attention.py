"""MultiAttention: values against NumPy, float16 safety, channel-group init, the
shared layer checks."""

import keras
import numpy as np
import pytest

from sgma_keras.layers import MultiAttention
from tests.helpers import _seed, gradients, numpy  # noqa: F401 (_seed: a cheaper session reset)
from tests.layer_harness import run_layer_test


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("normalize", [True, False])
def test_multi_attention_matches_numpy(normalize):
    rng = np.random.default_rng(4)
    features = rng.uniform(0, 1, (2, 4, 4, 16)).astype("float32")
    layer = MultiAttention(num_parts=2, reduction=4, normalize=normalize)
    maps = numpy(layer(features))
    w1, b1, w2, b2, bias = [numpy(w).astype("float64") for w in
                            (layer.w1, layer.b1, layer.w2, layer.b2, layer.map_bias)]
    p = features.astype("float64").mean(axis=(1, 2))
    expected = np.zeros((2, 4, 4, 2))
    for k in range(2):
        a = sigmoid(np.maximum(p @ w1[k] + b1[k], 0) @ w2[k] + b2[k])  # (B, C)
        logits = np.einsum("bhwc,bc->bhw", features, a)
        if normalize:
            logits = logits / a.sum(-1)[:, None, None]
        expected[..., k] = sigmoid(logits + bias[k])
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-6)
    assert maps.shape == (2, 4, 4, 2)


def test_multi_attention_under_mixed_float16_stays_finite_for_large_activations():
    """512 channels of activations near 600 (VGG's conv5 reaches such values): their
    weighted sum (about 76800) is past float16's 65504, the weighted mean (about 300)
    is not. The maps and every gradient stay finite and match the float32 layer's."""
    rng = np.random.default_rng(6)
    # Values float16 holds exactly, so both layers see the same input.
    features = rng.uniform(0, 600, (2, 4, 4, 512)).astype("float16").astype("float32")
    mixed = MultiAttention(num_parts=2, dtype="mixed_float16")
    full = MultiAttention(num_parts=2)
    mixed.build(features.shape)
    full.build(features.shape)
    mixed.map_bias.assign([-300.0, -300.0])  # maps in sigmoid's slope, not saturated
    full.set_weights(mixed.get_weights())
    maps, want = numpy(mixed(features)), numpy(full(features))
    assert maps.dtype == np.float16 and np.all(np.isfinite(maps))
    assert 0.01 < want.std()  # the maps vary: a saturated 1 everywhere would fail below
    np.testing.assert_allclose(maps.astype("float32"), want, atol=2e-2)
    x = keras.Variable(features, name="features")
    for layer in (mixed, full):
        _, grads = gradients(
            lambda layer=layer: keras.ops.sum(keras.ops.cast(layer(x.value), "float32")),
            [x] + layer.trainable_variables)
        assert all(np.all(np.isfinite(g)) for g in grads), layer.dtype_policy.name


def test_multi_attention_rejects_no_parts():
    with pytest.raises(ValueError, match=r"MultiAttention: num_parts: expected an int >= 1, got 0"):
        MultiAttention(num_parts=0)


def two_region_features(n=6, size=8, channels=8, seed=5):
    """Channels 0..C/2-1 peak in the top-left quarter, the rest bottom-right."""
    rng = np.random.default_rng(seed)
    features = rng.uniform(0, 0.1, (n, size, size, channels)).astype("float32")
    half = size // 2
    for i in range(n):
        for c in range(channels):
            row, col = rng.integers(0, half - 1, 2) + (0 if c < channels // 2 else half)
            features[i, row, col, c] = rng.uniform(1.0, 2.0)
    return features


def test_fit_channel_groups_and_prefit():
    features = two_region_features()
    layer = MultiAttention(num_parts=2, reduction=2)
    layer.build(features.shape)
    groups = layer.fit_channel_groups(features, seed=0)
    assert groups.shape == (8,)
    assert len(set(groups[:4])) == 1 and len(set(groups[4:])) == 1
    assert groups[0] != groups[4]

    layer.prefit(features, groups)
    weights = numpy(layer.channel_weights(features))  # (N, K, C)
    indicator = (groups[None, :] == np.arange(2)[:, None]).astype("float32")  # (K, C)
    # target logits +/-3 -> sigmoid 0.953 / 0.047
    np.testing.assert_allclose(weights, np.broadcast_to(indicator, weights.shape), atol=0.06)
    # Each map then follows its own group's channels: part g peaks in group g's region.
    maps = numpy(layer(features))
    top_left = maps[:, :4, :4].mean(axis=(1, 2))  # (N, K)
    bottom_right = maps[:, 4:, 4:].mean(axis=(1, 2))
    tl_part = groups[0]
    assert np.all(top_left[:, tl_part] > top_left[:, 1 - tl_part])
    assert np.all(bottom_right[:, 1 - tl_part] > bottom_right[:, tl_part])

    with pytest.raises(ValueError, match=r"`groups` must have shape \(8,\)"):
        layer.prefit(features, groups[:5])


def test_fit_channel_groups_ignores_dead_channels():
    """A post-ReLU channel that is all zero on an image has argmax (0, 0): counted
    as a peak, it votes for the top-left corner. Here channels 0-3 peak top-left
    and 4-7 bottom-right, except on the images where channels 4-5 are dead; a
    dead channel's vote must not pull it into the top-left group, and channel 8
    (dead on every image) must not form or skew a group."""
    features = two_region_features(n=6, channels=8)
    features[:4, :, :, 4:6] = 0.0  # dead on 4 of the 6 images
    features = np.concatenate([features, np.zeros(features.shape[:3] + (1,), "float32")], -1)
    layer = MultiAttention(num_parts=2, reduction=2)
    layer.build(features.shape)
    groups = layer.fit_channel_groups(features, seed=0)
    assert groups.shape == (9,)
    assert len(set(groups[:4])) == 1 and len(set(groups[4:8])) == 1, groups
    assert groups[0] != groups[4]
    assert groups[8] in (0, 1)


def test_multi_attention_passes_the_layer_checks(tmp_path):
    features = np.random.default_rng(10).uniform(0, 1, (2, 4, 4, 16)).astype("float32")
    for normalize in (True, False):
        run_layer_test(MultiAttention, dict(num_parts=2, reduction=4, normalize=normalize),
                       features, tmp_path, expected_output_shape=(2, 4, 4, 2),
                       expected_num_trainable_weights=5)


def test_kmeans_keeps_the_best_of_several_seedings():
    """Two clouds of channels and one far outlier: a single k-means++ seeding often
    puts the outlier alone (a one-channel part); the best of the restarts splits the
    two clouds, and no seed returns a worse split than the single seeding did."""
    from sgma_keras.layers.multi_attention import _kmeans_once, kmeans

    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(0.0, 1.0, (60, 2)), rng.normal((7.0, 0.0), 1.0, (60, 2)),
                             [[3.5, 15.0]]])

    def cost(assign):
        return sum(((points[assign == j] - points[assign == j].mean(0)) ** 2).sum()
                   for j in np.unique(assign))

    singles = [_kmeans_once(points, 2, 100, np.random.default_rng(s)) for s in range(40)]
    assert min(np.bincount(a).min() for a in singles) == 1  # the trap exists
    for seed in range(5):
        assign = kmeans(points, 2, seed=seed)
        assert sorted(np.bincount(assign).tolist())[0] >= 60
        assert cost(assign) <= min(cost(a) for a in singles) + 1e-6
