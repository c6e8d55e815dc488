"""The SGMA model: global branch, K attention-guided part branches, two heads.

`SGMA` is composed of built pieces (backbones, `MultiAttention`, `PartCropper`,
`SemanticEmbedding`, `ClassCenterHead`), as a KerasHub task takes its backbone; it
saves them as nested Keras objects. `make_sgma` builds those pieces from the config's
model sections (`sgma_keras.arguments`), whose keys are the pieces' arguments.
"""

import copy
import json
import logging
import types
import threading

import keras
import numpy as np
from keras import ops

from sgma_keras import losses
from sgma_keras import metrics  # noqa: F401  (registers the metrics a compiled SGMA saves)
from sgma_keras import semantics as semantics_lib
from sgma_keras import upgrade
from sgma_keras.arguments import BACKBONE, LOSS, MODEL, crop_fits_image
from sgma_keras.backbones import make_backbone
from sgma_keras.layers import ClassCenterHead, MultiAttention, PartCropper, SemanticEmbedding
from sgma_keras.layers.class_center import match_rows
from sgma_keras.layers.semantic_embedding import as_semantic_matrix

log = logging.getLogger("sgma_keras")

LOSS_TERMS = ("loss_cpt", "loss_div", "loss_cls", "loss_cct")

# What each training stage of the model trains (attribute names of its sub-networks;
# None: all of them) and which loss terms it optimises. The workflow's stage table
# (`sgma_keras.workflow.training.STAGES`) runs these with `set_stage`.
MODEL_STAGES = {
    "warmup": {"trains": ("global_backbone", "embedding"), "losses": ("loss_cls",)},
    "joint": {"trains": None, "losses": LOSS_TERMS},
}

# The built pieces an SGMA holds (constructor arguments and attributes alike).
PIECES = ("global_backbone", "attention_backbone", "multi_attention", "cropper",
          "embedding", "center_head")

_EMPTY = types.MappingProxyType({})


