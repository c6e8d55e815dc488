"""PartCropper: values against NumPy, the boxcar crop, gradients, boxes, arguments.

The other layers have a file each (tests/test_layer_<name>.py), and every layer
passes the shared checks of tests/layer_harness.py there."""

import keras
import numpy as np
import pytest

from sgma_keras.layers import (
    ClassCenterHead,
    ImagePreprocessing,
    MultiAttention,
    PartCropper,
    SemanticEmbedding,
)
from sgma_keras.layers.class_center import ridge_transfer
from sgma_keras.layers.part_cropper import bilinear_sample
from tests.helpers import _seed, gradients, numpy  # noqa: F401 (_seed: a cheaper session reset)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# -- NumPy references ------------------------------------------------------------------


def np_bilinear(image, y, x):
    """Bilinear sample of one (H, W, C) image at float pixel coords; zeros outside."""
    height, width, _ = image.shape
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    out = np.zeros(y.shape + image.shape[-1:])
    for dy in (0, 1):
        for dx in (0, 1):
            yc, xc = y0 + dy, x0 + dx
            weight = (1 - np.abs(y - yc)) * (1 - np.abs(x - xc))
            inside = (yc >= 0) & (yc < height) & (xc >= 0) & (xc < width)
            values = image[np.clip(yc, 0, height - 1), np.clip(xc, 0, width - 1)]
            out += (weight * inside)[..., None] * values
    return out


def np_crop(images, boxes, size, k, unit="pixel"):
    """The spec's boxcar crop: the masked image x * V (V at the input pixel centres),
    then sampled on a size x size grid spanning each box."""
    batch, height, width, channels = images.shape
    parts = boxes.shape[1]
    steps = (np.arange(size) + 0.5) / size - 0.5
    centres_x = np.arange(width) + 0.5  # pixel i spans [i, i + 1]
    centres_y = np.arange(height) + 0.5
    kx, ky = (k, k) if unit == "pixel" else (k / width, k / height)
    out = np.zeros((batch, parts, size, size, channels))
    for b in range(batch):
        for p in range(parts):
            t_x, t_y, t_s = boxes[b, p].astype("float64")
            vx = sigmoid(kx * (centres_x - (t_x - t_s / 2) * width)) - sigmoid(
                kx * (centres_x - (t_x + t_s / 2) * width)
            )
            vy = sigmoid(ky * (centres_y - (t_y - t_s / 2) * height)) - sigmoid(
                ky * (centres_y - (t_y + t_s / 2) * height)
            )
            masked = images[b].astype("float64") * (vy[:, None] * vx[None, :])[..., None]
            px = (t_x + steps * t_s) * width
            py = (t_y + steps * t_s) * height
            grid_y, grid_x = np.meshgrid(py - 0.5, px - 0.5, indexing="ij")
            out[b, p] = np_bilinear(masked, grid_y, grid_x)
    return out


