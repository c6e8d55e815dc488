"""Analytic FLOP counts of SGMA (spec "Cost"), for the benchmarks.

A multiply-add counts as 2 FLOPs. The count walks the convolution and dense
layers of every backbone (output positions x kernel area x Cin/groups x Cout
x 2) and adds the heads' matrix products (attention maps, box network,
bilinear crop, semantic embedding, class-center projection). Bias adds,
batch norm, activations, pooling and the losses are left out: they are well
under 1% of the total for VGG19. A training step is counted as three forward
passes (forward, gradients of the activations, gradients of the weights).

Only `keras` is imported, so this module is safe on a JAX-only machine.

    from sgma_keras.backbones import make_backbone
    backbone_flops(make_backbone("vgg19", 224))  # 39.0e9 (19.5 G multiply-adds)
    sgma_flops(model)["train_step"]              # per image
"""

import keras

TRAIN_TO_FORWARD = 3.0


def _shape(tensor_or_shape):
    shape = getattr(tensor_or_shape, "shape", tensor_or_shape)
    return tuple(shape)


def _layer_output_shape(layer):
    try:
        return _shape(layer.output)
    except (AttributeError, ValueError, RuntimeError):
        return _shape(layer.compute_output_shape(_shape(layer.input)))


def layer_flops(layer):
    """Forward FLOPs per example of one conv/dense layer (0 for other layers)."""
    conv_types = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        out = _layer_output_shape(layer)
        positions = _prod(out[1:-1])
        return 2 * positions * _prod(layer.kernel_size) * out[-1]
    if isinstance(layer, keras.layers.SeparableConv2D):
        raise NotImplementedError("SeparableConv2D is not counted")
    if isinstance(layer, conv_types) and not isinstance(layer, keras.layers.Conv2DTranspose):
        out = _layer_output_shape(layer)
        positions = _prod(out[1:-1])
        cin = _shape(layer.input)[-1]
        return 2 * positions * _prod(layer.kernel_size) * (cin // layer.groups) * layer.filters
    if isinstance(layer, keras.layers.Dense):
        out = _layer_output_shape(layer)
        cin = _shape(layer.input)[-1]
        return 2 * _prod(out[1:-1]) * cin * layer.units
    return 0


def backbone_flops(model, per_layer=None):
    """Forward FLOPs per image of a (possibly nested) functional backbone.

    Args:
        model: a `keras.Model` (nested models are walked recursively).
        per_layer: optional list; (layer name, flops) pairs are appended.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model) or hasattr(layer, "layers"):
            total += backbone_flops(layer, per_layer)
            continue
        flops = layer_flops(layer)
        if flops and per_layer is not None:
            per_layer.append((layer.name, flops))
        total += flops
    return total


def sgma_flops(model, stage=None):
    """Forward FLOPs per image of an `SGMA` model, by component.

    Returns a dict: `global`, `attention_backbone`, `parts` (all part
    backbones), `heads` (attention, box net, crop, embedding, class center),
    `forward` (their sum) and `train_step` (3x forward). In the "warmup"
    stage only the global branch and the embedding run.
    """
    stage = stage or model.stage
    if not model.built:
        model.build((None, model.image_size, model.image_size, 3))
    out = {"global": backbone_flops(model.global_backbone)}
    feature = _shape(model.global_backbone.output)  # (None, h, w, C)
    h, w, channels = feature[1], feature[2], feature[3]
    joint = stage != "warmup"
    parts_on = joint and model.num_parts > 0
    out["attention_backbone"] = (
        backbone_flops(model.attention_backbone)
        if parts_on and model.attention_backbone is not None
        else 0
    )
    k = model.num_parts
    out["parts"] = (
        k * backbone_flops(model.part_backbones[0]) if parts_on else 0
    )  # every part backbone has the same architecture
    heads = 0
    if parts_on and model.multi_attention is not None:
        att = model.multi_attention
        hidden = max(1, channels // att.reduction)
        heads += 2 * k * channels * hidden * 2  # channel weights: two dense layers
        heads += 2 * h * w * channels * k  # weighted channel sums (the maps)
    if parts_on:
        crop = model.cropper
        heads += 2 * k * (h * w * crop.hidden_units + crop.hidden_units * 3)  # f_CNet
        heads += 2 * 4 * k * crop.output_size**2 * 3  # bilinear crop: 4 taps a value
    emb = model.embedding
    branches = model.num_branches
    heads += 2 * branches * channels * emb.semantic_dim + 2 * emb.semantic_dim * emb.num_classes
    if joint and model.center_head is not None:
        latent = model.center_head.latent_dim
        heads += 2 * branches * channels * latent + 2 * latent * model.num_classes
    out["heads"] = heads
    out["forward"] = out["global"] + out["attention_backbone"] + out["parts"] + heads
    out["train_step"] = TRAIN_TO_FORWARD * out["forward"]
    return out


def _prod(values):
    result = 1
    for v in values:
        result *= int(v)
    return result
