"""Every PNG figure of the project: attention maps with part boxes, part crops, and
the GZSL seen-unseen curve.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot),
so they work headless and never change the process-wide matplotlib backend.

Inputs follow the model's outputs:

- `images`: `(B, H, W, 3)`, float in [0, 255] or uint8;
- `attention_maps`: `(B, h, w, K)` in (0, 1), any resolution (they are
  stretched over the image with bilinear interpolation);
- `boxes`: `(B, K, 3)` squares `(t_x, t_y, t_s)` = centre x, centre y and side,
  relative to the image;
- `part_images`: `(B, K, s, s, 3)`, float in [0, 255] or uint8.

Arrays may be NumPy arrays or tensors of any Keras backend.
"""

import textwrap

import numpy as np

from sgma_keras.atomic_io import atomic_write
from sgma_keras.zero_shot import ausuc

__all__ = ["box_to_pixel_rect", "plot_attention_grid", "plot_part_crops", "plot_seen_unseen_curve"]

# One colour per part (cycled when there are more parts).
_PART_COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4"]


def _to_numpy(x):
    try:
        return np.asarray(x)
    except (TypeError, RuntimeError):
        import keras

        return np.asarray(keras.ops.convert_to_numpy(x))


def _to_uint8(images):
    """Float [0, 255] or uint8 images to uint8 (what imshow shows as-is)."""
    images = _to_numpy(images)
    if images.dtype == np.uint8:
        return images
    return np.clip(np.round(images.astype("float32")), 0, 255).astype(np.uint8)


def box_to_pixel_rect(box, height, width):
    """Relative square `(t_x, t_y, t_s)` to a pixel rectangle.

    The side is taken relative to each image dimension, so on a non-square
    image the box is a rectangle in pixels (SGMA's inputs are square).

    Returns:
        `(x0, y0, w, h)`: top-left corner, width and height in pixels.

    Example:

    >>> box_to_pixel_rect((0.5, 0.25, 0.5), height=100, width=200)
    (50.0, 0.0, 100.0, 50.0)
    """
    t_x, t_y, t_s = (float(v) for v in box)
    return (
        (t_x - t_s / 2) * width,
        (t_y - t_s / 2) * height,
        t_s * width,
        t_s * height,
    )


