"""Full-size SGMA training step on one GPU: speed, memory, loss terms, box movement.

The paper's model (VGG19 at 448 for the global branch plus two VGG19 part
branches at 224, random weights, SGD with momentum, the joint-stage loss),
batch 32, random NumPy images and labels. Each measurement runs in its own
subprocess (the Keras backend is fixed per process) under its own time
budget; one that fails or runs out of time is recorded as such and the next
one runs. In order of importance:

1. `jax_bfloat16_b32`: JAX (jit), mixed_bfloat16; also the four loss terms at
   initialisation and after 30 steps and how far the part boxes moved;
2. `jax_float32_b32`: the same step in float32;
3. `torch_eager_bfloat16_b32`: PyTorch, eager;
4. `jax_bfloat16_max_batch`: the largest of --max-batches that fits (tried
   largest first), with its speed;
5. `torch_compile_bfloat16_b32`: PyTorch with torch.compile (static shapes);
6. `torch_eager_float32_b32`.

Timings: the first step (trace + compile + run) is reported apart; then
warm-up steps, then timed steps (wall clock, synchronised at the end of the
timed epoch). TFLOP/s come from the analytic FLOP count (`benchmarks/flops.py`,
a training step is 3x the forward, ~0.70 TFLOP an image), and the ratio is
to the dense bfloat16 peak (--peak-tflops, 790: an 8192^3 bf16 matrix product
on the H200 of the device machine), for the float32 rows too.

Writes `gpu_benchmark.json` and `gpu_benchmark.md` into --out (default: $OUT,
else results/gpu), rewritten after every measurement so a run cut short still
leaves what it measured. Nothing here imports TensorFlow (each worker records
whether `tensorflow` ended up in sys.modules): the GPU machine has none.

    bash benchmarks/gpu/run.sh                    # on the GPU machine (8 minutes)
    python benchmarks/gpu/full_size.py --dry-run  # tiny model, CPU, under a minute
"""

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

PEAK_BF16_TFLOPS = 790.0
LOSS_TERMS = ("loss_cls", "loss_cct", "loss_cpt", "loss_div")
WEIGHT_KEYS = {"loss_cls": "cls", "loss_cct": "cct", "loss_cpt": "cpt", "loss_div": "div"}

MODELS = {
    "full": dict(backbone="vgg19", image_size=448, local_size=224, num_classes=50,
                 num_unseen=10, semantic_dim=85, extra={}),
    # The test-suite's tiny shapes: the dry run checks the plumbing, not the speed.
    "tiny": dict(backbone="tiny", image_size=32, local_size=16, num_classes=6, num_unseen=2,
                 semantic_dim=8, extra=dict(backbone={"tiny_width": 4},
                                            attention={"reduction": 4},
                                            cropper={"hidden_units": 8},
                                            center={"latent_dim": 8})),
}


def plan(dry_run, max_batches):
    """The measurements, most important first, each with its time budget (s)."""
    batch = 4 if dry_run else 32
    small = dict(warmup=1, steps=2) if dry_run else dict(warmup=4, steps=15)
    items = [
        dict(name="jax_bfloat16_b32", backend="jax", jit=True, policy="mixed_bfloat16",
             batches=[batch], measure_losses=True, budget=130, **small),
        dict(name="jax_float32_b32", backend="jax", jit=True, policy="float32",
             batches=[batch], budget=75, **small),
        dict(name="torch_eager_bfloat16_b32", backend="torch", jit=False,
             policy="mixed_bfloat16", batches=[batch], budget=70, **small),
        dict(name="jax_bfloat16_max_batch", backend="jax", jit=True, policy="mixed_bfloat16",
             batches=max_batches, max_batch=True, budget=80,
             warmup=1, steps=2 if dry_run else 3),
        dict(name="torch_compile_bfloat16_b32", backend="torch", jit=True,
             policy="mixed_bfloat16", batches=[batch], budget=110, **small),
        dict(name="torch_eager_float32_b32", backend="torch", jit=False, policy="float32",
             batches=[batch], budget=50, **small),
    ]
    if dry_run:  # each worker costs ~10 s of imports and compilation on a small CPU
        for item in items:
            item["budget"] = 60
        items[1]["skip"] = "dry run: the code path of jax_bfloat16_b32 with another policy"
        items[4]["skip"] = "dry run: torch.compile takes minutes on a CPU"
        items[5]["skip"] = "dry run: the code path of torch_eager_bfloat16_b32 with another policy"
    return items


