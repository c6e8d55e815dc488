"""Data-parallel training on two virtual CPU devices matches one device."""

import json
import os
import subprocess
import sys

import keras
import pytest

from sgma_keras.distribution import distribution_scope

HERE = os.path.dirname(os.path.abspath(__file__))
BACKEND = keras.backend.backend()


def run_worker(devices):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "distribution_worker.py"), str(devices)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(BACKEND == "torch", reason="data parallel runs on JAX and TensorFlow")
def test_two_devices_match_one_device():
    single = run_worker(1)
    double = run_worker(2)
    assert single["replicas"] == 1 and double["replicas"] == 2
    # Same global batch, same initial weights: the same losses, up to float
    # summation order across devices.
    assert double["loss"] == pytest.approx(single["loss"], rel=1e-4, abs=1e-4)


@pytest.mark.skipif(BACKEND != "torch", reason="the torch backend has no data-parallel engine here")
def test_torch_data_parallel_is_a_clear_error():
    with pytest.raises(ValueError, match="JAX and TensorFlow"):
        with distribution_scope("data_parallel"):
            pass
