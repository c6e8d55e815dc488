"""Cheap up-front checks of image files, so bad files are reported by name before training.

TensorFlow's decoders fail deep inside `model.fit` with a message that does not name the
file, so the pipeline checks files first:

- "exists": every path is an existing file.
- "header": also the file starts with a known image signature and, for the formats that
  have one, ends with its end marker (JPEG EOI, PNG IEND, GIF trailer) or is at least as
  long as its header says (BMP, WebP). Reads a few bytes at both ends of each file:
  catches missing, empty, non-image and truncated files.
- "decode": also fully decodes every image with PIL, and every JPEG once more with
  TensorFlow's decoder (the training pipeline's) while listening to libjpeg's
  warnings: corrupt data inside a file whose header and end marker are valid is
  decoded into garbage by both, with only a "Corrupt JPEG data: ..." warning, which
  Pillow drops and TensorFlow prints without naming the file. Such a file fails the
  check, named, with libjpeg's message (slow: every file is decoded twice).
"""

import concurrent.futures
import contextlib
import logging
import os
import re
import struct
import sys
import tempfile

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


def check_image(path, mode="header", strict=True):
    """Returns why `path` is not a usable image, or None when it passes `mode`.

    `strict=False`: the "decode" check without libjpeg's warnings (`jpeg_warnings`).
    """
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
        if strict and kind == "jpeg":
            return jpeg_warnings([path]).get(path)
    return None


# libjpeg's warnings about corrupt data (its JWRN_* messages); a decoder that goes on
# after one of them returns an image with garbage or blank blocks.
_LIBJPEG_CORRUPT = re.compile(
    r"(?:Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters|"
    r"Inconsistent progression sequence)[^\n]*")


def jpeg_warnings(paths):
    """{path: reason} of the JPEG files whose data is corrupt.

    Each file is decoded by TensorFlow's decoder as the training pipeline decodes it,
    one at a time, while the process's stderr (file descriptor 2, where libjpeg
    writes) goes to a temporary file: a message written during a file's decoding is
    that file's. Anything else written there meanwhile is written to stderr after. A
    file TensorFlow fails to decode is bad too (Pillow decodes some of them). Returns
    {} where stderr cannot be redirected.
    """
    if not paths:
        return {}
    import tensorflow as tf

    found, other = {}, []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable file descriptor 2
        return found
    with tempfile.TemporaryFile() as sink:
        offset = 0
        try:
            os.dup2(sink.fileno(), 2)
            for path in paths:
                failed = None
                try:
                    tf.io.decode_jpeg(tf.io.read_file(path), channels=3,
                                      dct_method="INTEGER_ACCURATE")
                except Exception as error:  # noqa: BLE001 - reported with the file
                    failed = error
                end = os.fstat(sink.fileno()).st_size
                text = os.pread(sink.fileno(), end - offset, offset).decode("utf-8", "replace")
                offset = end
                message = _LIBJPEG_CORRUPT.search(text)
                if failed is not None:  # TensorFlow fails on a file PIL decodes
                    found[path] = f"cannot be decoded by TensorFlow ({_tf_error_text(failed)})"
                elif message:
                    found[path] = (f"cannot be decoded cleanly (libjpeg: "
                                   f"{message.group(0).strip()})")
                rest = _LIBJPEG_CORRUPT.sub("", text).strip()
                if rest and failed is None:
                    other.append(rest)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    if other:
        print("\n".join(other), file=sys.stderr)
    return found


def _tf_error_text(error):
    """A TensorFlow op error's own message, without the op and function names."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]", "", text)
    return f"{type(error).__name__}: {' '.join(text.split())}"


def find_bad_images(paths, mode="header", num_threads=8, strict=True):
    """Checks every path; returns a list of `(path, reason)` for the bad ones.

    `strict=False` leaves out the libjpeg warnings of the "decode" check (decode
    errors only): for a check while pipelines may be decoding other files.
    """
    if mode not in CHECK_MODES:
        raise DataError(f"image check mode must be one of {CHECK_MODES}; got {mode!r}.")
    if mode == "none" or not paths:
        return []
    if len(paths) < 64:
        reasons = [check_image(p, mode, strict=False) for p in paths]
    else:
        with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
            reasons = list(pool.map(lambda p: check_image(p, mode, strict=False), paths,
                                    chunksize=64))
    if mode == "decode" and strict:
        # One at a time after the threaded check: a warning must be told to its file.
        jpegs = [p for p, r in zip(paths, reasons) if r is None and _is_jpeg(p)]
        warned = jpeg_warnings(jpegs)
        reasons = [warned.get(p, r) for p, r in zip(paths, reasons)]
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]


def _is_jpeg(path):
    try:
        with open(path, "rb") as f:
            return _image_format(f.read(16)) == "jpeg"
    except OSError:
        return False


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


class UndecodableImages(DataError):
    """Files of a pipeline that fail to decode while it is read; `bad`: [(path, reason)]."""

    def __init__(self, message, bad):
        super().__init__(message)
        self.bad = bad


def _advice(check, policy):
    """What to set so that the files are found or dropped: only settings not in force."""
    options = []
    if check != "decode":
        options.append("set data.check_images='decode' to find them before any batch")
    if policy != "skip":
        options.append("data.bad_images='skip' to drop them")
    return f" ({', or '.join(options)})" if options else ""


@contextlib.contextmanager
def naming_bad_images(paths, what="images", check=None, policy=None):
    """Turns a decode error raised inside the `with` (a tf.data pipeline over `paths`
    being read) into an `UndecodableImages` error naming the files that cannot be
    decoded.

    TensorFlow's decoders do not say which file failed; the files are then decoded
    one by one (`check_image(..., "decode")`) to find it. Other errors pass unchanged.
    `check` and `policy`, the `data.check_images` and `data.bad_images` in force, keep
    them out of the advice.
    """
    try:
        yield
    except Exception as error:
        if not _is_decode_error(error):
            raise
        # Decode errors only: the pipeline's threads may still be decoding other files.
        bad = find_bad_images(list(paths), "decode", strict=False)
        if not bad:
            raise
        listing = "\n".join(f"  {p}: {r}" for p, r in bad[:5])
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise UndecodableImages(
            f"{len(bad)} of {len(paths)} {what} cannot be decoded{_advice(check, policy)}:"
            f"\n{listing}{more}", bad
        ) from None


def iterate_naming_bad_images(dataset, paths, what="images", check=None, policy=None):
    """Iterates `dataset` (a pipeline over `paths`); a decode error names the files."""
    iterator = iter(dataset)
    while True:
        with naming_bad_images(paths, what, check, policy):
            try:
                element = next(iterator)
            except StopIteration:
                return
        yield element
