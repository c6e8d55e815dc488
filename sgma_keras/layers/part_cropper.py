"""Region cropping subnet: boxes from attention maps, differentiable crop and zoom."""

import keras
from keras import ops

from sgma_keras.arguments import PART_CROPPER, crop_fits_image
from sgma_keras.upgrade import upgrade_layer_config


def bilinear_sample(images, y, x):
    """Samples `images` at pixel coordinates with bilinear interpolation.

    Coordinates follow the half-pixel convention (pixel `i` covers
    `[i - 0.5, i + 0.5]`); points outside the image read zeros. The result is
    differentiable in `x` and `y` on every backend (the weights are linear in
    the coordinates), which is what carries gradients to the boxes.

    Args:
        images: (B, H, W, C).
        y, x: (B, ...) pixel coordinates of the same shape.

    Returns:
        (B, ..., C).
    """
    # NumPy coordinates: `x - floor(x)` below would mix NumPy and torch tensors.
    x = _finite_or_outside(ops.convert_to_tensor(x))
    y = _finite_or_outside(ops.convert_to_tensor(y))
    shape = ops.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    flat = ops.reshape(images, (-1, channels))
    x0 = ops.floor(x)
    y0 = ops.floor(y)
    wx1 = x - x0
    wy1 = y - y0
    wx0 = 1.0 - wx1
    wy0 = 1.0 - wy1
    extra_dims = len(x.shape) - 1
    offset = ops.reshape(
        ops.arange(batch, dtype="int32") * (height * width), (-1,) + (1,) * extra_dims
    )

    # The last pixel index as one tensor each, made once: on PyTorch every Python
    # number handed to an op (`ops.clip(x, 0, w - 1)`) becomes a new tensor, a
    # blocking host-to-device copy on a GPU (24 a call here otherwise, now 2).
    x_last = ops.cast(width - 1, x.dtype)
    y_last = ops.cast(height - 1, y.dtype)

    def corner(yc, xc, weight):
        valid = (xc >= 0) & (xc <= x_last) & (yc >= 0) & (yc <= y_last)
        xi = ops.cast(ops.minimum(ops.relu(xc), x_last), "int32")
        yi = ops.cast(ops.minimum(ops.relu(yc), y_last), "int32")
        index = offset + yi * width + xi
        values = ops.take(flat, ops.reshape(index, (-1,)), axis=0)
        values = ops.reshape(values, tuple(ops.shape(index)) + (channels,))
        weight = weight * ops.cast(valid, weight.dtype)
        return values * ops.cast(weight, values.dtype)[..., None]

    return (
        corner(y0, x0, wy0 * wx0)
        + corner(y0, x0 + 1.0, wy0 * wx1)
        + corner(y0 + 1.0, x0, wy1 * wx0)
        + corner(y0 + 1.0, x0 + 1.0, wy1 * wx1)
    )


def masked_grid_sample(images, y, x, mask_y=None, mask_x=None):
    """Bilinear samples of `images * V` on per-row, per-column grids (separable).

    Samples the image at every `(y[..., i], x[..., j])`, each input pixel
    multiplied by a separable mask `V = mask_y(row) * mask_x(column)` before
    interpolation (as if the masked image had been made, without making it).
    Same half-pixel convention as `bilinear_sample`; reads outside the image
    are zeros.

    Args:
        images: (B, H, W, C).
        y: (B, K, n) row coordinates; x: (B, K, m) column coordinates.
        mask_y, mask_x: functions of a float tensor of integer pixel indices of
            the shape of `y` (resp. `x`) giving the mask there; None: 1.

    Returns:
        (B, K, n, m, C).
    """
    x = _finite_or_outside(ops.convert_to_tensor(x))
    y = _finite_or_outside(ops.convert_to_tensor(y))
    shape = ops.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    flat = ops.reshape(images, (-1, channels))
    x_last = ops.cast(width - 1, x.dtype)
    y_last = ops.cast(height - 1, y.dtype)

    def axis_weights(coords, last, mask):
        """Per-axis (index, weight) of the two neighbouring pixels, mask folded in."""
        lower = ops.stop_gradient(ops.floor(coords))
        upper_weight = coords - lower
        out = []
        for index, weight in ((lower, 1.0 - upper_weight), (lower + 1.0, upper_weight)):
            if mask is not None:
                weight = weight * mask(index)
            valid = (index >= 0) & (index <= last)
            weight = weight * ops.cast(valid, weight.dtype)
            out.append((ops.cast(ops.minimum(ops.relu(index), last), "int32"), weight))
        return out

    rows = axis_weights(y, y_last, mask_y)
    cols = axis_weights(x, x_last, mask_x)
    offset = ops.reshape(ops.arange(batch, dtype="int32") * (height * width), (-1, 1, 1, 1))
    total = 0.0
    for yi, wy in rows:
        for xi, wx in cols:
            index = offset + yi[..., :, None] * width + xi[..., None, :]  # (B, K, n, m)
            values = ops.take(flat, ops.reshape(index, (-1,)), axis=0)
            values = ops.reshape(values, tuple(ops.shape(index)) + (channels,))
            weight = wy[..., :, None] * wx[..., None, :]
            total = total + values * ops.cast(weight, values.dtype)[..., None]
    return total


