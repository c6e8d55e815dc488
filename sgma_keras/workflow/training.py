"""Staged SGMA training (spec "Training"): warm-up, attention initialisation, joint.

`train(cfg)` runs the stages of `STAGES` in order in a run folder (the layout is in
`sgma_keras.workflow.run_folder`), then evaluates the selected model on the test
splits. Each stage is resumable (run the same command again) and skippable
(`train.<stage>.enabled`). What a stage trains and which loss terms it optimises is
the model's own table (`sgma_keras.model.MODEL_STAGES`); model selection uses the
validation split of `protocol.protocol` only, never test classes.
"""

import csv
import dataclasses
import json
import logging
import math
import os
import sys
from typing import Callable

import keras
import numpy as np

from sgma_keras.atomic_io import write_json_atomic
from sgma_keras.data.image_check import handle_bad_images, naming_bad_images
from sgma_keras.data.pipeline import make_dataset
from sgma_keras import multi_process
from sgma_keras.distribution import distribution_scope
from sgma_keras.errors import UserError
from sgma_keras.metrics import GZSLAccuracy, ZSLAccuracy
from sgma_keras.model import MODEL_STAGES
from sgma_keras.workflow.build import build_model, load_data, make_datasets, make_optimizer
from sgma_keras.workflow.checkpoints import (
    BestAndLastCheckpoint,
    SafeBackupAndRestore,
    backup_epoch,
    check_free_space,
    ensure_writable_dir,
    load_weights_quietly,
    monitor_mode,
    save_model_atomic,
    save_weights_atomic,
    trim_epoch_log,
)
from sgma_keras.workflow.evaluation import evaluate_model, split_localisation
from sgma_keras.workflow.selection import CHOICES_FILE, choose_on_validation
from sgma_keras.workflow.interrupts import raise_if_requested
from sgma_keras.workflow.logs import AttentionImages, EpochLine, StepProgress, fit_verbosity
from sgma_keras.workflow.processes import claim_run_folder, this_process_callbacks
from sgma_keras.workflow.protocol import protocol
from sgma_keras.workflow.run_folder import RunFolder

log = logging.getLogger("sgma_keras")


class TrainingDiverged(UserError):
    """The loss became NaN or inf; the last good backup and checkpoints are kept."""


@dataclasses.dataclass(frozen=True)
class Phase:
    """One pass through the stages, on one set of classes.

    Attributes:
        name: "selection" (fit on the `train` classes, choices on the validation
            classes) or "refit" (fit on all seen classes with those choices).
        prefix: put before each stage's name in the run folder (state, logs, backups,
            stage weights), so the two passes never share a file.
        model_file: the phase's resulting model in `checkpoints/`.
    """

    name: str
    prefix: str
    model_file: str


SELECTION = Phase("selection", "", "best.keras")
REFIT = Phase("refit", "refit_", "refit.keras")


