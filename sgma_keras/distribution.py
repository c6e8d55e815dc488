"""Data-parallel training through each backend's own engine.

- JAX: `keras.distribution.DataParallel` over all local devices.
- TensorFlow: `tf.distribute.MirroredStrategy` over all local devices.
- Multi-host: start one process per host with the backend's standard setup
  (`jax.distributed.initialize()` / `TF_CONFIG` with
  `MultiWorkerMirroredStrategy`), as the README describes.

On CPU, tests split the host into virtual devices (`XLA_FLAGS=
--xla_force_host_platform_device_count=2` for JAX, logical devices for TF).
"""

import contextlib

import keras

MODES = ("none", "data_parallel")


def split_tensorflow_cpu(count):
    """Splits the TF host CPU into `count` logical devices (before TF starts)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


@contextlib.contextmanager
def distribution_scope(mode="none"):
    """Context in which to build, compile and fit the model.

    Yields the number of replicas the global batch is split over.
    """
    if mode not in MODES:
        raise ValueError(f"train.distribute must be one of {MODES}, got {mode!r}.")
    if mode == "none":
        yield 1
        return
    backend = keras.backend.backend()
    if backend == "jax":
        devices = keras.distribution.list_devices()
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield len(devices)
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        strategy = tf.distribute.MirroredStrategy(devices)
        with strategy.scope():
            yield strategy.num_replicas_in_sync
    else:
        raise ValueError(
            "train.distribute='data_parallel' runs on the JAX and TensorFlow backends; "
            f"the {backend} backend trains on one device (set KERAS_BACKEND=jax or tensorflow)."
        )
