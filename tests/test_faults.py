"""Fault suite (issue 15): two processes, changed configs, kills at stage boundaries,
divergence, full disk, signals and bad images outside the training split.

Each test reproduces one fault an operator met and checks the outcome the README's
"Resume" table promises. The end-to-end ones are `slow` (CI runs them under TF).
"""

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from sgma_keras.config import ConfigError, load_config
from sgma_keras.errors import UserError
from sgma_keras.workflow.run_folder import RunFolder, RunFolderInUse
from tests.test_training import ROOT, run_train_cli, tiny_overrides


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("builtin")


def cli_args(overrides, *extra):
    argv = ["--config", "configs/demo.json", *extra]
    for item in overrides:
        argv += ["--set", item]
    return argv


# --------------------------------------------------------------------------
# 1. Two processes on one run folder; 9. run names that are paths
# --------------------------------------------------------------------------


def test_second_lock_on_a_run_folder_is_refused(tmp_path):
    with RunFolder(str(tmp_path / "run")):
        with pytest.raises(RunFolderInUse, match=rf"in use by PID {os.getpid()} on host"):
            RunFolder(str(tmp_path / "run")).lock()
    RunFolder(str(tmp_path / "run")).lock().unlock()  # released on exit


def test_lock_of_a_killed_process_never_blocks(tmp_path):
    code = ("import sys, time; from sgma_keras.workflow.run_folder import RunFolder; "
            f"RunFolder({str(tmp_path / 'run')!r}).lock(); print('locked', flush=True); "
            "time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunFolderInUse, match=f"PID {holder.pid}"):
        RunFolder(str(tmp_path / "run")).lock()
    holder.kill()
    holder.wait()
    RunFolder(str(tmp_path / "run")).lock().unlock()


@pytest.mark.parametrize("name", ["../../../../etc/sgma", "a/b", "..", "a\\b"])
def test_run_names_that_are_paths_are_rejected(name):
    with pytest.raises(ConfigError, match="name: a run name is one folder name"):
        load_config(None, [f"name={name}"], check_paths=False)


@pytest.mark.slow
def test_second_train_process_exits_at_once(tmp_path, data_dir):
    overrides = tiny_overrides(tmp_path, data_dir)
    with RunFolder(str(tmp_path / "run")):
        second = run_train_cli(cli_args(overrides))
        output, _ = second.communicate(timeout=300)
    assert second.returncode == 1, output[-2000:]
    assert f"in use by PID {os.getpid()} on host" in output
    assert "Traceback" not in output
    assert not (tmp_path / "run" / "logs" / "warmup.csv").exists()


# --------------------------------------------------------------------------
# 2. A changed config into an existing run; checkpoints of another architecture
# --------------------------------------------------------------------------


def test_changed_config_stops_before_config_json_is_touched(tmp_path):
    from sgma_keras.workflow.run_folder import RunConfigChanged, accept_run_config

    folder = RunFolder(str(tmp_path / "run"))
    cfg = load_config(None, [f"output_dir={tmp_path / 'run'}"], check_paths=False)
    accept_run_config(folder, cfg)
    fingerprint = json.loads((tmp_path / "run" / "run.json").read_text())["fingerprint"]
    assert accept_run_config(folder, cfg) == {}  # the same config: accepted
    # Where the run lives and how often it backs up do not change results.
    moved = load_config(None, [f"output_dir={tmp_path / 'run'}", "train.backup_every_steps=7",
                               "train.tensorboard=false"], check_paths=False)
    assert accept_run_config(folder, moved) == {}
    before = (tmp_path / "run" / "config.json").read_text()

    changed = load_config(None, [f"output_dir={tmp_path / 'run'}",
                                 "train.learning_rate=0.5", "train.joint.epochs=3"],
                          check_paths=False)
    with pytest.raises(RunConfigChanged) as caught:
        accept_run_config(folder, changed)
    message = str(caught.value)
    assert "train.learning_rate" in message and "train.joint.epochs" in message
    assert "--output-dir" in message and "--allow-config-change" in message
    assert (tmp_path / "run" / "config.json").read_text() == before

    accept_run_config(folder, changed, allow_change=True)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["fingerprint"] != fingerprint
    assert set(record["changes"][0]["keys"]) == {"train.learning_rate", "train.joint.epochs"}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["learning_rate"] == 0.5

    other = load_config(None, [f"output_dir={tmp_path / 'run'}", "model.num_parts=3"],
                        check_paths=False)
    with pytest.raises(RunConfigChanged, match="model.num_parts cannot change within a run"):
        accept_run_config(folder, other, allow_change=True)


@pytest.mark.parametrize("first,then", [("{}", "null"), ("null", "{}")])
def test_class_center_branch_on_or_off_is_a_changed_architecture(tmp_path, first, then):
    """`model.center` null (no class-center head) against a section (a head with its
    weights): the run folder's model would not fit, so even --allow-config-change is
    refused, and a config differing inside the section names the section's key."""
    from sgma_keras.workflow.run_folder import RunConfigChanged, accept_run_config

    root = tmp_path / "run"
    folder = RunFolder(str(root))
    trained = load_config(None, [f"output_dir={root}", f"model.center={first}"],
                          check_paths=False)
    accept_run_config(folder, trained)
    before = (root / "config.json").read_text()
    other = load_config(None, [f"output_dir={root}", f"model.center={then}"],
                        check_paths=False)
    for allow in (False, True):
        with pytest.raises(RunConfigChanged) as caught:
            accept_run_config(folder, other, allow_change=allow)
        message = str(caught.value)
        assert "holds a model of another architecture" in message, message
        assert "model.center cannot change within a run" in message, message
        assert "  - model.center: " in message and "latent_dim" in message, message
        assert (root / "config.json").read_text() == before
    assert accept_run_config(folder, trained) == {}  # the folder's own config: accepted


def test_checkpoint_of_another_architecture_is_refused():
    from sgma_keras.workflow.checkpoints import (
        CheckpointError,
        check_checkpoint_matches,
        model_description,
    )
    from tests import helpers

    model = helpers.tiny_sgma(num_parts=3, backbone={"tiny_width": 16})
    cfg = load_config(None, [f"input.image_size={helpers.IMAGE_SIZE}",
                             f"model.cropper.output_size={helpers.LOCAL_SIZE}",
                             "model.backbone.name=tiny", "model.backbone.weights=null",
                             "model.num_parts=2", "model.backbone.tiny_width=32",
                             "model.attention.reduction=4", "model.cropper.hidden_units=8",
                             "model.center.latent_dim=8"], check_paths=False)
    with pytest.raises(CheckpointError) as caught:
        check_checkpoint_matches(model_description(model), cfg, None, "ckpt.keras")
    message = str(caught.value)
    assert "model.num_parts=3" in message and "model.num_parts=2" in message
    assert "model.backbone.tiny_width=16" in message
    check_checkpoint_matches(model_description(helpers.tiny_sgma()), load_config(
        None, [f"input.image_size={helpers.IMAGE_SIZE}",
               f"model.cropper.output_size={helpers.LOCAL_SIZE}",
               "model.backbone.name=tiny", "model.backbone.weights=null",
               f"model.backbone.tiny_width={helpers.TINY_WIDTH}",
               "model.attention.reduction=4", "model.cropper.hidden_units=8",
               "model.center.latent_dim=8"], check_paths=False))


# --------------------------------------------------------------------------
# 3./4. Backups at every epoch end; a kill at a stage boundary
# --------------------------------------------------------------------------


class _Killed(BaseException):
    """Stands for a kill at one exact point (deterministic, in-process)."""


def csv_epochs(path):
    rows = path.read_text().splitlines()
    assert rows[0].startswith("epoch,")
    return [int(row.split(",")[0]) for row in rows[1:]]


def warmup_only(tmp_path, data_dir, **extra):
    return load_config(os.path.join(ROOT, "configs/demo.json"), tiny_overrides(
        tmp_path, data_dir, **{"train.init.enabled": False, "train.joint.enabled": False,
                               "train.warmup.epochs": 2, "train.backup_every_steps": 1000,
                               **extra}))


@pytest.mark.slow
def test_kill_after_a_stage_last_epoch_keeps_the_stage(tmp_path, data_dir, monkeypatch):
    from sgma_keras.workflow import training

    cfg = warmup_only(tmp_path, data_dir)
    run = tmp_path / "run"

    def killed(model, path):
        raise _Killed(path)

    # Killed after the last warm-up epoch, before warmup.weights.h5 and state.json.
    monkeypatch.setattr(training, "save_weights_atomic", killed)
    with pytest.raises(_Killed):
        training.train(cfg, verbose=0)
    monkeypatch.undo()
    assert not (run / "state.json").exists()
    metadata = json.loads((run / "backup" / "warmup" / "training_metadata.json").read_text())
    assert metadata["epoch"] == 2  # saved at the epoch end despite backup_every_steps=1000
    assert csv_epochs(run / "logs" / "warmup.csv") == [0, 1]
    orphan = run / "checkpoints" / ".tmp-0123abcd-warmup.weights.h5"
    orphan.write_bytes(b"half a file")

    training.train(cfg, verbose=0)
    assert csv_epochs(run / "logs" / "warmup.csv") == [0, 1]  # nothing replayed
    assert json.loads((run / "state.json").read_text())["completed"][0] == "warmup"
    assert (run / "checkpoints" / "warmup.weights.h5").exists()
    assert not (run / "backup" / "warmup").exists()  # removed once the stage is recorded
    assert not orphan.exists()


@pytest.mark.slow
def test_kill_after_two_finished_epochs_resumes_at_the_third(tmp_path, data_dir):
    overrides = tiny_overrides(tmp_path, data_dir, **{
        "train.init.enabled": False, "train.joint.enabled": False, "train.warmup.epochs": 4,
        "train.steps_per_epoch": 3, "train.backup_every_steps": 1000,
    })
    log = tmp_path / "run" / "logs" / "warmup.csv"
    first = run_train_cli(cli_args(overrides))
    deadline = time.time() + 300
    while first.poll() is None and time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    output = first.communicate()[0]
    done = csv_epochs(log)
    assert len(done) >= 2, output[-3000:]
    assert len(done) < 4, "the run finished before the kill"
    metadata = json.loads((tmp_path / "run" / "backup" / "warmup" /
                           "training_metadata.json").read_text())
    # Every finished epoch is backed up (its log row is written just before).
    assert metadata["epoch"] >= len(done) - 1 >= 1
    second = run_train_cli(cli_args(overrides))
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output[-3000:]
    assert f"at epoch {metadata['epoch'] + 1}" in output
    assert csv_epochs(log) == [0, 1, 2, 3]  # no epoch replayed, no duplicate rows


# --------------------------------------------------------------------------
# 5. Divergence
# --------------------------------------------------------------------------


def test_non_finite_boxes_never_reach_a_gather():
    import numpy as np
    from keras import ops

    from sgma_keras.layers.part_cropper import PartCropper

    cropper = PartCropper(output_size=8)
    images = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    boxes = np.array([[[np.nan, 0.5, 0.5], [0.5, np.inf, 0.3]],
                      [[0.5, 0.5, -np.inf], [1e30, -1e30, 1e30]]], dtype="float32")
    parts = ops.convert_to_numpy(cropper.crop(images, boxes))
    assert parts.shape == (2, 2, 8, 8, 3)
    assert not np.isinf(parts).any()


@pytest.mark.slow
def test_joint_divergence_stops_cleanly(tmp_path, data_dir):
    overrides = tiny_overrides(tmp_path, data_dir, **{
        "train.warmup.learning_rate": 0.01, "train.learning_rate": 1e12,
        "train.joint.epochs": 2, "train.steps_per_epoch": 3, "train.backup_every_steps": 1,
    })
    process = run_train_cli(cli_args(overrides))
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 1, output[-3000:]
    assert "Traceback" not in output and "InvalidArgumentError" not in output
    assert "Stage 'joint': the loss became nan" in output
    files = output.split("Files kept: ", 1)[1].split(". Lower", 1)[0].split(", ")
    assert files and all(os.path.exists(path) for path in files), files
    assert "train.learning_rate" in output and "--allow-config-change" in output


# --------------------------------------------------------------------------
# 6./7. Full disk, unwritable folders; SIGINT and SIGTERM
# --------------------------------------------------------------------------


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_ends_with_one_line_and_keeps_the_backup(tmp_path, data_dir, signum, code):
    overrides = tiny_overrides(tmp_path, data_dir, **{
        "train.warmup.epochs": 50, "train.backup_every_steps": 1,
        "train.init.enabled": False, "train.joint.enabled": False,
    })
    metadata = tmp_path / "run" / "backup" / "warmup" / "training_metadata.json"
    # Started as a shell starts a background job (`train.py ... &`): SIGINT ignored.
    process = run_train_cli(cli_args(overrides), preexec_fn=_ignore_sigint)
    deadline = time.time() + 300
    while not metadata.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, "training ended before the signal was sent"
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == code, output[-3000:]
    assert (f"interrupted; state kept in {tmp_path / 'run'}; run the same command to resume"
            in output)
    assert "Traceback" not in output
    json.loads(metadata.read_text())  # the last backup is whole
    import h5py

    with h5py.File(metadata.parent / "latest.weights.h5", "r"):
        pass
    leftovers = [name for _, _, files in os.walk(tmp_path / "run") for name in files
                 if name.startswith(".tmp-")]
    assert not leftovers


def test_full_disk_stops_before_training(tmp_path, data_dir, monkeypatch, capsys):
    import collections

    from sgma_keras.workflow import checkpoints, cli

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: usage(2**21, 2**21 - 4096, 4096))
    argv = cli_args(tiny_overrides(tmp_path, data_dir))
    assert cli.train_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: The run folder") and "MiB free" in err
    assert not (tmp_path / "run" / "logs" / "warmup.csv").exists()


