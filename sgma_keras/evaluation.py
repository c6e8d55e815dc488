"""Evaluation of a trained SGMA checkpoint: ZSL, GZSL, calibration, AUSUC, figures.

`python evaluate.py --config CONFIG [--checkpoint best.keras] [--output DIR]`
loads the config, the dataset and the checkpoint, checks that they belong
together, and writes into the results folder (default `<output_dir>/eval`):

    results.json               every number below, written atomically
    per_class_accuracy.csv     per test class: ZSL, GZSL and calibrated GZSL accuracy
    seen_unseen_curve.png      the GZSL seen-unseen curve of the test scores (AUSUC)
    attention_maps.png         `eval.visualize_images` test images, maps and part boxes
    part_crops.png             their zoomed part images

What is measured (all accuracies are per-class mean top-1, spec "Metrics"):

- `zsl_top1`: test_unseen images, predicted among the unseen classes;
- `gzsl_u`, `gzsl_s`, `gzsl_h`: test_unseen + test_seen images, predicted
  among all seen + unseen classes;
- calibrated stacking (Chao et al. 2016): the constant `gamma` subtracted from
  the seen-class scores is chosen to maximise H on the VALIDATION split of
  `training.protocol` (held-out images of the training classes as "seen",
  the `val` classes as "unseen"), never on test data; the test GZSL at that
  `gamma` is `gzsl_cal_u`, `gzsl_cal_s`, `gzsl_cal_h`;
- `ausuc`: area under the exact seen-unseen curve of the test scores (the
  curve itself, at `eval.calibration_points` points, is in the JSON);
- `part_localisation`: how often each predicted part box holds annotated part
  centres, where the test splits carry `part_locs`.

`keras_metrics_evaluate` computes the same accuracies the Keras way, with
`ZSLAccuracy`/`GZSLAccuracy` compiled on the model and one `model.evaluate`
pass; `evaluate.py --keras-metrics` adds those numbers to the JSON as a
cross-check.

Checks that fail early with a clear `EvaluationError` (before any heavy work):
results folder not writable, checkpoint missing or not a `.keras` SGMA model,
checkpoint not matching the config or the dataset (number of classes, width or
values of the semantic matrix, image size, training classes).
"""

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import zipfile

import numpy as np

log = logging.getLogger("sgma_keras")

RESULTS_FILE = "results.json"
PER_CLASS_CSV = "per_class_accuracy.csv"
CURVE_PNG = "seen_unseen_curve.png"
ATTENTION_PNG = "attention_maps.png"
PARTS_PNG = "part_crops.png"


class EvaluationError(ValueError):
    """A problem with the inputs of an evaluation or export, explained for the user."""


# --------------------------------------------------------------------------
# Cheap up-front checks (no model loading)
# --------------------------------------------------------------------------


def default_checkpoint(cfg):
    """`<output_dir>/checkpoints/best.keras`, what `train.py` writes."""
    return os.path.join(cfg["output_dir"], "checkpoints", "best.keras")


def default_results_dir(cfg):
    return os.path.join(cfg["output_dir"], "eval")


