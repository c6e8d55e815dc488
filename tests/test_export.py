"""export.py / sgma_keras.workflow.export: SavedModel of a tiny model, checked from a fresh
TensorFlow-only process and with saved_model_cli."""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from sgma_keras.workflow import build, cli, export
from tests.test_evaluation import IMAGE_SIZE, TRAIN_CLASSES, make_tiny_model, write_config

NUM_CLASSES, SEM_DIM, NEW_CLASSES = 6, 5, 9
BATCH_SIZES = (2, 5)

# Runs in a fresh interpreter that imports TensorFlow only (not keras, not
# sgma_keras): loads each SavedModel, feeds uint8 batches, saves the outputs.
VERIFY = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    def numpy(tensor):  # strings as str, so np.load needs no pickle
        value = tensor.numpy()
        return np.char.decode(value.astype(bytes), "utf-8") if value.dtype == object else value

    jobs = json.loads(sys.argv[1])
    images = np.load(jobs["images"])
    report = {}
    for name, path in jobs["exports"].items():
        loaded = tf.saved_model.load(path)
        serve = loaded.signatures["serving_default"]
        arrays = {}
        for n in jobs["batch_sizes"]:
            out = serve(images=tf.constant(images[:n]))
            for key, value in out.items():
                arrays[f"{key}_{n}"] = numpy(value)
        info = loaded.signatures["class_info"]()
        arrays.update({k: numpy(v) for k, v in info.items()})
        np.savez(f"{jobs['out']}_{name}.npz", **arrays)
    report["sgma_keras_imported"] = "sgma_keras" in sys.modules
    print(json.dumps(report))
    """
)


def _tf_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Base export (programmatic) and swapped-class export (CLI), checked once."""
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(1)
    semantics = rng.normal(size=(NUM_CLASSES, SEM_DIM)).astype("float32")
    model = make_tiny_model(semantics)
    checkpoint = str(root / "model.keras")
    model.save(checkpoint)
    images = rng.integers(0, 256, (max(BATCH_SIZES), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    np.save(root / "images.npy", images)
    # One Keras forward pass (the model is in inference mode: per-image results).
    reference = model.predict_on_batch(images.astype("float32"))
    reference = {k: keras.ops.convert_to_numpy(v) for k, v in reference.items()}

    names = [f"bird {c}" for c in range(NUM_CLASSES)]
    new_semantics = np.concatenate(
        [semantics[[0, 2]], rng.normal(size=(NEW_CLASSES - 2, SEM_DIM))]
    ).astype("float32")
    np.save(root / "new.npy", new_semantics)
    (root / "new.txt").write_text("".join(f"new {c}\n" for c in range(NEW_CLASSES)))

    def export_base():  # programmatic API, from the live model
        return export.export_model(model, str(root / "base"), class_names=names)

    def export_swapped():  # command line, from the checkpoint, new class set
        return cli.export_main(["--checkpoint", checkpoint, "--output", str(root / "swapped"),
                            "--semantics", str(root / "new.npy"),
                            "--class-names", str(root / "new.txt")])

    if keras.backend.backend() == "tensorflow":
        base, code = export_base(), export_swapped()
    else:  # each export is a TensorFlow subprocess: run both at once
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            base_job, swapped_job = pool.submit(export_base), pool.submit(export_swapped)
            base, code = base_job.result(), swapped_job.result()
    assert code == 0

    # The fresh TF-only process and saved_model_cli run side by side.
    jobs = {"images": str(root / "images.npy"), "batch_sizes": list(BATCH_SIZES),
            "exports": {"base": base, "swapped": str(root / "swapped")},
            "out": str(root / "outputs")}
    verify = subprocess.Popen([sys.executable, "-c", VERIFY, json.dumps(jobs)], cwd=str(root),
                              env=_tf_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    cli_path = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    show = subprocess.Popen([cli_path, "show", "--all", "--dir", base], env=_tf_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = verify.communicate()
    assert verify.returncode == 0, err[-3000:]
    show_out, show_err = show.communicate()
    assert show.returncode == 0, show_err[-3000:]
    return {
        "root": root,
        "checkpoint": checkpoint,
        "reference": reference,
        "new_semantics": new_semantics,
        "report": json.loads(out.strip().splitlines()[-1]),
        "base": dict(np.load(str(root / "outputs_base.npz"))),
        "swapped": dict(np.load(str(root / "outputs_swapped.npz"))),
        "base_dir": base,
        "swapped_dir": str(root / "swapped"),
        "cli": show_out,
    }


def test_saved_model_matches_keras_model_for_two_batch_sizes(exported):
    assert not exported["report"]["sgma_keras_imported"]
    ref, out = exported["reference"], exported["base"]
    for n in BATCH_SIZES:
        scores = out[f"scores_{n}"]
        assert scores.shape == (n, NUM_CLASSES) and scores.dtype == np.float32
        np.testing.assert_allclose(scores, ref["scores"][:n], atol=1e-4, rtol=0)
        np.testing.assert_array_equal(out[f"predicted_class_{n}"], ref["scores"][:n].argmax(-1))
        assert out[f"predicted_class_{n}"].dtype == np.int64
        np.testing.assert_allclose(out[f"boxes_{n}"], ref["boxes"][:n], atol=1e-4, rtol=0)
        assert out[f"boxes_{n}"].shape == (n, 2, 3)
        names = out[f"predicted_name_{n}"].tolist()
        assert names == [f"bird {c}" for c in out[f"predicted_class_{n}"]]


def test_class_names_and_semantics_travel_with_the_export(exported):
    out = exported["base"]
    assert out["class_names"].tolist() == [f"bird {c}" for c in range(NUM_CLASSES)]
    assert out["semantics"].shape == (NUM_CLASSES, SEM_DIM)
    assert out["is_seen"].tolist() == [True, True, True, False, False, False]
    extra = os.path.join(exported["base_dir"], "assets.extra")
    with open(os.path.join(extra, export.EXPORT_JSON)) as handle:
        info = json.load(handle)
    assert info["num_classes"] == NUM_CLASSES and info["image_size"] == IMAGE_SIZE
    assert info["inputs"]["images"]["dtype"] == "uint8"
    assert info["inputs"]["images"]["shape"] == [None, None, None, 3]  # any size: resized
    assert info["calibration"] is None and "no calibration" in info["calibration_note"]
    assert not out["has_calibration"] and out["calibration"] == 0.0
    assert info["class_names"] == [f"bird {c}" for c in range(NUM_CLASSES)]
    assert info["seen_classes"] == [0, 1, 2]
    assert info["source_backend"] == keras.backend.backend()
    np.testing.assert_array_equal(np.load(os.path.join(extra, export.SEMANTICS_FILE)),
                                  out["semantics"])
    with open(os.path.join(extra, export.CLASS_NAMES_FILE)) as handle:
        assert handle.read().splitlines() == info["class_names"]
    assert not [f for f in os.listdir(exported["root"]) if ".tmp-" in f]  # renamed into place


def test_saved_model_cli_lists_the_signature(exported):
    text = exported["cli"]
    assert "signature_def['serving_default']" in text
    assert "signature_def['class_info']" in text
    for needed in ["inputs['images']", "dtype: DT_UINT8", "shape: (-1, -1, -1, 3)",
                   "outputs['scores']", "outputs['calibrated_scores']",
                   "outputs['predicted_class']", "outputs['boxes']", "dtype: DT_INT64"]:
        assert needed in text, needed


def test_swapped_semantics_give_the_new_classes(exported):
    out = exported["swapped"]
    for n in BATCH_SIZES:
        assert out[f"scores_{n}"].shape == (n, NEW_CLASSES)
        assert out[f"predicted_class_{n}"].max() < NEW_CLASSES
    np.testing.assert_allclose(out["semantics"], exported["new_semantics"])
    assert out["class_names"].tolist() == [f"new {c}" for c in range(NEW_CLASSES)]
    # Rows 0 and 1 are the training classes 0 and 2 (same vectors).
    assert np.flatnonzero(out["is_seen"]).tolist() == [0, 1]
    # A training class scored by the same model keeps its score.
    ref = exported["reference"]["scores"]
    np.testing.assert_allclose(out[f"scores_{BATCH_SIZES[-1]}"][:, :2], ref[:, [0, 2]], atol=1e-4)


# --- bad inputs: clear errors, before any heavy work ---


def _run_cli(args, capsys):
    code = cli.export_main(args)
    return code, capsys.readouterr().err


def test_semantics_of_wrong_width(exported, tmp_path, capsys):
    np.save(tmp_path / "wide.npy", np.ones((4, SEM_DIM + 1), "float32"))
    code, err = _run_cli(["--checkpoint", exported["checkpoint"], "--output", str(tmp_path / "o"),
                          "--semantics", str(tmp_path / "wide.npy")], capsys)
    assert code == 1
    assert f"(4, {SEM_DIM + 1})" in err and f"{SEM_DIM}-d" in err
    with pytest.raises(export.ExportError, match="6-d|5-d"):
        export.check_class_set(SEM_DIM, np.ones((3, 6)))
    assert not (tmp_path / "o").exists()


def test_class_names_not_matching_semantics(exported, tmp_path, capsys):
    (tmp_path / "names.txt").write_text("a\nb\n")
    code, err = _run_cli(["--checkpoint", exported["checkpoint"], "--output", str(tmp_path / "o"),
                          "--semantics", str(exported["root"] / "new.npy"),
                          "--class-names", str(tmp_path / "names.txt")], capsys)
    assert code == 1 and "2 class names" in err and f"{NEW_CLASSES} classes" in err


def test_checkpoint_not_matching_config(exported, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(build, "load_data", lambda cfg: pytest.fail("data loaded"))
    config = write_config(tmp_path / "c.json", tmp_path / "run", input={"image_size": 64})
    code, err = _run_cli(["--config", config, "--checkpoint", exported["checkpoint"],
                          "--output", str(tmp_path / "o")], capsys)
    assert code == 1
    assert exported["checkpoint"] in err and "image size" in err and "64" in err


def test_missing_checkpoint(tmp_path, capsys):
    code, err = _run_cli(["--checkpoint", str(tmp_path / "none.keras"),
                          "--output", str(tmp_path / "o")], capsys)
    assert code == 1 and "Checkpoint not found" in err


def test_unwritable_output_folder(exported, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _run_cli(["--checkpoint", exported["checkpoint"],
                          "--output", str(blocker / "sub" / "model")], capsys)
    assert code == 1 and "not writable" in err and str(blocker / "sub") in err


def test_existing_export_needs_overwrite(exported, capsys):
    code, err = _run_cli(["--checkpoint", exported["checkpoint"],
                          "--output", exported["base_dir"]], capsys)
    assert code == 1 and "--overwrite" in err


def test_cli_needs_config_or_checkpoint_and_output(capsys):
    with pytest.raises(SystemExit):
        cli.export_main(["--checkpoint", "x.keras"])
    assert "--config" in capsys.readouterr().err


def test_saved_model_resizes_other_sizes_and_applies_the_calibration(exported, tmp_path):
    """Images of another size are resized in the graph as evaluation resizes them; the
    default signature's predicted_class is the calibrated GZSL argmax."""
    import tensorflow as tf

    from sgma_keras.data.pipeline import resize_image

    model = keras.saving.load_model(exported["checkpoint"])
    model.calibration = 0.25
    model.calibration_classes = [0, 1, 2]
    path = export.export_model(model, str(tmp_path / "calibrated"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    rng = np.random.default_rng(3)
    for shape in [(2, 45, 50, 3), (1, 3 * IMAGE_SIZE, 3 * IMAGE_SIZE, 3)]:  # up, down (antialias)
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        out = serve(images=tf.constant(images))
        resized = resize_image(tf.constant(images), IMAGE_SIZE).numpy()
        ref = keras.ops.convert_to_numpy(model.predict_on_batch(resized)["scores"])
        np.testing.assert_allclose(out["scores"].numpy(), ref, atol=1e-4, rtol=0)
        calibrated = ref - 0.25 * np.array([1, 1, 1, 0, 0, 0])
        np.testing.assert_allclose(out["calibrated_scores"].numpy(), calibrated, atol=1e-4)
        np.testing.assert_array_equal(out["predicted_class"].numpy(), calibrated.argmax(-1))
    with open(os.path.join(path, "assets.extra", export.EXPORT_JSON)) as handle:
        info = json.load(handle)
    assert info["calibration"] == 0.25 and info["gzsl_seen_classes"] == [0, 1, 2]


# --- a SavedModel's graph is code: only an export's ops run without --trust-savedmodel ---


def _posing_as_an_export(path, genuine, target):
    """A `tf.Module` with an export's signatures and a copy of its assets.extra, whose
    serving_default writes `target` from a nested function (reached through a call)."""
    import tensorflow as tf

    with open(os.path.join(genuine, "assets.extra", export.EXPORT_JSON)) as handle:
        info = json.load(handle)
    count = info["num_classes"]

    class Module(tf.Module):
        @tf.function(input_signature=[])
        def drop(self):
            tf.io.write_file(target, "ran")
            return tf.constant(0.0)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                                    name="images")])
        def serve(self, images):
            n = tf.shape(images)[0]
            return {"scores": tf.zeros([n, count]) + self.drop(),
                    "boxes": tf.zeros([n, 0, 3])}

        @tf.function(input_signature=[])
        def class_info(self):
            return {"class_names": tf.constant(info["class_names"]),
                    "is_seen": tf.constant([True] * count),
                    "calibration": tf.constant(0.0),
                    "has_calibration": tf.constant(False)}

    module = Module()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve,
                                                  "class_info": module.class_info})
    shutil.copytree(os.path.join(genuine, "assets.extra"), os.path.join(path, "assets.extra"))
    return path


def test_saved_model_with_foreign_ops_is_refused_before_it_runs(exported, tmp_path, capsys):
    from PIL import Image

    image = str(tmp_path / "bird.png")
    Image.fromarray(np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 90, np.uint8)).save(image)
    target = tmp_path / "written_by_the_model"
    posing = _posing_as_an_export(str(tmp_path / "posing"), exported["base_dir"], str(target))
    assert "WriteFile" in export.untrusted_ops(posing)

    code = cli.predict_main(["--model", posing, "--output", str(tmp_path / "p.csv"), image])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert "WriteFile" in err and "--trust-savedmodel" in err and posing in err
    assert not target.exists() and not (tmp_path / "p.csv").exists()

    # Exports pass: every op of both exports is one export.py writes.
    assert export.untrusted_ops(exported["base_dir"]) == []
    assert export.untrusted_ops(exported["swapped_dir"]) == []
    code = cli.predict_main(["--model", exported["base_dir"], "--output",
                             str(tmp_path / "genuine.csv"), image])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "genuine.csv").read_text().count("\n") == 2  # header and one image

    # Told to trust it, the folder runs, code and all.
    code = cli.predict_main(["--model", posing, "--trust-savedmodel", "--output",
                             str(tmp_path / "p.csv"), image])
    assert code == 0 and target.read_text() == "ran"


def test_tensorflow_1_saved_model_is_refused(tmp_path):
    """Without an object graph the loader would run the graph's init ops."""
    from tensorflow.core.protobuf import saved_model_pb2

    folder = tmp_path / "v1"
    folder.mkdir()
    saved = saved_model_pb2.SavedModel()
    saved.meta_graphs.add()  # a meta graph without object_graph_def
    (folder / "saved_model.pb").write_bytes(saved.SerializeToString())
    assert export.untrusted_ops(str(folder)) == ["<TensorFlow 1 SavedModel: init ops run at load>"]
    (folder / "saved_model.pb").write_bytes(b"not a protobuf \xff\xff")
    with pytest.raises(export.ExportError, match="Cannot read the SavedModel graph"):
        export.untrusted_ops(str(folder))


# --- a killed export leaves nothing the next one keeps ---


def _dead_pid():
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_next_export_removes_what_a_killed_one_left(tmp_path):
    dead, live = _dead_pid(), os.getppid()  # a process that ended, one that runs
    output = tmp_path / "sm"
    stale = tmp_path / f".sm.tmp-{dead}-0123abcd"
    running = tmp_path / f".sm.tmp-{live}-4567cdef"
    other = tmp_path / f".other.tmp-{dead}-0123abcd"  # another export's
    moved = tmp_path / f".sm.old-{dead}-89abcdef"  # killed between the two renames
    for folder in (stale, running, other, moved):
        folder.mkdir()
        (folder / "saved_model.pb").write_text(folder.name)

    removed = export.remove_stale_temporaries(str(output))
    assert removed == [str(stale)]
    assert (output / "saved_model.pb").read_text() == moved.name  # put back
    assert running.exists() and other.exists() and not moved.exists()

    # The next export does it first: a killed one's folder never outlives it.
    (tmp_path / f".sm.tmp-{dead}-fedcba98").mkdir()
    (tmp_path / f".sm.old-{dead}-76543210").mkdir()
    export._atomic_export(str(output), lambda tmp: os.makedirs(tmp))
    left = sorted(f for f in os.listdir(tmp_path) if f.startswith(".sm."))
    assert left == [running.name]
    assert os.listdir(output) == []  # the new export


# --- text inputs of an export ---


def test_class_names_and_semantics_text_files_are_checked(tmp_path):
    latin = tmp_path / "names.txt"
    latin.write_bytes(b"sparrow\nmo\xefneau\n")
    with pytest.raises(export.ExportError, match=r"byte 0xef at byte offset 10 \(line 2\)"):
        export.read_class_names_file(str(latin))
    zero = tmp_path / "semantics.txt"
    zero.write_text("1 0 2\n0 0 0\n")
    with pytest.raises(export.ExportError, match="row 2 is all zeros"):
        export.read_semantics_file(str(zero))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="the export of JAX/torch models is the same TensorFlow code, run "
                           "in a subprocess; here the SavedModel's numbers are what matter")
