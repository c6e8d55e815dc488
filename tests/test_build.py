"""The config -> model mapping: the model sections are the pieces' arguments.

Each section of `model` holds exactly the arguments of the piece it builds (under
the same names, with the same defaults), so there is no table to keep: these tests
check that against the constructors' signatures, then by behaviour: change one key of
a config, build the model, and find the new value in the piece's config under the
same name.
"""

import copy
import inspect

import keras
import numpy as np
import pytest

from sgma_keras import arguments
from sgma_keras import config as config_lib
from sgma_keras.backbones import make_backbone
from sgma_keras.config_validation import iter_fields
from sgma_keras.layers import ClassCenterHead, MultiAttention, PartCropper, SemanticEmbedding
from sgma_keras.model import SGMA
from sgma_keras.workflow import build
from tests.helpers import IMAGE_SIZE, LOCAL_SIZE, NUM_CLASSES, SEEN, SEMANTIC_DIM, TINY_WIDTH

CONSTRUCTORS = {"backbone": make_backbone, "attention": MultiAttention,
                "cropper": PartCropper, "embedding": SemanticEmbedding,
                "center": ClassCenterHead}
# Constructor arguments that are no config key: Keras's, and what the data or the
# model supply.
NOT_OPTIONS = {"self", "kwargs", "name", "input_size", "model_name", "semantics",
               "seen_semantics"}


def _signature(constructor):
    function = constructor.__init__ if isinstance(constructor, type) else constructor
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if name not in NOT_OPTIONS and p.kind is not p.VAR_KEYWORD}


@pytest.mark.parametrize("section", sorted(CONSTRUCTORS))
def test_each_section_is_its_pieces_arguments_with_their_defaults(section):
    spec, _ = arguments.SECTIONS[section]
    signature = _signature(CONSTRUCTORS[section])
    if section == "backbone":  # make_backbone names the backbone positionally
        signature["name"] = "vgg19"
    assert set(spec.names) == set(signature), section
    if section == "backbone":  # the config starts from ImageNet, the function from none
        signature["weights"] = "imagenet"
    assert spec.defaults() == signature, section
    schema = config_lib.SCHEMA["model"][section]
    assert set(schema) == set(signature) - set(spec.model_sets)
    assert all(schema[key] is spec.fields[key] for key in schema)  # one declaration


def test_the_sgma_constructor_takes_the_pieces_and_few_settings():
    parameters = inspect.signature(SGMA.__init__).parameters
    assert len([p for p in parameters if p not in ("self", "kwargs")]) <= 20


def _base_config():
    cfg = config_lib.default_config()
    cfg["input"].update(image_size=IMAGE_SIZE, global_size=None)
    cfg["model"].update(num_parts=2)
    cfg["model"]["backbone"].update(name="tiny", weights=None, tiny_width=TINY_WIDTH)
    cfg["model"]["attention"]["reduction"] = 4
    cfg["model"]["cropper"].update(output_size=LOCAL_SIZE, hidden_units=8)
    cfg["model"]["center"]["latent_dim"] = 8
    return config_lib.validate_config(cfg, check_paths=False)


# Values for keys whose automatic change (below) would break a cross-key rule or the
# tiny test model's shapes.
CHANGED = {
    "model.cropper.output_size": 24,
    "model.cropper.min_side": 0.3,
    "model.cropper.peak_gradient_temperature": 0.3,  # default null
    "model.backbone.feature_layer": "some_layer",
    "model.backbone.tiny_width": 5,
}


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
        high = field.max if field.max is not None else field.lt
        if high is not None and value < high:
            return (value + high) / 2
        return value * 1.5 + 0.25
    raise AssertionError(f"{key}: add a value to CHANGED")


def _build(cfg):
    semantics = np.random.default_rng(0).normal(size=(NUM_CLASSES, SEMANTIC_DIM))
    semantics /= np.linalg.norm(semantics, axis=1, keepdims=True)  # data.normalize_semantics
    data = type("Data", (), {"semantics": semantics.astype("float32")})()
    return build.build_model(cfg, data, SEEN)


SECTION_KEYS = sorted(
    f"model.{section}.{key}" for section, (spec, _) in arguments.SECTIONS.items()
    for key in spec.section()
    if (section, key) not in {("backbone", "weights"), ("backbone", "name"),
                              ("backbone", "feature_layer")})


@pytest.mark.parametrize("key", SECTION_KEYS)
def test_each_section_key_reaches_its_piece_under_its_own_name(key):
    """The tiny backbone has no layer to tap and one name is enough for the backbone
    section (`test_make_backbone_and_sgma_reach_a_registered_backbone`)."""
    _, section, arg = key.split(".")
    base = _base_config()
    fields = dict(iter_fields(config_lib.SCHEMA))
    changed = copy.deepcopy(base)
    new = _changed_value(key, fields[key], base["model"][section][arg])
    changed["model"][section][arg] = new
    cfg = config_lib.validate_config(changed, check_paths=False)  # still a valid config
    model = _build(cfg)
    _, attribute = arguments.SECTIONS[section]
    piece = model.get_config()[attribute]
    values = piece if section == "backbone" else piece["config"]
    assert values[arg] == cfg["model"][section][arg], f"{key} did not arrive"


@pytest.mark.parametrize("key, value, check", [
    ("model.num_parts", 3, lambda m: m.cropper.num_parts == m.multi_attention.num_parts == 3),
    ("model.num_parts", 0, lambda m: m.cropper is None and m.part_backbones == []),
    ("model.share_part_backbones", True, lambda m: len(m.part_backbones) == 1),
    ("model.separate_attention_backbone", True, lambda m: m.attention_backbone is not None),
    ("model.map_losses_reach_backbone", True, lambda m: m.map_losses_reach_backbone),
    ("model.gamma_cc", 2.0, lambda m: m.gamma_cc == 2.0),
    ("model.center", None, lambda m: m.center_head is None),
    ("input.global_size", 16, lambda m: m.global_size == 16),
    ("loss.div_margin", 0.3, lambda m: m.loss_settings["div_margin"] == 0.3),
    ("seed", 7, lambda m: m.cropper.seed == 7),
])
def test_each_model_setting_reaches_the_model(key, value, check):
    cfg = copy.deepcopy(_base_config())
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    model = _build(config_lib.validate_config(cfg, check_paths=False))
    assert check(model), key
    again = SGMA.from_config(model.get_config())
    assert check(again), f"{key} lost in get_config / from_config"


def _with(cfg, key, value):
    cfg = copy.deepcopy(cfg)
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return cfg


def test_model_weights_key_loads_the_backbone_file(tmp_path):
    base = _base_config()
    source = _build(base)
    path = str(tmp_path / "tiny.weights.h5")
    source.global_backbone.save_weights(path)
    keras.utils.set_random_seed(123)  # a different initialisation, unless the file loads
    model = _build(_with(base, "model.backbone.weights", path))
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


def test_a_new_layer_option_is_a_config_key_without_other_wiring():
    """`ClassCenterHead(center_stddev=...)` was added as one argument and one declared
    Field: the config key, the built layer and its saved config follow."""
    cfg = _with(_base_config(), "model.center.center_stddev", 0.01)
    model = _build(config_lib.validate_config(cfg, check_paths=False))
    assert model.center_head.center_stddev == 0.01
    model.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    assert float(np.std(model.center_head.get_weights()[-1])) < 0.05
    again = SGMA.from_config(model.get_config())
    assert again.center_head.center_stddev == 0.01
