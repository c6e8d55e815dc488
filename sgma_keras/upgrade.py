"""Files written by earlier versions, brought to the current layout in one place.

Three kinds of file predate the model sections (`sgma_keras.arguments`):

- a saved `SGMA` (`.keras`) whose config holds flat constructor arguments and no
  `version`: `flat_model_arguments` turns them into `make_sgma`'s sections;
- a saved layer config lacking arguments added since (`upgrade_layer_config`);
- a run config (JSON) with flat model keys (`model.part_mode`, `input.local_size`,
  ...): `upgrade_run_config` moves them into the sections, with a one-line notice.

The old names live here and nowhere else. Framework-free.
"""

from __future__ import annotations

import copy
import logging

from sgma_keras import __version__
from sgma_keras.arguments import MODEL, SECTIONS

log = logging.getLogger("sgma_keras")

# The version a saved SGMA records (`SGMA.get_config()["version"]`).
MODEL_FORMAT_VERSION = __version__

# Flat SGMA arguments (and `model.<argument>` keys of run configs) of the first
# layout -> their config key now. `part_mode` and `center_enabled` are handled apart.
_MOVED = {
    "image_size": "input.image_size",
    "global_size": "input.global_size",
    "local_size": "model.cropper.output_size",
    "backbone": "model.backbone.name",
    "weights": "model.backbone.weights",
    "feature_layer": "model.backbone.feature_layer",
    "tiny_width": "model.backbone.tiny_width",
    "num_parts": "model.num_parts",
    "share_part_backbones": "model.share_part_backbones",
    "separate_attention_backbone": "model.separate_attention_backbone",
    "attention_reduction": "model.attention.reduction",
    "attention_normalize": "model.attention.normalize",
    "cnet_hidden": "model.cropper.hidden_units",
    "min_side": "model.cropper.min_side",
    "max_side": "model.cropper.max_side",
    "boxcar_steepness": "model.cropper.steepness",
    "peak_temperature": "model.cropper.peak_temperature",
    "boxcar_mask_at": "model.cropper.mask_at",
    "boxcar_margin": "model.cropper.margin",
    "box_anchor": "model.cropper.anchor",
    "boxcar_steepness_unit": "model.cropper.steepness_unit",
    "peak_gradient_temperature": "model.cropper.peak_gradient_temperature",
    "map_losses_reach_backbone": "model.map_losses_reach_backbone",
    "embedding_normalize": "model.embedding.normalize",
    "embedding_scale": "model.embedding.scale",
    "embedding_learn_scale": "model.embedding.learn_scale",
    "latent_dim": "model.center.latent_dim",
    "ridge_lambda": "model.center.ridge_lambda",
    "gamma_cc": "model.gamma_cc",
    "cpt_weight": "loss.cpt_weight",
    "div_weight": "loss.div_weight",
    "cls_weight": "loss.cls_weight",
    "cct_weight": "loss.cct_weight",
    "div_margin": "loss.div_margin",
    "cct_margin": "loss.cct_margin",
    "cpt_sigma": "loss.cpt_sigma",
    "div_reduction": "loss.div_reduction",
    "seed": "seed",
}

# What a saved model or layer lacking an argument was trained with (it loads with
# these, not with today's defaults).
_SAVED_BEFORE = {
    "model.cropper.mask_at": "sample_points",
    "model.cropper.peak_gradient_temperature": None,
    "model.map_losses_reach_backbone": True,
}
_LAYER_SAVED_BEFORE = {"PartCropper": {"mask_at": "sample_points",
                                       "peak_gradient_temperature": None}}

# SGMA arguments of the first layout that are neither moved nor Keras's own.
_KEPT = ("seen_classes", "seen_semantics", "semantics", "class_names", "calibration",
         "calibration_classes", "head_scales", "semantics_transform", "name", "trainable",
         "dtype")


def _set(tree, key, value):
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def _move_flat(flat):
    """{old flat name: value} -> the nested run-config layout ({"model": ..., ...})."""
    nested = {}
    for name, value in flat.items():
        if name in _MOVED:
            _set(nested, _MOVED[name], value)
        elif name == "part_mode" and value == "random":
            _set(nested, "model.cropper.box_source", "random")
    if flat.get("part_mode") == "none":  # the global branch alone
        _set(nested, "model.num_parts", 0)
        nested["model"].pop("cropper", None)
        nested["model"].pop("attention", None)
    if flat.get("center_enabled") is False:
        _set(nested, "model.center", None)
    return nested


def is_flat_model_config(config):
    """Whether a saved SGMA config is of the first, flat layout (no `version`)."""
    return "version" not in config


