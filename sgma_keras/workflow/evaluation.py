"""Evaluation of a trained SGMA checkpoint: ZSL, GZSL, calibration, AUSUC, figures.

`python evaluate.py --config CONFIG [--checkpoint best.keras] [--output DIR]`
loads the config, the dataset and the checkpoint, checks that they belong
together, and writes into the results folder (default `<output_dir>/eval`):

    results.json               every number below, written atomically
    per_class_accuracy.csv     per test class: seen/unseen, test images, ZSL, GZSL and
                               calibrated GZSL accuracy
    seen_unseen_curve.png      the GZSL seen-unseen curve of the test scores (AUSUC)
    attention_maps.png         `eval.visualize_images` test images, maps and part boxes
    part_crops.png             their zoomed part images

What is measured (all accuracies are per-class mean top-1, spec "Metrics"):

- `zsl_top1`: test_unseen images, predicted among the unseen classes;
- `gzsl_u`, `gzsl_s`, `gzsl_h`: test_unseen + test_seen images, predicted
  among all seen + unseen classes;
- calibrated stacking (Chao et al. 2016): the constant `gamma` subtracted from
  the seen-class scores is chosen to maximise H on the VALIDATION split of
  `protocol.protocol` (held-out images of the training classes as "seen",
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

Checks that fail early with a clear `CheckpointError` / `FolderError` (before any
heavy work):
results folder not writable, checkpoint missing or not a `.keras` SGMA model,
checkpoint not matching the config or the dataset (number of classes, width or
values of the semantic matrix, image size, training classes).
"""

import csv
import io
import logging
import math
import os
import time

import keras
import numpy as np

from sgma_keras import zero_shot
from sgma_keras.atomic_io import write_json_atomic, write_text_atomic
from sgma_keras.data.image_check import naming_bad_images
from sgma_keras.data.pipeline import make_dataset
from sgma_keras.errors import UserError
from sgma_keras.metrics import GZSLAccuracy, ZSLAccuracy
from sgma_keras.plots import plot_attention_grid, plot_part_crops, plot_seen_unseen_curve
from sgma_keras.workflow.build import eval_batch_size, load_data
from sgma_keras.workflow.checkpoints import (
    check_checkpoint_matches,
    default_checkpoint,
    describe_checkpoint,
    ensure_writable_dir,
    load_checkpoint,
    model_description,
    read_checkpoint_config,
)
from sgma_keras.workflow.files import removing_if_left_empty
from sgma_keras.workflow.split_outputs import collect_predictions, readable_split, to_numpy
from sgma_keras.workflow.protocol import gzsl_test_split, validation_protocol
from sgma_keras.workflow.run_folder import RunFolder, results_folder

log = logging.getLogger("sgma_keras")

RESULTS_FILE = "results.json"
PER_CLASS_CSV = "per_class_accuracy.csv"
CURVE_PNG = "seen_unseen_curve.png"
ATTENTION_PNG = "attention_maps.png"
PARTS_PNG = "part_crops.png"


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