def _tent_integral(z):
    """The integral of the unit tent (the bilinear kernel) from -inf to `z`."""
    c = ops.clip(z, -1.0, 1.0)
    return 0.5 + c - 0.5 * c * ops.abs(c)


def _footprint_taps(coords, footprint, taps, last, scale):
    """Per-axis pixel indices and weights (..., taps) of the mean of the bilinear
    interpolant over `[coords - f/2, coords + f/2]`, f = min(footprint, taps - 2)."""
    # (The floor keeps a degenerate box's division finite.)
    footprint = ops.clip(footprint, 1e-3, taps - 2.0)
    lo = coords - footprint / 2
    hi = coords + footprint / 2
    # Pixel j's tent spans (j - 1, j + 1): pixels floor(lo) .. ceil(hi) overlap.
    index = ops.stop_gradient(ops.floor(lo))[..., None] + ops.arange(taps, dtype=coords.dtype)
    weight = (_tent_integral(hi[..., None] - index)
              - _tent_integral(lo[..., None] - index)) / footprint[..., None]
    if scale is not None:
        weight = weight * scale[..., None]
    weight = weight * ops.cast((index >= 0) & (index <= last), weight.dtype)
    return ops.cast(ops.minimum(ops.relu(index), last), "int32"), weight


def footprint_grid_sample(images, y, x, footprint_y, footprint_x, taps=4, scale_y=None,
                          scale_x=None):
    """Box-filtered bilinear samples of `images` on per-row, per-column grids.

    The sample at `(y[i], x[j])` is the mean of the bilinear interpolant of the
    image over a `footprint_y[i]` x `footprint_x[j]` cell centred there (the
    kernel: a unit tent convolved with a box). With the footprint equal to the
    sample spacing the cells tile the grid, which makes the samples' gradient
    to the grid's position a resolved signal:

    - every kernel position reproduces a flat or linear image exactly, so a
      smooth image's samples change smoothly as the grid moves by a fraction
      of a pixel (no kink each time a sample crosses a pixel centre);
    - the derivative of a cell's mean is the difference of the image at its
      two ends, so an edge anywhere between samples moves them by the same
      total amount, at every phase. Over the phases of a one-pixel step,
      bilinear point samples spaced s > 1 px apart give it 0 to s times its
      mean gradient (they skip it, or not), and 1-px footprints 0.75-1.5x at
      s = 1.5.

    Same half-pixel convention as `bilinear_sample`; reads outside the image
    are zeros. `scale_y[i] * scale_x[j]` multiplies the sample (a mask at the
    sample points), folded into the weights.

    Separable, two passes that gather whole rows: the rows each output row
    needs, blended (B, K, n, W, C), then, transposed, the columns. O(n * W +
    n * m) per part, the order of the output; no full-resolution copy per part.

    Args:
        images: (B, H, W, C).
        y: (B, K, n) row coordinates; x: (B, K, m) column coordinates.
        footprint_y, footprint_x: cell sides in pixels, of the shape of `y`
            (resp. `x`); capped at `taps - 2`.
        taps: pixels read per axis (a Python int >= 3): a footprint f overlaps
            at most ceil(f) + 2 pixels' tents.
        scale_y, scale_x: None (1), or factors of the shape of `y` (resp. `x`).

    Returns:
        (B, K, n, m, C).
    """
    y = _finite_or_outside(ops.convert_to_tensor(y))
    x = _finite_or_outside(ops.convert_to_tensor(x))
    # (NumPy inputs would mix NumPy and torch tensors below.)
    # A diverged box's footprint is NaN too: it would make NaN gather indices.
    footprint_y = _finite_or_one(ops.convert_to_tensor(footprint_y))
    footprint_x = _finite_or_one(ops.convert_to_tensor(footprint_x))
    scale_y = None if scale_y is None else ops.convert_to_tensor(scale_y)
    scale_x = None if scale_x is None else ops.convert_to_tensor(scale_x)
    shape = ops.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    parts, rows_out, cols_out = ops.shape(y)[1], ops.shape(y)[2], ops.shape(x)[2]
    y_index, y_weight = _footprint_taps(y, footprint_y, taps, ops.cast(height - 1, y.dtype),
                                        scale_y)
    x_index, x_weight = _footprint_taps(x, footprint_x, taps, ops.cast(width - 1, x.dtype),
                                        scale_x)
    # Rows: (B*H, W*C), each output row a blend of `taps` whole input rows,
    # gathered one tap at a time: the gradient to a tap's weights is then one
    # product with the blend's gradient, where a sum over a (.., taps, W*C)
    # tensor has TensorFlow tile that gradient taps times first (the largest
    # tensor of the crop).
    image_rows = ops.reshape(images, (-1, width * channels))
    offset = ops.reshape(ops.arange(batch, dtype="int32") * height, (-1, 1, 1))
    y_weight = ops.cast(y_weight, images.dtype)
    blended = None
    for tap in range(taps):
        rows = ops.take(image_rows, ops.reshape(y_index[..., tap] + offset, (-1,)), axis=0)
        rows = ops.reshape(rows, (batch, parts, rows_out, width * channels))
        rows = rows * y_weight[..., tap:tap + 1]
        blended = rows if blended is None else blended + rows
    # Columns: transposed so that each column is a contiguous row again.
    blended = ops.reshape(blended, (batch, parts, rows_out, width, channels))
    columns = ops.reshape(ops.transpose(blended, (0, 1, 3, 2, 4)), (-1, rows_out * channels))
    offset = ops.reshape(ops.arange(batch * parts, dtype="int32") * width, (batch, parts, 1, 1))
    gathered = ops.take(columns, ops.reshape(x_index + offset, (-1,)), axis=0)
    gathered = ops.reshape(gathered, (batch, parts, cols_out, taps, rows_out * channels))
    out = ops.sum(gathered * ops.cast(x_weight, gathered.dtype)[..., None], axis=3)
    out = ops.reshape(out, (batch, parts, cols_out, rows_out, channels))
    return ops.transpose(out, (0, 1, 3, 2, 4))


