"""The SGMA model: global branch, K attention-guided part branches, two heads."""

import logging
import threading

import keras
import numpy as np
from keras import ops

from sgma_keras import losses
from sgma_keras import metrics  # noqa: F401  (registers the metrics a compiled SGMA saves)
from sgma_keras import semantics as semantics_lib
from sgma_keras.backbones import make_backbone
from sgma_keras.layers import ClassCenterHead, MultiAttention, PartCropper, SemanticEmbedding
from sgma_keras.layers.class_center import match_rows
from sgma_keras.layers.semantic_embedding import as_semantic_matrix
from sgma_keras.registry import BACKBONES

log = logging.getLogger("sgma_keras")

PART_MODES = ("attention", "random", "none")
LOSS_TERMS = ("loss_cpt", "loss_div", "loss_cls", "loss_cct")

# What each training stage of the model trains (attribute names of its sub-networks;
# None: all of them) and which loss terms it optimises. The workflow's stage table
# (`sgma_keras.workflow.training.STAGES`) runs these with `set_stage`.
MODEL_STAGES = {
    "warmup": {"trains": ("global_backbone", "embedding"), "losses": ("loss_cls",)},
    "joint": {"trains": None, "losses": LOSS_TERMS},
}

# SGMA argument -> argument of the layer that takes it. The model builds its layers
# from this table, and `tests/test_build.py` checks that every layer argument is
# either here or in LAYER_INTERNAL_ARGS, so no layer option is out of a config's reach.
LAYER_ARGS = {
    "MultiAttention": {
        "num_parts": "num_parts",
        "attention_reduction": "reduction",
        "attention_normalize": "normalize",
    },
    "PartCropper": {
        "num_parts": "num_parts",
        "local_size": "output_size",
        "cnet_hidden": "hidden_units",
        "min_side": "min_side",
        "max_side": "max_side",
        "boxcar_steepness": "steepness",
        "peak_temperature": "peak_temperature",
        "boxcar_mask_at": "mask_at",
        "boxcar_margin": "margin",
        "box_anchor": "anchor",
        "boxcar_steepness_unit": "steepness_unit",
        "peak_gradient_temperature": "peak_gradient_temperature",
        "part_mode": "box_source",
        "seed": "seed",
    },
    "SemanticEmbedding": {
        "semantics": "semantics",
        "embedding_normalize": "normalize",
        "embedding_scale": "scale",
        "embedding_learn_scale": "learn_scale",
    },
    "ClassCenterHead": {
        "seen_semantics": "seen_semantics",
        "semantics": "semantics",
        "latent_dim": "latent_dim",
        "ridge_lambda": "ridge_lambda",
    },
}
# Layer arguments set by the model itself, not by an SGMA argument.
LAYER_INTERNAL_ARGS = {
    "ImagePreprocessing": {"mode": "follows the backbone (caffe for VGG/ResNet)"},
}

_LAYERS = {
    "MultiAttention": MultiAttention,
    "PartCropper": PartCropper,
    "SemanticEmbedding": SemanticEmbedding,
    "ClassCenterHead": ClassCenterHead,
}