def _new_figure(rows, cols, cell_inches=2.2, extra_width=0.0, extra_height=0.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Constrained layout makes room for titles, row labels and colour bars.
    fig = Figure(figsize=(cols * cell_inches + extra_width, rows * cell_inches + extra_height),
                 dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def _draw_box(ax, box, height, width, color, label=None):
    from matplotlib.patches import Rectangle

    x0, y0, w, h = box_to_pixel_rect(box, height, width)
    ax.add_patch(Rectangle((x0, y0), w, h, fill=False, edgecolor=color, linewidth=2))
    if label is not None:
        ax.text(
            x0 + 2,
            y0 + 2,
            label,
            color="white",
            fontsize=7,
            va="top",
            bbox={"facecolor": color, "alpha": 0.8, "pad": 1, "lw": 0},
        )


def _save(fig, path):
    atomic_write(path, lambda handle: fig.savefig(handle, format="png"), binary=True)


def _wrap(text, width=24):
    return "\n".join(textwrap.wrap(str(text), width, break_long_words=True)) or str(text)


def _name(class_names, c):
    return class_names[c] if class_names is not None else f"class {c}"


def _row_title(i, labels, predictions, class_names, titles):
    """(title, colour) of row i: the given title, or prediction and truth."""
    if titles is not None:
        return _wrap(titles[i], 30), "black"
    if predictions is None and labels is None:
        return None, "black"
    if predictions is None:
        return _wrap(_name(class_names, int(labels[i]))), "black"
    pred = int(predictions[i])
    if labels is None:
        return "predicted:\n" + _wrap(_name(class_names, pred)), "black"
    truth = int(labels[i])
    right = pred == truth
    verdict = "right" if right else "wrong"
    title = (f"predicted ({verdict}):\n{_wrap(_name(class_names, pred))}"
             f"\ntruth:\n{_wrap(_name(class_names, truth))}")
    return title, ("tab:green" if right else "tab:red")


def plot_attention_grid(
    images,
    attention_maps,
    boxes,
    path,
    labels=None,
    class_names=None,
    max_images=8,
    predictions=None,
    titles=None,
):
    """Writes a PNG grid: per image, its part boxes, then each attention map.

    Row i shows image i with every predicted part box drawn (column 0), titled
    with the predicted class and the true one (green when right, red when
    wrong), then for each part k the attention map `M_k` stretched over the
    image (bilinear) and overlaid, with box k drawn on it. A colour bar gives
    the attention scale. Long class names are wrapped, never cut off.

    Args:
        images: `(B, H, W, 3)` images, float in [0, 255] or uint8.
        attention_maps: `(B, h, w, K)` attention maps in [0, 1].
        boxes: `(B, K, 3)` relative `(t_x, t_y, t_s)` squares.
        path: output PNG path (parent folders are created).
        labels: optional `(B,)` true global class ids.
        class_names: optional names indexed by class id.
        max_images: at most this many rows (the first images).
        predictions: optional `(B,)` predicted global class ids.
        titles: optional one title per row (instead of prediction and truth).

    Example:

    ```python
    outputs = model.predict(images)
    plot_attention_grid(
        images,
        outputs["attention_maps"],
        outputs["boxes"],
        "runs/demo/attention.png",
        labels=labels,
        class_names=class_names,
        predictions=outputs["scores"].argmax(-1),
    )
    ```
    """
    images = _to_uint8(images)
    maps = _to_numpy(attention_maps).astype("float32")
    boxes = _to_numpy(boxes).astype("float32")
    if images.ndim != 4 or maps.ndim != 4 or boxes.ndim != 3:
        raise ValueError(
            "Expected images (B, H, W, 3), attention_maps (B, h, w, K) and "
            f"boxes (B, K, 3). Received: {images.shape}, {maps.shape}, "
            f"{boxes.shape}."
        )
    if not (images.shape[0] == maps.shape[0] == boxes.shape[0]):
        raise ValueError("images, attention_maps and boxes differ in batch size.")
    if maps.shape[-1] != boxes.shape[1]:
        raise ValueError(f"{maps.shape[-1]} attention maps but {boxes.shape[1]} boxes.")
    labels = None if labels is None else _to_numpy(labels).reshape(-1)
    predictions = None if predictions is None else _to_numpy(predictions).reshape(-1)

    num_rows = min(images.shape[0], max_images)
    num_parts = boxes.shape[1]
    titled = labels is not None or predictions is not None or titles is not None
    fig, axes = _new_figure(num_rows, 1 + num_parts, extra_width=0.8,
                            extra_height=0.9 * num_rows if titled else 0.3)
    overlay = None
    for i in range(num_rows):
        height, width = images.shape[1:3]
        extent = (0, width, height, 0)  # maps span the whole image
        ax = axes[i, 0]
        ax.imshow(images[i])
        for k in range(num_parts):
            color = _PART_COLORS[k % len(_PART_COLORS)]
            _draw_box(ax, boxes[i, k], height, width, color, label=str(k))
        title, colour = _row_title(i, labels, predictions, class_names, titles)
        if title is not None:
            ax.set_title(title, fontsize=7, color=colour)
        for k in range(num_parts):
            ax = axes[i, 1 + k]
            ax.imshow(images[i], alpha=0.6)
            overlay = ax.imshow(
                maps[i, :, :, k],
                cmap="jet",
                alpha=0.5,
                vmin=0.0,
                vmax=1.0,
                extent=extent,
                interpolation="bilinear",
            )
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
            color = _PART_COLORS[k % len(_PART_COLORS)]
            _draw_box(ax, boxes[i, k], height, width, color)
            if i == 0:
                ax.set_title(f"attention {k}", fontsize=8)
    if overlay is not None:
        bar = fig.colorbar(overlay, ax=axes[:, 1:].ravel().tolist(), shrink=0.8, pad=0.02)
        bar.set_label("attention", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    _save(fig, path)


def plot_part_crops(part_images, path, max_images=8, row_labels=None):
    """Writes a PNG grid of the zoomed part images, one row per image.

    Args:
        part_images: `(B, K, s, s, 3)` crops, float in [0, 255] or uint8.
        path: output PNG path (parent folders are created).
        max_images: at most this many rows (the first images).
        row_labels: optional one label per row (e.g. the image's class), written
            left of the row.

    Example:

    ```python
    crops = np.random.uniform(0, 255, (2, 2, 224, 224, 3))  # 2 images, K = 2
    plot_part_crops(crops, "runs/demo/parts.png", row_labels=["cat", "dog"])
    ```
    """
    crops = _to_uint8(part_images)
    if crops.ndim != 5:
        raise ValueError(
            f"Expected part_images of shape (B, K, s, s, 3). Got {crops.shape}."
        )
    num_rows = min(crops.shape[0], max_images)
    num_parts = crops.shape[1]
    fig, axes = _new_figure(num_rows, num_parts, extra_width=1.2 if row_labels else 0.0,
                            extra_height=0.3)
    for i in range(num_rows):
        for k in range(num_parts):
            axes[i, k].imshow(crops[i, k])
            if i == 0:
                axes[i, k].set_title(f"part {k}", fontsize=8)
        if row_labels is not None:
            ax = axes[i, 0]  # a y label needs the axis on: hide ticks and frame only
            ax.set_axis_on()
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            ax.set_ylabel(_wrap(row_labels[i], 18), fontsize=7, rotation=0, ha="right",
                          va="center")
    _save(fig, path)


def plot_seen_unseen_curve(s, u, path, title="Seen-unseen accuracy curve", marker=None):
    """Writes the seen-unseen curve (u against s) to a PNG file.

    Args:
        s, u: curve from `seen_unseen_curve`.
        path: output PNG path.
        title: figure title; AUSUC is appended.
        marker: optional `(s, u)` operating point to highlight (e.g. the
            chosen calibration).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s = np.asarray(s, dtype="float64")
    u = np.asarray(u, dtype="float64")
    order = np.lexsort((-u, s))
    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(s[order], u[order], "-", color="tab:blue", lw=2)
    ax.fill_between(s[order], u[order], alpha=0.15, color="tab:blue")
    if marker is not None:
        ax.plot([marker[0]], [marker[1]], "o", color="tab:red", label="chosen")
        ax.legend(loc="upper right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("s: accuracy on seen classes")
    ax.set_ylabel("u: accuracy on unseen classes")
    ax.set_title(f"{title}\nAUSUC = {ausuc(s, u):.4f}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"), binary=True)