def smooth_images(batch=2, size=32, seed=0):
    """Smooth random images in [0, 255] (non-zero spatial gradient everywhere)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    images = np.zeros((batch, size, size, 3))
    for b in range(batch):
        for c in range(3):
            fy, fx, phase = rng.uniform(0.1, 0.4, 2).tolist() + [rng.uniform(0, 6)]
            images[b, :, :, c] = 127.5 + 100 * np.sin(fy * yy + phase) * np.cos(fx * xx)
    return images.astype("float32")


# -- bilinear sampling and the boxcar crop ---------------------------------------------


def test_bilinear_sample_matches_numpy():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 5, 6, 3)).astype("float32")
    # Inside, on pixel centres, between them and outside (reads zeros).
    y = rng.uniform(-1.5, 5.5, (2, 7, 4)).astype("float32")
    x = rng.uniform(-1.5, 6.5, (2, 7, 4)).astype("float32")
    y[0, 0, :2], x[0, 0, :2] = [2.0, 4.0], [3.0, 0.0]
    got = numpy(bilinear_sample(images, y, x))
    expected = np.stack([np_bilinear(images[b], y[b], x[b]) for b in range(2)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(got[0, 0, 0], images[0, 2, 3], rtol=1e-6)  # a pixel centre
    assert np.all(got[(y < -1) | (y > 5) | (x < -1) | (x > 6)] == 0.0)


@pytest.mark.parametrize("unit, k", [("pixel", 2.0), ("relative", 10.0)])
def test_crop_matches_numpy_boxcar_reference(unit, k):
    images = smooth_images()
    boxes = np.array(
        [[[0.41, 0.37, 0.33], [0.8, 0.15, 0.5]], [[0.52, 0.61, 0.27], [0.3, 0.7, 0.45]]],
        "float32",
    )
    cropper = PartCropper(num_parts=2, output_size=8, steepness=k, steepness_unit=unit,
                          mask_at="input_pixels")
    got = numpy(cropper.crop(images, boxes))
    assert got.shape == (2, 2, 8, 8, 3)
    # Tolerance: float32 coordinates of a 32 px image, values up to 255.
    np.testing.assert_allclose(got, np_crop(images, boxes, 8, k, unit), rtol=1e-4, atol=2e-3)


def test_steep_boxcar_crop_equals_hard_crop_and_resize():
    """k = 1000: the boxcar mask is 1 at every pixel read, so the zoomed part is
    the hard crop resized. The boxes' edges lie on pixel boundaries and their side
    (16 px) is exactly twice the output size (8 px), so each output pixel is the
    mean of a 2x2 block of the crop (bilinear at half-pixel centres). Tolerance:
    1e-3 absolute on pixel values in [0, 255] (float32 rounding only)."""
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    # (t_x, t_y, t_s) relative: centre 16 px, side 16 px -> pixels 8..23; and
    # centre (8, 24) px -> columns 0..15, rows 16..31 (touching the image border).
    boxes = np.array([[[0.5, 0.5, 0.5], [0.25, 0.75, 0.5]]] * 2, "float32")
    got = numpy(PartCropper(num_parts=2, output_size=8, steepness=1000.0,
                            mask_at="input_pixels").crop(images, boxes))

    hard = np.stack([images[:, 8:24, 8:24], images[:, 16:32, 0:16]], axis=1)  # (B, K, 16, 16, 3)
    block_mean = hard.reshape(2, 2, 8, 2, 8, 2, 3).mean(axis=(3, 5))
    np.testing.assert_allclose(got, block_mean, rtol=0, atol=1e-3)

    resized = numpy(
        keras.ops.image.resize(
            hard.reshape(4, 16, 16, 3), (8, 8), interpolation="bilinear", antialias=False
        )
    ).reshape(2, 2, 8, 8, 3)
    np.testing.assert_allclose(got, resized, rtol=0, atol=1e-3)

    # The paper's k = 10 softens the box edge: the mask is evaluated at the input
    # pixels the samples read, so the outer ring of samples reads the edge row
    # (centre half a pixel inside the edge) dimmed by sigmoid(5) - sigmoid(-155)
    # and the next row at ~1.
    soft = numpy(PartCropper(num_parts=2, output_size=8, steepness=10.0,
                             mask_at="input_pixels").crop(images, boxes))
    edge = sigmoid(5.0)
    # Sample (row 0, column 3) reads rows 8-9 / columns 14-15 of box 0 and rows
    # 16-17 / columns 6-7 of box 1 (columns well inside the box: V = 1 there).
    edge_rows = np.stack([images[:, 8, 14:16], images[:, 16, 6:8]], axis=1).mean(axis=2)
    next_rows = np.stack([images[:, 9, 14:16], images[:, 17, 6:8]], axis=1).mean(axis=2)
    expected = 0.5 * (edge * edge_rows + next_rows)
    np.testing.assert_allclose(soft[:, :, 0, 3], expected, atol=1e-3)
    np.testing.assert_allclose(soft[:, :, 3, 3], block_mean[:, :, 3, 3], atol=1e-3)


def test_crop_gradients_wrt_boxes_are_finite_nonzero_and_match_finite_differences():
    images = smooth_images()
    start = np.array(
        [[[0.4137, 0.3791, 0.3312], [0.6213, 0.5487, 0.4931]],
         [[0.5229, 0.6143, 0.2717], [0.3071, 0.6959, 0.4537]]],
        "float32",
    )
    # Bilinear sampling has kinks where a sample point crosses a pixel centre;
    # these boxes keep every sample point > 0.005 px away from one, so the
    # finite differences below (steps of ~3e-4 px) see a smooth function.
    steps = (np.arange(8) + 0.5) / 8 - 0.5
    coords = np.concatenate(
        [(start[..., i : i + 1] + steps * start[..., 2:3]) * 32 - 0.5 for i in (0, 1)]
    )
    assert np.abs(coords - np.round(coords)).min() > 5e-3
    weights = np.random.default_rng(2).normal(size=(2, 2, 8, 8, 3)).astype("float32")
    cropper = PartCropper(num_parts=2, output_size=8, steepness=10.0, mask_at="input_pixels")
    boxes = keras.Variable(start, name="boxes")

    def objective():  # a fixed linear read-out of the part images
        return keras.ops.sum(keras.ops.multiply(cropper.crop(images, boxes), weights))

    value, (grad,) = gradients(objective, [boxes])
    assert grad.shape == (2, 2, 3)
    assert np.all(np.isfinite(grad))
    assert np.all(np.abs(grad) > 1e-2), grad  # every t_x, t_y, t_s of every box

    def reference(b):
        return float(np.sum(np_crop(images, b, 8, 10.0) * weights))

    assert value == pytest.approx(reference(start), rel=1e-4)
    numeric = np.zeros_like(grad)
    eps = 1e-5
    for index in np.ndindex(*start.shape):
        plus, minus = start.astype("float64"), start.astype("float64")
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (reference(plus) - reference(minus)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=1e-2 * np.abs(numeric).max())


@pytest.mark.parametrize("unit, k", [("pixel", 10.0), ("relative", 10.0)])
def test_mask_alone_carries_a_gradient_to_the_box_position(unit, k):
    """With the sampler's coordinate gradient stopped, the mask is the only path
    from the part image to the box. Before the mask was evaluated at the read
    pixels (it was evaluated at the sample points, which move with the box),
    dL/dt_x and dL/dt_y on this path were exactly 0 (3e-5 float noise) for these
    boxes; now they are of the order of the full gradient."""
    images = smooth_images()
    start = np.array([[[0.41, 0.37, 0.33], [0.62, 0.55, 0.49]]] * 2, "float32")
    weights = np.random.default_rng(2).normal(size=(2, 2, 8, 8, 3)).astype("float32")
    cropper = PartCropper(num_parts=2, output_size=8, steepness=k, steepness_unit=unit,
                          mask_at="input_pixels")
    boxes = keras.Variable(start, name="boxes")

    def objective():
        parts = cropper.crop(images, boxes, coordinate_gradient=False)
        return keras.ops.sum(keras.ops.multiply(parts, weights))

    _, (grad,) = gradients(objective, [boxes])
    assert np.all(np.isfinite(grad))
    assert np.all(np.abs(grad[..., :2]) > 1.0), grad  # t_x, t_y of every box

    def reference(b):  # coordinates frozen at `start`, the mask's edges at `b`
        return float(np.sum(np_crop_frozen(images, b, start, 8, k, unit) * weights))

    eps = 1e-5
    for index in [(0, 0, 0), (1, 1, 1), (0, 1, 2)]:
        plus, minus = start.astype("float64"), start.astype("float64")
        plus[index] += eps
        minus[index] -= eps
        numeric = (reference(plus) - reference(minus)) / (2 * eps)
        assert grad[index] == pytest.approx(numeric, rel=2e-3, abs=1e-2)


def np_crop_frozen(images, boxes, grid_boxes, size, k, unit):
    """`np_crop` with the mask of `boxes` sampled on the grids of `grid_boxes`."""
    masked = np_crop_mask_only(images, boxes, k, unit)  # (B, K, H, W, C)
    batch, parts = boxes.shape[:2]
    steps = (np.arange(size) + 0.5) / size - 0.5
    height, width = images.shape[1:3]
    out = np.zeros((batch, parts, size, size, images.shape[-1]))
    for b in range(batch):
        for p in range(parts):
            t_x, t_y, t_s = grid_boxes[b, p].astype("float64")
            grid_y, grid_x = np.meshgrid(
                (t_y + steps * t_s) * height - 0.5, (t_x + steps * t_s) * width - 0.5,
                indexing="ij",
            )
            out[b, p] = np_bilinear(masked[b, p], grid_y, grid_x)
    return out


def np_crop_mask_only(images, boxes, k, unit):
    """The full-resolution masked images x * V of every box, (B, K, H, W, C)."""
    batch, height, width, _ = images.shape
    kx, ky = (k, k) if unit == "pixel" else (k / width, k / height)
    cx, cy = np.arange(width) + 0.5, np.arange(height) + 0.5
    out = []
    for b in range(batch):
        row = []
        for t_x, t_y, t_s in boxes[b].astype("float64"):
            vx = sigmoid(kx * (cx - (t_x - t_s / 2) * width)) - sigmoid(kx * (cx - (t_x + t_s / 2) * width))
            vy = sigmoid(ky * (cy - (t_y - t_s / 2) * height)) - sigmoid(ky * (cy - (t_y + t_s / 2) * height))
            row.append(images[b].astype("float64") * (vy[:, None] * vx[None, :])[..., None])
        out.append(row)
    return np.asarray(out)


def bright_square_image(size=64):
    """A black image with one bright 16 px square, columns 31-46, rows 24-39."""
    image = np.zeros((1, size, size, 3), "float32")
    image[0, 24:40, 31:47] = 255.0
    return image, np.array([39.0, 32.0]) / size


@pytest.mark.parametrize("mask_at", ["margin", "input_pixels"])
@pytest.mark.parametrize(
    "unit, coordinate_gradient, learning_rate",
    [("pixel", True, 0.02), ("pixel", False, 0.1), ("relative", False, 0.1)],
    ids=["pixel-full-gradient", "pixel-mask-only", "relative-mask-only"],
)
def test_gradient_descent_moves_the_box_onto_a_bright_square(unit, coordinate_gradient,
                                                              learning_rate, mask_at):
    """A box (centre 0.4, side 0.4 of a 64 px image: columns 12.8-38.4) whose right
    edge half-overlaps a bright square (columns 31-47), and a loss that rewards
    brightness in the part image: 20 plain gradient steps on (t_x, t_y, t_s) move
    the centre at least half of the way to the square's, in the default mode
    ("margin") and in "input_pixels".

    The "mask-only" cases stop the sampler's coordinate gradient: the box moves
    through the boxcar mask alone (with the mask evaluated at the sample points
    of a grid spanning the box, it did not move at all). "pixel-full-gradient"
    is the model's path (the sampler's pixel-level gradient plus the mask's)."""
    image, target = bright_square_image()
    cropper = PartCropper(num_parts=1, output_size=16, steepness=10.0, steepness_unit=unit,
                          mask_at=mask_at)
    start = np.array([[[0.4, 0.5, 0.4]]], "float32")
    boxes = keras.Variable(start, name="boxes")

    def objective():
        parts = cropper.crop(image, boxes, coordinate_gradient=coordinate_gradient)
        return -keras.ops.mean(parts) / 255.0

    for _ in range(20):
        _, (grad,) = gradients(objective, [boxes])
        # The layer bounds the side to [min_side, max_side] = [0.25, 0.6].
        moved = np.clip(numpy(boxes) - learning_rate * grad, [0, 0, 0.25], [1, 1, 0.6])
        boxes.assign(moved.astype("float32"))
    centre = numpy(boxes)[0, 0, :2]
    progress = np.linalg.norm(centre - start[0, 0, :2]) / np.linalg.norm(target - start[0, 0, :2])
    remaining = np.linalg.norm(centre - target) / np.linalg.norm(target - start[0, 0, :2])
    assert progress >= 0.5 and remaining <= 0.5, (centre, target)


