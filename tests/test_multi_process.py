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


def test_a_lost_process_is_one_line_naming_the_engines_cause(monkeypatch):
    monkeypatch.setitem(multi_process._STATE, "launch", Launch(2, 1, None, "test"))
    tf_error = RuntimeError("Graph execution error:\n\nDetected at node x\nCollective ops is "
                            "aborted by: recvmsg:Connection reset by peer\nmore")
    line = multi_process.lost_peer_message(tf_error)
    assert line.startswith("process 1 of 2: another process of the launch stopped or cannot "
                           "be reached (Collective ops is aborted by: recvmsg:Connection "
                           "reset by peer); this one stops too.")
    assert multi_process.lost_peer_message(ValueError("shapes (2,) and (3,) differ")) is None
    assert multi_process.lost_peer_message(MultiProcessError("gloo: a user error")) is None
    monkeypatch.setitem(multi_process._STATE, "launch", Launch())
    assert multi_process.lost_peer_message(tf_error) is None  # one process: not a lost peer


def test_every_process_prefits_the_chiefs_channel_groups(monkeypatch, caplog):
    from sgma_keras.workflow.training import chief_channel_groups

    mine = np.array([0, 1, 1, 0])
    assert chief_channel_groups(mine) is mine  # one process
    monkeypatch.setitem(multi_process._STATE, "launch", Launch(2, 1, None, "test"))
    sent = []
    monkeypatch.setattr(multi_process, "gather_values",
                        lambda name, value: sent.append(value) or [[1, 1, 0, 0], value])
    with caplog.at_level("WARNING", logger="sgma_keras"):
        assert chief_channel_groups(mine).tolist() == [1, 1, 0, 0]
    assert sent == [[0, 1, 1, 0]]
    assert "Process 1 of 2: its k-means put 2 of 4 channels in other groups than the " \
           "chief's" in caplog.text
    caplog.clear()
    assert chief_channel_groups(np.array([1, 1, 0, 0])).tolist() == [1, 1, 0, 0]
    assert caplog.text == ""


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


# --------------------------------------------------------------------------
# End to end: two processes on 127.0.0.1, one CPU device each
# --------------------------------------------------------------------------

# Fast, deterministic XLA:CPU kernels for the tiny model (the same in every run).
_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_multi_thread_eigen=false"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("builtin")


def _train_args(run, data_dir, stages="all", **extra):
    """`stages="all"`: every stage of the pipeline (warm-up, attention init, joint,
    then the refit's three); "fit": the warm-up and joint stages only."""
    from tests.test_training import tiny_overrides

    settings = {} if stages == "all" else {"train.init.enabled": False, "train.refit": False}
    settings.update(extra)
    args = ["--config", "configs/demo.json"]
    for item in tiny_overrides(run.parent, data_dir, **settings):
        args += ["--set", item]
    return args + ["--output-dir", str(run)]


def _env(backend, audit_root=None, audit_log=None, devices=1):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
               XLA_FLAGS=_XLA_FLAGS + (f" --xla_force_host_platform_device_count={devices}"
                                       if devices > 1 else ""))
    if audit_root:
        env.update(PYTHONPATH=os.pathsep.join([AUDIT_SITE, ROOT]), SGMA_AUDIT_ROOT=str(audit_root),
                   SGMA_AUDIT_LOG=str(audit_log))
    return env


def _run(argv, env, timeout=900):
    result = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


def _weights(path):
    """{name: array} of a `.keras` archive or a `.weights.h5` file."""
    import h5py

    path = str(path)
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            data = io.BytesIO(archive.read("model.weights.h5"))
    else:
        with open(path, "rb") as handle:
            data = io.BytesIO(handle.read())
    found = {}
    with h5py.File(data, "r") as handle:
        handle.visititems(lambda name, item: found.__setitem__(name, np.asarray(item))
                          if isinstance(item, __import__("h5py").Dataset) else None)
    return found


