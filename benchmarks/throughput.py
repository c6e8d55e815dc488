"""Training and inference throughput of SGMA per backend, jit setting and precision.

Models:
- `demo`: the demo model (tiny backbone, image 112, parts 56, 24 classes with
  20-dim semantics, 18 seen), batch `--demo-batch` (32), Adam;
- `full`: the paper's model (VGG19 at 448 + two VGG19 parts at 224, random
  weights), batch `--full-batch` (32; use 2 on a CPU), SGD with momentum.

Every (model, backend, jit, precision) configuration runs in its own
subprocess with `KERAS_BACKEND` set, so each measures its own peak host memory
(`ru_maxrss`) and starts from a clean dtype policy. Training runs `model.fit`
on one random in-memory batch repeated (`tf.data` `from_tensors().repeat()` on
TensorFlow, a Python generator elsewhere) for `1 + --repeats` epochs of
`--steps` steps: the first epoch is the warm-up (its first step, including
tracing and compilation, is reported as `first_step_s`), the others are timed
(wall clock, synchronised at each epoch end). Inference times
`model.predict_on_batch` after `--predict-warmup` calls.

jit: TensorFlow `jit_compile=True` is XLA, `False` a plain `tf.function`;
JAX `True` is `jax.jit`, `False` eager op-by-op; PyTorch runs eagerly
(`jit_compile=False`) unless `--torch-compile` adds `torch.compile` (static
shapes, see `static_torch_compile`). Precision `mixed` is `mixed_float16` on a
GPU, `mixed_bfloat16` otherwise. `--threads N` caps every backend's CPU
threads (on a small shared CPU, PyTorch's multi-threaded kernels spin-wait:
the demo trains ~4x faster there with 1 thread than with 2).

Also printed: jit on / jit off per backend, and each backend / the fastest
backend on the same model, policy and jit setting (and at each backend's best
jit setting). `--quick` is a smoke run: the demo model only, batch 8, 2 steps,
one timed epoch, float32.

FLOPs are analytic (`benchmarks/flops.py`): a training step is 3x the forward.

    python benchmarks/throughput.py --quick
    python benchmarks/throughput.py --models full --full-batch 2 --steps 2 --repeats 1
    python benchmarks/throughput.py --backends jax,torch --precisions float32 --out results/throughput

Writes `<out>.json` (all records and the environment) and `<out>.md` (the table
and the ratios), and prints both tables.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODELS = {
    "demo": dict(backbone="tiny", image_size=112, local_size=56, tiny_width=32,
                 num_classes=24, num_unseen=6, semantic_dim=20, optimizer="adam"),
    "full": dict(backbone="vgg19", image_size=448, local_size=224, tiny_width=32,
                 num_classes=50, num_unseen=10, semantic_dim=85, optimizer="sgd"),
}


# --------------------------------------------------------------------------- worker


def _sync(value):
    import numpy as np
    from keras import ops

    return np.asarray(ops.convert_to_numpy(value))


def _device_info(backend):
    """(device name, has accelerator) for the backend."""
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}:{getattr(device, 'device_kind', device)}", device.platform != "cpu"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name(0)}", True
        return "cpu", False
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return ("gpu:" + gpus[0].name if gpus else "cpu"), bool(gpus)


def _backend_version(backend):
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    return __import__(module).__version__


def device_peak_bytes(backend):
    """Peak accelerator memory in bytes where the backend exposes it, else None."""
    try:
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats()
            return None if not stats else stats.get("peak_bytes_in_use")
        if backend == "torch":
            import torch

            return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return tf.config.experimental.get_memory_info("GPU:0")["peak"]
    except Exception:  # noqa: BLE001 - best effort
        return None
    return None


def make_model(name, seed=0):
    """(model, seen class ids) for a MODELS entry: random weights, random binary semantics."""
    import numpy as np

    from sgma_keras.model import make_sgma

    spec = MODELS[name]
    rng = np.random.default_rng(seed)
    classes, dim = spec["num_classes"], spec["semantic_dim"]
    semantics = (rng.random((classes, dim)) < 0.3).astype("float32")
    semantics[np.arange(classes), rng.integers(0, dim, classes)] = 1.0  # no empty row
    seen = np.arange(spec["num_classes"] - spec["num_unseen"])
    model = make_sgma(
        semantics=semantics,
        seen_classes=seen,
        image_size=spec["image_size"],
        cropper={"output_size": spec["local_size"]},
        backbone={"name": spec["backbone"], "weights": None, "tiny_width": spec["tiny_width"]},
        seed=0,
    )
    return model, seen


def make_optimizer(name):
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(0.001, momentum=0.9)
    return keras.optimizers.Adam(1e-4)


def repeated_batch(backend, images, labels):
    """An endless input of the same batch, in the backend's natural form."""
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.data.Dataset.from_tensors((images, labels)).repeat()

    def generator():
        while True:
            yield images, labels

    return generator()


