"""Backend tensors of NumPy constants, created once and reused across steps.

Some per-call constants of the model are NumPy arrays: the class-semantics
matrix, the ridge transfer of the class-center head, the seen-class ids of
the softmax loss. Converting them in `call` / `compute_loss` costs nothing on
TensorFlow and JAX, where the train step is traced once and the constant is
baked into the graph, but on PyTorch the step runs eagerly: every conversion
is a new tensor, and on a GPU a host-to-device copy, on every step.

`cached_constant` keeps the converted tensor, one per NumPy array, dtype and
(on PyTorch) device, and returns it again while the array is the same object.
Layers hold their constants as NumPy arrays and replace (never mutate) them
when they change (`set_semantics`), which is what invalidates the cache. The
cache is a module-level side table keyed by the array's identity (dropped
when the array is garbage-collected), so nothing of it reaches a layer's
`get_config`, its weights or its saved state.

Inside a trace (a `tf.function` graph, `jax.jit`, `torch.compile`, Keras's
symbolic shape inference) the cache is bypassed: a tensor made there is a
symbolic one, only valid in that trace, and the traced program already holds
the constant, so there is nothing per-step to save.
"""

import functools
import weakref

import keras
import numpy as np
from keras import ops

# id(source) -> (weak reference to source, {(build, dtype, device): tensor})
_CACHE = {}


def cached_constant(source, dtype, like=None, build=None):
    """The backend tensor of the NumPy constant `source` (or of `build(source)`).

    Args:
        source: a NumPy array the caller replaces rather than mutates when
            its value changes (mutating it in place leaves stale tensors).
            Objects without weak references (lists, tuples) are converted on
            every call, as `ops.convert_to_tensor` would.
        dtype: dtype of the tensor (for example a layer's compute dtype).
        like: a tensor the constant is combined with: on PyTorch the constant
            is put on its device; a symbolic `like` (traced, or on PyTorch's
            "meta" device) bypasses the cache.
        build: optional function of `source` returning a new array to convert
            (a derived table); it is part of the cache key, so pass a
            module-level function, not a new lambda per call.

    Returns:
        A tensor equal to `ops.convert_to_tensor(build(source), dtype)`, the
        same tensor object on every eager call with the same arguments.
    """
    dtype = keras.backend.standardize_dtype(dtype)
    if _symbolic(like):
        return _create(source, build, dtype, like)
    entry = _CACHE.get(id(source))
    if entry is None or entry[0]() is not source:
        try:
            entry = (weakref.ref(source, functools.partial(_forget, id(source))), {})
        except TypeError:  # a list or tuple: nothing stable to key on
            return _create(source, build, dtype, like)
        _CACHE[id(source)] = entry
    key = (build, dtype, _device(like))
    tensor = entry[1].get(key)
    if tensor is None:
        tensor = _create(source, build, dtype, like)
        if not _symbolic(tensor):
            entry[1][key] = tensor
    return tensor


def _forget(key, ref):
    # Called as a source array is freed: drop its tensors (unless the entry
    # already belongs to another object, which a live `ref` rules out).
    entry = _CACHE.get(key)
    if entry is not None and entry[0] is ref:
        del _CACHE[key]


def _create(source, build, dtype, like):
    if build is not None:
        value = build(source)
    elif isinstance(source, np.ndarray):
        # A copy: a backend may alias the NumPy buffer (JAX on CPU does), and a
        # cached tensor holding `source` would keep it, and its entry, alive.
        value = source.copy()
    else:
        value = source
    if keras.backend.backend() != "torch":
        return ops.convert_to_tensor(value, dtype=dtype)
    import torch

    # A tensor made under `torch.inference_mode` could never be used in a
    # training step afterwards ("inference tensors cannot be saved for backward").
    with torch.inference_mode(False):
        tensor = ops.convert_to_tensor(value, dtype=dtype)
        device = _device(like)
        return tensor if device is None else tensor.to(device)


def _device(like):
    """The device a PyTorch constant must live on (None elsewhere: placed by the backend)."""
    if keras.backend.backend() != "torch":
        return None
    return getattr(like, "device", None)


def _symbolic(x):
    """Whether we are tracing, or `x` (a tensor or None) is a symbolic tensor."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly() or (x is not None and tf.is_symbolic_tensor(x))
    if backend == "jax":
        import jax

        return isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch

        device = getattr(x, "device", None)
        return torch.compiler.is_compiling() or getattr(device, "type", None) == "meta"
    return True  # other backends: no caching