def test_unwritable_run_folder_is_one_line(tmp_path, data_dir, capsys):
    from sgma_keras.workflow import cli

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    argv = cli_args(tiny_overrides(tmp_path, data_dir, output_dir=str(blocker / "run")))
    assert cli.train_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: The run folder") and "not writable" in err
    assert len(err.splitlines()) == 1


@pytest.mark.slow
def test_disk_full_during_training_is_one_line(tmp_path, data_dir, monkeypatch, capsys):
    import errno

    from sgma_keras.workflow import checkpoints, cli

    def full(model, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(checkpoints, "save_weights_atomic", full)  # the first backup
    argv = cli_args(tiny_overrides(tmp_path, data_dir, **{"train.backup_every_steps": 1}))
    assert cli.train_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: '") and "latest.weights.h5': No space left on device" in err
    assert len(err.splitlines()) == 1


# Writes into a file-size limit (RLIMIT_FSIZE): every write past it fails with EFBIG, as
# on a full disk, without root or a small file system. SIGXFSZ is ignored so that the
# write fails instead of killing the process.
_FILLED_WRITER = """
import os, resource, signal, sys
import keras, numpy as np
from sgma_keras.workflow.checkpoints import save_model_atomic, save_weights_atomic
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256), keras.layers.Dense(4)])
model.compile("adam", "mse")
model.fit(np.zeros((2, 64)), np.zeros((2, 4)), verbose=0)
save, path = {"weights": save_weights_atomic, "keras": save_model_atomic}[sys.argv[1]], sys.argv[2]
save(model, path)  # the previous checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (32768, resource.RLIM_INFINITY))
try:
    save(model, path)
except OSError as error:
    print("FAILED", repr(error.filename), error.strerror, flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="POSIX file size limits")
@pytest.mark.parametrize("kind,name", [("weights", "latest.weights.h5"), ("keras", "last.keras")])
def test_a_checkpoint_write_that_fails_part_way_is_one_error_naming_it(tmp_path, kind, name):
    import h5py
    import zipfile

    path = tmp_path / name
    process = subprocess.run([sys.executable, "-c", _FILLED_WRITER, kind, str(path)], cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3"),
                             capture_output=True, text=True, timeout=300)
    # HDF5 writing straight to the file crashed the process at exit (SIGSEGV).
    assert process.returncode == 0, process.stderr[-3000:]
    assert f"FAILED {str(path)!r} File too large" in process.stdout
    assert "Traceback" not in process.stderr
    assert os.listdir(tmp_path) == [name]  # no temporary file left
    if kind == "weights":
        with h5py.File(path, "r") as handle:  # the previous checkpoint, whole
            assert "vars" in handle or len(handle)
    else:
        assert zipfile.ZipFile(path).testzip() is None


def test_write_failures_of_frameworks_are_one_line_naming_the_file(tmp_path):
    import csv

    from sgma_keras.workflow import cli

    class CSVWriter:  # as Keras's CSVLogger: the OSError of a flush names no file
        filename = str(tmp_path / "logs" / "joint.csv")

        def on_epoch_end(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    try:
        CSVWriter().on_epoch_end()
    except OSError as error:
        assert cli._os_error_line(error) == f"{CSVWriter.filename!r}: No space left on device"
    with open(tmp_path / "a.csv", "w") as handle:
        try:
            csv.writer(handle)
            raise OSError(errno.EIO, "Input/output error")
        except OSError as error:
            assert cli._os_error_line(error) == f"{str(tmp_path / 'a.csv')!r}: Input/output error"

    events = "/run/tensorboard/joint/train/events.out.tfevents.1.v2"

    class ResourceExhaustedError(Exception):  # TensorBoard's writer on a full disk
        pass

    @cli._guarded
    def main(argv=None):
        raise ResourceExhaustedError(
            "{{function_node __wrapped__FlushSummaryWriter_device_/job:localhost/replica:0/"
            f"task:0/device:CPU:0}} {events}; No space left on device\n\tFailed to flush 3 "
            f"events to {events}\n\tCould not flush events file. [Op:FlushSummaryWriter]")

    import io
    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main() == 1
    assert err.getvalue() == f"error: {events!r}: No space left on device\n"

    @cli._guarded
    def bug(argv=None):
        raise ValueError("a bug keeps its traceback")

    with pytest.raises(ValueError):
        bug()


def _limit_file_size(limit):
    def apply():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return apply


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="POSIX file size limits")
def test_a_write_that_fails_during_training_is_one_line(tmp_path, data_dir):
    import h5py

    from sgma_keras.workflow.build import load_data

    overrides = tiny_overrides(tmp_path, data_dir, **{"train.backup_every_steps": 1})
    load_data(load_config(os.path.join(ROOT, "configs/demo.json"), overrides))  # the cache
    # Weights with the optimizer state are about 230 KB: the first backup fails.
    process = run_train_cli(cli_args(overrides), preexec_fn=_limit_file_size(150_000))
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 1, output[-3000:]  # was -11 (SIGSEGV in HDF5 at exit)
    backup = tmp_path / "run" / "backup" / "warmup" / "latest.weights.h5"
    assert output.strip().splitlines()[-1] == f"error: {str(backup)!r}: File too large"
    assert "Traceback" not in output and "RuntimeError" not in output
    leftovers = [name for _, _, files in os.walk(tmp_path / "run") for name in files
                 if name.startswith(".tmp-")]
    assert not leftovers and not backup.exists()


@contextlib.contextmanager
def small_disk(path, size):
    """A tmpfs of `size` bytes mounted at `path` (root only; skips elsewhere)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    os.makedirs(path)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.slow
def test_a_disk_of_the_estimated_size_holds_the_whole_run(tmp_path, data_dir, monkeypatch,
                                                          capsys):
    import collections
    import math
    import re

    from sgma_keras.workflow import checkpoints, cli

    disk = tmp_path / "disk"
    overrides = tiny_overrides(tmp_path, data_dir, output_dir=str(disk / "run"),
                               **{"train.tensorboard": True, "train.backup_every_steps": 1})
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: usage(1, 1, 0))
    assert cli.train_main(cli_args(overrides)) == 1
    err = capsys.readouterr().err
    need = float(re.search(r"training writes about ([0-9.]+) MiB", err).group(1))
    monkeypatch.undo()
    shutil.rmtree(disk)
    # The estimate (rounded up) and the small files written before the check.
    with small_disk(disk, math.ceil((need + 0.1) * 2**20 / 4096) * 4096 + 2**18):
        process = run_train_cli(cli_args(overrides))
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output[-3000:]
        assert (disk / "run" / "eval" / "results.json").exists()
    for kind in ("checkpoints", "backup", "temporary copy", "logs", "tensorboard", "evaluation"):
        assert kind in err