def _finite_or_outside(coordinates):
    """NaN / inf coordinates (a diverged box) moved outside the image, where they read
    zeros: cast to int32, a NaN becomes an arbitrary gather index (an out-of-range
    `InvalidArgumentError` on TensorFlow, silent garbage elsewhere)."""
    return ops.where(ops.isfinite(coordinates), coordinates,
                     ops.full_like(coordinates, -2.0))


def _finite_or_one(footprint):
    """NaN / inf footprints (a diverged box) set to one pixel: the tap indices
    derive from them, and must stay finite like the coordinates'."""
    return ops.where(ops.isfinite(footprint), footprint, ops.ones_like(footprint))


def _as_float(size, dtype):
    """A static size as a Python float (no tensor to create), a dynamic one cast."""
    return float(size) if isinstance(size, int) else ops.cast(size, dtype)


@keras.saving.register_keras_serializable(package="sgma_keras")
class PartCropper(keras.layers.Layer):
    """Predicts one square box per attention map and crops-and-zooms it.

    Per part, `f_CNet` (two dense layers) maps the flattened attention map to
    offsets that move the box centre away from the map's soft peak; the last
    layer starts at zero, so the first boxes sit on the attention peaks. The
    outputs are bounded: centre `(t_x, t_y)` in (0, 1) and side `t_s` in
    `[min_side, max_side]`, all relative to the image.

    The part image is `x * V` with the boxcar mask
    `V = (h(x - t_x + t_s/2) - h(x - t_x - t_s/2)) (same in y)`,
    `h(z) = sigmoid(k z)`, z in input-image pixels by default (`steepness_unit`),
    sampled on an `output_size` x `output_size` grid, differentiably in the box.
    By default (`mask_at="margin"`) the grid spans the box plus `margin * t_s`
    on each side, each sample is the mean of the image over its cell, and `V`
    is evaluated at the sample points, its edge at least one output sample
    wide: the part image, and so the box gradient, vary smoothly with the box
    at sub-pixel scale, and content just outside the box is seen, faded, so it
    can pull the box (see `crop`). No full-resolution masked copy of the image
    is ever made: the mask is folded into the separable interpolation weights.

    The arguments, their ranges and their config docs are declared once in
    `sgma_keras.arguments.PART_CROPPER` (the config section `model.cropper`).

    Args:
        num_parts: K.
        output_size: side of the zoomed part images (the local input size).
        hidden_units: width of the first `f_CNet` dense layer.
        min_side, max_side: bounds of `t_s` (relative to the image side).
        steepness: k of the boxcar mask, per input-image pixel (or per image
            side, see `steepness_unit`). In "margin" mode an edge sharper than
            one output sample is widened to one sample.
        peak_temperature: temperature of the soft-argmax over each map.
        steepness_unit: "pixel" (z in input-image pixels: k = 10 is an edge
            about 0.2 px wide) or "relative" (z in [0, 1] of the image side:
            k = 10 is an edge a tenth of the image wide).
        peak_gradient_temperature: None, or the temperature of a broader
            soft-argmax whose gradient replaces the sharp peak's
            (straight-through: the box position is unchanged, the map keeps a
            gradient once it is peaky). At 28x28, ||d(t_x, t_y)/dM|| is 0.45 on
            an init-like map and 5e-4 on a peaky one without it, 0.075 and 0.13
            with 0.2 (`benchmarks/peak_gradient.py`). Default None (off).
        mask_at: "margin" (the grid spans the box plus `margin` of its side
            on each side; V at the sample points, its edge's logistic scale
            max(1/k, one output sample): a box gradient resolved at sub-pixel
            scale), "input_pixels" (V at the pixels each sample reads, the grid
            spanning the box: with a 0.2 px edge its box gradient flips sign as
            the box moves by a fraction of a pixel; kept for models trained
            with it) or "sample_points" (V at the sample points of a grid
            spanning the box: nothing outside the box is read; files saved
            without `mask_at` load with it, as they were trained:
            `sgma_keras.upgrade`).
        margin: the grid's margin past each box edge, as a share of the box
            side ("margin" mode only). 0.125: the box fills the central 80% of
            the part image; at 448 px -> 224 px parts and a 0.425 side the
            margin is 22 samples, and the default edge (one sample) has faded
            below 1% after 5.
        anchor: "peak" (the box centre is the soft peak of its map moved by
            `f_CNet`'s offset) or "cnet" (the paper: `f_CNet` predicts the
            centre from the map alone, starting at the image centre).
        box_source: "attention" (SGMA) or "random" (random boxes, a baseline).
        seed: seed of the random boxes.

    Example:

    >>> images = np.random.rand(2, 64, 64, 3).astype("float32") * 255
    >>> maps = np.random.rand(2, 8, 8, 2).astype("float32")
    >>> parts, boxes = PartCropper(num_parts=2, output_size=32)([images, maps])
    >>> tuple(parts.shape), tuple(boxes.shape)
    ((2, 2, 32, 32, 3), (2, 2, 3))
    """

    def __init__(
        self,
        num_parts=2,
        output_size=224,
        hidden_units=128,
        min_side=0.25,
        max_side=0.6,
        steepness=10.0,
        peak_temperature=0.05,
        box_source="attention",
        seed=None,
        steepness_unit="pixel",
        peak_gradient_temperature=None,
        mask_at="margin",
        anchor="peak",
        margin=0.125,
        **kwargs,
    ):
        values = PART_CROPPER.check(locals())
        # Coordinates need float32 even under mixed precision (a 448 px image
        # in float16 would snap boxes to quarter pixels).
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        for name, value in values.items():
            setattr(self, name, value)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        image_shape, map_shape = input_shape
        height, width = image_shape[1], image_shape[2]
        problem = crop_fits_image(self.output_size, None if height is None
                                  else min(height, width))
        if problem:
            raise ValueError(f"PartCropper: {problem}.")
        if map_shape[-1] != self.num_parts:
            raise ValueError(
                f"PartCropper: expected {self.num_parts} attention maps, got "
                f"{map_shape[-1]} (input shape {map_shape})."
            )
        if self.box_source == "random":
            # No f_CNet: its weights would get no gradient (Keras warns at every
            # step) and would inflate the baseline's parameter count.
            return
        cells = int(map_shape[1]) * int(map_shape[2])
        k, hidden = self.num_parts, self.hidden_units
        self.cnet_w1 = self.add_weight((k, cells, hidden), "glorot_uniform", name="cnet_w1")
        self.cnet_b1 = self.add_weight((k, hidden), "zeros", name="cnet_b1")
        self.cnet_w2 = self.add_weight((k, hidden, 3), "zeros", name="cnet_w2")
        self.cnet_b2 = self.add_weight((k, 3), "zeros", name="cnet_b2")

    def predict_boxes(self, maps):
        """(B, K, 3) boxes `(t_x, t_y, t_s)` from attention maps (B, h, w, K)."""
        maps = ops.cast(maps, self.compute_dtype)
        shape = ops.shape(maps)
        batch, h, w = shape[0], shape[1], shape[2]
        per_part = ops.reshape(ops.transpose(maps, (0, 3, 1, 2)), (batch, self.num_parts, -1))
        # Soft peak of each map, in relative coordinates of cell centres.
        rows = (ops.arange(h, dtype=self.compute_dtype) + 0.5) / _as_float(h, self.compute_dtype)
        cols = (ops.arange(w, dtype=self.compute_dtype) + 0.5) / _as_float(w, self.compute_dtype)
        grid_y = ops.reshape(ops.repeat(rows[:, None], w, axis=1), (-1,))
        grid_x = ops.reshape(ops.repeat(cols[None, :], h, axis=0), (-1,))

        def soft_peak(temperature):
            weights = ops.softmax(per_part / temperature, axis=-1)
            return ops.sum(weights * grid_x, axis=-1), ops.sum(weights * grid_y, axis=-1)

        peak_x, peak_y = soft_peak(self.peak_temperature)
        if self.peak_gradient_temperature is not None:
            # Straight-through: the value of the sharp peak, the gradient of a
            # broader one. A peaky map saturates softmax(M / 0.05) and its
            # gradient to the map vanishes (~1e-3 of the flat map's).
            broad_x, broad_y = soft_peak(self.peak_gradient_temperature)
            peak_x = broad_x + ops.stop_gradient(peak_x - broad_x)
            peak_y = broad_y + ops.stop_gradient(peak_y - broad_y)
        # f_CNet: two dense layers per part, giving offsets to the peak.
        hidden = ops.relu(ops.einsum("bkn,knh->bkh", per_part, self.cnet_w1) + self.cnet_b1)
        offsets = ops.einsum("bkh,kho->bko", hidden, self.cnet_w2) + self.cnet_b2

        def logit(p):
            p = ops.clip(p, 1e-4, 1.0 - 1e-4)
            return ops.log(p) - ops.log(1.0 - p)

        if self.anchor == "cnet":
            # The paper: f_CNet predicts the box from the map, with no anchor.
            peak_x = peak_y = ops.full_like(peak_x, 0.5)
        t_x = ops.sigmoid(logit(peak_x) + offsets[..., 0])
        t_y = ops.sigmoid(logit(peak_y) + offsets[..., 1])
        t_s = self.min_side + (self.max_side - self.min_side) * ops.sigmoid(offsets[..., 2])
        return ops.stack([t_x, t_y, t_s], axis=-1)

    def random_boxes(self, batch):
        """Uniform random boxes that lie inside the image."""
        u = keras.random.uniform((batch, self.num_parts, 3), seed=self.seed_generator)
        t_s = self.min_side + (self.max_side - self.min_side) * u[..., 2]
        t_x = t_s / 2 + (1.0 - t_s) * u[..., 0]
        t_y = t_s / 2 + (1.0 - t_s) * u[..., 1]
        return ops.stack([t_x, t_y, t_s], axis=-1)

    def crop(self, images, boxes, coordinate_gradient=True):
        """Differentiable boxcar crop-and-zoom of (B, K, 3) boxes: `x * V`, then sampled.

        `mask_at="margin"` (the default), built so that the box gradient is a
        signal at every sub-pixel position (`docs/performance/crop_gradient.md`):

        - `V` is evaluated at the sample points, in image coordinates (the
          spec's boxcar of the box edges). It moves with the grid, so its
          derivative and the grid's cancel and the box gradient is that of the
          content under a fixed soft window: `V * dx/du` at each sample. With
          `V` at fixed pixels instead, a 0.2 px edge makes `dV/dt` a spike each
          time an edge crosses a pixel centre.
        - The grid extends `margin * t_s` past each box edge and `V`'s edge is
          at least one output sample wide (logistic scale max(1/k, spacing)):
          content a few samples outside the box is seen, faded, and pulls the
          box toward it. A grid that stops at the box never reads it.
        - Each sample is the mean of the image over its cell (footprint = the
          sample spacing, `footprint_grid_sample`), not a bilinear point
          sample: spaced more than a pixel apart (boxes over 0.4 of the image
          at 448 -> 224 px with the margin), point samples skip a sharp edge
          or not depending on the sub-pixel phase, so its gradient flickers
          between 0 and 1.5x its mean at the 0.6 box; tiling cells see it the
          same at every phase.

        On a flat image, moving the box changes nothing and the position
        gradient is zero. Cost: two gather passes of 3-4 rows per output row
        (`benchmarks/crop_gradient.py`).

        `mask_at="input_pixels"`: `V` at the input pixels the bilinear sampler
        reads, the grid spanning the box itself (kept for models trained with
        it). With the default k = 10 per pixel the edge is 0.2 px wide and the
        grid stops at the box edge, so the box gradient over a 2-pixel move has
        a standard deviation many times its mean. `"sample_points"`: `V` at the
        sample points of a grid spanning the box (files saved before `mask_at`
        existed): content outside the box is never read.

        No mode makes a full-resolution masked copy of the image: the mask is
        folded into the separable interpolation weights.

        Args:
            images: (B, H, W, C).
            boxes: (B, K, 3) boxes `(t_x, t_y, t_s)`.
            coordinate_gradient: False stops the gradient of the sample
                coordinates (the sampler's pixel-level path), leaving the mask's
                as the only path to the boxes (for tests and measurements).

        Returns:
            (B, K, output_size, output_size, C) part images.
        """
        images = ops.cast(images, self.compute_dtype)
        boxes = ops.cast(boxes, self.compute_dtype)
        shape = ops.shape(images)
        height = _as_float(shape[1], self.compute_dtype)
        width = _as_float(shape[2], self.compute_dtype)
        size = self.output_size
        steps = (ops.arange(size, dtype=self.compute_dtype) + 0.5) / size - 0.5
        t_x, t_y, t_s = boxes[..., 0:1], boxes[..., 1:2], boxes[..., 2:3]
        # The grid's side (relative): the box, plus the margin in "margin" mode.
        span = t_s * (1.0 + 2.0 * self.margin) if self.mask_at == "margin" else t_s
        # Sample positions in input-image pixels, (B, K, size); pixel i spans [i, i + 1].
        px = (t_x + steps * span) * width
        py = (t_y + steps * span) * height
        if not coordinate_gradient:
            px, py = ops.stop_gradient(px), ops.stop_gradient(py)
        # k per input-image pixel, or per image side ("relative": z in [0, 1]).
        kx = self.steepness if self.steepness_unit == "pixel" else self.steepness / width
        ky = self.steepness if self.steepness_unit == "pixel" else self.steepness / height
        lo_x, hi_x = (t_x - t_s / 2) * width, (t_x + t_s / 2) * width
        lo_y, hi_y = (t_y - t_s / 2) * height, (t_y + t_s / 2) * height
        if self.mask_at == "margin":
            # Edge scale (px): 1/k, widened to one output sample where the grid
            # could not resolve it.
            spacing_x, spacing_y = span * width / size, span * height / size
            scale_x = ops.maximum(1.0 / kx, spacing_x)
            scale_y = ops.maximum(1.0 / ky, spacing_y)
            vx = ops.sigmoid((px - lo_x) / scale_x) - ops.sigmoid((px - hi_x) / scale_x)
            vy = ops.sigmoid((py - lo_y) / scale_y) - ops.sigmoid((py - hi_y) / scale_y)
            # Each sample is the mean of the image over its cell (footprint =
            # spacing): see `footprint_grid_sample`.
            foot_y = ops.broadcast_to(spacing_y, ops.shape(py))
            foot_x = ops.broadcast_to(spacing_x, ops.shape(px))
            if not coordinate_gradient:
                foot_y, foot_x = ops.stop_gradient(foot_y), ops.stop_gradient(foot_x)
            return footprint_grid_sample(images, py - 0.5, px - 0.5, foot_y, foot_x,
                                         taps=self._taps(images), scale_y=vy, scale_x=vx)

        def boxcar(lo, hi, k):
            def mask(index):  # V at the centres (index + 1/2) of input pixels
                centre = index + 0.5
                return ops.sigmoid(k * (centre - lo)) - ops.sigmoid(k * (centre - hi))

            return mask

        mask_x = boxcar(lo_x, hi_x, kx)
        mask_y = boxcar(lo_y, hi_y, ky)
        if self.mask_at == "sample_points":
            # V on the sampling grid itself, where it does not depend on the box
            # position (kept so that files saved with it load unchanged).
            grid_y = ops.broadcast_to(py[..., :, None], ops.shape(py)[:2] + (size, size))
            grid_x = ops.broadcast_to(px[..., None, :], ops.shape(px)[:2] + (size, size))
            parts = bilinear_sample(images, grid_y - 0.5, grid_x - 0.5)
            mask = mask_y(py - 0.5)[..., :, None] * mask_x(px - 0.5)[..., None, :]
            return parts * mask[..., None]
        # Pixel centres sit at integer coordinates after the half-pixel shift.
        return masked_grid_sample(images, py - 0.5, px - 0.5, mask_y, mask_x)

    def _taps(self, images):
        """Pixels read per axis in "margin" mode: enough for the spacing of a
        `max_side` box (3 up to 1 px, 4 up to 2 px; a larger spacing's footprint
        is capped at 2 px)."""
        side = max(images.shape[1] or 0, images.shape[2] or 0)
        if not side:
            return 4
        spacing = self.max_side * (1.0 + 2.0 * self.margin) * side / self.output_size
        return 3 if spacing <= 1.0 else 4

    def call(self, inputs):
        images, maps = inputs
        if self.box_source == "random":
            boxes = self.random_boxes(ops.shape(images)[0])
        else:
            boxes = self.predict_boxes(maps)
        return self.crop(images, boxes), boxes

    def compute_output_shape(self, input_shape):
        image_shape, _ = input_shape
        batch, channels = image_shape[0], image_shape[-1]
        size = self.output_size
        return (batch, self.num_parts, size, size, channels), (batch, self.num_parts, 3)

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in PART_CROPPER.names})
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**upgrade_layer_config("PartCropper", config))
