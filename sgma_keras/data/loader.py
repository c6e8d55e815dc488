"""`load_dataset(cfg)`: the config's "data" section -> ZeroShotData.

Keys of the "data" section (unknown keys, and missing required ones, are DataErrors;
the others default as shown). The section layout matches `sgma_keras.config`; keys
marked (+) are optional extras of this loader.

    source (required): where the data comes from:
        "builtin": the generated dataset (`builtin.make_builtin_dataset`).
        "proposed_split": Xian et al.'s att_splits.mat + res101.mat in `split_dir`,
            images under `root` (`proposed_split.load_proposed_split`).
        "cub_raw", "awa2_raw", "flowers_raw": the raw dataset folder at `root`.
        "tfds": a TensorFlow Datasets dataset (see the "tfds" sub-dict).
    root: image root / dataset folder; required for "proposed_split" and the raw
        sources. For "builtin", when set, the folder the images are generated into
        (else `builtin.cache_dir`).
    split_dir: folder with att_splits.mat and res101.mat ("proposed_split").
    semantics: "att" (class vectors L2-normalised, the proposed split's `att`) or
        "original_att" (as in the source files; not in FLO's proposed split).
    normalize_semantics: L2-normalise every class vector after loading (default true).
    val_fraction: fraction of the seen classes held out as the class-disjoint "val"
        split when the source gives none (default 0.2).
    bad_images: "error" (default) or "skip" for missing files found while loading.
    seed (+): seed of every generated split and of the built-in images (default 0).
    name (+): dataset name (default: from the source; for "proposed_split" the split_dir
        folder name upper-cased, whose released split sizes are checked: CUB, AWA2, FLO).
    unseen_fraction (+): raw/TFDS sources without a class split file: fraction of the
        classes made unseen by a seeded split (default 0.25).
    test_seen_fraction (+): builtin/raw/TFDS: fraction of each seen class's images held
        out as "test_seen" (default 0.2).
    builtin: {num_classes: 24, num_unseen: 6, num_images: 2000, image_size: 448,
        cache_dir: "~/.cache/sgma_keras/builtin" (the images go to a sub-folder named
        by the generation parameters), part_size (+): [0.08, 0.12] (part side / image
        side), jpeg_quality (+): 90, pattern_period (+): 0 (fine part patterns of this
        period in pixels; 0: coarse ones), colour_attribute (+): true (false: part
        colours are a per-image nuisance, not class attributes), max_tilt (+): 180 (the
        head points within this many degrees of straight up; 180: any orientation),
        species_per_genus (+): 1 (S > 1: genera of S species that differ only in their
        part patterns; the unseen classes come in pairs of one genus)}.
    raw: {class_split: null, parts (+): true} for "cub_raw"/"awa2_raw". class_split is a
        class split file (`readers.read_class_split`): a JSON object {"unseen": [names],
        "seen": [names] (optional), "val": [names] (optional)} or a text file with one
        unseen class name per line; null: AwA2's testclasses.txt when present, else a
        seeded split. parts: read CUB's parts/part_locs.txt into `part_locs`.
    flowers: {class_split: null, semantics_file (required for "flowers_raw"),
        semantics_key (+): null (.mat variable, default "att"), class_names_file (+):
        null (one name per line; default "class_001"...)}.
    tfds: {name: "caltech_birds2011" | "oxford_flowers102", data_dir: null (TFDS's
        default), class_split: null, semantics_file (required), semantics_key (+): null,
        cache_dir (+): "~/.cache/sgma_keras/tfds" (images are exported there once),
        download (+): false}.
"""

import copy
import os

from sgma_keras.data.zsl_data import DataError
from sgma_keras.data.zsl_data import l2_normalize_rows

SOURCES = ("builtin", "proposed_split", "cub_raw", "awa2_raw", "flowers_raw", "tfds")
REQUIRED_KEYS = ("source",)  # Defaults below are None; they must be given.

DATA_CONFIG_DEFAULTS = {
    "source": None,
    "root": None,
    "split_dir": None,
    "semantics": "att",
    "normalize_semantics": True,
    "val_fraction": 0.2,
    "bad_images": "error",
    "seed": 0,
    "name": None,
    "unseen_fraction": 0.25,
    "test_seen_fraction": 0.2,
    "builtin": {
        "num_classes": 24,
        "num_unseen": 6,
        "num_images": 2000,
        "image_size": 448,
        "cache_dir": "~/.cache/sgma_keras/builtin",
        "part_size": [0.08, 0.12],
        "jpeg_quality": 90,
        "pattern_period": 0,
        "colour_attribute": True,
        "max_tilt": 180.0,
        "species_per_genus": 1,
    },
    "raw": {"class_split": None, "parts": True},
    "flowers": {
        "class_split": None,
        "semantics_file": None,
        "semantics_key": None,
        "class_names_file": None,
    },
    "tfds": {
        "name": "caltech_birds2011",
        "data_dir": None,
        "class_split": None,
        "semantics_file": None,
        "semantics_key": None,
        "cache_dir": "~/.cache/sgma_keras/tfds",
        "download": False,
    },
}
_CHOICES = {
    "source": SOURCES,
    "semantics": ("att", "original_att"),
    "bad_images": ("error", "skip"),
}


