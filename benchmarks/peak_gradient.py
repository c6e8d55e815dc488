"""How much gradient the attention map gets from the box position (issue 14, point 2).

Prints the norm of the Jacobian d(t_x, t_y) / d M of one map, at 28x28 (VGG19 at
448 px), for an initialisation-like map (about 0.7 everywhere, small variations)
and a peaky map (the ideal map of L_cpt: a Gaussian of `sigma` cells, 0 elsewhere),
for the sharp soft-argmax alone and for each straight-through gradient temperature.

    KERAS_BACKEND=tensorflow python benchmarks/peak_gradient.py
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
from keras import ops  # noqa: E402

from sgma_keras.layers import PartCropper  # noqa: E402


def test_maps(size=28, sigma=1.0, seed=0):
    """(2, size, size, 1): an init-like map and a peaky Gaussian map."""
    rng = np.random.default_rng(seed)
    flat = 0.7 + 0.05 * rng.standard_normal((size, size))
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    peak = (size * 2 // 7, size * 4 // 7)  # on a cell centre, as L_cpt's ideal map
    peaky = np.exp(-((rows - peak[0]) ** 2 + (cols - peak[1]) ** 2) / (2 * sigma**2))
    return np.stack([flat, peaky])[..., None].astype("float32")


def jacobian_norms(maps, peak_temperature, gradient_temperature):
    """Per map, ||d(t_x, t_y) / d M|| (Frobenius, over the map's cells)."""
    import tensorflow as tf  # the measurement only; the layer is backend-agnostic

    cropper = PartCropper(num_parts=1, output_size=8, peak_temperature=peak_temperature,
                          peak_gradient_temperature=gradient_temperature)
    cropper.build([(None, 64, 64, 3), maps.shape])
    norms = np.zeros(len(maps))
    for coord in (0, 1):
        m = tf.constant(maps)
        with tf.GradientTape() as tape:
            tape.watch(m)
            boxes = cropper.predict_boxes(m)
            out = ops.sum(boxes[:, 0, coord])
        grad = tape.gradient(out, m).numpy()
        norms += (grad.reshape(len(maps), -1) ** 2).sum(axis=1)
    return np.sqrt(norms)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--peak-temperature", type=float, default=0.05)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("run with KERAS_BACKEND=tensorflow")
    maps = test_maps(args.size)
    print(f"| gradient temperature | init-like map | peaky map (sigma 1) | ratio |")
    print("|---|---|---|---|")
    for t in (None, 0.1, 0.2, 0.5, 1.0):
        flat, peaky = jacobian_norms(maps, args.peak_temperature, t)
        name = "none (softmax(M / 0.05))" if t is None else f"{t:g}"
        print(f"| {name} | {flat:.3g} | {peaky:.3g} | {peaky / flat:.3g} |")


if __name__ == "__main__":
    main()
