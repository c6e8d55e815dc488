import keras
import numpy as np
import pytest
from matplotlib import image as mpl_image

from sgma_keras import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _seed():
    # Overrides the conftest fixture: these tests build no Keras state, so
    # they skip its (slow) `clear_session()`.
    np.random.seed(0)
    yield


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    # The IHDR chunk comes first: width and height as big-endian uint32.
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _inputs(batch=3, size=64, parts=2, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    maps = rng.uniform(size=(batch, 7, 7, parts)).astype("float32")
    boxes = np.tile(np.array([[0.3, 0.3, 0.4], [0.7, 0.6, 0.3]])[:parts], (batch, 1, 1))
    return images, maps, boxes.astype("float32")


def test_box_to_pixel_rect():
    assert plots.box_to_pixel_rect((0.5, 0.25, 0.5), height=100, width=200) == (
        50.0,
        0.0,
        100.0,
        50.0,
    )
    x0, y0, w, h = plots.box_to_pixel_rect(np.array([0.3, 0.7, 0.2]), 448, 448)
    assert (x0, y0, w, h) == pytest.approx((89.6, 268.8, 89.6, 89.6))


def test_to_uint8_rounds_and_clips():
    out = plots._to_uint8(np.array([-3.0, 0.4, 127.6, 254.5, 300.0]))
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 128, 254, 255]  # round half to even at 254.5
    same = np.array([1, 2], np.uint8)
    assert plots._to_uint8(same) is same


def test_plot_attention_grid(tmp_path):
    images, maps, boxes = _inputs(batch=3)
    path = tmp_path / "figs" / "attention.png"
    plots.plot_attention_grid(
        images, maps, boxes, path, labels=[0, 2, 1], class_names=["a", "b", "c"]
    )
    # 3 rows x (1 + 2 parts) columns of 2.2 in at 100 dpi; each row 0.45 in more for
    # its title, and 1.2 in for the figure title and the colour bar below.
    assert _png_size(path) == (660, 915)
    assert path.stat().st_size > 20_000  # real content, not a blank canvas

    # max_images caps the rows; backend tensors are accepted.
    path2 = tmp_path / "attention2.png"
    plots.plot_attention_grid(
        keras.ops.convert_to_tensor(images),
        keras.ops.convert_to_tensor(maps),
        keras.ops.convert_to_tensor(boxes),
        path2,
        max_images=1,
    )
    assert _png_size(path2) == (660, 340)

    # Prediction and truth in the titles; a name too long for the row is cut.
    path3 = tmp_path / "attention3.png"
    plots.plot_attention_grid(images, maps, boxes, path3, labels=[0, 2, 1],
                              class_names=["a" * 120, "b", "c"], predictions=[0, 1, 1])
    assert _png_size(path3) == (660, 915)


def test_plot_attention_grid_uint8_and_float_render_the_same(tmp_path):
    images, maps, boxes = _inputs(batch=1)
    images = np.round(images)
    plots.plot_attention_grid(images, maps, boxes, tmp_path / "f.png")
    plots.plot_attention_grid(
        images.astype(np.uint8), maps, boxes, tmp_path / "u.png"
    )
    np.testing.assert_array_equal(
        mpl_image.imread(tmp_path / "f.png"), mpl_image.imread(tmp_path / "u.png")
    )


def test_plot_attention_grid_draws_box_colour(tmp_path):
    # Black image, one box: part 0's colour must appear in the rendering.
    images = np.zeros((1, 64, 64, 3), np.uint8)
    maps = np.zeros((1, 4, 4, 1), "float32")
    boxes = np.array([[[0.5, 0.5, 0.5]]], "float32")
    path = tmp_path / "box.png"
    plots.plot_attention_grid(images, maps, boxes, path)
    pixels = (mpl_image.imread(path)[..., :3] * 255).round().astype(int)
    red = np.array([0xE6, 0x19, 0x4B])
    assert np.any(np.all(np.abs(pixels - red) <= 2, axis=-1))


def test_plot_attention_grid_checks_shapes(tmp_path):
    images, maps, boxes = _inputs(parts=2)
    with pytest.raises(ValueError, match="attention maps"):
        plots.plot_attention_grid(images, maps[..., :1], boxes, tmp_path / "x.png")


