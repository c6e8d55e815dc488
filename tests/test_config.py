"""Config schema, loading, overrides, validation and saving (fast; no model code)."""

import glob
import json
import os

import pytest

from sgma_keras import config as C
from sgma_keras import config_output, config_validation
from sgma_keras.config import ConfigError, Field, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.json")))


def write(tmp_path, obj, name="cfg.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


def problems(excinfo):
    return excinfo.value.errors


# -- shipped configs -------------------------------------------------------------------

def test_configs_exist():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {"awa.json", "cub.json", "flo.json", "demo.json"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_shipped_configs_validate(path):
    cfg = load_config(path, check_paths=False)
    assert cfg["output_dir"] == f"runs/{cfg['name']}"
    assert "_comment" not in cfg
    if os.path.basename(path) in ("awa.json", "cub.json", "flo.json"):
        # the paper's settings
        assert cfg["data"]["source"] == "proposed_split"
        backbone, cropper = cfg["model"]["backbone"], cfg["model"]["cropper"]
        assert (backbone["name"], backbone["weights"]) == ("vgg19", "imagenet")
        assert (cfg["input"]["image_size"], cropper["output_size"]) == (448, 224)
        assert cfg["model"]["num_parts"] == 2 and cropper["steepness"] == 10.0
        assert (cfg["loss"]["div_margin"], cfg["loss"]["cct_margin"]) == (0.2, 0.8)
        t = cfg["train"]
        assert (t["optimizer"], t["learning_rate"], t["momentum"], t["weight_decay"]) == \
            ("sgd", 0.05, 0.9, 5e-4)
        assert (t["lr_factor"], t["min_lr"], cfg["input"]["batch_size"]) == (0.1, 5e-4, 32)


# Values the paper configs train with that are not the paper's (docs/CONFIG.md, the spec).
NOT_THE_PAPERS = {
    "model.attention.normalize": True,
    "model.cropper.anchor": "peak",
    "model.map_losses_reach_backbone": False,
    "model.cropper.peak_gradient_temperature": None,
    "loss.div_reduction": "mean",
    "loss.cct_weight": 0.1,
}


def _comments(node):
    if isinstance(node, dict):
        return "".join((v if k.startswith("_") else _comments(v)) for k, v in node.items())
    return ""


@pytest.mark.parametrize("name", ["awa.json", "cub.json", "flo.json"])
def test_paper_configs_name_every_value_that_is_not_the_papers(name):
    """Each such value is named, with its reason, in the config's comments; one taken
    from the defaults is tagged as a choice in the schema (docs/CONFIG.md) too."""
    path = os.path.join(REPO, "configs", name)
    with open(path, encoding="utf-8") as handle:
        comments = _comments(json.load(handle))
    cfg = load_config(path, check_paths=False)
    fields = dict(config_validation.iter_fields(C.SCHEMA))
    assert "also the defaults" not in comments
    for key, value in NOT_THE_PAPERS.items():
        assert config_validation.lookup(cfg, key) == value, key
        assert key.rsplit(".", 1)[1] in comments, f"{name}: {key} is not the paper's; say why"
        if fields[key].default == value:
            assert "[choice" in fields[key].doc, key


def test_paper_configs_report_missing_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/ here
    with pytest.raises(ConfigError) as e:
        load_config(os.path.join(REPO, "configs", "cub.json"))
    text = str(e.value)
    assert "data.root" in text and "data.split_dir" in text and "cub.json" in text


def test_demo_validates_with_path_checks():
    cfg = load_config(os.path.join(REPO, "configs", "demo.json"))
    assert cfg["model"]["backbone"]["name"] == "tiny"
    assert cfg["model"]["backbone"]["weights"] is None
    assert cfg["data"]["builtin"]["image_size"] == cfg["input"]["image_size"] == 112


# -- schema ----------------------------------------------------------------------------

def test_defaults_are_complete_and_paper():
    cfg = C.default_config()
    paths = [p for p, _ in config_validation.iter_fields(C.SCHEMA)]
    for p in paths:
        assert config_validation.lookup(cfg, p) is not config_validation.MISSING, p
    assert cfg["output_dir"] == "runs/sgma"
    assert cfg["model"]["num_parts"] == 2 and cfg["model"]["share_part_backbones"] is False
    assert cfg["model"]["embedding"]["normalize"] is False
    cropper = cfg["model"]["cropper"]
    assert (cropper["min_side"], cropper["max_side"]) == (0.25, 0.6)
    assert load_config(None, check_paths=False) == cfg


def test_schema_markdown_lists_every_key():
    md = config_output.schema_markdown()
    for p, _ in config_validation.iter_fields(C.SCHEMA):
        assert f"| `{p}` |" in md
    assert "| `model.num_parts` | int >= 0 | `2` |" in md
    assert "| `model.center` | section \\| null | | the arguments of ClassCenterHead" in md


def test_docs_config_md_is_the_generated_reference():
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "CONFIG.md")
    with open(path, encoding="utf-8") as f:
        assert f.read() == config_output.reference_markdown(), (
            "docs/CONFIG.md is out of date: python -m sgma_keras.config --markdown > "
            "docs/CONFIG.md"
        )


def test_bad_field_default_fails_at_definition():
    with pytest.raises(ValueError):
        Field(int, 0, min=1)


# -- errors ----------------------------------------------------------------------------

def test_unknown_key_did_you_mean(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, {"model": {"num_prts": 3}, "num_parts": 2, "_note": 1}))
    errs = problems(e)
    assert len(errs) == 2
    assert "model.num_prts: unknown key (did you mean 'num_parts'?)" in errs
    assert any(x.startswith("num_parts:") and "'model.num_parts'" in x for x in errs)


