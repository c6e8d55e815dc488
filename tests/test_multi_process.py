"""Training in several processes (`sgma_keras.multi_process`, docs/multi_host.md).

The slow tests start two processes on 127.0.0.1, one CPU device each, with
`train.py --local-processes 2`, under JAX (gloo) and TensorFlow
(MultiWorkerMirroredStrategy), whatever backend runs the tests.
"""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import keras
import numpy as np
import pytest

from sgma_keras import multi_process
from sgma_keras.data.pipeline import make_dataset
from sgma_keras.multi_process import Launch, MultiProcessError, requested_launch
from sgma_keras.workflow.launch import launch_local

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
AUDIT_SITE = os.path.join(HERE, "fixtures", "audit_writes")
BACKEND = keras.backend.backend()


# --------------------------------------------------------------------------
# Where a launch comes from
# --------------------------------------------------------------------------


def test_flags_make_the_launch():
    launch = requested_launch("127.0.0.1:1234", 2, 1, environ={}, backend="jax")
    assert launch == Launch(2, 1, ("127.0.0.1:1234",), launch.source)


def test_tensorflow_needs_every_address():
    with pytest.raises(MultiProcessError, match="address of every process"):
        requested_launch("127.0.0.1:1234", 2, 0, environ={}, backend="tensorflow")
    launch = requested_launch("127.0.0.1:1,127.0.0.1:2", 2, 0, environ={}, backend="tensorflow")
    assert launch.addresses == ("127.0.0.1:1", "127.0.0.1:2")


@pytest.mark.parametrize("flags,words", [
    (("127.0.0.1:1", 2, None), "--process-id missing"),
    (("127.0.0.1:1", 2, 2), "0 <= id < 2"),
    (("localhost", 2, 0), "HOST:PORT"),
])
def test_flags_that_do_not_fit_are_one_clear_error(flags, words):
    with pytest.raises(MultiProcessError, match=words):
        requested_launch(*flags, environ={}, backend="jax")


