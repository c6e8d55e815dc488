"""benchmarks/gpu/: the one-command GPU measurement, kept working on the CPU.

`bash benchmarks/gpu/run.sh --dry-run` runs every code path of
`benchmarks/gpu/full_size.py` (JAX and PyTorch workers, the largest-batch
search, the loss terms and box movement, the JSON and Markdown report) with the
tiny model on the CPU. The script picks each worker's backend itself, so the
test runs once, under the JAX backend of the test matrix.

`make device-wheels` downloads the wheels the GPU machine lacks; its test
skips (and says so) when no package registry can be reached.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import time

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

once = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="the script sets each worker's backend itself (JAX and PyTorch); run once, "
    "under the JAX backend of the test matrix",
)


def finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


@once
def test_dry_run_writes_the_report(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path))
    env.pop("KERAS_BACKEND", None)  # each worker sets its own
    start = time.perf_counter()
    done = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu", "run.sh"), "--dry-run"],
                          capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    markdown = (tmp_path / "gpu_benchmark.md").read_text()
    assert (tmp_path / "run.log").exists()

    assert report["schema"] == 1 and report["dry_run"] is True and report["complete"] is True
    assert report["command"] == "bash benchmarks/gpu/run.sh --dry-run"
    assert report["peak_tflops"] == 790.0
    env_info = report["environment"]
    assert env_info["python"] and env_info["packages"]["keras"] == keras.__version__
    assert "gpu" in env_info  # None on a machine without nvidia-smi
    model = report["model"]
    assert model["backbone"] == "tiny" and finite(model["gflop_train_per_image"])
    assert model["gflop_train_per_image"] > 0

    by_name = {m["name"]: m for m in report["measurements"]}
    assert list(by_name) == [
        "jax_bfloat16_b32", "jax_float32_b32", "torch_eager_bfloat16_b32",
        "jax_bfloat16_max_batch", "torch_compile_bfloat16_b32", "torch_eager_float32_b32"]
    ran = ["jax_bfloat16_b32", "torch_eager_bfloat16_b32", "jax_bfloat16_max_batch"]
    for name, m in by_name.items():
        if name not in ran:
            assert m["status"] == "skipped" and m["error"].startswith("dry run:")
            continue
        assert m["status"] == "ok", m
        assert m["backend_effective"] == m["backend"]
        assert m["tensorflow_imported"] is False, f"{name} imported TensorFlow"
        s = m["summary"]
        for key in ("first_step_s", "ms_per_step", "images_per_s", "tflops_per_s",
                    "fraction_of_bf16_peak"):
            assert finite(s[key]) and s[key] > 0, (name, key, s[key])
        assert s["peak_device_gib"] is None or finite(s["peak_device_gib"])
        assert name in markdown
    assert by_name["jax_bfloat16_max_batch"]["summary"]["batch"] == 32  # the largest tried

    losses = report["losses"]
    assert losses["after_steps"] == 30 and losses["finite"] is True
    for when in ("init", "after"):
        assert set(losses[when]) == {"loss", "loss_cls", "loss_cct", "loss_cpt", "loss_div"}
        assert all(finite(v) for v in losses[when].values())
    assert losses["dominant_init"] in losses["init"] and losses["dominant_after"] in losses["after"]
    assert set(losses["box_mean_abs_change"]) == {"t_x", "t_y", "t_s"}
    assert all(finite(v) for v in losses["box_mean_abs_change"].values())
    assert all(finite(w["norm_change"]) for w in losses["cnet_weights"].values())

    assert "| measurement | backend | compiled | policy | batch | status |" in markdown
    assert "## Loss terms" in markdown and "DRY RUN" in markdown
    assert elapsed < 180, f"the dry run took {elapsed:.0f} s"


@once
def test_device_wheels(tmp_path):
    """`make device-wheels` fetches one cp312 manylinux x86_64 (or pure) wheel per pin."""
    if shutil.which("make") is None:
        pytest.skip("no `make` on this machine")
    wheels = tmp_path / "whl"
    done = subprocess.run(
        ["make", "-s", "device-wheels", f"PYTHON={sys.executable}", f"WHEEL_DIR={wheels}"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    output = done.stdout + done.stderr
    if done.returncode != 0 and any(sign in output for sign in (
            "NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
            "Network is unreachable", "ConnectTimeoutError", "ProxyError")):
        pytest.skip("no package registry reachable: " + output.strip().splitlines()[-1][:200])
    assert done.returncode == 0, output[-3000:]
    pins = {}
    with open(os.path.join(ROOT, "benchmarks", "gpu", "requirements-device.txt")) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                name, version = line.split("==")
                pins[name.lower().replace("-", "_")] = version
    found = {}
    for path in wheels.glob("*.whl"):
        name, version, *_, abi, plat = path.name[:-4].split("-")
        assert plat == "any" or ("manylinux" in plat and plat.endswith("x86_64")), path.name
        assert abi in ("none", "cp312", "abi3"), path.name
        found[name.lower()] = version
    assert found == pins


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "benchmark_gpu_full_size", os.path.join(ROOT, "benchmarks", "gpu", "full_size.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@once
def test_a_measurement_over_its_budget_is_recorded_and_killed(tmp_path):
    """Fail soft: a worker past its budget is killed and reported, not lost."""
    script = _script()
    item = script.plan(True, [8])[0]
    start = time.perf_counter()
    record = script.run_item(item, 2.0, True, str(tmp_path))
    assert time.perf_counter() - start < 15
    assert record["status"] == "timeout" and "budget" in record["error"]
    assert "log_tail" in record and record["budget_s"] == 2.0
    record["summary"] = script.summarise(record, 790.0)
    assert record["summary"]["ms_per_step"] is None
    report = dict(dry_run=True, command="x", started_utc="t", wall_s=3.0, complete=False,
                  peak_tflops=790.0, environment=dict(python="3", packages={}, gpu=None),
                  model=dict(description="tiny"), measurements=[record], losses=None)
    text = script.markdown(report)
    assert "| jax_bfloat16_b32 | jax | jax.jit | mixed_bfloat16 | 4 | timeout |" in text
    assert "INCOMPLETE" in text and "## Not measured" in text
