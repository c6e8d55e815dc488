"""Export a trained SGMA model as a TensorFlow SavedModel for serving.

`python export.py --config CONFIG [--checkpoint final.keras] --output DIR
[--semantics new.npy --class-names new.txt]` writes a SavedModel folder:

    saved_model.pb, variables/         the graph and the weights
    assets.extra/sgma_export.json      what the model takes and returns, class names,
                                       which classes were trained on, provenance
    assets.extra/class_names.txt       one class name per line (row order)
    assets.extra/semantics.npy         the (num_classes, dim) class semantic matrix, in
                                       the model's stored form (`semantics_transform`
                                       in sgma_export.json applied)

Signatures (`tf.saved_model.load(DIR).signatures[...]`, or TF-Serving):

- `serving_default` (also `serve`): input `images`, uint8 `[None, H, W, 3]`
  RGB in [0, 255], any batch size and any image size H x W (one size per batch):
  the graph resizes them to the model's S x S exactly as evaluation does
  (`sgma_keras.data.pipeline.resize_image`); outputs
  `scores` float32 `[None, num_classes]` (raw fused scores over all classes,
  higher = more likely), `calibrated_scores` (the same with the calibration
  constant subtracted from the seen classes' scores), `predicted_class` int64
  `[None]` (the argmax of `calibrated_scores`: the calibrated generalized zero-shot
  prediction, evaluation's `gzsl_cal_*` rule), `predicted_name` string `[None]`,
  `boxes` float32 `[None, K, 3]` (part squares `(t_x, t_y, t_s)`, centre and side
  relative to the image; K = 0 without parts) and, with attention,
  `attention_maps` float32 `[None, h, w, K]`.
- `class_info`: no inputs; `class_names` string `[N]`, `semantics` float32
  `[N, dim]` (stored form: see `semantics_transform` in sgma_export.json),
  `is_seen` bool `[N]` (classes the model was trained on),
  `gzsl_seen` bool `[N]` (the classes GZSL counts as seen: the dataset's training
  and validation classes; calibration lowers their scores), `calibration` float32
  `[]` (the constant chosen on validation, 0 when the model has none) and
  `has_calibration` bool `[]`. `sgma_export.json` records it too
  (`calibration`: null when none).

The class set can be changed before export without retraining (`--semantics`
and `--class-names`): the model then scores the new classes, as
`SGMA.set_class_semantics`. `--semantics` holds raw vectors (the dataset's attribute
scale): the model's `semantics_transform` is applied to them, as the data loader
applied it to the training classes.

The SavedModel is written with `keras.export.ExportArchive` under the
TensorFlow backend. A model of another backend is saved to a `.keras` file and
exported by a subprocess running with `KERAS_BACKEND=tensorflow` (a `.keras`
file loads under any backend). The folder is written to a temporary sibling
and renamed into place, so a crash never leaves a half-written export; a
temporary left by a killed export is removed by the next export to that folder.

A SavedModel's graph is code. `predict.py` runs a folder only when every op its
functions can run is one export.py writes (`SAVED_MODEL_OPS`, read from
saved_model.pb without loading it: `saved_model_ops`), unless told to trust it.
"""

import datetime
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import keras
import numpy as np

from sgma_keras.data.pipeline import resize_image
from sgma_keras.errors import UserError
from sgma_keras.text_input import MiB, read_text
from sgma_keras.workflow.checkpoints import (
    check_checkpoint_matches,
    describe_checkpoint,
    ensure_writable_dir,
    load_checkpoint,
    read_checkpoint_config,
)

EXPORT_JSON = "sgma_export.json"
CLASS_NAMES_FILE = "class_names.txt"
SEMANTICS_FILE = "semantics.npy"
SIGNATURE = "serving_default"
MAX_TEXT_BYTES = 256 * MiB  # class names and semantic matrices given as text


class ExportError(UserError):
    """A problem with the inputs of an export, explained for the user."""


# --------------------------------------------------------------------------
# What an export's graph may hold (checked before a SavedModel is run)
# --------------------------------------------------------------------------

