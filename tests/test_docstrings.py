"""The `>>>` examples in the package's docstrings run, on every backend.

(The equivalent of `pytest --doctest-modules sgma_keras`, kept inside `tests/` so the
README's test command runs it under each backend.) Examples print shapes and rounded
values so that they hold on TensorFlow, JAX and PyTorch alike.
"""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest

import sgma_keras

# Names the examples may use without importing them (as Keras's own doctests do).
EXAMPLE_GLOBALS = {"np": np, "keras": keras, "ops": keras.ops}


def _modules():
    names = []
    for info in pkgutil.walk_packages(sgma_keras.__path__, "sgma_keras."):
        names.append(info.name)
    return sorted(names)


def _examples(module):
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module, module.__name__) if t.examples]


MODULES_WITH_EXAMPLES = [
    name for name in _modules() if _examples(importlib.import_module(name))
]


def test_the_layers_losses_and_metrics_have_examples():
    wanted = {"sgma_keras.losses", "sgma_keras.metrics", "sgma_keras.layers.multi_attention",
              "sgma_keras.layers.part_cropper", "sgma_keras.layers.semantic_embedding",
              "sgma_keras.layers.class_center"}
    assert wanted <= set(MODULES_WITH_EXAMPLES)


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in _examples(module):
        test.globs.update(EXAMPLE_GLOBALS)
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
