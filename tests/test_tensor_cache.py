"""Cached backend tensors of NumPy constants (issue 7): made once, reused, replaced.

The class semantics, the ridge transfer and the seen-class lookup are NumPy
arrays; `cached_constant` converts each once (per dtype and, on PyTorch,
device) instead of on every step, bypasses its cache inside traces, and makes
a new tensor when the array is replaced (`set_semantics`).
"""

import keras
import numpy as np
import pytest

from sgma_keras import losses
from sgma_keras import tensor_cache as constants
from sgma_keras.layers import ClassCenterHead, SemanticEmbedding
from sgma_keras.layers import class_center as class_center_module
from sgma_keras.layers import semantic_embedding as semantic_embedding_module
from sgma_keras.layers.class_center import ridge_transfer
from sgma_keras.tensor_cache import cached_constant
from tests import helpers as H
from tests.helpers import _seed, numpy, tiny_sgma  # noqa: F401 (_seed: a cheaper session reset)


@pytest.fixture
def created(monkeypatch):
    """Records every tensor `cached_constant` makes (cache misses and traced calls)."""
    made = []
    original = constants._create

    def spy(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(constants, "_create", spy)
    return made


def spy_on(monkeypatch, module):
    """Records the tensors `module`'s `cached_constant` returns to it."""
    returned = []

    def spy(*args, **kwargs):
        returned.append(cached_constant(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(module, "cached_constant", spy)
    return returned


# -- the helper ------------------------------------------------------------------------


def test_same_tensor_per_array_and_dtype(created):
    array = np.arange(6, dtype="float32").reshape(2, 3)
    first = cached_constant(array, "float32")
    assert cached_constant(array, "float32") is first
    np.testing.assert_array_equal(numpy(first), array)
    assert keras.backend.standardize_dtype(first.dtype) == "float32"
    # Another dtype (mixed precision: a float16 compute dtype) is its own tensor.
    half = cached_constant(array, "float16")
    assert keras.backend.standardize_dtype(half.dtype) == "float16"
    assert half is not first and cached_constant(array, "float16") is half
    # An equal but distinct array is another constant: the cache is keyed by identity.
    copy = array.copy()
    assert cached_constant(copy, "float32") is not first
    assert len(created) == 3


def test_derived_table_is_cached_apart_from_its_source():
    seen = np.array([0, 2, 3, 5], dtype="int64")
    ids = cached_constant(seen, "int32")
    lookup = cached_constant(seen, "int32", build=losses._seen_lookup)
    assert lookup is not ids
    assert cached_constant(seen, "int32", build=losses._seen_lookup) is lookup
    np.testing.assert_array_equal(numpy(ids), [0, 2, 3, 5])
    np.testing.assert_array_equal(numpy(lookup), [0, 0, 1, 2, 0, 3])


def test_lists_are_converted_every_call(created):
    first = cached_constant([1.0, 2.0], "float32")
    np.testing.assert_array_equal(numpy(first), [1.0, 2.0])
    cached_constant([1.0, 2.0], "float32")
    assert len(created) == 2


def test_entry_is_dropped_with_its_array():
    array = np.ones((2, 2), dtype="float32")
    cached_constant(array, "float32")
    key = id(array)
    assert key in constants._CACHE
    del array
    assert key not in constants._CACHE


@pytest.mark.skipif(H.BACKEND != "torch", reason="devices and inference mode are PyTorch's")
def test_torch_device_and_inference_mode():
    import torch

    array = np.ones((2, 3), dtype="float32")
    like = torch.zeros(1, device="meta")
    assert cached_constant(array, "float32", like=like).device.type == "meta"
    assert id(array) not in constants._CACHE  # a symbolic (meta) call caches nothing
    like = torch.zeros(1, device="cpu")
    with torch.inference_mode():  # e.g. a first call from a predict loop
        tensor = cached_constant(array, "float32", like=like)
    assert tensor.device == like.device and not tensor.is_inference()
    weight = torch.ones(3, requires_grad=True)
    (cached_constant(array, "float32", like=like) * weight).sum().backward()
    np.testing.assert_array_equal(weight.grad.numpy(), [2.0, 2.0, 2.0])


def test_traces_do_not_cache_symbolic_tensors():
    """A tensor made inside a trace is only valid there: it is never cached."""
    array = np.arange(3, dtype="float32")
    if H.BACKEND == "tensorflow":
        import tensorflow as tf

        trace = tf.function
    elif H.BACKEND == "jax":
        import jax

        trace = jax.jit
    else:
        pytest.skip("PyTorch's steps run eagerly (torch.compile is covered by is_compiling)")

    @trace
    def double(x):
        return x * cached_constant(array, "float32", like=x)

    np.testing.assert_array_equal(numpy(double(keras.ops.ones(3))), [0.0, 1.0, 2.0])
    assert not constants._CACHE.get(id(array), (None, {}))[1]
    eager = cached_constant(array, "float32")
    # A second trace (another input shape) works, and the eager cache is untouched.
    np.testing.assert_array_equal(numpy(double(keras.ops.ones((2, 3)))), [[0.0, 1.0, 2.0]] * 2)
    assert cached_constant(array, "float32") is eager


# -- the layers ------------------------------------------------------------------------


def test_semantic_embedding_reuses_then_replaces_its_semantics(monkeypatch):
    returned = spy_on(monkeypatch, semantic_embedding_module)
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(5, 8)).astype("float32")
    theta = rng.normal(size=(3, 2, 16)).astype("float32")
    layer = SemanticEmbedding(phi)
    first = numpy(layer(theta))
    second = numpy(layer(theta))
    assert len(returned) == 2 and returned[1] is returned[0]
    kernel = numpy(layer.kernel)
    np.testing.assert_allclose(first, theta.sum(1) @ kernel @ phi.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(first, second)

    new_phi = rng.normal(size=(7, 8)).astype("float32")
    layer.set_semantics(new_phi)
    third = numpy(layer(theta))
    assert returned[2] is not returned[0]
    np.testing.assert_array_equal(numpy(returned[2]), new_phi)
    np.testing.assert_allclose(third, theta.sum(1) @ kernel @ new_phi.T, rtol=1e-5, atol=1e-5)
    # The cache is no part of the layer's config or weights.
    assert set(layer.get_config()) >= {"semantics"}
    np.testing.assert_array_equal(layer.get_config()["semantics"], new_phi)
    assert len(layer.weights) == 2


def test_semantic_embedding_mixed_precision(monkeypatch):
    returned = spy_on(monkeypatch, semantic_embedding_module)
    phi = np.random.default_rng(1).normal(size=(4, 8)).astype("float32")
    theta = np.random.default_rng(2).normal(size=(2, 3, 16)).astype("float32")
    layer = SemanticEmbedding(phi, dtype="mixed_float16")
    scores = layer(theta)
    layer(theta)
    assert keras.backend.standardize_dtype(returned[0].dtype) == "float16"
    assert returned[1] is returned[0]
    reference = theta.sum(1) @ numpy(layer.kernel).astype("float32") @ phi.T
    np.testing.assert_allclose(numpy(scores).astype("float32"), reference, rtol=2e-2, atol=5e-2)


def test_class_center_head_reuses_then_replaces_its_transfer(monkeypatch):
    returned = spy_on(monkeypatch, class_center_module)
    phi = H.class_semantics()
    seen = phi[list(H.SEEN)]
    head = ClassCenterHead(seen, seen, latent_dim=8)
    features = np.random.default_rng(0).normal(size=(3, 12)).astype("float32")
    _, first = head(features)
    head(features)
    assert len(returned) == 2 and returned[1] is returned[0]

    def expected(semantics):
        u = numpy(head.projection)
        u = features @ u + numpy(head.projection_bias)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        centers = numpy(head.centers)
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        centers = ridge_transfer(seen, semantics, 1.0) @ centers
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        return u @ centers.T

    np.testing.assert_allclose(numpy(first), expected(seen), atol=1e-5)
    head.set_semantics(phi)
    _, after = head(features)
    assert returned[2] is not returned[0]
    np.testing.assert_array_equal(numpy(returned[2]), head.transfer)
    assert numpy(after).shape == (3, len(phi))
    np.testing.assert_allclose(numpy(after), expected(phi), atol=1e-5)
    assert "transfer" not in head.get_config()


# -- the losses and the train step -----------------------------------------------------


def test_seen_index_is_cached_and_matches_the_list_lookup(created):
    seen = np.array([5, 0, 3], dtype="int64")
    labels = keras.ops.convert_to_tensor([0, 3, 5, 5, 1], dtype="int32")
    np.testing.assert_array_equal(numpy(losses.seen_index(labels, seen)), [1, 2, 0, 0, 0])
    losses.seen_index(labels, seen)
    assert len(created) == 1
    # A list (no cache) gives the same positions.
    np.testing.assert_array_equal(numpy(losses.seen_index(labels, [5, 0, 3])), [1, 2, 0, 0, 0])


def test_softmax_loss_cached_equals_uncached():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4, 6)).astype("float32")
    labels = np.array([0, 2, 3, 5], dtype="int32")
    seen = np.array(H.SEEN, dtype="int64")
    cached = [float(numpy(losses.embedding_softmax_loss(labels, scores, seen))) for _ in range(2)]
    uncached = float(numpy(losses.embedding_softmax_loss(labels, scores, list(H.SEEN))))
    assert cached[0] == cached[1] == pytest.approx(uncached, rel=1e-6)


def test_train_steps_after_the_first_make_no_constants(created):
    """After the first step (a trace on TF/JAX, the cache fill on PyTorch), none are made."""
    x, y = H.easy_batch()
    model = tiny_sgma()
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    model.train_on_batch(x, y)
    assert created  # semantics, transfer, seen ids, seen lookup
    created.clear()
    for _ in range(2):
        model.train_on_batch(x, y)
    assert created == []
    # A semantics swap (here: the same classes, permuted) makes new tensors.
    order = [4, 3, 0, 5, 1, 2]
    model.set_class_semantics(H.class_semantics()[order])
    relabelled = np.array([order.index(c) for c in y], dtype="int32")
    loss = model.train_on_batch(x, relabelled)
    assert created and np.all(np.isfinite(loss))