# A SavedModel's graph is code: `tf.saved_model.load` runs functions of the folder
# (resource initialisers, restore functions) and every call of a signature runs its
# graph, which may read, write or delete files (WriteFile, MatchingFiles, PrintV2 to a
# file, SaveV2 ...). `saved_model_ops` reads the op types of everything loading and
# calling can run from saved_model.pb without loading it; `predict` runs a folder only
# when they are all in this list: the ops export.py's graphs use (every backbone and
# part mode, float32 and mixed precision, measured) and close variants TensorFlow may
# lower the same Keras ops to. All compute on tensors and the model's own variables.
SAVED_MODEL_OPS = frozenset({
    # measured in exports of every backbone, box source and precision
    "AddV2", "ArgMax", "AssignVariableOp", "AvgPool", "BatchMatMulV2", "BiasAdd",
    "BroadcastTo", "Cast", "ConcatV2", "Const", "Conv2D", "Einsum", "ExpandDims", "Fill",
    "Floor", "FloorMod", "GatherV2", "Greater", "GreaterEqual", "Identity", "IsFinite",
    "Less", "LessEqual", "Log", "LogicalAnd", "MatMul", "Max", "MaxPool", "Maximum",
    "Mean", "Minimum", "Mul", "NoOp", "Pack", "Pad", "PartitionedCall", "Range",
    "ReadVariableOp", "RealDiv", "Relu", "Reshape", "ResizeBilinear", "ReverseV2",
    "Rsqrt", "ScaleAndTranslate", "SelectV2", "Shape", "Sigmoid", "Softmax", "Square",
    "Squeeze", "StatefulPartitionedCall", "StatelessIf", "StatelessRandomGetKeyCounter",
    "StatelessRandomUniformV2", "StopGradient", "StridedSlice", "Sub", "Sum", "Tile",
    "Transpose", "ZerosLike",
    # the same computations as other TensorFlow versions may write them
    "Abs", "ArgMin", "BatchMatMulV3", "Ceil", "DepthwiseConv2dNative", "EnsureShape",
    "Equal", "Exp", "FloorDiv", "FusedBatchNormV3", "IdentityN", "If", "LogicalNot",
    "LogicalOr", "Min", "Neg", "NotEqual", "OnesLike", "Prod", "Reciprocal", "Relu6",
    "ResizeNearestNeighbor", "Round", "Select", "Slice", "Split", "SplitV", "Sqrt",
    "SquaredDifference", "Tanh", "Unpack",
})


def saved_model_ops(path):
    """Op types of every function `tf.saved_model.load(path)` and its signatures can
    run, read from saved_model.pb without loading or running anything.

    The roots are the functions the object graph names (signatures, methods,
    resource and restore functions); calls, control-flow branches and gradients are
    followed through the function library. A SavedModel without an object graph
    (TensorFlow 1) would run its init ops at load: its ops are reported as such.

    Returns:
        A set of op type names.

    Raises:
        ExportError: saved_model.pb cannot be read or parsed.
    """
    from tensorflow.core.protobuf import saved_model_pb2  # protobuf only: runs nothing

    pb = os.path.join(os.fspath(path), "saved_model.pb")
    saved = saved_model_pb2.SavedModel()
    try:
        with open(pb, "rb") as handle:
            saved.ParseFromString(handle.read())
    except Exception as error:  # noqa: BLE001 - any parse failure is a refusal
        raise ExportError(f"Cannot read the SavedModel graph {pb!r} "
                          f"({type(error).__name__}).") from None
    if len(saved.meta_graphs) != 1 or not saved.meta_graphs[0].HasField("object_graph_def"):
        # TensorFlow 1 layout: the loader runs the graph's init and restore ops.
        return {"<TensorFlow 1 SavedModel: init ops run at load>"}
    meta = saved.meta_graphs[0]
    library = {f.signature.name: f for f in meta.graph_def.library.function}
    gradients = {g.function_name: g.gradient_func for g in meta.graph_def.library.gradient}
    objects = meta.object_graph_def
    todo = list(objects.concrete_functions)
    for node in objects.nodes:
        kind = node.WhichOneof("kind")
        if kind == "function":
            todo += list(node.function.concrete_functions)
        elif kind == "bare_concrete_function":
            todo.append(node.bare_concrete_function.concrete_function_name)
    ops, done = set(), set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        function = library.get(name)
        if function is None:  # a primitive op named as a function runs as that op
            ops.add(name)
            continue
        if name in gradients:
            todo.append(gradients[name])
        for node in function.node_def:
            todo.append(node.op)
            for value in node.attr.values():
                if value.HasField("func"):
                    todo.append(value.func.name)
                if value.HasField("list"):
                    todo += [f.name for f in value.list.func]
    return ops