def limit_threads(backend, threads):
    """Caps the backend's CPU threads (call before its runtime starts)."""
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def static_torch_compile():
    """torch.compile with one graph per shape.

    Dynamo compiles Keras's shared layer code once per layer shape; after a few
    shapes it switches to dynamic shapes, which Inductor 2.13 fails to lower for
    a strided "same" convolution backward (`ValueRangeError: Invalid ranges
    [0:-1]` in `aten.convolution_backward`). Static shapes with a recompile
    limit above the number of distinct layer shapes avoid it.
    """
    import torch._dynamo.config as dynamo

    dynamo.automatic_dynamic_shapes = False
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo, name):
            setattr(dynamo, name, 256)


def run_worker(cfg):
    """Measures one configuration; returns a JSON-able record."""
    import resource

    import keras
    import numpy as np

    from benchmarks.flops import sgma_flops

    backend = keras.backend.backend()
    if cfg.get("threads"):
        limit_threads(backend, cfg["threads"])
    if backend == "torch" and cfg["jit"]:
        static_torch_compile()
    device, accelerator = _device_info(backend)
    policy = cfg["precision"]
    if policy == "mixed":
        policy = "mixed_float16" if accelerator else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    record = dict(cfg, backend=backend, device=device, policy=policy)
    record["versions"] = f"keras {keras.__version__}, {backend} {_backend_version(backend)}"

    start = time.perf_counter()
    model, seen = make_model(cfg["model"])
    spec = MODELS[cfg["model"]]
    batch = cfg["batch"]
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, spec["image_size"], spec["image_size"], 3)).astype("float32")
    labels = rng.choice(seen, batch).astype("int32")
    model.compile(optimizer=make_optimizer(spec["optimizer"]), jit_compile=cfg["jit"])
    record["jit_effective"] = bool(model.jit_compile)
    record["build_s"] = time.perf_counter() - start
    flops = sgma_flops(model)
    record["gflop_forward_per_image"] = flops["forward"] / 1e9
    record["gflop_train_per_image"] = flops["train_step"] / 1e9

    timer = epoch_timer()
    steps, repeats = cfg["steps"], cfg["repeats"]
    start = time.perf_counter()
    model.fit(
        repeated_batch(backend, images, labels),
        epochs=1 + repeats,
        steps_per_epoch=steps,
        verbose=0,
        shuffle=False,
        callbacks=[timer],
    )
    record["fit_total_s"] = time.perf_counter() - start
    record["first_step_s"] = timer.first_step
    record["warmup_epoch_s"] = timer.epochs[0]
    timed = sum(timer.epochs[1:])
    record["train_step_s"] = timed / (steps * repeats)
    record["train_images_per_s"] = batch * steps * repeats / timed
    record["train_tflops_per_s"] = record["train_images_per_s"] * flops["train_step"] / 1e12
    record["final_loss"] = timer.last_loss

    start = time.perf_counter()
    _sync(model.predict_on_batch(images)["scores"])
    record["predict_first_s"] = time.perf_counter() - start
    for _ in range(cfg["predict_warmup"] - 1):
        _sync(model.predict_on_batch(images)["scores"])
    start = time.perf_counter()
    for _ in range(cfg["predict_steps"]):
        _sync(model.predict_on_batch(images)["scores"])
    elapsed = time.perf_counter() - start
    record["predict_images_per_s"] = batch * cfg["predict_steps"] / elapsed
    record["predict_tflops_per_s"] = record["predict_images_per_s"] * flops["forward"] / 1e12

    record["peak_host_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak = device_peak_bytes(backend)
    record["peak_device_mib"] = None if peak is None else peak / 2**20
    return record


def epoch_timer():
    """A new Keras callback timing each epoch (synchronised on the last loss) and step 0."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall clock of each epoch (synchronised on the last loss) and of step 0."""

        def __init__(self):
            super().__init__()
            self.epochs, self.first_step, self.last_loss = [], None, None
            self._logs = None

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            if self.first_step is None:
                self._step_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self._logs = logs
            if self.first_step is None:
                _sync(logs["loss"])
                self.first_step = time.perf_counter() - self._step_start

        def on_epoch_end(self, epoch, logs=None):
            self.last_loss = float(_sync(self._logs["loss"]))  # waits for the last step
            self.epochs.append(time.perf_counter() - self._start)

    return EpochTimer()


# --------------------------------------------------------------------------- driver


def configurations(args):
    backends = [b for b in args.backends.split(",") if b]
    for model in args.models.split(","):
        batch = args.demo_batch if model == "demo" else args.full_batch
        for backend in backends:
            jits = [True, False]
            if backend == "torch":
                jits = [True, False] if args.torch_compile else [False]
            for jit in jits:
                for precision in args.precisions.split(","):
                    yield dict(
                        model=model, backend=backend, jit=jit, precision=precision,
                        batch=batch, steps=args.steps, repeats=args.repeats,
                        predict_warmup=args.predict_warmup, predict_steps=args.predict_steps,
                        threads=args.threads,
                    )


def run_subprocess(cfg, timeout):
    env = dict(os.environ, KERAS_BACKEND=cfg["backend"], TF_CPP_MIN_LOG_LEVEL="2")
    if cfg.get("threads"):
        env["OMP_NUM_THREADS"] = str(cfg["threads"])
        if cfg["threads"] == 1:  # XLA:CPU (JAX, TF with XLA): no Eigen thread pool
            env["XLA_FLAGS"] = (
                env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                " intra_op_parallelism_threads=1"
            ).strip()
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(cfg, error=f"timed out after {timeout} s")
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            record = json.loads(line[len("RESULT "):])
            record["subprocess_s"] = time.perf_counter() - start
            return record
    lines = (done.stderr or done.stdout).strip().splitlines()
    errors = [line for line in lines if "Error" in line and not line.startswith(" ")]
    tail = errors[-1:] or lines[-3:]
    return dict(cfg, error=f"exit {done.returncode}: " + " | ".join(tail)[:400])


def _fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10 ** -digits or value == 0 else f"{value:.2g}"
    return str(value)


def _key(r):
    return (r["model"], r.get("policy") or r["precision"], r["jit"])


def markdown(records, env):
    lines = [
        f"# SGMA throughput ({env['device_summary']})",
        "",
        f"Host: {env['host']}; {env['cpus']} CPUs; python {env['python']}; threads: "
        f"{env['threads'] or 'backend default'}; {env['versions']}.",
        "",
        "| model | backend | jit | policy | batch | train img/s | step s | first step s | "
        "predict img/s | GFLOP fwd/img | train TFLOP/s | predict TFLOP/s | host MiB | device MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:
            lines.append(
                f"| {r['model']} | {r['backend']} | {r['jit']} | {r['precision']} | {r['batch']} "
                f"| error: {r['error'][:120]} |||||||||"
            )
            continue
        lines.append(
            "| " + " | ".join([
                r["model"], r["backend"], str(r["jit_effective"]), r["policy"], str(r["batch"]),
                _fmt(r["train_images_per_s"], 2), _fmt(r["train_step_s"], 3),
                _fmt(r["first_step_s"], 1), _fmt(r["predict_images_per_s"], 2),
                _fmt(r["gflop_forward_per_image"], 2), _fmt(r["train_tflops_per_s"], 3),
                _fmt(r["predict_tflops_per_s"], 3), _fmt(r["peak_host_mib"], 0),
                _fmt(r["peak_device_mib"], 0),
            ]) + " |"
        )
    lines += ["", "## Ratios (training images/s)", ""] + ratio_lines(records)
    return "\n".join(lines) + "\n"


def ratio_lines(records):
    ok = [r for r in records if "error" not in r]
    lines = ["jit on / jit off, per backend:", ""]
    by = {(r["model"], r["backend"], r["policy"], r["jit"]): r for r in ok}
    found = False
    for (model, backend, policy, jit), r in sorted(by.items(), key=str):
        off = by.get((model, backend, policy, False))
        if jit and off:
            found = True
            lines.append(
                f"- {model} {backend} {policy}: {r['train_images_per_s'] / off['train_images_per_s']:.2f}x "
                f"train, {r['predict_images_per_s'] / off['predict_images_per_s']:.2f}x predict"
            )
    if not found:
        lines.append("- (no configuration ran with both settings)")
    lines += ["", "each backend / the fastest backend on the same model, policy and jit setting:", ""]
    groups = {}
    for r in ok:
        groups.setdefault(_key(r), []).append(r)
    for (model, policy, jit), group in sorted(groups.items(), key=str):
        best = max(group, key=lambda r: r["train_images_per_s"])
        parts = ", ".join(
            f"{r['backend']} {r['train_images_per_s'] / best['train_images_per_s']:.2f}"
            for r in sorted(group, key=lambda r: -r["train_images_per_s"])
        )
        lines.append(f"- {model} {policy} jit={jit}: {parts} (fastest: {best['backend']})")
    best_any = {}
    for r in ok:
        k = (r["model"], r["policy"], r["backend"])
        if k not in best_any or r["train_images_per_s"] > best_any[k]["train_images_per_s"]:
            best_any[k] = r
    lines += ["", "each backend at its best jit setting / the fastest:", ""]
    groups = {}
    for (model, policy, _), r in best_any.items():
        groups.setdefault((model, policy), []).append(r)
    for (model, policy), group in sorted(groups.items(), key=str):
        best = max(group, key=lambda r: r["train_images_per_s"])
        parts = ", ".join(
            f"{r['backend']} (jit={r['jit_effective']}) {r['train_images_per_s'] / best['train_images_per_s']:.2f}"
            for r in sorted(group, key=lambda r: -r["train_images_per_s"])
        )
        lines.append(f"- {model} {policy}: {parts}")
    return lines


def environment(records, threads=None):
    devices = sorted({r["device"] for r in records if "device" in r})
    versions = sorted({r["versions"] for r in records if "versions" in r})
    return dict(
        host=platform.node(), platform=platform.platform(), cpus=os.cpu_count(),
        python=platform.python_version(), device_summary=", ".join(devices) or "no device",
        versions="; ".join(versions), threads=threads, time=time.strftime("%Y-%m-%d %H:%M:%S"),
    )


def output_paths(out):
    stem, ext = os.path.splitext(out)
    if ext not in (".json", ".md"):
        stem = out
    return stem + ".json", stem + ".md"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: demo model, batch 8, 2 steps, 1 timed epoch, float32")
    parser.add_argument("--models", default="demo,full", help="comma list of demo,full")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--precisions", default="float32,mixed",
                        help="comma list of float32,mixed (mixed_float16 on GPU, mixed_bfloat16 on CPU)")
    parser.add_argument("--torch-compile", action="store_true",
                        help="also run PyTorch with jit_compile=True (torch.compile)")
    parser.add_argument("--demo-batch", type=int, default=32)
    parser.add_argument("--full-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs after the warm-up epoch")
    parser.add_argument("--predict-warmup", type=int, default=2)
    parser.add_argument("--predict-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None,
                        help="cap CPU threads of every backend (default: the backends' own; on a "
                             "small shared CPU, multi-threaded PyTorch kernels spin-wait: try 1)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per configuration")
    parser.add_argument("--out", default=os.path.join("results", "throughput"),
                        help="output stem: writes <stem>.json and <stem>.md")
    args = parser.parse_args(argv)

    if args.worker:
        record = run_worker(json.loads(args.worker))
        print("RESULT " + json.dumps(record), flush=True)
        return 0

    if args.quick:
        args.models, args.precisions = "demo", "float32"
        args.demo_batch, args.steps, args.repeats = 8, 2, 1
        args.predict_warmup, args.predict_steps = 1, 2

    records = []
    for cfg in configurations(args):
        label = f"{cfg['model']} {cfg['backend']} jit={cfg['jit']} {cfg['precision']} batch={cfg['batch']}"
        print(f"running {label} ...", flush=True)
        record = run_subprocess(cfg, args.timeout)
        records.append(record)
        if "error" in record:
            print(f"  error: {record['error']}", flush=True)
        else:
            print(
                f"  train {record['train_images_per_s']:.2f} img/s ({record['train_tflops_per_s']:.3f} "
                f"TFLOP/s), first step {record['first_step_s']:.1f} s, predict "
                f"{record['predict_images_per_s']:.2f} img/s, host {record['peak_host_mib']:.0f} MiB",
                flush=True,
            )
    env = environment(records, args.threads)
    json_path, md_path = output_paths(args.out)
    # Only now does this (parent) process import sgma_keras, for its crash-safe
    # writers; a backend that is installed keeps it importable on a machine
    # without TensorFlow.
    os.environ.setdefault("KERAS_BACKEND", args.backends.split(",")[0])
    sys.path.insert(0, ROOT)
    from sgma_keras.atomic_io import write_json_atomic, write_text_atomic

    write_json_atomic(json_path, dict(environment=env, args=vars(args), records=records))
    text = markdown(records, env)
    write_text_atomic(md_path, text)
    print()
    print(text)
    print(f"wrote {json_path} and {md_path}")
    return 0 if all("error" not in r for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
