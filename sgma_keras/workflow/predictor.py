"""Use a trained model: class names and scores for images, new classes from their
descriptions, part boxes and attention maps.

```python
from sgma_keras.workflow.predictor import load_predictor

predictor = load_predictor("runs/demo/checkpoints/final.keras")  # any backend
result = predictor.predict(["bird.jpg", "photos/"], top_k=3)    # files or folders
result.names[0], result.top_scores[0], result.boxes[0]
predictor.add_classes(["new bird"], [[0, 1, 0, ...]])           # zero-shot: a new class
```

A `.keras` checkpoint holds its class names and the calibration constant chosen on
validation (`SGMA.class_names`, `SGMA.calibration`); an exported SavedModel folder
(`export.py`) works too, with TensorFlow only (its class set is fixed at export).
A SavedModel's graph is code, run when it is loaded and called: a folder whose graph
holds ops export.py never writes (reading or writing files, ...) is refused before
anything is loaded, unless `load_predictor(path, trust_savedmodel=True)`
(`predict.py --trust-savedmodel`). `.keras` files load in Keras's safe mode (no
Python code from the file runs).

Modes (`MODES`): "zsl" ranks the unseen classes (neither trained on nor validation
classes: the test classes, and any added ones), "gzsl" all classes, "gzsl-calibrated"
all classes with the calibration constant subtracted from the seen classes' scores (calibrated stacking, the rule evaluation reports as
`gzsl_cal_*`). Default: "gzsl-calibrated" when the model has a constant, else "gzsl".

Image files are decoded and resized by the evaluation pipeline
(`sgma_keras.data.pipeline`: JPEGs exactly as PIL decodes them), so a file gets the
same scores here as in `evaluate.py`; arrays and `tf.data` batches of any size are
resized the same way.
"""

import csv
import io
import json
import logging
import math
import os

import numpy as np

from sgma_keras.atomic_io import write_text_atomic
from sgma_keras.data.image_check import find_bad_images
from sgma_keras.data.pipeline import decode_image_bytes, make_dataset, resize_image
from sgma_keras.data.zsl_data import ImageSplit
from sgma_keras.errors import UserError
from sgma_keras.plots import plot_attention_grid
from sgma_keras.text_input import MiB, read_text
from sgma_keras.upgrade import saved_semantics
from sgma_keras.workflow.checkpoints import load_checkpoint, read_checkpoint_config
from sgma_keras.workflow.export import EXPORT_JSON, untrusted_ops
from sgma_keras.workflow.split_outputs import to_numpy

log = logging.getLogger("sgma_keras")

MODES = ("zsl", "gzsl", "gzsl-calibrated")
# Even 10,000 classes of 1,000 attributes are ~100 MiB of CSV.
MAX_CLASSES_BYTES = 256 * MiB
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
NAME_COLUMNS = ("name", "class", "class_name")


class PredictError(UserError):
    """A problem with the inputs of a prediction, explained for the user."""


# --------------------------------------------------------------------------
# Inputs: image files, class files
# --------------------------------------------------------------------------


