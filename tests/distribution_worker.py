"""Trains a tiny SGMA for two steps on one fixed global batch; prints the losses.

Run as `python distribution_worker.py DEVICES` under KERAS_BACKEND=jax or
tensorflow; with DEVICES > 1 the host CPU is split into that many virtual
devices and the model trains data-parallel.
"""

import json
import os
import sys

devices = int(sys.argv[1])
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
if backend == "jax" and devices > 1:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"

import keras  # noqa: E402
import numpy as np  # noqa: E402

from sgma_keras.distribution import distribution_scope, split_tensorflow_cpu  # noqa: E402
from sgma_keras.model import make_sgma  # noqa: E402

if backend == "tensorflow" and devices > 1:
    split_tensorflow_cpu(devices)

rng = np.random.default_rng(0)
images = (rng.random((8, 32, 32, 3)) * 255).astype("float32")
labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
semantics = rng.random((6, 5)).astype("float32")
keras.utils.set_random_seed(0)
with distribution_scope("data_parallel" if devices > 1 else "none") as replicas:
    model = make_sgma(semantics, [0, 1, 2, 3], image_size=32,
                      backbone={"name": "tiny", "weights": None, "tiny_width": 4},
                      cropper={"output_size": 16, "hidden_units": 8},
                      center={"latent_dim": 8}, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    history = model.fit(images, labels, batch_size=8, epochs=2, shuffle=False, verbose=0)
print(json.dumps({"replicas": replicas, "loss": history.history["loss"]}))