@dataclasses.dataclass
class Run:
    """What the stages of one phase of a training run share."""

    cfg: dict
    folder: RunFolder
    data: object  # ZeroShotData
    proto: object  # protocol.Protocol
    model: object  # SGMA
    train_ds: object
    val_ds: object
    verbose: object
    phase: Phase = SELECTION
    epochs: dict = dataclasses.field(default_factory=dict)  # stage name -> epochs
    learning_rates: list | None = None  # per joint epoch (the refit replays selection's)

    def key(self, stage):
        """The stage's name in the run folder."""
        return self.phase.prefix + stage.name


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of training.

    Attributes:
        name: the stage's key under `train` in the config, its log and weight files.
        model_stage: the `SGMA.set_stage` it fits (what trains, which losses), or None
            for a stage that fits nothing.
        selects_model: validation drives the learning-rate plateau schedule, and
            best.keras / last.keras are kept (the stage whose model is the result).
        run: runs the stage on a `Run`.
        applies: whether the model has anything for this stage to do.
    """

    name: str
    model_stage: str | None
    selects_model: bool
    run: Callable
    applies: Callable = lambda model: True
    doc: str = ""

    def epochs(self, cfg):
        """The configured epochs (a refit runs those chosen on validation)."""
        return cfg["train"][self.name].get("epochs", 0)

    def learning_rate(self, cfg):
        return cfg["train"][self.name].get("learning_rate")


def _fit_stage(run, stage):
    """Fits the model in `stage.model_stage` for the stage's epochs."""
    cfg, model, key = run.cfg, run.model, run.key(stage)
    epochs = run.epochs[stage.name]
    model.set_stage(stage.model_stage)
    metrics = _compile(model, cfg, stage.learning_rate(cfg), run.proto.val_classes,
                       _alternate_steps(run, stage))
    monitor = cfg["train"]["monitor"] if run.val_ds is not None else "loss"
    callbacks = _callbacks(run, stage, monitor, monitor_mode(monitor, metrics))
    # Rows of epochs the backup does not hold are written again on resume.
    if multi_process.is_chief():
        trim_epoch_log(run.folder.log_file(key), backup_epoch(run.folder.backup(key)))
    terms = MODEL_STAGES[stage.model_stage]["losses"]
    progress, epoch_line = fit_verbosity(run.verbose)
    if epoch_line:  # after LearningRateLog: it shows the rate the epoch trained with
        callbacks.insert(1, EpochLine(key, epochs, terms))
    progress = StepProgress(key, epochs, terms) if progress else None
    if progress is not None:  # first: the line is erased before anything logs at epoch end
        callbacks.insert(0, progress)
    splits = [run.proto.fit] + ([] if run.proto.val is None else [run.proto.val])
    try:
        with naming_bad_images([p for split in splits for p in split.paths],
                               "training images"):
            history = model.fit(
                run.train_ds,
                validation_data=run.val_ds,
                epochs=epochs,
                callbacks=callbacks,
                steps_per_epoch=cfg["train"]["steps_per_epoch"],
                verbose=0,  # StepProgress and EpochLine report
                shuffle=False,  # the pipeline shuffles; Keras warns it ignores shuffle=True
            )
    finally:
        if progress is not None:  # an error or Ctrl-C mid-epoch: no line left half drawn
            progress.close()
    losses = history.history.get("loss", [])
    if model.stop_training and losses and not math.isfinite(losses[-1]):
        raise TrainingDiverged(_diverged_message(run, stage, losses[-1]))


def _diverged_message(run, stage, loss):
    """What a diverged stage kept (files that exist) and how to go on."""
    backup = run.folder.backup(run.key(stage))
    kept = [path for path in (os.path.join(backup, "latest.weights.h5"),
                              *(run.folder.stage_weights(run.key(s)) for s in STAGES),
                              os.path.join(run.folder.checkpoints, "best.keras"),
                              os.path.join(run.folder.checkpoints, "last.keras"))
            if os.path.exists(path)]
    resume = (f"its last good backup {backup!r} is kept (epoch {backup_epoch(backup) + 1} "
              "resumes from it)" if kept and kept[0].startswith(backup) else
              "no backup of the stage was written yet (it restarts from its start)")
    key = (f"train.{stage.name}.learning_rate"
           if run.cfg["train"][stage.name].get("learning_rate") is not None
           else "train.learning_rate")
    return (
        f"Stage {run.key(stage)!r}: the loss became {loss}; training stopped and {resume}. "
        f"Files kept: {', '.join(kept) if kept else 'none yet'}. Lower {key} (or the loss "
        "weights) and run again with --allow-config-change to resume from the backup, or "
        "start afresh with a new --output-dir."
    )


def _init_stage(run, stage):
    """Channel clustering and the attention layers' pre-fit (spec stage 2)."""
    cfg, model = run.cfg, run.model
    init_cfg = cfg["train"]["init"]
    model.copy_global_to_attention()
    # Every process of a launch computes the features of the same images and runs the
    # same seeded k-means; the chief's groups are then used everywhere, so that a
    # rounding difference between hosts cannot give the replicas other attention maps.
    features = collect_attention_features(model, run.proto.fit, cfg, init_cfg["num_images"])
    groups = model.initialize_attention(features, init_cfg["kmeans_iters"], cfg["seed"],
                                        agree=chief_channel_groups)
    log.info("Channel groups: %s channels per part",
             np.bincount(groups, minlength=model.num_parts).tolist())
    if init_cfg["copy_global_to_parts"]:
        model.copy_global_to_parts()
    _log_localisation_after_init(run)