def test_all_problems_reported_together(tmp_path):
    raw = {
        "model": {"num_parts": -1, "cropper": {"min_side": 0.7, "max_side": 0.5},
                  "backbone": {"weights": "no.weights.h5"}},
        "train": {"learning_rate": "fast", "optimizer": "adagrad"},
        "input": {"flip": True, "augment": {"min_crop_area": 1.5}},
    }
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, raw))
    text = str(e.value)
    assert "model.num_parts: expected an int >= 0, got -1" in text
    assert "train.learning_rate: expected a float > 0, got \"fast\"" in text
    assert "train.optimizer: expected one of \"sgd\", \"adam\", got \"adagrad\"" in text
    assert "input.augment.min_crop_area: expected a float in (0, 1], got 1.5" in text
    assert "model.cropper.min_side: must be <= max_side, got 0.7 > 0.5" in text
    assert "model.backbone.weights: file not found: 'no.weights.h5'" in text
    assert "input.flip: unknown key (did you mean 'input.augment.flip'?)" in text
    assert len(problems(e)) == 7
    assert text.startswith(f"invalid configuration '{tmp_path}")


def test_type_rules(tmp_path):
    bad = {"seed": 1.0, "train": {"jit": 1, "steps_per_epoch": True},
           "model": {"backbone": {"tiny_width": 3}}, "data": {"source": "propsed_split", "builtin": 5}}
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, bad))
    text = str(e.value)
    assert "seed: expected an int >= 0, got 1.0" in text
    assert "train.jit: expected a bool (true or false), got 1" in text
    assert "train.steps_per_epoch: expected an int >= 1 or null, got true" in text
    assert "model.backbone.tiny_width: expected an int >= 4, got 3" in text
    assert '(did you mean "proposed_split"?)' in text
    assert "data.builtin: expected a section" in text
    # floats accept ints; nullable fields accept null
    cfg = load_config(write(tmp_path, {"train": {"learning_rate": 1, "steps_per_epoch": None}}))
    assert cfg["train"]["learning_rate"] == 1.0 and isinstance(cfg["train"]["learning_rate"], float)


def test_cross_field_checks(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, {"input": {"image_size": 64},
                                     "model": {"backbone": {"name": "tiny"},
                                               "cropper": {"output_size": 128}},
                                     "data": {"builtin": {"num_unseen": 24}}}))
    text = str(e.value)
    assert ("model.cropper.output_size: the part crop (128 px) must not exceed the image "
            "side (64 px)") in text
    assert "model.backbone.weights: the tiny backbone has no ImageNet weights" in text
    assert "data.builtin.num_unseen: must be < data.builtin.num_classes" in text
    with pytest.raises(ConfigError, match=r"input.global_size: must divide image_size "
                                          r"\(448\) so the global view is an exact average "
                                          r"pooling, got 100"):
        load_config(write(tmp_path, {"input": {"global_size": 100}}))
    # a cross check is skipped when one of its values is already invalid
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, {"model": {"cropper": {"min_side": 0.0, "max_side": 0.1}}}))
    assert len(problems(e)) == 1