def list_images(inputs):
    """Image files of `inputs` (files, or folders searched recursively, sorted)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            every = sorted(os.path.join(folder, name) for folder, _, names in os.walk(item)
                           for name in names)
            found = [path for path in every if path.lower().endswith(IMAGE_EXTENSIONS)]
            others = [os.path.relpath(path, item) for path in every
                      if not path.lower().endswith(IMAGE_EXTENSIONS)]
            if others:
                log.info("%s: %d image files; skipped %d other file%s (%s%s)", item,
                         len(found), len(others), "s" if len(others) > 1 else "",
                         ", ".join(others[:3]), ", ..." if len(others) > 3 else "")
            if not found:
                raise PredictError(
                    f"Folder {item!r} holds no image files; expected files ending in "
                    f"{', '.join(IMAGE_EXTENSIONS)}."
                )
            files += found
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise PredictError(f"Image file or folder not found: {item!r}.")
    if not files:
        raise PredictError("No images given; expected image files or folders.")
    return files


def usable_images(files, skip_bad=False):
    """`files` without the missing or unreadable ones.

    Without `skip_bad`, a bad file is a PredictError naming the first ones (a header
    check: missing, empty, non-image or truncated files). With it, every file is
    decoded first (so no file can fail later and shift the rows of the CSV) and the
    bad ones are dropped with a warning.
    """
    bad = find_bad_images(list(files), "decode" if skip_bad else "header")
    if not bad:
        return list(files)
    shown = "; ".join(f"{p}: {r}" for p, r in bad[:3])
    more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
    if not skip_bad:
        raise PredictError(
            f"{len(bad)} of {len(files)} images are missing or unreadable ({shown}{more}); "
            "pass --skip-bad-images (skip_bad_images=True) to predict the others."
        )
    dropped = {p for p, _ in bad}
    kept = [f for f in files if f not in dropped]
    if not kept:
        raise PredictError(f"All {len(files)} images are missing or unreadable ({shown}{more}).")
    log.warning("Skipping %d of %d images that cannot be read: %s%s", len(bad), len(files),
                shown, more)
    return kept


def _parse_vector(values, where, semantic_dim):
    if len(values) != semantic_dim:
        raise PredictError(
            f"{where}: {len(values)} attribute values, expected {semantic_dim} (the "
            "model's semantic width, in the dataset's attribute order)."
        )
    vector = []
    for column, value in enumerate(values, start=1):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PredictError(
                f"{where}: attribute {column} is {value!r}, not a number."
            ) from None
        if not math.isfinite(number):
            raise PredictError(f"{where}: attribute {column} is {value!r}; expected a finite number.")
        vector.append(number)
    return vector


def read_classes_file(path, semantic_dim):
    """Class names and semantic vectors from a CSV or JSON file.

    CSV: one class a row, `name,v1,...,vD` (an optional header row whose first cell
    is `name`, `class` or `class_name`). JSON: `{"name": [v1, ...], ...}` or
    `[{"name": ..., "attributes": [v1, ...]}, ...]`. The vectors are raw: the
    dataset's attribute order and scale (0/1, 0-100, ...); the model applies the
    transform its training vectors got (`SGMA.semantics_transform`).

    Returns:
        (names, (n, semantic_dim) float32 matrix).

    Raises:
        PredictError naming the file and the row for an empty file, a wrong width,
        a value that is not a finite number, an all-zero vector, an empty or
        duplicate name; naming the byte offset for a file that is not UTF-8.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PredictError(f"Classes file not found: {path!r}.")
    text = read_text(path, "Classes file", MAX_CLASSES_BYTES, error=PredictError)
    rows = []  # (where, name, values)
    if path.lower().endswith(".json"):
        try:
            content = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as error:
            raise PredictError(f"Classes file {path!r} is not valid JSON: {error}.") from None
        if isinstance(content, dict):
            items = [{"name": k, "attributes": v} for k, v in content.items()]
        elif isinstance(content, list):
            items = content
        else:
            raise PredictError(
                f"Classes file {path!r}: expected a JSON object {{name: [values]}} or a "
                "list of {\"name\": ..., \"attributes\": [...]}."
            )
        for i, item in enumerate(items, start=1):
            where = f"{path}, class {i}"
            if not isinstance(item, dict) or "name" not in item or "attributes" not in item:
                raise PredictError(f"{where}: expected {{\"name\": ..., \"attributes\": [...]}}, "
                                   f"got {str(item)[:80]!r}.")
            values = item["attributes"]
            if not isinstance(values, list):
                raise PredictError(f"{where}: \"attributes\" must be a list of numbers.")
            rows.append((where, item["name"], values))
    else:
        reader = csv.reader(io.StringIO(text))
        for line, cells in enumerate(reader, start=1):
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if not rows and line == 1 and cells[0].lower() in NAME_COLUMNS:
                continue  # header
            rows.append((f"{path}, row {line}", cells[0], cells[1:]))
    if not rows:
        raise PredictError(
            f"Classes file {path!r} holds no classes; expected one class a row: "
            f"name and {semantic_dim} attribute values."
        )
    names, vectors, first = [], [], {}
    for where, name, values in rows:
        name = str(name).strip()
        if not name:
            raise PredictError(f"{where}: the class name is empty.")
        if name in first:
            raise PredictError(f"{where}: class name {name!r} already given ({first[name]}).")
        first[name] = where
        names.append(name)
        vectors.append(_parse_vector(values, where, semantic_dim))
        if not any(vectors[-1]):
            raise PredictError(f"{where}: every attribute of class {name!r} is 0; a class "
                               "needs a non-zero attribute vector (it has no direction).")
    return names, np.asarray(vectors, dtype="float32")


# --------------------------------------------------------------------------
# Ranking
# --------------------------------------------------------------------------