# =========================================================================== worker


def _dump(record, path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, default=str)
    os.replace(tmp, path)


def _device(backend):
    """(device description, on an accelerator)."""
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}:{getattr(device, 'device_kind', device)}", device.platform != "cpu"
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}", True
    return "cpu", False


def _peak_device_bytes(backend):
    try:
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats()
            return None if not stats else stats.get("peak_bytes_in_use")
        import torch

        return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - best effort
        return None


def _static_torch_compile():
    """One graph per shape (see benchmarks/throughput.py, `static_torch_compile`)."""
    import torch._dynamo.config as dynamo

    dynamo.automatic_dynamic_shapes = False
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo, name):
            setattr(dynamo, name, 256)


def _seed(backend, seed=0):
    """keras.utils.set_random_seed without its TensorFlow part (it imports TensorFlow
    wherever that is installed, and this script must not)."""
    import random

    import numpy as np

    random.seed(seed)  # Keras initializers without a seed draw theirs from `random`
    np.random.seed(seed)
    try:  # private Keras API: without it the weights are random but not reproducible
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator
        from keras.src.utils import rng_utils

        global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
        global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    except (ImportError, AttributeError):
        pass
    if backend == "torch":
        import torch

        torch.manual_seed(seed)


def _make_model(name):
    import numpy as np

    from sgma_keras.model import make_sgma

    spec = MODELS[name]
    rng = np.random.default_rng(0)
    classes, dim = spec["num_classes"], spec["semantic_dim"]
    semantics = (rng.random((classes, dim)) < 0.3).astype("float32")
    semantics[np.arange(classes), rng.integers(0, dim, classes)] = 1.0  # no empty row
    seen = np.arange(classes - spec["num_unseen"])
    model = make_sgma(semantics=semantics, seen_classes=seen, image_size=spec["image_size"],
                      num_parts=2, seed=0,
                      **{section: {**values, **spec["extra"].get(section, {})}
                         for section, values in (
                             ("backbone", {"name": spec["backbone"], "weights": None}),
                             ("cropper", {"output_size": spec["local_size"]}))},
                      **{k: v for k, v in spec["extra"].items()
                         if k not in ("backbone", "cropper")})
    return model, seen


