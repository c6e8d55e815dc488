"""Run configuration: one declarative schema, JSON loading, overrides, validation, saving.

Every key the project reads lives in ``SCHEMA`` below, with its type, default, range and a
one-line doc. Defaults are the paper's settings; every **[choice]** of the spec is a key
here with the spec's default.

The ``model`` sections (``model.backbone``, ``model.attention``, ``model.cropper``,
``model.embedding``, ``model.center``), the model's own keys (``model.*``,
``input.image_size``, ``input.global_size``) and ``loss`` are the arguments of the pieces
they build, declared with them in ``sgma_keras.arguments``: a model option is added
there. Any other key is one ``Field`` in ``SCHEMA`` (and, if it relates to other keys,
one ``@_rule`` function below). Loading, validation, override parsing, saving and
docs/CONFIG.md follow. Files of the first, flat layout are read through
``sgma_keras.upgrade``.

The values of ``data.source`` and ``model.backbone.name``, and what the checks need to know
of each (required paths, feature channels), come from ``sgma_keras.registry``: a new
data source or backbone is one registration there (docs/extending.md).

Usage::

    cfg = load_config("configs/cub.json", ["model.num_parts=3", "train.jit=true"])
    cfg["model"]["num_parts"]  # -> 3

Conventions of the config files:

* JSON objects mirror the schema's sections; keys starting with ``_`` are comments at any
  level and are dropped from the resolved config.
* A file states only what differs from the defaults (plus, for the paper configs, what
  documents the paper's setting); everything else is filled from the schema.
* Relative paths are resolved against the working directory (run from the repo root).
* Floats accept JSON integers; ints do not accept floats; bools are JSON ``true``/``false``.

All problems in a config are collected and raised together in one :class:`ConfigError`.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import platform
import sys
from typing import Any, Callable, Iterable, Mapping

from sgma_keras.arguments import LOSS, MODEL, NULLABLE_SECTIONS, SECTIONS, crop_fits_image
from sgma_keras.atomic_io import write_text_atomic
from sgma_keras.errors import UserError
from sgma_keras.fields import PATH, Field
from sgma_keras.fields import Invalid as _Invalid
from sgma_keras.fields import num as _num
from sgma_keras.fields import show as _show
from sgma_keras.registry import BACKBONES, SOURCES
from sgma_keras.text_input import MiB, read_text
from sgma_keras.upgrade import upgrade_override, upgrade_run_config

__all__ = [
    "PATH",
    "ConfigError",
    "Field",
    "SCHEMA",
    "load_config",
    "validate_config",
    "resolve_section",
    "architecture_keys",
    "default_config",
    "parse_override",
    "apply_overrides",
    "config_to_json",
    "save_resolved_config",
    "schema_markdown",
    "reference_markdown",
]


_MISSING = object()


class Section(dict):
    """A schema section: key -> Field or Section. `nullable`: `null` turns off what the
    section builds (`model.center: null`); `doc`: its line in the reference."""

    def __init__(self, fields, *, nullable=False, doc=""):
        super().__init__(fields)
        self.nullable = nullable
        self.doc = doc


class ConfigError(UserError):
    """Invalid configuration; ``errors`` lists each problem, prefixed by its key path."""

    def __init__(self, errors: str | Iterable[str], source: str | None = None):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.source = None if source is None else str(source)
        where = f" {self.source!r}" if self.source else ""
        n = len(self.errors)
        head = f"invalid configuration{where} ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n  - ".join([head, *self.errors]))


# ---------------------------------------------------------------------------------------
# The schema. Defaults are the paper's settings; [paper] / [choice] tags follow the spec.
# ---------------------------------------------------------------------------------------

# The choices of data.source and model.backbone, which paths each source requires and
# the backbones' feature channels come from sgma_keras.registry.

SCHEMA: dict[str, Any] = {
    "name": Field(str, "sgma", doc="run name; `{name}` in output_dir expands to it"),
    "seed": Field(int, 0, min=0, doc="global random seed (Python, NumPy and backend)"),
    "output_dir": Field(PATH, "runs/{name}",
                        doc="run folder (checkpoints, logs, resolved config); `{name}` expands"),
    "data": {
        "source": Field(str, "builtin", choices=SOURCES.names,
                        doc="dataset loader: built-in synthetic set, Xian et al. proposed split "
                            "(.mat files + images), raw CUB/AwA2/FLO folders, or TFDS"),
        "root": Field(PATH, None, exists="dir",
                      doc="image root folder (needed by proposed_split and the *_raw sources)"),
        "split_dir": Field(PATH, None, exists="dir",
                           contains=("att_splits.mat", "res101.mat"),
                           doc="folder holding att_splits.mat and res101.mat (proposed_split)"),
        "semantics": Field(str, "att", choices=("att", "original_att"),
                           doc="class semantic vectors from att_splits.mat: `att` (class-wise "
                               "L2-normalised) or `original_att`"),
        "normalize_semantics": Field(bool, True,
                                     doc="L2-normalise each class semantic vector on load"),
        "val_fraction": Field(float, 0.2, gt=0, lt=1,
                              doc="share of seen classes held out as validation classes"),
        "bad_images": Field(str, "error", choices=("error", "skip"),
                            doc="missing or unreadable image: stop with an error, or skip it "
                                "with a warning (counted per split)"),
        "check_images": Field(str, "header", choices=("header", "decode"),
                              doc="how every split's images are checked before training "
                                  "and evaluation: `header` (signature and end marker, a few "
                                  "bytes a file) or `decode` (a full decode: also finds "
                                  "corrupt data inside a file, JPEG decoder warnings "
                                  "included; slow)"),
        "seed": Field(int, None, min=0,
                      doc="seed of the generated class/image splits (and of the built-in "
                          "images); null: the run's `seed`"),
        "name": Field(str, None,
                      doc="dataset name in results; null: from the source (proposed_split: "
                          "the split_dir folder name upper-cased, CUB/AWA2/FLO have their "
                          "released split sizes checked)"),
        "unseen_fraction": Field(float, 0.25, gt=0, lt=1,
                                 doc="raw and TFDS sources without a class split file: share "
                                     "of the classes made unseen by a seeded split"),
        "test_seen_fraction": Field(float, 0.2, gt=0, lt=1,
                                    doc="builtin, raw and TFDS sources: share of each seen "
                                        "class's images held out as test_seen"),
        "builtin": {
            "num_classes": Field(int, 24, min=2, doc="classes of the built-in synthetic set"),
            "num_unseen": Field(int, 6, min=1, doc="of which unseen (test-only) classes"),
            "num_images": Field(int, 2000, min=1, doc="images in the built-in set"),
            "image_size": Field(int, 448, min=32, doc="side of the generated images in pixels"),
            "part_size": Field(list, [0.08, 0.12], item=float, length=2,
                               doc="[min, max] side of the head/tail parts, share of the image "
                                   "side (small parts are what makes localisation matter)"),
            "jpeg_quality": Field(int, 90, min=50, max=100, doc="JPEG quality of the images"),
            "pattern_period": Field(int, 0, min=0,
                                    doc="0: coarse part patterns; N (a multiple of 4): fine "
                                        "stripes/dots of an N-pixel period, one tint once "
                                        "the image is average-pooled by N (see "
                                        "input.global_size)"),
            "colour_attribute": Field(bool, True,
                                      doc="part colours are class attributes; false: a "
                                          "per-image nuisance (classes told by part shapes "
                                          "and patterns)"),
            "max_tilt": Field(float, 180.0, min=0.0, max=180.0,
                              doc="the head points within this many degrees of straight up "
                                  "(a canonical pose, like CUB's upright birds); 180: any "
                                  "orientation"),
            "species_per_genus": Field(int, 1, min=1, max=9,
                                       doc="1: classes drawn freely; S > 1: genera (part "
                                           "shapes and colours) of S species that differ "
                                           "only in their part patterns, unseen classes in "
                                           "pairs of one genus (fine-grained, like CUB)"),
            "cache_dir": Field(PATH, "~/.cache/sgma_keras/builtin",
                               doc="where the generated set is cached"),
        },
        "tfds": {
            "name": Field(str, "caltech_birds2011",
                          choices=("caltech_birds2011", "oxford_flowers102"),
                          doc="TensorFlow Datasets name (source tfds)"),
            "data_dir": Field(PATH, None, doc="TFDS data_dir; null: the TFDS default"),
            "class_split": Field(PATH, None, exists="file",
                                 doc="seen/unseen class split file; null: a seeded split of "
                                     "data.unseen_fraction"),
            "semantics_file": Field(PATH, None, exists="file",
                                    doc="class semantic vectors file (.npy, .mat, text), one "
                                        "row per TFDS label"),
            "semantics_key": Field(str, None,
                                   doc="variable of a .mat semantics_file; null: `att`"),
            "cache_dir": Field(PATH, "~/.cache/sgma_keras/tfds",
                               doc="where the TFDS images are exported once as files"),
            "download": Field(bool, False,
                              doc="let TFDS download and prepare the dataset (needs the "
                                  "network); false: it must be prepared in data_dir"),
        },
        "flowers": {
            "class_split": Field(PATH, None, exists="file",
                                 doc="seen/unseen class split file (flowers_raw)"),
            "semantics_file": Field(PATH, None, exists="file",
                                    doc="class semantic vectors file (flowers_raw)"),
            "semantics_key": Field(str, None,
                                   doc="variable of a .mat semantics_file; null: `att`"),
            "class_names_file": Field(PATH, None, exists="file",
                                      doc="one class name per line in label order; null: "
                                          "class_001 ... class_102"),
        },
        "raw": {
            "class_split": Field(PATH, None, exists="file",
                                 doc="seen/unseen class split file (cub_raw, awa2_raw); null: "
                                     "the loader's default"),
            "parts": Field(bool, True,
                           doc="cub_raw: read parts/part_locs.txt (for the part "
                               "localisation score)"),
        },
    },
    "input": {
        "image_size": MODEL.fields["image_size"],
        "global_size": MODEL.fields["global_size"],
        "batch_size": Field(int, 32, min=1, doc="training batch size [paper: 32]"),
        "cache": Field(bool, False, doc="cache decoded, resized images in memory"),
        "deterministic": Field(bool, False, doc="deterministic input pipeline order (slower)"),
        "augment": {
            "flip": Field(bool, True, doc="random horizontal flips of training images"),
            "min_crop_area": Field(float, 0.64, gt=0, max=1,
                                   doc="random crop: smallest area share kept (1: no crop)"),
            "color_jitter": Field(float, 0.1, min=0, max=1,
                                  doc="brightness/contrast/saturation jitter strength (0: off)"),
        },
    },
    # Each section of `model` is the arguments of the piece it builds, declared with
    # the piece (sgma_keras.arguments); the other keys are the model's own.
    "model": {
        **{key: MODEL.fields[key] for key in MODEL.names
           if key not in ("image_size", "global_size")},
        **{name: Section(arguments.section(), nullable=name in NULLABLE_SECTIONS,
                         doc=f"the arguments of {arguments.owner}"
                             + ("; null: no class-center branch" if name == "center" else ""))
           for name, (arguments, _) in SECTIONS.items()},
    },
    "loss": LOSS.section(),
    "train": {
        "optimizer": Field(str, "sgd", choices=("sgd", "adam"), doc="optimizer [paper: sgd]"),
        "learning_rate": Field(float, 0.05, gt=0, doc="initial learning rate [paper: 0.05]"),
        "momentum": Field(float, 0.9, min=0, lt=1, doc="SGD momentum [paper: 0.9]"),
        "weight_decay": Field(float, 5e-4, min=0, doc="weight decay [paper: 5e-4]"),
        "weight_decay_mode": Field(str, "decoupled", choices=("coupled", "decoupled"),
                                   doc="`coupled`: wd*w added to the gradient before momentum "
                                       "(PyTorch SGD, the paper's; ~10x stronger at momentum "
                                       "0.9); `decoupled`: Keras's w -= lr*wd*w [paper: coupled]"),
        "lr_factor": Field(float, 0.1, gt=0, lt=1,
                           doc="learning rate factor on a plateau of monitor [paper: 0.1]"),
        "lr_patience": Field(int, 2, min=0, doc="epochs without improvement before a drop"),
        "min_lr": Field(float, 5e-4, min=0, doc="learning rate floor [paper: 5e-4]"),
        "fit_classes": Field(str, "train", choices=("train", "trainval"),
                             doc="`train`: hold out validation classes to choose the epoch "
                                 "count, gamma_cc and the calibration constant (then "
                                 "`refit`); `trainval`: one fit on all seen classes, "
                                 "nothing chosen on validation"),
        "refit": Field(bool, True,
                       doc="with fit_classes=train: after the choices, fit again on all "
                           "seen (trainval) classes with the chosen epoch counts and "
                           "learning rates; the test splits score that model (Xian et al.'s "
                           "protocol). false: they score the model chosen on validation"),
        "val_seen_fraction": Field(float, 0.1, min=0, lt=1,
                                   doc="share of each training class's images held out for "
                                       "validation seen accuracy"),
        "steps_per_epoch": Field(int, None, min=1,
                                 doc="batches per epoch; null: one pass over the data"),
        "backup_every_steps": Field(int, 50, min=1,
                                    doc="steps between BackupAndRestore backups (a killed run "
                                        "resumes from the last one); epoch ends always back up"),
        "tensorboard": Field(bool, True, doc="write TensorBoard logs in <run>/tensorboard"),
        "warmup": {
            "enabled": Field(bool, True,
                             doc="stage 1: seen-class classification warm-up of the global "
                                 "backbone [choice]"),
            "epochs": Field(int, 5, min=0, doc="warm-up epochs"),
            "learning_rate": Field(float, None, gt=0,
                                   doc="warm-up learning rate; null: train.learning_rate"),
        },
        "init": {
            "enabled": Field(bool, True,
                             doc="stage 2: channel clustering and attention FC pre-fit [paper]"),
            "num_images": Field(int, 512, min=1,
                                doc="training images sampled for channel peak positions"),
            "copy_global_to_parts": Field(bool, True,
                                          doc="start every part backbone from the warmed-up "
                                              "global backbone [choice]"),
            "kmeans_iters": Field(int, 100, min=1, doc="k-means iterations"),
        },
        "joint": {
            "enabled": Field(bool, True, doc="stage 3: all losses jointly, end to end"),
            "epochs": Field(int, 30, min=0, doc="joint training epochs"),
            "schedule": Field(str, "joint", choices=("joint", "alternate"),
                              doc="`joint`: every sub-network updates at every step; "
                                  "`alternate`: the attention subnet (multi-attention and "
                                  "its backbone) and the rest update in turns, the other "
                                  "frozen (MA-CNN's alternation) [choice]"),
            "alternate_steps": Field(int, None, min=1,
                                     doc="steps in each turn of the `alternate` schedule; "
                                         "null: one epoch"),
        },
        "jit": Field(bool, False, doc="jit-compile the train step (XLA)"),
        "mixed_precision": Field(str, None, choices=("mixed_float16", "mixed_bfloat16"),
                                 doc="Keras dtype policy; null: float32"),
        "distribute": Field(str, "none", choices=("none", "data_parallel"),
                            doc="`data_parallel`: replicate over all local accelerators, or over "
                                "every process's (docs/multi_host.md)"),
        "monitor": Field(str, "val_zsl_acc",
                         doc="metric driving the plateau schedule and checkpoint choice"),
    },
    "eval": {
        "batch_size": Field(int, None, min=1, doc="evaluation batch size; null: input.batch_size"),
        "calibration_points": Field(int, 41, min=2,
                                    doc="calibration values on the GZSL seen-unseen curve"),
        "visualize_images": Field(int, 8, min=0,
                                  doc="test images drawn with attention maps and part boxes"),
    },
}

# ---------------------------------------------------------------------------------------
# Cross-field rules: each gets the values of its keys (only when all of them are valid)
# and returns None or an error message starting with a key path.
# ---------------------------------------------------------------------------------------

_RULES: list[tuple[tuple[str, ...], Callable[..., str | None]]] = []


def _rule(*keys: str):
    def deco(fn):
        _RULES.append((keys, fn))
        return fn
    return deco


@_rule("name")
def _run_name(name):
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        return (f"name: a run name is one folder name (it expands `{{name}}` in output_dir), "
                f"without '/', '\\' or '..'; got {_show(name)}")


@_rule("data.builtin.num_unseen", "data.builtin.num_classes")
def _builtin_unseen(num_unseen, num_classes):
    if num_unseen >= num_classes:
        return (f"data.builtin.num_unseen: must be < data.builtin.num_classes, got "
                f"{num_unseen} >= {num_classes}")


@_rule("train.min_lr", "train.learning_rate")
def _min_lr(min_lr, learning_rate):
    if min_lr > learning_rate:
        return (f"train.min_lr: must be <= train.learning_rate, got {_num(min_lr)} > "
                f"{_num(learning_rate)}")


# The rules the model's pieces apply to their own arguments (sgma_keras.arguments), run
# on their sections; their messages start with the argument, prefixed here by its path.
def _section_rules(arguments, prefix):
    for keys, fn in arguments.rules:
        def run(*values, fn=fn):
            message = fn(*values)
            return f"{prefix}{message}" if message else None
        _RULES.append((tuple(f"{prefix}{key}" for key in keys), run))


for _name, (_arguments, _) in SECTIONS.items():
    _section_rules(_arguments, f"model.{_name}.")
_section_rules(MODEL, "input.")  # global_size | image_size
_rule("model.cropper.output_size", "input.image_size")(
    lambda output_size, image_size: (
        None if crop_fits_image(output_size, image_size) is None
        else f"model.cropper.{crop_fits_image(output_size, image_size)}"))


# Each attention part is a group of the backbone's feature channels (a count registered
# with the backbone, possibly a function of the backbone section). The whole section is
# passed, so the rule is skipped while any of its keys is invalid.
@_rule("model.num_parts", "model.cropper.box_source", "model.backbone")
def _parts_per_channel(num_parts, box_source, backbone):
    entry = BACKBONES.get(backbone["name"])
    if box_source != "attention" or (backbone["feature_layer"] is not None and entry.tappable):
        return None  # random boxes need no channels; another tap's width is unknown here
    channels = entry.channels(backbone) if callable(entry.channels) else entry.channels
    if channels is not None and num_parts > channels:
        where = entry.channels_note.format(**backbone)
        return (f"model.num_parts: each part is a group of the backbone's feature "
                f"channels, and {backbone['name']} has {channels} ({where}); got {num_parts} "
                f"parts: expected at most {channels}")


# ---------------------------------------------------------------------------------------
# Schema helpers
# ---------------------------------------------------------------------------------------

def _iter_fields(schema: Mapping, prefix: str = ""):
    """(key path, Field) for every leaf, in schema order."""
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        if isinstance(spec, Mapping):
            yield from _iter_fields(spec, path + ".")
        else:
            yield path, spec


def _all_paths(schema: Mapping, prefix: str = ""):
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(spec, Mapping):
            yield from _all_paths(spec, path + ".")


def _lookup(tree: Mapping, path: str, default=_MISSING):
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _suggest(name: str, section: Mapping, schema: Mapping) -> str:
    """' (did you mean ...?)' for an unknown key ``name`` found in ``section``."""
    paths = list(_all_paths(schema))
    elsewhere = [p for p in paths if p.rsplit(".", 1)[-1] == name]
    if elsewhere:
        return " (did you mean " + " or ".join(repr(p) for p in elsewhere[:3]) + "?)"
    close = difflib.get_close_matches(name, list(section), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    leaves = {}
    for p in paths:
        leaves.setdefault(p.rsplit(".", 1)[-1], p)
    close = difflib.get_close_matches(name, list(leaves), n=1, cutoff=0.75)
    if close:
        return f" (did you mean {leaves[close[0]]!r}?)"
    return ""


# ---------------------------------------------------------------------------------------
# Reading, overrides, validation
# ---------------------------------------------------------------------------------------

class _Obj(dict):
    """A JSON object that remembers keys it saw twice."""
    duplicates: tuple = ()


def _pairs(pairs):
    obj = _Obj()
    dups = []
    for k, v in pairs:
        if k in obj:
            dups.append(k)
        obj[k] = v
    obj.duplicates = tuple(dups)
    return obj


# Configs are a few KiB; the bound refuses /dev/urandom or a huge file before it fills
# memory.
MAX_CONFIG_BYTES = MiB


def _read_json(path: str) -> Any:
    try:
        text = read_text(path, "config file", MAX_CONFIG_BYTES,
                         error=lambda message: ConfigError(message, source=path))
    except FileNotFoundError:
        raise ConfigError(_not_found(path), source=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file: {e}", source=path) from None
    try:
        return json.loads(text, object_pairs_hook=_pairs)
    except json.JSONDecodeError as e:
        lines = text.splitlines()
        shown = lines[e.lineno - 1] if 0 < e.lineno <= len(lines) else ""
        raise ConfigError(
            f"{path}:{e.lineno}:{e.colno}: invalid JSON at line {e.lineno}, column {e.colno}: "
            f"{e.msg}\n      | {shown}\n      | {' ' * (e.colno - 1)}^",
            source=path) from None


def parse_override(item: str) -> tuple[str, Any]:
    """Split 'a.b=value' into ('a.b', value); value is parsed as JSON, else kept a string."""
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. model.num_parts=3")
    key, _, text = item.partition("=")
    key = key.strip()
    if key.startswith("--set"):  # tolerate '--set a.b=1' passed as one string
        key = key[len("--set"):].strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return key, value


def _deep_merge(base: dict, update: Mapping) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def apply_overrides(raw: Mapping, overrides: Iterable[str], schema: Mapping | None = None,
                    errors: list[str] | None = None) -> dict:
    """Return a copy of ``raw`` with 'a.b=value' overrides applied.

    Unknown keys are collected into ``errors`` when given, else raised as ConfigError.
    Values are not validated here (validate_config does that).
    """
    schema = SCHEMA if schema is None else schema
    own = errors is None
    errors = [] if own else errors
    raw = copy.deepcopy(raw) if isinstance(raw, dict) else dict(raw)
    if isinstance(overrides, str):
        overrides = [overrides]
    for item in overrides:
        try:
            parsed = parse_override(item)
        except ConfigError as e:
            errors.extend(e.errors)
            continue
        for key, value in upgrade_override(*parsed):
            parts = key.split(".")
            if any(not p for p in parts):
                errors.append(f"override {item!r}: malformed key {key!r}")
                continue
            spec: Any = schema
            for i, part in enumerate(parts):
                if not isinstance(spec, Mapping):
                    errors.append(f"{'.'.join(parts[:i])}: is a value, not a section, so "
                                  f"{key!r} does not exist (override {item!r})")
                    break
                if part not in spec and not part.startswith("_"):
                    errors.append(f"{'.'.join(parts[:i + 1])}: unknown key"
                                  f"{_suggest(part, spec, schema)} (override {item!r})")
                    break
                spec = spec.get(part)
            else:
                node = raw
                for part in parts[:-1]:
                    if not isinstance(node.get(part), dict):
                        node[part] = {}
                    node = node[part]
                last = parts[-1]
                if isinstance(value, Mapping) and isinstance(node.get(last), Mapping):
                    node[last] = _deep_merge(node[last], value)
                else:
                    node[last] = value
    if own and errors:
        raise ConfigError(errors)
    return raw


def _resolve(raw: Any, schema: Mapping, prefix: str, errors: list[str], bad: set,
             full: Mapping) -> dict:
    out: dict[str, Any] = {}
    for dup in getattr(raw, "duplicates", ()):
        errors.append(f"{prefix}{dup}: duplicate key (only the last value would be used)")
    for key in raw:
        if isinstance(key, str) and key.startswith("_"):
            continue  # comment
        if key not in schema:
            errors.append(f"{prefix}{key}: unknown key{_suggest(str(key), schema, full)}")
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        value = raw.get(key, _MISSING)
        if isinstance(spec, Mapping):
            if value is None and getattr(spec, "nullable", False):
                out[key] = None
                continue
            if value is _MISSING:
                value = {}
            elif not isinstance(value, Mapping):
                errors.append(f"{path}: expected a section (JSON object with keys "
                              f"{', '.join(list(spec)[:4])}{', ...' if len(spec) > 4 else ''}),"
                              f" got {_show(value)}")
                bad.update(p for p in _all_paths(spec, path + "."))
                value = {}
            out[key] = _resolve(value, spec, path + ".", errors, bad, full)
        elif value is _MISSING:
            out[key] = copy.deepcopy(spec.default)
        else:
            try:
                out[key] = spec.coerce(value)
            except _Invalid as e:
                errors.append(f"{path}: {e}")
                bad.add(path)
                out[key] = copy.deepcopy(spec.default)
    return out


def _check_paths(cfg: dict, schema: Mapping, bad: set, errors: list[str]) -> None:
    source = _lookup(cfg, "data.source", None)
    if "data.source" in bad:
        return  # which paths matter is unknown
    cwd = os.getcwd()
    # Per path: the sources that require it, and those that read its section.
    required_by, read_by = {}, {}
    for entry in SOURCES:
        for key in entry.requires:
            required_by.setdefault(f"data.{key}", set()).add(entry.name)
        if entry.section:
            read_by.setdefault(f"data.{entry.section}", set()).add(entry.name)
    for path, field in _iter_fields(schema):
        if field.type is not PATH or (field.exists is None and path not in required_by):
            continue
        if path in bad:
            continue
        gate = next((srcs for sec, srcs in read_by.items() if path.startswith(sec + ".")),
                    None)
        if gate is not None and source not in gate:
            continue
        if path in required_by and source not in required_by[path]:
            continue
        value = _lookup(cfg, path, None)
        why = f" (needed by data.source {source!r})" if path in required_by else ""
        if value is None:
            if path in required_by:
                errors.append(f"{path}: required for data.source {source!r}, got null")
            continue
        if value in field.literals or field.exists is None:
            continue
        full = os.path.expanduser(value)
        rel = "" if os.path.isabs(full) else f" (relative to {cwd})"
        if not os.path.exists(full):
            kind = "directory" if field.exists == "dir" else "file"
            errors.append(f"{path}: {kind} not found: {value!r}{rel}{why}")
        elif field.exists == "dir" and not os.path.isdir(full):
            errors.append(f"{path}: not a directory: {value!r}{why}")
        elif field.exists == "file" and not os.path.isfile(full):
            errors.append(f"{path}: not a file: {value!r}{why}")
        elif field.contains:
            missing = [f for f in field.contains if not os.path.isfile(os.path.join(full, f))]
            if missing:
                errors.append(f"{path}: {value!r} lacks {', '.join(missing)}{rel}{why}")


def validate_config(raw: Mapping, *, check_paths: bool = True, schema: Mapping | None = None,
                    source: str | None = None, _errors: list[str] | None = None) -> dict:
    """Validate a raw (partial) config dict, fill defaults, return the resolved dict.

    Raises ConfigError listing every problem. ``source`` names the origin in the message.
    """
    schema = SCHEMA if schema is None else schema
    errors = [] if _errors is None else _errors
    bad: set[str] = set()
    if not isinstance(raw, Mapping):
        errors.append(f"top level: expected a JSON object, got {_show(raw)}")
        raw = {}
    cfg = _resolve(raw, schema, "", errors, bad, schema)
    for keys, fn in _RULES:
        if any(_lookup(schema, k) is _MISSING or any(b == k or b.startswith(k + ".")
                                                     for b in bad) for k in keys):
            continue
        values = [_lookup(cfg, k) for k in keys]
        if any(v is _MISSING for v in values):
            continue  # in a section turned off (null)
        msg = fn(*values)
        if msg:
            errors.append(msg)
    if check_paths:
        _check_paths(cfg, schema, bad, errors)
    if errors:
        raise ConfigError(errors, source=source)
    if isinstance(cfg.get("output_dir"), str) and isinstance(cfg.get("name"), str):
        cfg["output_dir"] = cfg["output_dir"].replace("{name}", cfg["name"])
    data = cfg.get("data")
    if isinstance(data, dict) and data.get("seed") is None and "seed" in cfg:
        data["seed"] = cfg["seed"]  # the resolved config records the seed actually used
    return cfg


def builtin_config_dir() -> str | None:
    """The folder of the configs that ship with the package (demo, awa, cub, flo, ...).

    An installed package carries them as ``sgma_keras/configs/`` (pyproject.toml maps the
    repository's ``configs/`` there); a source checkout has them in ``configs/`` beside
    the package. None if neither exists.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.path.join(here, "configs"), os.path.join(os.path.dirname(here), "configs")):
        if os.path.isfile(os.path.join(folder, "demo.json")):
            return folder
    return None