def rank_classes(scores, seen_mask, mode, calibration, top_k):
    """Top-k class ids and their scores under a mode (see `MODES`).

    Returns:
        (ids (N, k) int64, scores (N, k) float32, the ranked scores (N, C), with
        -inf for classes the mode excludes).
    """
    scores = np.asarray(scores, dtype="float32")
    seen_mask = np.asarray(seen_mask, dtype=bool)
    if mode not in MODES:
        raise PredictError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
    ranked = scores.copy()
    if mode == "zsl":
        if seen_mask.all():
            raise PredictError(
                "mode 'zsl' ranks the classes the model was not trained on, and this model "
                "has none: add classes (--classes) or use --mode gzsl."
            )
        ranked[:, seen_mask] = -np.inf
    elif mode == "gzsl-calibrated":
        if calibration is None:
            raise PredictError(
                "mode 'gzsl-calibrated' needs the calibration constant chosen on validation, "
                "and this model has none (saved before models kept it, or trained without "
                "validation classes): pass --calibration, or use --mode gzsl."
            )
        ranked = ranked - np.float32(calibration) * seen_mask
    candidates = int(np.isfinite(ranked[0]).sum()) if len(ranked) else scores.shape[1]
    k = max(1, min(int(top_k), candidates))
    ids = np.argsort(-ranked, axis=1, kind="stable")[:, :k]
    return ids.astype("int64"), np.take_along_axis(ranked, ids, axis=1), ranked


class Predictions:
    """What `Predictor.predict` returns.

    Attributes:
        files: the image files (None for arrays and datasets).
        class_names: the names of the classes scored (rows of `scores`).
        seen_mask: (num_classes,) bool, the classes GZSL counts as seen (the
            dataset's training and validation classes; added classes are unseen).
        mode: the ranking mode; calibration: the constant it used (or None).
        ids, names, top_scores: top-k class ids, names and their ranked scores
            (calibrated in "gzsl-calibrated").
        scores: (N, num_classes) raw fused scores.
        ranked_scores: the scores ranked by the mode (-inf: excluded classes).
        boxes: (N, K, 3) part squares (t_x, t_y, t_s) relative to the image, or None.
        attention_maps: (N, h, w, K) or None.
        images: (N, S, S, 3) float images the model saw (when kept), or None.
    """

    def __init__(self, files, class_names, seen_mask, mode, calibration, scores, boxes, maps,
                 images, top_k):
        self.files = files
        self.class_names = tuple(class_names)
        self.seen_mask = np.asarray(seen_mask, dtype=bool)
        self.mode = mode
        self.calibration = calibration
        self.scores = scores
        self.boxes = boxes
        self.attention_maps = maps
        self.images = images
        self.ids, self.top_scores, self.ranked_scores = rank_classes(
            scores, self.seen_mask, mode, calibration, top_k)
        self.names = [[self.class_names[i] for i in row] for row in self.ids]

    def __len__(self):
        return len(self.scores)

    def predicted_names(self):
        """The top-1 class name of each image."""
        return [row[0] for row in self.names]

    def to_csv(self, path):
        """Writes `file, top1_name, top1_score, ..., part0_x, part0_y, part0_side, ...`."""
        k = self.ids.shape[1]
        parts = 0 if self.boxes is None else self.boxes.shape[1]
        header = ["file"]
        for r in range(1, k + 1):
            header += [f"top{r}_name", f"top{r}_score"]
        for p in range(parts):
            header += [f"part{p}_x", f"part{p}_y", f"part{p}_side"]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for i in range(len(self)):
            row = [self.files[i] if self.files else str(i)]
            for name, score in zip(self.names[i], self.top_scores[i]):
                row += [name, f"{score:.6f}"]
            for p in range(parts):
                row += [f"{v:.4f}" for v in self.boxes[i, p]]
            writer.writerow(row)
        write_text_atomic(path, buffer.getvalue())
        return path

    def write_figures(self, folder):
        """One PNG per image: the image with its part boxes and each attention map,
        titled with the top-1 prediction. Needs `keep_images=True` and a model with
        attention maps. Returns the written paths."""
        if self.images is None or self.attention_maps is None or self.boxes is None:
            raise PredictError(
                "Figures need the images (predict(..., keep_images=True)) and a model "
                "with attention maps and part boxes (boxes from attention)."
            )
        os.makedirs(folder, exist_ok=True)
        written = []
        for i in range(len(self)):
            stem = (os.path.splitext(os.path.basename(self.files[i]))[0] if self.files
                    else f"image_{i:04d}")
            path = os.path.join(folder, f"{i:04d}_{stem}.png")
            plot_attention_grid(
                self.images[i:i + 1], self.attention_maps[i:i + 1], self.boxes[i:i + 1], path,
                predictions=self.ids[i:i + 1, 0], class_names=self.class_names,
                titles=[f"{self.names[i][0]} ({self.top_scores[i][0]:.3g}, {self.mode})"],
            )
            written.append(path)
        return written


