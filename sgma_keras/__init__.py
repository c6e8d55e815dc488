"""sgma-keras: Semantic-Guided Multi-Attention Localization for Zero-Shot Learning in Keras 3.

Importing the package is light: it loads neither Keras nor a backend (TensorFlow, JAX,
PyTorch), so that the command lines answer `--help` and report a bad config at once.
`sgma_keras.SGMA`, `sgma_keras.layers` and `sgma_keras.metrics` load on first use.

Loading a saved model needs the package's classes registered with Keras: import
`sgma_keras.model` (or use `sgma_keras.SGMA`, or call `sgma_keras.register_saved_classes()`)
before `keras.models.load_model`.
"""

import importlib

__version__ = "0.1.0"

# name -> module that defines it; loaded on first attribute access (PEP 562).
_LAZY = {
    "SGMA": "sgma_keras.model",
    "layers": "sgma_keras.layers",
    "metrics": "sgma_keras.metrics",
    "model": "sgma_keras.model",
}


def register_saved_classes():
    """Registers every class a saved SGMA can hold (model, layers, metrics) with Keras."""
    importlib.import_module("sgma_keras.model")
    importlib.import_module("sgma_keras.metrics")


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = getattr(module, name) if name == "SGMA" else module
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sgma_keras' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