def calibrate_on_validation(model, data, cfg, seen_classes=None):
    """Calibration constant maximising validation H (calibrated stacking).

    Returns a JSON-ready dict: `gamma` (None when the model was trained on the
    validation classes, with `reason`), the validation u/s/H before and after.
    """
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
    gamma, val_h = zero_shot.choose_calibration(
        pred["scores"], pred["labels"], proto.seen_classes, proto.val_classes
    )
    before = zero_shot.gzsl_accuracy(pred["scores"], pred["labels"], proto.seen_classes, proto.val_classes)
    after = zero_shot.gzsl_accuracy(
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


def keras_metrics_evaluate(model, data, cfg, calibration=0.0, gzsl_classes=None):
    """Test ZSL and GZSL with the Keras metrics and `model.evaluate`.

    Compiles `ZSLAccuracy` and two `GZSLAccuracy` (uncalibrated and with
    `calibration`) on the model and runs one `evaluate` pass over test_seen +
    test_unseen. Gives the same numbers as `evaluate_model`'s NumPy path.

    `gzsl_classes`: the (seen, unseen) class ids of GZSL (`gzsl_classes`; default
    the dataset's).

    Returns:
        dict with `zsl_top1`, `gzsl_u/s/h`, `gzsl_cal_u/s/h`.
    """
    n = model.num_classes
    seen, unseen = gzsl_classes or (data.seen_classes, data.unseen_classes)
    model.compile(
        metrics=[
            ZSLAccuracy(n, data.unseen_classes, name="zsl_top1"),
            GZSLAccuracy(n, seen, unseen, name="gzsl"),
            GZSLAccuracy(n, seen, unseen, calibration=float(calibration or 0.0),
                         name="gzsl_cal"),
        ]
    )
    split = readable_split(gzsl_test_split(data), cfg, "test images")
    check, policy = cfg["data"]["check_images"], cfg["data"]["bad_images"]
    ds = make_dataset(split, cfg["input"]["image_size"], eval_batch_size(cfg), training=False,
                      deterministic=True, seed=cfg["seed"], check="none", bad_images=policy)
    with naming_bad_images(split.paths, "test images", check, policy):
        logs = model.evaluate(ds, return_dict=True, verbose=0)
    keys = ["zsl_top1", "gzsl_u", "gzsl_s", "gzsl_h", "gzsl_cal_u", "gzsl_cal_s", "gzsl_cal_h"]
    return {k: float(logs[k]) for k in keys}


def _draw_figures(model, kept, labels, data, output_dir, count, predictions=None,
                  seen_classes=None):
    files, skipped = {}, {}
    if kept["images"] is None or count == 0:
        return files, {"figures": "eval.visualize_images is 0"}
    if kept["attention_maps"] is not None and kept["boxes"] is not None:
        plot_attention_grid(kept["images"], kept["attention_maps"], kept["boxes"],
                            os.path.join(output_dir, ATTENTION_PNG), labels=labels,
                            class_names=data.class_names, max_images=count,
                            predictions=predictions,
                            title=f"{data.name}: attention maps and part boxes of "
                                  f"{min(count, len(labels))} test images")
        files["attention_png"] = ATTENTION_PNG
    else:
        skipped["attention_png"] = ("the model has no attention maps (boxes: "
                                    f"{model.box_source or 'no parts'})")
    if model.cropper is not None and kept["boxes"] is not None:
        parts = model.cropper.crop(kept["images"], kept["boxes"])
        seen = set(np.asarray(seen_classes).tolist())
        rows = [f"{'seen' if int(c) in seen else 'unseen'}: {data.class_names[int(c)]}"
                for c in labels]
        plot_part_crops(to_numpy(parts), os.path.join(output_dir, PARTS_PNG), max_images=count,
                        row_labels=rows, boxes=kept["boxes"],
                        title=f"{data.name}: part crops (what each part branch sees)")
        files["parts_png"] = PARTS_PNG
    else:
        skipped["parts_png"] = "the model has no parts (model.num_parts=0)"
    return files, skipped


def _part_localisation(data, preds):
    boxes, locs = [], []
    for pred in preds:
        split = pred["split"]
        if split.part_locs is not None and pred["boxes"] is not None:
            boxes.append(pred["boxes"])
            locs.append(split.part_locs)
    if not boxes:
        return None
    names = list(data.part_names) or None
    return zero_shot.part_localisation_score(np.concatenate(boxes), np.concatenate(locs), names)


def split_localisation(model, data, cfg, split_names=("test_seen", "test_unseen")):
    """`part_localisation_score` of `model`'s boxes on the named splits of `data`
    together; None when the model crops no parts or the splits have no part
    annotations. Evaluation's `part_localisation` is this on the test splits.
    """
    preds = [collect_predictions(model, data.splits[name], cfg, what=f"{name} images")
             for name in split_names]
    return _part_localisation(data, preds)


def gzsl_classes(model, data):
    """(seen, unseen) class ids of GZSL for `model` on `data`: seen are the classes the
    model was trained on, unseen every other class of the dataset. For a model fit on
    all seen classes (the protocol) these are the dataset's seen and unseen classes."""
    trained = model.seen_classes
    if trained is None:  # the class set was swapped: the roles it keeps
        trained = np.flatnonzero(model.seen_mask)
    trained = np.unique(np.asarray(trained, dtype="int64"))
    everything = np.union1d(data.seen_classes, data.unseen_classes)
    return trained, np.setdiff1d(everything, trained)


def head_accuracies(pred_by_split, data, seen, unseen):
    """ZSL and GZSL (u, s, H) of each head alone and of the fused score."""
    heads = {"embedding": "embedding_scores", "center": "center_scores", "fused": "scores"}
    found = {}
    unseen_pred = pred_by_split["test_unseen"]
    both = [pred_by_split["test_seen"], unseen_pred]
    labels = np.concatenate([p["labels"] for p in both])
    for head, key in heads.items():
        if unseen_pred[key] is None:
            continue
        scores = np.concatenate([p[key] for p in both])
        zsl, _ = zero_shot.zsl_accuracy(unseen_pred[key], unseen_pred["labels"],
                                        data.unseen_classes)
        gzsl = zero_shot.gzsl_accuracy(scores, labels, seen, unseen)
        found[head] = {"zsl_top1": zsl, "gzsl_u": gzsl["u"], "gzsl_s": gzsl["s"],
                       "gzsl_h": gzsl["h"]}
    return found


def evaluate_model(model, data, cfg, output_dir, checkpoint=None, calibration=None,
                   keras_metrics=False, choices=None):
    """Evaluates `model` on the test splits of `data`; writes the results folder.

    Args:
        model: an SGMA model (any backend).
        data: the `ZeroShotData` it was trained on.
        cfg: the resolved config (input size, batch sizes, eval.*, seed and
            the train.* keys of the validation protocol).
        output_dir: results folder (created; must be writable).
        checkpoint: path recorded in the results (and named in errors).
        calibration: a calibration constant to use instead of the model's own
            (`model.calibration`, chosen on validation by training) or, for a model
            without one, of choosing one on the validation split.
        keras_metrics: also compute the test metrics with `model.evaluate`
            and the compiled Keras metrics (`keras_metrics` in the JSON).
        choices: what training chose on validation (recorded in the results).

    GZSL counts as seen the classes the model was trained on (`gzsl_classes`); for a
    model trained on other classes than the dataset's seen classes, a warning says so.

    Returns:
        The results dict (also written to `<output_dir>/results.json`).
    """
    started = time.time()
    output_dir = ensure_writable_dir(output_dir)
    name = checkpoint or "the model"
    check_checkpoint_matches(model_description(model), cfg, data, name)

    seen_ids, unseen_ids = gzsl_classes(model, data)
    if set(seen_ids.tolist()) != set(np.asarray(data.seen_classes).tolist()):
        log.warning(
            "%s was trained on %d classes, not on the %d seen classes of %s: GZSL counts "
            "as seen the classes it was trained on, the %d others as unseen.", name,
            len(seen_ids), len(data.seen_classes), data.name, len(unseen_ids))

    # 1. Calibration: given, the model's own (chosen on validation), or chosen on the
    # validation split now (never the test data).
    if calibration is not None:
        cal = {"split": "given", "gamma": _given_calibration(calibration)}
    elif model.calibration is not None:
        cal = {"split": "validation (stored in the model)", "gamma": float(model.calibration)}
        if choices is not None:
            cal = {**choices["calibration"], "split": "validation"}
    else:
        cal = calibrate_on_validation(model, data, cfg, model.seen_classes)
    gamma = cal["gamma"]

    # 2. Test predictions (about half of the drawn images from each test split).
    # Drawn images are chosen among the readable ones (data.bad_images="skip" drops some).
    count = cfg["eval"]["visualize_images"]
    test_unseen = readable_split(data.splits["test_unseen"], cfg, "test_unseen images")
    test_seen = readable_split(data.splits["test_seen"], cfg, "test_seen images")
    keep_unseen, keep_seen = visual_indices(len(test_unseen), len(test_seen), count)
    unseen = collect_predictions(model, test_unseen, cfg, keep_unseen, "test_unseen images",
                                 checked=True)
    seen = collect_predictions(model, test_seen, cfg, keep_seen, "test_seen images",
                               checked=True)
    keep_unseen, keep_seen = unseen["kept_rows"], seen["kept_rows"]
    scores = np.concatenate([seen["scores"], unseen["scores"]])
    labels = np.concatenate([seen["labels"], unseen["labels"]])

    # 3. Accuracies.
    zsl, zsl_per_class = zero_shot.zsl_accuracy(unseen["scores"], unseen["labels"], data.unseen_classes)
    gzsl = zero_shot.gzsl_accuracy(scores, labels, seen_ids, unseen_ids, per_class=True)
    results = {
        "checkpoint": None if checkpoint is None else os.path.abspath(checkpoint),
        "dataset": data.name,
        "backend": keras.backend.backend(),
        "num_classes": int(data.num_classes),
        "trained_classes": seen_ids.tolist(),
        "gzsl_seen_classes": seen_ids.tolist(),
        "gzsl_unseen_classes": unseen_ids.tolist(),
        "split_seen_classes": np.asarray(data.seen_classes).tolist(),
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
        "fusion": {"gamma_cc": model.gamma_cc,
                   "head_scales": list(model.head_scales),
                   "chosen": None if choices is None else choices["gamma_cc"]},
        "heads": head_accuracies({"test_seen": seen, "test_unseen": unseen}, data, seen_ids,
                                 unseen_ids),
    }
    per_class = {"zsl": zsl_per_class, "gzsl": gzsl["per_class"]}
    marker = None
    if gamma is not None:
        cal_gzsl = zero_shot.gzsl_accuracy(scores, labels, seen_ids, unseen_ids,
                                           calibration=gamma, per_class=True)
        results.update(gzsl_cal_u=cal_gzsl["u"], gzsl_cal_s=cal_gzsl["s"], gzsl_cal_h=cal_gzsl["h"])
        per_class["gzsl_calibrated"] = cal_gzsl["per_class"]
        marker = (cal_gzsl["s"], cal_gzsl["u"])
    else:
        results.update(gzsl_cal_u=None, gzsl_cal_s=None, gzsl_cal_h=None)

    # 4. Seen-unseen curve and AUSUC (exact curve; the JSON keeps a sample of it).
    s, u = zero_shot.seen_unseen_curve(scores, labels, seen_ids, unseen_ids)
    results["ausuc"] = zero_shot.ausuc(s, u)
    cs, cu, cg = zero_shot.seen_unseen_curve(scores, labels, seen_ids, unseen_ids,
                                      num_points=cfg["eval"]["calibration_points"],
                                      return_gammas=True)
    results["seen_unseen_curve"] = {"s": cs, "u": cu, "gamma": cg}
    plot_seen_unseen_curve(s, u, os.path.join(output_dir, CURVE_PNG),
                           title=f"{data.name}: seen-unseen curve (test)", marker=marker,
                           marker_label=None if gamma is None else _constant_label(cal))
    files = {"results_json": RESULTS_FILE, "per_class_csv": PER_CLASS_CSV, "curve_png": CURVE_PNG}

    # 5. Per-class CSV, part localisation, figures.
    classes, counts = np.unique(labels, return_counts=True)
    write_per_class_csv(os.path.join(output_dir, PER_CLASS_CSV), data.class_names, per_class,
                        seen_classes=seen_ids, image_counts=dict(zip(classes, counts)))
    results["part_localisation"] = _part_localisation(data, [seen, unseen])
    kept = {
        k: (None if unseen["kept"][k] is None and seen["kept"][k] is None else np.concatenate(
            [v for v in (unseen["kept"][k], seen["kept"][k]) if v is not None]))
        for k in ("images", "attention_maps", "boxes")
    }
    shown = np.concatenate([unseen["labels"][keep_unseen], seen["labels"][keep_seen]])
    # The figures show the GZSL prediction (calibrated when a constant was chosen).
    shown_scores = np.concatenate([unseen["scores"][keep_unseen], seen["scores"][keep_seen]])
    seen_mask = np.isin(np.arange(shown_scores.shape[1]), seen_ids)
    shown_pred = np.argmax(shown_scores - (gamma or 0.0) * seen_mask, axis=1)
    figure_files, skipped = _draw_figures(model, kept, shown, data, output_dir, count,
                                          shown_pred, seen_ids)
    files.update(figure_files)
    results["files"] = files
    if skipped:
        results["files_skipped"] = skipped

    # 6. Optional cross-check with the Keras metrics.
    if keras_metrics:
        results["keras_metrics"] = keras_metrics_evaluate(model, data, cfg, gamma or 0.0,
                                                          (seen_ids, unseen_ids))

    results["elapsed_s"] = round(time.time() - started, 2)
    write_json_atomic(os.path.join(output_dir, RESULTS_FILE), results)
    return results


def _given_calibration(value):
    """A given calibration constant as a float; NaN or infinity (which would make
    every calibrated score NaN) is a UserError."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        raise UserError(f"calibration must be a finite number; got {value!r}.")
    return number


def _constant_label(cal):
    """The curve's legend entry of the calibration constant: its value and source."""
    split = cal["split"]
    source = "given" if split == "given" else "chosen on " + split.replace(" (", ", ").rstrip(")")
    return f"calibration constant {cal['gamma']:.4g}\n({source})"


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
    heads = results.get("heads") or {}
    if len(heads) > 1:
        lines.append("Heads (ZSL / GZSL H): " + ", ".join(
            f"{name} {pct(h['zsl_top1'])} / {pct(h['gzsl_h'])}" for name, h in heads.items())
            + f" (gamma_cc = {results['fusion']['gamma_cc']:.3g})")
    loc = results.get("part_localisation")
    if loc:
        rates = ", ".join("n/a" if r is None else f"{100 * r:.1f}%" for r in loc["part_hit_rate"])
        lines.append(f"Part boxes holding an annotated part: {rates} ({loc['num_images']} images)")
    return "\n".join(lines)


def run_evaluation(cfg, checkpoint=None, output_dir=None, calibration=None, keras_metrics=False):
    """The `evaluate.py` pipeline: cheap checks first, then data, model, evaluation."""
    checkpoint = checkpoint or default_checkpoint(cfg)
    calibration = _given_calibration(calibration)
    saved = describe_checkpoint(read_checkpoint_config(checkpoint))
    check_checkpoint_matches(saved, cfg, None, repr(checkpoint))
    # A failure from here on takes back the results folder if it was created empty; it
    # is locked while written, and temporaries of a killed evaluation are removed first.
    with removing_if_left_empty(output_dir or RunFolder(cfg["output_dir"]).eval) as output_dir, \
            results_folder(ensure_writable_dir(output_dir), cfg["output_dir"], checkpoint):
        output_dir = ensure_writable_dir(output_dir)
        data = load_data(cfg)
        check_checkpoint_matches(saved, cfg, data, repr(checkpoint))
        model = load_checkpoint(checkpoint)
        return evaluate_model(model, data, cfg, output_dir, checkpoint, calibration,
                              keras_metrics)


def write_per_class_csv(path, class_names, accs_by_setting, seen_classes=None,
                        image_counts=None):
    """Writes per-class accuracies, one row per class, one column per setting.

    Args:
        path: output CSV path (written atomically).
        class_names: names indexed by global class id (`None`: ids only).
        accs_by_setting: `{setting: {class id: accuracy}}`, e.g.
            `{"zsl": zsl_accuracy(...)[1], "gzsl": gzsl_accuracy(...,
            per_class=True)["per_class"]}`. Classes missing from a setting
            get an empty cell.
        seen_classes: optional training-class ids: adds a `split` column
            (`seen` / `unseen`) after the name.
        image_counts: optional `{class id: number of test images}`: adds a
            `num_images` column.

    Example:

    ```python
    write_per_class_csv("acc.csv", ["cat", "dog"], {"zsl": {1: 0.5}})
    # acc.csv:
    # class_id,class_name,zsl
    # 1,dog,0.500000
    ```
    """
    settings = list(accs_by_setting)
    ids = sorted({int(c) for accs in accs_by_setting.values() for c in accs})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = (["split"] if seen_classes is not None else []) + (
        ["num_images"] if image_counts is not None else [])
    seen_set = set() if seen_classes is None else {int(c) for c in seen_classes}
    counts = {} if image_counts is None else {int(k): int(v) for k, v in image_counts.items()}
    writer.writerow(["class_id", "class_name", *extra, *settings])
    # Keys may be ints or strings (e.g. a per-class dict read back from JSON).
    by_setting = [
        {int(k): float(v) for k, v in accs_by_setting[setting].items()}
        for setting in settings
    ]
    for c in ids:
        name = class_names[c] if class_names is not None else str(c)
        cells = ["" if c not in accs else f"{accs[c]:.6f}" for accs in by_setting]
        info = (["seen" if c in seen_set else "unseen"] if seen_classes is not None else []) + (
            [counts.get(c, 0)] if image_counts is not None else [])
        writer.writerow([c, name, *info, *cells])
    text = buffer.getvalue()
    write_text_atomic(path, text)
