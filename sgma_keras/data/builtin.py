"""The built-in dataset: procedurally drawn "creatures" whose class lives in small parts.

Why: the demo and the tests need a zero-shot dataset that ships with the code, and one on
which SGMA's premise holds: the class is decided by small, localisable parts, so a model
that does not look closely does worse.

Each image shows one creature on a cluttered background:

- a **body**: a rotated ellipse, 30-45% of the image side, with a random colour and a
  random texture (noise, bands or blotches). Distractor: carries no class information.
- a **head** attached to the front end of the body and a **tail** at the end of a short
  stalk behind it. Each part is 8-12% of the image side (`part_size`) and is described by
  three attributes: shape (head: circle/square/triangle, tail: fan/diamond/bar), colour
  (red/green/blue/yellow, jittered per image) and pattern (solid, striped: dark bands
  along the body axis, spotted: a dark central dot). The head and tail shape sets differ
  and the tail sits on a stalk, so the two parts cannot be confused under rotation.
- a **background** of smooth colour noise plus muted clutter (lines, blobs, rings) that
  may be as large as the parts.

Fine patterns (`pattern_period` N > 0, a multiple of 4): "striped" is a grating of ink
lines and "spotted" a lattice of square dots, both of period N pixels and both inking a
quarter of the part. Average-pooled by N (a model's global view with `global_size` =
`image_size / N`) the two are one tint; only the full-resolution image, which the part
crops sample, tells them apart: the detail that needs zooming in. `colour_attribute=False`
makes the part colours a per-image nuisance instead of class attributes (12 dimensions).

Fine-grained classes (`species_per_genus` S > 1): a genus is a combination of the part
shapes and colours (what a coarse view sees); its S species differ only in the head and
tail patterns, like bird species told apart by their markings. The unseen classes then
come in pairs of one genus, so telling unseen classes apart needs the patterns.

Position, orientation (any angle, or head up within `max_tilt` degrees), body size and
part size are random per image. At a 112-pixel input a part is 9-13 pixels wide: its colour, shape and the bands/dot of its
pattern remain visible (the bands are 1/6 and the dot 0.44 of the part side).

A class is a combination of the six part attributes (3*4*3 head values x 3*4*3 tail
values = 1,296 possible classes); classes are drawn at random (seeded) so that any two
differ in at least two attributes. The class semantic vector is binary, one dimension per
attribute value like CUB's (20 dimensions: 6 ones). The unseen classes are chosen so that
every attribute value appears among the seen classes (preferring splits where each value
appears in several seen classes): unseen classes are new combinations of known values,
so zero-shot transfer is possible.

Ground truth: the centre of each part (`part_locs`, P=2: head, tail) and its axis-aligned
box (`part_boxes`), relative to the image side.

On disk (`root`): `images/<class>/<index>.jpg` and `builtin_manifest.json` holding the
generation parameters, classes, attributes, labels and part locations. Generation is
deterministic given the parameters (each image from its own seeded generator). An
existing complete dataset with the same parameters is reused; the manifest is written
last and atomically (temp file + `os.replace`), so a killed run leaves no manifest and is
regenerated from scratch. The check and the generation hold an OS lock on
`root/.builtin.lock`: of two processes that need the same dataset at once (two runs
sharing `data.builtin.cache_dir`), one generates it and the other waits, then reuses it.
"""

import colorsys
import io
import itertools
import json
import logging
import math
import os
import shutil

import numpy as np
from PIL import Image
from PIL import ImageDraw

from sgma_keras.atomic_io import exclusive_lock, write_bytes_atomic
from sgma_keras.data.zsl_data import DataError
from sgma_keras.data.zsl_data import ImageSplit
from sgma_keras.data.zsl_data import ZeroShotData
from sgma_keras.data.zsl_data import split_images_per_class
from sgma_keras.data.zsl_data import split_seen_classes
from sgma_keras.data.zsl_data import train_val_splits

FORMAT_VERSION = 2  # 2: fine "solid" parts are the pooled tint of the others
MANIFEST = "builtin_manifest.json"
_INCOMPLETE = ".builtin_incomplete"
_LOCK = ".builtin.lock"

logger = logging.getLogger("sgma_keras.data")

