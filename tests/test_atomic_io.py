import errno
import json
import os

import numpy as np
import pytest

from sgma_keras import atomic_io


def _crash(*_):
    raise RuntimeError("crash mid-write")


def test_write_json_atomic_converts_numpy_and_non_finite(tmp_path):
    path = tmp_path / "new" / "results.json"  # missing folders are made
    obj = {"acc": np.float32(0.5), "n": np.int64(3), "h": float("nan"), 7: np.arange(2),
           "ok": np.bool_(True)}
    atomic_io.write_json_atomic(path, obj)
    assert json.loads(path.read_text()) == {"acc": 0.5, "n": 3, "h": None, "7": [0, 1], "ok": True}
    assert os.listdir(path.parent) == ["results.json"]  # no temp file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "results.json"
    atomic_io.write_json_atomic(path, {"n": 3})
    with pytest.raises(TypeError):  # unserialisable: fails before any file is made
        atomic_io.write_json_atomic(path, {"bad": object()})
    for fsync in (True, False):
        with pytest.raises(RuntimeError):
            atomic_io.atomic_write(path, lambda f: (f.write("{trunc"), _crash()), fsync=fsync)
    assert json.loads(path.read_text()) == {"n": 3}
    assert os.listdir(tmp_path) == ["results.json"]


def test_atomic_save_hands_the_writer_a_path_with_the_target_name(tmp_path):
    path = tmp_path / "ckpt" / "best.weights.h5"
    seen = []

    def save(tmp):
        seen.append(tmp)
        with open(tmp, "wb") as handle:
            handle.write(b"weights")

    atomic_io.atomic_save(path, save)
    assert path.read_bytes() == b"weights"
    # Same folder (so the rename is atomic), same ending (model.save checks it).
    assert os.path.dirname(seen[0]) == str(path.parent)
    assert seen[0].endswith("best.weights.h5") and seen[0] != str(path)

    def half_save(tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"half")
        _crash()

    with pytest.raises(RuntimeError):
        atomic_io.atomic_save(path, half_save)
    assert path.read_bytes() == b"weights"
    assert os.listdir(path.parent) == ["best.weights.h5"]


def test_text_and_bytes_round_trip(tmp_path):
    atomic_io.write_text_atomic(tmp_path / "a.md", "| x |\r\n| é |\n")
    assert (tmp_path / "a.md").read_bytes() == "| x |\r\n| é |\n".encode("utf-8")
    atomic_io.write_bytes_atomic(tmp_path / "b.jpg", b"\xff\xd8", fsync=False)
    assert (tmp_path / "b.jpg").read_bytes() == b"\xff\xd8"


def test_an_unwritable_folder_names_the_file(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="results.json"):
        atomic_io.write_json_atomic(blocker / "results.json", {"a": 1})
    with pytest.raises(OSError, match="best.keras"):
        atomic_io.atomic_save(blocker / "best.keras", lambda tmp: None)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EDQUOT])
def test_a_write_failure_inside_the_writer_names_the_target(tmp_path, code):
    # zipfile, csv and h5py raise the system's error without a file name.
    path = tmp_path / "best.keras"
    path.write_bytes(b"previous")

    def fail(handle_or_path):
        raise OSError(code, f"{os.strerror(code)}\n(HDF5 details, several lines)")

    for write in (lambda: atomic_io.atomic_save(path, fail),
                  lambda: atomic_io.atomic_write(path, fail, binary=True)):
        with pytest.raises(OSError) as caught:
            write()
        assert caught.value.filename == str(path)
        assert caught.value.errno == code
        assert caught.value.strerror == os.strerror(code)  # one line
        assert path.read_bytes() == b"previous"
        assert os.listdir(tmp_path) == ["best.keras"]


def test_a_failed_rename_names_the_target(tmp_path, monkeypatch):
    path = tmp_path / "results.json"

    def read_only(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), src)  # names the temp file

    monkeypatch.setattr(atomic_io.os, "replace", read_only)
    with pytest.raises(OSError, match="Read-only file system") as caught:
        atomic_io.write_json_atomic(path, {"a": 1})
    assert caught.value.filename == str(path)
    assert os.listdir(tmp_path) == []


def test_exclusive_lock_serialises_two_processes(tmp_path):
    import subprocess
    import sys

    lock = tmp_path / ".lock"
    code = ("import sys, time; from sgma_keras.atomic_io import exclusive_lock\n"
            f"with exclusive_lock({str(lock)!r}):\n"
            "    print('locked', flush=True); sys.stdin.readline()\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=root, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=dict(os.environ, PYTHONPATH=root))
    try:
        assert holder.stdout.readline().strip() == "locked"
        waited = []
        order = []

        def release():
            waited.append(True)
            holder.stdin.write("\n")
            holder.stdin.flush()
            holder.wait()
            order.append("released")

        with atomic_io.exclusive_lock(lock, waiting=release):
            order.append("ours")
        assert waited == [True] and order == ["released", "ours"]
    finally:
        holder.kill()
        holder.wait()
