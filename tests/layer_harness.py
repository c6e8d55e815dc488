"""The checks every layer of the package (and the SGMA model) must pass, in one place.

`run_layer_test(LayerClass, init_kwargs, input_data, tmp_path)` builds the layer from
its keyword arguments and checks, on the given (tiny) input:

1. config: `from_config(get_config())` gives the same config, and with the same
   weights the same outputs; Keras' own (de)serialisation restores it too;
2. saving: a small functional model around the layer, saved as `.keras` and loaded,
   gives identical outputs;
3. precision: under a mixed dtype policy the outputs are finite and in the layer's
   compute dtype, its variables are float32 and its gradients finite;
4. training: one SGD step on a fixed random projection of the outputs moves every
   trainable weight, each with a finite, non-zero gradient;
5. shapes: each output's shape is what `compute_output_shape` says (where the layer
   defines it), for a known and for an unknown batch size.

Trainable weights are first set to random values: zero-initialised weights (such as
the last layer of PartCropper's f_CNet) would hide whether the others get gradients.
`run_model_test` does 1-4 for a whole model built by a function.
"""

import keras
import numpy as np

from tests.helpers import gradients, numpy


def _flat(outputs):
    return keras.tree.flatten(outputs)


def _shape_list(shapes, count):
    """compute_output_shape's answer as a list of tuples, one per output."""
    if count == 1 and all(d is None or isinstance(d, int) for d in shapes):
        return [tuple(shapes)]
    return [tuple(s) for s in shapes]


def _input_shapes(input_data, batch="same"):
    def shape(array):
        return (array.shape[0] if batch == "same" else None,) + tuple(array.shape[1:])

    if isinstance(input_data, (list, tuple)):
        return [shape(a) for a in input_data]
    return shape(input_data)


def _symbolic_inputs(input_data):
    def spec(array):
        return keras.Input(array.shape[1:], dtype=str(array.dtype))

    if isinstance(input_data, (list, tuple)):
        return [spec(a) for a in input_data]
    return spec(input_data)


def randomize_weights(layer, seed=0, stddev=0.3):
    """Sets every non-scalar trainable weight to N(0, stddev) values."""
    rng = np.random.default_rng(seed)
    for weight in layer.trainable_weights:
        if len(weight.shape) > 0:
            weight.assign(rng.normal(0, stddev, weight.shape).astype(weight.dtype))


def assert_same_outputs(got, want, exact=False):
    got, want = _flat(got), _flat(want)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        if exact:
            np.testing.assert_array_equal(numpy(a), numpy(b))
        else:
            np.testing.assert_allclose(numpy(a), numpy(b), rtol=1e-6, atol=1e-5)