def _csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _audit(log_dir):
    rows = []
    for name in os.listdir(log_dir):
        with open(os.path.join(log_dir, name)) as handle:
            rows += [line.rstrip("\n").split("\t") for line in handle]
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_two_processes_train_like_one(tmp_path, data_dir, backend):
    """The whole pipeline, 2 steps of global batch 8 per fitting stage: warm-up,
    attention init (k-means channel groups and the attention pre-fit on 16 images),
    joint, the choices on validation, then the refit on all seen classes (warm-up,
    init, joint with the chosen epochs). Two processes end with the weights after
    each stage, the logs, the choices and the test numbers of one process training on
    the same global batches in the same order, and only process 0 writes the run
    folder, each file once.

    The one process: JAX, over two (virtual CPU) devices: measured bit-identical.
    TensorFlow, over one device under a strategy (Keras's fit under any strategy
    draws one pass of the pipeline's random streams before training, so a
    strategy-less run sees other shuffles): weights within 3e-5.
    """
    one, two, audit = tmp_path / "one", tmp_path / "two", tmp_path / "audit"
    audit.mkdir()
    reference = _train_args(one, data_dir, **{"train.distribute": "data_parallel"})
    single = _run([sys.executable, "train.py", *reference],
                  _env(backend, devices=2 if backend == "jax" else 1))
    tolerance = 0.0 if backend == "jax" else 1e-4
    output = _run([sys.executable, "train.py", *_train_args(two, data_dir),
                   "--local-processes", "2"], _env(backend, two, audit))
    assert "[process 1] process 1 of 2: done" in output
    assert "ZSL top-1" in output

    # The init stage ran in both phases; the chief found the channel groups of the
    # one-process run (their sizes; the weights below hold the groups), and so did
    # process 1.
    groups = _lines_with("Channel groups: ", single)
    assert len(groups) == 2, single[-3000:]  # selection and refit
    assert _lines_with("Channel groups: ", output, prefix="") == groups, output[-3000:]
    # (process 1 logs warnings only: one would say its own groups were not the chief's)
    assert "other groups than the chief's" not in output
    for key in ("refit_warmup", "refit_init", "refit_joint"):
        assert f"Stage {key} (" in output, output[-3000:]

    # Weights after the init stage (its k-means groups and pre-fit), the selection's
    # last step and the refit's; then the final model (the refit, with the choices).
    for name in ("init.weights.h5", "last.keras", "refit_init.weights.h5", "refit.keras",
                 "final.keras"):
        a, b = _weights(one / "checkpoints" / name), _weights(two / "checkpoints" / name)
        assert a.keys() == b.keys() and len(a) > 20, name
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=0, atol=tolerance,
                                       err_msg=f"{name}: {key}")
    # Logs (losses, validation metrics) of every fitting stage; the choices; the test
    # evaluation: the same numbers.
    for stage in ("warmup", "joint", "refit_warmup", "refit_joint"):
        for row_a, row_b in zip(_csv_rows(one / "logs" / f"{stage}.csv"),
                                _csv_rows(two / "logs" / f"{stage}.csv"), strict=True):
            assert row_a.keys() == row_b.keys()
            for key in row_a:
                if "NA" in (row_a[key], row_b[key]):  # (the refit has no validation)
                    assert row_b[key] == row_a[key], (stage, key)
                    continue
                assert float(row_b[key]) == pytest.approx(float(row_a[key]), rel=10 * tolerance,
                                                          abs=tolerance), (stage, key)
    choices = [json.loads((run / "checkpoints" / "choices.json").read_text())
               for run in (one, two)]
    assert choices[1]["epochs"] == choices[0]["epochs"] == {"warmup": 1, "init": 0, "joint": 1}
    assert choices[1]["gamma_cc"]["value"] == pytest.approx(choices[0]["gamma_cc"]["value"])
    results = [json.loads((run / "eval" / "results.json").read_text()) for run in (one, two)]
    for key in ("zsl_top1", "gzsl_u", "gzsl_s", "gzsl_h", "gzsl_cal_u", "gzsl_cal_s",
                "gzsl_cal_h", "ausuc"):
        assert results[1][key] == pytest.approx(results[0][key], abs=1e-6), key

    # Files: every write into the run folder came from process 0; each checkpoint once.
    writes = _audit(audit)
    assert writes and {process for process, _, _ in writes} == {"0"}, writes[:5]
    renamed = [os.path.relpath(path, two) for _, event, path in writes if event == "os.rename"]
    for name in ("checkpoints/warmup.weights.h5", "checkpoints/init.weights.h5",
                 "checkpoints/last.keras", "checkpoints/best.keras",
                 "checkpoints/choices.json", "checkpoints/refit_warmup.weights.h5",
                 "checkpoints/refit_init.weights.h5", "checkpoints/refit.keras",
                 "checkpoints/final.keras", "eval/results.json"):
        assert renamed.count(name) == 1, (name, sorted(renamed))
    assert not list(two.glob("**/.tmp-*"))


