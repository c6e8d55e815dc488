"""The SGMA model passes the shared checks of tests/layer_harness.py."""

import pytest

from tests import helpers as H
from tests.helpers import _seed  # noqa: F401 (a cheaper session reset)
from tests.layer_harness import randomize_weights, run_model_test


def _model(num_parts):
    model = H.tiny_sgma(num_parts=num_parts)
    if model.cropper is not None:
        # f_CNet's last layer starts at zero, which leaves its first one no gradient.
        randomize_weights(model.cropper)
    return model


@pytest.mark.parametrize("num_parts", [2, 0])  # attention parts; the global branch alone
def test_sgma_passes_the_model_checks(num_parts, tmp_path):
    images, labels = H.easy_batch()  # the shapes of test_model.py's tests
    run_model_test(lambda: _model(num_parts), images, labels, tmp_path)