def run_worker(spec, result_path):
    """Measures one plan item in this process; the record is rewritten after each phase."""
    record = dict(spec, status="running", phase="import")
    _dump(record, result_path)
    start = time.perf_counter()
    import keras
    import numpy as np

    sys.path.insert(0, ROOT)
    from benchmarks.flops import sgma_flops

    backend = keras.backend.backend()
    record["backend_effective"] = backend
    if backend == "torch":
        import torch

        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        torch.backends.cudnn.benchmark = True
        record["cudnn_benchmark"] = True
        if spec["jit"]:
            _static_torch_compile()
    record["device"], accelerator = _device(backend)
    if spec.get("require_gpu") and not accelerator:
        raise RuntimeError(f"no GPU visible to {backend} (device {record['device']})")
    keras.mixed_precision.set_global_policy(spec["policy"])
    _seed(backend)
    record["phase"] = "build"
    model, seen = _make_model(spec["model"])
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), jit_compile=spec["jit"])
    flops = sgma_flops(model)
    record["gflop_forward_per_image"] = flops["forward"] / 1e9
    record["gflop_train_per_image"] = flops["train_step"] / 1e9
    record["params_m"] = model.count_params() / 1e6
    record["jit_effective"] = bool(model.jit_compile)
    record["build_s"] = time.perf_counter() - start
    _dump(record, result_path)

    size = MODELS[spec["model"]]["image_size"]
    rng = np.random.default_rng(1)

    def pool(batch, count):
        return [(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"),
                 rng.choice(seen, batch).astype("int32")) for _ in range(count)]

    class EpochLogs(keras.callbacks.Callback):
        """Epoch wall clock and its logs (no per-batch hook: keeps the dispatch async)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # logs arrive as floats: synchronised
            self.seconds = time.perf_counter() - self.start
            self.logs = dict(logs or {})

    done = {"steps": 0}

    def fit(batches, steps):
        def generator():
            while True:
                yield from batches

        timer = EpochLogs()
        model.fit(generator(), epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False,
                  callbacks=[timer])
        done["steps"] += steps
        return timer

    def terms(logs):
        return {k: float(logs[k]) for k in LOSS_TERMS if k in logs} | {"loss": float(logs["loss"])}

    def boxes(probe):
        return np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(probe)["boxes"]),
                          dtype="float64")

    def cnet_weights():
        return {w.path: np.asarray(keras.ops.convert_to_numpy(w.value), dtype="float64")
                for w in model.cropper.trainable_weights}

    results = record["batch_results"] = []
    for batch in spec["batches"]:
        entry = dict(batch=batch)
        results.append(entry)
        try:
            record["phase"] = f"batch {batch}: inputs"
            batches = pool(batch, 4 if spec.get("measure_losses") else 2)
            if spec.get("measure_losses"):
                record["losses"] = losses = dict(weights={
                    term: model.loss_settings[f"{term}_weight"] for term in WEIGHT_KEYS.values()})
                probe = batches[0][0][:4]
                try:
                    boxes_init = boxes(probe)
                    weights_init = cnet_weights()
                except Exception as exc:  # noqa: BLE001 - fail soft
                    boxes_init = None
                    losses["boxes_error"] = f"{type(exc).__name__}: {exc}"[:500]
            record["phase"] = f"batch {batch}: first step"
            _dump(record, result_path)
            timer = fit(batches[:1], 1)
            entry["first_step_s"] = timer.seconds
            if spec.get("measure_losses"):
                losses["init"] = terms(timer.logs)
            _dump(record, result_path)
            if spec["warmup"] > 1:
                record["phase"] = f"batch {batch}: warm-up"
                fit(batches, spec["warmup"] - 1)
            record["phase"] = f"batch {batch}: timed"
            _dump(record, result_path)
            timer = fit(batches, spec["steps"])
            entry["timed_steps"] = spec["steps"]
            entry["step_s"] = timer.seconds / spec["steps"]
            entry["images_per_s"] = batch / entry["step_s"]
            entry["tflops_per_s"] = entry["images_per_s"] * flops["train_step"] / 1e12
            peak = _peak_device_bytes(backend)
            entry["peak_device_gib"] = None if peak is None else peak / 2**30
            entry["status"] = "ok"
            _dump(record, result_path)
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: try the next batch
            entry["status"] = "error"
            entry["error"] = f"{type(exc).__name__}: {exc}"[:1500]
            _dump(record, result_path)
            if not spec.get("max_batch"):
                raise
            continue
        if spec.get("max_batch"):
            break  # largest first: the first that runs is the largest that fits
    if spec.get("measure_losses"):
        try:
            record["phase"] = "losses: training to step 30"
            _dump(record, result_path)
            target = spec.get("loss_steps", 30)
            if done["steps"] < target:
                fit(batches, target - done["steps"])
            timer = fit(batches, 1)  # step 31: the loss after 30 updates
            losses["after_steps"] = done["steps"] - 1
            losses["after"] = terms(timer.logs)
            if boxes_init is not None:
                try:
                    delta = np.abs(boxes(probe) - boxes_init)  # (probe, K, 3): t_x, t_y, t_s
                    losses["box_mean_abs_change"] = dict(zip(("t_x", "t_y", "t_s"),
                                                             delta.mean(axis=(0, 1)).tolist()))
                    losses["box_max_abs_change"] = float(delta.max())
                    after = cnet_weights()
                    losses["cnet_weights"] = {
                        name: dict(norm_init=float(np.linalg.norm(w)),
                                   norm_change=float(np.linalg.norm(after[name] - w)))
                        for name, w in weights_init.items()
                    }
                except Exception as exc:  # noqa: BLE001 - fail soft
                    losses["boxes_error"] = f"{type(exc).__name__}: {exc}"[:500]
        except Exception as exc:  # noqa: BLE001 - fail soft: the timings stand
            losses["error"] = f"{type(exc).__name__}: {exc}"[:1500]
    record["tensorflow_imported"] = any(
        m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules)
    record["worker_s"] = time.perf_counter() - start
    record["status"] = "ok" if any(e.get("status") == "ok" for e in results) else "error"
    record["phase"] = "done"
    _dump(record, result_path)


# =========================================================================== driver


def _version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _shell(command, timeout=20):
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        return done.stdout.strip() if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment():
    gpu = None
    line = _shell(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                   "--format=csv,noheader"])
    if line:
        name, memory, driver = (part.strip() for part in line.splitlines()[0].split(","))
        gpu = dict(name=name, memory=memory, driver=driver)
    return dict(
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_count=os.cpu_count(),
        packages={n: _version(n) for n in ("keras", "jax", "jaxlib", "jax-cuda13-plugin",
                                           "torch", "numpy", "optree", "tensorflow")},
        git_commit=_shell(["git", "-C", ROOT, "rev-parse", "HEAD"]),
        gpu=gpu,
    )


def run_item(item, budget, dry_run, workdir):
    """Runs one plan item in a subprocess (own process group, killed at the budget)."""
    result = os.path.join(workdir, item["name"] + ".json")
    log = os.path.join(workdir, item["name"] + ".log")
    env = dict(os.environ, KERAS_BACKEND=item["backend"], PYTHONUNBUFFERED="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    if item["backend"] == "jax":
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.92")  # room for the largest batch
    if dry_run:  # a 2-core CPU: one thread, no XLA optimisation (the tests' settings)
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                            " --xla_cpu_multi_thread_eigen=false").strip()
        env["OMP_NUM_THREADS"] = "1"
        # Reruns reuse the compiled steps (the cache the tests use, tests/helpers.py).
        env.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ.get(
            "SGMA_KERAS_TEST_JAX_CACHE",
            os.path.join(tempfile.gettempdir(), "sgma_keras_test_jax_cache")))
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    spec = dict(item, model="tiny" if dry_run else "full", require_gpu=not dry_run,
                threads=1 if dry_run else None)
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec),
               "--result", result]
    start = time.perf_counter()
    status, error = None, None
    with open(log, "w") as out:
        # Its own process group (same session), so torch.compile's workers go with it.
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, process_group=0)
        try:
            code = proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code, status, error = None, "timeout", f"over its {budget:.0f} s budget"
        except BaseException:  # interrupted (run.sh's timeout): no orphan on the GPU
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    wall = time.perf_counter() - start
    try:
        with open(result) as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = dict(item)
    with open(log, errors="replace") as f:
        tail = f.read()[-3000:]
    if status is None:
        status = record.get("status") if code == 0 else "error"
        if code != 0:
            lines = [l for l in tail.strip().splitlines() if l.strip()]
            error = f"exit {code}: " + (lines[-1] if lines else "no output")
    if status != "ok":
        record["log_tail"] = tail
    record.update(status=status, wall_s=wall, budget_s=budget)
    if error:
        record["error"] = error[:1500]
    return record


def summarise(record, peak_tflops):
    """The measurement's headline row (from its largest batch that ran)."""
    ok = [e for e in record.get("batch_results", []) if e.get("status") == "ok"]
    best = max(ok, key=lambda e: e["batch"]) if ok else {}
    first = (record.get("batch_results") or [{}])[0]
    tflops = best.get("tflops_per_s")
    return dict(
        batch=best.get("batch", first.get("batch", (record.get("batches") or [None])[0])),
        first_step_s=best.get("first_step_s", first.get("first_step_s")),
        ms_per_step=None if "step_s" not in best else best["step_s"] * 1e3,
        images_per_s=best.get("images_per_s"),
        tflops_per_s=tflops,
        fraction_of_bf16_peak=None if tflops is None else tflops / peak_tflops,
        peak_device_gib=best.get("peak_device_gib"),
    )