def untrusted_ops(path):
    """The sorted op types of `saved_model_ops(path)` that export.py never writes."""
    return sorted(saved_model_ops(path) - SAVED_MODEL_OPS)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def default_export_dir(cfg):
    return os.path.join(cfg["output_dir"], "saved_model")


def read_semantics_file(path):
    """A (num_classes, dim) matrix from `.npy` (or a whitespace/comma text file)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ExportError(f"Semantics file not found: {path!r}.")
    try:
        if path.endswith(".npy"):
            matrix = np.load(path, allow_pickle=False)
        else:
            text = read_text(path, "Semantics file", MAX_TEXT_BYTES, error=ExportError)
            matrix = np.loadtxt(text.replace(",", " ").splitlines(), ndmin=2)
    except ExportError:
        raise
    except (ValueError, OSError) as error:
        raise ExportError(f"Cannot read the semantic matrix {path!r}: {error}") from None
    matrix = np.asarray(matrix, dtype="float32")
    if matrix.ndim != 2 or min(matrix.shape) < 1:
        raise ExportError(
            f"Semantic matrix {path!r} has shape {matrix.shape}; expected "
            "(num_classes, dim): one row per class."
        )
    if not np.all(np.isfinite(matrix)):
        raise ExportError(f"Semantic matrix {path!r} holds NaN or infinite values.")
    zero = np.flatnonzero(~matrix.any(axis=1))
    if zero.size:
        raise ExportError(f"Semantic matrix {path!r}: row {zero[0] + 1} is all zeros; every "
                          "class needs a non-zero semantic vector.")
    return matrix


def read_class_names_file(path):
    """One class name per non-empty line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ExportError(f"Class names file not found: {path!r}.")
    text = read_text(path, "Class names file", MAX_TEXT_BYTES, error=ExportError)
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ExportError(f"Class names file {path!r} is empty; expected one name a line.")
    return names


def check_class_set(semantic_dim, semantics=None, class_names=None, num_classes=None, source=""):
    """Checks a replacement class set against the model; returns (semantics, names)."""
    where = f" ({source})" if source else ""
    if semantics is not None:
        semantics = np.asarray(semantics, dtype="float32")
        if semantics.ndim != 2 or semantics.shape[1] != semantic_dim:
            raise ExportError(
                f"The new semantic matrix{where} has shape {semantics.shape}, but the model "
                f"was trained on {semantic_dim}-d class semantic vectors: expected shape "
                f"(num_classes, {semantic_dim})."
            )
        num_classes = semantics.shape[0]
    if class_names is not None:
        class_names = [str(n) for n in class_names]
        if num_classes is not None and len(class_names) != num_classes:
            raise ExportError(
                f"{len(class_names)} class names{where} for {num_classes} classes (rows of "
                "the semantic matrix); expected one name per class."
            )
    return semantics, class_names


def check_output(output, overwrite):
    """Fails early when the export folder cannot be written; returns its absolute path."""
    output = os.path.abspath(os.path.expanduser(os.fspath(output)))
    ensure_writable_dir(os.path.dirname(output), "folder of the export",
                        "choose another --output")
    if os.path.exists(output):
        if not os.path.isdir(output):
            raise ExportError(f"The export path {output!r} is a file; expected a folder.")
        if os.listdir(output) and not overwrite:
            raise ExportError(
                f"The export folder {output!r} exists and is not empty; pass --overwrite "
                "(overwrite=True) to replace it."
            )
    return output


# --------------------------------------------------------------------------
# Writing (TensorFlow backend)
# --------------------------------------------------------------------------


def _is_seen(model):
    """(num_classes,) bool: rows of the model's semantics that are training classes."""
    return np.asarray(model.seen_mask, bool)