# --------------------------------------------------------------------------
# 8. Bad images outside the training split
# --------------------------------------------------------------------------


def corrupt_middle(path):
    """Random bytes in the middle of a JPEG: its header and end marker stay valid."""
    import numpy as np

    data = open(path, "rb").read()
    third = len(data) // 3
    noise = np.random.default_rng(0).integers(0, 256, third, dtype=np.uint8).tobytes()
    with open(path, "wb") as handle:
        handle.write(data[:third] + noise + data[2 * third:])


def test_corrupt_test_unseen_jpeg_found_before_the_first_epoch(tmp_path, capsys):
    from sgma_keras.workflow import cli
    from sgma_keras.workflow.build import load_data

    overrides = tiny_overrides(tmp_path, tmp_path / "data", **{"data.check_images": "decode"})
    data = load_data(load_config(os.path.join(ROOT, "configs/demo.json"), overrides))
    victim = data.splits["test_unseen"].paths[3]
    corrupt_middle(victim)
    assert cli.train_main(cli_args(overrides)) == 1
    err = capsys.readouterr().err
    assert "split 'test_unseen'" in err and victim in err and "cannot be decoded" in err
    assert not (tmp_path / "run" / "logs" / "warmup.csv").exists()


def test_a_jpeg_that_decodes_with_corrupt_data_warnings_fails_the_decode_check(tmp_path, capsys):
    from sgma_keras.workflow import cli
    from sgma_keras.workflow.build import load_data
    from tests.data.helpers import quietly_corrupt_jpeg

    overrides = tiny_overrides(tmp_path, tmp_path / "data", **{"data.check_images": "decode"})
    data = load_data(load_config(os.path.join(ROOT, "configs/demo.json"), overrides))
    victim = quietly_corrupt_jpeg(data.splits["test_unseen"].paths[3])
    assert cli.train_main(cli_args(overrides)) == 1  # was: every image passes, exit 0
    err = capsys.readouterr().err
    assert "split 'test_unseen'" in err
    assert f"{victim}: cannot be decoded cleanly (libjpeg: Corrupt JPEG data" in err
    assert not (tmp_path / "run" / "logs" / "warmup.csv").exists()