# --------------------------------------------------------------------------
# Predictors
# --------------------------------------------------------------------------


def _batches_of(inputs, image_size, batch_size):
    """(files or None, iterator of (float32 (B, S, S, 3) images)) for any input kind."""
    import tensorflow as tf

    if isinstance(inputs, tf.data.Dataset):
        def from_dataset():
            for element in inputs:
                images = element[0] if isinstance(element, (tuple, list)) else element
                images = images if images.shape.rank == 4 else images[None]
                yield resize_image(images, image_size).numpy()
        return None, from_dataset()
    if isinstance(inputs, np.ndarray) or hasattr(inputs, "shape"):
        array = np.asarray(inputs)
        array = array[None] if array.ndim == 3 else array
        if array.ndim != 4 or array.shape[-1] != 3:
            raise PredictError(
                f"Images must be (N, H, W, 3) or (H, W, 3) RGB arrays in [0, 255]; got "
                f"shape {array.shape}."
            )

        def from_array():
            for start in range(0, len(array), batch_size):
                yield resize_image(tf.constant(array[start:start + batch_size]),
                                   image_size).numpy()
        return None, from_array()
    files = list_images(inputs)
    split = ImageSplit(files, np.zeros(len(files), "int64"))
    ds = make_dataset(split, image_size, batch_size, training=False, deterministic=True)
    return files, (images.numpy() for images, _ in ds)


class Predictor:
    """A trained SGMA model (`.keras`, any backend) ready to name images.

    Build one with `load_predictor(path)` or `Predictor(model)`.
    """

    def __init__(self, model, source=None):
        self.model = model
        self.source = source

    # --- the class set ---

    @property
    def class_names(self):
        return tuple(self.model.class_names)

    @property
    def seen_mask(self):
        """The classes GZSL counts as seen (calibration lowers them, ZSL skips them)."""
        return np.asarray(self.model.gzsl_seen_mask)

    @property
    def calibration(self):
        return self.model.calibration

    @property
    def image_size(self):
        return int(self.model.image_size)

    @property
    def semantic_dim(self):
        return int(np.asarray(self.model.semantics).shape[1])

    def add_classes(self, names, semantics):
        """Scores new classes too, from their raw semantic vectors (zero-shot; they get
        the model's `semantics_transform`, as the training classes did)."""
        semantics = self._check_vectors(semantics, names)
        try:
            self.model.add_classes(semantics, list(names))
        except ValueError as error:  # e.g. a name the model already has
            raise PredictError(str(error)) from None

    def set_classes(self, names, semantics):
        """Scores exactly these classes, from their raw semantic vectors (a row whose
        transformed vector equals a training class's is that class; the others are
        unseen)."""
        semantics = self._check_vectors(semantics, names)
        try:
            self.model.set_class_semantics(semantics, None, list(names))
        except ValueError as error:
            raise PredictError(str(error)) from None

    def _check_vectors(self, semantics, names):
        semantics = np.asarray(semantics, dtype="float32")
        if semantics.ndim != 2 or semantics.shape[1] != self.semantic_dim:
            raise PredictError(
                f"New class vectors of shape {semantics.shape}; expected (n, "
                f"{self.semantic_dim}): one row per class, the model's semantic width."
            )
        if len(names) != len(semantics):
            raise PredictError(f"{len(names)} names for {len(semantics)} class vectors.")
        return semantics

    # --- scoring ---

    def outputs(self, images):
        """Model outputs (NumPy) of a float batch at the model's size."""
        out = self.model.predict_on_batch(images)
        return {k: to_numpy(v) for k, v in out.items()}

    def predict(self, inputs, top_k=5, mode=None, batch_size=16, keep_images=False,
                calibration=None):
        """Top-k classes of images.

        Args:
            inputs: image files or folders (str / list), an array (N, H, W, 3) or
                (H, W, 3) of RGB pixels in [0, 255] (any size: resized as in
                evaluation), or a `tf.data.Dataset` of such batches (or of
                (images, labels) pairs).
            top_k: how many classes per image.
            mode: one of `MODES` (default: calibrated GZSL when the model has a
                calibration constant, else GZSL).
            keep_images: keep the resized images (for `Predictions.write_figures`).
            calibration: use this constant instead of the model's.

        Returns:
            `Predictions`.
        """
        calibration = self.calibration if calibration is None else finite_calibration(calibration)
        mode = default_mode(mode, calibration)
        files, batches = _batches_of(inputs, self.image_size, int(batch_size))
        scores, boxes, maps, kept = [], [], [], []
        for images in batches:
            out = self.outputs(images)
            scores.append(out["scores"].astype("float32"))
            if "boxes" in out:
                boxes.append(out["boxes"].astype("float32"))
            if "attention_maps" in out:
                maps.append(out["attention_maps"].astype("float32"))
            if keep_images:
                kept.append(images)
        return Predictions(files, self.class_names, self.seen_mask, mode, calibration,
                           _cat(scores), _cat(boxes), _cat(maps), _cat(kept), top_k)


