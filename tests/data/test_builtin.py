import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from sgma_keras.data import builtin
from sgma_keras.data.builtin import make_builtin_dataset
from sgma_keras.data.zsl_data import DataError
from tests.data.conftest import TINY_BUILTIN
from tests.data.helpers import assert_protocol


def _digest(paths):
    h = hashlib.sha1()
    for p in paths:
        h.update(open(p, "rb").read())
    return h.hexdigest()


def test_protocol_and_shapes(builtin_data):
    data = builtin_data
    assert_protocol(data)
    assert data.num_classes == 8 and len(data.unseen_classes) == 2
    assert data.semantics.shape == (8, len(builtin.ATTRIBUTE_NAMES))
    assert data.part_names == ["head", "tail"]
    total = sum(len(data.splits[k]) for k in ("trainval", "test_seen", "test_unseen"))
    assert total == TINY_BUILTIN["num_images"]
    train, val = data.splits["train"], data.splits["val"]
    assert len(train) + len(val) == len(data.splits["trainval"])
    assert not np.intersect1d(train.classes(), val.classes()).size
    with Image.open(data.splits["trainval"].paths[0]) as image:
        assert image.size == (64, 64) and image.format == "JPEG"


def test_every_attribute_value_is_seen(builtin_data):
    sem = builtin_data.semantics
    assert np.all(sem[builtin_data.seen_classes].sum(axis=0) >= 1)
    # Unseen classes are new combinations of known values.
    for u in builtin_data.unseen_classes:
        assert not any(np.array_equal(sem[u], sem[s]) for s in builtin_data.seen_classes)


@pytest.mark.parametrize("num_classes,num_unseen", [(8, 2), (24, 6), (30, 8)])
def test_class_sampling(num_classes, num_unseen):
    attrs = builtin.sample_classes(num_classes, seed=3)
    assert len({tuple(a) for a in attrs}) == num_classes
    for i in range(num_classes):  # Classes differ in at least two attributes.
        assert np.sum(attrs != attrs[i], axis=1)[np.arange(num_classes) != i].min() >= 2
    unseen = builtin.choose_unseen(attrs, num_unseen, seed=3)
    seen = np.setdiff1d(np.arange(num_classes), unseen)
    assert builtin.class_semantics(attrs)[seen].sum(axis=0).min() >= 1


def test_deterministic_by_seed(builtin_root, tmp_path):
    again = make_builtin_dataset(str(tmp_path / "a"), **TINY_BUILTIN)
    first = make_builtin_dataset(builtin_root, **TINY_BUILTIN)
    for key in first.splits:
        a, b = first.splits[key], again.splits[key]
        assert [os.path.relpath(p, builtin_root) for p in a.paths] == [
            os.path.relpath(p, str(tmp_path / "a")) for p in b.paths
        ]
        np.testing.assert_array_equal(a.part_locs, b.part_locs)
    assert _digest(first.splits["trainval"].paths) == _digest(
        again.splits["trainval"].paths
    )
    other = make_builtin_dataset(str(tmp_path / "b"), **{**TINY_BUILTIN, "seed": 1})
    assert other.class_names != first.class_names


def test_part_locs_inside_image_and_on_the_parts():
    attrs = builtin.sample_classes(24, seed=0)
    size = 128
    for i in range(24):
        rng = np.random.default_rng([5, i])
        image, locs, boxes = builtin.render_image(attrs[i], rng, size)
        pixels = np.asarray(image, np.float32)
        assert locs.shape == (2, 2) and boxes.shape == (2, 4)
        assert np.all((locs > 0) & (locs < 1))
        assert np.all(boxes[:, :2] <= locs) and np.all(locs <= boxes[:, 2:])
        for part, colour_attr in ((0, 1), (1, 4)):
            colour = builtin.ATTRIBUTE_GROUPS[colour_attr][1][attrs[i][colour_attr]]
            target = np.asarray(builtin.COLOURS[colour], np.float32)
            x0, y0, x1, y1 = (boxes[part] * size).round().astype(int)
            box = pixels[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3)
            near = np.linalg.norm(box - target, axis=1) < 80
            # The part's colour fills much of its box (patterns are dark ink) ...
            assert near.mean() > 0.1, (i, part, colour, near.mean())
            # ... and its centre is the part's colour or its pattern's ink.
            cx, cy = (locs[part] * size).astype(int)
            centre = pixels[cy, cx]
            assert min(
                np.linalg.norm(centre - target), np.linalg.norm(centre - 25)
            ) < 80, (i, part, centre)