HEAD_SHAPES = ("circle", "square", "triangle")
TAIL_SHAPES = ("fan", "diamond", "bar")
COLOURS = {
    "red": (215, 35, 35),
    "green": (40, 175, 50),
    "blue": (35, 75, 225),
    "yellow": (235, 205, 30),
}
PATTERNS = ("solid", "striped", "spotted")
ATTRIBUTE_GROUPS = (
    ("head_shape", HEAD_SHAPES),
    ("head_colour", tuple(COLOURS)),
    ("head_pattern", PATTERNS),
    ("tail_shape", TAIL_SHAPES),
    ("tail_colour", tuple(COLOURS)),
    ("tail_pattern", PATTERNS),
)
ATTRIBUTE_NAMES = tuple(f"{g}:{v}" for g, values in ATTRIBUTE_GROUPS for v in values)
PART_NAMES = ("head", "tail")
_PATTERN_INK = (25, 25, 25)


# --- Classes -------------------------------------------------------------------------


def sample_classes(num_classes, seed=0, min_distance=2, colour_attribute=True,
                   species_per_genus=1):
    """Seeded class definitions: (num_classes, 6) attribute value indices, one column
    per `ATTRIBUTE_GROUPS` entry.

    Any two classes differ in at least `min_distance` attributes. Classes are picked one
    at a time, preferring combinations of the values used least so far, so every value
    is used about equally often (and can appear among the seen classes).

    With `colour_attribute=False` the part colours are not class attributes: their
    columns hold -1 and every image draws its part colours at random (a nuisance), so
    a class is told only by part shapes and patterns.

    With `species_per_genus` S > 1, `num_classes / S` genera (part shapes and colours,
    any two differing in `min_distance` of them) each get S species with distinct
    (head pattern, tail pattern) pairs; class `c` belongs to genus `c // S`.
    """
    if species_per_genus > 1:
        return _sample_species(num_classes, seed, min_distance, colour_attribute,
                               species_per_genus)
    groups = [g for g, (name, _) in enumerate(ATTRIBUTE_GROUPS)
              if colour_attribute or not name.endswith("_colour")]
    sizes = [len(ATTRIBUTE_GROUPS[g][1]) for g in groups]
    combos = np.array(list(itertools.product(*[range(s) for s in sizes])))
    rng = np.random.default_rng([seed, 1])
    tiebreak = rng.uniform(0, 1e-3, len(combos))
    counts = [np.zeros(s) for s in sizes]
    valid = np.ones(len(combos), dtype=bool)
    chosen = []
    while len(chosen) < num_classes:
        if not valid.any():
            raise DataError(
                f"builtin: cannot draw {num_classes} classes that differ in "
                f"{min_distance} attributes (at most {len(chosen)})."
            )
        rarity = sum(1.0 / (1.0 + counts[i][combos[:, i]]) for i in range(len(sizes)))
        pick = combos[np.argmax(np.where(valid, rarity + tiebreak, -np.inf))]
        chosen.append(pick)
        for i, value in enumerate(pick):
            counts[i][value] += 1
        valid &= np.sum(combos != pick, axis=1) >= min_distance
    attrs = np.full((num_classes, len(ATTRIBUTE_GROUPS)), -1, dtype=np.int64)
    attrs[:, groups] = np.stack(chosen)
    return attrs


_PATTERN_GROUPS = (2, 5)