def builtin_config_names() -> list[str]:
    """The names of the built-in configs (`demo`, `awa`, ...), sorted; [] if none ship."""
    folder = builtin_config_dir()
    if folder is None:
        return []
    return sorted(name[:-len(".json")] for name in os.listdir(folder)
                  if name.endswith(".json"))


def _not_found(path: str) -> str:
    """"config file not found", the built-in configs and the closest name."""
    names = builtin_config_names()
    text = "config file not found"
    if names:
        text += f"; built-in configs: {', '.join(names)}"
        stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        close = difflib.get_close_matches(stem, names, n=1, cutoff=0.6)
        if close:
            text += f" (did you mean {close[0]!r}?)"
    return text


def find_config(path: str | os.PathLike) -> str:
    """The config file a command line names.

    A path that exists is used as given (a relative one against the current folder, as
    any file argument). Otherwise, if it names a built-in config (``demo``,
    ``demo.json`` or ``configs/demo.json``), the package's copy of it; else the path
    unchanged, which `load_config` then reports as not found. So ``sgma-train --config
    configs/demo.json`` works from any folder once the package is installed.
    """
    path = os.fspath(path)
    if os.path.exists(path):
        return path
    folder = builtin_config_dir()
    head, name = os.path.split(os.path.normpath(path))
    if folder is None or head not in ("", "configs"):
        return path
    name = name if name.endswith(".json") else name + ".json"
    candidate = os.path.join(folder, name)
    return candidate if os.path.isfile(candidate) else path