def test_plot_part_crops(tmp_path):
    rng = np.random.default_rng(0)
    crops = rng.uniform(0, 255, (4, 2, 32, 32, 3))
    path = tmp_path / "parts.png"
    plots.plot_part_crops(crops, path, max_images=2)
    assert _png_size(path) == (440, 500)  # 2 rows x 2 parts, and the figure title
    assert path.stat().st_size > 10_000
    plots.plot_part_crops(crops, path, max_images=2, row_labels=["unseen: cat", "seen: dog"])
    assert _png_size(path) == (440, 590)  # a title above each row
    with pytest.raises(ValueError, match="part_images"):
        plots.plot_part_crops(crops[0], tmp_path / "bad.png")


# --------------------------------------------------------------------------
# Figures a person reads: short titles, headers, no text drawn over text
# --------------------------------------------------------------------------

LONG_NAMES = [f"{i:02d}.green-striped-triangle_head.green-spotted-diamond_tail" for i in range(8)]


def _drawn_texts(fig):
    """(text, window bounding box) of every non-empty text matplotlib draws (recorded
    while the figure draws: hidden axes' tick labels are never drawn)."""
    from unittest import mock

    from matplotlib.text import Text

    drawn = []
    original = Text.draw

    def record(text, renderer):
        original(text, renderer)
        if text.get_visible() and text.get_text().strip():
            drawn.append((text.get_text(), text.get_window_extent(renderer)))

    with mock.patch.object(Text, "draw", record):
        fig.canvas.draw()
    return drawn


def _overlaps(fig):
    texts = _drawn_texts(fig)
    return [(a, b) for i, (a, box_a) in enumerate(texts) for b, box_b in texts[i + 1:]
            if box_a.overlaps(box_b)]


def _eight_rows():
    images, maps, boxes = _inputs(batch=8, size=112)
    boxes[2] = [[0.5, 0.05, 0.4], [0.52, 0.07, 0.38]]  # coinciding, at the top edge
    boxes[5] = [[0.05, 0.02, 0.5], [0.06, 0.03, 0.5]]
    labels = np.arange(8)
    predictions = labels.copy()
    predictions[[1, 3, 6]] += 1
    return images, maps, boxes, labels, predictions % 8


def test_attention_figure_texts_do_not_overlap():
    images, maps, boxes, labels, predictions = _eight_rows()
    fig = plots.attention_figure(images, maps, boxes, labels, LONG_NAMES, 8, predictions,
                                 title="builtin: attention maps and part boxes")
    assert _overlaps(fig) == []
    texts = [t for t, _ in _drawn_texts(fig)]
    assert "builtin: attention maps and part boxes" in texts
    assert {"image, part boxes", "attention 0", "attention 1"} <= set(texts)
    assert f"\u2713 {LONG_NAMES[0]}" in texts
    assert f"\u2717 predicted {LONG_NAMES[2]}\ntruth {LONG_NAMES[1]}" in texts
    # The part numbers of coinciding boxes are both readable (not drawn one over another).
    assert sorted(t for t in texts if t in ("0", "1")).count("0") >= 8


def test_part_crops_figure_marks_coinciding_parts_and_texts_do_not_overlap():
    images, maps, boxes, labels, _ = _eight_rows()
    crops = np.random.default_rng(0).uniform(0, 255, (8, 2, 32, 32, 3))
    rows = [f"unseen: {name}" for name in LONG_NAMES]
    fig = plots.part_crops_figure(crops, 8, rows, boxes)
    assert _overlaps(fig) == []
    texts = [t for t, _ in _drawn_texts(fig)]
    coincide = [t for t in texts if "coincide" in t]
    assert len(coincide) == 2 and coincide[0].endswith("\nparts 0 and 1 coincide (IoU 0.82)")
    assert f"unseen: {LONG_NAMES[0]}" in texts  # the whole name: never cut mid-word


def test_seen_unseen_legend_names_the_calibration_constant():
    fig = plots.seen_unseen_figure([0.8, 0.4, 0.0], [0.0, 0.5, 0.6], "test",
                                   marker=(0.4, 0.5), marker_label="calibration constant "
                                   "0.1234\n(chosen on validation)")
    assert _overlaps(fig) == []
    assert "calibration constant 0.1234\n(chosen on validation)" in [
        t for t, _ in _drawn_texts(fig)]


def test_short_name_and_box_overlap():
    assert plots.short_name("a" * 10, 8) == "a" * 7 + "\u2026"
    assert plots.short_name("abc", 8) == "abc"
    assert plots.box_overlap((0.5, 0.5, 0.2), (0.5, 0.5, 0.2)) == pytest.approx(1.0)
    assert plots.box_overlap((0.2, 0.2, 0.2), (0.8, 0.8, 0.2)) == 0.0
    assert plots.box_overlap((0.5, 0.5, 0.2), (0.55, 0.5, 0.2)) == pytest.approx(0.6)
