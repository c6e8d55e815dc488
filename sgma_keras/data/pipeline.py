"""tf.data input pipeline: image files -> (images, labels) batches for `model.fit`.

Used on every Keras backend (Keras converts tf.data batches for JAX and PyTorch), so the
map functions use TensorFlow ops only, never `keras.ops`.

Per element: read the file, decode (JPEG/PNG/GIF/BMP, 3 channels; JPEGs exactly as PIL
does), then either resize to the square input (evaluation) or, when training, a random
resized crop, horizontal flip and colour jitter. Outputs float32 images in [0, 255] of shape (B, S, S, 3) and int32
labels (B,). Model-specific preprocessing (e.g. VGG mean subtraction) belongs to the
model.

Bad files are found before the first batch (`image_check`: missing, empty, non-image
or truncated files), and reported by name (bad_images="error") or dropped with a logged
count ("skip"; then files that still fail to decode while reading are dropped too).

Randomness uses stateless TF ops fed by a seeded `tf.data.Dataset.random` stream, so
with `deterministic=True` two pipelines built with the same seed (and the same TF global
seed, set by `keras.utils.set_random_seed`) yield identical batches, in order, while each
epoch still gets a new shuffle and new augmentations.
"""

import time

import numpy as np
import tensorflow as tf

from sgma_keras.data.image_check import handle_bad_images
from sgma_keras.data.zsl_data import DataError

AUTOTUNE = tf.data.AUTOTUNE

# Training augmentation: modest, so that small parts stay in view.
DEFAULT_AUGMENT = {
    "flip": True,  # Random horizontal flip.
    "crop_area": (0.7, 1.0),  # Random resized crop: fraction of the image area kept.
    "crop_aspect": (3 / 4, 4 / 3),  # ... and its aspect ratio range.
    "brightness": 0.1,  # Max brightness shift, fraction of the full range.
    "contrast": 0.15,  # Contrast factor in [1 - c, 1 + c].
    "saturation": 0.15,  # Saturation factor in [1 - s, 1 + s].
    # Max hue shift, fraction of the hue circle. Off: colour is a class attribute in
    # the zero-shot datasets (CUB, the built-in one), and hue shifts are slow.
    "hue": 0.0,
}
# Shuffling decoded images (cache=True) holds the buffer in memory: keep it bounded.
_CACHED_SHUFFLE_BUFFER = 2048


def resolve_augment(augment):
    """`None`/`True` -> the defaults; `False` -> no augmentation; a dict overrides some
    defaults (unknown keys are errors). Returns a full dict or None."""
    if augment is None or augment is True:
        return dict(DEFAULT_AUGMENT)
    if augment is False:
        return None
    if not isinstance(augment, dict):
        raise DataError(f"augment must be a dict, None or bool; got {augment!r}.")
    unknown = set(augment) - set(DEFAULT_AUGMENT)
    if unknown:
        raise DataError(
            f"augment: unknown keys {sorted(unknown)}; expected some of "
            f"{sorted(DEFAULT_AUGMENT)}."
        )
    return {**DEFAULT_AUGMENT, **augment}