def _cat(arrays):
    return np.concatenate(arrays) if arrays else None


def finite_calibration(value):
    """`value` as a float; a PredictError unless it is a finite number (a NaN constant
    would make every calibrated score NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise PredictError(f"calibration must be a finite number; got {value!r}.")
    return number


def default_mode(mode, calibration):
    """`mode`, or the default: calibrated GZSL when a constant is known, else GZSL."""
    if mode is not None:
        return mode
    if calibration is None:
        log.info("The model has no calibration constant: ranking with plain GZSL.")
        return "gzsl"
    return "gzsl-calibrated"


class SavedModelPredictor(Predictor):
    """An exported SavedModel folder (TensorFlow only; the class set is fixed).

    A SavedModel's graph is code that loading and predicting run. Before anything is
    loaded, the op types of every function it can run are read from saved_model.pb
    (`export.saved_model_ops`); a folder using ops export.py never writes is refused
    unless `trust=True` (`predict.py --trust-savedmodel`).
    """

    def __init__(self, path, trust=False):
        import tensorflow as tf

        info_path = os.path.join(path, "assets.extra", EXPORT_JSON)
        if not os.path.isfile(info_path):
            raise PredictError(
                f"{path!r} is not an sgma_keras SavedModel export (no {info_path}); "
                "expected a folder written by export.py."
            )
        if not trust:
            check_saved_model_graph(path)
        with open(info_path, encoding="utf-8") as handle:
            self.info = json.load(handle)
        self.loaded = tf.saved_model.load(path)
        self.serve = self.loaded.signatures["serving_default"]
        info = {k: v.numpy() for k, v in self.loaded.signatures["class_info"]().items()}
        self._names = tuple(n.decode("utf-8") for n in info["class_names"])
        self._seen = info.get("gzsl_seen", info["is_seen"]).astype(bool)
        has = bool(info.get("has_calibration", False))
        self._calibration = float(info["calibration"]) if has else None
        self.source = path
        self.model = None

    class_names = property(lambda self: self._names)
    seen_mask = property(lambda self: self._seen)
    calibration = property(lambda self: self._calibration)
    image_size = property(lambda self: int(self.info["image_size"]))
    semantic_dim = property(lambda self: int(self.info["semantic_dim"]))

    def add_classes(self, names, semantics):
        raise PredictError(
            "A SavedModel scores the classes fixed at export; to add classes, predict from "
            "the .keras checkpoint, or export again with --semantics/--class-names."
        )

    set_classes = add_classes

    def _serve(self, images):
        import tensorflow as tf

        images = np.asarray(images)
        if images.dtype != np.uint8:  # the signature takes uint8 pixels
            images = np.clip(np.round(images), 0, 255).astype("uint8")
        out = self.serve(images=tf.constant(images))
        return {k: v.numpy() for k, v in out.items()}

    def predict(self, inputs, top_k=5, mode=None, batch_size=16, keep_images=False,
                calibration=None):
        """As `Predictor.predict`. Images go to the signature at their own size (files
        decoded exactly as PIL does, one at a time); the graph resizes them as
        evaluation does. Float arrays are rounded to uint8 pixels first."""
        import tensorflow as tf

        calibration = self.calibration if calibration is None else finite_calibration(calibration)
        mode = default_mode(mode, calibration)
        files = None
        if isinstance(inputs, tf.data.Dataset):
            batches = (e[0] if isinstance(e, (tuple, list)) else e for e in inputs)
            batches = (b.numpy() if b.shape.rank == 4 else b.numpy()[None] for b in batches)
        elif isinstance(inputs, np.ndarray) or hasattr(inputs, "shape"):
            array = np.asarray(inputs)
            array = array[None] if array.ndim == 3 else array
            batches = (array[i:i + batch_size] for i in range(0, len(array), batch_size))
        else:
            files = list_images(inputs)
            batches = (decode_image_bytes(tf.io.read_file(f)).numpy()[None] for f in files)
        scores, boxes, maps, kept = [], [], [], []
        for images in batches:
            out = self._serve(images)
            scores.append(out["scores"])
            boxes.append(out["boxes"])
            if "attention_maps" in out:
                maps.append(out["attention_maps"])
            if keep_images:
                kept.append(resize_image(tf.constant(images), self.image_size).numpy())
        return Predictions(files, self.class_names, self.seen_mask, mode, calibration,
                           _cat(scores), _cat(boxes), _cat(maps), _cat(kept), top_k)


def _is_saved_model(path):
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb"))


def check_saved_model_graph(path):
    """Raises PredictError, running nothing, when the SavedModel at `path` can run ops
    an export.py graph never holds (file access, printing to files, ...)."""
    try:
        extra = untrusted_ops(path)
    except UserError as error:
        raise PredictError(str(error)) from None
    if extra:
        shown = ", ".join(extra[:8]) + (f" and {len(extra) - 8} more" if len(extra) > 8 else "")
        raise PredictError(
            f"SavedModel {path!r} was not written by export.py: its graph runs ops an "
            f"export never holds ({shown}), so it was not loaded; predict from the "
            ".keras checkpoint, or pass --trust-savedmodel (trust_savedmodel=True) to "
            "run its code anyway."
        )


def load_predictor(path, trust_savedmodel=False):
    """A `Predictor` of a `.keras` checkpoint (any backend, loaded in Keras's safe
    mode) or of an exported SavedModel folder (run by TensorFlow, whatever the Keras
    backend; refused unless its graph holds only the ops export.py writes, or
    `trust_savedmodel`)."""
    path = os.fspath(path)
    if _is_saved_model(path):
        return SavedModelPredictor(path, trust=trust_savedmodel)
    return Predictor(load_checkpoint(path), source=path)


def semantic_width(path):
    """The semantic width of a `.keras` file or SavedModel folder, without loading it."""
    path = os.fspath(path)
    if _is_saved_model(path):
        info_path = os.path.join(path, "assets.extra", EXPORT_JSON)
        if not os.path.isfile(info_path):
            raise PredictError(f"{path!r} is a SavedModel without {info_path}; expected a "
                               "folder written by export.py.")
        with open(info_path, encoding="utf-8") as handle:
            return int(json.load(handle)["semantic_dim"])
    return len(saved_semantics(read_checkpoint_config(path))[0])


def run_predict(model_path, inputs, output_csv, classes_file=None, replace_classes=False,
                mode=None, top_k=5, figures_dir=None, batch_size=16, calibration=None,
                trust_savedmodel=False, skip_bad_images=False):
    """The `predict.py` pipeline; returns the `Predictions`."""
    # Cheap checks first: images, model file, classes file.
    files = usable_images(list_images(inputs), skip_bad_images)
    if calibration is not None:
        calibration = finite_calibration(calibration)
    new_classes = None
    if classes_file is not None:
        new_classes = read_classes_file(classes_file, semantic_width(model_path))
    predictor = load_predictor(model_path, trust_savedmodel)
    if new_classes is not None:
        names, vectors = new_classes
        if replace_classes:
            predictor.set_classes(names, vectors)
        else:
            clash = sorted(set(names) & set(predictor.class_names))
            if clash:
                raise PredictError(
                    f"{classes_file}: classes {clash[:5]} are already classes of the model; "
                    "rename them, or pass --replace-classes to score only the file's classes."
                )
            predictor.add_classes(names, vectors)
    result = predictor.predict(files, top_k=top_k, mode=mode, batch_size=batch_size,
                               keep_images=figures_dir is not None, calibration=calibration)
    result.to_csv(output_csv)
    if figures_dir is not None:
        result.write_figures(figures_dir)
    return result
