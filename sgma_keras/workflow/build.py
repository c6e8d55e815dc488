"""Config -> objects: the model, its optimizer, the dataset and the input pipelines.

`MODEL_ARGS` is the one table from config keys to `SGMA` constructor arguments; the
model passes its arguments on to its layers through `sgma_keras.model.LAYER_ARGS`.
`tests/test_build.py` checks that every constructor argument of `SGMA` and of its
layers is reachable from a config key this way, or is listed as deliberately internal.
"""

import keras

from sgma_keras.data import load_dataset
from sgma_keras.data.pipeline import make_dataset
from sgma_keras.model import SGMA
from sgma_keras.optimizers import CoupledAdam, CoupledSGD

# config key -> SGMA argument. To add a model option: one Field in config.SCHEMA, one
# row here, one argument of SGMA (and a row of model.LAYER_ARGS if a layer takes it).
MODEL_ARGS = {
    "seed": "seed",
    "input.image_size": "image_size",
    "input.local_size": "local_size",
    "input.global_size": "global_size",
    "model.backbone": "backbone",
    "model.weights": "weights",
    "model.feature_layer": "feature_layer",
    "model.tiny_width": "tiny_width",
    "model.num_parts": "num_parts",
    "model.part_mode": "part_mode",
    "model.share_part_backbones": "share_part_backbones",
    "model.separate_attention_backbone": "separate_attention_backbone",
    "model.attention_reduction": "attention_reduction",
    "model.attention_normalize": "attention_normalize",
    "model.cnet_hidden": "cnet_hidden",
    "model.min_side": "min_side",
    "model.max_side": "max_side",
    "model.boxcar_steepness": "boxcar_steepness",
    "model.peak_temperature": "peak_temperature",
    "model.boxcar_mask_at": "boxcar_mask_at",
    "model.box_anchor": "box_anchor",
    "model.map_losses_reach_backbone": "map_losses_reach_backbone",
    "model.boxcar_steepness_unit": "boxcar_steepness_unit",
    "model.peak_gradient_temperature": "peak_gradient_temperature",
    "model.embedding.normalize": "embedding_normalize",
    "model.embedding.scale": "embedding_scale",
    "model.embedding.learn_scale": "embedding_learn_scale",
    "model.center.enabled": "center_enabled",
    "model.center.latent_dim": "latent_dim",
    "model.center.ridge_lambda": "ridge_lambda",
    "model.gamma_cc": "gamma_cc",
    "loss.cpt_weight": "cpt_weight",
    "loss.div_weight": "div_weight",
    "loss.cls_weight": "cls_weight",
    "loss.cct_weight": "cct_weight",
    "loss.div_margin": "div_margin",
    "loss.cct_margin": "cct_margin",
    "loss.cpt_sigma": "cpt_sigma",
    "loss.div_reduction": "div_reduction",
}

# SGMA arguments that come from the data, not from a config key.
DATA_ARGS = {
    "semantics": "the dataset's class semantic matrix",
    "seen_classes": "the training classes of the run's protocol",
    "seen_semantics": "set only when a saved model whose classes were swapped is reloaded",
    "class_names": "the dataset's class names (saved with the model)",
    "calibration": "chosen on the validation split after training, stored in best.keras",
    "calibration_classes": "the dataset's seen classes, stored with the calibration",
}


def config_value(cfg, key):
    """`cfg["a"]["b"]` for the key "a.b"."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def model_kwargs(cfg):
    """The `SGMA` keyword arguments the config sets (`MODEL_ARGS`)."""
    return {arg: config_value(cfg, key) for key, arg in MODEL_ARGS.items()}


def build_model(cfg, data, seen_classes):
    """The SGMA model of `cfg` for `data`, trained on `seen_classes`."""
    names = getattr(data, "class_names", None)
    return SGMA(semantics=data.semantics, seen_classes=seen_classes,
                class_names=None if names is None else list(names), **model_kwargs(cfg))


def make_optimizer(train_cfg, learning_rate=None):
    """The optimizer of `train.optimizer` at `learning_rate` (default train.learning_rate)."""
    lr = learning_rate or train_cfg["learning_rate"]
    decay = train_cfg["weight_decay"] or None
    if decay and train_cfg["weight_decay_mode"] == "coupled":
        # The paper's PyTorch SGD adds wd * w to the gradient (before momentum), about
        # 10x stronger at momentum 0.9 than Keras's decoupled weight decay.
        if train_cfg["optimizer"] == "sgd":
            return CoupledSGD(lr, momentum=train_cfg["momentum"], coupled_weight_decay=decay)
        return CoupledAdam(lr, coupled_weight_decay=decay)
    if train_cfg["optimizer"] == "sgd":
        return keras.optimizers.SGD(lr, momentum=train_cfg["momentum"], weight_decay=decay)
    return keras.optimizers.Adam(lr, weight_decay=decay)


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
    """The training and validation pipelines of a run (validation None without one)."""
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
    train_ds = make_dataset(proto.fit, training=True, augment=pipeline_augment(inp["augment"]),
                            **common)
    val_ds = None if proto.val is None else make_dataset(proto.val, training=False, **common)
    return train_ds, val_ds
