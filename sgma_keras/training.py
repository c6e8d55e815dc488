"""Staged SGMA training (spec "Training"): warm-up, attention initialisation, joint.

`train(cfg)` runs the stages in order in a run folder:

    <output_dir>/
      config.json, versions.json   the resolved config, package/backend versions
      state.json                   which stages are complete (resume point)
      checkpoints/                 warmup.weights.h5, init.weights.h5,
                                   best.keras (best validation ZSL), last.keras, best.json
      backup/<stage>/              BackupAndRestore state of the stage in progress
      logs/<stage>.csv             per-epoch logs; tensorboard/ for TensorBoard
      eval/                        test report of best.keras (results.json, per-class CSV,
                                   seen-unseen curve, attention figures; see evaluate.py)

Each stage is resumable (run the same command again) and skippable
(`train.<stage>.enabled`). Model selection uses the seen-class validation
split only: with `train.fit_classes = "train"`, the model trains on the
`train` classes, the held-out `val` classes play the unseen classes, and a
share of each training class's images (`val_seen_fraction`) gives the
validation seen accuracy. Test classes are never looked at before the end.
"""

import dataclasses
import json
import logging
import math
import os
import sys
import warnings

import keras
import numpy as np

from sgma_keras import checkpointing
from sgma_keras.config import save_resolved_config
from sgma_keras.data import load_dataset
from sgma_keras.data.pipeline import make_dataset
from sgma_keras.data.zsl_data import ImageSplit, split_images_per_class
from sgma_keras.distribution import distribution_scope
from sgma_keras.metrics import GZSLAccuracy, ZSLAccuracy
from sgma_keras.model import SGMA