def test_mask_at_sample_points_gives_the_box_no_gradient_and_loads_from_old_configs():
    """0.1.0 evaluated V at the sample points, where `px - (t_x - t_s/2) W` does not
    depend on `t_x`: on a flat image (the sampler then carries no gradient), dL/dt_x
    and dL/dt_y are exactly zero. With V at the input pixels they are not. A layer
    config without `mask_at` (a file saved by 0.1.0) loads with the old behaviour."""
    image = np.full((1, 64, 64, 3), 200.0, "float32")
    start = np.array([[[0.4, 0.5, 0.4]]], "float32")
    weights = np.random.default_rng(3).normal(size=(1, 1, 16, 16, 3)).astype("float32")
    grads = {}
    for mask_at in ("sample_points", "input_pixels"):
        cropper = PartCropper(num_parts=1, output_size=16, mask_at=mask_at)
        boxes = keras.Variable(start, name="boxes")

        def objective():
            return keras.ops.sum(keras.ops.multiply(cropper.crop(image, boxes), weights))

        _, (grads[mask_at],) = gradients(objective, [boxes])
    assert np.all(grads["sample_points"][..., :2] == 0.0), grads["sample_points"]
    assert np.all(np.abs(grads["input_pixels"][..., :2]) > 1e-2), grads["input_pixels"]
    old = PartCropper(num_parts=1, output_size=16).get_config()
    del old["mask_at"], old["peak_gradient_temperature"]
    restored = PartCropper.from_config(old)
    assert (restored.mask_at, restored.peak_gradient_temperature) == ("sample_points", None)


