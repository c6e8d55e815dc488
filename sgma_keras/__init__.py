"""sgma-keras: Semantic-Guided Multi-Attention Localization for Zero-Shot Learning in Keras 3.

Importing the package is enough to load a saved model the Keras way:

    import keras
    import sgma_keras

    model = keras.saving.load_model("runs/demo/checkpoints/final.keras")

and it stays light: it loads neither Keras nor a backend (TensorFlow, JAX, PyTorch)
itself, so that the command lines answer `--help` and report a bad config at once. The
classes a saved SGMA holds (model, layers, metrics, optimizers) are registered with
Keras as soon as Keras is there: at once if it was imported before, else right after
its own import completes (a one-shot import hook, `_RegisterWhenKerasLoads`).
`sgma_keras.SGMA`, `sgma_keras.layers` and `sgma_keras.metrics` load on first use.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.2.0"

# name -> module that defines it; loaded on first attribute access (PEP 562).
_LAZY = {
    "SGMA": "sgma_keras.model",
    "layers": "sgma_keras.layers",
    "metrics": "sgma_keras.metrics",
    "model": "sgma_keras.model",
}

# The modules whose import registers every class a saved SGMA (or its optimizer) can
# hold; sgma_keras.model imports the layers, backbones and metrics.
SAVEABLE_MODULES = ("sgma_keras.model", "sgma_keras.optimizers")


def register_saved_classes():
    """Registers every class a saved SGMA can hold (model, layers, metrics,
    optimizers) with Keras (imports Keras). A module already being imported (the
    hook fired by its own `import keras`) registers its classes as it runs."""
    for name in SAVEABLE_MODULES:
        if name not in sys.modules:
            importlib.import_module(name)


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """Registers the saveable classes right after `keras` is first imported.

    Finds `keras`'s real spec, and wraps its loader for that one import only: the
    wrapper runs Keras's own module code, puts the real loader back, then calls
    `register_saved_classes`. Removed from `sys.meta_path` the first time it is asked.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        _remove_hook()
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # resource readers, is_package, ...: Keras's loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        spec = module.__spec__
        spec.loader = module.__loader__ = self.loader
        self.loader.exec_module(module)
        register_saved_classes()


def _remove_hook():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterWhenKerasLoads)]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = getattr(module, name) if name == "SGMA" else module
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sgma_keras' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


if "keras" in sys.modules:
    register_saved_classes()
elif not any(isinstance(f, _RegisterWhenKerasLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenKerasLoads())