def _sample_species(num_classes, seed, min_distance, colour_attribute, per_genus):
    pairs = len(PATTERNS) ** 2
    if num_classes % per_genus or not 1 < per_genus <= pairs:
        raise DataError(
            f"builtin: species_per_genus must be in [2, {pairs}] and divide num_classes "
            f"({num_classes}); got {per_genus}."
        )
    coarse = sample_classes(num_classes // per_genus, seed, min_distance, colour_attribute)
    rng = np.random.default_rng([seed, 4])
    used = np.zeros((len(_PATTERN_GROUPS), len(PATTERNS)))
    attrs = []
    for genus in coarse:
        # Pattern pairs of the least used values first, so every value is common.
        order = rng.permutation(pairs)
        combos = np.array([divmod(int(i), len(PATTERNS)) for i in order])
        rarity = used[0][combos[:, 0]] + used[1][combos[:, 1]]
        for head, tail in combos[np.argsort(rarity, kind="stable")[:per_genus]]:
            species = genus.copy()
            species[list(_PATTERN_GROUPS)] = head, tail
            used[0][head] += 1
            used[1][tail] += 1
            attrs.append(species)
    return np.stack(attrs)


def _class_groups(class_attrs):
    """The attribute groups that define the classes (the columns not -1)."""
    return [g for g in range(len(ATTRIBUTE_GROUPS)) if np.all(np.asarray(class_attrs)[:, g] >= 0)]


def attribute_names(class_attrs):
    """Names of the semantic dimensions of `class_semantics(class_attrs)`."""
    return [f"{ATTRIBUTE_GROUPS[g][0]}:{v}" for g in _class_groups(class_attrs)
            for v in ATTRIBUTE_GROUPS[g][1]]


def class_semantics(class_attrs):
    """Binary (C, D) attribute matrix: one dimension per value of each class-defining
    attribute group (D = 20 with colours, 12 without)."""
    class_attrs = np.asarray(class_attrs)
    groups = _class_groups(class_attrs)
    sizes = [len(ATTRIBUTE_GROUPS[g][1]) for g in groups]
    offsets = np.cumsum([0] + sizes)[:-1]
    semantics = np.zeros((len(class_attrs), sum(sizes)), np.float32)
    for c, attrs in enumerate(class_attrs):
        semantics[c, offsets + attrs[groups]] = 1.0
    return semantics


def class_name(index, attrs):
    values = [v[a] if a >= 0 else None for (_, v), a in zip(ATTRIBUTE_GROUPS, attrs)]
    head = "-".join(x for x in [values[1], values[2], values[0]] if x)
    tail = "-".join(x for x in [values[4], values[5], values[3]] if x)
    return f"{index:02d}.{head}_head.{tail}_tail"


def choose_unseen(class_attrs, num_unseen, seed=0, tries=200, species_per_genus=1):
    """Seeded unseen classes such that every attribute value appears among the seen
    classes; of `tries` random draws keeps the one whose rarest value is most common.

    With `species_per_genus` S > 1 the unseen classes are pairs of species of one genus
    (`num_unseen / 2` genera), each genus keeping S - 2 seen species.
    """
    num_classes = len(class_attrs)
    if not 0 < num_unseen < num_classes:
        raise DataError(
            f"builtin: num_unseen must be in [1, {num_classes - 1}]; got {num_unseen}."
        )
    per_genus = species_per_genus
    if per_genus > 1 and (num_unseen % 2 or per_genus < 3
                          or num_unseen // 2 > num_classes // per_genus):
        raise DataError(
            f"builtin: with species_per_genus={per_genus}, num_unseen ({num_unseen}) must "
            f"be even, at most twice the {num_classes // per_genus} genera, and "
            "species_per_genus at least 3 (each genus keeps a seen species)."
        )
    semantics = class_semantics(class_attrs)
    rng = np.random.default_rng([seed, 2])

    def draw():
        if per_genus == 1:
            return rng.choice(num_classes, size=num_unseen, replace=False)
        genera = rng.choice(num_classes // per_genus, size=num_unseen // 2, replace=False)
        return np.concatenate(
            [g * per_genus + rng.choice(per_genus, size=2, replace=False) for g in genera]
        )

    best, best_score = None, 0
    for _ in range(tries):
        unseen = draw()
        seen = np.setdiff1d(np.arange(num_classes), unseen)
        score = semantics[seen].sum(axis=0).min()
        if score > best_score:
            best, best_score = np.sort(unseen), score
    if best is None:
        raise DataError(
            f"builtin: no split of {num_classes} classes with {num_unseen} unseen keeps "
            "every attribute value among the seen classes; use more classes or fewer "
            "unseen."
        )
    return best


# --- Drawing -------------------------------------------------------------------------


def _hsv(h, s, v):
    return tuple(int(255 * x) for x in colorsys.hsv_to_rgb(h, s, v))


def _rotate(points, angle, centre):
    c, s = math.cos(angle), math.sin(angle)
    pts = np.asarray(points, dtype=np.float64)
    rotated = np.stack(
        [pts[:, 0] * c - pts[:, 1] * s, pts[:, 0] * s + pts[:, 1] * c], axis=1
    )
    return rotated + np.asarray(centre)


def _ellipse(a, b, n=40):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([a * np.cos(t), b * np.sin(t)], axis=1)


def _part_outline(shape, side):
    """Polygon of a part of side `side`, centred at 0, pointing outward along +x."""
    h = side / 2
    if shape == "circle":
        return _ellipse(h, h, 24)
    if shape == "square":
        q = 0.85 * h
        return np.array([[-q, -q], [q, -q], [q, q], [-q, q]])
    if shape == "triangle":
        return np.array([[1.1 * h, 0], [-0.9 * h, -h], [-0.9 * h, h]])
    if shape == "fan":  # A sector opening outward, apex towards the body.
        t = np.linspace(-0.62, 0.62, 12)
        arc = np.stack([-h + 2 * h * np.cos(t), 2 * h * np.sin(t)], axis=1)
        return np.concatenate([[[-h, 0]], arc])
    if shape == "diamond":
        return np.array([[1.1 * h, 0], [0, -0.8 * h], [-1.1 * h, 0], [0, 0.8 * h]])
    if shape == "bar":  # A T-end across the stalk.
        return np.array([[-0.4 * h, -h], [0.4 * h, -h], [0.4 * h, h], [-0.4 * h, h]])
    raise ValueError(shape)


def _paste_polygon(image, polygon, fill, decorate=None):
    """Pastes a filled polygon; `decorate(draw, offset)` may draw inside it."""
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 1
    w, h = x1 - x0, y1 - y0
    local = [tuple(p) for p in (polygon - [x0, y0])]
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).polygon(local, fill=255)
    patch = fill if isinstance(fill, Image.Image) else Image.new("RGB", (w, h), fill)
    if decorate is not None:
        decorate(ImageDraw.Draw(patch), np.array([x0, y0]))
    image.paste(patch, (int(x0), int(y0)), mask)


def _smooth_noise(rng, width, height, colour, octaves):
    """RGB image: `colour` plus smooth noise, one (cells, amplitude) per octave.

    Octaves are summed at the finest cell grid and upsampled once: one uint8 resize.
    """
    cells = max(c for c, _ in octaves)
    field = np.asarray(colour, np.float32) + np.zeros((cells, cells, 3), np.float32)
    for n, amplitude in octaves:
        noise = rng.uniform(-amplitude, amplitude, (n, n, 3)).astype(np.float32)
        if n != cells:  # PIL resizes float images one channel at a time.
            channels = [Image.fromarray(noise[..., i], "F") for i in range(3)]
            noise = np.stack(
                [np.asarray(c.resize((cells, cells), Image.BICUBIC)) for c in channels],
                axis=-1,
            )
        field += noise
    small = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8), "RGB")
    return small.resize((width, height), Image.BICUBIC)