# -- PartCropper -----------------------------------------------------------------------


def test_first_boxes_sit_on_the_attention_peaks():
    maps = np.zeros((2, 4, 4, 2), "float32")
    maps[0, 1, 2, 0] = maps[0, 3, 0, 1] = 1.0
    maps[1, 0, 0, 0] = maps[1, 2, 3, 1] = 1.0
    images = smooth_images()
    cropper = PartCropper(num_parts=2, output_size=16, hidden_units=8, min_side=0.2, max_side=0.6)
    parts, boxes = cropper([images, maps])
    boxes = numpy(boxes)
    # Cell (row, col) has its centre at ((col + 0.5) / 4, (row + 0.5) / 4).
    expected_xy = np.array([[[2.5, 1.5], [0.5, 3.5]], [[0.5, 0.5], [3.5, 2.5]]]) / 4
    np.testing.assert_allclose(boxes[..., :2], expected_xy, atol=1e-4)
    np.testing.assert_allclose(boxes[..., 2], 0.4, atol=1e-6)  # midway: sigmoid(0)
    assert tuple(parts.shape) == (2, 2, 16, 16, 3)
    np.testing.assert_allclose(numpy(parts), numpy(cropper.crop(images, boxes)), atol=1e-4)


def test_peaky_maps_keep_a_gradient_to_the_box_position():
    """softmax(M / 0.05) saturates on a peaky map (L_cpt's ideal: a Gaussian of one
    cell): ||d(t_x, t_y)/dM|| falls from 0.45 (flat map) to 5e-4. The straight-
    through broad soft-argmax keeps the box where it was and a gradient of 0.13."""
    rows, cols = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
    peaky = np.exp(-((rows - 8) ** 2 + (cols - 16) ** 2) / 2.0)[None, :, :, None]
    maps = keras.Variable(peaky.astype("float32"), name="maps")
    norms, boxes = {}, {}
    for t in (None, 0.2):
        cropper = PartCropper(num_parts=1, output_size=8, peak_gradient_temperature=t)
        cropper.build([(None, 64, 64, 3), (None, 28, 28, 1)])
        boxes[t] = numpy(cropper.predict_boxes(maps))
        grads = [gradients(lambda c=c: cropper.predict_boxes(maps)[0, 0, c], [maps])[1][0]
                 for c in (0, 1)]
        norms[t] = np.sqrt(sum((g**2).sum() for g in grads))
    np.testing.assert_allclose(boxes[0.2], boxes[None], atol=1e-6)
    np.testing.assert_allclose(boxes[None][0, 0, :2], [16.5 / 28, 8.5 / 28], atol=1e-3)
    assert norms[None] < 1e-3 < 0.1 < norms[0.2], norms