log = logging.getLogger("sgma_keras")
STAGES = ("warmup", "init", "joint")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoints are kept."""


@dataclasses.dataclass
class Protocol:
    """The images and classes each part of training sees."""

    fit: ImageSplit
    val: ImageSplit | None
    seen_classes: np.ndarray  # classes the model is trained on
    val_classes: np.ndarray  # classes playing "unseen" during validation


def protocol(data, train_cfg, seed=0):
    """Fit/validation splits for `train.fit_classes` (never touching test data)."""
    if train_cfg["fit_classes"] == "trainval":
        return Protocol(data.splits["trainval"], None, np.asarray(data.seen_classes), np.array([], "int64"))
    train, val_unseen = data.splits["train"], data.splits["val"]
    held = split_images_per_class(train.labels, train_cfg["val_seen_fraction"], seed)
    fit = train.select(~held)
    val_seen = train.select(held)
    val = ImageSplit(
        paths=val_seen.paths + val_unseen.paths,
        labels=np.concatenate([val_seen.labels, val_unseen.labels]),
    )
    return Protocol(fit, val, np.unique(fit.labels), np.unique(val_unseen.labels))


def build_model(cfg, data, seen_classes):
    """The SGMA model of `cfg["model"]` for `data`, trained on `seen_classes`."""
    m, loss = cfg["model"], cfg["loss"]
    return SGMA(
        semantics=data.semantics,
        seen_classes=seen_classes,
        image_size=cfg["input"]["image_size"],
        local_size=cfg["input"]["local_size"],
        global_size=cfg["input"]["global_size"],
        backbone=m["backbone"],
        weights=m["weights"],
        feature_layer=m["feature_layer"],
        tiny_width=m["tiny_width"],
        num_parts=m["num_parts"],
        part_mode=m["part_mode"],
        share_part_backbones=m["share_part_backbones"],
        separate_attention_backbone=m["separate_attention_backbone"],
        attention_reduction=m["attention_reduction"],
        cnet_hidden=m["cnet_hidden"],
        min_side=m["min_side"],
        max_side=m["max_side"],
        boxcar_steepness=m["boxcar_steepness"],
        peak_temperature=m["peak_temperature"],
        embedding_normalize=m["embedding"]["normalize"],
        embedding_scale=m["embedding"]["scale"],
        embedding_learn_scale=m["embedding"]["learn_scale"],
        center_enabled=m["center"]["enabled"],
        latent_dim=m["center"]["latent_dim"],
        ridge_lambda=m["center"]["ridge_lambda"],
        gamma_cc=m["gamma_cc"],
        cpt_weight=loss["cpt_weight"],
        div_weight=loss["div_weight"],
        cls_weight=loss["cls_weight"],
        cct_weight=loss["cct_weight"],
        div_margin=loss["div_margin"],
        cct_margin=loss["cct_margin"],
        cpt_sigma=loss["cpt_sigma"],
        div_reduction=loss["div_reduction"],
        seed=cfg["seed"],
    )


def make_optimizer(train_cfg, learning_rate=None):
    lr = learning_rate or train_cfg["learning_rate"]
    if train_cfg["optimizer"] == "sgd":
        return keras.optimizers.SGD(
            lr, momentum=train_cfg["momentum"], weight_decay=train_cfg["weight_decay"] or None
        )
    return keras.optimizers.Adam(lr, weight_decay=train_cfg["weight_decay"] or None)


class RunFolder:
    """Paths of a run and its stage state (see the module docstring)."""

    def __init__(self, root):
        self.root = root
        self.checkpoints = os.path.join(root, "checkpoints")
        os.makedirs(self.checkpoints, exist_ok=True)
        os.makedirs(os.path.join(root, "logs"), exist_ok=True)
        self.state_path = os.path.join(root, "state.json")

    def completed(self):
        if not os.path.exists(self.state_path):
            return []
        with open(self.state_path) as handle:
            return json.load(handle).get("completed", [])

    def mark_completed(self, stage):
        done = self.completed()
        if stage not in done:
            checkpointing.write_json_atomic(self.state_path, {"completed": done + [stage]})

    def stage_weights(self, stage):
        return os.path.join(self.checkpoints, f"{stage}.weights.h5")

    def backup(self, stage):
        return os.path.join(self.root, "backup", stage)


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


def _datasets(cfg, proto, replicas):
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
    train_ds = make_dataset(proto.fit, training=True, augment=pipeline_augment(inp["augment"]), **common)
    val_ds = None if proto.val is None else make_dataset(proto.val, training=False, **common)
    return train_ds, val_ds


def _callbacks(cfg, run, stage, monitor=None, checkpoints=False):
    backup_steps = cfg["train"]["backup_every_steps"]
    callbacks = [
        checkpointing.SafeBackupAndRestore(run.backup(stage), save_freq=backup_steps),
        keras.callbacks.CSVLogger(os.path.join(run.root, "logs", f"{stage}.csv"), append=True),
        keras.callbacks.TerminateOnNaN(),
    ]
    if cfg["train"]["tensorboard"]:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run.root, "tensorboard", stage)))
    if monitor is not None:
        mode = "min" if "loss" in monitor else "max"
        train_cfg = cfg["train"]
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                mode=mode,
                factor=train_cfg["lr_factor"],
                patience=train_cfg["lr_patience"],
                min_lr=train_cfg["min_lr"],
                verbose=1,
            )
        )
    if checkpoints:
        callbacks.append(checkpointing.BestAndLastCheckpoint(run.checkpoints, monitor or "loss",
                                                             "min" if "loss" in (monitor or "loss") else "max"))
    return callbacks


def _fit(model, run, stage, train_ds, val_ds, epochs, callbacks, steps_per_epoch, verbose):
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        callbacks=callbacks,
        steps_per_epoch=steps_per_epoch,
        verbose=verbose,
    )
    losses = history.history.get("loss", [])
    if model.stop_training and losses and not math.isfinite(losses[-1]):
        raise TrainingDiverged(
            f"Stage {stage!r}: the loss became {losses[-1]}; training stopped. The last "
            f"good checkpoints are in {run.checkpoints}. Lower train.learning_rate or "
            "the loss weights and run again."
        )
    return history


def _compile(model, cfg, learning_rate, val_classes, jit):
    metrics = []
    if len(val_classes):
        metrics = [
            ZSLAccuracy(model.num_classes, val_classes, name="zsl_acc"),
            GZSLAccuracy(model.num_classes, model.seen_classes, val_classes, name="gzsl"),
        ]
    model.compile(
        optimizer=make_optimizer(cfg["train"], learning_rate),
        metrics=metrics,
        jit_compile=jit,
    )


def _set_trainable_for_stage(model, stage):
    """Warm-up trains only the global backbone and the embedding."""
    warm = stage == "warmup"
    for layer in [model.multi_attention, model.cropper, model.center_head, model.attention_backbone]:
        if layer is not None:
            layer.trainable = not warm
    for backbone in model.part_backbones:
        backbone.trainable = not warm


def load_weights_quietly(model, path):
    """Loads model weights saved at a stage end (their optimizer state is not reused)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)


