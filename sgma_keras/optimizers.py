"""Optimizers with coupled (L2, PyTorch-style) weight decay.

Keras's `weight_decay` is decoupled: `w -= lr * wd * w`, outside the momentum
or Adam moments. The paper trains with PyTorch's `SGD(weight_decay=wd)`, which
adds `wd * w` to the gradient before the momentum buffer:
`buf = momentum * buf + (g + wd * w); w -= lr * buf`, so with momentum 0.9 the
decay is ~10x stronger than the decoupled one at the same `wd` (issue 14).

`CoupledSGD` and `CoupledAdam` add `coupled_weight_decay * w` to each gradient
in `apply` (the one entry point of every backend's trainer, of
`LossScaleOptimizer` after unscaling and of JAX's `stateless_apply`), then run
the stock update. Variables listed by `exclude_from_weight_decay` are skipped.
"""

import keras
from keras import ops


class _CoupledDecay:
    def __init__(self, *args, coupled_weight_decay=0.0, **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError(
                f"{type(self).__name__}: pass `coupled_weight_decay`, not `weight_decay` "
                "(the decoupled one)."
            )
        super().__init__(*args, **kwargs)
        if coupled_weight_decay < 0:
            raise ValueError(f"coupled_weight_decay must be >= 0, got {coupled_weight_decay}.")
        self.coupled_weight_decay = float(coupled_weight_decay)

    def apply(self, grads, trainable_variables=None):
        if self.coupled_weight_decay:
            variables = (
                self._trainable_variables if trainable_variables is None
                else list(trainable_variables)
            )
            grads = [
                g if g is None or not self._use_weight_decay(v)
                else g + ops.cast(self.coupled_weight_decay * ops.stop_gradient(v.value), g.dtype)
                for g, v in zip(grads, variables)
            ]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        config = super().get_config()
        config["coupled_weight_decay"] = self.coupled_weight_decay
        return config


@keras.saving.register_keras_serializable(package="sgma_keras")
class CoupledSGD(_CoupledDecay, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with PyTorch-style L2 weight decay in the gradient.

    Example:

    >>> w = keras.Variable([1.0, -2.0])
    >>> opt = CoupledSGD(0.1, momentum=0.9, coupled_weight_decay=0.5)
    >>> opt.apply([keras.ops.zeros(2)], [w])
    >>> [round(float(x), 4) for x in keras.ops.convert_to_numpy(w)]
    [0.95, -1.9]
    """


@keras.saving.register_keras_serializable(package="sgma_keras")
class CoupledAdam(_CoupledDecay, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with L2 weight decay in the gradient (PyTorch `Adam`)."""