def _background(rng, size):
    base = _hsv(rng.uniform(), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.8))
    image = _smooth_noise(rng, size, size, base, ((4, 45), (12, 18)))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(4, 10)):  # Muted clutter, some of it part-sized.
        colour = _hsv(rng.uniform(), rng.uniform(0.05, 0.4), rng.uniform(0.2, 0.9))
        x, y = rng.uniform(0, size, 2)
        r = size * rng.uniform(0.03, 0.12)
        kind = rng.integers(3)
        if kind == 0:
            angle = rng.uniform(0, 2 * np.pi)
            end = (x + 2 * r * math.cos(angle), y + 2 * r * math.sin(angle))
            draw.line([(x, y), end], fill=colour, width=max(1, int(size * 0.015)))
        elif kind == 1:
            draw.ellipse([x - r, y - 0.6 * r, x + r, y + 0.6 * r], fill=colour)
        else:
            draw.ellipse(
                [x - r, y - r, x + r, y + r],
                outline=colour,
                width=max(1, int(size * 0.01)),
            )
    return image


def _body_texture(rng, colour, w, h):
    texture = _smooth_noise(rng, w, h, colour, ((6, 25),))
    kind = rng.integers(3)
    if kind == 0:
        return texture
    draw = ImageDraw.Draw(texture)
    shade = tuple(int(c * rng.uniform(0.5, 0.75)) for c in colour)
    if kind == 1:  # Bands at a random angle and period: pattern-like distractors.
        period = max(w, h) * rng.uniform(0.12, 0.25)
        angle = rng.uniform(0, np.pi)
        d = np.array([math.cos(angle), math.sin(angle)])
        n = np.array([-d[1], d[0]])
        centre = np.array([w / 2, h / 2])
        reach = max(w, h)
        for k in np.arange(-reach, reach, period):
            a = centre + k * n
            quad = [a - reach * d, a + reach * d, a + reach * d + 0.4 * period * n]
            quad.append(a - reach * d + 0.4 * period * n)
            draw.polygon([tuple(p) for p in quad], fill=shade)
    else:  # Blotches.
        for _ in range(rng.integers(3, 8)):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            r = max(w, h) * rng.uniform(0.05, 0.12)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=shade)
    return texture


