"""evaluate.py / sgma_keras.workflow.evaluation on a tiny model and a tiny on-disk dataset."""

import csv
import json
import os

import numpy as np
import pytest

from sgma_keras.workflow import checkpoints, cli, evaluation
from sgma_keras.data.zsl_data import ImageSplit, ZeroShotData

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_SIZE = 32
NUM_CLASSES = 6
SEEN, UNSEEN = [0, 1, 2, 3], [4, 5]
TRAIN_CLASSES, VAL_CLASSES = [0, 1, 2], [3]
SEM_DIM = 5


def _write_images(folder, labels, rng):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, label in enumerate(labels):
        pixels = rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        pixels[..., label % 3] //= 2  # a little class signal
        path = os.path.join(folder, f"{i:03d}_{label}.png")
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def make_tiny_data(root, semantic_dim=SEM_DIM, num_classes=NUM_CLASSES):
    """6 classes: train 0-2, val 3 (seen), unseen 4-5; batch-4-friendly split sizes."""
    rng = np.random.default_rng(0)
    semantics = rng.normal(size=(num_classes, semantic_dim)).astype("float32")
    semantics /= np.linalg.norm(semantics, axis=1, keepdims=True)
    train_labels = np.repeat(TRAIN_CLASSES, 4)  # 2 per class held out for validation
    val_labels = np.repeat(VAL_CLASSES, 2)
    test_seen_labels = np.repeat(SEEN, 2)
    test_unseen_labels = np.repeat(UNSEEN, 4)
    train = ImageSplit(_write_images(os.path.join(root, "train"), train_labels, rng), train_labels)
    val = ImageSplit(_write_images(os.path.join(root, "val"), val_labels, rng), val_labels)
    locs = rng.uniform(0.1, 0.9, (len(test_unseen_labels), 2, 2)).astype("float32")
    locs[0, 1] = np.nan  # a part that is not visible
    splits = {
        "train": train,
        "val": val,
        "trainval": ImageSplit(train.paths + val.paths, np.concatenate([train_labels, val_labels])),
        "test_seen": ImageSplit(
            _write_images(os.path.join(root, "test_seen"), test_seen_labels, rng), test_seen_labels
        ),
        "test_unseen": ImageSplit(
            _write_images(os.path.join(root, "test_unseen"), test_unseen_labels, rng),
            test_unseen_labels,
            part_locs=locs,
        ),
    }
    return ZeroShotData(
        name="tiny",
        class_names=[f"class {c}" for c in range(num_classes)],
        semantics=semantics,
        seen_classes=SEEN,
        unseen_classes=UNSEEN,
        splits=splits,
        part_names=["head", "tail"],
        source=root,
    ).validate()


def make_tiny_model(semantics, seen_classes=TRAIN_CLASSES):
    from sgma_keras.model import make_sgma

    model = make_sgma(semantics, seen_classes, image_size=IMAGE_SIZE,
                      backbone={"name": "tiny", "weights": None, "tiny_width": 4},
                      cropper={"output_size": 16}, center={"latent_dim": 8})
    model.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    return model


def write_config(path, output_dir, **extra):
    cfg = {
        "name": "tiny",
        "output_dir": str(output_dir),
        "data": {"source": "builtin"},
        "input": {"image_size": IMAGE_SIZE, "batch_size": 4},
        "model": {"backbone": {"name": "tiny", "weights": None, "tiny_width": 4},
                  "cropper": {"output_size": 16}, "center": {"latent_dim": 8}},
        "train": {"val_seen_fraction": 0.5},
        "eval": {"visualize_images": 3, "calibration_points": 5},
    }
    cfg.update(extra)
    with open(path, "w") as handle:
        json.dump(cfg, handle)
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    data = make_tiny_data(str(root / "data"))
    model = make_tiny_model(data.semantics)
    checkpoint = str(root / "run" / "checkpoints" / "best.keras")
    os.makedirs(os.path.dirname(checkpoint))
    model.save(checkpoint)
    config = write_config(root / "config.json", root / "run")
    return {"root": root, "data": data, "checkpoint": checkpoint, "config": config}


