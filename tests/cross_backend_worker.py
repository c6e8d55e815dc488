"""Saves or checks a `.keras` SGMA file under the backend named by KERAS_BACKEND.

    KERAS_BACKEND=jax python tests/cross_backend_worker.py save DIR
        writes DIR/model.keras, DIR/x.npy and the outputs DIR/<name>.npy
    KERAS_BACKEND=torch python tests/cross_backend_worker.py load DIR
        loads them and prints one JSON line: the backend and, per output, the
        max absolute difference from the saved values

`tests/test_cross_backend.py` saves in-process and runs `load` under the two
other backends.
"""

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tests import helpers as H  # noqa: E402  (also: one thread, JAX compile cache)

OUTPUTS = ("scores", "embedding_scores", "center_scores", "boxes", "attention_maps")


def reference_model():
    """A tiny SGMA whose every weight is set from a NumPy seed.

    Initialisers draw different numbers on each backend, and several weights
    start at zero or one (biases, the box offsets of f_CNet, batch-norm
    statistics), which would hide a wrongly loaded weight; so every weight is
    overwritten with seeded, non-trivial values.
    """
    model = H.tiny_sgma()
    rng = np.random.default_rng(0)
    for weight in model.weights:
        shape, path = tuple(weight.shape), weight.path
        if "moving_variance" in path:
            value = rng.uniform(0.5, 2.0, shape)
        elif "gamma" in path:
            value = rng.uniform(0.7, 1.3, shape)
        elif "moving_mean" in path or "beta" in path:
            value = rng.normal(0.0, 0.2, shape)
        elif "seed_generator" in path or weight.dtype not in ("float32", "float16"):
            continue
        elif len(shape) == 0:  # the embedding scale: kept
            continue
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 10
            value = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
        weight.assign(value.astype(weight.dtype))
    return model


def reference_inputs():
    images, _ = H.easy_batch(per_class=1)
    noise = np.random.default_rng(1).uniform(-30, 30, images.shape)
    return np.clip(images + noise, 0, 255).astype("float32")


def outputs_of(model, x):
    outputs = model(x, training=False)
    return {name: H.numpy(outputs[name]).astype("float64") for name in OUTPUTS}


def save(directory):
    """Builds the reference model, saves it with its inputs and outputs."""
    model = reference_model()
    x = reference_inputs()
    model.save(os.path.join(directory, "model.keras"))
    np.save(os.path.join(directory, "x.npy"), x)
    for name, value in outputs_of(model, x).items():
        np.save(os.path.join(directory, f"{name}.npy"), value)
    return model


def load(directory):
    """Max |outputs of the loaded model - saved outputs|, per output."""
    model = keras.saving.load_model(os.path.join(directory, "model.keras"))
    x = np.load(os.path.join(directory, "x.npy"))
    got = outputs_of(model, x)
    return {
        name: float(np.abs(got[name] - np.load(os.path.join(directory, f"{name}.npy"))).max())
        for name in OUTPUTS
    }


if __name__ == "__main__":
    mode, directory = sys.argv[1], sys.argv[2]
    if mode == "save":
        save(directory)
        print(json.dumps({"backend": H.BACKEND, "saved": directory}))
    elif mode == "load":
        print(json.dumps({"backend": H.BACKEND, "max_abs_diff": load(directory)}))
    else:
        sys.exit(f"unknown mode {mode!r}; expected 'save' or 'load'")