def resolve_data_config(cfg):
    """Checks `cfg` against `DATA_CONFIG_DEFAULTS`; returns a full copy with defaults."""
    if not isinstance(cfg, dict):
        raise DataError(f"data config must be a dict; got {type(cfg).__name__}.")
    return _merge(cfg, DATA_CONFIG_DEFAULTS, "data")


def _merge(cfg, defaults, where):
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise DataError(
            f"{where}: unknown keys {unknown}; expected some of {sorted(defaults)}."
        )
    out = {}
    for key, default in defaults.items():
        value = cfg.get(key, default)
        if value is None and where == "data" and key in REQUIRED_KEYS:
            raise DataError(f"{where}: missing required key {key!r}.")
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise DataError(f"{where}.{key}: expected a dict, got {value!r}.")
            value = _merge(value, default, f"{where}.{key}")
        elif key in _CHOICES and value not in _CHOICES[key]:
            raise DataError(
                f"{where}.{key}: expected one of {_CHOICES[key]}, got {value!r}."
            )
        out[key] = copy.deepcopy(value)
    return out


def _require(cfg, key, source):
    if not cfg[key]:
        raise DataError(f"data.{key} is required for source {source!r}.")
    return cfg[key]


def builtin_folder(cfg):
    """The folder of the built-in dataset: `root`, else a sub-folder of
    `builtin.cache_dir` named by the generation parameters (so configs with different
    parameters do not regenerate each other's images)."""
    if cfg["root"]:
        return cfg["root"]
    b = cfg["builtin"]
    name = (
        f"c{b['num_classes']}_n{b['num_images']}_s{b['image_size']}_seed{cfg['seed']}"
        f"_p{b['part_size'][0]:g}-{b['part_size'][1]:g}_q{b['jpeg_quality']}"
    )
    if b.get("pattern_period"):
        name += f"_f{b['pattern_period']}"
    if not b.get("colour_attribute", True):
        name += "_nocolour"
    if b.get("max_tilt", 180) < 180:
        name += f"_tilt{b['max_tilt']:g}"
    if b.get("species_per_genus", 1) > 1:
        name += f"_sp{b['species_per_genus']}"
    return os.path.join(os.path.expanduser(b["cache_dir"]), name)


def load_dataset(cfg):
    """Loads the dataset described by the config's "data" section (module docstring).

    Returns:
        a validated ZeroShotData.
    """
    cfg = resolve_data_config(cfg)
    source = cfg["source"]
    protocol = {"val_fraction": cfg["val_fraction"], "seed": cfg["seed"]}
    raw_protocol = {
        **protocol,
        "unseen_fraction": cfg["unseen_fraction"],
        "test_seen_fraction": cfg["test_seen_fraction"],
        "bad_images": cfg["bad_images"],
    }
    if source == "builtin":
        from sgma_keras.data.builtin import make_builtin_dataset

        options = {k: v for k, v in cfg["builtin"].items() if k != "cache_dir"}
        data = make_builtin_dataset(
            builtin_folder(cfg),
            test_seen_fraction=cfg["test_seen_fraction"],
            **protocol,
            **options,
        )
    elif source == "proposed_split":
        from sgma_keras.data.proposed_split import load_proposed_split

        data = load_proposed_split(
            _require(cfg, "split_dir", source),
            _require(cfg, "root", source),
            semantics=cfg["semantics"],
            name=cfg["name"],
            bad_images=cfg["bad_images"],
            **protocol,
        )
    elif source == "cub_raw":
        from sgma_keras.data.cub_raw import load_cub_raw

        data = load_cub_raw(
            _require(cfg, "root", source),
            semantics=cfg["semantics"],
            read_parts=cfg["raw"]["parts"],
            class_split=cfg["raw"]["class_split"],
            **raw_protocol,
        )
    elif source == "awa2_raw":
        from sgma_keras.data.awa2_raw import load_awa2_raw

        data = load_awa2_raw(
            _require(cfg, "root", source),
            semantics=cfg["semantics"],
            class_split=cfg["raw"]["class_split"],
            **raw_protocol,
        )
    elif source == "flowers_raw":
        from sgma_keras.data.flowers_raw import load_flowers_raw

        data = load_flowers_raw(
            _require(cfg, "root", source),
            semantics=cfg["semantics"],
            **cfg["flowers"],
            **raw_protocol,
        )
    else:
        from sgma_keras.data.tfds_source import load_tfds

        tfds_cfg = dict(cfg["tfds"])
        tfds_cfg["cache_dir"] = os.path.expanduser(tfds_cfg["cache_dir"])
        data = load_tfds(semantics=cfg["semantics"], **tfds_cfg, **raw_protocol)
    if cfg["name"]:
        data.name = cfg["name"]
    if cfg["normalize_semantics"]:
        data.semantics = l2_normalize_rows(data.semantics)
    return data