def _write_saved_model(model, path, class_names, metadata):
    """Writes the SavedModel of `model` (TensorFlow backend) at `path` (a new folder)."""
    import tensorflow as tf  # the SavedModel writer (TensorFlow backend only)

    size = int(model.image_size)
    if not model.built:
        model.build((None, size, size, 3))
    names = tf.constant(list(class_names), dtype=tf.string)
    semantics = tf.constant(np.asarray(model.semantics, dtype="float32"))
    is_seen = tf.constant(_is_seen(model))
    num_parts = model.num_parts
    calibration = model.calibration
    gamma = tf.constant(0.0 if calibration is None else float(calibration), tf.float32)
    calibrated_mask = np.asarray(model.gzsl_seen_mask, bool)
    seen_offset = gamma * tf.constant(calibrated_mask, tf.float32)

    def serve(images):
        # Any image size: the evaluation resize, in the graph (identity at S x S).
        resized = resize_image(images, size)
        outputs = model(tf.cast(resized, model.compute_dtype), training=False)
        scores = tf.cast(outputs["scores"], tf.float32)
        calibrated = scores - seen_offset
        predicted = tf.argmax(calibrated, axis=-1, output_type=tf.int64)
        if "boxes" in outputs:
            boxes = tf.cast(outputs["boxes"], tf.float32)
        else:
            boxes = tf.zeros([tf.shape(images)[0], 0, 3], tf.float32)
        result = {
            "scores": scores,
            "calibrated_scores": calibrated,
            "predicted_class": predicted,
            "predicted_name": tf.gather(names, predicted),
            "boxes": boxes,
        }
        if "attention_maps" in outputs:
            result["attention_maps"] = tf.cast(outputs["attention_maps"], tf.float32)
        return result

    def class_info():
        return {"class_names": names, "semantics": semantics, "is_seen": is_seen,
                "gzsl_seen": tf.constant(calibrated_mask),
                "calibration": gamma, "has_calibration": tf.constant(calibration is not None)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve", serve,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
    )
    archive.add_endpoint("class_info", class_info, input_signature=[])
    archive.write_out(path, verbose=False)
    unknown = untrusted_ops(path)
    if unknown:  # e.g. another TensorFlow version lowers a layer to other ops
        logging.getLogger("sgma_keras").warning(
            "This export's graph holds ops predict.py does not expect (%s): predicting "
            "from it will need --trust-savedmodel; please report it.", ", ".join(unknown))

    extra = os.path.join(path, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with open(os.path.join(extra, CLASS_NAMES_FILE), "w", encoding="utf-8") as handle:
        handle.write("".join(f"{n}\n" for n in class_names))
    np.save(os.path.join(extra, SEMANTICS_FILE), np.asarray(model.semantics, dtype="float32"))
    info = {
        "format": "sgma_keras SavedModel",
        "format_version": 1,
        "signature": SIGNATURE,
        "inputs": {"images": {"dtype": "uint8", "shape": [None, None, None, 3],
                              "description": "RGB pixels in [0, 255], any size (resized to "
                                             f"{size} x {size} in the graph, as in "
                                             "evaluation); one size per batch"}},
        "outputs": {
            "scores": {"dtype": "float32", "shape": [None, int(model.num_classes)],
                       "description": "raw fused class scores, higher = more likely"},
            "calibrated_scores": {"dtype": "float32", "shape": [None, int(model.num_classes)],
                                  "description": "scores minus `calibration` on the "
                                                 "gzsl_seen_classes (calibrated stacking)"},
            "predicted_class": {"dtype": "int64", "shape": [None],
                                "description": "argmax of calibrated_scores over all "
                                               "classes: calibrated GZSL (row of "
                                               "class_names)"},
            "predicted_name": {"dtype": "string", "shape": [None]},
            "boxes": {"dtype": "float32", "shape": [None, num_parts, 3],
                      "description": "part squares (t_x, t_y, t_s): centre and side "
                                     "relative to the image"},
        },
        "class_info_signature": "class_info",
        "calibration": calibration,
        "gzsl_seen_classes": np.flatnonzero(calibrated_mask).tolist(),
        "calibration_note": ("constant chosen on the validation split, subtracted from the "
                             "scores of gzsl_seen_classes" if calibration is not None else
                             "the model has no calibration constant: predicted_class is "
                             "the plain GZSL argmax"),
        "image_size": size,
        "num_classes": int(model.num_classes),
        "semantic_dim": int(np.asarray(model.semantics).shape[1]),
        "class_names": list(class_names),
        "seen_classes": np.flatnonzero(_is_seen(model)).tolist(),
        "num_parts": num_parts,
        "backbone": (model.backbone or {}).get("name"),
        "class_names_file": f"assets.extra/{CLASS_NAMES_FILE}",
        "semantics_file": f"assets.extra/{SEMANTICS_FILE}",
        "semantics_transform": model.semantics_transform,
        "semantics_note": ("semantics_file holds the class vectors as the model uses them: "
                           "raw vectors with semantics_transform applied (\"l2\": each "
                           "scaled to unit L2 norm; null: as given)"),
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **metadata,
    }
    with open(os.path.join(extra, EXPORT_JSON), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)
        handle.write("\n")


def _process_is_gone(pid):
    """True when no process `pid` runs on this machine."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process
        return False
    return False


def remove_stale_temporaries(output):
    """Removes the temporary folders a killed export to `output` left beside it.

    `_atomic_export` names them `.<name>.tmp-<pid>-*` (the export being written) and
    `.<name>.old-<pid>-*` (the previous export, while the new one is renamed into
    place); those of a process that no longer runs are stale. A stale previous
    export is put back when `output` is missing (killed between the two renames).
    A live export's temporaries (its process still runs here) are left alone.
    Returns the removed paths.
    """
    parent, base = os.path.split(os.path.abspath(output))
    removed = []
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return removed
    for name in names:
        for kind in ("tmp", "old"):
            prefix = f".{base}.{kind}-"
            pid = name[len(prefix):].split("-", 1)[0] if name.startswith(prefix) else ""
            if not pid.isdigit() or not _process_is_gone(int(pid)):
                continue
            path = os.path.join(parent, name)
            if kind == "old" and not os.path.exists(output):
                os.rename(path, output)
                logging.getLogger("sgma_keras").info(
                    "Put back the export %s that a killed export had moved aside", output)
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        logging.getLogger("sgma_keras").info(
            "Removed %d temporary folder(s) of a killed export: %s", len(removed),
            ", ".join(removed[:3]))
    return removed


def _atomic_export(output, write):
    """Runs `write(tmp)` on a temporary sibling folder, then renames it to `output`."""
    parent, base = os.path.split(output)
    remove_stale_temporaries(output)
    tmp = os.path.join(parent, f".{base}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    old = None
    try:
        write(tmp)
        if os.path.exists(output):
            old = os.path.join(parent, f".{base}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.rename(output, old)
        os.rename(tmp, output)
    except BaseException:
        if old is not None and not os.path.exists(output):
            os.rename(old, output)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return output


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def _copy_model(model):
    """A separate SGMA with the same config and weights (the caller's stays as it is)."""
    if not model.built:
        model.build((None, model.image_size, model.image_size, 3))
    copy = model.__class__.from_config(model.get_config())
    copy.build((None, model.image_size, model.image_size, 3))
    copy.set_weights(model.get_weights())
    return copy


def _export_here(model, output, class_names, semantics, seen_rows, metadata, copy=False):
    """In-process export (TensorFlow backend); `copy`: swap the classes on a copy."""
    if semantics is not None:
        model = _copy_model(model) if copy else model
        if class_names is not None and len(class_names) != len(semantics):
            raise ExportError(
                f"{len(class_names)} class names for {len(semantics)} new classes."
            )
        model.set_class_semantics(semantics, seen_rows, class_names)
    if class_names is None:
        class_names = list(model.class_names)
    if len(class_names) != model.num_classes:
        raise ExportError(
            f"{len(class_names)} class names for a model scoring {model.num_classes} classes."
        )
    return _atomic_export(output, lambda tmp: _write_saved_model(model, tmp, class_names, metadata))


def _export_in_subprocess(checkpoint, output, class_names, semantics, seen_rows, metadata,
                          overwrite):
    """Runs the export of `checkpoint` in `python -m sgma_keras.workflow.export` with TensorFlow."""
    with tempfile.TemporaryDirectory(prefix="sgma-export-") as work:
        spec = {
            "checkpoint": os.path.abspath(checkpoint),
            "output": output,
            "class_names": class_names,
            "semantics": None,
            "seen_rows": None if seen_rows is None else np.asarray(seen_rows).tolist(),
            "metadata": metadata,
            "overwrite": overwrite,
        }
        if semantics is not None:
            spec["semantics"] = os.path.join(work, "semantics.npy")
            np.save(spec["semantics"], np.asarray(semantics, dtype="float32"))
        spec_path = os.path.join(work, "spec.json")
        with open(spec_path, "w") as handle:
            json.dump(spec, handle)
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        proc = subprocess.run(
            [sys.executable, "-m", "sgma_keras.workflow.export", spec_path],
            env=env, capture_output=True, text=True,
        )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ExportError(
            f"The TensorFlow export subprocess failed (exit code {proc.returncode}):\n{tail}"
        )
    return output


def export_model(model, output, class_names=None, semantics=None, seen_rows=None,
                 overwrite=False, metadata=None):
    """Exports an SGMA model (any backend) as a SavedModel folder `output`.

    Args:
        model: the SGMA model.
        output: the SavedModel folder to write (its parent must be writable).
        class_names: one name per class (default: the model's `class_names`).
        semantics: optional (n, dim) raw matrix of a new class set (it gets the
            model's `semantics_transform`), swapped in on a copy of the model
            (`model` itself is left as it is) before export.
        seen_rows: see `SGMA.set_class_semantics`.
        overwrite: replace an existing non-empty `output`.
        metadata: extra JSON-ready entries for `sgma_export.json`.

    Returns:
        The absolute path of the SavedModel folder.
    """
    output = check_output(output, overwrite)
    dim = int(np.asarray(model.semantics).shape[1])
    semantics, class_names = check_class_set(
        dim, semantics, class_names, model.num_classes if semantics is None else None
    )
    metadata = {"source_backend": keras.backend.backend(), **(metadata or {})}
    if keras.backend.backend() == "tensorflow":
        return _export_here(model, output, class_names, semantics, seen_rows, metadata,
                            copy=True)
    with tempfile.TemporaryDirectory(prefix="sgma-export-") as work:
        checkpoint = os.path.join(work, "model.keras")
        if not model.built:
            model.build((None, model.image_size, model.image_size, 3))
        model.save(checkpoint)
        return _export_in_subprocess(checkpoint, output, class_names, semantics, seen_rows,
                                     metadata, overwrite)


def export_checkpoint(checkpoint, output, class_names=None, semantics=None, cfg=None,
                      data=None, overwrite=False):
    """Exports an SGMA `.keras` file; every check runs before the model is loaded.

    Args:
        checkpoint: the `.keras` file.
        output: the SavedModel folder to write.
        class_names: names of the classes (of `semantics` if given); default:
            the dataset's (`data`) or the checkpoint's.
        semantics: optional new (n, dim) raw class semantic matrix (it gets the
            model's `semantics_transform`).
        cfg, data: the run's config and dataset, checked against the
            checkpoint when given.
        overwrite: replace an existing non-empty `output`.
    """
    output = check_output(output, overwrite)
    saved = read_checkpoint_config(checkpoint)
    description = describe_checkpoint(saved)
    check_checkpoint_matches(description, cfg, data if semantics is None else None,
                             repr(checkpoint))
    dim = description["semantics"].shape[1]
    num_classes = description["semantics"].shape[0]
    semantics, class_names = check_class_set(
        dim, semantics, class_names, num_classes if semantics is None else None,
        "--semantics / --class-names",
    )
    if class_names is None and semantics is None and data is not None:
        class_names = list(data.class_names)
    metadata = {"source_checkpoint": os.path.abspath(checkpoint),
                "source_backend": keras.backend.backend()}
    if data is not None and semantics is None:
        metadata["dataset"] = data.name
    if keras.backend.backend() == "tensorflow":
        model = load_checkpoint(checkpoint)
        return _export_here(model, output, class_names, semantics, None, metadata)
    return _export_in_subprocess(checkpoint, output, class_names, semantics, None, metadata,
                                 overwrite)


def run_worker(spec_path):
    """The subprocess side of `_export_in_subprocess` (TensorFlow backend)."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("the export worker needs KERAS_BACKEND=tensorflow")
    with open(spec_path) as handle:
        spec = json.load(handle)
    semantics = None if spec["semantics"] is None else np.load(spec["semantics"])
    model = load_checkpoint(spec["checkpoint"])
    output = check_output(spec["output"], spec["overwrite"])
    _export_here(model, output, spec["class_names"], semantics, spec["seen_rows"],
                 spec["metadata"])


if __name__ == "__main__":
    # The TensorFlow subprocess of `_export_in_subprocess`: `python -m ... SPEC_JSON`.
    try:
        run_worker(sys.argv[1])
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
