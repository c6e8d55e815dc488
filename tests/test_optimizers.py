"""Coupled (PyTorch-style) weight decay against the PyTorch update formula."""

import keras
import numpy as np
import pytest

from sgma_keras.config import load_config
from sgma_keras.optimizers import CoupledAdam, CoupledSGD
from sgma_keras.workflow.build import make_optimizer
from tests.helpers import _seed, numpy  # noqa: F401


def torch_sgd_steps(w, grads, lr, momentum, wd):
    """torch.optim.SGD(lr, momentum, weight_decay=wd), dampening 0, no nesterov."""
    w, buf = w.astype("float64"), None
    for g in grads:
        d = g + wd * w
        buf = d if buf is None else momentum * buf + d
        w = w - lr * buf
    return w


def test_coupled_sgd_matches_the_pytorch_formula():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4)).astype("float32")
    grads = [rng.normal(size=(3, 4)).astype("float32") for _ in range(3)]
    w = keras.Variable(w0)
    opt = CoupledSGD(0.05, momentum=0.9, coupled_weight_decay=5e-3)
    for g in grads:
        opt.apply([keras.ops.convert_to_tensor(g)], [w])
    expected = torch_sgd_steps(w0, grads, 0.05, 0.9, 5e-3)
    np.testing.assert_allclose(numpy(w), expected, rtol=1e-5, atol=1e-6)
    # Keras's decoupled decay differs (the difference is the point).
    d = keras.Variable(w0)
    decoupled = keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=5e-3)
    for g in grads:
        decoupled.apply([keras.ops.convert_to_tensor(g)], [d])
    assert np.abs(numpy(d) - expected).max() > 1e-4


def test_coupled_adam_adds_the_decay_to_the_gradient():
    w0 = np.array([1.0, -2.0], "float32")
    g = np.array([0.3, 0.1], "float32")
    w, ref = keras.Variable(w0), keras.Variable(w0)
    CoupledAdam(0.01, coupled_weight_decay=0.1).apply([keras.ops.convert_to_tensor(g)], [w])
    keras.optimizers.Adam(0.01).apply([keras.ops.convert_to_tensor(g + 0.1 * w0)], [ref])
    np.testing.assert_allclose(numpy(w), numpy(ref), rtol=1e-6)


def test_optimizer_round_trips_and_rejects_decoupled_decay():
    opt = CoupledSGD(0.1, momentum=0.9, coupled_weight_decay=1e-3)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(again, CoupledSGD) and again.coupled_weight_decay == 1e-3
    with pytest.raises(ValueError, match="coupled_weight_decay"):
        CoupledSGD(0.1, weight_decay=1e-3)


@pytest.mark.parametrize("path", ["configs/cub.json", "configs/awa.json", "configs/flo.json"])
def test_paper_configs_use_coupled_decay(path):
    cfg = load_config(path, check_paths=False)
    assert cfg["train"]["weight_decay_mode"] == "coupled"
    opt = make_optimizer(cfg["train"])
    assert isinstance(opt, CoupledSGD) and opt.coupled_weight_decay == 5e-4
    assert not opt.weight_decay


def test_decoupled_mode_is_keras_weight_decay():
    cfg = load_config("configs/demo.json", ["train.weight_decay_mode=decoupled"],
                      check_paths=False)
    opt = make_optimizer(cfg["train"])
    assert type(opt) is keras.optimizers.Adam or not isinstance(opt, CoupledAdam)
    assert opt.weight_decay == cfg["train"]["weight_decay"]