def chief_channel_groups(groups):
    """The chief's channel groups, on every process of a launch (this process's
    `groups` with one process). A process whose own groups differ says so."""
    if multi_process.process_count() == 1:
        return groups
    every = multi_process.gather_values("channel_groups", np.asarray(groups).tolist())
    chief = np.asarray(every[0], dtype="int64")
    differ = int(np.sum(chief != np.asarray(groups)))
    if differ:
        log.warning("Process %d of %d: its k-means put %d of %d channels in other groups than "
                    "the chief's on the same images (rounding differences between hosts?); "
                    "it uses the chief's groups.", multi_process.process_index(),
                    multi_process.process_count(), differ, len(chief))
    return chief


def _log_localisation_after_init(run):
    """Logs how often the boxes hold an annotated part on the validation classes'
    images (when they have part annotations): the start that joint training's
    localisation is compared with (the test report gives the final one)."""
    if run.phase is not SELECTION or multi_process.process_count() > 1:
        return  # (a chief-only prediction on the launch's model would wait for the others)
    split = run.data.splits.get("val")
    if split is None or split.part_locs is None or not len(split):
        return
    run.model.set_stage("joint")
    loc = split_localisation(run.model, run.data, run.cfg, ("val",))
    if loc is not None:
        rates = ", ".join("n/a" if r is None else f"{100 * r:.1f}%" for r in loc["part_hit_rate"])
        log.info("Part boxes holding an annotated part on validation images after init: %s",
                 rates)


STAGES = (
    Stage("warmup", "warmup", selects_model=False, run=_fit_stage,
          doc="seen-class classification of the global branch"),
    Stage("init", None, selects_model=False, run=_init_stage,
          applies=lambda model: model.box_source == "attention",
          doc="channel clustering and attention pre-fit"),
    Stage("joint", "joint", selects_model=True, run=_fit_stage,
          doc="all losses, end to end"),
)


def _alternate_steps(run, stage):
    """Steps per turn of the `alternate` joint schedule; None for any other stage."""
    joint = run.cfg["train"]["joint"]
    if stage.name != "joint" or joint["schedule"] != "alternate":
        return None
    if joint["alternate_steps"]:
        return joint["alternate_steps"]
    # One epoch: the training pipeline drops its last partial batch.
    return run.cfg["train"]["steps_per_epoch"] or max(
        len(run.proto.fit) // run.cfg["input"]["batch_size"], 1)


def _compile(model, cfg, learning_rate, val_classes, alternate_steps=None):
    """Compiles for a fitting stage; returns the metric objects (validation only).

    With `alternate_steps`, the rest of the model and the attention subnet update in
    turns of that many steps, the rest first (the init stage has just fitted the
    attention maps to the channel groups).
    """
    optimizer = make_optimizer(cfg["train"], learning_rate, alternate_steps)
    if alternate_steps is not None:
        attention = model.attention_subnet_variables()
        ids = {id(v) for v in attention}
        optimizer.assign_groups([[v for v in model.trainable_variables if id(v) not in ids],
                                 attention])
    metrics = []
    if len(val_classes):
        metrics = [
            ZSLAccuracy(model.num_classes, val_classes, name="zsl_acc"),
            GZSLAccuracy(model.num_classes, model.seen_classes, val_classes, name="gzsl"),
        ]
    model.compile(
        optimizer=optimizer,
        metrics=metrics,
        jit_compile=cfg["train"]["jit"],
    )
    return metrics


def _callbacks(run, stage, monitor, mode):
    train_cfg = run.cfg["train"]
    key = run.key(stage)
    # The backup comes last: an epoch's log row and checkpoints are written before the
    # backup that skips the epoch on resume.
    backup = SafeBackupAndRestore(run.folder.backup(key),
                                  save_freq=train_cfg["backup_every_steps"],
                                  delete_checkpoint=False)
    callbacks = [
        LearningRateLog(),  # first: every later callback and the CSV see the epoch's rate
        keras.callbacks.CSVLogger(run.folder.log_file(key), append=True),
        keras.callbacks.TerminateOnNaN(),
    ]
    if train_cfg["tensorboard"]:
        callbacks.append(keras.callbacks.TensorBoard(run.folder.tensorboard(key)))
        if run.proto.val is not None and stage.model_stage != "warmup":
            callbacks.append(AttentionImages(run.folder.tensorboard(key),
                                             _first_images(run.proto.val, run.cfg, 4)))
    if stage.selects_model and run.learning_rates is not None:
        # The refit replays the rates the selection's epochs trained with.
        rates = run.learning_rates
        callbacks.append(keras.callbacks.LearningRateScheduler(
            lambda epoch, lr: rates[epoch] if epoch < len(rates) else lr))
    elif stage.selects_model and run.phase is SELECTION:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                mode=mode,
                factor=train_cfg["lr_factor"],
                patience=train_cfg["lr_patience"],
                min_lr=train_cfg["min_lr"],
                verbose=0,  # the epoch line shows the rate
            )
        )
        callbacks.append(BestAndLastCheckpoint(run.folder.checkpoints, monitor, mode))
    return this_process_callbacks([*callbacks, backup, StopWhenRequested()])


