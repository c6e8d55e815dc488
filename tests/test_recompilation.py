"""The training step is traced and compiled once: nothing recompiles after the first step.

A tiny SGMA fits 2 epochs of 4 equal-sized batches (16 images, batch 4: no
remainder, so every batch has the same shape; a smaller last batch would
legitimately trace once more). Counts are read after every step:

- TensorFlow: the tracing count of every `tf.function` behind
  `model.train_function` (Keras keeps them in its closure:
  `multi_step_on_iterator` and the per-batch `one_step_on_data`), with and
  without XLA (the first call traces the step twice when the optimizer is
  built inside it, see the test);
- JAX: the cache size of the jitted train step behind `model.train_function`,
  and every JAX trace/lowering/backend compile of the whole process
  (`jax.monitoring` events, eager ops included);
- both: the Python calls of `model.train_step` (one per trace).

PyTorch has no tracing when it runs eagerly (the default), so it is skipped.
"""

import inspect

import keras
import numpy as np
import pytest

from tests import helpers as H
from tests.helpers import _seed, tiny_sgma  # noqa: F401 (_seed: cheaper reset)

BATCH = 4
STEPS = 4
EPOCHS = 2

TORCH_REASON = "PyTorch runs the train step eagerly: there is no trace or compilation to count"


def _only_on(backend):
    """Skips the test on other backends (with the PyTorch reason on PyTorch)."""
    reason = TORCH_REASON if H.BACKEND == "torch" else f"{backend} counts"
    return pytest.mark.skipif(H.BACKEND != backend, reason=reason)


def _closure_objects(function, predicate):
    """Objects satisfying `predicate` reachable from `function` through closures.

    Follows closure cells, `__wrapped__` (functools.wraps) and
    `python_function` (tf.function), but not into layers, models or methods.
    """
    found, stack, seen = [], [function], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if predicate(obj):
            found.append(obj)
        for attr in ("__wrapped__", "python_function"):
            inner = getattr(obj, attr, None)
            if inner is not None:
                stack.append(inner)
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                content = cell.cell_contents
            except ValueError:  # empty cell
                continue
            if callable(content) and not (
                isinstance(content, keras.layers.Layer) or inspect.ismethod(content)
            ):
                stack.append(content)
    return found


class CountRecorder(keras.callbacks.Callback):
    """Calls `count()` after every training step: [(epoch, step, count), ...]."""

    def __init__(self, count):
        super().__init__()
        self.count = count
        self.records = []
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.records.append((epoch, "begin", self.count()))

    def on_train_batch_end(self, batch, logs=None):
        # Waiting for the step keeps asynchronous dispatch from hiding a late compile.
        np.asarray(keras.ops.convert_to_numpy(logs["loss"]))
        self.records.append((self.epoch, batch, self.count()))


def _fit(model, recorder):
    x, y = H.easy_batch(per_class=BATCH * STEPS // len(H.SEEN))
    assert len(x) == BATCH * STEPS
    history = model.fit(
        x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[recorder]
    )
    assert len(history.history["loss"]) == EPOCHS
    assert np.all(np.isfinite(history.history["loss"]))
    steps = [r for r in recorder.records if r[1] != "begin"]
    assert len(steps) == EPOCHS * STEPS, recorder.records


def _counting_train_step(model):
    """Replaces `model.train_step` by a wrapper counting its Python calls (= traces)."""
    calls = [0]
    original = model.train_step

    def train_step(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    model.train_step = train_step
    return calls


@_only_on("tensorflow")
@pytest.mark.parametrize(
    "jit, prebuild_optimizer", [(False, True), (True, False)], ids=["graph-prebuilt", "xla"]
)
def test_tensorflow_traces_train_function_once(jit, prebuild_optimizer):
    """Keras's TF trainer builds the optimizer inside the first trace (no symbolic
    build without a distribution strategy); a `tf.function` that creates variables
    is traced a second time at its first call, so the step is traced twice then,
    once if the optimizer was built before `fit`. Never again after that."""
    model = tiny_sgma()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
    if prebuild_optimizer:
        model.optimizer.build(model.trainable_variables)
    calls = _counting_train_step(model)

    def tracing_counts():
        functions = _closure_objects(
            model.train_function, lambda f: hasattr(f, "experimental_get_tracing_count")
        )
        return tuple(
            sorted((f.python_function.__name__, f.experimental_get_tracing_count()) for f in functions)
        )

    recorder = CountRecorder(tracing_counts)
    _fit(model, recorder)
    counts = {r[2] for r in recorder.records if r[1] != "begin"}
    assert len(counts) == 1, f"traced again after the first step: {recorder.records}"
    step_traces = 1 if prebuild_optimizer else 2
    # The outer `multi_step_on_iterator` and the per-batch `one_step_on_data`.
    expected = (("multi_step_on_iterator", 1), ("one_step_on_data", step_traces))
    assert counts == {expected}, recorder.records
    assert calls[0] == step_traces, f"train_step ran {calls[0]} times in Python (once a trace)"


@_only_on("jax")
def test_jax_compiles_train_step_once():
    import jax

    events = {}

    def listener(event, duration, **kwargs):
        if event.startswith("/jax/core/compile/"):
            events[event] = events.get(event, 0) + 1

    model = tiny_sgma()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    calls = _counting_train_step(model)

    def counts():
        jitted = _closure_objects(model.train_function, lambda f: hasattr(f, "_cache_size"))
        return (tuple(f._cache_size() for f in jitted), sum(events.values()))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        recorder = CountRecorder(counts)
        _fit(model, recorder)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    records = recorder.records
    assert records[1][2][0] == (1,), records  # one jitted train step, compiled once
    # Nothing is traced or compiled after the first step of the first epoch
    # (epoch ends may compile eager metric ops once), nor in the whole second epoch.
    first_epoch = [r[2] for r in records if r[0] == 0 and r[1] != "begin"]
    second_epoch = [r[2] for r in records if r[0] == 1]
    assert len(set(first_epoch)) == 1, records
    assert len(set(second_epoch)) == 1, records
    assert calls[0] == 1, f"train_step ran {calls[0]} times in Python (one per trace)"
