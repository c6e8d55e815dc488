"""Shared pieces of the model tests: a tiny SGMA, an easy batch and one gradient helper.

Every test model uses the same small shapes (32 px images, 16 px parts, a
4-wide tiny backbone), so the JAX backend compiles each primitive once per
session instead of once per test.
"""

import importlib.util
import os
import tempfile

import keras
import numpy as np
import pytest


def _single_threaded():
    """Runs each backend on one CPU thread, and XLA:CPU without optimisation.

    The test machine has 2 cores shared by several test runs: multi-threaded
    kernels then spin-wait (a tiny PyTorch conv2d is 50x slower on 2 threads
    than on 1), and XLA:CPU spends seconds optimising every tiny eager op. The
    test models are too small for either to matter. Each setting only takes
    effect if the runtime has not started yet (they start lazily, at the first
    computation, which is after test collection).
    """
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        torch.set_num_threads(1)
    elif backend == "tensorflow":
        import tensorflow as tf

        try:  # (inter-op threads are left alone: cross-device collectives need them)
            tf.config.threading.set_intra_op_parallelism_threads(1)
        except RuntimeError:  # the runtime already started
            pass
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        flags += " --xla_backend_optimization_level=0"
    if "xla_cpu_multi_thread_eigen" not in flags:
        flags += " --xla_cpu_multi_thread_eigen=false"
    os.environ["XLA_FLAGS"] = flags.strip()
    if backend == "jax":
        import jax

        # Reruns reuse the compiled kernels (a few hundred small ones per file).
        cache = os.environ.get("SGMA_KERAS_TEST_JAX_CACHE") or os.path.join(
            tempfile.gettempdir(), "sgma_keras_test_jax_cache"
        )
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


_single_threaded()


from sgma_keras.model import make_sgma  # noqa: E402

BACKEND = keras.backend.backend()
BACKENDS = ("tensorflow", "jax", "torch")

NUM_CLASSES = 6
SEEN = (0, 2, 3, 5)  # deliberately not 0..3: labels are global class ids
UNSEEN = (1, 4)
SEMANTIC_DIM = 8
IMAGE_SIZE = 32
LOCAL_SIZE = 16
TINY_WIDTH = 4  # features: 16 channels on a 4x4 map


@pytest.fixture(autouse=True)
def _seed():
    """conftest's seeding and session reset, without its full garbage collection.

    Import it into a test module to override conftest's fixture there:
    `gc.collect()` takes over a second per test on the loaded test machine,
    longer than most of these tests.
    """
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    keras.backend.clear_session(free_memory=False)


def class_semantics(seed=0):
    """(6, 8) class semantic vectors, L2-normalised rows (like `att`)."""
    phi = np.random.default_rng(seed).normal(size=(NUM_CLASSES, SEMANTIC_DIM))
    return (phi / np.linalg.norm(phi, axis=1, keepdims=True)).astype("float32")


def tiny_sgma(**overrides):
    """A seeded tiny SGMA (random weights) with the shared test shapes.

    `overrides` are `make_sgma` arguments; a section given as a dict (`cropper=
    {"box_source": "random"}`) updates the tiny defaults' section.
    """
    args = dict(
        semantics=class_semantics(),
        seen_classes=list(SEEN),
        image_size=IMAGE_SIZE,
        backbone={"name": "tiny", "weights": None, "tiny_width": TINY_WIDTH},
        num_parts=2,
        attention={"reduction": 4},
        cropper={"output_size": LOCAL_SIZE, "hidden_units": 8},
        center={"latent_dim": 8},
        seed=0,
    )
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(args.get(key), dict):
            args[key] = {**args[key], **value}
        else:
            args[key] = value
    model = make_sgma(**args)
    model.build((None, args["image_size"], args["image_size"], 3))
    return model


def easy_batch(per_class=2, size=IMAGE_SIZE, seed=0):
    """Images of the seen classes, each class its own colour and stripe pattern.

    Returns float32 images (N, size, size, 3) in [0, 255] and int32 global
    labels (N,), classes interleaved.
    """
    rng = np.random.default_rng(seed)
    colours = np.array(
        [[230, 40, 40], [40, 200, 40], [40, 60, 230], [230, 210, 30]], dtype="float32"
    )
    images, labels = [], []
    for _ in range(per_class):
        for index, cls in enumerate(SEEN):
            image = np.tile(colours[index] * 0.6, (size, size, 1))
            stripes = np.zeros((size, size), dtype=bool)
            if index == 0:
                stripes[::4] = True  # horizontal stripes
            elif index == 1:
                stripes[:, ::4] = True  # vertical stripes
            elif index == 2:
                stripes[: size // 2, : size // 2] = True  # a bright quadrant
            else:
                stripes[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True
            image[stripes] = colours[index]
            image += rng.normal(0.0, 8.0, image.shape)
            images.append(np.clip(image, 0.0, 255.0))
            labels.append(cls)
    return np.stack(images).astype("float32"), np.asarray(labels, dtype="int32")


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def gradients(fn, variables):
    """Gradients of the scalar `fn()` with respect to `variables` (keras.Variables).

    The one backend-specific piece of the tests: TensorFlow records a
    `GradientTape`, JAX differentiates (under `jax.jit`) a function of the
    variable values (the values are substituted with a `keras.StatelessScope`,
    so `fn` may call any layer or model that reads those variables; variable
    updates inside `fn` are dropped), PyTorch uses autograd.

    Returns:
        (loss, [numpy gradient of each variable]).
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch([v.value for v in variables])
            loss = fn()
        grads = tape.gradient(loss, [v.value for v in variables])
    elif BACKEND == "jax":
        import jax

        def of_values(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn()

        # Jitted: one compile instead of one per primitive of the eager backward pass.
        loss, grads = jax.jit(jax.value_and_grad(of_values))([v.value for v in variables])
    elif BACKEND == "torch":
        import torch

        loss = fn()
        grads = torch.autograd.grad(loss, [v.value for v in variables], allow_unused=True)
        loss = loss.detach()
    else:  # pragma: no cover
        raise NotImplementedError(BACKEND)
    return float(numpy(loss)), [
        None if g is None else numpy(g).astype("float64") for g in grads
    ]


def load_benchmark(name):
    """Imports `benchmarks/<name>.py` (a folder of scripts, not a package) as a module."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        f"benchmark_{name}", os.path.join(root, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