def test_part_size_is_small(builtin_data):
    boxes = builtin_data.splits["trainval"].part_boxes
    sides = np.maximum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])
    assert 0.05 < sides.min() and sides.max() < 0.16


def test_reuses_existing_dataset(builtin_root):
    manifest = os.path.join(builtin_root, builtin.MANIFEST)
    stamp = os.stat(manifest).st_mtime_ns
    first_image = sorted(os.listdir(os.path.join(builtin_root, "images")))[0]
    make_builtin_dataset(builtin_root, **TINY_BUILTIN)
    assert os.stat(manifest).st_mtime_ns == stamp
    assert first_image in os.listdir(os.path.join(builtin_root, "images"))


def test_regenerates_on_new_params_or_partial_run(tmp_path):
    root = str(tmp_path)
    small = {**TINY_BUILTIN, "num_images": 32, "num_classes": 8}
    make_builtin_dataset(root, **small)
    data = make_builtin_dataset(root, **{**small, "image_size": 48})
    with Image.open(data.splits["trainval"].paths[0]) as image:
        assert image.size == (48, 48)
    # A killed run: the marker is there, the manifest is not; nothing is reused.
    os.remove(os.path.join(root, builtin.MANIFEST))
    open(os.path.join(root, ".builtin_incomplete"), "w").close()
    victim = data.splits["trainval"].paths[0]
    with open(victim, "wb") as f:
        f.write(b"half")
    data = make_builtin_dataset(root, **{**small, "image_size": 48})
    with Image.open(victim) as image:
        image.load()
    with open(os.path.join(root, builtin.MANIFEST)) as f:
        assert json.load(f)["params"]["image_size"] == 48
    assert not os.path.exists(os.path.join(root, ".builtin_incomplete"))


def test_refuses_foreign_images_folder(tmp_path):
    os.makedirs(tmp_path / "images")
    with pytest.raises(DataError, match="not written by the built-in generator"):
        make_builtin_dataset(str(tmp_path), **TINY_BUILTIN)


def test_bad_parameters(tmp_path):
    with pytest.raises(DataError, match="num_unseen"):
        make_builtin_dataset(str(tmp_path), **{**TINY_BUILTIN, "num_unseen": 8})
    with pytest.raises(DataError, match="num_images"):
        make_builtin_dataset(str(tmp_path), **{**TINY_BUILTIN, "num_images": 10})


def test_fine_patterns_are_equal_tints_once_pooled():
    """Fine stripes, dots and the solid fill put the same ink on the part: pooled by the
    period they are one tint; at full resolution they differ (flat, 1-D, 2-D)."""
    polygon = np.array([[8.0, 8.0], [56.0, 8.0], [56.0, 56.0], [8.0, 56.0]])
    patches = {
        p: np.asarray(builtin._fine_pattern_patch(polygon, (32.0, 32.0), (1.0, 0.0),
                                                  (200, 40, 40), p, 4), np.float32)
        for p in builtin.PATTERNS
    }
    inner = {p: v[9:49, 9:49, 0] for p, v in patches.items()}  # whole periods
    ink = {p: (v < 100).mean() for p, v in inner.items() if p != "solid"}
    assert ink["striped"] == ink["spotted"] == 0.25
    pooled = {p: v.reshape(10, 4, 10, 4).mean(axis=(1, 3)) for p, v in inner.items()}
    tints = [pooled[p].mean() for p in builtin.PATTERNS]
    assert max(tints) - min(tints) < 2, tints
    assert all(pooled[p].std() < 1 for p in builtin.PATTERNS)  # flat tints
    # Full resolution: solid is flat, stripes are constant along the axis, dots are not.
    assert inner["solid"].std() == 0
    assert inner["striped"].std(axis=1).max() < 1 and inner["spotted"].std(axis=1).max() > 10


