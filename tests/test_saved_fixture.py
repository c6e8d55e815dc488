"""A `.keras` file saved by an earlier release still loads and computes the same outputs.

`tests/fixtures/sgma_v0_1_0/` was written by `tests/cross_backend_worker.py save` with
sgma-keras 0.1.0 on TensorFlow, before the config/workflow redesign: the tiny reference
model, its input batch and its outputs. Renaming a constructor argument of `SGMA`, or
a layer or weight path, breaks every checkpoint users have; this test catches it.
"""

import os

import numpy as np

from tests import cross_backend_worker as worker

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "sgma_v0_1_0")


def test_v0_1_0_checkpoint_loads_with_the_same_outputs():
    diffs = worker.load(FIXTURE)
    assert set(diffs) == set(worker.OUTPUTS)
    for name, diff in diffs.items():
        assert np.isfinite(diff) and diff < 1e-4, (name, diff)
