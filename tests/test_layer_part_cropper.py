"""PartCropper: the shared layer checks (its own tests are in test_layers.py)."""

import keras
import numpy as np
import pytest

from sgma_keras.layers import PartCropper
from tests.helpers import _seed  # noqa: F401 (a cheaper session reset)
from tests.layer_harness import run_layer_test


def _inputs():
    rng = np.random.default_rng(10)
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    maps = rng.uniform(0, 1, (2, 4, 4, 2)).astype("float32")
    return [images, maps]


@pytest.mark.parametrize("kwargs, trainable", [
    (dict(anchor="peak", peak_gradient_temperature=0.2), 4),  # f_CNet's two dense layers
    (dict(anchor="cnet", steepness_unit="relative", mask_at="sample_points"), 4),
    (dict(box_source="random", seed=3), 0),
])
def test_part_cropper_passes_the_layer_checks(kwargs, trainable, tmp_path):
    args = dict(num_parts=2, output_size=8, hidden_units=6, min_side=0.3, max_side=0.5,
                steepness=5.0, peak_temperature=0.1, **kwargs)
    run_layer_test(PartCropper, args, _inputs(), tmp_path,
                   expected_output_shape=((2, 2, 8, 8, 3), (2, 2, 3)),
                   expected_num_trainable_weights=trainable,
                   deterministic=args.get("box_source") != "random")


@pytest.mark.parametrize("mask_at", ["margin", "input_pixels", "sample_points"])
def test_a_diverged_box_reads_zeros_instead_of_failing_the_gather(mask_at):
    """NaN / inf boxes (training diverged) must not become out-of-range gather
    indices (TensorFlow raises, other backends read garbage): the crop stays
    defined so that the NaN loss is what stops training."""
    cropper = PartCropper(num_parts=2, output_size=8, hidden_units=6, min_side=0.3,
                          max_side=0.5, steepness=5.0, mask_at=mask_at)
    images, maps = _inputs()
    cropper([images, maps])
    boxes = np.array([[[np.nan, 0.5, 0.4], [0.5, 0.5, np.inf]],
                      [[0.5, np.nan, np.nan], [-np.inf, 0.5, 0.3]]], "float32")
    crops = np.asarray(keras.ops.convert_to_numpy(cropper.crop(images, boxes)))
    assert crops.shape == (2, 2, 8, 8, 3)
    # A box with finite coordinates is unaffected by its neighbours' NaNs.
    finite = np.array([[[0.5, 0.5, 0.4]] * 2] * 2, "float32")
    expected = keras.ops.convert_to_numpy(cropper.crop(images, finite))
    mixed = finite.copy()
    mixed[1, 1] = np.nan
    got = keras.ops.convert_to_numpy(cropper.crop(images, mixed))
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-3)