def test_colour_as_a_nuisance(tmp_path):
    """colour_attribute=False: classes are shapes and patterns (12 dimensions), and the
    part colours vary between the images of one class."""
    attrs = builtin.sample_classes(12, seed=0, colour_attribute=False)
    assert np.all(attrs[:, [1, 4]] == -1) and np.all(attrs[:, [0, 2, 3, 5]] >= 0)
    assert builtin.class_semantics(attrs).shape == (12, 12)
    assert "colour" not in builtin.class_name(0, attrs[0])
    data = make_builtin_dataset(
        str(tmp_path), num_classes=12, num_images=48, image_size=64, num_unseen=3,
        colour_attribute=False, pattern_period=4, part_size=(0.14, 0.18),
    )
    assert data.semantics.shape == (12, 12)
    manifest = json.load(open(tmp_path / builtin.MANIFEST))
    assert manifest["attribute_names"] == builtin.attribute_names(attrs)
    assert manifest["params"]["colour_attribute"] is False
    assert manifest["params"]["pattern_period"] == 4
    with pytest.raises(DataError, match="pattern_period must be 0 .* or a multiple of 4"):
        make_builtin_dataset(str(tmp_path / "bad"), pattern_period=3)
    colours = set()
    for i in range(8):  # eight images of class 0
        image, locs, _ = builtin.render_image(attrs[0], np.random.default_rng([1, i]), 64,
                                              (0.14, 0.18), 4)
        cx, cy = (locs[0] * 64).astype(int)
        patch = np.asarray(image, np.float32)[cy - 3:cy + 4, cx - 3:cx + 4].reshape(-1, 3)
        colours.add(int(np.argmin([np.linalg.norm(patch.max(0) - c)
                                   for c in builtin.COLOURS.values()])))
    assert len(colours) >= 2


def test_max_tilt_keeps_the_head_up(tmp_path):
    """max_tilt=30: the tail-to-head direction is within 30 degrees of straight up (image
    y grows downwards); the option is recorded in the manifest; out of range is refused."""
    attrs = builtin.sample_classes(6, seed=0)
    for i in range(12):
        _, locs, _ = builtin.render_image(attrs[i % 6], np.random.default_rng([2, i]), 96,
                                          (0.14, 0.18), 0, 30)
        dx, dy = locs[0] - locs[1]
        assert np.degrees(np.arctan2(abs(dx), -dy)) <= 30 + 1e-3, (i, locs)
    make_builtin_dataset(str(tmp_path), num_classes=6, num_images=12, image_size=64,
                         num_unseen=2, max_tilt=30)
    assert json.load(open(tmp_path / builtin.MANIFEST))["params"]["max_tilt"] == 30.0
    with pytest.raises(DataError, match="max_tilt must be in \\[0, 180\\]"):
        make_builtin_dataset(str(tmp_path / "bad"), max_tilt=200)


