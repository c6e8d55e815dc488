"""A data source or a backbone is one registration: the config accepts its name, checks
what it declares, and `load_dataset` / `make_backbone` / `SGMA` reach it."""

import types

import keras
import numpy as np
import pytest

from sgma_keras.backbones import make_backbone
from sgma_keras.config import SCHEMA, ConfigError, load_config
from sgma_keras.data import load_dataset
from sgma_keras.data.loader import semantics_transform
from sgma_keras.registry import BACKBONES, SOURCES, register_backbone, register_source
from tests import helpers as H
from tests.helpers import _seed  # noqa: F401  (the light per-test reset)


@pytest.fixture
def dummy_source():
    calls = []

    @register_source("dummy", requires=("root",), section="raw")
    def load_dummy(cfg):
        calls.append(cfg)
        return types.SimpleNamespace(name="dummy", semantics=np.full((3, 2), 2.0, "float32"))

    yield calls
    SOURCES.unregister("dummy")


@pytest.fixture
def dummy_backbone():
    calls = []

    @register_backbone("dummy", channels=lambda backbone: backbone["tiny_width"],
                       channels_note="model.backbone.tiny_width={tiny_width}", imagenet=False)
    def dummy(input_size, *, weights, feature_layer, tiny_width, model_name):
        calls.append((input_size, weights, feature_layer, tiny_width, model_name))
        inputs = keras.Input((input_size, input_size, 3))
        outputs = keras.layers.Conv2D(tiny_width, 3, strides=8, padding="same")(inputs)
        return keras.Model(inputs, outputs, name=model_name or "dummy")

    yield calls
    BACKBONES.unregister("dummy")


def test_a_registered_source_is_a_config_choice_with_its_required_paths(dummy_source,
                                                                        tmp_path):
    assert "dummy" in SCHEMA["data"]["source"].choices
    cfg = load_config(None, ["data.source=dummy", f"data.root={tmp_path}"])
    assert cfg["data"]["source"] == "dummy"
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["data.source=dummy"])
    assert caught.value.errors == ["data.root: required for data.source 'dummy', got null"]
    # Its section's paths are checked for it (and, as before, not for other sources).
    with pytest.raises(ConfigError, match=r"data.raw.class_split: file not found"):
        load_config(None, ["data.source=dummy", f"data.root={tmp_path}",
                           "data.raw.class_split=missing.txt"])


def test_load_dataset_reaches_a_registered_source(dummy_source, tmp_path):
    data = load_dataset({"source": "dummy", "root": str(tmp_path), "name": "mine"})
    (cfg,) = dummy_source
    assert cfg["root"] == str(tmp_path) and cfg["source"] == "dummy"
    assert data.name == "mine"  # load_dataset's own steps still apply
    np.testing.assert_allclose(np.linalg.norm(data.semantics, axis=1), 1.0, rtol=1e-6)
    assert semantics_transform({"source": "dummy"}) == "l2"
    with pytest.raises(Exception, match=r"data.root is required for source 'dummy'"):
        load_dataset({"source": "dummy"})


def test_an_unregistered_source_is_refused(dummy_source):
    SOURCES.unregister("dummy")
    try:
        with pytest.raises(ConfigError, match=r"data.source: expected one of .*got \"dummy\""):
            load_config(None, ["data.source=dummy"])
    finally:
        register_source("dummy", lambda cfg: None)  # for the fixture's unregister


def test_a_registered_backbone_is_a_config_choice_with_its_channels(dummy_backbone):
    assert "dummy" in SCHEMA["model"]["backbone"]["name"].choices
    base = ["model.backbone.name=dummy", "model.backbone.weights=null",
            "model.backbone.tiny_width=8"]
    cfg = load_config(None, [*base, "model.num_parts=8"])
    assert cfg["model"]["backbone"]["name"] == "dummy"
    with pytest.raises(ConfigError) as caught:
        load_config(None, [*base, "model.num_parts=9"])
    assert caught.value.errors == [
        "model.num_parts: each part is a group of the backbone's feature channels, and "
        "dummy has 8 (model.backbone.tiny_width=8); got 9 parts: expected at most 8"]
    with pytest.raises(ConfigError, match=r"model.backbone.weights: the dummy backbone has no "
                                          r"ImageNet weights"):
        load_config(None, ["model.backbone.name=dummy"])


def test_make_backbone_and_sgma_reach_a_registered_backbone(dummy_backbone):
    net = make_backbone("dummy", 32, tiny_width=4, model_name="b")
    assert dummy_backbone == [(32, None, None, 4, "b")]
    assert tuple(net.output.shape) == (None, 4, 4, 4)
    with pytest.raises(ValueError, match=r"the dummy backbone has no ImageNet weights"):
        make_backbone("dummy", 32, weights="imagenet")
    model = H.tiny_sgma(backbone={"name": "dummy"})
    assert [call[0] for call in dummy_backbone[1:]] == [32, 16, 16]  # global, 2 parts
    assert model.global_backbone.name == "global_backbone"
    assert tuple(model.part_backbone(1).output.shape) == (None, 2, 2, 4)


def test_registrations_are_checked():
    with pytest.raises(ValueError, match=r"backbone 'tiny' is already registered"):
        register_backbone("tiny", lambda *a, **k: None)
    with pytest.raises(TypeError, match=r"unknown fact\(s\) \['chanels'\]"):
        register_backbone("other", lambda *a, **k: None, chanels=3)
    with pytest.raises(TypeError, match=r"target must be a callable or 'module:function'"):
        register_source("other", "not_a_path")
    with pytest.raises(ValueError, match=r"Unknown data source 'nope'; expected one of "
                                         r"builtin, proposed_split"):
        SOURCES.get("nope")
    assert "other" not in BACKBONES and "other" not in SOURCES


def test_builtin_entries_load_lazily_and_resolve():
    # The config reads these without loading a framework: the targets are paths.
    assert all(isinstance(entry.target, str) for entry in (*SOURCES, *BACKBONES))
    for registry in (SOURCES, BACKBONES):
        for name in registry.names():
            assert callable(registry.resolve(name)), name