def test_data_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    split = tmp_path / "split"
    split.mkdir()
    (split / "att_splits.mat").write_bytes(b"")
    raw = {"data": {"source": "proposed_split", "root": "imgs", "split_dir": "split"}}
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, raw))
    assert problems(e) == ["data.split_dir: 'split' lacks res101.mat (relative to "
                           f"{tmp_path}) (needed by data.source 'proposed_split')"]
    (split / "res101.mat").write_bytes(b"")
    assert load_config(write(tmp_path, raw))["data"]["split_dir"] == "split"
    # required for the source
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, {"data": {"source": "cub_raw"}}))
    assert problems(e) == ["data.root: required for data.source 'cub_raw', got null"]
    # builtin needs no paths; a source's section paths are checked only for that source
    load_config(write(tmp_path, {"data": {"tfds": {"class_split": "missing.txt"}}}))
    with pytest.raises(ConfigError, match="data.tfds.class_split: file not found"):
        load_config(write(tmp_path, {"data": {"source": "tfds",
                                              "tfds": {"class_split": "missing.txt"}}}))
    # weights file
    (tmp_path / "w.weights.h5").write_bytes(b"")
    cfg = load_config(None, ["model.backbone.weights=w.weights.h5"])
    assert cfg["model"]["backbone"]["weights"] == "w.weights.h5"
    cfg = load_config(None, ["model.backbone.weights=null"])
    assert cfg["model"]["backbone"]["weights"] is None


def test_json_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, '{\n  "seed": 1,\n  "name": "x"\n  "model": {}\n}\n', "broken.json")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    text = str(e.value)
    assert "broken.json" in text and "line 4, column 3" in text and '"model": {}' in text


