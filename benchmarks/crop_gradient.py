"""The part crop's box gradient: how resolved it is, and what it costs.

Two measurements, for each `PartCropper.mask_at` mode:

- sweep: a box (centre (0.47, 0.52), side 0.425) on a smooth 448-px image,
  one of `t_x`, `t_y`, `t_s` moved over 2 input pixels in 65 steps, the
  objective a fixed random linear read-out of the 224-px part. Printed per
  coordinate: the mean and SD of the gradient over the sweep, SD / |mean|, the
  finite-difference slope over the 2 px, and the SD left after removing the
  sweep's linear trend (the noise; the rest of the SD is the objective's
  curvature). A resolved gradient has SD / |mean| well under 1 and a mean
  equal to the slope.
- timing (TensorFlow): the crop of two 224-px parts per 448-px image, batch 8,
  forward alone and forward + the gradient to the boxes, against
  `tf.image.crop_and_resize` (bilinear, no mask) doing the same, interleaved
  and repeated; the median and the minimum of the repeats and their ratios.
  Also "margin" with its cells capped at 1 px (3 pixels read per axis instead
  of 4: exact only for sample spacings up to 1 px), to show what exactness
  costs.

    KERAS_BACKEND=tensorflow python benchmarks/crop_gradient.py
    python benchmarks/crop_gradient.py --skip-timing          # any backend
"""

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
from keras import ops  # noqa: E402

from sgma_keras.layers import PartCropper  # noqa: E402
from sgma_keras.arguments import MASK_AT  # noqa: E402


