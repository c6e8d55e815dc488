"""End-to-end training: stages, run folder, resume after a kill, determinism, bad configs."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import keras
import pytest

from sgma_keras.workflow import training
from sgma_keras.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_overrides(tmp_path, data_dir, **extra):
    """A CPU-sized run of the demo config: tiny images, model and epochs."""
    settings = {
        "output_dir": str(tmp_path / "run"),
        "data.builtin.cache_dir": str(data_dir),
        "data.builtin.num_images": 96,
        "data.builtin.num_classes": 8,
        "data.builtin.num_unseen": 2,
        "data.builtin.image_size": 48,
        "input.image_size": 32,
        "model.cropper.output_size": 16,
        "input.batch_size": 8,
        "input.deterministic": True,
        "model.backbone.tiny_width": 4,
        "model.center.latent_dim": 8,
        "model.cropper.hidden_units": 8,
        "train.warmup.epochs": 1,
        "train.joint.epochs": 1,
        "train.init.num_images": 16,
        "train.steps_per_epoch": 2,
        "train.tensorboard": False,
    }
    settings.update(extra)
    return [f"{key}={json.dumps(value)}" for key, value in settings.items()]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("builtin")


def run_train_cli(args, **kwargs):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train.py"), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs,
    )


@pytest.mark.slow
def test_train_end_to_end_writes_run_folder(tmp_path, data_dir, caplog):
    cfg = load_config(os.path.join(ROOT, "configs/demo.json"), tiny_overrides(tmp_path, data_dir))
    with caplog.at_level("INFO", logger="sgma_keras"):
        results = training.train(cfg, verbose=0)
    # The start joint training's localisation is compared with, in the log.
    assert re.search(r"annotated part on validation images after init: [0-9.]+%, [0-9.]+%",
                     caplog.text), caplog.text[-2000:]
    run = cfg["output_dir"]
    for name in ["config.json", "versions.json", "state.json", "eval/results.json",
                 "checkpoints/best.keras", "checkpoints/last.keras",
                 "checkpoints/warmup.weights.h5", "checkpoints/init.weights.h5",
                 "checkpoints/choices.json", "checkpoints/refit.keras",
                 "checkpoints/final.keras", "logs/warmup.csv", "logs/joint.csv",
                 "logs/refit_warmup.csv", "logs/refit_joint.csv"]:
        assert os.path.exists(os.path.join(run, name)), name
    with open(os.path.join(run, "state.json")) as handle:
        assert json.load(handle)["completed"] == ["warmup", "init", "joint", "refit_warmup",
                                                  "refit_init", "refit_joint"]
    # The protocol: the scored model was fit on all seen classes, GZSL counts exactly those.
    from sgma_keras.workflow.build import load_data
    split_seen = sorted(int(c) for c in load_data(cfg).seen_classes)
    assert results["trained_classes"] == results["gzsl_seen_classes"] == split_seen
    assert set(results["heads"]) == {"embedding", "center", "fused"}
    with open(os.path.join(run, "checkpoints", "choices.json")) as handle:
        choices = json.load(handle)
    final = keras.saving.load_model(os.path.join(run, "checkpoints", "final.keras"))
    assert final.gamma_cc == choices["gamma_cc"]["value"]
    assert final.calibration == pytest.approx(choices["calibration"]["gamma"])
    assert sorted(final.seen_classes.tolist()) == split_seen
    with open(os.path.join(run, "versions.json")) as handle:
        assert json.load(handle)["backend"] == keras.backend.backend()
    for key in ["zsl_top1", "gzsl_u", "gzsl_s", "gzsl_h"]:
        assert 0.0 <= results[key] <= 1.0
    h = results["gzsl_h"]
    u, s = results["gzsl_u"], results["gzsl_s"]
    assert h == pytest.approx(0.0 if u + s == 0 else 2 * u * s / (u + s))
    header = open(os.path.join(run, "logs/joint.csv")).readline()
    for term in ["loss_cpt", "loss_div", "loss_cls", "loss_cct", "val_zsl_acc"]:
        assert term in header
    # Running the finished command again does no training and gives the same results.
    again = training.train(cfg, verbose=0)
    assert again["zsl_top1"] == pytest.approx(results["zsl_top1"])


def test_same_seed_same_loss(tmp_path, data_dir):
    losses = []
    for name in ["a", "b"]:
        cfg = load_config(
            os.path.join(ROOT, "configs/demo.json"),
            tiny_overrides(tmp_path / name, data_dir, **{
                "train.init.enabled": False, "train.joint.enabled": False,
            }),
        )
        training.train(cfg, verbose=0)
        with open(os.path.join(cfg["output_dir"], "logs/warmup.csv")) as handle:
            rows = handle.read().splitlines()
        header = rows[0].split(",")
        losses.append(float(rows[1].split(",")[header.index("loss")]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


@pytest.mark.slow
def test_kill_mid_epoch_then_resume(tmp_path, data_dir):
    overrides = tiny_overrides(tmp_path, data_dir, **{
        "train.joint.epochs": 3, "train.steps_per_epoch": 6, "train.backup_every_steps": 1,
    })
    argv = ["--config", "configs/demo.json"]
    for item in overrides:
        argv += ["--set", item]
    metadata = tmp_path / "run" / "backup" / "joint" / "training_metadata.json"
    first = run_train_cli(argv)
    deadline = time.time() + 600
    while not metadata.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert metadata.exists(), first.communicate()[0][-3000:]
    first.send_signal(signal.SIGKILL)
    first.wait()
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["completed"] == ["warmup", "init"]  # killed inside the joint stage

    second = run_train_cli(argv)
    output, _ = second.communicate(timeout=900)
    assert second.returncode == 0, output[-3000:]
    assert "Stage warmup" not in output  # finished stages are not redone
    assert "Resuming from backup" in output
    assert "ZSL top-1" in output
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["completed"][:3] == ["warmup", "init", "joint"]
    assert state["completed"][3:] == ["refit_warmup", "refit_init", "refit_joint"]
    assert not (tmp_path / "run" / "backup" / "joint").exists()


def test_bad_config_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({
        "model": {"num_prts": 2, "backbone": "vgg91"},
        "input": {"batch_size": "32"},
        "data": {"source": "proposed_split", "root": str(tmp_path / "missing")},
    }))
    process = run_train_cli(["--config", str(bad)])
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "did you mean 'num_parts'" in output
    assert "model.backbone" in output
    assert "input.batch_size" in output
    assert "data.root" in output
    assert "Traceback" not in output


def test_dockerfile_copies_existing_files():
    lines = open(os.path.join(ROOT, "Dockerfile")).read().splitlines()
    copied = [word for line in lines if line.startswith("COPY") for word in line.split()[1:-1]]
    assert copied, "the Dockerfile copies nothing"
    for path in copied:
        assert os.path.exists(os.path.join(ROOT, path)), f"Dockerfile copies missing {path}"
