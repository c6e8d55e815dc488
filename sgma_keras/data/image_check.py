"""Cheap up-front checks of image files, so bad files are reported by name before training.

TensorFlow's decoders fail deep inside `model.fit` with a message that does not name the
file, so the pipeline checks files first:

- "exists": every path is an existing file.
- "header": also the file starts with a known image signature and, for the formats that
  have one, ends with its end marker (JPEG EOI, PNG IEND, GIF trailer) or is at least as
  long as its header says (BMP, WebP). Reads a few bytes at both ends of each file:
  catches missing, empty, non-image and truncated files.
- "decode": also fully decodes every image with PIL (slow; catches corrupt data
  inside a file too).
"""

import concurrent.futures
import contextlib
import logging
import os
import struct

from sgma_keras.data.zsl_data import DataError

logger = logging.getLogger("sgma_keras.data")

CHECK_MODES = ("none", "exists", "header", "decode")
BAD_IMAGE_POLICIES = ("error", "skip")
_TAIL_BYTES = 4096  # JPEG files may carry a little trailing data after the EOI marker.


def _image_format(head):
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM"):
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def check_image(path, mode="header"):
    """Returns why `path` is not a usable image, or None when it passes `mode`."""
    if mode == "none":
        return None
    if not os.path.isfile(path):
        return "file not found"
    if mode == "exists":
        return None
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read()
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if size == 0:
        return "empty file"
    kind = _image_format(head)
    if kind is None:
        return "not a JPEG/PNG/GIF/BMP/WebP image (unknown file signature)"
    if kind == "jpeg" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if kind == "png" and b"IEND" not in tail[-64:]:
        return "truncated PNG (no IEND chunk)"
    if kind == "gif" and b"\x3b" not in tail[-16:]:
        return "truncated GIF (no trailer)"
    if kind == "bmp" and len(head) >= 6 and struct.unpack("<I", head[2:6])[0] > size:
        return "truncated BMP (shorter than its header says)"
    if kind == "webp" and struct.unpack("<I", head[4:8])[0] + 8 > size:
        return "truncated WebP (shorter than its header says)"
    if mode == "decode":
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.load()
        except Exception as e:  # PIL raises many types for corrupt data.
            return f"cannot be decoded ({type(e).__name__}: {e})"
    return None


def find_bad_images(paths, mode="header", num_threads=8):
    """Checks every path; returns a list of `(path, reason)` for the bad ones."""
    if mode not in CHECK_MODES:
        raise DataError(f"image check mode must be one of {CHECK_MODES}; got {mode!r}.")
    if mode == "none" or not paths:
        return []
    if len(paths) < 64:
        reasons = [check_image(p, mode) for p in paths]
    else:
        with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
            reasons = list(pool.map(lambda p: check_image(p, mode), paths, chunksize=64))
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]


def handle_bad_images(paths, policy="error", mode="header", what="images"):
    """Checks `paths`; returns a boolean keep-mask.

    With policy "error" any bad file raises a DataError naming the first few files, the
    reason and the count; with "skip" bad files are dropped and their count logged.
    """
    if policy not in BAD_IMAGE_POLICIES:
        raise DataError(
            f"bad_images must be one of {BAD_IMAGE_POLICIES}; got {policy!r}."
        )
    bad = find_bad_images(paths, mode)
    keep = [True] * len(paths)
    if not bad:
        return keep
    listing = "\n".join(f"  {p}: {r}" for p, r in bad[:5])
    more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
    if policy == "error":
        raise DataError(
            f"{len(bad)} of {len(paths)} {what} are missing or unreadable (set "
            f"bad_images='skip' to drop them):\n{listing}{more}"
        )
    logger.warning(
        "Skipping %d of %d %s that are missing or unreadable:\n%s%s",
        len(bad),
        len(paths),
        what,
        listing,
        more,
    )
    bad_set = {p for p, _ in bad}
    return [p not in bad_set for p in paths]


def _is_decode_error(error):
    """A TensorFlow decode failure raised while iterating a pipeline (no file named)."""
    text = str(error).lower()
    return type(error).__name__ in ("InvalidArgumentError", "DataLossError", "UnknownError") and (
        "jpeg" in text or "decode" in text or "png" in text or "image" in text)


@contextlib.contextmanager
def naming_bad_images(paths, what="images"):
    """Turns a decode error raised inside the `with` (a tf.data pipeline over `paths`
    being read) into a DataError naming the files that cannot be decoded.

    TensorFlow's decoders do not say which file failed; the files are then decoded
    one by one (`check_image(..., "decode")`) to find it. Other errors pass unchanged.
    """
    try:
        yield
    except Exception as error:
        if not _is_decode_error(error):
            raise
        bad = find_bad_images(list(paths), "decode")
        if not bad:
            raise
        listing = "\n".join(f"  {p}: {r}" for p, r in bad[:5])
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DataError(
            f"{len(bad)} of {len(paths)} {what} cannot be decoded (set data.check_images="
            f"'decode' to find them before training, or bad_images='skip' to drop them):"
            f"\n{listing}{more}"
        ) from None


def iterate_naming_bad_images(dataset, paths, what="images"):
    """Iterates `dataset` (a pipeline over `paths`); a decode error names the files."""
    iterator = iter(dataset)
    while True:
        with naming_bad_images(paths, what):
            try:
                element = next(iterator)
            except StopIteration:
                return
        yield element
