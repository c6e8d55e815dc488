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
    # 3 rows x (1 + 2 parts) columns of 2.2 in at 100 dpi, plus room for the colour bar
    # (0.8 in) and the two-line titles (0.9 in a row).
    assert _png_size(path) == (740, 930)
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
    assert _png_size(path2) == (740, 250)

    # Prediction and truth in the titles, wrapped: long names are not cut off.
    path3 = tmp_path / "attention3.png"
    plots.plot_attention_grid(images, maps, boxes, path3, labels=[0, 2, 1],
                              class_names=["a" * 60, "b", "c"], predictions=[0, 1, 1])
    assert _png_size(path3) == (740, 930)


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
    assert _png_size(path) == (440, 470)  # 2 rows x 2 parts, and the part titles
    assert path.stat().st_size > 10_000
    plots.plot_part_crops(crops, path, max_images=2, row_labels=["unseen: cat", "seen: dog"])
    assert _png_size(path) == (560, 470)  # room for the row labels
    with pytest.raises(ValueError, match="part_images"):
        plots.plot_part_crops(crops[0], tmp_path / "bad.png")
