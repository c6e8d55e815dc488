"""benchmarks/conv_gradients.py runs on every backend and its gradients are right."""

import numpy as np
import pytest

from tests.helpers import load_benchmark


@pytest.fixture(scope="module")
def script():
    return load_benchmark("conv_gradients")


def test_gradients_match_finite_differences(script):
    import keras

    rng = np.random.default_rng(0)
    x = rng.random((1, 6, 6, 2)).astype("float32")
    k = rng.standard_normal((3, 3, 2, 3)).astype("float32")
    forward, d_kernel, d_input = script._gradient_functions(keras.backend.backend(), 2)
    loss = lambda x, k: float(keras.ops.convert_to_numpy(forward(keras.ops.convert_to_tensor(x),
                                                                 keras.ops.convert_to_tensor(k))))
    grad_k = keras.ops.convert_to_numpy(d_kernel(keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(k)))
    grad_x = keras.ops.convert_to_numpy(d_input(keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(k)))
    assert grad_k.shape == k.shape and grad_x.shape == x.shape
    eps = 1e-2
    bump = np.zeros_like(k)
    bump[1, 2, 0, 1] = eps
    numeric = (loss(x, k + bump) - loss(x, k - bump)) / (2 * eps)
    assert grad_k[1, 2, 0, 1] == pytest.approx(numeric, rel=1e-2)
    bump = np.zeros_like(x)
    bump[0, 3, 2, 1] = eps
    numeric = (loss(x + bump, k) - loss(x - bump, k)) / (2 * eps)
    assert grad_x[0, 3, 2, 1] == pytest.approx(numeric, rel=1e-2)


def test_prints_one_row_per_demo_layer(script, capsys):
    rows = script.main(["--batch", "1", "--repeats", "1"])
    assert len(rows) == len(script.DEMO_LAYERS) and all(len(r) == 3 for r in rows)
    assert all(t > 0 for r in rows for t in r)
    assert "| 56x56x32 -> 64, stride 2 |" in capsys.readouterr().out