class LearningRateLog(keras.callbacks.Callback):
    """Adds `learning_rate`, the rate the epoch trained with, to the epoch's logs
    (`logs/<stage>.csv` keeps it: a refit replays it)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self._rate


class StopWhenRequested(keras.callbacks.Callback):
    """Re-raises a SIGINT/SIGTERM that a finalizer swallowed (`workflow.interrupts`).

    Last in the list: the batch's backup is written before the run stops. Training
    batches only: a test-batch hook would turn off Keras's asynchronous callback
    dispatch during validation (JAX); a request swallowed there is raised at the next
    training batch or at the stage's end.
    """

    def on_train_batch_end(self, batch, logs=None):
        raise_if_requested()


def _first_images(split, cfg, count):
    """The first `count` images of `split`, as the validation pipeline gives them."""
    ds = make_dataset(split.select(np.arange(min(count, len(split)))),
                      image_size=cfg["input"]["image_size"], batch_size=count,
                      training=False, seed=cfg["seed"], bad_images=cfg["data"]["bad_images"])
    return np.concatenate([keras.ops.convert_to_numpy(images) for images, _ in ds])


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
    with naming_bad_images(split.paths, "training images"):
        features = [keras.ops.convert_to_numpy(model.attention_features(images))
                    for images, _ in ds]
    return np.concatenate(features)


def train(cfg, verbose="auto", allow_config_change=False, stop_after=None):
    """Runs (or resumes) every enabled stage of `cfg`; returns the test results.

    `stop_after`: a stage name ("warmup", "init"): run the selection phase up to and
    including it and return None, no choices, refit or test evaluation (the shared
    start that `sgma_keras.workflow.fork.fork_run` starts variants from).

    The run folder is locked for the whole run (`RunFolder.lock`): a second process
    on the same folder stops at once with `RunFolderInUse`. A folder trained with
    another config stops with `RunConfigChanged` before any work unless
    `allow_config_change` (`accept_run_config`).

    verbose: "auto" (on a terminal a progress line and one line per epoch, one line
    per epoch when stdout is a file or pipe), 0 (silent), 1 (progress line and epoch
    lines) or 2 (epoch lines); see `sgma_keras.workflow.logs`.
    """
    multi_process.initialize()  # the launch the environment asks for, if not yet started
    keras.utils.set_random_seed(cfg["seed"])
    if cfg["train"]["mixed_precision"]:
        keras.mixed_precision.set_global_policy(cfg["train"]["mixed_precision"])
    with claim_run_folder(cfg, allow_config_change) as folder:
        return _train_locked(cfg, folder, verbose, stop_after)


def _probe_cache(cfg):
    """A dataset cache that will be written must be writable, before any work."""
    source = cfg["data"]["source"]
    cache = cfg["data"].get(source, {}).get("cache_dir") if source in ("builtin", "tfds") else None
    if cache:
        cache = os.path.expanduser(cache)
        if not os.path.isdir(cache) or not os.listdir(cache):  # it will be written
            ensure_writable_dir(cache, "dataset cache", f"set data.{source}.cache_dir")


def check_split_images(cfg, data):
    """Every split's images checked before any training (`data.check_images`).

    With `data.bad_images="error"` a bad file in any split (test splits included)
    stops here, named; with "skip" the count is logged per split and the pipelines
    drop the files. `train` and `val` are parts of `trainval`.
    """
    mode, policy = cfg["data"]["check_images"], cfg["data"]["bad_images"]
    for name in ("trainval", "test_seen", "test_unseen"):
        split = data.splits.get(name)
        if split is not None and len(split):
            keep = handle_bad_images(split.paths, policy, mode, f"images of split {name!r}")
            log.info("Split %s: %d of %d images pass the %s check", name, sum(keep),
                     len(keep), mode)


def _train_locked(cfg, folder, verbose, stop_after=None):
    # The chief fills a dataset cache first; the other processes then read it.
    data = multi_process.chief_first("data", lambda: (_probe_cache(cfg), load_data(cfg))[1])
    log.info("Dataset %s: %d classes (%d unseen), read from %s", data.name, data.num_classes,
             len(data.unseen_classes), data.folder or "memory")
    check_split_images(cfg, data)
    train_cfg = cfg["train"]
    proto = protocol(data, train_cfg, cfg["seed"])
    refit = train_cfg["fit_classes"] == "train" and train_cfg["refit"]
    # The choices and the test evaluation run on the chief alone (`chief_value`), out of
    # the distribution; every process gets their values.
    epochs = {stage.name: stage.epochs(cfg) for stage in STAGES}
    with distribution_scope(train_cfg["distribute"]) as replicas:
        _run_phase(cfg, folder, data, proto, SELECTION, replicas, verbose, epochs,
                   stop_after=stop_after)
    if stop_after is not None:
        return None
    choices = None
    if train_cfg["fit_classes"] == "train":
        choices = multi_process.chief_value("choices", lambda: _choices(cfg, folder, data))
    if refit:
        refit_proto = protocol(data, {**train_cfg, "fit_classes": "trainval"}, cfg["seed"])
        with distribution_scope(train_cfg["distribute"]) as replicas:
            _run_phase(cfg, folder, data, refit_proto, REFIT, replicas, verbose,
                       choices["epochs"], choices["learning_rates"])
    return multi_process.chief_value(
        "results", lambda: _final_model_results(cfg, folder, data, proto, refit, choices))


def _final_model_results(cfg, folder, data, proto, refit, choices):
    """Saves final.keras (the scored model with the choices) and evaluates it."""
    scored = os.path.join(folder.checkpoints, (REFIT if refit else SELECTION).model_file)
    model = keras.models.load_model(scored, compile=False)  # no optimizer state to warn about
    apply_choices(model, choices)
    save_model_atomic(model, folder.final)
    log.info("Model %s: fit on %d classes (%s)%s; saved as %s", scored,
             len(model.seen_classes), "all seen classes" if refit or proto.val is None
             else "the seen classes less the validation classes",
             "" if choices is None else f", gamma_cc {model.gamma_cc:.3g} and calibration "
             f"{_short(model.calibration)} chosen on the validation classes", folder.final)
    log.info("Evaluating %s on the test splits", folder.final)
    results = evaluate_model(model, data, cfg, folder.eval, checkpoint=folder.final,
                             choices=choices)
    return results


def _short(value):
    return "none" if value is None else f"{value:.4g}"


def _run_phase(cfg, folder, data, proto, phase, replicas, verbose, epochs,
               learning_rates=None, stop_after=None):
    """Runs (or resumes) the stages of `phase` not yet completed (up to `stop_after`)."""
    done = folder.completed()
    names = [stage.name for stage in STAGES]
    if stop_after is not None and stop_after not in names[:-1]:
        raise UserError(f"stop_after={stop_after!r}: expected one of {names[:-1]}.")
    stages = STAGES if stop_after is None else STAGES[:names.index(stop_after) + 1]
    keys = [phase.prefix + stage.name for stage in stages]
    if all(key in done for key in keys):
        return
    train_cfg = cfg["train"]
    log.info(
        "%s: %d training images of %d classes, %d validation images of %d validation "
        "classes (data %s)", "Selection" if phase is SELECTION else
        "Refit on all seen classes", len(proto.fit), len(proto.seen_classes),
        0 if proto.val is None else len(proto.val), len(proto.val_classes), data.name,
    )
    if phase is not SELECTION:
        # The refit starts from the seed's initial weights, whatever drew random
        # numbers since (the choices' model loading, on the chief alone in a
        # multi-process launch; nothing at all in a resumed run).
        keras.utils.set_random_seed(cfg["seed"])
    train_ds, val_ds = make_datasets(cfg, proto, replicas)
    model = build_model(cfg, data, proto.seen_classes)
    model.build((None, cfg["input"]["image_size"], cfg["input"]["image_size"], 3))
    slots = 2 if train_cfg["optimizer"] != "sgd" else int(train_cfg["momentum"] > 0)
    check_free_space(folder.root, cfg=cfg, model=model, optimizer_slots=slots)
    run = Run(cfg, folder, data, proto, model, train_ds, val_ds, verbose, phase, epochs,
              learning_rates)
    finished = [run.key(s) for s in STAGES if run.key(s) in done and not s.selects_model]
    if finished:
        log.info("Resuming after stage %s", finished[-1])
        load_weights_quietly(model, folder.stage_weights(finished[-1]))
    for stage in stages:
        key = run.key(stage)
        if key in done:
            continue
        if not train_cfg[stage.name]["enabled"] or not stage.applies(model):
            log.info("Stage %s: skipped", key)
        else:
            log.info("Stage %s (%s)%s", key, stage.doc,
                     f": {epochs[stage.name]} epochs" if stage.model_stage else "")
            stage.run(run, stage)
        raise_if_requested()  # a stop swallowed after the last batch ends here
        model.set_stage("joint")
        model_file = os.path.join(folder.checkpoints, phase.model_file)
        if multi_process.is_chief():  # the others of a launch write nothing
            if not stage.selects_model:
                save_weights_atomic(model, folder.stage_weights(key))
            elif phase is not SELECTION or not os.path.exists(model_file):
                save_model_atomic(model, model_file)
            folder.mark_completed(key)
            folder.remove_backup(key)
        done = [*done, key]


def _choices(cfg, folder, data):
    """What the selection chose on the validation classes (`choices.json`): the epoch
    count of each stage, the joint stage's learning rates, gamma_cc and the
    head scales and calibration constant. Computed once, from `best.keras`; read back
    on resume."""
    path = os.path.join(folder.checkpoints, CHOICES_FILE)
    if os.path.exists(path):
        with open(path) as handle:
            return json.load(handle)
    best = keras.models.load_model(folder.best, compile=False)
    chosen = choose_on_validation(best, data, cfg)
    joint_epochs, rates = _selected_joint_epochs(cfg, folder)
    chosen["epochs"] = {"warmup": STAGES[0].epochs(cfg), "init": 0, "joint": joint_epochs}
    chosen["learning_rates"] = rates
    write_json_atomic(path, chosen)
    log.info("Chosen on the validation classes: joint epochs %d of %d, gamma_cc %s (validation "
             "ZSL %.1f%%), calibration %s", joint_epochs, STAGES[2].epochs(cfg),
             f"{chosen['gamma_cc']['value']:.3g}", 100 * chosen["gamma_cc"]["val_zsl"],
             _short(chosen["calibration"]["gamma"]))
    return chosen


def _selected_joint_epochs(cfg, folder):
    """(epochs up to the best validation epoch, the rates they trained with)."""
    configured = STAGES[2].epochs(cfg)
    record = os.path.join(folder.checkpoints, "best.json")
    epochs = configured
    if os.path.exists(record):
        with open(record) as handle:
            epochs = int(json.load(handle)["epoch"])
    rates = []
    log_file = folder.log_file("joint")
    if os.path.exists(log_file):
        with open(log_file, newline="") as handle:
            rows = list(csv.DictReader(handle))
        rates = [float(row["learning_rate"]) for row in rows[:epochs]
                 if row.get("learning_rate") not in (None, "")]
    return epochs, rates if len(rates) == epochs else None


def apply_choices(model, choices):
    """Sets what was chosen on validation on `model`: head scales, gamma_cc and the
    calibration constant; GZSL counts as seen the classes the model was trained on."""
    if choices is not None:
        model.gamma_cc = choices["gamma_cc"]["value"]
        model.head_scales = choices["head_scales"]
        model.calibration = choices["calibration"]["gamma"]
    model.calibration_classes = None  # the training classes


def main_logging():
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s")
