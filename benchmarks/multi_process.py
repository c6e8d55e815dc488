"""Step time of training in two processes vs one, on this machine's CPU.

Runs `train.py` on a tiny built-in-data config (that of tests/test_training.py:
32 px images, 4-wide tiny backbone, global batch `--batch`) once as one process on
one device and once as `--local-processes 2` (one CPU device each, gloo on JAX,
MultiWorkerMirroredStrategy's gRPC collectives on TensorFlow), per backend. Only
the joint stage trains (`--epochs` epochs of `--steps` steps; warm-up, init and
refit off). The time of an epoch is the gap between the chief's consecutive
one-line epoch logs (its steps and the validation of 15 images); the first epoch
(compilation) is left out and the median of the others is reported, divided by
`--steps`.

    python benchmarks/multi_process.py --backends jax,tensorflow

This measures what the collectives and the second process cost on one small CPU: it
says nothing about a GPU cluster.
"""

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) joint epoch (\d+)/")


def settings(root, data, args):
    """The tiny config of tests/test_training.py, joint stage only."""
    values = {
        "data.builtin.cache_dir": data, "data.builtin.num_images": args.images,
        "data.builtin.num_classes": 8, "data.builtin.num_unseen": 2,
        "data.builtin.image_size": 48, "input.image_size": 32, "model.cropper.output_size": 16,
        "input.batch_size": args.batch, "input.deterministic": True, "model.backbone.tiny_width": 4,
        "model.center.latent_dim": 8, "model.cropper.hidden_units": 8, "train.tensorboard": False,
        "train.warmup.enabled": False, "train.init.enabled": False, "train.refit": False,
        "train.joint.epochs": args.epochs, "train.steps_per_epoch": args.steps,
    }
    argv = ["--config", "configs/demo.json"]
    for key, value in values.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    return argv + ["--output-dir", os.path.join(root, "run")]


def epoch_seconds(output):
    stamps = []
    for line in output.splitlines():
        match = LINE.match(line)
        if match:
            stamps.append(datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f"))
    return [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]


def measure(backend, processes, args, data):
    with tempfile.TemporaryDirectory() as root:
        argv = [sys.executable, "train.py", *settings(root, data, args)]
        if processes > 1:
            argv += ["--local-processes", str(processes)]
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"{backend}, {processes} process(es) failed:\n{result.stdout[-3000:]}"
                             f"{result.stderr[-3000:]}")
        times = epoch_seconds(result.stdout)
    return {"backend": backend, "processes": processes, "epoch_s": times,
            "step_s": statistics.median(times) / args.steps}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="jax,tensorflow")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=192, help="built-in data set size")
    parser.add_argument("--out", help="write the records as JSON here")
    args = parser.parse_args(argv)
    data = tempfile.mkdtemp(prefix="sgma-builtin-")
    records = []
    for backend in args.backends.split(","):
        for processes in (1, 2):
            record = measure(backend, processes, args, data)
            records.append(record)
            print(f"{backend:10s} {processes} process(es): {1000 * record['step_s']:.0f} ms/step "
                  f"(epochs {', '.join(f'{t:.2f}' for t in record['epoch_s'])} s)", flush=True)
    for backend in args.backends.split(","):
        one, two = (r["step_s"] for r in records if r["backend"] == backend)
        print(f"{backend}: 2 processes / 1 process = {two / one:.2f}x the step time")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"args": vars(args), "cpus": os.cpu_count(), "records": records},
                      handle, indent=2)


if __name__ == "__main__":
    main()