def _lines_with(words, output, prefix=None):
    """The text after `words` on the output's lines that have it; `prefix`: only the
    lines a process's prefix starts ("" for the chief's)."""
    found = []
    for line in output.splitlines():
        if words not in line:
            continue
        if prefix == "" and line.startswith("[process "):
            continue
        if prefix and not line.startswith(prefix):
            continue
        found.append(line.split(words, 1)[1])
    return found


def _child_pid(launcher_pid, process_id):
    """PID of the launcher's child started with `--process-id process_id`."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if parent == launcher_pid and b"--process-id" in argv and \
                argv[argv.index(b"--process-id") + 1] == str(process_id).encode():
            return int(name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the worker's PID in /proc")
def test_killed_worker_ends_the_launch_and_the_next_launch_resumes(tmp_path, data_dir):
    # TensorFlow only, for CI time: under JAX the same test takes 166-176 s on 2 quiet
    # cores (TensorFlow 47 s): 52 s to the first backup, 12 s for the refused launch,
    # 3 s from the kill to the end, 109 s for the resumed launch (each launch compiles
    # its steps again in both processes). The launcher and the resume are the same
    # code for both engines; `kill_a_worker_then_resume(..., "jax")` runs it.
    kill_a_worker_then_resume(tmp_path, data_dir, "tensorflow")


def kill_a_worker_then_resume(tmp_path, data_dir, backend):
    """Returns the seconds from the kill to the end of the launch."""
    run = tmp_path / "run"
    args = _train_args(run, data_dir, "fit", **{"train.joint.epochs": 3, "train.steps_per_epoch": 6,
                                         "train.backup_every_steps": 1})
    argv = [sys.executable, "train.py", *args, "--local-processes", "2"]
    env = _env(backend)
    metadata = run / "backup" / "joint" / "training_metadata.json"
    started = time.monotonic()
    first = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600
        while not metadata.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert metadata.exists(), first.communicate()[0][-3000:]
        to_backup = time.monotonic() - started

        # A second launch into the busy folder: refused in both of its processes,
        # naming the first launch's chief (its own worker was never refused).
        chief = _child_pid(first.pid, 0)
        refused = time.monotonic()
        second = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=300)
        refused = time.monotonic() - refused
        assert second.returncode == 1
        busy = f"run folder {str(run)!r} in use by PID {chief} on host"
        assert f"error: {busy}" in second.stdout, second.stdout[-3000:]
        assert f"[process 1] error: process 0 of 2 (the chief) stopped: {busy}" in second.stdout

        worker = _child_pid(first.pid, 1)
        assert worker is not None and first.poll() is None  # the first launch goes on
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        output, _ = first.communicate(timeout=120)
        ended = time.monotonic() - killed
        print(f"launch ended {ended:.1f} s after the kill")
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 1
    assert ended < 60, ended
    assert f"error: process 1 of 2 (PID {worker}) was killed by SIGKILL" in output
    state = json.loads((run / "state.json").read_text())
    assert state["completed"] == ["warmup", "init"]  # killed inside the joint stage

    resumed = time.monotonic()
    third = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=900)
    resumed = time.monotonic() - resumed
    # Where the test's time goes (seen with -s).
    print(f"{backend}: first launch to its first joint backup {to_backup:.1f} s, the refused "
          f"launch {refused:.1f} s, the kill to the launch's end {ended:.1f} s, the resumed "
          f"launch {resumed:.1f} s")
    assert third.returncode == 0, third.stdout[-3000:]
    assert "Resuming from backup" in third.stdout
    assert "Stage warmup" not in third.stdout  # finished stages are not redone
    assert json.loads((run / "state.json").read_text())["completed"] == ["warmup", "init", "joint"]
    assert "ZSL top-1" in third.stdout
    return ended