@pytest.fixture
def data_seam(monkeypatch):
    """Makes `evaluation.load_data` return the given dataset (or fail if called)."""

    def use(data):
        def load(cfg):
            if data is None:
                raise AssertionError("the dataset must not be loaded")
            return data

        monkeypatch.setattr(evaluation, "load_data", load)

    return use


@pytest.fixture(scope="module")
def cli_run(setup):
    """One full `evaluate.py` run (default checkpoint and results folder)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(evaluation, "load_data", lambda cfg: setup["data"])
    try:
        code = cli.evaluate_main(["--config", setup["config"], "--keras-metrics"])
    finally:
        mp.undo()
    out = os.path.join(os.path.dirname(setup["config"]), "run", "eval")
    with open(os.path.join(out, evaluation.RESULTS_FILE)) as handle:
        results = json.load(handle)
    return code, out, results


def test_cli_writes_results_json(cli_run, setup):
    code, out, results = cli_run
    assert code == 0
    for key in ["zsl_top1", "gzsl_u", "gzsl_s", "gzsl_h", "gzsl_cal_u", "gzsl_cal_s",
                "gzsl_cal_h", "ausuc"]:
        assert 0.0 <= results[key] <= 1.0, key
    assert results["chance_zsl"] == pytest.approx(0.5)
    assert results["num_test_seen_images"] == 8 and results["num_test_unseen_images"] == 8
    assert results["checkpoint"] == os.path.abspath(setup["checkpoint"])
    h = results["gzsl_h"]
    u, s = results["gzsl_u"], results["gzsl_s"]
    assert h == pytest.approx(0.0 if u + s == 0 else 2 * u * s / (u + s))
    # Calibration: chosen on the validation split (train classes vs val classes).
    cal = results["calibration"]
    assert cal["split"] == "validation"
    assert cal["seen_classes"] == TRAIN_CLASSES and cal["unseen_classes"] == VAL_CLASSES
    assert cal["num_images"] == 8  # 2 held-out images x 3 train classes + 2 val images
    assert np.isfinite(cal["gamma"])
    assert cal["val_cal_h"] >= cal["val_h"] - 1e-9  # the chosen constant is no worse
    curve = results["seen_unseen_curve"]
    assert 2 <= len(curve["s"]) == len(curve["u"]) == len(curve["gamma"]) <= 5
    assert all(0.0 <= v <= 1.0 for v in curve["s"] + curve["u"])
    assert set(results["files"]) >= {"per_class_csv", "curve_png", "attention_png", "parts_png"}
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # no temp files left


def test_gzsl_seen_set_is_the_classes_the_model_was_trained_on(cli_run, setup, caplog):
    _, _, results = cli_run
    assert results["trained_classes"] == results["gzsl_seen_classes"] == TRAIN_CLASSES
    assert results["gzsl_unseen_classes"] == VAL_CLASSES + UNSEEN
    assert results["split_seen_classes"] == SEEN
    # A model fit on all seen classes (the protocol's): the split's seen set, no warning.
    model = make_tiny_model(setup["data"].semantics, SEEN)
    cfg = __import__("sgma_keras.config", fromlist=["load_config"]).load_config(setup["config"])
    with caplog.at_level("WARNING", logger="sgma_keras"):
        full = evaluation.evaluate_model(model, setup["data"], cfg,
                                         str(setup["root"] / "eval_all_seen"), calibration=0.5)
    assert full["trained_classes"] == full["gzsl_seen_classes"] == SEEN
    assert full["gzsl_unseen_classes"] == UNSEEN
    assert "GZSL counts as seen" not in caplog.text


def test_results_report_each_head_and_the_fused_score(cli_run):
    _, _, results = cli_run
    heads = results["heads"]
    assert set(heads) == {"embedding", "center", "fused"}
    for figures in heads.values():
        assert set(figures) == {"zsl_top1", "gzsl_u", "gzsl_s", "gzsl_h"}
    assert heads["fused"]["zsl_top1"] == pytest.approx(results["zsl_top1"])
    assert heads["fused"]["gzsl_h"] == pytest.approx(results["gzsl_h"])


def test_cli_numbers_match_keras_metrics(cli_run):
    """model.evaluate with compiled ZSLAccuracy/GZSLAccuracy == the NumPy path."""
    _, _, results = cli_run
    keras_metrics = results["keras_metrics"]
    for key, value in keras_metrics.items():
        assert value == pytest.approx(results[key], abs=1e-6), key


def test_cli_writes_csv_and_pngs(cli_run):
    _, out, results = cli_run
    with open(os.path.join(out, evaluation.PER_CLASS_CSV)) as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["class_id", "class_name", "split", "num_images", "zsl", "gzsl",
                       "gzsl_calibrated"]
    assert [int(r[0]) for r in rows[1:]] == SEEN + UNSEEN
    by_class = {int(r[0]): r for r in rows[1:]}
    assert by_class[0][1] == "class 0" and by_class[0][4] == ""  # no ZSL for seen classes
    # The model was fit on the train classes: GZSL counts the validation class as unseen.
    assert [by_class[c][2] for c in SEEN + UNSEEN] == ["seen"] * 3 + ["unseen"] * 3
    assert [int(by_class[c][3]) for c in SEEN + UNSEEN] == [2] * 4 + [4] * 2  # test images
    for row in rows[1:]:
        assert all(0.0 <= float(v) <= 1.0 for v in row[4:] if v)
    zsl = np.mean([float(by_class[c][4]) for c in UNSEEN])
    assert zsl == pytest.approx(results["zsl_top1"], abs=1e-5)
    for name in [evaluation.CURVE_PNG, evaluation.ATTENTION_PNG, evaluation.PARTS_PNG]:
        with open(os.path.join(out, name), "rb") as handle:
            assert handle.read(8) == PNG_SIGNATURE, name
        assert os.path.getsize(os.path.join(out, name)) > 1000


def test_cli_part_localisation(cli_run):
    _, _, results = cli_run
    loc = results["part_localisation"]
    assert loc["num_images"] == 8  # test_unseen carries part_locs, test_seen does not
    assert loc["gt_part_names"] == ["head", "tail"]
    assert loc["gt_visible_counts"] == [8, 7]
    assert len(loc["part_hit_rate"]) == 2  # K = 2 predicted parts
    assert all(0.0 <= r <= 1.0 for r in loc["part_hit_rate"])


def test_missing_checkpoint(setup, data_seam, tmp_path, capsys):
    data_seam(None)
    missing = str(tmp_path / "nope.keras")
    code = cli.evaluate_main(["--config", setup["config"], "--checkpoint", missing,
                            "--output", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert "Checkpoint not found" in err and missing in err


def test_checkpoint_not_matching_image_size(setup, data_seam, tmp_path, capsys):
    data_seam(None)  # found before the dataset is loaded
    code = cli.evaluate_main(["--config", setup["config"], "--set", "input.image_size=64",
                            "--output", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert setup["checkpoint"] in err
    assert "image size" in err and "64" in err


def test_checkpoint_not_matching_classes(setup, data_seam, tmp_path, capsys):
    other = make_tiny_data(str(tmp_path / "data7"), num_classes=7)
    data_seam(other)
    code = cli.evaluate_main(["--config", setup["config"], "--output", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert "number of classes" in err and "6" in err and "7" in err


def test_semantic_matrix_of_wrong_width(setup, data_seam, tmp_path, capsys):
    data_seam(make_tiny_data(str(tmp_path / "wide"), semantic_dim=SEM_DIM + 2))
    code = cli.evaluate_main(["--config", setup["config"], "--output", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert "semantic width" in err and f"{SEM_DIM}-d" in err and f"{SEM_DIM + 2}-d" in err


def test_results_folder_not_writable(setup, data_seam, tmp_path, capsys):
    data_seam(None)  # checked before the data and the model are loaded
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = cli.evaluate_main(["--config", setup["config"], "--output", str(blocker / "eval")])
    assert code == 1
    err = capsys.readouterr().err
    assert "not writable" in err and str(blocker / "eval") in err


def test_not_a_keras_file(setup, data_seam, tmp_path, capsys):
    data_seam(None)
    bogus = tmp_path / "model.weights.h5"
    bogus.write_bytes(b"\x89HDF\r\n\x1a\n" + b"0" * 64)
    code = cli.evaluate_main(["--config", setup["config"], "--checkpoint", str(bogus),
                            "--output", str(tmp_path / "out")])
    assert code == 1
    assert "not a readable .keras model file" in capsys.readouterr().err


def test_model_trained_on_validation_classes_is_not_calibrated(setup):
    """A trainval model cannot calibrate on the val classes: no silent leak."""
    description = {"semantics": setup["data"].semantics, "seen_classes": np.array(SEEN),
                   "image_size": IMAGE_SIZE}
    checkpoints.check_checkpoint_matches(description, None, setup["data"])  # seen: fine
    from sgma_keras.config import load_config

    cfg = load_config(setup["config"], check_paths=False)
    info = evaluation.calibrate_on_validation(None, setup["data"], cfg, seen_classes=SEEN)
    assert info["gamma"] is None and "validation classes" in info["reason"]


def test_visual_indices_spread_over_both_test_splits():
    assert evaluation.visual_indices(8, 8, 3) == ([0, 7], [0])
    assert evaluation.visual_indices(1, 8, 4) == ([0], [0, 4, 7])
    assert evaluation.visual_indices(8, 8, 0) == ([], [])


def test_choices_on_validation_scale_the_heads_and_pick_gamma_cc(setup):
    from sgma_keras.config import load_config
    from sgma_keras.workflow import selection
    from sgma_keras.workflow.split_outputs import collect_predictions
    from sgma_keras.workflow.protocol import validation_protocol

    cfg = load_config(setup["config"])
    model = checkpoints.load_checkpoint(setup["checkpoint"])
    chosen = selection.choose_on_validation(model, setup["data"], cfg)
    assert chosen["unseen_classes"] == VAL_CLASSES  # never the test classes
    pred = collect_predictions(model, validation_protocol(setup["data"], cfg).val, cfg)
    assert chosen["head_scales"] == pytest.approx(
        [selection.head_spread(pred["embedding_scores"]),
         selection.head_spread(pred["center_scores"])])
    tried = chosen["gamma_cc"]["val_zsl_by_gamma_cc"]
    assert [float(g) for g in tried] == list(selection.GAMMA_CC_GRID)
    assert chosen["gamma_cc"]["val_zsl"] == max(tried.values())
    assert np.isfinite(chosen["calibration"]["gamma"])
    # A model fit on the validation classes cannot choose on them.
    with pytest.raises(ValueError, match="validation classes"):
        selection.choose_on_validation(make_tiny_model(setup["data"].semantics, SEEN),
                                       setup["data"], cfg)


def _corrupt_middle(path):
    """Random bytes in the middle third: the signature and end marker stay valid."""
    data = open(path, "rb").read()
    third = len(data) // 3
    noise = np.random.default_rng(0).integers(0, 256, third, dtype=np.uint8).tobytes()
    with open(path, "wb") as handle:
        handle.write(data[:third] + noise + data[2 * third:])


@pytest.mark.parametrize("check,policy", [("decode", "skip"), ("header", "skip"),
                                          ("decode", "error"), ("header", "error")])
def test_evaluation_honours_check_images_and_bad_images(setup, data_seam, tmp_path, capsys,
                                                        check, policy):
    data = make_tiny_data(str(tmp_path / "data"))
    victim = data.splits["test_unseen"].paths[-1]  # among the drawn images
    _corrupt_middle(victim)
    data_seam(data)
    out = tmp_path / "out"
    code = cli.evaluate_main(["--config", setup["config"], "--checkpoint", setup["checkpoint"],
                              "--output", str(out), "--set", f"data.check_images={check}",
                              "--set", f"data.bad_images={policy}"])
    err = capsys.readouterr().err
    if policy == "skip":
        assert code == 0, err
        with open(out / evaluation.RESULTS_FILE) as handle:
            results = json.load(handle)
        assert results["num_test_unseen_images"] == len(data.splits["test_unseen"]) - 1
        assert results["files"]["attention_png"] == evaluation.ATTENTION_PNG
    else:
        assert code == 1
        assert victim in err
        # Advice only about the settings not in force.
        assert ("check_images='decode'" in err) == (check == "header")
        assert "bad_images='skip'" in err