def loss_summary(losses):
    if not losses or "init" not in losses:
        return None
    weights = losses.get("weights", {})
    out = dict(losses)

    def dominant(values):
        weighted = {k: weights.get(WEIGHT_KEYS[k], 1.0) * v for k, v in values.items()
                    if k in WEIGHT_KEYS}
        return max(weighted, key=lambda k: abs(weighted[k])) if weighted else None

    values = list(losses["init"].values()) + list(losses.get("after", {}).values())
    out["finite"] = all(math.isfinite(v) for v in values)
    out["dominant_init"] = dominant(losses["init"])
    out["dominant_after"] = dominant(losses["after"]) if "after" in losses else None
    return out


def _fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(report):
    env, model = report["environment"], report["model"]
    gpu = env.get("gpu") or {}
    lines = [
        f"# SGMA full-size training step{' (DRY RUN: tiny model, not a measurement)' if report['dry_run'] else ''}",
        "",
        f"- command: `{report['command']}`",
        f"- started {report['started_utc']}, {report['wall_s']:.0f} s in all"
        f"{'' if report['complete'] else ' (INCOMPLETE: cut short)'}",
        f"- GPU: {gpu.get('name', 'none found')} ({gpu.get('memory', '-')}, driver "
        f"{gpu.get('driver', '-')}); devices seen by the workers: "
        + ", ".join(sorted({m.get('device', '?') for m in report['measurements'] if m.get('device')})),
        f"- python {env['python']}, "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
        + f"; commit {env.get('git_commit') or '-'}",
        f"- model: {model['description']}; analytic GFLOP per image: forward "
        f"{_fmt(model.get('gflop_forward_per_image'))}, training step "
        f"{_fmt(model.get('gflop_train_per_image'))}; % of peak is of {report['peak_tflops']:.0f} "
        "TFLOP/s dense bf16 (also for float32 rows)",
        "",
        "| measurement | backend | compiled | policy | batch | status | first step s | ms/step "
        "| img/s | TFLOP/s | % of bf16 peak | peak GPU GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report["measurements"]:
        s = m.get("summary", {})
        compiled = ({"jax": "jax.jit", "torch": "torch.compile"}[m["backend"]]
                    if m.get("jit") else "eager")
        frac = s.get("fraction_of_bf16_peak")
        lines.append(
            f"| {m['name']} | {m['backend']} | {compiled} | {m['policy']} | {_fmt(s.get('batch'))} "
            f"| {m['status']} | {_fmt(s.get('first_step_s'))} | {_fmt(s.get('ms_per_step'))} "
            f"| {_fmt(s.get('images_per_s'))} | {_fmt(s.get('tflops_per_s'))} "
            f"| {_fmt(None if frac is None else 100 * frac)} | {_fmt(s.get('peak_device_gib'), 2)} |")
    losses = report.get("losses")
    if losses:
        after = losses.get("after", {})
        lines += ["", f"## Loss terms ({losses['source']}, random images and labels)", "",
                  f"| term | weight | at init | after {losses.get('after_steps', '-')} steps |",
                  "|---|---|---|---|"]
        for term in LOSS_TERMS + ("loss",):
            if term in losses["init"]:
                weight = losses["weights"].get(WEIGHT_KEYS.get(term), "-") if term != "loss" else "-"
                lines.append(f"| {term} | {weight} | {_fmt(losses['init'][term], 4)} "
                             f"| {_fmt(after.get(term), 4)} |")
        lines += ["", f"All finite: {'yes' if losses['finite'] else 'NO'}. Largest weighted term: "
                      f"{losses['dominant_init']} at init, {losses.get('dominant_after') or '-'} after."]
        if "box_mean_abs_change" in losses:
            change = losses["box_mean_abs_change"]
            lines.append(
                "Part boxes on 4 probe images (fractions of the image side), mean |change|: "
                + ", ".join(f"{k} {v:.4f}" for k, v in change.items())
                + f"; largest {losses['box_max_abs_change']:.4f}. f_CNet weights, norm of the "
                "change / norm at init: "
                + ", ".join(f"{name.split('/')[-1]} {w['norm_change']:.3g} / {w['norm_init']:.3g}"
                            for name, w in losses["cnet_weights"].items()) + ".")
        if "error" in losses:
            lines.append(f"Loss measurement cut short: {losses['error'].splitlines()[0]}")
        if "boxes_error" in losses:
            lines.append(f"Boxes not measured: {losses['boxes_error']}")
    failed = [m for m in report["measurements"] if m["status"] != "ok"]
    if failed:
        lines += ["", "## Not measured", ""]
        for m in failed:
            lines.append(f"- {m['name']}: {m['status']}"
                         f"{': ' + (m['error'].splitlines() or [''])[0] if m.get('error') else ''}")
    return "\n".join(lines) + "\n"


def write(report, out):
    os.makedirs(out, exist_ok=True)
    _dump(report, os.path.join(out, "gpu_benchmark.json"))
    with open(os.path.join(out, "gpu_benchmark.md"), "w") as f:
        f.write(markdown(report))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny model, small images, CPU: checks the script in under a minute")
    parser.add_argument("--out", default=None, help="output folder (default: $OUT, else results/gpu)")
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds for all measurements together (run.sh: 8 minutes in all)")
    parser.add_argument("--only", default=None, help="comma-separated measurement names")
    parser.add_argument("--max-batches", default="256,128,64",
                        help="batches tried for the largest that fits, largest first")
    parser.add_argument("--peak-tflops", type=float, default=PEAK_BF16_TFLOPS)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        try:
            run_worker(spec, args.result)
        except BaseException as exc:
            try:
                with open(args.result) as f:
                    record = json.load(f)
            except (OSError, ValueError):
                record = dict(spec)
            record.update(status="error", error=f"{type(exc).__name__}: {exc}"[:1500],
                          traceback=traceback.format_exc()[-3000:])
            _dump(record, args.result)
            raise
        return 0

    start = time.perf_counter()
    deadline = start + args.budget
    out = args.out or os.environ.get("OUT") or os.path.join(ROOT, "results", "gpu")
    max_batches = [4 * b // 32 for b in (256, 128)] if args.dry_run else [
        int(b) for b in args.max_batches.split(",")]
    items = plan(args.dry_run, max_batches)
    if args.only:
        wanted = set(args.only.split(","))
        items = [i for i in items if i["name"] in wanted]
    name = "tiny" if args.dry_run else "full"
    spec = MODELS[name]
    report = dict(
        schema=1,
        dry_run=args.dry_run,
        command=os.environ.get("SGMA_GPU_COMMAND")
        or " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv),
        started_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        wall_s=0.0,
        complete=False,
        budget_s=args.budget,
        peak_tflops=args.peak_tflops,
        environment=environment(),
        model=dict(name=name, backbone=spec["backbone"], image_size=spec["image_size"],
                   local_size=spec["local_size"], num_parts=2,
                   description=f"{spec['backbone']} at {spec['image_size']} + 2 x "
                   f"{spec['backbone']} parts at {spec['local_size']}, random weights, SGD "
                   "momentum 0.9, joint stage"),
        measurements=[],
        losses=None,
    )
    print(f"== {len(items)} measurements, {args.budget:.0f} s in all; writing to {out}", flush=True)
    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    try:
        with tempfile.TemporaryDirectory(prefix="sgma_gpu_") as workdir:
            measure(items, report, args, out, start, deadline, workdir)
    except KeyboardInterrupt as exc:  # the files keep what was measured
        report["interrupted"] = str(exc) or "interrupted"
        report["wall_s"] = time.perf_counter() - start
        write(report, out)
        print(f"interrupted ({report['interrupted']}); partial results in {out}")
        return 1
    report["complete"] = True
    report["wall_s"] = time.perf_counter() - start
    write(report, out)
    print(markdown(report))
    return 0 if all(m["status"] in ("ok", "skipped") for m in report["measurements"]) else 1


def measure(items, report, args, out, start, deadline, workdir):
    """Runs the plan items one after the other, rewriting the report after each."""
    for item in items:
        left = deadline - time.perf_counter()
        if item.get("skip"):
            record = dict(item, status="skipped", error=item["skip"])
        elif left < 20:
            record = dict(item, status="skipped", error=f"no time left ({left:.0f} s)")
        else:
            budget = min(item["budget"], left)
            print(f"-- {item['name']} (budget {budget:.0f} s)", flush=True)
            record = run_item(item, budget, args.dry_run, workdir)
        record["summary"] = summarise(record, args.peak_tflops)
        report["measurements"].append(record)
        for key in ("gflop_forward_per_image", "gflop_train_per_image", "params_m"):
            if key in record and key not in report["model"]:
                report["model"][key] = record[key]
        if record.get("losses") and report["losses"] is None:
            report["losses"] = loss_summary(record["losses"])
            if report["losses"]:
                report["losses"]["source"] = (
                    f"{record['backend']}, {record['policy']}, batch {record['batches'][0]}")
        s = record["summary"]
        print(f"   {record['status']}: " + (record.get("error") or "-").splitlines()[0][:300]
              if record["status"] != "ok" else
              f"   ok: batch {s['batch']}, {_fmt(s['ms_per_step'])} ms/step, "
              f"{_fmt(s['images_per_s'])} img/s, {_fmt(s['tflops_per_s'], 3)} TFLOP/s, "
              f"first step {_fmt(s['first_step_s'])} s", flush=True)
        report["wall_s"] = time.perf_counter() - start
        write(report, out)


if __name__ == "__main__":
    sys.exit(main())
