"""Run configuration: the schema of every key, its cross-field rules, and loading.

Every key the project reads lives in ``SCHEMA`` below, with its type, default, range and a
one-line doc. Defaults are the paper's settings; every **[choice]** of the spec is a key
here with the spec's default.

The ``model`` sections (``model.backbone``, ``model.attention``, ``model.cropper``,
``model.embedding``, ``model.center``), the model's own keys (``model.*``,
``input.image_size``, ``input.global_size``) and ``loss`` are the arguments of the pieces
they build, declared with them in ``sgma_keras.arguments``: a model option is added
there. Any other key is one ``Field`` in ``SCHEMA`` (and, if it relates to other keys,
one ``@_rule`` function below). Files of the first, flat layout are read through
``sgma_keras.upgrade``.

How a file and ``--set`` overrides become a resolved config (reading, overrides,
suggestions, validation, path checks) is ``sgma_keras.config_validation``, which this
module hands ``SCHEMA`` and ``RULES``; writing a resolved config into a run folder and
docs/CONFIG.md is ``sgma_keras.config_output``.

The values of ``data.source`` and ``model.backbone.name``, and what the checks need to know
of each (required paths, feature channels), come from ``sgma_keras.registry``: a new
data source or backbone is one registration there (docs/extending.md).

Usage::

    cfg = load_config("configs/cub.json", ["model.num_parts=3", "train.jit=true"])
    cfg["model"]["num_parts"]  # -> 3

or, to check a config and see it resolved (or the schema as Markdown)::

    python -m sgma_keras.config configs/cub.json --set model.num_parts=3
    python -m sgma_keras.config --markdown > docs/CONFIG.md

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

import os
from typing import Any, Iterable, Mapping

from sgma_keras import config_validation as validation
from sgma_keras.arguments import LOSS, MODEL, NULLABLE_SECTIONS, SECTIONS, crop_fits_image
from sgma_keras.config_validation import (
    ConfigError,
    Rule,
    Section,
    builtin_config_names,
    find_config,
    iter_fields,
    iter_sections,
    parse_override,
)
from sgma_keras.fields import PATH, Field
from sgma_keras.fields import num as _num
from sgma_keras.fields import show as _show
from sgma_keras.registry import BACKBONES, SOURCES

__all__ = [
    "PATH",
    "ConfigError",
    "Field",
    "Section",
    "SCHEMA",
    "RULES",
    "load_config",
    "validate_config",
    "resolve_section",
    "architecture_keys",
    "default_config",
    "parse_override",
    "apply_overrides",
    "find_config",
    "builtin_config_names",
]


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

RULES: list[Rule] = []


def _rule(*keys: str):
    def deco(fn):
        RULES.append((keys, fn))
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
        RULES.append((tuple(f"{prefix}{key}" for key in keys), run))


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
# Loading and validating against SCHEMA and RULES
# ---------------------------------------------------------------------------------------

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
    return _finish(validation.load(path, overrides, schema, RULES, check_paths=check_paths))


def validate_config(raw: Mapping, *, check_paths: bool = True, schema: Mapping | None = None,
                    source: str | None = None) -> dict:
    """Validate a raw (partial) config dict, fill defaults, return the resolved dict.

    Raises ConfigError listing every problem. ``source`` names the origin in the message.
    """
    schema = SCHEMA if schema is None else schema
    return _finish(validation.validate(raw, schema, RULES, check_paths=check_paths,
                                       source=source))


def _finish(cfg: dict) -> dict:
    """What a valid config's keys mean for each other: `{name}` expanded in output_dir, a
    null data.seed replaced by the run's seed (the resolved config records the seed
    actually used)."""
    if isinstance(cfg.get("output_dir"), str) and isinstance(cfg.get("name"), str):
        cfg["output_dir"] = cfg["output_dir"].replace("{name}", cfg["name"])
    data = cfg.get("data")
    if isinstance(data, dict) and data.get("seed") is None and "seed" in cfg:
        data["seed"] = cfg["seed"]
    return cfg


def apply_overrides(raw: Mapping, overrides: Iterable[str], schema: Mapping | None = None,
                    errors: list[str] | None = None) -> dict:
    """Return a copy of ``raw`` with 'a.b=value' overrides applied.

    Unknown keys are collected into ``errors`` when given, else raised as ConfigError.
    Values are not validated here (validate_config does that).
    """
    schema = SCHEMA if schema is None else schema
    return validation.apply_overrides(raw, overrides, schema, errors)


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
    """The keys whose value shapes the trained weights: each `Field(architecture=True)`,
    and each section that may be null (`model.center`: whether the piece it builds, and
    its weights, exist). A saved model of another value is another model, and a run
    folder never continues under a change of one."""
    schema = SCHEMA if schema is None else schema
    fields = {path for path, field in iter_fields(schema) if field.architecture}
    sections = {path for path, section in iter_sections(schema)
                if getattr(section, "nullable", False)}
    return frozenset(fields | sections)


def default_config() -> dict:
    """The resolved default config (no file, no path checks)."""
    return validate_config({}, check_paths=False)


if __name__ == "__main__":
    # python -m sgma_keras.config CONFIG [--set KEY=VALUE ...] [--markdown]: the config
    # command of the command line (imported here: the workflow imports this module).
    import sys

    from sgma_keras.workflow.cli import config_main

    sys.exit(config_main())
