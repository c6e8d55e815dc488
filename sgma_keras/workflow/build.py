"""Config -> objects: the model, its optimizer, the dataset and the input pipelines.

The config's model sections are the arguments of the model's pieces
(`sgma_keras.arguments`); `sgma_keras.model.make_sgma` builds the pieces from them.
"""

import keras

from sgma_keras.data import load_dataset
from sgma_keras.data.loader import semantics_transform
from sgma_keras.data.pipeline import make_dataset
from sgma_keras.distribution import per_process_datasets
from sgma_keras.model import make_sgma
from sgma_keras.multi_process import process_count, process_index
from sgma_keras.optimizers import AlternatingAdam, AlternatingSGD, CoupledAdam, CoupledSGD


def config_value(cfg, key):
    """`cfg["a"]["b"]` for the key "a.b"."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def model_sections(cfg):
    """`make_sgma`'s keyword arguments from a resolved config: the input sizes, the
    `model` keys and sections, the `loss` section and the run's seed."""
    return dict(cfg["model"], image_size=cfg["input"]["image_size"],
                global_size=cfg["input"]["global_size"], loss=dict(cfg["loss"]),
                seed=cfg["seed"])


def build_model(cfg, data, seen_classes):
    """The SGMA model of `cfg` for `data`, trained on `seen_classes`.

    `data.semantics` is the loader's output (stored form); the model keeps the
    loader's transform for class vectors given after training.
    """
    names = getattr(data, "class_names", None)
    return make_sgma(data.semantics, seen_classes,
                     class_names=None if names is None else list(names),
                     semantics_transform=semantics_transform(cfg["data"]),
                     **model_sections(cfg))


def make_optimizer(train_cfg, learning_rate=None, alternate_steps=None):
    """The optimizer of `train.optimizer` at `learning_rate` (default train.learning_rate).

    With `alternate_steps`, one that updates one group of variables at a time
    (`AlternatingSGD` / `AlternatingAdam`; the caller assigns the groups).
    """
    lr = learning_rate or train_cfg["learning_rate"]
    decay = train_cfg["weight_decay"] or None
    sgd = train_cfg["optimizer"] == "sgd"
    # The paper's PyTorch SGD adds wd * w to the gradient (before momentum), about
    # 10x stronger at momentum 0.9 than Keras's decoupled weight decay.
    coupled = bool(decay) and train_cfg["weight_decay_mode"] == "coupled"
    kwargs = {"momentum": train_cfg["momentum"]} if sgd else {}
    if alternate_steps is not None:
        cls = AlternatingSGD if sgd else AlternatingAdam
        decay_kwargs = {"coupled_weight_decay": decay} if coupled else {"weight_decay": decay}
        return cls(lr, alternate_steps=alternate_steps, **kwargs, **decay_kwargs)
    if coupled:
        return (CoupledSGD if sgd else CoupledAdam)(lr, coupled_weight_decay=decay, **kwargs)
    return (keras.optimizers.SGD if sgd else keras.optimizers.Adam)(lr, weight_decay=decay,
                                                                    **kwargs)


def load_data(cfg):
    """The run's dataset (`cfg["data"]`; its split seed is `data.seed`)."""
    return load_dataset(cfg["data"])


def pipeline_augment(augment_cfg):
    """The pipeline's augmentation from the config's three knobs.

    `color_jitter` scales brightness, contrast and saturation together (one
    strength is what users tune). Hue stays fixed: colour is a class attribute
    (CUB's and the built-in dataset's).
    """
    jitter = augment_cfg["color_jitter"]
    return {
        "flip": augment_cfg["flip"],
        "crop_area": (augment_cfg["min_crop_area"], 1.0),
        "brightness": jitter,
        "contrast": 1.5 * jitter,
        "saturation": 1.5 * jitter,
        "hue": 0.0,
    }


def eval_batch_size(cfg):
    return cfg["eval"]["batch_size"] or cfg["input"]["batch_size"]


def make_datasets(cfg, proto, replicas=1):
    """The training and validation pipelines of a run (validation None without one).

    In a multi-process launch each process reads only its slice of every training
    batch (`make_dataset(shard=...)`; `input.batch_size` stays the global batch) and
    the whole validation split (`distribution.per_process_datasets`).
    """
    inp = cfg["input"]
    batch = inp["batch_size"]
    if batch % replicas:
        raise ValueError(
            f"input.batch_size={batch} must be a multiple of the {replicas} devices of "
            "train.distribute='data_parallel'."
        )
    common = dict(
        image_size=inp["image_size"],
        batch_size=batch,
        cache=inp["cache"],
        deterministic=inp["deterministic"],
        seed=cfg["seed"],
        bad_images=cfg["data"]["bad_images"],
    )
    processes = process_count()
    shard = (process_index(), processes) if processes > 1 else None
    train_ds = make_dataset(proto.fit, training=True, augment=pipeline_augment(inp["augment"]),
                            shard=shard, **common)
    val_ds = None if proto.val is None else make_dataset(proto.val, training=False, **common)
    if processes > 1 or (replicas > 1 and keras.backend.backend() == "jax"):
        return per_process_datasets(train_ds, val_ds, replicas)
    return train_ds, val_ds