def decode_image_bytes(contents):
    """Encoded image bytes -> uint8 RGB (H, W, 3), JPEGs exactly as PIL decodes them.

    TensorFlow's default JPEG decoder (the fast integer DCT) differs from PIL's
    `Image.open(...).convert("RGB")` by a few grey levels per pixel;
    `dct_method="INTEGER_ACCURATE"` is bit-identical to it (tests/test_predict.py),
    so a model scores the same pixels as PIL-based code does. Other formats go
    through `tf.io.decode_image` (PNG, GIF, BMP are lossless: no such choice).
    """
    image = tf.cond(
        tf.io.is_jpeg(contents),
        lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(contents, channels=3, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image


def _decode(path):
    return decode_image_bytes(tf.io.read_file(path))


def resize_image(image, size):
    """An image (H, W, 3) or a batch (B, H, W, 3) -> float32 (..., size, size, 3), as
    evaluation resizes (the SavedModel and the predict API use it too, so they score
    the same pixels). Antialiased only when shrinking by more than 1.5x (where plain
    bilinear sampling would alias); it is several times slower."""
    shape = tf.shape(image)[-3:-1]  # (H, W) of an image or a batch
    shrink = tf.cast(tf.reduce_max(shape), tf.float32) > 1.5 * size
    return tf.cond(
        shrink,
        lambda: tf.image.resize(image, [size, size], antialias=True),
        lambda: tf.image.resize(image, [size, size]),
    )


_LUMA = (0.299, 0.587, 0.114)


def _colour_jitter(image, seed, aug):
    """Saturation, contrast and brightness jitter of a float [0, 255] image.

    All three are affine in RGB, so they are applied as one 3x3 matrix and a bias (two
    passes over the image instead of an HSV round trip and several elementwise ops):
    saturation mixes each pixel with its luma, contrast scales about the mean luma (as
    tf.image does), brightness adds a shift.
    """
    u = tf.random.stateless_uniform([3], seed, minval=-1.0, maxval=1.0)
    sat = 1.0 + aug["saturation"] * u[0]
    con = 1.0 + aug["contrast"] * u[1]
    luma = tf.constant(_LUMA)
    # Row-vector pixels: x @ (sat * I + (1 - sat) * luma 1^T) mixes x with its luma.
    matrix = con * (sat * tf.eye(3) + (1.0 - sat) * luma[:, None] * tf.ones([1, 3]))
    mean = tf.reduce_mean(tf.tensordot(image[::4, ::4], luma, 1))  # Subsampled: cheap.
    bias = (1.0 - con) * mean + 255.0 * aug["brightness"] * u[2]
    flat = tf.matmul(tf.reshape(image, [-1, 3]), matrix)
    return tf.reshape(flat, tf.shape(image)) + bias


def _augment(image, seed, size, aug):
    """Random resized crop, flip and colour jitter of a uint8 image -> float [0, 255]."""
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seeds[0],
        min_object_covered=0.0,
        aspect_ratio_range=aug["crop_aspect"],
        area_range=aug["crop_area"],
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, crop_size)
    if aug["flip"]:  # On the uint8 crop: a quarter of the bytes of the float image.
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    image = resize_image(image, size)
    if aug["brightness"] or aug["contrast"] or aug["saturation"]:
        image = _colour_jitter(image, seeds[2], aug)
    if aug["hue"]:
        image = 255.0 * tf.image.stateless_random_hue(image / 255.0, aug["hue"], seeds[3])
    return tf.clip_by_value(image, 0.0, 255.0)


def make_dataset(
    split,
    image_size,
    batch_size,
    training,
    augment=None,
    shuffle=None,
    cache=False,
    deterministic=False,
    seed=0,
    drop_remainder=None,
    bad_images="error",
    repeat=False,
    check="header",
    shard=None,
):
    """Builds the input pipeline of one `ImageSplit`.

    Args:
        split: the ImageSplit (paths + labels).
        image_size: side S of the square output images.
        batch_size: images per batch.
        training: enables augmentation and, by default, shuffling and dropping the last
            partial batch.
        augment: training augmentation: None/True for `DEFAULT_AUGMENT`, False for none,
            or a dict overriding some of its keys. Ignored when not training.
        shuffle: shuffle the images each epoch; default: `training`.
        cache: False; True to cache decoded images in memory; a path to cache them in
            files there. Cached images are resized to S first (training crops are then
            taken from the S x S image).
        deterministic: seeded shuffle and augmentation, and ordered parallel maps (see
            the module docstring). Without shuffling the order is always kept.
        seed: seed of the shuffle and augmentation streams.
        drop_remainder: drop the last partial batch; default: `training`.
        bad_images: "error" raises a DataError naming missing/unreadable files before any
            batch is made; "skip" drops them and logs their count.
        repeat: repeat forever (use `steps_per_epoch` with `fit`).
        check: how files are checked up front: "none", "exists", "header" (default:
            signature and end marker, a few bytes per file) or "decode" (full PIL
            decode, slow). See `image_check`.
        shard: (index, count): this process's part of a pipeline that `count`
            processes read together (`sgma_keras.multi_process`). Every process orders
            the file names and draws the augmentation seeds alike (seeded with `seed`
            whatever `deterministic` says), cuts them into global batches of
            `batch_size` and keeps its slice [index * b, (index + 1) * b) of each,
            b = batch_size / count; only those images are read and decoded. So the
            processes' batches together are the global batch one process would make,
            with the same augmentations. With `cache`, each process caches and
            shuffles every count-th image instead (its own images every epoch; the
            order then differs from one process's). Needs `drop_remainder` (equal
            steps in every process) and drops no image while reading (a file that
            fails to decode stops the run, as `bad_images="error"` does).

    Returns:
        tf.data.Dataset of (float32 images (B, S, S, 3) in [0, 255], int32 labels (B,)).
    """
    if int(image_size) <= 0 or int(batch_size) <= 0:
        raise DataError(
            f"image_size and batch_size must be positive; got {image_size}, {batch_size}."
        )
    if len(split) == 0:
        raise DataError("make_dataset: the split is empty; expected images.")
    keep = np.asarray(handle_bad_images(split.paths, bad_images, check), dtype=bool)
    if not keep.any():
        raise DataError("make_dataset: every image of the split was skipped as bad.")
    split = split.select(keep) if not keep.all() else split
    shuffle = training if shuffle is None else shuffle
    drop_remainder = training if drop_remainder is None else drop_remainder
    aug = resolve_augment(augment) if training else None
    if drop_remainder and len(split) < batch_size:
        raise DataError(
            f"make_dataset: {len(split)} images is fewer than batch_size {batch_size} "
            "with drop_remainder=True: no batch would be made."
        )
    index, count = shard or (0, 1)
    if count > 1 and (batch_size % count or not drop_remainder):
        raise DataError(
            f"make_dataset: {count} processes share batches of {batch_size} images: the "
            "batch size must be a multiple of the process count, with drop_remainder."
        )
    local_batch = int(batch_size) // count
    size = int(image_size)
    # Every process of a sharded pipeline must shuffle and draw seeds alike.
    op_seed = seed if deterministic or count > 1 else None
    # Unshuffled pipelines always keep the order, so that predictions line up with
    # `split.labels` and `split.paths`.
    ordered = deterministic or not shuffle

    cached = cache is not False
    parallel = dict(num_parallel_calls=AUTOTUNE, deterministic=ordered)

    def decode_for_cache(path, label):
        # Decoded and resized once; later epochs read uint8 S x S images.
        return tf.cast(tf.round(resize_image(_decode(path), size)), tf.uint8), label

    def prepare(x, label):
        image = tf.cast(x, tf.float32) if cached else resize_image(_decode(x), size)
        return image, label

    def prepare_augmented(element, seed_pair):
        x, label = element
        return _augment(x if cached else _decode(x), seed_pair, size, aug), label

    ds = tf.data.Dataset.from_tensor_slices(
        (np.asarray(split.paths), split.labels.astype(np.int32))
    )
    if cached and count > 1:
        ds = ds.shard(count, index)  # before decoding: each process caches its images
    if cached:
        ds = ds.map(decode_for_cache, **parallel)
        ds = ds.cache("" if cache is True else str(cache))
        buffer = min(-(-len(split) // count), _CACHED_SHUFFLE_BUFFER)
    else:
        buffer = len(split)  # Paths only: decoding happens after the shuffle.
    if shuffle:
        ds = ds.shuffle(buffer, seed=op_seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if aug is not None:
        # One stateless seed pair per element; new pairs every epoch.
        seeds = tf.data.Dataset.random(seed=op_seed, rerandomize_each_iteration=True)
        seeds = seeds.batch(2, drop_remainder=True)
        ds = tf.data.Dataset.zip((ds, seeds))
    if count > 1 and not cached:
        # File names and seeds are cheap: cut them into global batches, keep this
        # process's slice, and decode only that.
        begin, end = index * local_batch, (index + 1) * local_batch
        ds = ds.batch(int(batch_size), drop_remainder=True)
        ds = ds.map(lambda *e: tf.nest.map_structure(lambda t: t[begin:end], e)).unbatch()
    ds = ds.map(prepare if aug is None else prepare_augmented, **parallel)
    if bad_images == "skip" and count == 1:
        # Safety net for damage the up-front check cannot see (e.g. corrupt data
        # inside a file with a valid header and end marker): drop, with a TF warning.
        ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(local_batch, drop_remainder=drop_remainder, **parallel)
    options = tf.data.Options()
    options.deterministic = ordered
    return ds.with_options(options).prefetch(AUTOTUNE)


def measure_pipeline(
    split, image_size, batch_size, seconds, warmup_seconds=None, **kwargs
):
    """Steady-state images/second of the training pipeline on `split`.

    Builds `make_dataset(..., training=True, repeat=True, **kwargs)`, iterates for a
    warm-up (default: a fifth of `seconds`, at least 2 batches) to fill the buffers and
    let AUTOTUNE settle, then counts images over `seconds`.
    """
    ds = make_dataset(
        split, image_size, batch_size, training=True, repeat=True, **kwargs
    )
    iterator = iter(ds)
    warmup = seconds / 5 if warmup_seconds is None else warmup_seconds
    start, batches = time.perf_counter(), 0
    while batches < 2 or time.perf_counter() - start < warmup:
        next(iterator)
        batches += 1
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images += int(next(iterator)[0].shape[0])
    return images / (time.perf_counter() - start)
