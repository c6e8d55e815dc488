"""The one table from config keys to `SGMA` constructor arguments.

Below every other workflow module: `build` makes the model from it and `checkpoints`
compares a saved model's arguments with a config through it.
"""

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
    "model.boxcar_margin": "boxcar_margin",
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
    "head_scales": "each head's spread on the validation images, measured after training",
    "semantics_transform": "what the data loader did to the class vectors "
                           "(`data.loader.semantics_transform`: data.normalize_semantics, "
                           "data.semantics)",
}


# Config keys that fix the trained model's architecture and behaviour: a checkpoint
# whose saved arguments differ in one of these is not the config's model, and a run
# folder never continues under a change of one (`workflow.checkpoints`).
ARCHITECTURE_KEYS = {key: MODEL_ARGS[key] for key in (
    "input.image_size", "input.local_size", "input.global_size", "model.backbone",
    "model.feature_layer", "model.tiny_width", "model.num_parts", "model.part_mode",
    "model.share_part_backbones", "model.separate_attention_backbone",
    "model.attention_reduction", "model.attention_normalize", "model.cnet_hidden",
    "model.min_side", "model.max_side", "model.boxcar_steepness", "model.peak_temperature",
    "model.embedding.normalize", "model.embedding.scale", "model.embedding.learn_scale",
    "model.center.enabled", "model.center.latent_dim",
)}