def test_random_boxes_lie_inside_the_image():
    cropper = PartCropper(num_parts=3, output_size=8, min_side=0.25, max_side=0.6,
                          box_source="random", seed=3)
    boxes = numpy(cropper.random_boxes(64))
    t_x, t_y, t_s = boxes[..., 0], boxes[..., 1], boxes[..., 2]
    assert np.all((t_s >= 0.25) & (t_s <= 0.6))
    for t in (t_x, t_y):
        assert np.all(t - t_s / 2 >= -1e-6) and np.all(t + t_s / 2 <= 1 + 1e-6)
    assert t_s.std() > 0.05  # actually random


def test_part_cropper_rejects_an_image_smaller_than_the_crop():
    cropper = PartCropper(num_parts=2, output_size=16)
    with pytest.raises(ValueError, match=r"output_size: the part crop \(16 px\) must not exceed the image side \(8 px\)"):
        cropper([np.zeros((1, 8, 8, 3), "float32"), np.zeros((1, 2, 2, 2), "float32")])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_parts=0), r"num_parts: expected an int >= 1, got 0"),
        (dict(min_side=0.7, max_side=0.6), r"min_side: must be <= max_side, got 0.7 > 0.6"),
        (dict(box_source="grid"), r"box_source: expected one of \"attention\", \"random\""),
        (dict(steepness=0.0), r"steepness: expected a float > 0, got 0.0"),
        (dict(margin=1.5), r"margin: expected a float in \[0, 1\], got 1.5"),
        (dict(mask_at="pixels"), r"mask_at: expected one of \"margin\""),
        # every problem at once, each named by its argument
        (dict(num_parts=0, anchor="box"), r"PartCropper: num_parts: .*; anchor: expected one"),
    ],
)
def test_part_cropper_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PartCropper(**kwargs)
