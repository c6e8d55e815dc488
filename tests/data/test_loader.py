import os

import numpy as np
import pytest

from sgma_keras.config import ConfigError
from sgma_keras.data import load_dataset
from sgma_keras.data import resolve_data_config
from sgma_keras.data import write_proposed_split
from sgma_keras.data.zsl_data import DataError
from tests.data.conftest import TINY_BUILTIN
from tests.data.helpers import assert_protocol

BUILTIN_SECTION = {k: v for k, v in TINY_BUILTIN.items() if k != "seed"}


def test_builtin_source(builtin_root, builtin_data):
    cfg = {"source": "builtin", "root": builtin_root, "builtin": BUILTIN_SECTION}
    data = load_dataset(cfg)
    assert_protocol(data)
    assert data.class_names == builtin_data.class_names
    assert data.splits["trainval"].paths == builtin_data.splits["trainval"].paths


def test_builtin_cache_dir(tmp_path):
    section = {**BUILTIN_SECTION, "num_images": 32, "cache_dir": str(tmp_path)}
    data = load_dataset({"source": "builtin", "builtin": section, "seed": 2})
    (folder,) = os.listdir(tmp_path)
    assert folder.startswith("c8_n32_s64_seed2")
    assert data.splits["trainval"].paths[0].startswith(str(tmp_path / folder))


def test_proposed_split_source(builtin_root, builtin_data, tmp_path):
    write_proposed_split(
        builtin_data, str(tmp_path), path_prefix="/BS/x/", image_root=builtin_root
    )
    cfg = {
        "source": "proposed_split",
        "root": builtin_root,
        "split_dir": str(tmp_path),
        "semantics": "original_att",
        "normalize_semantics": True,
        "name": "mine",
    }
    data = load_dataset(cfg)
    assert data.name == "mine"
    np.testing.assert_allclose(np.linalg.norm(data.semantics, axis=1), 1, atol=1e-6)


def test_config_errors(builtin_root):
    # The data section is checked by the one schema (sgma_keras.config): ConfigError,
    # naming the key path.
    with pytest.raises(ConfigError, match=r"data.roots: unknown key \(did you mean 'root'"):
        load_dataset({"source": "builtin", "roots": builtin_root})
    with pytest.raises(ConfigError, match=r"data.builtin.classes: unknown key"):
        load_dataset({"source": "builtin", "root": builtin_root, "builtin": {"classes": 3}})
    with pytest.raises(ConfigError, match="data.source: expected one of"):
        load_dataset({"source": "imagenet", "root": builtin_root})
    with pytest.raises(ConfigError, match="data.semantics: expected one of"):
        load_dataset({"source": "builtin", "root": builtin_root, "semantics": "w2v"})
    with pytest.raises(DataError, match="data.split_dir is required"):
        load_dataset({"source": "proposed_split", "root": builtin_root})
    with pytest.raises(DataError, match="data.root is required"):
        load_dataset({"source": "cub_raw"})


def test_defaults_are_filled():
    cfg = resolve_data_config({"source": "tfds", "tfds": {"name": "oxford_flowers102"}})
    assert cfg["val_fraction"] == 0.2 and cfg["bad_images"] == "error"
    assert cfg["tfds"]["download"] is False
    assert cfg["tfds"]["name"] == "oxford_flowers102"
