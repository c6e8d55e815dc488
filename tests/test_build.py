"""The config -> model mapping: every option of SGMA and its layers is reachable from a key.

`workflow.model_args.MODEL_ARGS` maps config keys to `SGMA` arguments and `model.LAYER_ARGS`
maps `SGMA` arguments to layer arguments. These tests check the tables against the
constructors' signatures (nothing missing, nothing stale) and then check each row by
behaviour: change one key in a config, build the model, and find the new value in the
model's and the layer's config.
"""

import inspect

import keras
import numpy as np
import pytest

from sgma_keras import config as config_lib
from sgma_keras import model as model_lib
from sgma_keras.layers.image_preprocessing import ImagePreprocessing
from sgma_keras.workflow import build
from sgma_keras.workflow import model_args
from tests.helpers import IMAGE_SIZE, LOCAL_SIZE, NUM_CLASSES, SEEN, SEMANTIC_DIM, TINY_WIDTH

# Arguments every Keras layer/model takes; they are not SGMA options.
KERAS_BASE_ARGS = {"self", "name", "dtype", "trainable", "kwargs", "autocast", "input_dim",
                   "input_shape", "batch_input_shape", "batch_size", "weights_"}


def _ctor_args(cls):
    return [name for name, p in inspect.signature(cls.__init__).parameters.items()
            if name not in KERAS_BASE_ARGS and p.kind is not p.VAR_KEYWORD]


def _schema_fields():
    return dict(config_lib._iter_fields(config_lib.SCHEMA))


def test_every_sgma_argument_comes_from_a_config_key_or_the_data():
    from_config = set(model_args.MODEL_ARGS.values())
    from_data = set(model_args.DATA_ARGS)
    assert not from_config & from_data
    missing = [a for a in _ctor_args(model_lib.SGMA) if a not in from_config | from_data]
    assert not missing, f"SGMA arguments no config key reaches: {missing}"
    stale = (from_config | from_data) - set(_ctor_args(model_lib.SGMA))
    assert not stale, f"MODEL_ARGS/DATA_ARGS name arguments SGMA does not take: {stale}"


def test_every_model_args_key_is_a_schema_key():
    fields = _schema_fields()
    unknown = [key for key in model_args.MODEL_ARGS if key not in fields]
    assert not unknown, f"MODEL_ARGS keys missing from config.SCHEMA: {unknown}"


@pytest.mark.parametrize("class_name", sorted(model_lib.LAYER_ARGS) + ["ImagePreprocessing"])
def test_every_layer_argument_comes_from_an_sgma_argument_or_is_internal(class_name):
    cls = model_lib._LAYERS.get(class_name, ImagePreprocessing)
    mapped = model_lib.LAYER_ARGS.get(class_name, {})
    internal = model_lib.LAYER_INTERNAL_ARGS.get(class_name, {})
    sgma_args = set(_ctor_args(model_lib.SGMA))
    assert set(mapped) <= sgma_args, f"{class_name}: rows from unknown SGMA args"
    layer_args = set(_ctor_args(cls))
    reachable = set(mapped.values()) | set(internal)
    assert layer_args - reachable == set(), (
        f"{class_name} arguments neither mapped from SGMA nor listed as internal: "
        f"{sorted(layer_args - reachable)}"
    )
    assert reachable <= layer_args, f"{class_name}: stale rows {sorted(reachable - layer_args)}"


def test_the_package_layers_are_all_in_the_tables():
    import sgma_keras.layers as layers_pkg

    exported = {name for name in layers_pkg.__all__
                if isinstance(getattr(layers_pkg, name), type)
                and issubclass(getattr(layers_pkg, name), keras.layers.Layer)}
    covered = set(model_lib.LAYER_ARGS) | set(model_lib.LAYER_INTERNAL_ARGS)
    assert exported <= covered, f"layers with no table row: {sorted(exported - covered)}"


# --- behaviour: one changed key reaches the built model -------------------------------

# Values for keys whose automatic change (below) would break a cross-key rule or the
# tiny test model's shapes.
CHANGED = {
    "input.image_size": 40,
    "input.local_size": 24,
    "input.global_size": 16,
    "model.min_side": 0.3,
    "model.feature_layer": "some_layer",
    "model.tiny_width": 5,
    "model.peak_gradient_temperature": 0.3,  # default null
    "model.gamma_cc": 2.0,  # default null (chosen on validation)
    "seed": 7,
}
# Keys whose changed value needs other keys changed with it (a real application
# backbone needs 32 px parts; "none" builds only its global copy, to keep this quick).
ALONG_WITH = {"model.backbone": {"input.local_size": 32, "model.part_mode": "none"}}


def _base_config():
    cfg = config_lib.default_config()
    cfg["input"].update(image_size=IMAGE_SIZE, local_size=LOCAL_SIZE, global_size=None)
    cfg["model"].update(backbone="tiny", weights=None, tiny_width=TINY_WIDTH,
                        attention_reduction=4, cnet_hidden=8, num_parts=2)
    cfg["model"]["center"]["latent_dim"] = 8
    return config_lib.validate_config(cfg, check_paths=False)