def load_config(path: str | os.PathLike | None, overrides: Iterable[str] = (), *,
                check_paths: bool = True, schema: Mapping | None = None) -> dict:
    """Read a JSON config, apply 'a.b=value' overrides, validate, fill defaults.

    Args:
      path: JSON file; None starts from the defaults.
      overrides: items like "model.num_parts=3" (the value is parsed as JSON, falling back
        to a plain string: "train.optimizer=adam", "train.mixed_precision=null",
        "model.embedding={\\"normalize\\": true}").
      check_paths: check that the data paths the chosen data.source needs (and a weights
        file) exist.
      schema: an alternative schema (tests, extensions); default SCHEMA.

    Returns the resolved nested dict (every schema key present, comments dropped,
    '{name}' expanded in output_dir). Raises ConfigError listing every problem.
    """
    schema = SCHEMA if schema is None else schema
    source = None if path is None else os.fspath(path)
    raw = {} if source is None else _read_json(source)
    errors: list[str] = []
    if not isinstance(raw, Mapping):
        errors.append(f"top level: expected a JSON object, got {_show(raw)}")
        raw = {}
    raw = upgrade_run_config(raw, source)
    raw = apply_overrides(raw, overrides, schema, errors)
    return validate_config(raw, check_paths=check_paths, schema=schema, source=source,
                           _errors=errors)


