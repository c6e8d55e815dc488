"""The shared layer checks (tests/layer_harness.py) catch what they are for: a layer
that passes them, and one broken each way, on a tiny dense layer."""

import keras
import numpy as np
import pytest
from keras import ops

from tests.helpers import _seed  # noqa: F401 (a cheaper session reset)
from tests.layer_harness import run_layer_test


@keras.saving.register_keras_serializable(package="sgma_keras_tests")
class Scaled(keras.layers.Layer):
    """`x W * factor`; each `fault` breaks one thing the checks look at."""

    def __init__(self, units=3, factor=2.0, fault=None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.factor, self.fault = units, factor, fault

    def build(self, input_shape):
        self.kernel = self.add_weight((input_shape[-1], self.units), "glorot_uniform",
                                      name="kernel")
        self.bias = self.add_weight((self.units,), "zeros", name="bias")

    def call(self, x):
        kernel = ops.stop_gradient(self.kernel) if self.fault == "no_gradient" else self.kernel
        y = (ops.matmul(x, kernel) + self.bias) * self.factor
        return ops.cast(y, "float32") if self.fault == "dtype" else y

    def compute_output_shape(self, input_shape):
        units = self.units + 1 if self.fault == "shape" else self.units
        return tuple(input_shape[:-1]) + (units,)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, fault=self.fault)
        if self.fault != "config":
            config["factor"] = self.factor
        return config


X = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")


def test_a_sound_layer_passes(tmp_path):
    run_layer_test(Scaled, dict(factor=3.0), X, tmp_path, expected_output_shape=(2, 3),
                   expected_num_trainable_weights=2)


@pytest.mark.parametrize("fault, message", [
    ("config", "Not equal to tolerance"),  # the factor is lost: other outputs
    ("no_gradient", "kernel: (no|zero) gradient"),  # (JAX: a zero one)
    ("dtype", "mixed_float16: an output in float32, not the compute dtype float16"),
    ("shape", r"compute_output_shape says \[\(2, 4\)\], the outputs have \[\(2, 3\)\]"),
])
def test_a_broken_layer_fails(fault, message, tmp_path):
    with pytest.raises(AssertionError, match=message):
        run_layer_test(Scaled, dict(factor=3.0, fault=fault), X, tmp_path)