def test_decode_error_inside_the_pipeline_names_the_file(tmp_path):
    from sgma_keras.data.image_check import iterate_naming_bad_images
    from sgma_keras.data.pipeline import make_dataset
    from sgma_keras.data.zsl_data import DataError
    from sgma_keras.workflow.build import load_data

    overrides = tiny_overrides(tmp_path, tmp_path / "data")
    split = load_data(load_config(os.path.join(ROOT, "configs/demo.json"),
                                  overrides)).splits["test_unseen"]
    corrupt_middle(split.paths[1])
    ds = make_dataset(split, image_size=32, batch_size=4, training=False, check="none")
    with pytest.raises(DataError, match=rf"1 of {len(split)} test images cannot be decoded"
                       r"(.|\n)*" + split.paths[1].replace(".", r"\.")):
        for _ in iterate_naming_bad_images(ds, split.paths, "test images"):
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_stop_swallowed_by_a_finalizer_stops_training_at_the_next_batch():
    import keras
    import numpy as np

    from sgma_keras.workflow.interrupts import Interrupted, handling_stop_signals, request_stop
    from sgma_keras.workflow.training import StopWhenRequested

    class Finalizer:  # TensorFlow and h5py objects have these; Python drops what they raise
        def __del__(self):
            request_stop(signal.SIGTERM, None)

    class SignalDuringBatch(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                Finalizer()  # the signal arrives while a finalizer runs

    finished = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            finished.append(batch)

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.zeros((8, 2), "float32"), np.zeros((8, 1), "float32")
    with handling_stop_signals(), pytest.raises(Interrupted) as stop:
        model.fit(x, y, batch_size=2, epochs=3, verbose=0,
                  callbacks=[SignalDuringBatch(), Record(), StopWhenRequested()])
    assert stop.value.signum == signal.SIGTERM
    assert finished == [0, 1]  # not the 12 batches of 3 epochs


# --------------------------------------------------------------------------
# 10. More parts than feature channels; a second process writing an evaluation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("overrides,channels", [
    (["model.backbone.tiny_width=8", "model.num_parts=40"],
     "tiny has 32 (4 x model.backbone.tiny_width=8)"),
    (["model.backbone.name=vgg19", "model.backbone.weights=null", "model.num_parts=100000"],
     "vgg19 has 512 (at its default feature layer)"),
])
def test_more_parts_than_feature_channels_is_a_config_error(overrides, channels):
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["model.backbone.name=tiny", "model.backbone.weights=null", *overrides],
                    check_paths=False)
    assert caught.value.errors == [
        f"model.num_parts: each part is a group of the backbone's feature channels, and "
        f"{channels}; got {overrides[-1].split('=')[1]} parts: expected at most "
        f"{channels.split(' has ')[1].split(' ')[0]}"]
    # At most one channel per part is fine; other taps and part modes are not checked here.
    tiny = ["model.backbone.name=tiny", "model.backbone.weights=null",
            "model.backbone.tiny_width=8"]
    load_config(None, [*tiny, "model.num_parts=32"], check_paths=False)
    load_config(None, [*tiny, "model.num_parts=40", "model.cropper.box_source=random"],
                check_paths=False)