def resolve_section(name: str, values: Mapping | None, *, check_paths: bool = False) -> dict:
    """One top-level section (e.g. "data") validated against the schema, defaults filled.

    For code that takes a section on its own (``load_dataset(cfg["data"])``): a resolved
    section passes unchanged; a partial one is completed. Keys a resolved config fills
    from other sections (``data.seed`` from ``seed``) take the defaults of those.
    """
    if values is not None and not isinstance(values, Mapping):
        raise ConfigError(f"{name}: expected a section (JSON object), got {_show(values)}")
    return validate_config({name: dict(values or {})}, check_paths=check_paths)[name]


def architecture_keys(schema: Mapping | None = None) -> frozenset:
    """The keys whose value shapes the trained weights (`Field(architecture=True)`): a
    saved model of another value is another model, and a run folder never continues
    under a change of one."""
    schema = SCHEMA if schema is None else schema
    return frozenset(path for path, field in _iter_fields(schema) if field.architecture)


def default_config() -> dict:
    """The resolved default config (no file, no path checks)."""
    return validate_config({}, check_paths=False)


# ---------------------------------------------------------------------------------------
# Saving and documentation
# ---------------------------------------------------------------------------------------

def config_to_json(cfg: Mapping) -> str:
    """The config as indented JSON (schema order), ending in a newline."""
    return json.dumps(cfg, indent=2, allow_nan=False) + "\n"