def smooth_image(size=448, seed=0, frequencies=(0.01, 0.04)):
    """(1, size, size, 3) in [27.5, 227.5]: per channel a product of two sinusoids
    of random frequencies (radians per pixel: periods of 157-628 px at 448)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    image = np.zeros((1, size, size, 3))
    for channel in range(3):
        fy, fx = rng.uniform(*frequencies, 2)
        phase = rng.uniform(0, 6)
        image[0, :, :, channel] = 127.5 + 100 * np.sin(fy * rows + phase) * np.cos(fx * cols)
    return image.astype("float32")


def box_gradients(cropper, image, boxes, readout):
    """Per box (one image, K boxes as K parts): the objective and its gradient."""
    readout = ops.convert_to_tensor(readout)

    def objective(b):
        return ops.sum(ops.multiply(cropper.crop(image, b), readout))

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        b = tf.constant(boxes, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(b)
            value = objective(b)
        grad = tape.gradient(value, b)
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        grad = jax.jit(jax.grad(objective))(jnp.asarray(boxes, jnp.float32))
    else:
        import torch

        b = torch.tensor(boxes, dtype=torch.float32, requires_grad=True)
        objective(b).backward()
        grad = b.grad
    values = ops.sum(ops.multiply(cropper.crop(image, boxes.astype("float32")), readout),
                     axis=(2, 3, 4))
    return (np.asarray(ops.convert_to_numpy(values))[0],
            np.asarray(ops.convert_to_numpy(grad))[0])


def sweep(mask_at, image_size=448, part_size=224, side=0.425, points=65, span_px=2.0,
          seed=0, **layer_args):
    """{coordinate: dict(mean, sd, slope, residual_sd)} over one 2-pixel sweep each.

    The 65 positions are 65 boxes (parts) on one image, so one backward pass
    gives every position's gradient.
    """
    image = smooth_image(image_size, seed)
    readout = np.random.default_rng(seed + 1).normal(
        size=(1, 1, part_size, part_size, 3)).astype("float32")
    if mask_at is not None:  # None: the layer's default
        layer_args["mask_at"] = mask_at
    cropper = PartCropper(num_parts=points, output_size=part_size, **layer_args)
    delta = np.linspace(0.0, span_px / image_size, points)
    out = {}
    for index, name in enumerate(("t_x", "t_y", "t_s")):
        boxes = np.tile(np.array([0.47, 0.52, side]), (1, points, 1))
        boxes[0, :, index] += delta
        values, grads = box_gradients(cropper, image, boxes, readout)
        grad = grads[:, index].astype("float64")
        trend = np.polyval(np.polyfit(delta, grad, 1), delta)
        out[name] = dict(mean=grad.mean(), sd=grad.std(),
                         slope=(values[-1] - values[0]) / delta[-1],
                         residual_sd=(grad - trend).std())
    return out


def time_crops(repeats, batch=8, parts=2, image_size=448, part_size=224, seed=0):
    """{name: seconds per call (list over repeats)}, TensorFlow graphs."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    images = tf.constant(rng.uniform(0, 255, (batch, image_size, image_size, 3)), tf.float32)
    boxes = tf.constant(np.stack([rng.uniform(0.3, 0.7, (batch, parts)),
                                  rng.uniform(0.3, 0.7, (batch, parts)),
                                  rng.uniform(0.25, 0.6, (batch, parts))], -1), tf.float32)
    readout = tf.constant(rng.normal(size=(batch, parts, part_size, part_size, 3)), tf.float32)
    box_index = tf.repeat(tf.range(batch), parts)

    def crop_and_resize(b):
        t_x, t_y, t_s = b[..., 0], b[..., 1], b[..., 2]
        corners = tf.stack([t_y - t_s / 2, t_x - t_s / 2, t_y + t_s / 2, t_x + t_s / 2], -1)
        out = tf.image.crop_and_resize(images, tf.reshape(corners, (-1, 4)), box_index,
                                       (part_size, part_size))
        return tf.reshape(out, (batch, parts, part_size, part_size, 3))

    crops = {"crop_and_resize": crop_and_resize}
    for mode in MASK_AT:
        cropper = PartCropper(num_parts=parts, output_size=part_size, mask_at=mode)
        crops[mode] = (lambda c: lambda b: c.crop(images, b))(cropper)
    # What the exact cells cost: footprints capped at 1 px read 3 pixels per axis, not
    # 4 (exact for spacings up to 1 px only).
    capped = PartCropper(num_parts=parts, output_size=part_size, mask_at="margin")
    capped._taps = lambda images: 3
    crops["margin, 1-px footprint"] = lambda b: capped.crop(images, b)

    calls = {}
    for name, crop in crops.items():
        calls[f"{name} forward"] = tf.function(crop)

        def with_gradient(b, crop=crop):
            with tf.GradientTape() as tape:
                tape.watch(b)
                value = tf.reduce_sum(crop(b) * readout)
            return value, tape.gradient(value, b)

        calls[f"{name} forward+box gradient"] = tf.function(with_gradient)
    for call in calls.values():  # trace, warm up
        call(boxes)
        call(boxes)
    times = {name: [] for name in calls}
    for _ in range(repeats):  # interleaved: a load spike hits every variant alike
        for name, call in calls.items():
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), call(boxes))
            times[name].append(time.perf_counter() - start)
    return times


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--modes", default=",".join(MASK_AT))
    args = parser.parse_args(argv)
    backend = keras.backend.backend()
    print(f"backend {backend}; CPU {cpu_model()} x {os.cpu_count()}")
    if not args.skip_sweep:
        print("\n## Sweep: gradient over a 2-px move (448-px image, 224-px part, side 0.425)\n")
        print("| mask_at | coordinate | mean | SD | SD/|mean| | FD slope | mean/slope "
              "| SD after detrend |")
        print("|---|---|---|---|---|---|---|---|")
        for mode in args.modes.split(","):
            for name, r in sweep(mode).items():
                print(f"| {mode} | {name} | {r['mean']:.3g} | {r['sd']:.3g} | "
                      f"{r['sd'] / abs(r['mean']):.3g} | {r['slope']:.3g} | "
                      f"{r['mean'] / r['slope']:.3f} | {r['residual_sd']:.3g} |")
    if not args.skip_timing:
        if backend != "tensorflow":
            raise SystemExit("timing compares with tf.image.crop_and_resize: run with "
                             "KERAS_BACKEND=tensorflow (or pass --skip-timing)")
        import tensorflow as tf

        print(f"\n## Timing: batch 8, 448 px -> 2 parts of 224 px, {args.repeats} repeats, "
              f"TensorFlow {tf.__version__} graphs\n")
        times = time_crops(args.repeats)
        base = {kind: times[f"crop_and_resize {kind}"]
                for kind in ("forward", "forward+box gradient")}
        print("| crop | ms (median) | ms (min) | x crop_and_resize (median) | (min) |")
        print("|---|---|---|---|---|")
        for name, values in times.items():
            kind = "forward+box gradient" if name.endswith("gradient") else "forward"
            med, low = np.median(values), np.min(values)
            print(f"| {name} | {med * 1e3:.1f} | {low * 1e3:.1f} | "
                  f"{med / np.median(base[kind]):.2f} | {low / np.min(base[kind]):.2f} |")


if __name__ == "__main__":
    main()
