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

import numpy as np

from sgma_keras.atomic_io import atomic_write
from sgma_keras.zero_shot import ausuc

__all__ = ["attention_figure", "box_overlap", "box_to_pixel_rect", "part_crops_figure",
           "plot_attention_grid", "plot_part_crops", "plot_seen_unseen_curve",
           "seen_unseen_figure", "short_name"]

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


CELL = 2.2  # inches per image tile
ROW_TITLE = 0.45  # inches above a row for its title (two lines at 8 pt)
RIGHT, WRONG = "\u2713", "\u2717"  # check mark, ballot x


def _new_figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Constrained layout places titles, headers and colour bars without overlap.
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _row_axes(subfigure, cols):
    axes = subfigure.subplots(1, cols, squeeze=False)[0]
    for ax in axes:
        ax.set_axis_off()
    return axes


def _draw_box(ax, box, height, width, color, label=None, taken=None):
    """A part box; its label sits inside the image at the box's top-left corner,
    moved right past labels already placed there (`taken`: their positions)."""
    from matplotlib.patches import Rectangle

    x0, y0, w, h = box_to_pixel_rect(box, height, width)
    ax.add_patch(Rectangle((x0, y0), w, h, fill=False, edgecolor=color, linewidth=2))
    if label is None:
        return
    step = 0.12 * width
    x = min(max(x0, 0.0), width - step)
    y = min(max(y0, 0.0), height - step)
    taken = [] if taken is None else taken
    while any(abs(x - tx) < step and abs(y - ty) < step for tx, ty in taken):
        x = x + step if x + 2 * step <= width else 0.0
        if x == 0.0:
            y += step
    taken.append((x, y))
    ax.text(x + 1, y + 1, label, color="white", fontsize=7, va="top", ha="left",
            clip_on=True, bbox={"facecolor": color, "alpha": 0.8, "pad": 1, "lw": 0})


def _save(fig, path):
    atomic_write(path, lambda handle: fig.savefig(handle, format="png"), binary=True)


def short_name(name, limit=48):
    """`name` cut to `limit` characters (an ellipsis marks the cut)."""
    name = str(name)
    return name if len(name) <= limit else name[: limit - 1] + "\u2026"


def _name(class_names, c, limit):
    return short_name(class_names[c], limit) if class_names is not None else f"class {c}"


def _row_title(i, labels, predictions, class_names, titles, limit):
    """(title, colour) of row i: the given title, or a tick and the prediction when
    right, a cross, the prediction and the truth when wrong."""
    if titles is not None:
        return short_name(titles[i], 2 * limit), "black"
    if predictions is None and labels is None:
        return None, "black"
    if predictions is None:
        return _name(class_names, int(labels[i]), limit), "black"
    pred = int(predictions[i])
    if labels is None:
        return f"predicted {_name(class_names, pred, limit)}", "black"
    truth = int(labels[i])
    if pred == truth:
        return f"{RIGHT} {_name(class_names, pred, limit)}", "tab:green"
    return (f"{WRONG} predicted {_name(class_names, pred, limit)}\n"
            f"truth {_name(class_names, truth, limit)}"), "tab:red"