def collect_attention_features(model, split, cfg, num_images):
    """Attention feature maps of the first `num_images` training images."""
    inp = cfg["input"]
    ds = make_dataset(
        split.select(np.arange(min(num_images, len(split)))),
        image_size=inp["image_size"],
        batch_size=inp["batch_size"],
        training=False,
        seed=cfg["seed"],
        bad_images=cfg["data"]["bad_images"],
    )
    features = [keras.ops.convert_to_numpy(model.attention_features(images)) for images, _ in ds]
    return np.concatenate(features)


def train(cfg, verbose="auto"):
    """Runs (or resumes) every enabled stage of `cfg`; returns the test results."""
    keras.utils.set_random_seed(cfg["seed"])
    if cfg["train"]["mixed_precision"]:
        keras.mixed_precision.set_global_policy(cfg["train"]["mixed_precision"])
    run = RunFolder(cfg["output_dir"])
    save_resolved_config(cfg, run.root)
    data = load_dataset(cfg["data"])
    proto = protocol(data, cfg["train"], cfg["seed"])
    log.info(
        "Data %s: %d training images of %d classes, %d validation images, %d validation classes",
        data.name, len(proto.fit), len(proto.seen_classes),
        0 if proto.val is None else len(proto.val), len(proto.val_classes),
    )
    train_cfg = cfg["train"]
    jit = train_cfg["jit"]
    monitor = train_cfg["monitor"] if proto.val is not None else "loss"

    with distribution_scope(train_cfg["distribute"]) as replicas:
        train_ds, val_ds = _datasets(cfg, proto, replicas)
        model = build_model(cfg, data, proto.seen_classes)
        model.build((None, cfg["input"]["image_size"], cfg["input"]["image_size"], 3))
        done = run.completed()
        resume_from = [s for s in STAGES[:-1] if s in done]
        if resume_from and "joint" not in done:
            log.info("Resuming after stage %s", resume_from[-1])
            load_weights_quietly(model, run.stage_weights(resume_from[-1]))
        for stage in STAGES:
            if stage in done:
                continue
            stage_cfg = train_cfg[stage]
            if not stage_cfg["enabled"] or (stage == "init" and model.part_mode != "attention"):
                log.info("Stage %s: skipped", stage)
            elif stage == "warmup":
                log.info("Stage warmup: %d epochs of seen-class classification", stage_cfg["epochs"])
                model.set_stage("warmup")
                _set_trainable_for_stage(model, "warmup")
                _compile(model, cfg, stage_cfg["learning_rate"], proto.val_classes, jit)
                _fit(model, run, stage, train_ds, val_ds, stage_cfg["epochs"],
                     _callbacks(cfg, run, stage), train_cfg["steps_per_epoch"], verbose)
            elif stage == "init":
                log.info("Stage init: channel clustering on %d images", stage_cfg["num_images"])
                model.copy_global_to_attention()
                features = collect_attention_features(model, proto.fit, cfg, stage_cfg["num_images"])
                groups = model.initialize_attention(features, stage_cfg["kmeans_iters"], cfg["seed"])
                log.info("Channel groups: %s channels per part", np.bincount(groups, minlength=model.num_parts).tolist())
                if stage_cfg["copy_global_to_parts"]:
                    model.copy_global_to_parts()
            else:
                log.info("Stage joint: %d epochs with all losses", stage_cfg["epochs"])
                model.set_stage("joint")
                _set_trainable_for_stage(model, "joint")
                _compile(model, cfg, None, proto.val_classes, jit)
                _fit(model, run, stage, train_ds, val_ds, stage_cfg["epochs"],
                     _callbacks(cfg, run, stage, monitor, checkpoints=True),
                     train_cfg["steps_per_epoch"], verbose)
            model.set_stage("joint")
            if stage != "joint":
                checkpointing.save_weights_atomic(model, run.stage_weights(stage))
            elif not os.path.exists(os.path.join(run.checkpoints, "best.keras")):
                checkpointing.save_model_atomic(model, os.path.join(run.checkpoints, "best.keras"))
            run.mark_completed(stage)
            done = run.completed()

    # Test evaluation of the model selected on validation (evaluate.py's full report).
    from sgma_keras.evaluation import evaluate_model

    best_path = os.path.join(run.checkpoints, "best.keras")
    best = keras.models.load_model(best_path)
    log.info("Evaluating %s on the test splits", best_path)
    return evaluate_model(best, data, cfg, os.path.join(run.root, "eval"), checkpoint=best_path)


def main_logging():
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s")