def test_environment_launches():
    tf_config = json.dumps({"cluster": {"worker": ["h0:1", "h1:1", "h2:1"]},
                            "task": {"type": "worker", "index": 2}})
    assert requested_launch(environ={"TF_CONFIG": tf_config}).count == 3
    assert requested_launch(environ={"TF_CONFIG": tf_config}).index == 2
    slurm = requested_launch(environ={"SLURM_NTASKS": "4", "SLURM_PROCID": "3"})
    assert (slurm.count, slurm.index, slurm.source) == (4, 3, "SLURM")
    keras_env = requested_launch(environ={"KERAS_DISTRIBUTION_JOB_ADDRESSES": "h0:9",
                                          "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                                          "KERAS_DISTRIBUTION_PROCESS_ID": "1"})
    assert (keras_env.count, keras_env.index) == (2, 1)
    # One task, or nothing: one process.
    assert requested_launch(environ={"SLURM_NTASKS": "1"}).count == 1
    assert requested_launch(environ={}).count == 1


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch backend's refusal")
def test_torch_refuses_several_processes(monkeypatch):
    monkeypatch.setitem(multi_process._STATE, "initialized", False)
    with pytest.raises(multi_process.MultiProcessUnsupported) as error:
        multi_process.initialize("127.0.0.1:1", 2, 0)
    assert str(error.value) == (
        "2 training processes were asked for (--num-processes/--process-id/--coordinator), "
        "but Keras's PyTorch backend has no multi-process data parallel; train with "
        "KERAS_BACKEND=jax or KERAS_BACKEND=tensorflow, or in one process.")
    assert multi_process.process_count() == 1


def test_torch_local_processes_is_refused_before_any_start(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, KERAS_BACKEND="torch")
    result = subprocess.run(
        [sys.executable, "train.py", "--config", "configs/demo.json", "--local-processes", "2",
         "--set", f"output_dir={json.dumps(str(tmp_path / 'run'))}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: 2 training processes were asked for (--local-processes), but Keras's "
        "PyTorch backend has no multi-process data parallel; train with KERAS_BACKEND=jax "
        "or KERAS_BACKEND=tensorflow, or in one process.")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------
# Data: each process decodes its slice of every global batch
# --------------------------------------------------------------------------


def _tiny_split(folder, count=20):
    from PIL import Image

    from sgma_keras.data.zsl_data import ImageSplit

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"{i:02d}.png")
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return ImageSplit(paths, np.arange(count) % 4)


def test_process_slices_make_the_global_batch(tmp_path):
    split = _tiny_split(str(tmp_path))
    common = dict(image_size=16, batch_size=4, training=True, deterministic=True, seed=3)

    def batches(**kwargs):
        ds = make_dataset(split, **common, **kwargs)
        return [(x.numpy(), y.numpy()) for _ in range(2) for x, y in ds]  # two epochs

    whole = batches()
    parts = [batches(shard=(index, 2)) for index in range(2)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 10  # 20 // 4 per epoch
    for step, (images, labels) in enumerate(whole):
        # Process 0's two images then process 1's: the same images, crops and jitter.
        np.testing.assert_array_equal(
            np.concatenate([parts[0][step][0], parts[1][step][0]]), images)
        np.testing.assert_array_equal(
            np.concatenate([parts[0][step][1], parts[1][step][1]]), labels)
    assert not np.array_equal(whole[0][1], whole[5][1])  # each epoch has its own order


def test_process_slices_decode_only_their_images(tmp_path):
    split = _tiny_split(str(tmp_path))
    split.labels = np.arange(len(split))  # the label names the file
    common = dict(image_size=16, batch_size=4, training=True, deterministic=True, seed=3,
                  check="none")
    others = {int(i) for _, y in make_dataset(split, **common, shard=(1, 2)) for i in y.numpy()}
    mine = [int(i) for _, y in make_dataset(split, **common, shard=(0, 2)) for i in y.numpy()]
    assert len(others) == len(mine) == 10 and not others & set(mine)
    for index in others:  # process 1's images: no longer images at all
        with open(split.paths[index], "wb") as handle:
            handle.write(b"not an image")
    again = [int(i) for _, y in make_dataset(split, **common, shard=(0, 2)) for i in y.numpy()]
    assert again == mine  # process 0 read a whole epoch without opening one of them


# --------------------------------------------------------------------------
# The launcher
# --------------------------------------------------------------------------


def _python(code):
    return [sys.executable, "-c", code]


def test_launcher_names_the_process_that_was_killed_and_stops_the_others():
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code = launch_local([
        _python("import time; print('chief up', flush=True); time.sleep(120)"),
        _python("import os, signal, time; time.sleep(0.5); os.kill(os.getpid(), signal.SIGKILL)"),
    ], stdout=out, stderr=err)
    assert code == 1
    assert time.monotonic() - started < 60  # the chief's two minutes were cut short
    assert "chief up" in out.getvalue()
    assert "error: process 1 of 2 (PID " in err.getvalue()
    assert "was killed by SIGKILL" in err.getvalue()


def test_launcher_prefixes_other_processes_and_succeeds():
    out, err = io.StringIO(), io.StringIO()
    code = launch_local([_python("print('from the chief')"), _python("print('from 1')")],
                        stdout=out, stderr=err)
    assert code == 0 and err.getvalue() == ""
    assert "from the chief\n" in out.getvalue()
    assert "[process 1] from 1\n" in out.getvalue()


def test_workers_run_no_writing_callback(monkeypatch, tmp_path):
    from sgma_keras.workflow.checkpoints import BestAndLastCheckpoint, SafeBackupAndRestore
    from sgma_keras.workflow.logs import AttentionImages
    from sgma_keras.workflow.processes import this_process_callbacks

    callbacks = [keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
                 keras.callbacks.TerminateOnNaN(),
                 keras.callbacks.TensorBoard(str(tmp_path / "tb")),
                 AttentionImages(str(tmp_path / "tb"), np.zeros((1, 8, 8, 3))),
                 BestAndLastCheckpoint(str(tmp_path)),
                 SafeBackupAndRestore(str(tmp_path / "backup"))]
    monkeypatch.setitem(multi_process._STATE, "launch", Launch(2, 1, None, "test"))
    kept = this_process_callbacks(list(callbacks))
    assert [type(c).__name__ for c in kept] == ["TerminateOnNaN", "_ModelCallOnly",
                                                "SafeBackupAndRestore"]
    assert kept[-1].writes is False
    monkeypatch.setitem(multi_process._STATE, "launch", Launch(2, 0, None, "test"))
    assert this_process_callbacks(list(callbacks)) == callbacks
    assert not os.listdir(tmp_path)