def _pattern_decorator(pattern, polygon_centre, side, axis):
    """Draws the part's pattern in patch coordinates."""
    if pattern == "solid":
        return None
    axis = np.asarray(axis)
    across = np.array([-axis[1], axis[0]])

    def decorate(draw, offset):
        c = np.asarray(polygon_centre) - offset
        if pattern == "spotted":
            r = 0.22 * side
            draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=_PATTERN_INK)
            return
        # Striped: dark bands along the outward axis, 1/6 of the side wide.
        width, reach = side / 6, side
        for k in (-2, 0, 2):
            a = c + k * width * across
            quad = [
                a - reach * axis - width / 2 * across,
                a + reach * axis - width / 2 * across,
                a + reach * axis + width / 2 * across,
                a - reach * axis + width / 2 * across,
            ]
            draw.polygon([tuple(p) for p in quad], fill=_PATTERN_INK)

    return decorate


def _fine_pattern_patch(polygon, centre, axis, colour, pattern, period):
    """The part's fill with a fine pattern of `period` pixels.

    Fine patterns are drawn per pixel in the part's own frame: "striped" is a grating
    of ink lines across the outward axis, "spotted" a lattice of square dots; both put
    ink on a quarter of the part (exactly, for a period that is a multiple of 4 and an
    axis-aligned part), and "solid" is the flat mix of 3/4 colour and 1/4 ink. An image
    average-pooled by `period` shows one tint for all three; only the full-resolution
    image tells them apart (see the module docstring).
    """
    # The patch box of `_paste_polygon`.
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 1
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    offset = np.stack([xs - centre[0], ys - centre[1]], axis=-1)
    along = offset @ np.asarray(axis) / period
    across = offset @ np.array([-axis[1], axis[0]]) / period
    patch = np.empty(offset.shape[:2] + (3,), np.uint8)
    if pattern == "solid":
        patch[:] = np.round(0.75 * np.asarray(colour) + 0.25 * np.asarray(_PATTERN_INK))
        return Image.fromarray(patch, "RGB")
    if pattern == "striped":
        ink = (across % 1.0) < 0.25
    else:  # Square dots of side period / 2.
        ink = (np.abs((along % 1.0) - 0.5) < 0.25) & (np.abs((across % 1.0) - 0.5) < 0.25)
    patch[:] = colour
    patch[ink] = _PATTERN_INK
    return Image.fromarray(patch, "RGB")