def check_config_round_trip(layer, input_data, deterministic=True):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(input_data)  # build
    clone.set_weights(layer.get_weights())
    if deterministic:
        assert_same_outputs(clone(input_data), layer(input_data))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def check_saved_model(layer, input_data, tmp_path, deterministic=True):
    inputs = _symbolic_inputs(input_data)
    model = keras.Model(inputs, layer(inputs))
    path = str(tmp_path / f"{layer.name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    (again,) = [x for x in loaded.layers if x.name == layer.name]
    assert type(again) is type(layer) and again.get_config() == layer.get_config()
    got, want = loaded(input_data), model(input_data)
    if deterministic:
        assert_same_outputs(got, want, exact=True)
    else:
        assert [o.shape for o in _flat(got)] == [o.shape for o in _flat(want)]


def projection_loss(layer, input_data, seed=1):
    """A scalar of every output, `sum_i <r_i, output_i>` with fixed random `r_i`
    (a plain sum could cancel, e.g. over L2-normalised vectors)."""
    rng = np.random.default_rng(seed)
    shapes = [tuple(o.shape) for o in _flat(layer(input_data))]
    weights = [rng.normal(size=s).astype("float32") for s in shapes]

    def loss():
        total = 0.0
        for output, w in zip(_flat(layer(input_data)), weights):
            w = keras.ops.convert_to_tensor(w)
            total = total + keras.ops.sum(keras.ops.cast(output, "float32") * w)
        return total

    return loss


def check_training_step(variables, loss, learning_rate=1e-3):
    """Gradients of `loss()` are finite and non-zero for each variable; one SGD step
    changes each of them."""
    before, grads = gradients(loss, variables)
    assert np.isfinite(before)
    for variable, grad in zip(variables, grads):
        assert grad is not None, f"{variable.path}: no gradient"
        assert np.all(np.isfinite(grad)), f"{variable.path}: non-finite gradient"
        assert np.any(grad != 0), f"{variable.path}: zero gradient"
    old = [numpy(v).copy() for v in variables]
    optimizer = keras.optimizers.SGD(learning_rate)
    optimizer.apply([keras.ops.convert_to_tensor(g.astype(v.dtype))
                     for g, v in zip(grads, variables)], variables)
    for variable, value in zip(variables, old):
        assert not np.array_equal(numpy(variable), value), f"{variable.path}: unchanged"


def check_output_shapes(layer, input_data, outputs):
    if type(layer).compute_output_shape is keras.layers.Layer.compute_output_shape:
        return  # not defined: Keras traces `call`
    count = len(_flat(outputs))
    expected = _shape_list(layer.compute_output_shape(_input_shapes(input_data)), count)
    actual = [tuple(o.shape) for o in _flat(outputs)]
    assert expected == actual, f"compute_output_shape says {expected}, the outputs have {actual}"
    unknown = _shape_list(layer.compute_output_shape(_input_shapes(input_data, None)), count)
    assert unknown == [(None,) + s[1:] for s in expected]


def check_dtype_policy(make, input_data, policy, same_dtype=True, check_gradients=True,
                       call=None):
    """Runs `make()`'s layer or model under `policy`: finite outputs (in its compute
    dtype if `same_dtype`), float32 variables and (if `check_gradients`) finite
    gradients of `projection_loss`. `call(layer, input_data)` gives the outputs
    (default: `layer(input_data)`)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        layer = make()
        outputs = call(layer, input_data) if call else layer(input_data)
        for output in _flat(outputs):
            dtype = keras.backend.standardize_dtype(output.dtype)
            if same_dtype:
                assert dtype == layer.compute_dtype, \
                    f"{policy}: an output in {dtype}, not the compute dtype {layer.compute_dtype}"
            assert np.all(np.isfinite(numpy(output).astype("float32")))
        for weight in layer.weights:
            if keras.backend.is_float_dtype(weight.dtype):
                assert weight.dtype == "float32", weight.path
        if check_gradients and layer.trainable_variables:
            _, grads = gradients(projection_loss(layer, input_data), layer.trainable_variables)
            for variable, grad in zip(layer.trainable_variables, grads):
                assert grad is not None and np.all(np.isfinite(grad)), variable.path
        return layer
    finally:
        keras.config.set_dtype_policy(previous)


def run_layer_test(layer_cls, init_kwargs, input_data, tmp_path, *, policy="mixed_float16",
                   expected_output_shape=None, expected_num_trainable_weights=None,
                   deterministic=True):
    """All the checks of this module for `layer_cls(**init_kwargs)` on `input_data`
    (an array, or a list of arrays for a layer of several inputs). A layer whose
    outputs are random (`deterministic=False`) has its copies' output shapes
    compared, not their values."""
    layer = layer_cls(**init_kwargs)
    outputs = layer(input_data)
    randomize_weights(layer)
    outputs = layer(input_data)
    if expected_output_shape is not None:
        assert [tuple(o.shape) for o in _flat(outputs)] == _shape_list(
            expected_output_shape, len(_flat(outputs)))
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    check_output_shapes(layer, input_data, outputs)
    check_config_round_trip(layer, input_data, deterministic)
    check_saved_model(layer, input_data, tmp_path, deterministic)
    if layer.trainable_variables:
        check_training_step(layer.trainable_variables, projection_loss(layer, input_data))
    if policy is not None:
        check_dtype_policy(lambda: layer_cls(**init_kwargs), input_data, policy)


def run_model_test(make_model, images, labels, tmp_path, *, policy="mixed_bfloat16"):
    """Checks 1-4 for a model with `compute_loss` (the SGMA model): config and
    `.keras` round trips with identical outputs, one training step on its own loss,
    a compiled forward pass under `policy` (finite outputs, float32 variables)."""
    model = make_model()
    outputs = model(images)
    config = model.get_config()
    assert type(model).from_config(config).get_config() == config
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model) and loaded.get_config() == config
    assert_same_outputs(loaded(images), outputs, exact=True)

    def loss():
        return model.compute_loss(images, labels, model(images, training=True), training=True)

    check_training_step(model.trainable_variables, loss)
    if policy is not None:
        # Boxes and fused scores stay float32 whatever the policy. predict(): one
        # compiled pass (eager JAX would compile every op anew for the new dtypes).
        check_dtype_policy(make_model, images, policy, same_dtype=False, check_gradients=False,
                           call=lambda m, x: m.predict(x, batch_size=len(x), verbose=0))
