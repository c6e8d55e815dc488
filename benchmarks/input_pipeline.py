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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--root", default=None, help="dataset folder to reuse")
    args = parser.parse_args(argv)

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
        rate = measure_eval_pipeline(split, args.image_size, args.batch_size, args.seconds)
        print(f"evaluation pipeline: {rate:.1f} images/s")


if __name__ == "__main__":
    main()