def _versions() -> dict:
    import keras  # lazy: config.py itself stays import-light

    from . import __version__

    backend = keras.backend.backend()
    versions = {
        "sgma_keras": __version__,
        "keras": keras.__version__,
        "backend": backend,
        "python": platform.python_version(),
    }
    mod = sys.modules.get(backend)
    if mod is not None and getattr(mod, "__version__", None):
        versions[f"{backend}_version"] = str(mod.__version__)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        versions["numpy"] = numpy.__version__
    return versions


def save_resolved_config(cfg: Mapping, run_dir: str | os.PathLike) -> str:
    """Write ``config.json`` (the resolved config) and ``versions.json`` into run_dir.

    Each file is written atomically (temp file in run_dir, then os.replace). Returns the
    path of config.json.
    """
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    config_path = os.path.join(run_dir, "config.json")
    write_text_atomic(config_path, config_to_json(cfg))
    write_text_atomic(os.path.join(run_dir, "versions.json"),
                      json.dumps(_versions(), indent=2) + "\n")
    return config_path


def schema_markdown(schema: Mapping | None = None) -> str:
    """The schema as a Markdown table: key, type, default, description."""
    schema = SCHEMA if schema is None else schema
    rows = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]

    def walk(section, prefix):
        for key, spec in section.items():
            path = f"{prefix}{key}"
            if isinstance(spec, Mapping):
                if getattr(spec, "doc", ""):
                    kind = "section \\| null" if spec.nullable else "section"
                    rows.append(f"| `{path}` | {kind} | | {spec.doc} |")
                walk(spec, path + ".")
                continue
            default = json.dumps(spec.default).replace("|", "\\|")
            doc = spec.doc.replace("|", "\\|")
            rows.append(f"| `{path}` | {spec.type_markdown()} | `{default}` | {doc} |")

    walk(schema, "")
    return "\n".join(rows) + "\n"


def reference_markdown() -> str:
    """docs/CONFIG.md: a header and the schema table (a test keeps the file equal to it)."""
    return (
        "# Configuration reference\n\n"
        "Generated from `sgma_keras/config.py` and, for the model's sections (each the "
        "arguments of the layer it builds), `sgma_keras/arguments.py`, by "
        "`python -m sgma_keras.workflow.cli config --markdown > docs/CONFIG.md`. Keys starting "
        "with `_` are comments. `[paper]` marks the paper's setting, `[choice]` our default "
        "where the paper is silent, `[choice, not the paper's: ...]` a default that departs "
        "from the paper, with the reason. The toy-set numbers are from the option study "
        "on the built-in data (docs/ablation/options.md), not from CUB, AwA2 or FLO.\n\n"
        + schema_markdown()
    )