@keras.saving.register_keras_serializable(package="sgma_keras")
class SGMA(keras.Model):
    """Semantic-Guided Multi-Attention localization for zero-shot learning.

    Input: a batch of RGB images, pixels in [0, 255], `image_size` square.
    Labels (for `fit`/`evaluate`): global class ids, rows of `semantics`;
    training labels must be seen classes.

    Output: a dict with
    - `scores` (B, num_classes): the fused score `s_y / a + gamma_cc <u, C_y> / b`
      (`fuse_scores`, `(a, b) = head_scales`; the embedding scores alone in the
      warm-up stage or without the class-center branch);
    - `embedding_scores`, `center_scores` (B, num_classes): the two heads;
    - `latent` (B, latent_dim): normalised class-center features `u_hat`;
    - `attention_maps` (B, h, w, K) (part_mode "attention");
    - `boxes` (B, K, 3): part squares `(t_x, t_y, t_s)` relative to the image
      (part_mode "attention" and "random").

    `fit()` trains with `L = sum_i [L_cpt + lambda L_div] + alpha L_cls +
    beta L_cct` computed in `compute_loss`; the logs carry each term
    (`loss_cpt`, `loss_div`, `loss_cls`, `loss_cct`, unweighted).

    Args:
        semantics: (num_classes, dim) class semantic matrix (all classes).
        seen_classes: ids of the training classes (rows of `semantics`).
        image_size: side of the input image (the parts are sampled from it).
        local_size: side of the zoomed part images.
        global_size: side of the global branch's view of the image (default
            `image_size`; must divide it). A smaller view (the image average-
            pooled by `image_size // global_size`) saves compute where the
            parts, sampled at full resolution, carry the fine detail.
        backbone: a name in `sgma_keras.registry.BACKBONES`: "vgg19",
            "resnet50", "resnet101", "tiny" or one registered with
            `register_backbone`.
        weights: backbone weights: None, "imagenet" or a file path.
        feature_layer: backbone layer tapped for the feature map.
        tiny_width: width of the tiny backbone.
        num_parts: K, number of attention maps and parts (>= 1).
        part_mode: "attention" (SGMA), "random" (random boxes) or "none"
            (global branch only).
        share_part_backbones: one backbone for all parts instead of K.
        separate_attention_backbone: a fourth backbone for the attention maps
            instead of the global branch's.
        attention_reduction, attention_normalize: see `MultiAttention`.
        cnet_hidden, min_side, max_side, boxcar_steepness, peak_temperature:
            see `PartCropper`.
        boxcar_mask_at, boxcar_margin, boxcar_steepness_unit,
            peak_gradient_temperature, box_anchor: `PartCropper`'s `mask_at`,
            `margin`, `steepness_unit`, `peak_gradient_temperature` and `anchor`.
        map_losses_reach_backbone: False stops the gradient of the feature
            map into `MultiAttention`: the map losses (and the boxes' path)
            train the attention subnet only, not the backbone under it.
        embedding_normalize, embedding_scale, embedding_learn_scale: see
            `SemanticEmbedding`.
        center_enabled: use the class-center branch (loss and score).
        latent_dim, ridge_lambda: see `ClassCenterHead`.
        gamma_cc: weight of the class-center head in the fused score
            (`fuse_scores`); training chooses it on the validation classes.
        head_scales: (embedding, class-center) divisors of each head in the
            fused score; (1, 1) is the paper's sum. Training sets them to each
            head's spread on the validation images, with `gamma_cc`.
        cpt_weight, div_weight, cls_weight, cct_weight: loss weights (the
            compactness weight multiplies the per-part sum; `div_weight` is
            lambda, `cls_weight` alpha, `cct_weight` beta).
        div_margin, cct_margin: loss margins (0.2 and 0.8).
        cpt_sigma: width of the ideal Gaussian map, in map cells.
        div_reduction: "sum" (paper) or "mean" over map positions.
        seen_semantics: semantics of the training classes, in centre order;
            default `semantics[seen_classes]` (set on reload after
            `set_class_semantics`).
        seed: seed of the random boxes.
        class_names: one name per row of `semantics` (default `class_000`, ...).
        calibration: the calibrated-stacking constant chosen on validation (subtracted
            from the scores of the seen classes in calibrated GZSL), or None when
            none was chosen. Training stores it in `best.keras`.
        calibration_classes: ids of the classes GZSL counts as seen (the constant is
            subtracted from their scores; ZSL ranks the others). Default: the
            training classes. Training stores the dataset's seen classes (training
            and validation classes), as evaluation counts them.
        semantics_transform: what the data pipeline did to the raw class vectors
            before training (`sgma_keras.semantics.TRANSFORMS`: "l2" scales each to
            unit norm, None keeps them as given). `semantics` and `seen_semantics` are
            the transformed (stored) vectors; vectors given later
            (`set_class_semantics`, `add_classes`) are raw and get the transform.
            A file saved without it loads with the transform its stored rows show
            (`sgma_keras.semantics.infer_transform`).
    """

    def __init__(
        self,
        semantics,
        seen_classes,
        image_size=448,
        local_size=224,
        global_size=None,
        backbone="vgg19",
        weights="imagenet",
        feature_layer=None,
        tiny_width=32,
        num_parts=2,
        part_mode="attention",
        share_part_backbones=False,
        separate_attention_backbone=False,
        attention_reduction=16,
        attention_normalize=True,
        cnet_hidden=128,
        min_side=0.25,
        max_side=0.6,
        boxcar_steepness=10.0,
        peak_temperature=0.05,
        embedding_normalize=False,
        embedding_scale=16.0,
        embedding_learn_scale=True,
        center_enabled=True,
        latent_dim=256,
        ridge_lambda=1.0,
        gamma_cc=1.0,
        cpt_weight=1.0,
        div_weight=1.0,
        cls_weight=1.0,
        cct_weight=1.0,
        div_margin=0.2,
        cct_margin=0.8,
        cpt_sigma=1.0,
        div_reduction="sum",
        seen_semantics=None,
        seed=None,
        boxcar_steepness_unit="pixel",
        peak_gradient_temperature=None,
        boxcar_mask_at="margin",
        boxcar_margin=0.125,
        box_anchor="peak",
        map_losses_reach_backbone=False,
        class_names=None,
        calibration=None,
        calibration_classes=None,
        head_scales=(1.0, 1.0),
        semantics_transform=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # The constructor arguments, as get_config returns them (the class set is
        # read back from the layers, since set_class_semantics changes it).
        self._args = dict(
            image_size=int(image_size),
            local_size=int(local_size),
            global_size=None if global_size is None else int(global_size),
            backbone=backbone,
            weights=None,  # the trained weights travel with the saved model
            feature_layer=feature_layer,
            tiny_width=int(tiny_width),
            num_parts=int(num_parts),
            part_mode=part_mode,
            share_part_backbones=bool(share_part_backbones),
            separate_attention_backbone=bool(separate_attention_backbone),
            attention_reduction=int(attention_reduction),
            attention_normalize=bool(attention_normalize),
            cnet_hidden=int(cnet_hidden),
            min_side=float(min_side),
            max_side=float(max_side),
            boxcar_steepness=float(boxcar_steepness),
            peak_temperature=float(peak_temperature),
            boxcar_mask_at=boxcar_mask_at,
            boxcar_margin=float(boxcar_margin),
            box_anchor=box_anchor,
            map_losses_reach_backbone=bool(map_losses_reach_backbone),
            boxcar_steepness_unit=boxcar_steepness_unit,
            peak_gradient_temperature=(
                None if peak_gradient_temperature is None else float(peak_gradient_temperature)
            ),
            embedding_normalize=bool(embedding_normalize),
            embedding_scale=float(embedding_scale),
            embedding_learn_scale=bool(embedding_learn_scale),
            center_enabled=bool(center_enabled),
            latent_dim=int(latent_dim),
            ridge_lambda=float(ridge_lambda),
            gamma_cc=float(gamma_cc),
            cpt_weight=float(cpt_weight),
            div_weight=float(div_weight),
            cls_weight=float(cls_weight),
            cct_weight=float(cct_weight),
            div_margin=float(div_margin),
            cct_margin=float(cct_margin),
            cpt_sigma=float(cpt_sigma),
            div_reduction=div_reduction,
            seed=seed,
            semantics_transform=semantics_transform,
        )
        semantics = as_semantic_matrix(semantics, owner="SGMA")
        seen = None if seen_classes is None else np.asarray(seen_classes, dtype="int64")
        global_size = image_size if global_size is None else global_size
        self._check_args(semantics, seen, seen_semantics, image_size, local_size, global_size,
                         backbone, num_parts, part_mode, div_reduction)
        self.semantics_transform = _check_stored_form(semantics, seen_semantics,
                                                      semantics_transform)
        self.seen_classes = seen
        self.image_size = int(image_size)
        self.local_size = int(local_size)
        self.global_size = int(global_size)
        self.backbone_name = backbone
        self.feature_layer = feature_layer
        self.tiny_width = int(tiny_width)
        self.num_parts = int(num_parts)
        self.part_mode = part_mode
        self.share_part_backbones = bool(share_part_backbones)
        self.separate_attention_backbone = bool(separate_attention_backbone)
        self.center_enabled = bool(center_enabled)
        self.loss_weights_ = dict(
            cpt=float(cpt_weight), div=float(div_weight), cls=float(cls_weight), cct=float(cct_weight)
        )
        self.div_margin = float(div_margin)
        self.cct_margin = float(cct_margin)
        self.cpt_sigma = float(cpt_sigma)
        self.div_reduction = div_reduction
        self.seed = seed
        # "warmup" trains the global branch alone (stage 1); "joint" is the model.
        self.stage = "joint"

        def backbone_at(size, name, load=weights):
            return make_backbone(backbone, size, load, feature_layer, tiny_width, name)

        self.global_backbone = backbone_at(self.global_size, "global_backbone")
        self.attention_backbone = None
        self.multi_attention = None
        self.cropper = None
        self.part_backbones = []
        args = dict(self._args, semantics=semantics, seen_semantics=None)
        if part_mode == "attention":
            if self.separate_attention_backbone:
                self.attention_backbone = backbone_at(self.global_size, "attention_backbone")
            self.multi_attention = _layer("MultiAttention", args, "multi_attention")
        if part_mode != "none":
            self.cropper = _layer("PartCropper", args, "part_cropper")
            count = 1 if self.share_part_backbones else num_parts
            self.part_backbones = [
                backbone_at(self.local_size, f"part_backbone_{i}") for i in range(count)
            ]
        self.embedding = _layer("SemanticEmbedding", args, "semantic_embedding")
        if seen_semantics is None:
            seen_semantics = semantics[seen]
        args["seen_semantics"] = seen_semantics
        # Kept on the model too: without the class-center branch, it is what
        # lets `set_class_semantics` and reloading work after a swap that drops
        # training classes (`seen_classes` is then None).
        self.seen_semantics = as_semantic_matrix(seen_semantics, owner="SGMA (seen_semantics)")
        self.center_head = (
            _layer("ClassCenterHead", args, "class_center") if self.center_enabled else None
        )
        self.class_names = tuple(check_class_names(class_names, len(semantics), "SGMA"))
        self.calibration = None if calibration is None else float(calibration)
        self.head_scales = head_scales
        self._calibration_classes = _class_ids(calibration_classes, len(semantics))
        self.loss_trackers = [keras.metrics.Mean(name=name) for name in LOSS_TERMS]

    @staticmethod
    def _check_args(semantics, seen, seen_semantics, image_size, local_size, global_size,
                    backbone, num_parts, part_mode, div_reduction):
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
        if int(num_parts) < 1:
            raise ValueError(f"SGMA: `num_parts` (K) must be an int >= 1, got {num_parts}.")
        if part_mode not in PART_MODES:
            raise ValueError(f"SGMA: `part_mode` must be one of {PART_MODES}, got {part_mode!r}.")
        if backbone not in BACKBONES:
            raise ValueError(
                f"SGMA: unknown backbone {backbone!r}; expected one of "
                f"{', '.join(BACKBONES.names())}."
            )
        if int(local_size) < 8 or int(image_size) < 8:
            raise ValueError(
                f"SGMA: image sizes must be >= 8 px, got image_size={image_size}, "
                f"local_size={local_size}."
            )
        if int(image_size) < int(local_size):
            raise ValueError(
                f"SGMA: the image ({image_size} px) is smaller than the part crop "
                f"({local_size} px); expected image_size >= local_size."
            )
        if int(global_size) < 8 or int(image_size) % int(global_size):
            raise ValueError(
                f"SGMA: `global_size` must be >= 8 px and divide image_size ({image_size}), "
                f"got {global_size}."
            )
        if div_reduction not in ("sum", "mean"):
            raise ValueError(f"SGMA: `div_reduction` must be 'sum' or 'mean', got {div_reduction!r}.")

    # --- structure ---

    @property
    def gamma_cc(self):
        """Weight of the class-center head in the fused score (`fuse_scores`)."""
        return self._args["gamma_cc"]

    @gamma_cc.setter
    def gamma_cc(self, value):
        value = float(value)
        if not value >= 0:
            raise ValueError(f"SGMA: `gamma_cc` must be a number >= 0, got {value}.")
        self._args["gamma_cc"] = value
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
    def num_branches(self):
        return 1 + (self.num_parts if self.part_mode != "none" else 0)

    @property
    def num_classes(self):
        return self.embedding.num_classes

    @property
    def semantics(self):
        return self.embedding.semantics

    def part_backbone(self, part):
        return self.part_backbones[0 if self.share_part_backbones else part]

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
        if self.stage != "warmup" and self.part_mode != "none":
            if self.part_mode == "attention":
                map_features = (
                    features
                    if self.attention_backbone is None
                    else self.attention_backbone(view, training=training)
                )
                if not self._args["map_losses_reach_backbone"]:
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
        w = self.loss_weights_
        wanted = MODEL_STAGES[self.stage]["losses"]
        terms = {
            "loss_cls": losses.embedding_softmax_loss(y, y_pred["embedding_scores"], self.seen_classes)
        }
        total = w["cls"] * terms["loss_cls"]
        if "attention_maps" in y_pred and "loss_cpt" in wanted:
            maps = y_pred["attention_maps"]
            terms["loss_cpt"] = losses.compactness_loss(maps, self.cpt_sigma)
            terms["loss_div"] = losses.diversity_loss(maps, self.div_margin, self.div_reduction)
            total += w["cpt"] * terms["loss_cpt"] + w["div"] * terms["loss_div"]
        if "latent" in y_pred and "loss_cct" in wanted:
            seen_index = losses.seen_index(ops.reshape(ops.cast(y, "int32"), (-1,)), self.seen_classes)
            terms["loss_cct"] = losses.class_center_triplet_loss(
                seen_index, y_pred["latent"], self.center_head.normalized_centers(), self.cct_margin
            )
            total += w["cct"] * terms["loss_cct"]
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

    def initialize_attention(self, features, iterations=100, seed=0):
        """Channel clustering and pre-fit of the attention layers (spec stage 2).

        Args:
            features: (N, h, w, C) feature maps of a sample of training images
                (see `attention_features`).

        Returns:
            The channel groups (C,).
        """
        if self.multi_attention is None:
            raise ValueError("SGMA: initialize_attention needs part_mode='attention'.")
        if not self.built:
            self.build((None, self.image_size, self.image_size, 3))
        groups = self.multi_attention.fit_channel_groups(features, iterations, seed)
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

    # What a file saved before an option existed was trained with: it loads with
    # these values, not the new defaults (tests/test_saved_fixture.py).
    LEGACY_ARGS = {"boxcar_mask_at": "sample_points", "peak_gradient_temperature": None,
                   "map_losses_reach_backbone": True}

    @classmethod
    def from_config(cls, config):
        if "class_names" not in config:
            log.warning(
                "This SGMA model was saved before models kept their class names and "
                "calibration: its %d classes are named class_000, ... and it has no "
                "calibration constant (calibrated GZSL needs one: pass it, or re-save "
                "the model with `model.class_names` and `model.calibration` set).",
                len(config.get("semantics") or []),
            )
        config = {**cls.LEGACY_ARGS, **config}
        if "semantics_transform" not in config:
            # Saved before the model kept it: read it off the stored vectors (the
            # default pipeline left them unit norm; a raw-vector run did not).
            config["semantics_transform"] = semantics_lib.infer_transform(config["semantics"])
            log.info("This SGMA model was saved without its semantics transform; its class "
                     "vectors say %r: new class vectors get it.", config["semantics_transform"])
        return super().from_config(config)

    def get_config(self):
        config = super().get_config()
        config.update(self._args)
        config.update(
            global_size=self.global_size,
            semantics=self.semantics.tolist(),
            seen_classes=None if self.seen_classes is None else self.seen_classes.tolist(),
            seen_semantics=self.seen_semantics.tolist(),
            class_names=list(self.class_names),
            calibration=self.calibration,
            head_scales=list(self.head_scales),
            calibration_classes=(None if self.calibration_classes is None
                                 else self.calibration_classes.tolist()),
        )
        return config


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


def _layer(class_name, args, name):
    """Layer `class_name` built from the SGMA arguments `args` through `LAYER_ARGS`."""
    kwargs = {layer_arg: args[arg] for arg, layer_arg in LAYER_ARGS[class_name].items()}
    return _LAYERS[class_name](name=name, **kwargs)


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
