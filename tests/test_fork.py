"""Variants started from one run's warm-up or init (`fork_run`, `train(stop_after=...)`)."""

import os

import numpy as np
import pytest

from sgma_keras.config import load_config
from sgma_keras.workflow import training
from sgma_keras.workflow.build import build_model, load_data
from sgma_keras.workflow.checkpoints import load_weights_quietly
from sgma_keras.workflow.fork import ForkError, fork_run
from sgma_keras.workflow.protocol import protocol
from sgma_keras.workflow.run_folder import RunFolder
from tests.test_training import ROOT, tiny_overrides


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("builtin")


def tiny_cfg(run_dir, data_dir, *overrides):
    return load_config(os.path.join(ROOT, "configs/demo.json"),
                       tiny_overrides(run_dir.parent, data_dir, output_dir=str(run_dir))
                       + list(overrides))


@pytest.fixture(scope="module")
def shared_start(tmp_path_factory, data_dir):
    """A run trained through warm-up and init only."""
    cfg = tiny_cfg(tmp_path_factory.mktemp("base") / "run", data_dir)
    assert training.train(cfg, verbose=0, stop_after="init") is None
    return cfg


def stage_model(cfg, stage):
    data = load_data(cfg)
    model = build_model(cfg, data, protocol(data, cfg["train"], cfg["seed"]).seen_classes)
    size = cfg["input"]["image_size"]
    model.build((None, size, size, 3))
    load_weights_quietly(model, RunFolder(cfg["output_dir"]).stage_weights(stage))
    return model


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_stop_after_runs_the_selection_phase_up_to_the_stage(shared_start):
    folder = RunFolder(shared_start["output_dir"])
    assert folder.completed() == ["warmup", "init"]
    assert not os.path.exists(folder.best) and not os.path.exists(folder.eval)


def test_a_joint_stage_variant_starts_from_the_shared_init(shared_start, data_dir, tmp_path):
    cfg = tiny_cfg(tmp_path / "no_cpt_div", data_dir, "loss.cpt_weight=0", "loss.div_weight=0")
    copied = fork_run(shared_start["output_dir"], cfg, "init")
    assert {"center_head", "multi_attention", "part_backbones[0]"} <= set(copied)
    assert same_weights(stage_model(cfg, "init"), stage_model(shared_start, "init"))
    results = training.train(cfg, verbose=0)
    assert 0.0 <= results["zsl_top1"] <= 1.0
    logs = os.listdir(os.path.join(cfg["output_dir"], "logs"))
    assert "joint.csv" in logs and "warmup.csv" not in logs  # the warm-up was not rerun


def test_pieces_only_one_model_has_are_left_out(shared_start, data_dir, tmp_path):
    """Without the class-center head (from init) and without parts (from the warm-up)."""
    no_center = tiny_cfg(tmp_path / "no_cct", data_dir, "model.center=null")
    assert "center_head" not in fork_run(shared_start["output_dir"], no_center, "init")
    source = stage_model(shared_start, "init")
    fork = stage_model(no_center, "init")
    assert fork.center_head is None
    assert same_weights(fork.multi_attention, source.multi_attention)
    global_only = tiny_cfg(tmp_path / "global", data_dir, "model.num_parts=0",
                           "model.center=null", "train.init.enabled=false")
    assert fork_run(shared_start["output_dir"], global_only, "warmup") == [
        "global_backbone", "embedding"]
    assert same_weights(stage_model(global_only, "warmup").global_backbone,
                        stage_model(shared_start, "warmup").global_backbone)
    assert RunFolder(global_only["output_dir"]).completed() == ["warmup"]
    # Random boxes: the cropper has no f_CNet, so it is not the start's.
    random_boxes = tiny_cfg(tmp_path / "random", data_dir, "model.cropper.box_source=random",
                            "train.init.enabled=false")
    copied = fork_run(shared_start["output_dir"], random_boxes, "warmup")
    assert "cropper" not in copied and "global_backbone" in copied
    assert stage_model(random_boxes, "warmup").cropper.weights == []


def test_a_fork_that_cannot_share_the_start_is_refused(shared_start, data_dir, tmp_path):
    other_seed = tiny_cfg(tmp_path / "seed", data_dir, "seed=5")
    with pytest.raises(ForkError, match="'seed' differs"):
        fork_run(shared_start["output_dir"], other_seed, "init")
    with pytest.raises(ForkError, match="stage 'init' is not finished"):
        fork_run(str(tmp_path / "nothing"), other_seed, "init")
    with pytest.raises(ForkError, match="expected one of"):
        fork_run(shared_start["output_dir"], other_seed, "joint")
    with pytest.raises(ForkError, match="already holds a run"):
        fork_run(shared_start["output_dir"], shared_start, "init")
