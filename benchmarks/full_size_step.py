"""Time of one training step of the full-size SGMA on the JAX backend.

The paper's model: VGG19 at 448 (global branch) plus two VGG19 part branches
at 224, random weights, SGD with momentum, the joint-stage loss. Input is one
random NumPy batch fed again at every step through `model.fit` (so each step
includes its host-to-device copy, as in training). The first epoch
(`--warmup` steps, the first of which traces and compiles) is the warm-up;
the next `--steps` steps are timed, synchronised on the last loss.

Prints the compile/first-step time, the steady step time, images/s, the
achieved TFLOP/s from the analytic FLOPs (`benchmarks/flops.py`; a training step
is 3x the forward, ~0.70 TFLOP an image) and the device peak memory.

Runs where JAX and Keras are installed without TensorFlow: it imports neither
TensorFlow nor anything that does (checked at the end).

    python benchmarks/full_size_step.py                      # batch 32, bfloat16
    python benchmarks/full_size_step.py --batch 1 --steps 1  # a CPU smoke run
"""

import argparse
import os
import resource
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.flops import sgma_flops  # noqa: E402
from sgma_keras.model import SGMA  # noqa: E402


class StepTimer(keras.callbacks.Callback):
    """Times the first step and each epoch, synchronised on the loss."""

    def __init__(self):
        super().__init__()
        self.first_step = None
        self.epochs = []
        self.last_logs = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        if self.first_step is None:
            self.step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.last_logs = logs
        if self.first_step is None:
            np.asarray(logs["loss"])
            self.first_step = time.perf_counter() - self.step_start

    def on_epoch_end(self, epoch, logs=None):
        self.loss = float(np.asarray(self.last_logs["loss"]))  # waits for the last step
        self.epochs.append(time.perf_counter() - self.epoch_start)


def peak_device_bytes():
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=None,
                        help="warm-up steps, the first compiles (default: --steps)")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16",
                        help="bfloat16: the mixed_bfloat16 policy (float32 variables)")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--local-size", type=int, default=224)
    parser.add_argument("--backbone", default="vgg19")
    parser.add_argument("--num-classes", type=int, default=50)
    parser.add_argument("--semantic-dim", type=int, default=85)
    args = parser.parse_args(argv)
    warmup = args.warmup or args.steps

    device = jax.devices()[0]
    print(f"jax {jax.__version__}, keras {keras.__version__}, device "
          f"{device.platform}:{getattr(device, 'device_kind', device)} (x{jax.device_count()})")
    keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if args.dtype == "bfloat16" else "float32"
    )
    # Not keras.utils.set_random_seed: it imports TensorFlow when it is installed.
    np.random.seed(0)
    rng = np.random.default_rng(0)
    semantics = rng.random((args.num_classes, args.semantic_dim)).astype("float32")
    seen = np.arange(args.num_classes * 4 // 5)
    start = time.perf_counter()
    model = SGMA(
        semantics=semantics, seen_classes=seen, image_size=args.image_size,
        local_size=args.local_size, backbone=args.backbone, weights=None, seed=0,
    )
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), jit_compile=True)
    flops = sgma_flops(model)
    print(f"model built in {time.perf_counter() - start:.1f} s; policy {model.dtype_policy.name}; "
          f"{model.count_params() / 1e6:.1f} M parameters")
    print(f"analytic GFLOP per image: forward {flops['forward'] / 1e9:.1f} (global "
          f"{flops['global'] / 1e9:.1f}, parts {flops['parts'] / 1e9:.1f}, heads "
          f"{flops['heads'] / 1e9:.3f}), training step {flops['train_step'] / 1e9:.1f}")

    images = rng.uniform(0, 255, (args.batch, args.image_size, args.image_size, 3)).astype("float32")
    labels = rng.choice(seen, args.batch).astype("int32")

    def batches():
        while True:
            yield images, labels

    timer = StepTimer()
    if warmup == args.steps:
        model.fit(batches(), epochs=2, steps_per_epoch=args.steps, verbose=0, shuffle=False,
                  callbacks=[timer])
    else:  # two fits; the second reuses the compiled step
        model.fit(batches(), epochs=1, steps_per_epoch=warmup, verbose=0, shuffle=False,
                  callbacks=[timer])
        model.fit(batches(), epochs=1, steps_per_epoch=args.steps, verbose=0, shuffle=False,
                  callbacks=[timer])
    step = timer.epochs[-1] / args.steps
    images_per_s = args.batch / step
    peak = peak_device_bytes()
    print(f"first step (trace + compile + run): {timer.first_step:.1f} s; warm-up epoch "
          f"({warmup} steps): {timer.epochs[0]:.1f} s")
    print(f"batch {args.batch}, {args.dtype}: step {step * 1e3:.1f} ms, {images_per_s:.2f} images/s, "
          f"{images_per_s * flops['train_step'] / 1e12:.3f} TFLOP/s achieved "
          f"(loss {timer.loss:.3f})")
    print("device peak memory: " + ("n/a (not exposed)" if peak is None else f"{peak / 2**30:.2f} GiB"))
    print(f"host peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    pulled = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
    if pulled:
        print(f"ERROR: tensorflow was imported ({len(pulled)} modules)")
        return 1
    print("tensorflow imported: no")
    return 0


if __name__ == "__main__":
    sys.exit(main())
