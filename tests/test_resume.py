"""Every stage trains exactly its epochs after any interruption and resume.

An interruption is injected where a real one lands: `raise_if_requested`, which training
calls after every training batch (the `StopWhenRequested` callback) and at every stage's
end, raises KeyboardInterrupt at its N-th call, as a SIGINT would; and a failing write of
a stage's weights stands for a `kill -9` in the middle of writing them. The same config is
then trained again and the epochs in every stage's CSV log are counted.
"""

import csv
import os

import keras
import numpy as np
import pytest

from sgma_keras.config import load_config
from sgma_keras.workflow import training
from sgma_keras.workflow.checkpoints import SafeBackupAndRestore
from tests.test_training import ROOT, tiny_overrides


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("builtin")


def epochs_logged(run, stage):
    with open(os.path.join(run, "logs", f"{stage}.csv"), newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def interrupt_at_call(monkeypatch, n):
    """`raise_if_requested` raises KeyboardInterrupt at its n-th call."""
    calls = {"count": 0}

    def maybe_raise():
        calls["count"] += 1
        if calls["count"] == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "raise_if_requested", maybe_raise)
    return calls


def tiny_cfg(tmp_path, data_dir, **extra):
    settings = {"train.warmup.epochs": 2, "train.joint.epochs": 2, "train.steps_per_epoch": 2}
    settings.update(extra)
    return load_config(os.path.join(ROOT, "configs/demo.json"),
                       tiny_overrides(tmp_path, data_dir, **settings))


def test_a_restored_backup_does_not_shorten_the_next_fit(tmp_path):
    """The cause, on every backend: a restore sets `model._initial_epoch`, which a later
    `fit` of the same model (the next stage) must not inherit."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 1), "float32")

    class StopAfterEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    first = SafeBackupAndRestore(str(tmp_path / "a"))
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, callbacks=[first, StopAfterEpoch()], verbose=0)
    resumed = model.fit(x, y, epochs=3, verbose=0,
                        callbacks=[SafeBackupAndRestore(str(tmp_path / "a"))])
    assert len(resumed.history["loss"]) == 1  # epoch 3 only: 1 and 2 were backed up
    next_stage = model.fit(x, y, epochs=2, verbose=0,
                           callbacks=[SafeBackupAndRestore(str(tmp_path / "b"))])
    assert len(next_stage.history["loss"]) == 2


@pytest.mark.parametrize("where", ["mid_warmup", "warmup_weights_write"])
def test_resume_trains_every_epoch_of_every_stage(tmp_path, data_dir, monkeypatch, where):
    cfg = tiny_cfg(tmp_path, data_dir, **{"train.refit": False})
    if where == "mid_warmup":
        interrupt_at_call(monkeypatch, 3)  # batch 1 of warm-up epoch 2
    else:
        real = training.save_weights_atomic

        def killed_while_writing(model, path):
            if path.endswith("warmup.weights.h5"):
                monkeypatch.setattr(training, "save_weights_atomic", real)
                raise KeyboardInterrupt
            real(model, path)

        monkeypatch.setattr(training, "save_weights_atomic", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, verbose=0)
    monkeypatch.undo()
    training.train(cfg, verbose=0)
    run = cfg["output_dir"]
    assert epochs_logged(run, "warmup") == [0, 1]
    assert epochs_logged(run, "joint") == [0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("call", [5, 6, 9, 12, 15])
def test_resume_at_each_stage_boundary_of_both_phases(tmp_path, data_dir, monkeypatch, call):
    """Calls of `raise_if_requested` with 2 steps an epoch and 2 epochs a stage: 1-4
    warm-up batches, 5 warm-up end, 6 init end, 7-10 joint batches, 11 joint end, then
    the refit's: 12-15 warm-up batches, 16 its end, 17 init end, 18-21 joint batches."""
    cfg = tiny_cfg(tmp_path, data_dir)
    interrupt_at_call(monkeypatch, call)
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, verbose=0)
    monkeypatch.undo()
    results = training.train(cfg, verbose=0)
    run = cfg["output_dir"]
    for stage in ("warmup", "joint", "refit_warmup"):
        assert epochs_logged(run, stage) == [0, 1], stage
    chosen = training._selected_joint_epochs(cfg, training.RunFolder(run))[0]
    assert epochs_logged(run, "refit_joint") == list(range(chosen))
    assert results["trained_classes"] == results["gzsl_seen_classes"]
