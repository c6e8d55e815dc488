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
