"""Input pipeline throughput: images/second of the training pipeline from JPEG files.

Generates the built-in dataset (2,000 images at 448x448 by default) into a temporary
folder (or reuses `--root`), reports the generation time, then the steady-state rate of
`make_dataset(..., training=True)` (decode, random resized crop, flip, colour jitter,
batching) after a warm-up, and of the evaluation pipeline (decode + resize).

    python benchmarks/input_pipeline.py [--image-size 448] [--batch-size 32] [--seconds 10]

`measure_pipeline(split, image_size, batch_size, seconds)` is importable from here (or
from `sgma_keras.data`) to put the rate next to the model's training step rate.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sgma_keras.data.builtin import make_builtin_dataset  # noqa: E402
from sgma_keras.data.pipeline import make_dataset  # noqa: E402
from sgma_keras.data.pipeline import measure_pipeline  # noqa: E402


def measure_eval_pipeline(split, image_size, batch_size, seconds):
    """Images/second of the evaluation pipeline (decode + resize), repeated."""
    ds = make_dataset(split, image_size, batch_size, training=False, repeat=True)
    iterator = iter(ds)
    for _ in range(2):
        next(iterator)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images += int(next(iterator)[0].shape[0])
    return images / (time.perf_counter() - start)


def measure_demo_training(config="configs/demo.json", steps=8):
    """Training images/second of the demo model (its config's sizes), steady state."""
    import keras
    import numpy as np

    from sgma_keras.config import load_config
    from sgma_keras.model import make_sgma
    from sgma_keras.workflow.build import model_sections
    from sgma_keras.workflow.build import make_optimizer

    cfg = load_config(config)
    size, batch = cfg["input"]["image_size"], cfg["input"]["batch_size"]
    rng = np.random.default_rng(0)
    semantics = rng.random((24, 20)).astype("float32")
    model = make_sgma(semantics, list(range(14)), **model_sections(cfg))
    model.compile(optimizer=make_optimizer(cfg["train"]))
    images = (rng.random((batch, size, size, 3)) * 255).astype("float32")
    labels = np.arange(batch) % 14
    for _ in range(2):  # compile and warm up
        model.train_on_batch(images, labels)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, labels)
    return steps * batch / (time.perf_counter() - start), size, keras.backend.backend()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--root", default=None, help="dataset folder to reuse")
    parser.add_argument("--demo-config", default="configs/demo.json",
                        help="config of the model whose training rate the pipeline must beat")
    args = parser.parse_args(argv)
    train_rate, demo_size, backend = measure_demo_training(args.demo_config)
    print(f"demo model training: {train_rate:.1f} images/s at {demo_size}x{demo_size} "
          f"({backend} backend)")

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or tmp
        start = time.perf_counter()
        data = make_builtin_dataset(
            root, num_images=args.num_images, image_size=args.image_size
        )
        print(
            f"built-in dataset: {args.num_images} images at {args.image_size}x"
            f"{args.image_size} ready in {time.perf_counter() - start:.1f} s ({root})"
        )
        split = data.splits["trainval"]
        rate = measure_pipeline(split, args.image_size, args.batch_size, args.seconds)
        print(
            f"training pipeline: {rate:.1f} images/s (batch {args.batch_size}, "
            f"{os.cpu_count()} CPUs)"
        )
        print(f"ratio pipeline/training at {args.image_size}: {rate / train_rate:.2f} "
              "(goal >= 2)")
        eval_rate = measure_eval_pipeline(split, args.image_size, args.batch_size, args.seconds)
        print(f"evaluation pipeline: {eval_rate:.1f} images/s")
        if demo_size != args.image_size:
            small = make_builtin_dataset(os.path.join(root, "demo_size"), num_images=args.num_images,
                                         image_size=demo_size)
            rate = measure_pipeline(small.splits["trainval"], demo_size, args.batch_size,
                                    args.seconds)
            print(f"training pipeline at the demo's {demo_size}x{demo_size}: {rate:.1f} images/s, "
                  f"ratio to training {rate / train_rate:.2f}")


if __name__ == "__main__":
    main()
