"""`load_dataset(data_cfg)`: the config's "data" section -> ZeroShotData.

The keys of the section, their defaults and their checks are declared once, in
`sgma_keras.config.SCHEMA["data"]` (docs/CONFIG.md lists them); the sources are
registered in `sgma_keras.registry.SOURCES`, and `load_dataset` calls the loader
registered as `data.source`. The built-in ones, defined here:

    "builtin"          the generated dataset (`builtin.make_builtin_dataset`)
    "proposed_split"   Xian et al.'s att_splits.mat + res101.mat (`proposed_split`)
    "cub_raw", "awa2_raw", "flowers_raw"   a raw dataset folder at `data.root`
    "tfds"             a TensorFlow Datasets dataset (`tfds_source`)
"""

import os

from sgma_keras.config import resolve_section
from sgma_keras.data.zsl_data import DataError
from sgma_keras.registry import SOURCES
from sgma_keras.semantics import l2_normalize_rows


def resolve_data_config(cfg):
    """The "data" section `cfg` (partial, or already resolved) validated, defaults filled.

    Raises `ConfigError` naming each bad key (`data.<key>: ...`).
    """
    return resolve_section("data", cfg)


def semantics_transform(cfg):
    """What `load_dataset(cfg)` does to each class semantic vector, as a
    `sgma_keras.semantics.TRANSFORMS` name: "l2" (scaled to unit L2 norm, by
    `normalize_semantics` or by the `att` choice of a file-backed source) or None (as
    read). The model keeps it and applies it to class vectors given after training.
    """
    cfg = resolve_data_config(cfg)
    att = SOURCES.get(cfg["source"]).semantics and cfg["semantics"] == "att"
    return "l2" if cfg["normalize_semantics"] or att else None


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
    if b["pattern_period"]:
        name += f"_f{b['pattern_period']}"
    if not b["colour_attribute"]:
        name += "_nocolour"
    if b["max_tilt"] < 180:
        name += f"_tilt{b['max_tilt']:g}"
    if b["species_per_genus"] > 1:
        name += f"_sp{b['species_per_genus']}"
    return os.path.join(os.path.expanduser(b["cache_dir"]), name)


def load_dataset(cfg):
    """Loads the dataset described by the config's "data" section.

    Args:
        cfg: the "data" section of a config: the resolved one of `load_config`, or a
            partial dict (validated and completed here, e.g. `{"source": "builtin"}`).

    Returns:
        a validated ZeroShotData.
    """
    cfg = resolve_data_config(cfg)
    source = cfg["source"]
    for key in SOURCES.get(source).requires:
        value = cfg
        for part in key.split("."):
            value = value[part]
        if not value:
            raise DataError(f"data.{key} is required for source {source!r}.")
    data = SOURCES.resolve(source)(cfg)
    if cfg["name"]:
        data.name = cfg["name"]
    if cfg["normalize_semantics"]:
        data.semantics = l2_normalize_rows(data.semantics)
    return data


# The built-in sources' loaders (registered in sgma_keras.registry): the resolved
# "data" section -> ZeroShotData. Each imports its module on first use.

def _protocol(cfg):
    return {"val_fraction": cfg["val_fraction"], "seed": cfg["seed"]}


def _raw_protocol(cfg):
    return {
        **_protocol(cfg),
        "unseen_fraction": cfg["unseen_fraction"],
        "test_seen_fraction": cfg["test_seen_fraction"],
        "bad_images": cfg["bad_images"],
    }


def from_builtin(cfg):
    """The generated dataset, in `builtin_folder(cfg)`."""
    from sgma_keras.data.builtin import make_builtin_dataset

    options = {k: v for k, v in cfg["builtin"].items() if k != "cache_dir"}
    return make_builtin_dataset(
        builtin_folder(cfg),
        test_seen_fraction=cfg["test_seen_fraction"],
        **_protocol(cfg),
        **options,
    )


def from_proposed_split(cfg):
    """Xian et al.'s proposed split (`split_dir`) of the images under `root`."""
    from sgma_keras.data.proposed_split import load_proposed_split

    return load_proposed_split(
        cfg["split_dir"],
        cfg["root"],
        semantics=cfg["semantics"],
        name=cfg["name"],
        bad_images=cfg["bad_images"],
        **_protocol(cfg),
    )


def from_cub_raw(cfg):
    """The CUB-200-2011 folder at `root`."""
    from sgma_keras.data.cub_raw import load_cub_raw

    return load_cub_raw(
        cfg["root"],
        semantics=cfg["semantics"],
        read_parts=cfg["raw"]["parts"],
        class_split=cfg["raw"]["class_split"],
        **_raw_protocol(cfg),
    )


def from_awa2_raw(cfg):
    """The AwA2 folder at `root`."""
    from sgma_keras.data.awa2_raw import load_awa2_raw

    return load_awa2_raw(
        cfg["root"],
        semantics=cfg["semantics"],
        class_split=cfg["raw"]["class_split"],
        **_raw_protocol(cfg),
    )


def from_flowers_raw(cfg):
    """The Oxford Flowers 102 folder at `root`."""
    from sgma_keras.data.flowers_raw import load_flowers_raw

    return load_flowers_raw(
        cfg["root"],
        semantics=cfg["semantics"],
        **cfg["flowers"],
        **_raw_protocol(cfg),
    )


def from_tfds(cfg):
    """A TensorFlow Datasets dataset, exported once as image files."""
    from sgma_keras.data.tfds_source import load_tfds

    tfds_cfg = dict(cfg["tfds"])
    tfds_cfg["cache_dir"] = os.path.expanduser(tfds_cfg["cache_dir"])
    return load_tfds(semantics=cfg["semantics"], **tfds_cfg, **_raw_protocol(cfg))
