"""Analytic FLOP counts (`benchmarks/flops.py`, used by the benchmarks)."""

import pytest

from sgma_keras.backbones import make_backbone
from benchmarks.flops import backbone_flops, sgma_flops
from tests.helpers import _seed, tiny_sgma  # noqa: F401 (_seed: cheaper reset)


def tiny_flops(size, width=4):
    """Four 3x3 convs of the tiny CNN, by hand: strides 2, 2, 2, 1."""
    total, cin, side = 0, 3, size
    for cout, stride in ((width, 2), (2 * width, 2), (4 * width, 2), (4 * width, 1)):
        side //= stride
        total += 2 * side * side * 9 * cin * cout
        cin = cout
    return total


def test_tiny_backbone_flops():
    assert backbone_flops(make_backbone("tiny", 32, tiny_width=4)) == tiny_flops(32) == 202752


def test_vgg19_at_224_is_39_gflop():
    """Spec "Cost": 19.5 G multiply-adds. Built at 32 px (cheap); with "same"
    padding and 2x2 pooling every layer's output area scales by (224/32)^2."""
    per_layer = []
    flops = backbone_flops(make_backbone("vgg19", 32), per_layer) * (224 // 32) ** 2
    assert len(per_layer) == 16  # the 16 convolutions up to block5_conv4
    assert flops == pytest.approx(39.0e9, rel=0.005)


def test_sgma_flops_components():
    model = tiny_sgma()
    flops = sgma_flops(model)
    assert flops["global"] == tiny_flops(32)
    assert flops["parts"] == 2 * tiny_flops(16)
    assert flops["attention_backbone"] == 0
    assert 0 < flops["heads"] < flops["global"]
    assert flops["forward"] == sum(flops[k] for k in ("global", "attention_backbone", "parts", "heads"))
    assert flops["train_step"] == 3 * flops["forward"]
    warmup = sgma_flops(model, stage="warmup")
    assert warmup["parts"] == 0 and warmup["forward"] < flops["forward"]