def test_evaluation_cleans_a_killed_one_and_names_a_training_run(tmp_path, caplog, capsys):
    """evaluate.py killed with -9 leaves `.tmp-*` files in its results folder: the next one
    removes them. Run while a training run holds the run folder, it says it scores that
    run's checkpoint as it stands."""
    import logging

    from sgma_keras.workflow import cli, evaluation
    from tests.test_evaluation import make_tiny_data, make_tiny_model, write_config

    data = make_tiny_data(str(tmp_path / "data"))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    make_tiny_model(data.semantics).save(str(run / "checkpoints" / "best.keras"))
    config = write_config(tmp_path / "config.json", run, eval={"visualize_images": 0,
                                                                "calibration_points": 5})
    out = tmp_path / "results"
    out.mkdir()
    stale = [out / ".tmp-0a1b2c3d-results.json", out / ".tmp-4e5f6a7b-seen_unseen_curve.png"]
    for path in stale:
        path.write_text("half written")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(evaluation, "load_data", lambda cfg: data)
    try:
        with RunFolder(str(run)), caplog.at_level(logging.WARNING, logger="sgma_keras"):
            code = cli.evaluate_main(["--config", config, "--output", str(out),
                                      "--calibration", "0.5"])
    finally:
        monkeypatch.undo()
    assert code == 0, capsys.readouterr().err
    assert not any(path.exists() for path in stale)
    assert (out / evaluation.RESULTS_FILE).exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "Run folder" in r.getMessage()]
    assert len(warnings) == 1 and f"Run folder {run} is in use by a training run (PID " \
        f"{os.getpid()} on host" in warnings[0] and "best.keras" in warnings[0]

    with pytest.raises(UserError, match="calibration must be a finite number"):
        evaluation.run_evaluation({"output_dir": str(run)}, calibration=float("nan"))


def test_results_folder_never_removes_what_a_live_writer_is_writing(tmp_path):
    import fcntl

    from sgma_keras.workflow.run_folder import results_folder

    run = tmp_path / "run"
    out = run / "eval"
    out.mkdir(parents=True)
    live = out / ".tmp-0a1b2c3d-results.json"
    live.write_text("being written")
    # Another evaluation writing there (its shared lock on the folder): kept.
    other = os.open(str(out), os.O_RDONLY)
    fcntl.flock(other, fcntl.LOCK_SH)
    try:
        with results_folder(str(out), str(run)):
            pass
    finally:
        os.close(other)
    assert live.exists()
    # A training run holding the run folder writes its own evaluation there: kept.
    with RunFolder(str(run)):
        with results_folder(str(out), str(run)):
            pass
    assert live.exists()
    with results_folder(str(out), str(run)):  # nobody else: a killed writer's leftover
        pass
    assert not live.exists() and os.listdir(out) == []
