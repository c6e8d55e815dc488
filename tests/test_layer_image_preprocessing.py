"""ImagePreprocessing: the two pixel normalisations, the shared layer checks."""

import numpy as np
import pytest

from sgma_keras.layers import ImagePreprocessing
from tests.helpers import _seed, numpy  # noqa: F401 (_seed: a cheaper session reset)
from tests.layer_harness import run_layer_test


def test_image_preprocessing_modes():
    pixels = np.array([[[[255.0, 0.0, 127.5]]]], "float32")
    np.testing.assert_allclose(numpy(ImagePreprocessing("unit")(pixels)), [[[[1.0, -1.0, 0.0]]]])
    np.testing.assert_allclose(  # RGB -> BGR, ImageNet mean subtracted
        numpy(ImagePreprocessing("caffe")(pixels)),
        [[[[127.5 - 103.939, 0.0 - 116.779, 255.0 - 123.68]]]],
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="mode must be 'caffe' or 'unit'"):
        ImagePreprocessing("torch")


@pytest.mark.parametrize("mode", ["caffe", "unit"])
def test_image_preprocessing_passes_the_layer_checks(mode, tmp_path):
    pixels = np.random.default_rng(10).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    run_layer_test(ImagePreprocessing, dict(mode=mode), pixels, tmp_path,
                   expected_output_shape=(2, 8, 8, 3), expected_num_trainable_weights=0)
