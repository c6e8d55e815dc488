"""`samples.py` / `sgma-samples`: a few test images per unseen class and the `--classes`
CSV of their descriptions, in the form predict.py reads (the model's semantic rows)."""

import json
import os

import numpy as np

from sgma_keras.config import load_config
from sgma_keras.data import load_dataset
from sgma_keras.workflow import cli
from sgma_keras.workflow.predictor import list_images, read_classes_file
from sgma_keras.workflow.samples import write_samples

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = {"data.builtin.num_images": 48, "data.builtin.num_classes": 8,
        "data.builtin.num_unseen": 2, "data.builtin.image_size": 32}


def _overrides(tmp_path):
    items = {**TINY, "data.builtin.cache_dir": str(tmp_path / "data"),
             "output_dir": str(tmp_path / "run")}
    return [f"{k}={json.dumps(v)}" for k, v in items.items()]


def test_samples_are_unseen_images_and_their_classes_csv(tmp_path):
    cfg = load_config(os.path.join(ROOT, "configs", "demo.json"), _overrides(tmp_path))
    samples = write_samples(cfg, tmp_path / "out", per_class=2)
    data = load_dataset(cfg["data"])
    unseen = [data.class_names[c] for c in data.unseen_classes]
    assert samples.class_names == unseen
    assert samples.data_folder == data.folder and os.path.isdir(samples.data_folder)
    assert os.path.isfile(os.path.join(samples.data_folder, "builtin_manifest.json"))
    # Two images of each unseen class, in a folder named after it.
    found = list_images(samples.images)
    assert sorted(found) == sorted(samples.files) and len(found) == 2 * len(unseen)
    assert sorted({os.path.basename(os.path.dirname(f)) for f in found}) == sorted(unseen)
    # The CSV is what predict --classes reads: the model's semantic rows, same order.
    names, vectors = read_classes_file(samples.classes_file, data.semantic_dim)
    assert names == unseen
    np.testing.assert_allclose(vectors, data.semantics[data.unseen_classes], atol=1e-7)
    header = open(samples.classes_file).readline().strip().split(",")
    assert header[0] == "name" and header[1] == "head_shape:circle" and len(header) == 21


def test_samples_command_prints_the_next_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--config", "demo", "--output", "first"]
    for item in _overrides(tmp_path):
        argv += ["--set", item]
    monkeypatch.setattr("sys.argv", ["samples.py"])
    assert cli.samples_main(argv) == 0
    out = capsys.readouterr().out
    assert "first/images" in out and "first/classes.csv" in out
    assert "Dataset builtin: " + str(tmp_path / "data") in out
    command = out.strip().splitlines()[-1].split()
    assert command[:2] == ["python", "predict.py"]
    assert command[command.index("--model") + 1] == os.path.join("run", "checkpoints",
                                                                "final.keras")
    assert "--replace-classes" in command  # the file's classes are the model's own
    monkeypatch.setattr("sys.argv", ["/venv/bin/sgma-samples"])
    assert cli.samples_main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].split()[0] == "sgma-predict"


def test_samples_command_rejects_bad_arguments_before_any_work(tmp_path, capsys):
    assert cli.samples_main(["--config", "demo", "--per-class", "0"]) == 2
    assert "--per-class must be >= 1" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    argv = ["--config", "demo", "--output", str(tmp_path / "file")]
    for item in _overrides(tmp_path):
        argv += ["--set", item]
    assert cli.samples_main(argv) == 1
    assert "is a file; expected a folder" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # stopped before the dataset was made