def test_species_of_a_genus_differ_only_in_patterns(tmp_path):
    """species_per_genus=4: classes come in genera sharing part shapes and colours, the
    species of a genus have distinct pattern pairs, and the unseen classes are pairs of
    species of one genus (a coarse view cannot tell them apart)."""
    attrs = builtin.sample_classes(24, seed=0, species_per_genus=4)
    coarse, patterns = attrs[:, [0, 1, 3, 4]], attrs[:, [2, 5]]
    for genus in range(6):
        members = slice(4 * genus, 4 * genus + 4)
        assert len(np.unique(coarse[members], axis=0)) == 1
        assert len(np.unique(patterns[members], axis=0)) == 4
    assert len(np.unique(coarse, axis=0)) == 6
    assert np.bincount(patterns[:, 0], minlength=3).min() >= 6  # every value common
    unseen = builtin.choose_unseen(attrs, 6, seed=0, species_per_genus=4)
    assert sorted(np.bincount(unseen // 4).tolist())[-3:] == [2, 2, 2]
    data = make_builtin_dataset(str(tmp_path), num_classes=12, num_images=48,
                                image_size=64, num_unseen=4, species_per_genus=3)
    assert np.all(np.bincount(np.asarray(data.unseen_classes) // 3) % 2 == 0)
    assert json.load(open(tmp_path / builtin.MANIFEST))["params"]["species_per_genus"] == 3
    with pytest.raises(DataError, match="species_per_genus must be in \\[2, 9\\] and divide"):
        builtin.sample_classes(10, species_per_genus=4)
    with pytest.raises(DataError, match="num_unseen \\(3\\) must be even"):
        builtin.choose_unseen(attrs, 3, species_per_genus=4)


def test_validation_classes_are_drawn_like_the_unseen_ones(tmp_path):
    """With genera, the validation classes are species pairs of one genus that keeps
    seen species to train on, as the unseen ones are; without, a random draw."""
    attrs = builtin.sample_classes(32, seed=0, species_per_genus=4)
    for seed in range(5):
        unseen = builtin.choose_unseen(attrs, 8, seed=seed, species_per_genus=4)
        seen = np.setdiff1d(np.arange(32), unseen)
        val = builtin.choose_validation_classes(seen, 0.2, seed, species_per_genus=4)
        assert len(val) == 4 and not np.isin(val, unseen).any()  # round(0.2 * 24 / 2) pairs
        genera = val // 4
        assert sorted(np.bincount(genera).tolist())[-2:] == [2, 2]  # two whole pairs
        # ...from genera that keep two seen species to train on, like the unseen pairs'.
        train = np.setdiff1d(seen, val)
        for genus in np.unique(genera):
            assert np.sum(train // 4 == genus) == 2
    random = builtin.choose_validation_classes(np.arange(20), 0.2, 0)
    assert len(random) == 4 and len(np.unique(random // 4)) > 1
    data = make_builtin_dataset(str(tmp_path), num_classes=12, num_images=48, image_size=64,
                                num_unseen=2, species_per_genus=3, val_fraction=0.2)
    val = np.unique(data.splits["val"].labels)
    assert len(val) == 2 and val[0] // 3 == val[1] // 3


# One process generating the dataset (paused after its fifth image until `go` exists),
# or, with go "-", another one needing the same dataset.
_BUILDER = """
import hashlib, logging, os, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from sgma_keras.data import builtin
root, go = sys.argv[1], sys.argv[2]
if go != "-":
    render, count = builtin.render_image, [0]
    def paused(*args, **kwargs):
        count[0] += 1
        if count[0] == 5:
            print("paused", flush=True)
            while not os.path.exists(go):
                time.sleep(0.02)
        return render(*args, **kwargs)
    builtin.render_image = paused
data = builtin.make_builtin_dataset(root, num_classes=8, num_images=48, image_size=48,
                                    num_unseen=2)
paths = [p for split in ("trainval", "test_seen", "test_unseen") for p in data.splits[split].paths]
print("digest", hashlib.sha1(b"".join(open(p, "rb").read() for p in paths)).hexdigest(),
      len(paths), flush=True)
"""


def test_two_processes_that_need_one_dataset_both_get_it(tmp_path):
    import subprocess
    import sys

    root_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root_dir, TF_CPP_MIN_LOG_LEVEL="3")
    root, go = tmp_path / "cache" / "builtin", tmp_path / "go"

    def start(flag):
        return subprocess.Popen([sys.executable, "-c", _BUILDER, str(root), flag], cwd=root_dir,
                                env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)

    def read_until(process, text):
        """Its output up to the line holding `text`, or all of it if it ends first."""
        seen = []
        for line in process.stdout:
            seen.append(line)
            if text in line:
                break
        return "".join(seen)

    first = start(str(go))
    second = None
    try:
        before = read_until(first, "paused")
        assert "paused" in before, before[-3000:]
        second = start("-")
        waited = read_until(second, "Waiting for another process")  # or, unlocked, its end
        go.touch()
        outputs = [before + first.communicate(timeout=300)[0],
                   waited + second.communicate(timeout=300)[0]]
    finally:
        go.touch()
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert "Waiting for another process" in outputs[1]
    digests = [next(line for line in out.splitlines() if line.startswith("digest"))
               for out in outputs]
    assert digests[0] == digests[1] and digests[0].endswith(" 48")
    assert not os.path.exists(root / ".builtin_incomplete")
