"""PartCropper: the shared layer checks (its own tests are in test_layers.py)."""

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