def test_missing_file_and_non_object(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.json"))
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_config(write(tmp_path, [1, 2]))


def test_duplicate_key(tmp_path):
    with pytest.raises(ConfigError, match="model.num_parts: duplicate key"):
        load_config(write(tmp_path, '{"model": {"num_parts": 2, "num_parts": 3}}'))


# -- overrides -------------------------------------------------------------------------

@pytest.mark.parametrize("item, value", [
    ("a.b=3", 3), ("a.b=0.5", 0.5), ("a.b=1e-3", 0.001), ("a.b=true", True),
    ("a.b=null", None), ("a.b=[1, 2.5]", [1, 2.5]), ("a.b=adam", "adam"),
    ('a.b="3"', "3"), ("a.b=x=y", "x=y"), ('a.b={"c": 1}', {"c": 1}),
])
def test_parse_override(item, value):
    assert C.parse_override(item) == ("a.b", value)


def test_overrides_apply_nested(tmp_path):
    path = os.path.join(REPO, "configs", "demo.json")
    cfg = load_config(path, ["model.num_parts=3", "train.optimizer=sgd",
                             "train.mixed_precision=null", "model.embedding.normalize=true",
                             "train.warmup.learning_rate=0.01", "input.augment.color_jitter=0",
                             'model.center={"latent_dim": 64}', "name=ovr"])
    assert cfg["model"]["num_parts"] == 3 and cfg["train"]["optimizer"] == "sgd"
    assert cfg["train"]["mixed_precision"] is None
    assert cfg["model"]["embedding"]["normalize"] is True
    assert cfg["train"]["warmup"]["learning_rate"] == 0.01
    assert cfg["train"]["warmup"]["epochs"] == 6  # untouched sibling from the file
    assert cfg["input"]["augment"]["color_jitter"] == 0.0
    assert cfg["model"]["center"] == {"latent_dim": 64, "ridge_lambda": 1.0, "center_stddev": 1.0}
    assert cfg["output_dir"] == "runs/ovr"


def test_override_errors(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.num_prts=3", "seed.x=1", "noequals", "model.num_parts=-1"])
    errs = problems(e)
    assert errs[0] == ("model.num_prts: unknown key (did you mean 'num_parts'?) "
                       "(override 'model.num_prts=3')")
    assert errs[1].startswith("seed: is a value, not a section")
    assert "expected KEY=VALUE" in errs[2]
    assert errs[3] == "model.num_parts: expected an int >= 0, got -1"


def test_a_section_turned_off_and_on_again():
    cfg = load_config(None, ["model.center=null"], check_paths=False)
    assert cfg["model"]["center"] is None
    cfg = load_config(None, ["model.center=null", "model.center.latent_dim=8"],
                      check_paths=False)
    assert cfg["model"]["center"] == {"latent_dim": 8, "ridge_lambda": 1.0, "center_stddev": 1.0}
    with pytest.raises(ConfigError, match=r"model.cropper: expected a section"):
        load_config(None, ["model.cropper=null"], check_paths=False)


# -- files of the first layout (flat model keys) ---------------------------------------

FLAT = {
    "input": {"image_size": 64, "local_size": 32, "batch_size": 8},
    "model": {"backbone": "tiny", "weights": None, "tiny_width": 8, "part_mode": "random",
              "attention_reduction": 4, "attention_normalize": False, "cnet_hidden": 16,
              "min_side": 0.3, "boxcar_steepness": 5.0, "boxcar_mask_at": "input_pixels",
              "boxcar_margin": 0.2, "box_anchor": "cnet", "boxcar_steepness_unit": "relative",
              "peak_gradient_temperature": 0.2, "num_parts": 3,
              "embedding": {"normalize": True}, "center": {"enabled": False}},
}
SECTIONED = {
    "input": {"image_size": 64, "batch_size": 8},
    "model": {"backbone": {"name": "tiny", "weights": None, "tiny_width": 8}, "num_parts": 3,
              "attention": {"reduction": 4, "normalize": False},
              "cropper": {"output_size": 32, "box_source": "random", "hidden_units": 16,
                          "min_side": 0.3, "steepness": 5.0, "mask_at": "input_pixels",
                          "margin": 0.2, "anchor": "cnet", "steepness_unit": "relative",
                          "peak_gradient_temperature": 0.2},
              "embedding": {"normalize": True}, "center": None},
}


def test_a_config_of_flat_model_keys_loads_as_its_sections_with_one_notice(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="sgma_keras"):
        old = load_config(write(tmp_path, FLAT, "old.json"), check_paths=False)
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and "old.json" in notices[0] and "part_mode" in notices[0]
    assert old == load_config(write(tmp_path, SECTIONED, "new.json"), check_paths=False)
    # the global branch alone; flat keys given as overrides are read the same way
    none = load_config(None, ["model.part_mode=none", "input.local_size=112",
                              "model.center.enabled=true"], check_paths=False)
    assert none["model"]["num_parts"] == 0 and none["model"]["center"] is not None
    assert none["model"]["cropper"]["output_size"] == 112


def test_list_fields():
    schema = {"mean": Field(list, [0.5, 0.5, 0.5], item=float, length=3, min=0, max=1),
              "name": Field(str, "x")}
    cfg = load_config(None, ["mean=[0, 1, 0.25]"], schema=schema)
    assert cfg["mean"] == [0.0, 1.0, 0.25]
    with pytest.raises(ConfigError) as e:
        load_config(None, ["mean=[0, 2]"], schema=schema)
    assert problems(e) == ["mean: expected a list of 3 floats in [0, 1], got [0, 2]"]


# -- saving ----------------------------------------------------------------------------

def test_round_trip_and_save(tmp_path):
    cfg = load_config(os.path.join(REPO, "configs", "demo.json"), ["model.num_parts=3"])
    assert json.loads(config_output.config_to_json(cfg)) == cfg
    run_dir = tmp_path / "run"
    out = config_output.save_resolved_config(cfg, run_dir)
    assert out == str(run_dir / "config.json")
    assert sorted(os.listdir(run_dir)) == ["config.json", "versions.json"]  # no temp files
    assert load_config(out) == cfg
    versions = json.loads((run_dir / "versions.json").read_text())
    import keras

    import sgma_keras
    assert versions["sgma_keras"] == sgma_keras.__version__
    assert versions["keras"] == keras.__version__
    assert versions["backend"] == keras.backend.backend()
    assert versions["python"].count(".") == 2
    # overwrite in place
    config_output.save_resolved_config(cfg, run_dir)
    assert sorted(os.listdir(run_dir)) == ["config.json", "versions.json"]


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    with pytest.raises(ValueError):  # unserialisable: fails before any file is made
        config_output.save_resolved_config({"x": float("nan")}, tmp_path)
    assert os.listdir(tmp_path) == []

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(config_output.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        config_output.save_resolved_config(C.default_config(), tmp_path)
    assert os.listdir(tmp_path) == []  # the temp file was removed
