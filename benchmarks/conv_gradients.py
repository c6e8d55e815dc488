"""Per-layer convolution timings of the demo backbone: forward, kernel and input gradient.

Explains backend gaps in `throughput.py`: the demo model's step is dominated by
the tiny CNN's four 3x3 convolutions, so a backend whose compiler picks a slow
kernel for one of their gradients trains slower overall. Run it once per
backend and compare the printed milliseconds:

    KERAS_BACKEND=tensorflow python benchmarks/conv_gradients.py
    KERAS_BACKEND=jax python benchmarks/conv_gradients.py
    KERAS_BACKEND=torch python benchmarks/conv_gradients.py

TensorFlow runs under `tf.function(jit_compile=True)` (XLA), JAX under
`jax.jit`, PyTorch eagerly. The layer shapes are those of the demo model's
global branch (input 112, width 32, batch 32).
"""

import argparse
import time

# (input side, input channels, output channels, stride) of the tiny CNN at 112 px.
DEMO_LAYERS = ((112, 3, 32, 2), (56, 32, 64, 2), (28, 64, 128, 2), (14, 128, 128, 1))


def _gradient_functions(backend, stride):
    """(forward, d/dkernel, d/dinput) of `sum(conv(x, k) ** 2)` for `backend`."""
    from keras import ops

    def loss(x, k):
        return ops.sum(ops.conv(x, k, strides=stride, padding="same") ** 2)

    if backend == "jax":
        import jax

        return (jax.jit(loss), jax.jit(jax.grad(loss, argnums=1)), jax.jit(jax.grad(loss, argnums=0)))
    if backend == "tensorflow":
        import tensorflow as tf

        def grad(argnum):
            def fn(x, k):
                with tf.GradientTape() as tape:
                    tape.watch([x, k])
                    value = loss(x, k)
                return tape.gradient(value, [x, k][argnum])

            return tf.function(fn, jit_compile=True)

        return tf.function(loss, jit_compile=True), grad(1), grad(0)
    if backend == "torch":
        import torch

        def grad(argnum):
            def fn(x, k):
                inputs = [x.detach().requires_grad_(), k.detach().requires_grad_()]
                return torch.autograd.grad(loss(*inputs), inputs[argnum])[0]

            return fn

        return loss, grad(1), grad(0)
    raise ValueError(f"conv_gradients: unsupported backend {backend!r}.")


def _milliseconds(fn, args, repeats):
    import keras

    keras.ops.convert_to_numpy(fn(*args))  # compile and warm up
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    keras.ops.convert_to_numpy(out)  # waits for asynchronous backends
    return 1000 * (time.perf_counter() - start) / repeats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    print(f"backend {backend}, batch {args.batch}, ms per call (mean of {args.repeats})")
    print("| layer | forward | d/dkernel | d/dinput |")
    print("|---|---|---|---|")
    rows = []
    for side, cin, cout, stride in DEMO_LAYERS:
        x = keras.ops.convert_to_tensor(rng.random((args.batch, side, side, cin), "float32"))
        k = keras.ops.convert_to_tensor(rng.standard_normal((3, 3, cin, cout), "float32"))
        times = [_milliseconds(fn, (x, k), args.repeats) for fn in _gradient_functions(backend, stride)]
        rows.append(times)
        print(f"| {side}x{side}x{cin} -> {cout}, stride {stride} | "
              + " | ".join(f"{t:.1f}" for t in times) + " |", flush=True)
    total = np.sum(rows, axis=0)
    print("| all four | " + " | ".join(f"{t:.1f}" for t in total) + " |")
    return rows


if __name__ == "__main__":
    main()
