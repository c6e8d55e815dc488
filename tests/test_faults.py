"""Fault suite (issue 15): two processes, changed configs, kills at stage boundaries,
divergence, full disk, signals and bad images outside the training split.

Each test reproduces one fault an operator met and checks the outcome the README's
"Resume" table promises. The end-to-end ones are `slow` (CI runs them under TF).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sgma_keras.config import ConfigError, load_config
from sgma_keras.workflow.checkpoints import RunFolder, RunFolderInUse
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
    code = ("import sys, time; from sgma_keras.workflow.checkpoints import RunFolder; "
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