def ensure_writable_dir(path, what="results folder", hint="choose another with --output"):
    """Creates `path` if needed and checks a file can be written in it.

    Returns the absolute path; raises EvaluationError naming the folder.
    """
    full = os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        os.makedirs(full, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=full, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise EvaluationError(
            f"The {what} {full!r} is not writable ({reason}); {hint}."
        ) from None
    return full


def read_checkpoint_config(path):
    """The SGMA constructor arguments stored in a `.keras` file, without loading it.

    Raises:
        EvaluationError: the file is missing, not a `.keras` archive or not an
            SGMA model.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise EvaluationError(
            f"Checkpoint not found: {path!r}. Train a model first (python train.py "
            "--config ...), or pass the model file with --checkpoint."
        )
    if os.path.isdir(path):
        raise EvaluationError(
            f"Checkpoint {path!r} is a folder; expected a .keras model file (e.g. "
            "<output_dir>/checkpoints/best.keras)."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            saved = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise EvaluationError(
            f"Checkpoint {path!r} is not a readable .keras model file ({error}). "
            "Weights-only files (.weights.h5) cannot be evaluated; use best.keras or "
            "last.keras from the run's checkpoints/ folder."
        ) from None
    if saved.get("class_name") != "SGMA" or not isinstance(saved.get("config"), dict):
        raise EvaluationError(
            f"Checkpoint {path!r} holds a {saved.get('class_name')!r} model, not an "
            "SGMA model."
        )
    return saved["config"]


def model_description(model):
    """The facts `check_checkpoint_matches` compares, from a live model."""
    return {
        "semantics": np.asarray(model.semantics, dtype="float32"),
        "seen_classes": None if model.seen_classes is None else np.asarray(model.seen_classes),
        "image_size": int(model.image_size),
    }


def describe_checkpoint(saved):
    """The facts `check_checkpoint_matches` compares, from `read_checkpoint_config`."""
    seen = saved.get("seen_classes")
    return {
        "semantics": np.asarray(saved["semantics"], dtype="float32"),
        "seen_classes": None if seen is None else np.asarray(seen, dtype="int64"),
        "image_size": int(saved["image_size"]),
    }


def check_checkpoint_matches(description, cfg=None, data=None, checkpoint="the model"):
    """Raises EvaluationError listing every way the model differs from cfg/data.

    Args:
        description: `describe_checkpoint(read_checkpoint_config(path))` or
            `model_description(model)`.
        cfg: the resolved config (its `input.image_size` is checked) or None.
        data: the `ZeroShotData` (classes, semantic matrix, seen classes) or None.
        checkpoint: how to name the model in the message (its path).
    """
    semantics = description["semantics"]
    problems = []
    if cfg is not None and description["image_size"] != cfg["input"]["image_size"]:
        problems.append(
            f"image size: the model takes {description['image_size']} px images, the "
            f"config has input.image_size={cfg['input']['image_size']}"
        )
    if data is not None:
        theirs = np.asarray(data.semantics, dtype="float32")
        if semantics.shape[0] != theirs.shape[0]:
            problems.append(
                f"number of classes: the model scores {semantics.shape[0]} classes, the "
                f"dataset {data.name!r} has {theirs.shape[0]}"
            )
        if semantics.shape[1] != theirs.shape[1]:
            problems.append(
                f"semantic width: the model was trained on {semantics.shape[1]}-d class "
                f"semantic vectors, the dataset's semantic matrix is {theirs.shape[1]}-d "
                f"(shape {theirs.shape})"
            )
        if semantics.shape == theirs.shape:
            diff = float(np.max(np.abs(semantics - theirs))) if semantics.size else 0.0
            if not diff <= 1e-5:
                problems.append(
                    "semantic values: the class semantic vectors differ from the dataset's "
                    f"(max abs difference {diff:.3g}); check data.semantics and "
                    "data.normalize_semantics against the training run's config.json"
                )
        seen = description["seen_classes"]
        if seen is not None and semantics.shape[0] == theirs.shape[0]:
            stray = np.setdiff1d(seen, data.seen_classes)
            if stray.size:
                problems.append(
                    f"training classes: the model was trained on classes {stray[:10].tolist()} "
                    "that the dataset lists as unseen (test) classes"
                )
    if problems:
        raise EvaluationError(
            f"Checkpoint {checkpoint} does not match the config/data:\n  - "
            + "\n  - ".join(problems)
        )


def load_checkpoint(path):
    """Loads an SGMA `.keras` file (any backend), uncompiled."""
    read_checkpoint_config(path)  # clear errors for missing / wrong files
    import keras

    import sgma_keras.model  # noqa: F401  (registers SGMA and its layers)

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001 - reported with the file name
        raise EvaluationError(f"Cannot load checkpoint {path!r}: {error}") from error


def is_user_error(error):
    """An EvaluationError or a DataError (bad dataset input): a message, not a traceback.

    Does not import the data package (and TensorFlow) just to ask.
    """
    zsl_data = sys.modules.get("sgma_keras.data.zsl_data")
    return isinstance(error, EvaluationError) or (
        zsl_data is not None and isinstance(error, zsl_data.DataError)
    )


def load_data(cfg):
    """`load_dataset(cfg["data"])` (a seam for tests)."""
    from sgma_keras.data import load_dataset

    return load_dataset(cfg["data"])


# --------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------


def _batch_size(cfg):
    return cfg["eval"]["batch_size"] or cfg["input"]["batch_size"]


def _readable(split, cfg, what):
    """The split without unreadable images (bad_images="skip") or an error."""
    from sgma_keras.data.image_check import handle_bad_images

    keep = np.asarray(handle_bad_images(split.paths, cfg["data"]["bad_images"], "header", what), bool)
    return split if keep.all() else split.select(keep)


def _to_numpy(x):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


def collect_predictions(model, split, cfg, keep=(), what="images"):
    """Runs the model over `split` in order.

    Args:
        keep: indices (into the readable split) whose images and attention
            maps are also returned (for the figures).

    Returns:
        dict: `split` (the readable images), `labels` (N,), `scores`
        (N, num_classes) float32, `boxes` (N, K, 3) or None, and `kept`:
        `images`, `attention_maps` (or None), `boxes` of the `keep` indices.
    """
    from sgma_keras.data.pipeline import make_dataset

    split = _readable(split, cfg, what)
    ds = make_dataset(
        split,
        image_size=cfg["input"]["image_size"],
        batch_size=_batch_size(cfg),
        training=False,
        deterministic=True,  # outputs in split order (part_locs line up)
        seed=cfg["seed"],
        check="none",
    )
    keep = set(int(i) for i in keep)
    scores, boxes, labels = [], [], []
    kept = {"images": [], "attention_maps": [], "boxes": []}
    start = 0
    for images, y in ds:
        images = images.numpy()
        out = model.predict_on_batch(images)
        batch_scores = _to_numpy(out["scores"]).astype("float32")
        scores.append(batch_scores)
        labels.append(y.numpy().astype("int64"))
        batch_boxes = _to_numpy(out["boxes"]) if "boxes" in out else None
        if batch_boxes is not None:
            boxes.append(batch_boxes.astype("float32"))
        rows = [i - start for i in range(start, start + len(images)) if i in keep]
        if rows:
            kept["images"].append(images[rows])
            if "attention_maps" in out:
                kept["attention_maps"].append(_to_numpy(out["attention_maps"])[rows])
            if batch_boxes is not None:
                kept["boxes"].append(batch_boxes[rows])
        start += len(images)
    labels = np.concatenate(labels)
    if not np.array_equal(labels, split.labels):
        raise RuntimeError("evaluation: the input pipeline changed the order of the images.")
    return {
        "split": split,
        "labels": labels,
        "scores": np.concatenate(scores),
        "boxes": np.concatenate(boxes) if boxes else None,
        "kept": {k: (np.concatenate(v) if v else None) for k, v in kept.items()},
    }


def _even_indices(n, k):
    if k <= 0 or n <= 0:
        return []
    return sorted(set(np.linspace(0, n - 1, min(k, n)).round().astype(int).tolist()))


def visual_indices(num_unseen, num_seen, count):
    """Which test images to draw: about half unseen, half seen, spread evenly."""
    want_unseen = min(num_unseen, (count + 1) // 2)
    want_seen = min(num_seen, count - want_unseen)
    want_unseen = min(num_unseen, count - want_seen)
    return _even_indices(num_unseen, want_unseen), _even_indices(num_seen, want_seen)


# --------------------------------------------------------------------------
# Calibration on the validation split
# --------------------------------------------------------------------------


def validation_protocol(data, cfg):
    """The validation split of `training.protocol` with the classes it plays.

    For `train.fit_classes = "trainval"` (no validation split during
    training) the `train`/`val` protocol of the same seed is used.
    """
    from sgma_keras.training import protocol

    train_cfg = dict(cfg["train"])
    if train_cfg["fit_classes"] != "train":
        train_cfg["fit_classes"] = "train"
    return protocol(data, train_cfg, cfg["seed"])


def calibrate_on_validation(model, data, cfg, seen_classes=None):
    """Calibration constant maximising validation H (calibrated stacking).

    Returns a JSON-ready dict: `gamma` (None when the model was trained on the
    validation classes, with `reason`), the validation u/s/H before and after.
    """
    from sgma_keras import evaluation_utils as eu

    proto = validation_protocol(data, cfg)
    trained = proto.seen_classes if seen_classes is None else np.asarray(seen_classes)
    leaked = np.intersect1d(trained, proto.val_classes)
    info = {
        "split": "validation",
        "seen_classes": proto.seen_classes.tolist(),
        "unseen_classes": proto.val_classes.tolist(),
    }
    if leaked.size:
        info.update(
            gamma=None,
            reason=(
                f"the model was trained on the validation classes {leaked[:10].tolist()} "
                "(train.fit_classes='trainval'), so they cannot play the unseen classes; "
                "pass the constant found for the train/val run with --calibration"
            ),
        )
        return info
    if set(trained.tolist()) != set(proto.seen_classes.tolist()):
        log.warning(
            "The model's training classes differ from the validation protocol's; the "
            "checkpoint may come from another seed or data.val_fraction."
        )
    pred = collect_predictions(model, proto.val, cfg, what="validation images")
    gamma, val_h = eu.choose_calibration(
        pred["scores"], pred["labels"], proto.seen_classes, proto.val_classes
    )
    before = eu.gzsl_accuracy(pred["scores"], pred["labels"], proto.seen_classes, proto.val_classes)
    after = eu.gzsl_accuracy(
        pred["scores"], pred["labels"], proto.seen_classes, proto.val_classes, calibration=gamma
    )
    info.update(
        gamma=gamma,
        num_images=int(len(pred["labels"])),
        val_u=before["u"], val_s=before["s"], val_h=before["h"],
        val_cal_u=after["u"], val_cal_s=after["s"], val_cal_h=after["h"],
    )
    return info


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def _test_split(data):
    from sgma_keras.data.zsl_data import ImageSplit

    seen, unseen = data.splits["test_seen"], data.splits["test_unseen"]
    return ImageSplit(
        paths=seen.paths + unseen.paths,
        labels=np.concatenate([seen.labels, unseen.labels]),
    )


def keras_metrics_evaluate(model, data, cfg, calibration=0.0):
    """Test ZSL and GZSL with the Keras metrics and `model.evaluate`.

    Compiles `ZSLAccuracy` and two `GZSLAccuracy` (uncalibrated and with
    `calibration`) on the model and runs one `evaluate` pass over test_seen +
    test_unseen. Gives the same numbers as `evaluate_model`'s NumPy path.

    Returns:
        dict with `zsl_top1`, `gzsl_u/s/h`, `gzsl_cal_u/s/h`.
    """
    from sgma_keras.data.pipeline import make_dataset
    from sgma_keras.metrics import GZSLAccuracy, ZSLAccuracy

    n = model.num_classes
    model.compile(
        metrics=[
            ZSLAccuracy(n, data.unseen_classes, name="zsl_top1"),
            GZSLAccuracy(n, data.seen_classes, data.unseen_classes, name="gzsl"),
            GZSLAccuracy(n, data.seen_classes, data.unseen_classes,
                         calibration=float(calibration or 0.0), name="gzsl_cal"),
        ]
    )
    split = _readable(_test_split(data), cfg, "test images")
    ds = make_dataset(split, cfg["input"]["image_size"], _batch_size(cfg), training=False,
                      deterministic=True, seed=cfg["seed"], check="none")
    logs = model.evaluate(ds, return_dict=True, verbose=0)
    keys = ["zsl_top1", "gzsl_u", "gzsl_s", "gzsl_h", "gzsl_cal_u", "gzsl_cal_s", "gzsl_cal_h"]
    return {k: float(logs[k]) for k in keys}


def _draw_figures(model, kept, labels, data, output_dir, count):
    from sgma_keras.visualize import plot_attention_grid, plot_part_crops

    files, skipped = {}, {}
    if kept["images"] is None or count == 0:
        return files, {"figures": "eval.visualize_images is 0"}
    if kept["attention_maps"] is not None and kept["boxes"] is not None:
        plot_attention_grid(kept["images"], kept["attention_maps"], kept["boxes"],
                            os.path.join(output_dir, ATTENTION_PNG), labels=labels,
                            class_names=data.class_names, max_images=count)
        files["attention_png"] = ATTENTION_PNG
    else:
        skipped["attention_png"] = f"model.part_mode={model.part_mode!r} has no attention maps"
    if model.cropper is not None and kept["boxes"] is not None:
        parts = model.cropper.crop(kept["images"], kept["boxes"])
        plot_part_crops(_to_numpy(parts), os.path.join(output_dir, PARTS_PNG), max_images=count)
        files["parts_png"] = PARTS_PNG
    else:
        skipped["parts_png"] = f"model.part_mode={model.part_mode!r} crops no parts"
    return files, skipped


def _part_localisation(data, preds):
    from sgma_keras import evaluation_utils as eu

    boxes, locs = [], []
    for pred in preds:
        split = pred["split"]
        if split.part_locs is not None and pred["boxes"] is not None:
            boxes.append(pred["boxes"])
            locs.append(split.part_locs)
    if not boxes:
        return None
    names = list(data.part_names) or None
    return eu.part_localisation_score(np.concatenate(boxes), np.concatenate(locs), names)


def evaluate_model(model, data, cfg, output_dir, checkpoint=None, calibration=None,
                   keras_metrics=False):
    """Evaluates `model` on the test splits of `data`; writes the results folder.

    Args:
        model: an SGMA model (any backend).
        data: the `ZeroShotData` it was trained on.
        cfg: the resolved config (input size, batch sizes, eval.*, seed and
            the train.* keys of the validation protocol).
        output_dir: results folder (created; must be writable).
        checkpoint: path recorded in the results (and named in errors).
        calibration: a calibration constant to use instead of choosing one on
            the validation split (e.g. for a model refit on trainval).
        keras_metrics: also compute the test metrics with `model.evaluate`
            and the compiled Keras metrics (`keras_metrics` in the JSON).

    Returns:
        The results dict (also written to `<output_dir>/results.json`).
    """
    import keras

    from sgma_keras import evaluation_utils as eu

    started = time.time()
    output_dir = ensure_writable_dir(output_dir)
    name = checkpoint or "the model"
    check_checkpoint_matches(model_description(model), cfg, data, name)

    # 1. Calibration on the validation split (never the test data).
    if calibration is None:
        cal = calibrate_on_validation(model, data, cfg, model.seen_classes)
    else:
        cal = {"split": "given", "gamma": float(calibration)}
    gamma = cal["gamma"]

    # 2. Test predictions (about half of the drawn images from each test split).
    count = cfg["eval"]["visualize_images"]
    num_unseen, num_seen = len(data.splits["test_unseen"]), len(data.splits["test_seen"])
    keep_unseen, keep_seen = visual_indices(num_unseen, num_seen, count)
    unseen = collect_predictions(model, data.splits["test_unseen"], cfg, keep_unseen,
                                 "test_unseen images")
    seen = collect_predictions(model, data.splits["test_seen"], cfg, keep_seen, "test_seen images")
    scores = np.concatenate([seen["scores"], unseen["scores"]])
    labels = np.concatenate([seen["labels"], unseen["labels"]])

    # 3. Accuracies.
    zsl, zsl_per_class = eu.zsl_accuracy(unseen["scores"], unseen["labels"], data.unseen_classes)
    gzsl = eu.gzsl_accuracy(scores, labels, data.seen_classes, data.unseen_classes, per_class=True)
    results = {
        "checkpoint": None if checkpoint is None else os.path.abspath(checkpoint),
        "dataset": data.name,
        "backend": keras.backend.backend(),
        "num_classes": int(data.num_classes),
        "num_seen_classes": int(len(data.seen_classes)),
        "num_unseen_classes": int(len(data.unseen_classes)),
        "num_test_seen_images": int(len(seen["labels"])),
        "num_test_unseen_images": int(len(unseen["labels"])),
        "zsl_top1": zsl,
        "chance_zsl": 1.0 / len(data.unseen_classes),
        "gzsl_u": gzsl["u"],
        "gzsl_s": gzsl["s"],
        "gzsl_h": gzsl["h"],
        "calibration": cal,
    }
    per_class = {"zsl": zsl_per_class, "gzsl": gzsl["per_class"]}
    marker = None
    if gamma is not None:
        cal_gzsl = eu.gzsl_accuracy(scores, labels, data.seen_classes, data.unseen_classes,
                                    calibration=gamma, per_class=True)
        results.update(gzsl_cal_u=cal_gzsl["u"], gzsl_cal_s=cal_gzsl["s"], gzsl_cal_h=cal_gzsl["h"])
        per_class["gzsl_calibrated"] = cal_gzsl["per_class"]
        marker = (cal_gzsl["s"], cal_gzsl["u"])
    else:
        results.update(gzsl_cal_u=None, gzsl_cal_s=None, gzsl_cal_h=None)

    # 4. Seen-unseen curve and AUSUC (exact curve; the JSON keeps a sample of it).
    s, u = eu.seen_unseen_curve(scores, labels, data.seen_classes, data.unseen_classes)
    results["ausuc"] = eu.ausuc(s, u)
    cs, cu, cg = eu.seen_unseen_curve(scores, labels, data.seen_classes, data.unseen_classes,
                                      num_points=cfg["eval"]["calibration_points"],
                                      return_gammas=True)
    results["seen_unseen_curve"] = {"s": cs, "u": cu, "gamma": cg}
    eu.plot_seen_unseen_curve(s, u, os.path.join(output_dir, CURVE_PNG),
                              title=f"{data.name}: seen-unseen curve (test)", marker=marker)
    files = {"results_json": RESULTS_FILE, "per_class_csv": PER_CLASS_CSV, "curve_png": CURVE_PNG}

    # 5. Per-class CSV, part localisation, figures.
    eu.write_per_class_csv(os.path.join(output_dir, PER_CLASS_CSV), data.class_names, per_class)
    results["part_localisation"] = _part_localisation(data, [seen, unseen])
    kept = {
        k: (None if unseen["kept"][k] is None and seen["kept"][k] is None else np.concatenate(
            [v for v in (unseen["kept"][k], seen["kept"][k]) if v is not None]))
        for k in ("images", "attention_maps", "boxes")
    }
    shown = np.concatenate([unseen["labels"][keep_unseen], seen["labels"][keep_seen]])
    figure_files, skipped = _draw_figures(model, kept, shown, data, output_dir, count)
    files.update(figure_files)
    results["files"] = files
    if skipped:
        results["files_skipped"] = skipped

    # 6. Optional cross-check with the Keras metrics.
    if keras_metrics:
        results["keras_metrics"] = keras_metrics_evaluate(model, data, cfg, gamma or 0.0)

    results["elapsed_s"] = round(time.time() - started, 2)
    eu.write_json_atomic(os.path.join(output_dir, RESULTS_FILE), results)
    return results


def format_results(results):
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = [
        f"ZSL top-1 (unseen classes): {pct(results['zsl_top1'])} "
        f"(chance {pct(results['chance_zsl'])})",
        f"GZSL: u = {pct(results['gzsl_u'])}, s = {pct(results['gzsl_s'])}, "
        f"H = {pct(results['gzsl_h'])}",
    ]
    gamma = results["calibration"].get("gamma")
    if gamma is None:
        lines.append(f"Calibrated GZSL: not computed ({results['calibration'].get('reason')})")
    else:
        lines.append(
            f"Calibrated GZSL (gamma = {gamma:.4g}, chosen on the {results['calibration']['split']}"
            f" split): u = {pct(results['gzsl_cal_u'])}, s = {pct(results['gzsl_cal_s'])}, "
            f"H = {pct(results['gzsl_cal_h'])}"
        )
    lines.append(f"AUSUC: {results['ausuc']:.4f}")
    loc = results.get("part_localisation")
    if loc:
        rates = ", ".join("n/a" if r is None else f"{100 * r:.1f}%" for r in loc["part_hit_rate"])
        lines.append(f"Part boxes holding an annotated part: {rates} ({loc['num_images']} images)")
    return "\n".join(lines)


def run_evaluation(cfg, checkpoint=None, output_dir=None, calibration=None, keras_metrics=False):
    """The `evaluate.py` pipeline: cheap checks first, then data, model, evaluation."""
    checkpoint = checkpoint or default_checkpoint(cfg)
    output_dir = ensure_writable_dir(output_dir or default_results_dir(cfg))
    saved = describe_checkpoint(read_checkpoint_config(checkpoint))
    check_checkpoint_matches(saved, cfg, None, repr(checkpoint))
    data = load_data(cfg)
    check_checkpoint_matches(saved, cfg, data, repr(checkpoint))
    model = load_checkpoint(checkpoint)
    return evaluate_model(model, data, cfg, output_dir, checkpoint, calibration, keras_metrics)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Evaluate a trained SGMA checkpoint: ZSL, GZSL (u, s, H), calibrated "
                    "GZSL, AUSUC, per-class accuracies, attention and part figures.",
    )
    parser.add_argument("--config", required=True, help="JSON config of the run (see configs/).")
    parser.add_argument("--checkpoint", help="SGMA .keras file (default: "
                        "<output_dir>/checkpoints/best.keras).")
    parser.add_argument("--output", help="results folder (default: <output_dir>/eval).")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (repeatable).")
    parser.add_argument("--calibration", type=float,
                        help="use this calibration constant instead of choosing it on the "
                             "validation split (e.g. for a model refit on trainval).")
    parser.add_argument("--keras-metrics", action="store_true",
                        help="also compute the test metrics with model.evaluate and the "
                             "compiled Keras metrics (a cross-check).")
    return parser.parse_args(argv)


def main(argv=None):
    from sgma_keras.config import ConfigError, load_config

    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        results = run_evaluation(cfg, args.checkpoint, args.output, args.calibration,
                                 args.keras_metrics)
    except Exception as error:
        if not is_user_error(error):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_results(results))
    out = args.output or default_results_dir(cfg)
    print(f"Results: {os.path.join(out, RESULTS_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