def flat_model_arguments(config):
    """A saved SGMA config of the first (flat) layout -> `make_sgma` keyword arguments.

    Arguments missing from the file (saved before they existed) take the values the
    model was trained with (`_SAVED_BEFORE`), not today's defaults.
    """
    nested = _move_flat({"part_mode": "attention", **config})
    present = {_MOVED[k] for k in config if k in _MOVED}
    model = nested.setdefault("model", {})
    for key, value in _SAVED_BEFORE.items():
        if key in present or (key.startswith("model.cropper.")
                              and model.get("num_parts") == 0):
            continue
        _set(nested, key, value)
    inputs = nested.get("input", {})
    kwargs = dict(model)
    kwargs.update(semantics=config["semantics"], seen_classes=config.get("seen_classes"),
                  image_size=inputs.get("image_size", 448),
                  global_size=inputs.get("global_size"), seed=nested.get("seed"),
                  loss=nested.get("loss", {}))
    if isinstance(kwargs.get("backbone"), dict):
        kwargs["backbone"]["weights"] = None  # the weights are in the file
    for name in _KEPT:
        if name in config and name not in ("semantics", "seen_classes"):
            kwargs[name] = config[name]
    return kwargs


def upgrade_layer_config(class_name, config):
    """A saved layer config with the arguments added since filled in as trained."""
    return {**_LAYER_SAVED_BEFORE.get(class_name, {}), **config}


def upgrade_override(key, value):
    """A command-line override `key=value` of a flat model key -> [(new key, value)]
    (one line logged); any other override -> [(key, value)] unchanged."""
    nested = {}
    _set(nested, key, value)
    upgraded = upgrade_run_config(nested, quiet=True)
    if upgraded is nested:
        return [(key, value)]
    pairs = list(_leaves(upgraded))
    log.warning("override %s: a flat model key of sgma-keras 0.1, read as %s.", key,
                ", ".join(k for k, _ in pairs) or "the default")
    return pairs


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def upgrade_run_config(raw, source=None, quiet=False):
    """A run config (parsed JSON) with flat model keys -> the sectioned layout.

    Returns `raw` unchanged when it has none; otherwise a copy, and logs one line
    naming the file. Keys are moved as found; validation comes after.
    """
    if not isinstance(raw, dict):
        return raw
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    flat = {}
    for name, value in model.items():
        if name == "backbone" and isinstance(value, dict):
            continue  # already a section
        if name == "part_mode" or (
                name in _MOVED and _MOVED[name].startswith("model.")
                and _MOVED[name] != f"model.{name}"):
            flat[name] = value
    inp = raw.get("input") if isinstance(raw.get("input"), dict) else {}
    if "local_size" in inp:
        flat["local_size"] = inp["local_size"]
    center = model.get("center") if isinstance(model.get("center"), dict) else {}
    if "enabled" in center:
        flat["center_enabled"] = center["enabled"]
    if not flat:
        return raw
    out = copy.deepcopy(raw)
    for name in flat:
        if name == "local_size":
            out["input"].pop("local_size")
        elif name == "center_enabled" and "enabled" in center:
            out["model"]["center"].pop("enabled")
        else:
            out["model"].pop(name, None)
    moved = _move_flat(flat)
    _merge(out, moved)
    if quiet:
        return out
    where = f"{source}: " if source else ""
    log.warning("%sflat model keys of sgma-keras 0.1 (%s) read as their model sections "
                "(docs/CONFIG.md); rewrite them there to silence this.",
                where, ", ".join(sorted(flat)))
    return out


def _merge(base, update):
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def saved_semantics(config):
    """The class semantic matrix (a list of rows) of a saved SGMA config."""
    if is_flat_model_config(config):
        return config["semantics"]
    return config["embedding"]["config"]["semantics"]


def saved_settings(config):
    """{config key: value} of a saved SGMA config (either layout): what a run config
    must agree with to describe the same model (`workflow.checkpoints`)."""
    if is_flat_model_config(config):
        kwargs = flat_model_arguments(config)
        settings = {"input.image_size": kwargs["image_size"],
                    "input.global_size": kwargs["global_size"]}
        for key in MODEL.names:
            if key in kwargs and key not in ("image_size", "global_size"):
                settings[f"model.{key}"] = kwargs[key]
        for section in SECTIONS:
            if section in kwargs:
                values = kwargs[section]
                if values is None:
                    settings[f"model.{section}"] = None
                    continue
                for key, value in values.items():
                    settings[f"model.{section}.{key}"] = value
        return settings
    settings = {"input.image_size": config["image_size"],
                "input.global_size": config.get("global_size"),
                "model.map_losses_reach_backbone": config.get("map_losses_reach_backbone")}
    cropper = config.get("cropper")
    settings["model.num_parts"] = 0 if cropper is None else cropper["config"]["num_parts"]
    parts = config.get("part_backbones") or []
    if settings["model.num_parts"] > 1:  # one part: shared or not is the same model
        settings["model.share_part_backbones"] = len(parts) < settings["model.num_parts"]
    if config.get("multi_attention") is not None:
        settings["model.separate_attention_backbone"] = \
            config.get("attention_backbone") is not None
    for section, (arguments, attribute) in SECTIONS.items():
        layer = config.get(attribute)
        if layer is None:
            if section == "center":
                settings["model.center"] = None
            continue
        values = layer if section == "backbone" else layer["config"]
        for key in arguments.section():
            if key in values:
                settings[f"model.{section}.{key}"] = values[key]
    return settings