def test_raw_semantics_given_at_export_get_the_training_transform(tmp_path):
    """`export.py --semantics` of raw 0-100 vectors: each class of the model (and a copy
    of an unseen one) scores in the SavedModel exactly as the trained model scores it."""
    import tensorflow as tf

    from sgma_keras.model import make_sgma
    from sgma_keras.semantics import l2_normalize_rows

    rng = np.random.default_rng(4)
    codes = rng.choice(2 ** (SEM_DIM - 1), NUM_CLASSES, replace=False)  # distinct classes
    raw = np.stack([[1] + [(c >> i) & 1 for i in range(SEM_DIM - 1)] for c in codes])
    raw = raw.astype("float32")
    model = make_sgma(l2_normalize_rows(raw), TRAIN_CLASSES, image_size=IMAGE_SIZE,
                      backbone={"name": "tiny", "weights": None, "tiny_width": 4},
                      cropper={"output_size": 16}, center={"latent_dim": 8},
                      semantics_transform="l2")
    model.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    model.center_head.centers.assign(rng.normal(size=(len(TRAIN_CLASSES), 8)))
    checkpoint = str(tmp_path / "model.keras")
    model.save(checkpoint)
    rows = list(range(NUM_CLASSES)) + [4]  # class 4 is unseen
    np.save(tmp_path / "raw.npy", 100.0 * raw[rows])
    code = cli.export_main(["--checkpoint", checkpoint, "--output", str(tmp_path / "sm"),
                            "--semantics", str(tmp_path / "raw.npy")])
    assert code == 0
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    images = rng.integers(0, 256, (3, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    served = loaded.signatures["serving_default"](images=tf.constant(images))
    ref = keras.ops.convert_to_numpy(model.predict_on_batch(images.astype("float32"))["scores"])
    np.testing.assert_allclose(served["scores"].numpy(), ref[:, rows], atol=1e-5, rtol=1e-5)
    info = loaded.signatures["class_info"]()
    assert np.flatnonzero(info["is_seen"].numpy()).tolist() == TRAIN_CLASSES
    np.testing.assert_allclose(info["semantics"].numpy(), l2_normalize_rows(raw)[rows],
                               atol=1e-7)
    with open(tmp_path / "sm" / "assets.extra" / export.EXPORT_JSON) as handle:
        assert json.load(handle)["semantics_transform"] == "l2"