def render_image(class_attrs, rng, size, part_size=(0.08, 0.12), pattern_period=0,
                 max_tilt=180):
    """Draws one image of the class `class_attrs` (6 attribute value indices).

    `pattern_period` > 0 draws the fine patterns of that period in pixels (see
    `_fine_pattern_patch`); 0 the coarse ones, scaled with the part. `max_tilt` < 180
    keeps the head within that many degrees of straight up (a canonical pose, as birds
    in CUB mostly stand head up); 180 draws any orientation.

    Returns:
        (image: PIL RGB, part_locs: (2, 2) centres (x, y) and part_boxes: (2, 4) boxes
        (x0, y0, x1, y1), both relative to `size`; rows: head, tail).
    """
    # Attributes that do not define the class (-1) are drawn per image.
    values = [v[a] if a >= 0 else v[rng.integers(len(v))]
              for (_, v), a in zip(ATTRIBUTE_GROUPS, class_attrs)]
    head_shape, head_colour, head_pattern, tail_shape, tail_colour, tail_pattern = values
    image = _background(rng, size)

    if max_tilt >= 180:
        angle = rng.uniform(0, 2 * np.pi)
    else:  # Image y points down: straight up is -pi/2.
        angle = -np.pi / 2 + np.radians(rng.uniform(-max_tilt, max_tilt))
    axis = np.array([math.cos(angle), math.sin(angle)])
    length = size * rng.uniform(0.30, 0.45)
    width = length * rng.uniform(0.45, 0.65)
    head_side = size * rng.uniform(*part_size)
    tail_side = head_side * rng.uniform(0.85, 1.15)
    tail_side = float(np.clip(tail_side, part_size[0] * size, part_size[1] * size))
    stalk = size * rng.uniform(0.03, 0.06)

    # Geometry relative to the body centre; the creature is then placed where it fits.
    body = _rotate(_ellipse(length / 2, width / 2), angle, (0, 0))
    head_centre = axis * (length / 2 + 0.3 * head_side)
    tail_centre = -axis * (length / 2 + stalk + 0.5 * tail_side)
    head = _rotate(_part_outline(head_shape, head_side), angle, head_centre)
    tail = _rotate(_part_outline(tail_shape, tail_side), angle + np.pi, tail_centre)
    everything = np.concatenate([body, head, tail])
    lo, hi = everything.min(axis=0), everything.max(axis=0)
    margin = 0.02 * size
    if np.any(hi - lo > size - 2 * margin):
        raise DataError(f"builtin: creature does not fit a {size}-pixel image.")
    centre = rng.uniform(margin - lo, size - margin - hi)
    body, head, tail = body + centre, head + centre, tail + centre
    head_centre, tail_centre = head_centre + centre, tail_centre + centre

    body_colour = _hsv(rng.uniform(), rng.uniform(0.15, 0.6), rng.uniform(0.35, 0.85))
    bx0, by0 = np.floor(body.min(axis=0)).astype(int) - 1
    bx1, by1 = np.ceil(body.max(axis=0)).astype(int) + 1
    texture = _body_texture(rng, body_colour, bx1 - bx0, by1 - by0)
    stalk_start = centre - axis * (length / 2 - 0.05 * length)
    stalk_end = tail_centre + axis * 0.3 * tail_side
    ImageDraw.Draw(image).line(
        [tuple(stalk_start), tuple(stalk_end)],
        fill=tuple(int(c * 0.6) for c in body_colour),
        width=max(1, int(round(0.015 * size))),
    )
    _paste_polygon(image, body, texture)

    locs, boxes = [], []
    for polygon, part_centre, side, colour, pattern, direction in (
        (head, head_centre, head_side, head_colour, head_pattern, axis),
        (tail, tail_centre, tail_side, tail_colour, tail_pattern, -axis),
    ):
        jitter = rng.uniform(0.85, 1.1) * np.asarray(COLOURS[colour])
        fill = tuple(int(c) for c in np.clip(jitter + rng.integers(-12, 13, 3), 0, 255))
        if pattern_period:
            patch = _fine_pattern_patch(polygon, part_centre, direction, fill, pattern,
                                        pattern_period)
            _paste_polygon(image, polygon, patch)
        else:
            decorate = _pattern_decorator(pattern, part_centre, side, direction)
            _paste_polygon(image, polygon, fill, decorate)
        locs.append(part_centre / size)
        boxes.append(np.concatenate([polygon.min(axis=0), polygon.max(axis=0)]) / size)
    return image, np.array(locs, np.float32), np.clip(np.array(boxes, np.float32), 0, 1)


# --- Dataset on disk -----------------------------------------------------------------


def _generation_params(num_classes, num_images, image_size, seed, part_size, quality,
                       pattern_period, colour_attribute, max_tilt=180, species_per_genus=1):
    params = {
        "version": FORMAT_VERSION,
        "num_classes": int(num_classes),
        "num_images": int(num_images),
        "image_size": int(image_size),
        "seed": int(seed),
        "part_size": [float(p) for p in part_size],
        "jpeg_quality": int(quality),
    }
    if pattern_period:  # Absent when 0: datasets made before the option stay valid.
        params["pattern_period"] = int(pattern_period)
    if not colour_attribute:
        params["colour_attribute"] = False
    if max_tilt < 180:
        params["max_tilt"] = float(max_tilt)
    if species_per_genus > 1:
        params["species_per_genus"] = int(species_per_genus)
    return params


