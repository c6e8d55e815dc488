"""`import sgma_keras` is enough for `keras.saving.load_model` (KerasHub's convention),
whether Keras is imported before or after it, and the import alone loads no framework."""

import ast
import os
import subprocess
import sys

import pytest

from tests.helpers import tiny_sgma

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _registered_in_source():
    """`sgma_keras>Name` of every class decorated with register_keras_serializable."""
    names = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "sgma_keras")):
        for file in files:
            if not file.endswith(".py"):
                continue
            tree = ast.parse(open(os.path.join(folder, file), encoding="utf-8").read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and any(
                        "register_keras_serializable" in ast.unparse(d)
                        for d in node.decorator_list):
                    names.add(f"sgma_keras>{node.name}")
    return names


def _python(code, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("first", ["import sgma_keras\nimport keras",
                                   "import keras\nimport sgma_keras"])
def test_import_registers_every_saveable_class(first, tmp_path):
    expected = _registered_in_source()
    assert len(expected) >= 10  # the model, its layers, metrics and optimizers
    result = _python(first + "\nprint(sorted(keras.saving.get_custom_objects()))",
                     str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    registered = set(eval(result.stdout.strip().splitlines()[-1]))
    assert expected <= registered, sorted(expected - registered)


def test_import_alone_loads_no_framework(tmp_path):
    result = _python("import sys, sgma_keras\n"
                     "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') "
                     "if m in sys.modules))", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_keras_load_model_after_import_sgma_keras(tmp_path):
    path = str(tmp_path / "model.keras")
    tiny_sgma().save(path)
    result = _python("import sgma_keras\nimport keras\n"
                     f"model = keras.saving.load_model({path!r}, compile=False)\n"
                     "print(type(model).__name__, model.num_classes)", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["SGMA", "6"]
