"""The installable package: pyproject.toml against the requirement files and the source
tree, and (slow) `pip install` into a fresh virtual environment, then the console
commands from another folder.
"""

import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig

import pytest

from tests.terminal_helpers import run_on_pty, screen_rows, written_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)


def _name(requirement):
    """The normalised project name of a requirement ("jax[cpu]>=0.10" -> "jax")."""
    return re.split(r"[\[<>=!~ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirements(filename, follow=True):
    """{name: requirement} of a requirement file, its `-r` includes followed."""
    found = {}
    with open(os.path.join(ROOT, filename)) as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("-r"):
                if follow:
                    found.update(_requirements(line[2:].strip()))
                continue
            found[_name(line)] = line.replace(" ", "")
    return found


def _spec(requirements):
    return {_name(r): r.replace(" ", "") for r in requirements}


def test_requirement_files_agree_with_pyproject():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    # requirements.txt: the core dependencies (the TensorFlow backend).
    assert _requirements("requirements.txt") == _spec(project["dependencies"])
    # requirements-base.txt: the same but TensorFlow (the Docker image brings it).
    base = _spec(project["dependencies"])
    del base["tensorflow-cpu"]
    assert _requirements("requirements-base.txt") == base
    assert _requirements("requirements-jax.txt", follow=False) == _spec(extras["jax"])
    assert _requirements("requirements-torch.txt", follow=False) == _spec(extras["torch"])
    dev = [r for r in extras["dev"] if _name(r) != "sgma-keras"]
    assert _requirements("requirements-dev.txt", follow=False) == _spec(dev)
    assert "sgma-keras[jax,torch]" in extras["dev"]  # requirements-dev.txt's -r lines
    assert "torch==2.13.0" in extras["torch"]  # never an unpinned torch


def test_pyproject_lists_every_package_and_config():
    tool = _pyproject()["tool"]["setuptools"]
    packages = set()
    for folder, _, files in os.walk(os.path.join(ROOT, "sgma_keras")):
        if "__init__.py" in files:
            packages.add(os.path.relpath(folder, ROOT).replace(os.sep, "."))
    assert set(tool["packages"]) == packages | {"sgma_keras.configs"}
    assert tool["package-dir"]["sgma_keras.configs"] == "configs"
    assert os.path.isfile(os.path.join(ROOT, "configs", "demo.json"))


def test_console_commands_are_the_cli_mains():
    from sgma_keras.workflow import cli

    scripts = _pyproject()["project"]["scripts"]
    assert set(scripts) >= {"sgma-train", "sgma-evaluate", "sgma-export", "sgma-predict",
                            "sgma-samples"}
    for command, target in scripts.items():
        module, _, function = target.partition(":")
        assert module == "sgma_keras.workflow.cli", command
        assert callable(getattr(cli, function)), command
        assert getattr(cli, function) in cli.COMMANDS.values(), command


def test_version_is_the_package_version():
    import sgma_keras

    dynamic = _pyproject()["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "sgma_keras.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", sgma_keras.__version__)


def _environment_paths():
    """This interpreter's site-packages folders (where the dependencies are)."""
    paths = list(site.getsitepackages()) + [sysconfig.get_paths()["purelib"]]
    return [p for p in dict.fromkeys(paths) if os.path.isdir(p)]


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_then_console_commands(tmp_path):
    """`pip install .` into a new virtual environment; the commands run from elsewhere.

    Cheap and offline: the new environment sees this one's packages through a .pth file
    (what `--system-site-packages` does for a base interpreter: here the base is itself a
    virtual environment), so `--no-deps --no-build-isolation` installs only our wheel,
    built with the setuptools already here. The package itself comes from the new
    environment, not from the checkout.
    """
    pytest.importorskip("setuptools")
    pytest.importorskip("pyte")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(purelib, "_sgma_test_deps.pth"), "w") as handle:
        handle.write("\n".join(_environment_paths()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INDEX"] = "1"  # everything needed is here already
    # A copy of what the wheel is built from: setuptools builds in the source folder
    # (build/, *.egg-info), which stays out of the checkout this way.
    source = tmp_path / "source"
    source.mkdir()
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(os.path.join(ROOT, name), source / name)
    for name in ["sgma_keras", "configs"]:
        shutil.copytree(os.path.join(ROOT, name), source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", str(source)],
        env=env, cwd=str(tmp_path), capture_output=True,
        text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*argv, timeout=120):
        return subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], env=env,
                              cwd=str(elsewhere), capture_output=True, text=True,
                              timeout=timeout)

    where = run("python", "-c", "import sgma_keras; print(sgma_keras.__file__)")
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    for command in ["sgma-train", "sgma-evaluate", "sgma-export", "sgma-predict",
                    "sgma-samples"]:
        helped = run(command, "--help")
        assert helped.returncode == 0, helped.stderr
        assert helped.stdout.startswith(f"usage: {command}"), helped.stdout
    # The built-in demo config is found from a folder that has no configs/.
    bad = run("sgma-train", "--config", "configs/demo.json", "--set", "train.warmup.epochs=-1")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "train.warmup.epochs" in bad.stderr and "using the built-in" in bad.stderr
    shown = run("python", "-m", "sgma_keras.workflow.cli", "config", "--config",
                "configs/demo.json")
    assert shown.returncode == 0, shown.stderr
    assert '"name": "demo"' in shown.stdout
    # A tiny training run of the demo config, its run folder relative to this folder.
    tiny = {
        "data.builtin.cache_dir": str(tmp_path / "data"), "data.builtin.num_images": 96,
        "data.builtin.num_classes": 8, "data.builtin.num_unseen": 2,
        "data.builtin.image_size": 48, "input.image_size": 32, "model.cropper.output_size": 16,
        "input.batch_size": 8, "model.backbone.tiny_width": 4, "model.center.latent_dim": 8,
        "model.cropper.hidden_units": 8, "train.warmup.epochs": 1, "train.joint.epochs": 1,
        "train.init.num_images": 16, "train.steps_per_epoch": 2,
    }
    # On a terminal 100 columns wide: every line drawn fits it (the progress line
    # redrawn in place included) and the screen keeps no progress line behind.
    sets = []
    for key, value in tiny.items():
        sets += ["--set", f"{key}={json.dumps(value)}"]
    code, drawn = run_on_pty([str(venv / "bin" / "sgma-train"), "--config", "configs/demo.json",
                              "--output-dir", "run", *sets], 100, str(elsewhere), env, 900)
    rows = screen_rows(drawn, 100)
    assert code == 0, "\n".join(rows[-40:])
    assert any("step 2/2" in line for line in written_lines(drawn))  # the progress line
    too_long = [line for line in written_lines(drawn) if len(line) > 100]
    assert not too_long, too_long[:3]
    assert not [row for row in rows if "ETA" in row or "\u2588" in row], rows
    assert any(" warmup epoch 1/1 " in row for row in rows)
    assert any(row.startswith("ZSL top-1") for row in rows)
    assert rows[-1].startswith("Run folder: ")
    assert (elsewhere / "run" / "checkpoints" / "final.keras").is_file()
    # A first prediction from an empty folder: the samples command, then the predict
    # command it prints (the model of the run above, the images and classes it wrote).
    first = tmp_path / "first"
    first.mkdir()
    sampled = subprocess.run([str(venv / "bin" / "sgma-samples"), "--config", "demo",
                              "--output", "samples", "--set", f"output_dir={elsewhere / 'run'}",
                              *sets], env=env, cwd=str(first), capture_output=True,
                             text=True, timeout=300)
    assert sampled.returncode == 0, sampled.stdout + sampled.stderr
    command = sampled.stdout.strip().splitlines()[-1].split()
    assert command[0] == "sgma-predict", sampled.stdout
    predicted = subprocess.run([str(venv / "bin" / command[0]), *command[1:]], env=env,
                               cwd=str(first), capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    assert "Predictions (" in predicted.stdout and "of 4 images" in predicted.stdout
    assert (first / "predictions.csv").is_file()


def _dockerfile():
    lines = open(os.path.join(ROOT, "Dockerfile")).read().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def test_dockerfile_runs_any_command_as_a_user_with_caches_in_volumes():
    """(No Docker daemon in the test environment: the file is checked as text.)"""
    import json as json_lib

    from sgma_keras.config import default_config

    lines = _dockerfile()
    assert not [line for line in lines if line.startswith("ENTRYPOINT")], "an entry point " \
        "would turn `docker run IMAGE sgma-evaluate ...` into arguments of one command"
    cmd = json_lib.loads(next(line for line in lines if line.startswith("CMD"))[3:])
    assert cmd[0] in _pyproject()["project"]["scripts"]
    user = [line.split()[1] for line in lines if line.startswith("USER")]
    assert user and user[-1] not in ("root", "0")
    home = next(re.search(r"HOME=(\S+)", line).group(1) for line in lines
                if line.startswith("ENV") and "HOME=" in line)
    volumes = json_lib.loads(next(line for line in lines if line.startswith("VOLUME"))[6:])
    assert f"{home}/.keras" in volumes
    defaults = default_config()["data"]
    for cache in [defaults["builtin"]["cache_dir"], defaults["tfds"]["cache_dir"]]:
        path = cache.replace("~", home, 1)
        assert any(path.startswith(v + "/") for v in volumes), (cache, volumes)
    assert any("pip install" in line and "--no-deps ." in line for line in lines)
