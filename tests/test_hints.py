"""The hints of the command lines fit the command: they name the command the user typed
(console command or script), never suggest what was already given, and a missing or
wrong model file is reported before any framework loads."""

import logging
import os
import subprocess
import sys

import pytest

from sgma_keras.workflow import cli
from sgma_keras.workflow.files import removing_if_left_empty
from sgma_keras.workflow.predictor import list_images
from sgma_keras.workflow.terminal import wrap_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("tensorflow", "jax", "torch", "keras")

# Runs a root script (or a console command's main) in this interpreter, then prints
# which heavy modules it imported.
PROBE = """
import runpy, sys
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as stop:
    code = stop.code
print("HEAVY", sorted(m for m in {heavy!r} if m in sys.modules))
sys.exit(code)
""".format(heavy=HEAVY)


def _probe(*argv, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _run(main, argv, capsys, started="evaluate.py"):
    saved = sys.argv
    sys.argv = [started]
    try:
        code = main(argv)
    finally:
        sys.argv = saved
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("started, train", [("evaluate.py", "python train.py"),
                                            ("/venv/bin/sgma-evaluate", "sgma-train")])
def test_missing_default_checkpoint_names_the_train_command_typed(started, train, tmp_path,
                                                                  capsys):
    argv = ["--config", "demo", "--set", f"output_dir={tmp_path / 'run'}"]
    code, err = _run(cli.evaluate_main, argv, capsys, started)
    assert code == 1
    final = os.path.join(str(tmp_path / "run"), "checkpoints", "final.keras")
    assert err.strip() == (
        f"error: Checkpoint not found: {final!r}. Train a model first ({train} --config "
        f"demo --set output_dir={tmp_path / 'run'}), or give the model file with "
        "--checkpoint.")


def test_missing_given_checkpoint_suggests_nothing_given(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()
    for name in ["best.keras", "last.keras"]:
        (tmp_path / "checkpoints" / name).write_bytes(b"")
    missing = str(tmp_path / "checkpoints" / "fnal.keras")
    code, err = _run(cli.evaluate_main, ["--config", "demo", "--checkpoint", missing,
                                         "--output", str(tmp_path / "out")], capsys)
    assert code == 1
    assert err.strip() == (f"error: Checkpoint not found: {missing!r}; "
                           f"{tmp_path / 'checkpoints'} holds best.keras, last.keras.")
    assert not (tmp_path / "out").exists()  # a failed evaluation leaves no folder


def test_export_hint_names_its_own_command(tmp_path, capsys):
    code, err = _run(cli.export_main, ["--config", "demo", "--set",
                                       f"output_dir={tmp_path}"], capsys, "sgma-export")
    assert code == 1
    assert "Train a model first (sgma-train --config demo --set" in err
    assert "--checkpoint" in err


def test_predict_model_checked_and_named(tmp_path, capsys):
    weights = tmp_path / "model.weights.h5"
    weights.write_bytes(b"\x89HDF\r\n")
    code, err = _run(cli.predict_main, ["--model", str(weights), str(tmp_path)], capsys,
                     "sgma-predict")
    assert code == 1
    assert f"Checkpoint {str(weights)!r} is not a readable .keras model file" in err
    assert "--checkpoint" not in err  # predict's option is --model


@pytest.mark.parametrize("script, argv", [
    ("evaluate.py", ["--config", "demo", "--checkpoint", "missing.keras"]),
    ("export.py", ["--checkpoint", "missing.keras", "--output", "out"]),
    ("predict.py", ["--model", "missing.keras", "photos/"]),
])
def test_checkpoint_is_checked_before_any_framework_loads(script, argv, tmp_path):
    result = _probe(os.path.join(ROOT, script), *argv, cwd=str(tmp_path))
    assert result.returncode == 1, result.stderr
    assert "Checkpoint not found: 'missing.keras'" in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "HEAVY []"
    assert os.listdir(tmp_path) == []  # and nothing written


def test_unknown_config_lists_the_built_ins_with_a_did_you_mean(tmp_path, capsys):
    code, err = _run(cli.train_main, ["--config", "demoo"], capsys, "train.py")
    assert code == 2
    assert "config file not found; built-in configs: ablation, awa, cub, demo, flo " \
           "(did you mean 'demo'?)" in err
    code, err = _run(cli.train_main, ["--config", str(tmp_path / "mine.json")], capsys)
    assert code == 2 and "did you mean" not in err and "built-in configs: ablation" in err


def test_help_lists_every_built_in_config_and_explains_batch_size(capsys):
    with pytest.raises(SystemExit):
        cli.train_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "built-in config: ablation, awa, cub, demo, flo" in text
    with pytest.raises(SystemExit):
        cli.predict_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE images the model scores at once (default 16" in text


def test_predict_counts_the_files_it_skips_in_a_folder(tmp_path, caplog):
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    with caplog.at_level(logging.INFO, logger="sgma_keras"):
        assert list_images(str(tmp_path)) == [str(tmp_path / "a.jpg")]
    assert f"{tmp_path}: 1 image files; skipped 1 other file (notes.txt)" in caplog.text


def test_a_failed_block_takes_back_the_folders_it_created(tmp_path):
    target = tmp_path / "new" / "eval"
    with pytest.raises(RuntimeError):
        with removing_if_left_empty(target) as path:
            os.makedirs(path)
            raise RuntimeError
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError):  # something written: kept
        with removing_if_left_empty(target) as path:
            os.makedirs(path)
            (target / "results.json").write_text("{}")
            raise RuntimeError
    assert (target / "results.json").exists()


def test_wrapped_error_keeps_its_indentation():
    class Tty:
        def isatty(self):
            return True

        def fileno(self):
            raise OSError  # no terminal size: unchanged

    text = "invalid configuration 'x' (1 problem):\n  - " + "word " * 40
    assert wrap_text(text, Tty()) == text