def _read_manifest(root):
    path = os.path.join(root, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _is_complete(root, manifest, params):
    if manifest is None or manifest.get("params") != params:
        return False
    return all(os.path.isfile(os.path.join(root, f)) for f in manifest["files"])


def _generate(root, params):
    """Writes all images and, last, the manifest."""
    images_dir = os.path.join(root, "images")
    manifest_path = os.path.join(root, MANIFEST)
    marker = os.path.join(root, _INCOMPLETE)
    ours = os.path.exists(manifest_path) or os.path.exists(marker)
    if os.path.exists(images_dir) and not ours:
        raise DataError(
            f"{images_dir}: exists but was not written by the built-in generator "
            f"(no {MANIFEST}); refusing to overwrite it. Use an empty root."
        )
    # The marker goes first: from here on a killed run is recognised as ours.
    open(marker, "w").close()
    if os.path.exists(manifest_path):
        os.remove(manifest_path)
    if os.path.exists(images_dir):  # Stale or partial images.
        shutil.rmtree(images_dir)
    os.makedirs(images_dir)

    class_attrs = sample_classes(
        params["num_classes"], params["seed"],
        colour_attribute=params.get("colour_attribute", True),
        species_per_genus=params.get("species_per_genus", 1),
    )
    names = [class_name(i, a) for i, a in enumerate(class_attrs)]
    for name in names:
        os.makedirs(os.path.join(images_dir, name), exist_ok=True)
    rng = np.random.default_rng([params["seed"], 0])
    labels = rng.permutation(np.arange(params["num_images"]) % params["num_classes"])
    files, locs, boxes = [], [], []
    for i, label in enumerate(labels):
        image, part_locs, part_boxes = render_image(
            class_attrs[label],
            np.random.default_rng([params["seed"], 3, i]),
            params["image_size"],
            params["part_size"],
            params.get("pattern_period", 0),
            params.get("max_tilt", 180),
        )
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=params["jpeg_quality"])
        rel = f"images/{names[label]}/{i:05d}.jpg"
        write_bytes_atomic(os.path.join(root, rel), buffer.getvalue(), fsync=False)
        files.append(rel)
        locs.append(part_locs.tolist())
        boxes.append(part_boxes.tolist())
    manifest = {
        "format": "sgma-keras builtin dataset",
        "params": params,
        "class_names": names,
        "class_attributes": class_attrs.tolist(),
        "attribute_names": attribute_names(class_attrs),
        "part_names": list(PART_NAMES),
        "files": files,
        "labels": labels.tolist(),
        "part_locs": locs,
        "part_boxes": boxes,
    }
    write_bytes_atomic(manifest_path, json.dumps(manifest).encode("utf-8"))
    os.remove(marker)
    return manifest


def make_builtin_dataset(
    root,
    num_classes=24,
    num_images=2000,
    image_size=448,
    num_unseen=6,
    seed=0,
    val_fraction=0.2,
    test_seen_fraction=0.2,
    part_size=(0.08, 0.12),
    jpeg_quality=90,
    pattern_period=0,
    colour_attribute=True,
    max_tilt=180,
    species_per_genus=1,
):
    """Generates (or reuses) the built-in dataset under `root`; see the module docstring.

    Args:
        root: output folder (created). Holds `images/` and `builtin_manifest.json`.
        num_classes: number of classes (default 24).
        num_images: total images, spread evenly over the classes.
        image_size: side of the square images, pixels.
        num_unseen: number of unseen classes (default 6, 25%).
        seed: seeds classes, images and splits.
        val_fraction: fraction of the seen classes held out as the `val` split
            (with `species_per_genus` > 1, whole species pairs of one genus, like the
            unseen classes: `choose_validation_classes`).
        test_seen_fraction: fraction of each seen class's images in `test_seen`.
        part_size: (min, max) part side as a fraction of the image side.
        jpeg_quality: JPEG quality of the written images.
        pattern_period: 0 for coarse part patterns (scaled with the part), or the
            period in pixels of fine ones (visible only at full resolution).
        colour_attribute: part colours are class attributes (default); False makes
            them a per-image nuisance (classes told by part shapes and patterns).
        max_tilt: the head points within this many degrees of straight up; 180 (the
            default) draws any orientation.
        species_per_genus: 1 (default): classes drawn freely; S > 1: genera of S
            species that differ only in their part patterns (see the module docstring).

    Returns:
        ZeroShotData with `part_names` ("head", "tail"), `part_locs` and `part_boxes`.
    """
    if num_images < 2 * num_classes:
        raise DataError(
            f"builtin: num_images ({num_images}) must be at least twice num_classes "
            f"({num_classes})."
        )
    if pattern_period < 0 or pattern_period % 4:
        raise DataError(
            "builtin: pattern_period must be 0 (coarse patterns) or a multiple of 4 pixels "
            f"(stripes and dots then hold the same share of ink); got {pattern_period}."
        )
    if not 0 < part_size[0] <= part_size[1] < 0.3:
        raise DataError(
            f"builtin: part_size must be 0 < min <= max < 0.3; got {part_size}."
        )
    if not 0 <= max_tilt <= 180:
        raise DataError(f"builtin: max_tilt must be in [0, 180] degrees; got {max_tilt}.")
    root = os.path.abspath(root)
    os.makedirs(root, exist_ok=True)
    params = _generation_params(
        num_classes, num_images, image_size, seed, part_size, jpeg_quality, pattern_period,
        colour_attribute, max_tilt, species_per_genus,
    )
    manifest = _read_manifest(root)
    marker = os.path.join(root, _INCOMPLETE)
    if not _is_complete(root, manifest, params) or os.path.exists(marker):
        def waiting():
            logger.info("Waiting for another process that generates the built-in dataset "
                        "in %s", root)

        with exclusive_lock(os.path.join(root, _LOCK), waiting):
            # Read again under the lock: the process we waited for may have made it.
            manifest = _read_manifest(root)
            if not _is_complete(root, manifest, params):
                manifest = _generate(root, params)
            elif os.path.exists(marker):
                os.remove(marker)  # Killed after the manifest.
    return _to_zero_shot_data(
        root, manifest, num_unseen, val_fraction, test_seen_fraction
    )


