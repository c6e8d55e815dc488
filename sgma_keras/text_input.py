"""Reading the small text files a user names (configs, class lists): bounded and UTF-8.

A path on the command line may name anything: `/dev/urandom`, `/dev/zero`, a huge log
file, a file saved in Latin-1. `read_text` reads at most `limit` bytes, so an endless or
huge file is refused at once instead of filling memory, and a byte that is not UTF-8 is
reported with its offset and line instead of a decoder traceback.

This module imports nothing heavy (the command lines use it before any framework).
"""

import os

from sgma_keras.errors import UserError

MiB = 2**20


class TextFileError(UserError):
    """A text file that is too large or not UTF-8."""


def _size(limit):
    return f"{limit / MiB:g} MiB" if limit >= MiB else f"{limit} bytes"


def read_text(path, what="file", limit=MiB, error=TextFileError):
    """The UTF-8 text of `path` (a leading byte-order mark dropped).

    Args:
        path: the file.
        what: how to name it in messages ("config file", "classes file").
        limit: the largest size accepted, in bytes.
        error: the exception type raised (called with one message line).

    Raises:
        `error` naming the file when it holds more than `limit` bytes, or the offset
        and line of its first byte that is not UTF-8; OSError when it cannot be read.
    """
    path = os.fspath(path)
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise error(f"{what} {path!r} is larger than {_size(limit)}; expected a text "
                    "file of at most that size.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = data.count(b"\n", 0, bad.start) + 1
        raise error(f"{what} {path!r} is not UTF-8 text: byte 0x{data[bad.start]:02x} at "
                    f"byte offset {bad.start} (line {line}); save it as UTF-8.") from None
    return text[1:] if text.startswith("\ufeff") else text
