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

`AlternatingSGD` and `AlternatingAdam` update one group of variables at a time,
switching group every `alternate_steps` optimizer steps (MA-CNN's alternation of
the channel-grouping layers and the convolutions; SGMA's `train.joint.schedule =
"alternate"`). The switch is a function of the optimizer's own `iterations`, so it
runs inside one compiled train step on every backend; a variable outside its
group's turn is frozen exactly: it, its momentum and its Adam moments are left as
they are (every assignment of the stock update is gated), and decoupled weight
decay skips it too.
"""

import keras
from keras import ops


class _CoupledDecay:
    def __init__(self, *args, coupled_weight_decay=0.0, **kwargs):
        if kwargs.get("weight_decay") and coupled_weight_decay:
            raise ValueError(
                f"{type(self).__name__}: pass `coupled_weight_decay` or `weight_decay` "
                "(the decoupled one), not both."
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


def _current(variable):
    # A Keras variable's value (JAX cannot trace the variable object itself).
    return variable.value if isinstance(variable, keras.Variable) else variable


class _Alternating:
    def __init__(self, *args, alternate_steps=1, **kwargs):
        super().__init__(*args, **kwargs)
        if int(alternate_steps) < 1:
            raise ValueError(f"alternate_steps must be >= 1, got {alternate_steps}.")
        self.alternate_steps = int(alternate_steps)
        self.num_groups = 2
        self._group_of = {}
        self._gate = None

    def assign_groups(self, groups):
        """`groups`: lists of variables; group i updates in turns i, i + n, ...

        A variable in no list belongs to group 0. Call before training.
        """
        self.num_groups = max(len(groups), 1)
        self._group_of = {
            self._var_key(variable): index
            for index, variables in enumerate(groups) for variable in variables
        }

    def turn(self):
        """The group whose turn the next step is (a tensor)."""
        return (self.iterations // self.alternate_steps) % self.num_groups

    def _turn_gate(self, variable):
        group = self._group_of.get(self._var_key(variable), 0)
        return ops.cast(ops.equal(self.turn(), group), variable.dtype)

    def update_step(self, gradient, variable, learning_rate):
        self._gate = self._turn_gate(variable)
        try:
            super().update_step(gradient, variable, learning_rate)
        finally:
            self._gate = None

    # Every assignment of the stock update (the variable, momentum, moments) goes
    # through these three: gated, a variable out of turn keeps its whole state.
    def assign(self, variable, value):
        if self._gate is not None:
            value = ops.where(self._gate > 0, value, _current(variable))
        super().assign(variable, value)

    def assign_add(self, variable, value):
        if self._gate is not None:
            value = value * ops.cast(self._gate, value.dtype)
        super().assign_add(variable, value)

    def assign_sub(self, variable, value):
        if self._gate is not None:
            value = value * ops.cast(self._gate, value.dtype)
        super().assign_sub(variable, value)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return
        for variable in variables:
            if self._use_weight_decay(variable):
                rate = ops.cast(self.learning_rate * self.weight_decay, variable.dtype)
                variable.assign(variable - variable * rate * self._turn_gate(variable))

    def get_config(self):
        config = super().get_config()
        config["alternate_steps"] = self.alternate_steps
        return config


@keras.saving.register_keras_serializable(package="sgma_keras")
class AlternatingSGD(_Alternating, CoupledSGD):
    """`CoupledSGD` that updates one group of variables at a time.

    Example: two variables, two groups, turns of 2 steps.

    >>> a, b = keras.Variable([1.0]), keras.Variable([1.0])
    >>> opt = AlternatingSGD(0.1, alternate_steps=2)
    >>> opt.build([a, b]); opt.assign_groups([[a], [b]])
    >>> for _ in range(3):
    ...     opt.apply([keras.ops.ones(1), keras.ops.ones(1)], [a, b])
    >>> [round(float(keras.ops.convert_to_numpy(v)[0]), 2) for v in (a, b)]
    [0.8, 0.9]
    """


@keras.saving.register_keras_serializable(package="sgma_keras")
class AlternatingAdam(_Alternating, CoupledAdam):
    """`CoupledAdam` that updates one group of variables at a time."""