def load_builtin_dataset(root, num_unseen=6, val_fraction=0.2, test_seen_fraction=0.2):
    """Loads an existing built-in dataset from `root` without generating anything.

    The class split and image splits use the seed the dataset was generated with.
    """
    manifest = _read_manifest(root)
    if manifest is None or not _is_complete(root, manifest, manifest.get("params")):
        raise DataError(
            f"{os.path.join(root, MANIFEST)}: no complete built-in dataset here; create "
            "one with make_builtin_dataset."
        )
    return _to_zero_shot_data(
        os.path.abspath(root), manifest, num_unseen, val_fraction, test_seen_fraction
    )


def choose_validation_classes(seen, val_fraction, seed=0, species_per_genus=1):
    """The seen classes held out for validation, drawn the way the unseen ones are.

    With `species_per_genus` S > 1 the unseen classes are species pairs of one genus
    whose genus keeps S - 2 seen species, so telling them apart needs the fine
    patterns; validation classes drawn at random would mostly differ by genus, which
    the global branch alone tells apart, and say nothing about the parts. So they are
    pairs too: `round(val_fraction * len(seen) / 2)` pairs (at least one), each from
    a genus whose S species are all seen, leaving S - 2 of them to train on.
    With S = 1: `split_seen_classes`.
    """
    seen = np.unique(np.asarray(seen, dtype=np.int64))
    if species_per_genus <= 1:
        return split_seen_classes(seen, val_fraction, seed)[1]
    genera, counts = np.unique(seen // species_per_genus, return_counts=True)
    whole = genera[counts == species_per_genus]
    pairs = int(max(1, round(val_fraction * len(seen) / 2)))
    if not len(whole):
        raise DataError(
            f"builtin: no genus has all its {species_per_genus} species seen, so no "
            "validation pair can be drawn like the unseen pairs; use fewer num_unseen.")
    rng = np.random.default_rng([seed, 3])
    chosen = rng.choice(whole, size=min(pairs, len(whole)), replace=False)
    return np.sort(np.concatenate(
        [g * species_per_genus + rng.choice(species_per_genus, size=2, replace=False)
         for g in chosen]))


def _to_zero_shot_data(root, manifest, num_unseen, val_fraction, test_fraction):
    seed = manifest["params"]["seed"]
    class_attrs = np.asarray(manifest["class_attributes"])
    unseen = choose_unseen(class_attrs, num_unseen, seed,
                           species_per_genus=manifest["params"].get("species_per_genus", 1))
    seen = np.setdiff1d(np.arange(len(class_attrs)), unseen)
    everything = ImageSplit(
        paths=[os.path.join(root, f) for f in manifest["files"]],
        labels=manifest["labels"],
        part_locs=manifest["part_locs"],
        part_boxes=manifest["part_boxes"],
    )
    is_seen = np.isin(everything.labels, seen)
    held = split_images_per_class(everything.labels, test_fraction, seed)
    splits = {
        "trainval": everything.select(is_seen & ~held),
        "test_seen": everything.select(is_seen & held),
        "test_unseen": everything.select(~is_seen),
    }
    val_classes = choose_validation_classes(
        seen, val_fraction, seed, manifest["params"].get("species_per_genus", 1))
    splits["train"], splits["val"] = train_val_splits(splits["trainval"], val_classes)
    return ZeroShotData(
        name="builtin",
        class_names=manifest["class_names"],
        semantics=class_semantics(class_attrs),
        seen_classes=seen,
        unseen_classes=unseen,
        splits=splits,
        part_names=manifest["part_names"],
        source=os.path.join(root, MANIFEST),
    ).validate()
