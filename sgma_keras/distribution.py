"""Data-parallel training through each backend's own engine.

- JAX: `keras.distribution.DataParallel` over every device of the launch: the local
  devices, or the global mesh of a multi-process launch (`jax.distributed`).
- TensorFlow: `tf.distribute.MirroredStrategy` over the local devices, or the launch's
  `MultiWorkerMirroredStrategy` (`TF_CONFIG`).
- Several processes (one host or many) are started by `sgma_keras.multi_process`;
  docs/multi_host.md shows the commands.

On CPU, tests split the host into virtual devices (`XLA_FLAGS=
--xla_force_host_platform_device_count=2` for JAX, logical devices for TF) or start
several processes on localhost.
"""

import contextlib

import keras

from sgma_keras import multi_process

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

    Yields the number of replicas the global batch is split over (all processes'
    devices together).
    """
    if mode not in MODES:
        raise ValueError(f"train.distribute must be one of {MODES}, got {mode!r}.")
    processes = multi_process.process_count()
    if mode == "none":
        if processes > 1:
            raise multi_process.MultiProcessError(
                f"{processes} training processes were started "
                f"({multi_process.launch().source}) but train.distribute is 'none'; set "
                "--set train.distribute=data_parallel, or start one process.")
        yield 1
        return
    backend = keras.backend.backend()
    if backend == "jax":
        devices = keras.distribution.list_devices()  # every process's devices
        previous = keras.distribution.distribution()
        # Each process's pipeline reads its own slice of the global batch
        # (`pipeline.make_dataset(shard=...)`): Keras must not shard it again.
        keras.distribution.set_distribution(keras.distribution.DataParallel(
            devices=devices, auto_shard_dataset=processes == 1))
        try:
            yield len(devices)
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        import tensorflow as tf

        strategy = multi_process.tensorflow_strategy()
        if strategy is None:
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


def per_process_datasets(train_ds, val_ds, replicas):
    """The pipelines of a multi-process launch as its engine takes them.

    `train_ds` yields this process's slice of each global batch; `val_ds` (or None)
    the whole validation split, in every process. Every device evaluates every
    validation batch, so validation sums identical copies and gives the numbers of one
    device (any last partial batch fits any device count; the cost: each device
    evaluates the whole validation split). JAX: Keras puts the processes' batches
    together into one global batch and splits it over the devices, so each
    validation batch is repeated once per local device. TensorFlow takes one batch
    per replica: the training slice is split over the process's replicas and each
    replica gets every validation batch.

    Also used by one JAX process over several devices (the validation part).
    """
    import tensorflow as tf

    if keras.backend.backend() == "jax":
        import jax

        local = jax.local_device_count()
        if val_ds is not None and local > 1:
            # Keras splits a process's batch over its devices, which needs a batch
            # size they divide: the last validation batch may not be one.
            val_ds = val_ds.map(lambda x, y: (tf.concat([x] * local, 0),
                                              tf.concat([y] * local, 0)))
        return train_ds, val_ds

    strategy = multi_process.tensorflow_strategy()
    local = strategy.num_replicas_in_sync // multi_process.process_count()
    off = tf.data.Options()
    off.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF

    def per_replica_train(_):
        batch = train_ds.element_spec[0].shape[0]
        ds = train_ds if local == 1 else train_ds.rebatch(batch // local, drop_remainder=True)
        return ds.with_options(off)

    def per_replica_val(_):
        ds = val_ds
        if local > 1:
            ds = ds.flat_map(lambda *e: tf.data.Dataset.from_tensors(e).repeat(local))
        return ds.with_options(off)

    train = strategy.distribute_datasets_from_function(per_replica_train)
    val = None if val_ds is None else strategy.distribute_datasets_from_function(per_replica_val)
    return train, val