@keras.saving.register_keras_serializable(package="sgma_keras")
class SGMA(keras.Model):
    """Semantic-Guided Multi-Attention localization for zero-shot learning.

    Input: a batch of RGB images, pixels in [0, 255], `image_size` square.
    Labels (for `fit`/`evaluate`): global class ids, rows of the embedding's
    `semantics`; training labels must be seen classes.

    Output: a dict with
    - `scores` (B, num_classes): the fused score `s_y / a + gamma_cc <u, C_y> / b`
      (`fuse_scores`, `(a, b) = head_scales`; the embedding scores alone in the
      warm-up stage or without the class-center branch);
    - `embedding_scores`, `center_scores` (B, num_classes): the two heads;
    - `latent` (B, latent_dim): normalised class-center features `u_hat`;
    - `attention_maps` (B, h, w, K) (boxes from attention);
    - `boxes` (B, K, 3): part squares `(t_x, t_y, t_s)` relative to the image
      (with parts).

    `fit()` trains with `L = sum_i [L_cpt + lambda L_div] + alpha L_cls +
    beta L_cct` computed in `compute_loss`; the logs carry each term
    (`loss_cpt`, `loss_div`, `loss_cls`, `loss_cct`, unweighted).

    `make_sgma` builds one from config sections; the pieces are:

    Args:
        global_backbone: the CNN of the global branch (`make_backbone`, at
            `global_size`), images in [0, 255] -> (B, h, w, C) features.
        embedding: the `SemanticEmbedding` head; its `semantics` are the class set
            scored (stored form, see `semantics_transform`).
        seen_classes: ids of the training classes (rows of the semantics).
        image_size: side of the input image (the parts are sampled from it).
        global_size: side of the global branch's view of the image (default
            `image_size`; must divide it): the image average-pooled by
            `image_size // global_size`.
        part_backbones: one CNN per part (or one shared by all), at the cropper's
            `output_size`; empty without parts.
        attention_backbone: a CNN of its own for the attention maps, or None (the
            global branch's).
        multi_attention: the `MultiAttention` layer (boxes from attention), or None.
        cropper: the `PartCropper`, or None (the global branch alone).
        center_head: the `ClassCenterHead`, or None (no class-center branch).
        map_losses_reach_backbone: False stops the gradient of the feature map
            into `multi_attention`: the map losses (and the boxes' path) train the
            attention subnet only, not the backbone under it.
        loss: the loss settings (`sgma_keras.arguments.LOSS`; missing: defaults).
        gamma_cc: weight of the class-center head in the fused score.
        head_scales: (embedding, class-center) divisors of each head in the fused
            score; (1, 1) is the paper's sum. Training sets them to each head's
            spread on the validation images, with `gamma_cc`.
        seen_semantics: semantics of the training classes, in centre order;
            default `semantics[seen_classes]`.
        class_names: one name per class (default `class_000`, ...).
        calibration: the calibrated-stacking constant chosen on validation, or None.
        calibration_classes: ids of the classes GZSL counts as seen (default: the
            training classes).
        semantics_transform: what the data pipeline did to the raw class vectors
            (`sgma_keras.semantics.TRANSFORMS`); vectors given later
            (`set_class_semantics`, `add_classes`) are raw and get it.
        backbone: the `make_backbone` arguments the backbones were built with
            (`model.backbone`), kept for reports and config checks.
    """

    def __init__(
        self,
        global_backbone,
        embedding,
        seen_classes=None,
        *,
        image_size=448,
        global_size=None,
        part_backbones=(),
        attention_backbone=None,
        multi_attention=None,
        cropper=None,
        center_head=None,
        map_losses_reach_backbone=False,
        loss=None,
        gamma_cc=1.0,
        head_scales=(1.0, 1.0),
        seen_semantics=None,
        class_names=None,
        calibration=None,
        calibration_classes=None,
        semantics_transform=None,
        backbone=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        settings = MODEL.check(dict(image_size=image_size, global_size=global_size,
                                    map_losses_reach_backbone=map_losses_reach_backbone))
        self.image_size = settings["image_size"]
        self.global_size = settings["global_size"] or self.image_size
        self.map_losses_reach_backbone = settings["map_losses_reach_backbone"]
        self.loss_settings = {**LOSS.defaults(), **LOSS.check(dict(loss or {}))}
        self.backbone = None if backbone is None else dict(backbone)
        self.global_backbone = global_backbone
        self.attention_backbone = attention_backbone
        self.multi_attention = multi_attention
        self.cropper = cropper
        self.part_backbones = list(part_backbones)
        self.embedding = embedding
        self.center_head = center_head
        self._check_pieces()
        semantics = embedding.semantics
        seen = None if seen_classes is None else np.asarray(seen_classes, dtype="int64")
        _check_seen(semantics, seen, seen_semantics)
        if seen_semantics is None:
            seen_semantics = (center_head.seen_semantics if center_head is not None
                              else semantics[seen])
        self.semantics_transform = _check_stored_form(semantics, seen_semantics,
                                                      semantics_transform)
        self.seen_classes = seen
        # Kept on the model too: without the class-center branch, it is what
        # lets `set_class_semantics` and reloading work after a swap that drops
        # training classes (`seen_classes` is then None).
        self.seen_semantics = as_semantic_matrix(seen_semantics, semantics.shape[1],
                                                 owner="SGMA (seen_semantics)")
        # "warmup" trains the global branch alone (stage 1); "joint" is the model.
        self.stage = "joint"
        self.gamma_cc = gamma_cc
        self.class_names = tuple(check_class_names(class_names, len(semantics), "SGMA"))
        self.calibration = None if calibration is None else float(calibration)
        self.head_scales = head_scales
        self._calibration_classes = _class_ids(calibration_classes, len(semantics))
        self.loss_trackers = [keras.metrics.Mean(name=name) for name in LOSS_TERMS]

    def _check_pieces(self):
        """The pieces fit together (one part count, a backbone per part or one)."""
        cropper, attention = self.cropper, self.multi_attention
        problems = []
        if cropper is not None:
            problem = crop_fits_image(cropper.output_size, self.image_size)
            if problem:
                problems.append(f"cropper {problem}")
            if len(self.part_backbones) not in (1, cropper.num_parts):
                problems.append(f"{len(self.part_backbones)} part backbones for "
                                f"{cropper.num_parts} parts; expected 1 or {cropper.num_parts}")
            if (cropper.box_source == "attention") != (attention is not None):
                problems.append(f"the cropper's box_source is {cropper.box_source!r}: "
                                "expected multi_attention exactly with 'attention'")
            elif attention is not None and attention.num_parts != cropper.num_parts:
                problems.append(f"multi_attention makes {attention.num_parts} maps for "
                                f"{cropper.num_parts} parts")
        elif attention is not None or self.part_backbones:
            problems.append("multi_attention or part backbones without a cropper")
        if problems:
            raise ValueError("SGMA: " + "; ".join(problems) + ".")

    # --- structure ---

    @property
    def gamma_cc(self):
        """Weight of the class-center head in the fused score (`fuse_scores`)."""
        return self._gamma_cc

    @gamma_cc.setter
    def gamma_cc(self, value):
        value = float(value)
        if not value >= 0:
            raise ValueError(f"SGMA: `gamma_cc` must be a number >= 0, got {value}.")
        self._gamma_cc = value
        self.reset_compiled_functions()

    @property
    def head_scales(self):
        """(embedding, class-center) divisors of the heads in the fused score."""
        return self._head_scales

    @head_scales.setter
    def head_scales(self, value):
        scales = tuple(float(v) for v in value)
        if len(scales) != 2 or not all(v > 0 and np.isfinite(v) for v in scales):
            raise ValueError(
                f"SGMA: `head_scales` must be two finite numbers > 0, got {list(value)}.")
        self._head_scales = scales
        self.reset_compiled_functions()

    @property
    def num_parts(self):
        """K, the number of part branches (0: the global branch alone)."""
        return 0 if self.cropper is None else self.cropper.num_parts

    @property
    def box_source(self):
        """Where the part boxes come from: "attention", "random", or None (no parts)."""
        return None if self.cropper is None else self.cropper.box_source

    @property
    def num_branches(self):
        return 1 + self.num_parts

    @property
    def num_classes(self):
        return self.embedding.num_classes

    @property
    def semantics(self):
        return self.embedding.semantics

    def part_backbone(self, part):
        return self.part_backbones[0 if len(self.part_backbones) == 1 else part]

    def build(self, input_shape):
        feature_shape = self.global_backbone.output.shape
        channels = feature_shape[-1]
        if self.multi_attention is not None:
            attention_source = self.attention_backbone or self.global_backbone
            map_features = attention_source.output.shape
            self.multi_attention.build(map_features)
            maps_shape = tuple(map_features[:3]) + (self.num_parts,)
        else:
            maps_shape = (None, 1, 1, self.num_parts)
        if self.cropper is not None:
            self.cropper.build([(None, self.image_size, self.image_size, 3), maps_shape])
        self.embedding.build((None, self.num_branches, channels))
        if self.center_head is not None:
            self.center_head.build((None, self.num_branches * channels))
        self.built = True

    # --- forward ---

    def global_view(self, images):
        """The image the global branch and the attention maps see (see `global_size`)."""
        factor = self.image_size // self.global_size
        if factor == 1:
            return images
        # Average pooling by an integer factor: an exact box-filter resize,
        # identical on every backend.
        return ops.average_pool(images, factor, factor, padding="valid")

    def call(self, images, training=False):
        images = ops.cast(images, self.compute_dtype)
        view = self.global_view(images)
        features = self.global_backbone(view, training=training)
        thetas = [ops.mean(features, axis=(1, 2))]
        outputs = {}
        if self.stage != "warmup" and self.cropper is not None:
            if self.multi_attention is not None:
                map_features = (
                    features
                    if self.attention_backbone is None
                    else self.attention_backbone(view, training=training)
                )
                if not self.map_losses_reach_backbone:
                    map_features = ops.stop_gradient(map_features)
                maps = self.multi_attention(map_features)
                outputs["attention_maps"] = maps
                parts, boxes = self.cropper([images, maps])
            else:
                parts, boxes = self.cropper([images, ops.zeros((1, 1, 1, self.num_parts))])
            outputs["boxes"] = boxes
            for part in range(self.num_parts):
                part_features = self.part_backbone(part)(parts[:, part], training=training)
                thetas.append(ops.mean(part_features, axis=(1, 2)))
        else:
            thetas += [ops.zeros_like(thetas[0])] * (self.num_branches - 1)
        theta = ops.stack(thetas, axis=1)  # (B, branches, C)
        embedding_scores = self.embedding(theta)
        outputs["embedding_scores"] = embedding_scores
        scores = embedding_scores
        if self.center_head is not None and self.stage != "warmup":
            latent, center_scores = self.center_head(ops.reshape(theta, (ops.shape(theta)[0], -1)))
            outputs["latent"] = latent
            outputs["center_scores"] = center_scores
            scores = fuse_scores(embedding_scores, center_scores, self.gamma_cc,
                                 self.head_scales)
        outputs["scores"] = scores
        return outputs

    def crop_parts(self, images):
        """Zoomed part images (B, K, local, local, 3) and boxes, for inspection."""
        outputs = self(images)
        return self.cropper.crop(images, outputs["boxes"]), outputs["boxes"]

    # --- training ---

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.seen_classes is None:
            raise ValueError(
                "SGMA: the class semantics were replaced by a matrix that does not hold "
                "every training class; set them back before training or evaluating a loss."
            )
        settings = self.loss_settings
        wanted = MODEL_STAGES[self.stage]["losses"]
        terms = {
            "loss_cls": losses.embedding_softmax_loss(y, y_pred["embedding_scores"], self.seen_classes)
        }
        total = settings["cls_weight"] * terms["loss_cls"]
        if "attention_maps" in y_pred and "loss_cpt" in wanted:
            maps = y_pred["attention_maps"]
            terms["loss_cpt"] = losses.compactness_loss(maps, settings["cpt_sigma"])
            terms["loss_div"] = losses.diversity_loss(maps, settings["div_margin"],
                                                      settings["div_reduction"])
            total += (settings["cpt_weight"] * terms["loss_cpt"]
                      + settings["div_weight"] * terms["loss_div"])
        if "latent" in y_pred and "loss_cct" in wanted:
            seen_index = losses.seen_index(ops.reshape(ops.cast(y, "int32"), (-1,)), self.seen_classes)
            terms["loss_cct"] = losses.class_center_triplet_loss(
                seen_index, y_pred["latent"], self.center_head.normalized_centers(),
                settings["cct_margin"]
            )
            total += settings["cct_weight"] * terms["loss_cct"]
        for tracker in self.loss_trackers:
            if tracker.name in terms:
                tracker.update_state(terms[tracker.name])
        if self.losses:
            total += ops.sum([ops.cast(loss, "float32") for loss in self.losses])
        return _scale_for_replicas(total)

    def train_step(self, *args, **kwargs):
        # Marks the trace (or eager step) as a training step for `compute_metrics`,
        # per thread: `tf.distribute.MirroredStrategy` traces the step of each local
        # replica in its own thread, and one replica's end must not unmark another's.
        steps = _TRAIN_STEP.__dict__.setdefault("models", set())
        steps.add(id(self))
        try:
            return super().train_step(*args, **kwargs)
        finally:
            steps.discard(id(self))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """The compiled metrics are validation metrics: updated and reported by
        `test_step` (`evaluate`, the `val_*` logs of `fit`) only.

        Training batches hold no unseen classes, so zero-shot accuracies (ZSL, GZSL u
        and H) of training batches are always 0; `fit` logs the loss terms instead.
        Compiled metrics see the fused class scores, with global labels.
        """
        if id(self) in _TRAIN_STEP.__dict__.get("models", ()):
            compiled = getattr(self, "_compile_metrics", None)
            if compiled is not None and not compiled.built:
                # Built (not updated) where Keras would build them: in the first step.
                compiled.build(y, y_pred["scores"])
            logs = {}
            for metric in self.metrics:
                if metric is not compiled:
                    logs[metric.name] = metric.result()
            return logs
        return super().compute_metrics(x, y, y_pred["scores"], sample_weight)

    def reset_compiled_functions(self):
        """Forces a retrace of train/test/predict (after a structural change)."""
        self.train_function = None
        self.test_function = None
        self.predict_function = None

    def sub_networks(self):
        """{attribute name: layer or list of layers} of every trainable part."""
        return {
            "global_backbone": self.global_backbone,
            "attention_backbone": self.attention_backbone,
            "multi_attention": self.multi_attention,
            "part_backbones": self.part_backbones,
            "cropper": self.cropper,
            "embedding": self.embedding,
            "center_head": self.center_head,
        }

    def attention_subnet_variables(self):
        """The trainable variables that place the parts: the multi-attention layer
        and its own backbone (if separate); the turn of the attention subnet in the
        `alternate` joint schedule (`sgma_keras.optimizers.AlternatingSGD`)."""
        layers = [self.attention_backbone, self.multi_attention]
        return [v for layer in layers if layer is not None for v in layer.trainable_variables]

    def set_stage(self, stage):
        """Sets a stage of `MODEL_STAGES`: what the forward pass computes, which
        sub-networks train and which loss terms `compute_loss` adds.

        "warmup": the global branch alone, softmax loss; "joint": the full model.
        """
        if stage not in MODEL_STAGES:
            raise ValueError(f"SGMA: stage must be one of {tuple(MODEL_STAGES)}, got {stage!r}.")
        trains = MODEL_STAGES[stage]["trains"]
        for name, layers in self.sub_networks().items():
            for layer in layers if isinstance(layers, list) else [layers]:
                if layer is not None:
                    layer.trainable = trains is None or name in trains
        self.stage = stage
        self.reset_compiled_functions()

    # --- class semantics ---

    def set_class_semantics(self, semantics, seen_rows=None, class_names=None):
        """Scores another set of classes without retraining.

        Args:
            semantics: (n, dim) raw semantic vectors of the classes to score (for
                example all classes, or new unseen classes), in the dataset's
                attribute order; they get `semantics_transform`, as the training
                vectors did.
            seen_rows: optional int array (n,): the training-class index
                (position in `seen_classes`) of each row, or -1. Default: rows
                equal to a training class's vector are that class.
            class_names: one name per row. Default: a row equal to a row of the
                current class set keeps its name, others are `class_<row>`.
        """
        semantics = self.transform_semantics(semantics, "SGMA.set_class_semantics")
        self._set_stored_semantics(semantics, seen_rows, class_names)

    def _set_stored_semantics(self, semantics, seen_rows, class_names, old_rows=None):
        """`set_class_semantics` for vectors already in stored form. `old_rows`: each
        row's index in the current class set, or -1 (default: the equal row's)."""
        if old_rows is None:
            old_rows = match_rows(self.semantics, semantics)
        if class_names is None:
            class_names = _carried_names(self.class_names, old_rows)
        class_names = check_class_names(class_names, len(semantics), "SGMA.set_class_semantics")
        seen_semantics = self.seen_semantics
        if seen_rows is None:
            seen_rows = match_rows(seen_semantics, semantics)
        seen_rows = np.asarray(seen_rows, dtype="int64")
        if seen_rows.shape != (len(semantics),):
            raise ValueError(
                f"SGMA: `seen_rows` must have one entry per class ({len(semantics)}), "
                f"got shape {seen_rows.shape}."
            )
        calibration = None
        if self.calibration_classes is not None:  # the classes keep their role
            kept = set(self.calibration_classes.tolist())
            calibration = [row for row, o in enumerate(old_rows) if o >= 0 and int(o) in kept]
        self.embedding.set_semantics(semantics)
        if self.center_head is not None:
            # A class given by a training class's vector gets that class's learned centre
            # (so it scores exactly like it), whatever role it plays.
            matched = match_rows(seen_semantics, semantics)
            self.center_head.set_semantics(semantics, np.where(seen_rows >= 0, seen_rows,
                                                               matched))
        positions = {int(s): row for row, s in enumerate(seen_rows) if s >= 0}
        num_seen = len(seen_semantics)
        self.seen_classes = (
            np.asarray([positions[i] for i in range(num_seen)], dtype="int64")
            if len(positions) == num_seen
            else None
        )
        if calibration is not None:  # checked against the new class count
            self.calibration_classes = calibration
        self.class_names = tuple(class_names)
        self.reset_compiled_functions()

    def add_classes(self, semantics, class_names):
        """Adds classes to the ones scored, from their semantic vectors and names.

        The new rows come after the current ones and are never training classes
        (they are scored as unseen: zero-shot). `semantics` are raw vectors, as for
        `set_class_semantics`; a row equal to a training class's vector scores exactly
        like that class (its learned centre included).
        """
        semantics = self.transform_semantics(semantics, "SGMA.add_classes")
        class_names = check_class_names(class_names, len(semantics), "SGMA.add_classes")
        new = -np.ones(len(semantics), "int64")
        rows = np.concatenate([self.seen_rows(), new])
        # Old rows keep their role; a new row equal to an old one is still a new class.
        old_rows = np.concatenate([np.arange(self.num_classes), new])
        self._set_stored_semantics(np.concatenate([self.semantics, semantics]), rows,
                                   list(self.class_names) + class_names, old_rows)

    def transform_semantics(self, raw, owner="SGMA"):
        """The stored form of raw class vectors `raw` (n, dim): `semantics_transform`
        applied, as the data pipeline applied it to the training classes."""
        raw = as_semantic_matrix(raw, self.embedding.semantic_dim, owner=owner)
        return semantics_lib.apply_transform(raw, self.semantics_transform)

    def seen_rows(self):
        """(num_classes,) int64: each class's training-class index (centre), or -1."""
        if self.seen_classes is not None:
            rows = -np.ones(self.num_classes, "int64")
            rows[self.seen_classes] = np.arange(len(self.seen_classes))
            return rows
        return match_rows(self.seen_semantics, self.semantics)

    @property
    def seen_mask(self):
        """(num_classes,) bool: the classes the model was trained on."""
        return self.seen_rows() >= 0

    @property
    def calibration_classes(self):
        """int64 ids of the classes GZSL counts as seen, or None (the training classes)."""
        return self._calibration_classes

    @calibration_classes.setter
    def calibration_classes(self, ids):
        self._calibration_classes = _class_ids(ids, self.num_classes)

    @property
    def gzsl_seen_mask(self):
        """(num_classes,) bool: the classes GZSL counts as seen (`calibration_classes`,
        default the training classes): calibration lowers their scores, ZSL skips them."""
        if self.calibration_classes is None:
            return self.seen_mask
        mask = np.zeros(self.num_classes, bool)
        mask[self.calibration_classes] = True
        return mask

    # --- initialisation (spec stage 2) ---

    def attention_features(self, images):
        """Feature maps the attention maps are computed from."""
        source = self.attention_backbone or self.global_backbone
        return source(self.global_view(ops.cast(images, self.compute_dtype)), training=False)

    def initialize_attention(self, features, iterations=100, seed=0, agree=None):
        """Channel clustering and pre-fit of the attention layers (spec stage 2).

        Args:
            features: (N, h, w, C) feature maps of a sample of training images
                (see `attention_features`).
            agree: optional function of the channel groups returning the groups to
                pre-fit to (a multi-process launch uses the chief's everywhere).

        Returns:
            The channel groups (C,).
        """
        if self.multi_attention is None:
            raise ValueError("SGMA: initialize_attention needs boxes from attention "
                             "(a multi_attention layer).")
        if not self.built:
            self.build((None, self.image_size, self.image_size, 3))
        groups = self.multi_attention.fit_channel_groups(features, iterations, seed)
        if agree is not None:
            groups = np.asarray(agree(groups), dtype=groups.dtype)
        self.multi_attention.prefit(features, groups)
        return groups

    def copy_global_to_parts(self):
        """Starts every part backbone from the (warmed-up) global backbone."""
        weights = self.global_backbone.get_weights()
        for backbone in self.part_backbones:
            backbone.set_weights(weights)

    def copy_global_to_attention(self):
        """Starts the separate attention backbone from the (warmed-up) global one.

        The channel peaks that initialise the attention maps must come from a CNN
        trained to classify the seen classes (spec stage 2), not a random one.
        """
        if self.attention_backbone is not None:
            self.attention_backbone.set_weights(self.global_backbone.get_weights())

    # --- serialisation ---

    @classmethod
    def from_config(cls, config):
        if upgrade.is_flat_model_config(config):
            return _from_flat_config(config)
        config = copy.deepcopy(config)  # Keras's deserialisation consumes what it reads
        for name in PIECES:
            if config.get(name) is not None:
                config[name] = keras.saving.deserialize_keras_object(config[name])
        config["part_backbones"] = [keras.saving.deserialize_keras_object(b)
                                    for b in config.get("part_backbones") or []]
        config.pop("version", None)
        return cls(**config)

    def get_config(self):
        config = super().get_config()
        for name in PIECES:
            piece = getattr(self, name)
            config[name] = None if piece is None else _serialize(piece)
        config.update(
            version=upgrade.MODEL_FORMAT_VERSION,
            part_backbones=[_serialize(b) for b in self.part_backbones],
            seen_classes=None if self.seen_classes is None else self.seen_classes.tolist(),
            image_size=self.image_size,
            global_size=self.global_size,
            map_losses_reach_backbone=self.map_losses_reach_backbone,
            loss=dict(self.loss_settings),
            gamma_cc=self.gamma_cc,
            head_scales=list(self.head_scales),
            seen_semantics=self.seen_semantics.tolist(),
            class_names=list(self.class_names),
            calibration=self.calibration,
            calibration_classes=(None if self.calibration_classes is None
                                 else self.calibration_classes.tolist()),
            semantics_transform=self.semantics_transform,
            backbone=None if self.backbone is None else dict(self.backbone),
        )
        return config


def _serialize(piece):
    """A piece as a nested Keras object, without its build shapes: `SGMA.build` builds
    the layers (in one order, so a seed gives the same weights however it was made)."""
    config = keras.saving.serialize_keras_object(piece)
    config.pop("build_config", None)
    return json.loads(json.dumps(config))  # as a saved file gives it back (lists, no tuples)


def make_sgma(semantics, seen_classes, *, image_size=448, global_size=None, num_parts=2,
              share_part_backbones=False, separate_attention_backbone=False,
              backbone=_EMPTY, attention=_EMPTY, cropper=_EMPTY, embedding=_EMPTY,
              center=_EMPTY, seed=None, gamma_cc=None, **settings):
    """An `SGMA` built from the config's model sections.

    Args:
        semantics: (num_classes, dim) class semantic matrix (stored form).
        seen_classes: ids of the training classes.
        image_size, global_size: `input.image_size`, `input.global_size`.
        num_parts, share_part_backbones, separate_attention_backbone: `model.*`.
        backbone, attention, cropper, embedding, center: the sections
            `model.backbone` (`make_backbone`'s arguments), `model.attention`
            (`MultiAttention`'s), `model.cropper` (`PartCropper`'s),
            `model.embedding` (`SemanticEmbedding`'s), `model.center`
            (`ClassCenterHead`'s; None: no class-center branch); missing keys take
            the defaults.
        seed: the run's seed (the random boxes').
        gamma_cc: `model.gamma_cc`; None (chosen after training) starts at 1.
        settings: the other `SGMA` arguments (`map_losses_reach_backbone`, `loss`,
            `class_names`, `semantics_transform`, ...).
    """
    semantics = as_semantic_matrix(semantics, owner="SGMA")
    seen = None if seen_classes is None else np.asarray(seen_classes, dtype="int64")
    _check_seen(semantics, seen, settings.get("seen_semantics"))
    sizes = MODEL.check(dict(image_size=image_size, global_size=global_size,
                             num_parts=num_parts))
    image_size = sizes["image_size"]
    global_size = sizes["global_size"] or image_size
    num_parts = sizes["num_parts"]
    backbone = {**BACKBONE.defaults(), **backbone}
    BACKBONE.check(backbone)
    cropper = {**cropper, "num_parts": num_parts, "seed": seed}
    with_attention = num_parts > 0 and cropper.get("box_source", "attention") == "attention"

    def backbone_at(size, name):
        return make_backbone(backbone["name"], size, backbone["weights"],
                             backbone["feature_layer"], backbone["tiny_width"], name)

    pieces = {"global_backbone": backbone_at(global_size, "global_backbone")}
    if with_attention:
        if separate_attention_backbone:
            pieces["attention_backbone"] = backbone_at(global_size, "attention_backbone")
        pieces["multi_attention"] = MultiAttention(num_parts=num_parts, **attention,
                                                   name="multi_attention")
    if num_parts > 0:
        pieces["cropper"] = PartCropper(**cropper, name="part_cropper")
        count = 1 if share_part_backbones else num_parts
        pieces["part_backbones"] = [backbone_at(pieces["cropper"].output_size,
                                                f"part_backbone_{i}") for i in range(count)]
    pieces["embedding"] = SemanticEmbedding(semantics, **embedding, name="semantic_embedding")
    seen_semantics = settings.get("seen_semantics")
    if seen_semantics is None:
        seen_semantics = semantics[seen]
    if center is not None:
        pieces["center_head"] = ClassCenterHead(seen_semantics, semantics, **center,
                                                name="class_center")
    return SGMA(seen_classes=seen, image_size=image_size, global_size=global_size,
                gamma_cc=1.0 if gamma_cc is None else gamma_cc,
                backbone={**backbone, "weights": None}, **pieces, **settings)


def _from_flat_config(config):
    """An SGMA saved in the first (flat) layout, rebuilt through `make_sgma`."""
    if "class_names" not in config:
        log.warning(
            "This SGMA model was saved before models kept their class names and "
            "calibration: its %d classes are named class_000, ... and it has no "
            "calibration constant (calibrated GZSL needs one: pass it, or re-save "
            "the model with `model.class_names` and `model.calibration` set).",
            len(config.get("semantics") or []),
        )
    kwargs = upgrade.flat_model_arguments(config)
    if "semantics_transform" not in kwargs:
        # Saved before the model kept it: read it off the stored vectors (the
        # default pipeline left them unit norm; a raw-vector run did not).
        kwargs["semantics_transform"] = semantics_lib.infer_transform(kwargs["semantics"])
        log.info("This SGMA model was saved without its semantics transform; its class "
                 "vectors say %r: new class vectors get it.", kwargs["semantics_transform"])
    return make_sgma(**kwargs)


def _check_seen(semantics, seen, seen_semantics):
    num_classes = semantics.shape[0]
    if seen is None:
        if seen_semantics is None:
            raise ValueError("SGMA: `seen_classes` is required (ids of the training classes).")
    elif seen.ndim != 1 or len(seen) < 1 or seen.min() < 0 or seen.max() >= num_classes:
        raise ValueError(
            f"SGMA: `seen_classes` must be a non-empty list of class ids in [0, "
            f"{num_classes}) (rows of the semantic matrix), got {seen.tolist()}."
        )
    elif len(set(seen.tolist())) != len(seen):
        raise ValueError("SGMA: `seen_classes` holds duplicate class ids.")
    if seen_semantics is not None:
        as_semantic_matrix(seen_semantics, semantics.shape[1], owner="SGMA (seen_semantics)")



def fuse_scores(embedding_scores, center_scores, gamma_cc, head_scales=(1.0, 1.0)):
    """The fused score `s_y / a + gamma_cc * <u, C_y> / b` in float32, `(a, b) =
    head_scales`.

    The spec's late fusion `s_y + gamma_cc <u, C_y>` with each head divided by its
    typical spread (the two spread about ten times apart, so that with `(1, 1)`
    the embedding head decides alone); training measures the spreads on the
    validation images (`sgma_keras.workflow.selection`). A fixed divisor per head
    keeps a class's score independent of the other classes scored. Works on NumPy
    arrays too.
    """
    embedding_scale, center_scale = (float(v) for v in head_scales)
    return (ops.cast(embedding_scores, "float32") / embedding_scale
            + (float(gamma_cc) / center_scale) * ops.cast(center_scores, "float32"))


def _check_stored_form(semantics, seen_semantics, transform):
    """`transform`, once the stored matrices are checked to be in its form (a raw
    matrix given with "l2" would be scored at another scale than later vectors)."""
    semantics_lib.check_transform(transform)
    for name, matrix in (("semantics", semantics), ("seen_semantics", seen_semantics)):
        if matrix is None:
            continue
        bad = semantics_lib.off_form_rows(matrix, transform)
        if bad.size:
            norm = float(np.linalg.norm(np.asarray(matrix, "float64")[bad[0]]))
            raise ValueError(
                f"SGMA: semantics_transform={transform!r}, but row {int(bad[0])} of "
                f"`{name}` has L2 norm {norm:.4g}; expected the transformed vectors "
                "(unit norm): pass `sgma_keras.semantics.apply_transform(raw, "
                f"{transform!r})`."
            )
    return transform


def _class_ids(ids, num_classes):
    if ids is None:
        return None
    ids = np.asarray(ids, dtype="int64").reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(
            f"SGMA: `calibration_classes` must be class ids in [0, {num_classes}), got "
            f"{ids.tolist()}."
        )
    return ids


def _carried_names(old_names, old_rows):
    """A row equal to an old row keeps its name, others are `class_<row>`; repeats get
    a `_<row>` suffix, so the names stay distinct."""
    names, used = [], set()
    for row, old in enumerate(old_rows):
        name = old_names[old] if old >= 0 else f"class_{row:03d}"
        while name in used:
            name = f"{name}_{row}"
        used.add(name)
        names.append(name)
    return names


def default_class_names(num_classes):
    """`class_000`, `class_001`, ...: the names of a model saved without names."""
    return [f"class_{i:03d}" for i in range(num_classes)]


def check_class_names(names, num_classes, owner):
    """A list of `num_classes` distinct non-empty strings (default names if None)."""
    if names is None:
        return default_class_names(num_classes)
    if isinstance(names, str):
        raise ValueError(f"{owner}: `class_names` must be a list of names, got a string.")
    names = [str(n) for n in names]
    if len(names) != num_classes:
        raise ValueError(
            f"{owner}: {len(names)} class names for {num_classes} classes (rows of the "
            "semantic matrix); expected one name per class."
        )
    seen = {}
    for i, name in enumerate(names):
        if not name.strip():
            raise ValueError(f"{owner}: class name {i} is empty; expected a name.")
        if name in seen:
            raise ValueError(
                f"{owner}: class name {name!r} is given twice (rows {seen[name]} and {i}); "
                "expected distinct names."
            )
        seen[name] = i
    return names


# The models whose `train_step` this thread is in (see `SGMA.train_step`).
_TRAIN_STEP = threading.local()


def _scale_for_replicas(loss):
    """Divides by the replica count under `tf.distribute` (as Keras's own losses do).

    TensorFlow sums the gradients of the replicas, so each returns its share;
    JAX and torch see one global batch and need no scaling.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss / replicas
    return loss