def _changed_value(key, field, value):
    if key in CHANGED:
        return CHANGED[key]
    if field.choices:
        return next(c for c in field.choices if c != value)
    if field.type is bool:
        return not value
    if field.type is int:
        return value + 1 if field.max is None or value + 1 <= field.max else value - 1
    if field.type is float:
        high = field.max if field.max is not None else (field.lt if field.lt is not None else None)
        if high is not None and value < high:
            return (value + high) / 2
        return value * 1.5 + 0.25
    raise AssertionError(f"{key}: add a value to CHANGED")


def _set(cfg, key, value):
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[leaf] = value


def _build(cfg):
    semantics = np.random.default_rng(0).normal(size=(NUM_CLASSES, SEMANTIC_DIM))
    semantics /= np.linalg.norm(semantics, axis=1, keepdims=True)  # data.normalize_semantics
    data = type("Data", (), {"semantics": semantics.astype("float32")})()
    return build.build_model(cfg, data, SEEN)


def _layers_of(model, cls):
    return [layer for layer in model._flatten_layers() if type(layer) is cls]


@pytest.mark.parametrize("key", sorted(k for k in model_args.MODEL_ARGS if k != "model.weights"))
def test_each_model_key_reaches_the_model_and_its_layers(key):
    base = _base_config()
    fields = _schema_fields()
    arg = model_args.MODEL_ARGS[key]
    new = _changed_value(key, fields[key], build.config_value(base, key))
    changed = _with(base, key, new)
    for other, value in ALONG_WITH.get(key, {}).items():
        _set(changed, other, value)
    cfg = config_lib.validate_config(changed, check_paths=False)  # still a valid config
    new = build.config_value(cfg, key)
    model = _build(cfg)
    assert model.get_config()[arg] == new, f"{key} -> SGMA({arg}) did not arrive"
    found = 0
    for class_name, rows in model_lib.LAYER_ARGS.items():
        if arg not in rows:
            continue
        for layer in _layers_of(model, model_lib._LAYERS[class_name]):
            got = layer.get_config()[rows[arg]]
            assert got == new, f"{key} -> {class_name}({rows[arg]}) is {got!r}, not {new!r}"
            found += 1
    if any(arg in rows for rows in model_lib.LAYER_ARGS.values()):
        assert found, f"{key}: no layer that takes it was built"


def _with(cfg, key, value):
    import copy

    cfg = copy.deepcopy(cfg)
    _set(cfg, key, value)
    return cfg


def test_model_weights_key_loads_the_backbone_file(tmp_path):
    base = _base_config()
    source = _build(base)
    path = str(tmp_path / "tiny.weights.h5")
    source.global_backbone.save_weights(path)
    keras.utils.set_random_seed(123)  # a different initialisation, unless the file loads
    model = _build(_with(base, "model.weights", path))
    for want, got in zip(source.global_backbone.get_weights(),
                         model.global_backbone.get_weights()):
        np.testing.assert_array_equal(want, got)


# --- what the loader did to the class vectors travels with the model ------------------


@pytest.mark.parametrize("data_cfg, transform", [
    ({"source": "builtin"}, "l2"),  # normalize_semantics is on by default
    ({"source": "builtin", "normalize_semantics": False}, None),
    ({"source": "cub_raw", "normalize_semantics": False}, "l2"),  # `att` rows: unit norm
    ({"source": "cub_raw", "normalize_semantics": False, "semantics": "original_att"}, None),
])
def test_the_model_keeps_the_loaders_semantics_transform(data_cfg, transform):
    from sgma_keras.data.loader import semantics_transform

    assert semantics_transform(data_cfg) == transform
    cfg = _base_config()
    cfg["data"].update(data_cfg)
    semantics = np.random.default_rng(0).uniform(0, 100, size=(NUM_CLASSES, SEMANTIC_DIM))
    semantics = semantics.astype("float32")
    if transform == "l2":
        semantics /= np.linalg.norm(semantics, axis=1, keepdims=True)
    data = type("Data", (), {"semantics": semantics})()
    model = build.build_model(cfg, data, SEEN)
    assert model.semantics_transform == transform
    assert model.get_config()["semantics_transform"] == transform


def test_the_builtin_loader_output_is_the_transform_of_its_raw_vectors(tmp_path):
    from sgma_keras.data import load_dataset
    from sgma_keras.data.loader import semantics_transform
    from sgma_keras.semantics import apply_transform

    small = {"source": "builtin", "root": str(tmp_path),
             "builtin": {"num_images": 60, "image_size": 32, "num_classes": 6,
                         "num_unseen": 2}}
    raw = load_dataset({**small, "normalize_semantics": False}).semantics
    assert semantics_transform({**small, "normalize_semantics": False}) is None
    stored = load_dataset(small).semantics
    np.testing.assert_array_equal(stored, apply_transform(raw, semantics_transform(small)))