def _chars(width_inches, fontsize):
    """About how many characters of `fontsize` points fit in `width_inches`."""
    return int(width_inches * 72 / (0.6 * fontsize))


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
    title=None,
):
    """Writes a PNG grid: per image, its part boxes, then each attention map.

    Row i shows image i with every predicted part box drawn and numbered (column 0),
    then for each part k the attention map `M_k` stretched over the image (bilinear)
    and overlaid, with box k drawn on it. Above each row: a tick and the predicted
    class when it is right (green), a cross, the prediction and the truth when wrong
    (red); names longer than a row holds are cut with an ellipsis. Column headers on
    the first row, a figure title, and a colour bar of the attention scale below.

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
        title: the figure's title (default: "Attention maps and part boxes").

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
    _save(attention_figure(images, attention_maps, boxes, labels, class_names, max_images,
                           predictions, titles, title), path)


def attention_figure(images, attention_maps, boxes, labels=None, class_names=None,
                     max_images=8, predictions=None, titles=None, title=None):
    """The matplotlib Figure `plot_attention_grid` saves (same arguments)."""
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
    cols = 1 + num_parts
    titled = labels is not None or predictions is not None or titles is not None
    row_height = CELL + (ROW_TITLE if titled else 0.0)
    bar_height = 0.6
    fig = _new_figure(cols * CELL, num_rows * row_height + bar_height + 0.6)
    fig.suptitle(title or "Attention maps and part boxes", fontsize=10)
    rows = fig.subfigures(num_rows + 1, 1, height_ratios=[row_height] * num_rows
                          + [bar_height])
    # A name may take half a row's width (a wrong row shows two on two lines).
    limit = max(12, _chars(cols * CELL, 8) - 12)
    overlay = None
    height, width = images.shape[1:3]
    extent = (0, width, height, 0)  # maps span the whole image
    for i in range(num_rows):
        axes = _row_axes(rows[i], cols)
        row_title, colour = _row_title(i, labels, predictions, class_names, titles, limit)
        if row_title is not None:
            rows[i].suptitle(row_title, fontsize=8, color=colour, x=0.01, ha="left")
        ax = axes[0]
        ax.imshow(images[i])
        taken = []
        for k in range(num_parts):
            color = _PART_COLORS[k % len(_PART_COLORS)]
            _draw_box(ax, boxes[i, k], height, width, color, label=str(k), taken=taken)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        if i == 0:
            ax.set_title("image, part boxes", fontsize=8)
        for k in range(num_parts):
            ax = axes[1 + k]
            ax.imshow(images[i], alpha=0.6)
            overlay = ax.imshow(maps[i, :, :, k], cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0,
                                extent=extent, interpolation="bilinear")
            ax.set_xlim(0, width)
            ax.set_ylim(height, 0)
            _draw_box(ax, boxes[i, k], height, width, _PART_COLORS[k % len(_PART_COLORS)])
            if i == 0:
                ax.set_title(f"attention {k}", fontsize=8)
    bar_axes = _row_axes(rows[-1], 3)
    if overlay is not None:
        cax = bar_axes[1]
        cax.set_axis_on()
        bar = rows[-1].colorbar(overlay, cax=cax, orientation="horizontal")
        bar.set_label("attention", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    return fig


def box_overlap(a, b):
    """Intersection over union of two relative squares `(t_x, t_y, t_s)`."""
    ax0, ay0, aw, ah = box_to_pixel_rect(a, 1.0, 1.0)
    bx0, by0, bw, bh = box_to_pixel_rect(b, 1.0, 1.0)
    iw = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    ih = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


# Two parts whose boxes overlap at least this much show the same region.
COINCIDE_IOU = 0.5


def _coinciding(boxes):
    """"parts 0 and 1 coincide (IoU 0.83)" for each pair of boxes of one image."""
    found = []
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            iou = box_overlap(boxes[a], boxes[b])
            if iou >= COINCIDE_IOU:
                found.append(f"parts {a} and {b} coincide (IoU {iou:.2f})")
    return found


def plot_part_crops(part_images, path, max_images=8, row_labels=None, boxes=None,
                    title=None):
    """Writes a PNG grid of the zoomed part images, one row per image.

    Args:
        part_images: `(B, K, s, s, 3)` crops, float in [0, 255] or uint8.
        path: output PNG path (parent folders are created).
        max_images: at most this many rows (the first images).
        row_labels: optional one label per row (e.g. the image's class), written
            above the row.
        boxes: optional `(B, K, 3)` part boxes the crops come from: parts whose boxes
            overlap (IoU >= `COINCIDE_IOU`) show the same region, and the row says so.
        title: the figure's title (default: "Part crops (what each part branch sees)").

    Example:

    ```python
    crops = np.random.uniform(0, 255, (2, 2, 224, 224, 3))  # 2 images, K = 2
    plot_part_crops(crops, "runs/demo/parts.png", row_labels=["cat", "dog"])
    ```
    """
    _save(part_crops_figure(part_images, max_images, row_labels, boxes, title), path)


def part_crops_figure(part_images, max_images=8, row_labels=None, boxes=None, title=None):
    """The matplotlib Figure `plot_part_crops` saves (same arguments)."""
    crops = _to_uint8(part_images)
    if crops.ndim != 5:
        raise ValueError(
            f"Expected part_images of shape (B, K, s, s, 3). Got {crops.shape}."
        )
    boxes = None if boxes is None else _to_numpy(boxes).astype("float32")
    num_rows = min(crops.shape[0], max_images)
    num_parts = crops.shape[1]
    notes = [_coinciding(boxes[i]) if boxes is not None else [] for i in range(num_rows)]
    titled = row_labels is not None or any(notes)
    row_height = CELL + (ROW_TITLE if titled else 0.0)
    fig = _new_figure(max(num_parts, 2) * CELL, num_rows * row_height + 0.6)
    fig.suptitle(title or "Part crops (what each part branch sees)", fontsize=10)
    rows = fig.subfigures(num_rows, 1, squeeze=False)[:, 0]
    limit = _chars(max(num_parts, 2) * CELL, 8)
    for i in range(num_rows):
        axes = _row_axes(rows[i], num_parts)
        for k in range(num_parts):
            axes[k].imshow(crops[i, k])
            if i == 0:
                axes[k].set_title(f"part {k}", fontsize=8)
        lines = [short_name(row_labels[i], limit)] if row_labels is not None else []
        if notes[i]:
            lines.append(short_name("; ".join(notes[i]), limit))
        if lines:
            rows[i].suptitle("\n".join(lines), fontsize=8, x=0.01, ha="left",
                             color="tab:orange" if notes[i] and not row_labels else "black")
    return fig


def plot_seen_unseen_curve(s, u, path, title="Seen-unseen accuracy curve", marker=None,
                           marker_label="chosen"):
    """Writes the seen-unseen curve (u against s) to a PNG file.

    Args:
        s, u: curve from `seen_unseen_curve`.
        path: output PNG path.
        title: figure title; AUSUC is appended.
        marker: optional `(s, u)` operating point to highlight (e.g. the
            chosen calibration).
        marker_label: the marker's legend entry (e.g. "calibration constant
            0.1234, chosen on validation").
    """
    _save(seen_unseen_figure(s, u, title, marker, marker_label), path)


def seen_unseen_figure(s, u, title="Seen-unseen accuracy curve", marker=None,
                       marker_label="chosen"):
    """The matplotlib Figure `plot_seen_unseen_curve` saves (same arguments)."""
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
        ax.plot([marker[0]], [marker[1]], "o", color="tab:red", label=marker_label)
        ax.legend(loc="best", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("s: accuracy on seen classes")
    ax.set_ylabel("u: accuracy on unseen classes")
    ax.set_title(f"{title}\nAUSUC = {ausuc(s, u):.4f}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig
