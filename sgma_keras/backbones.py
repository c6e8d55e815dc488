"""Backbone CNNs: VGG19 (the paper's), ResNet-50/101 and a tiny CNN for tests and the demo.

The names and facts (feature channels, ImageNet weights) are registered in
`sgma_keras.registry.BACKBONES`; `make_backbone` builds the one it names.
"""

import os

import keras

from sgma_keras.arguments import BACKBONE
from sgma_keras.layers.image_preprocessing import ImagePreprocessing
from sgma_keras.registry import BACKBONES


def make_backbone(
    name, input_size, weights=None, feature_layer=None, tiny_width=32, model_name=None
):
    """A model from RGB pixels in [0, 255] to the tapped feature map.

    Args:
        name: a name registered in `sgma_keras.registry.BACKBONES`: "vgg19",
            "resnet50", "resnet101", "tiny", or one registered with
            `register_backbone`.
        input_size: side of the square input image.
        weights: None (random), "imagenet" (the `keras.applications` download
            or its cache in `~/.keras/models`), or the path of a weights file
            of that application (e.g. the `*_notop.h5` file).
        feature_layer: the layer whose output is the feature map; default:
            the last conv block before pooling (`block5_conv4` for VGG19).
        tiny_width: channel width of the tiny CNN (its features have
            `4 * tiny_width` channels, at 1/8 of the input side).
        model_name: name of the returned model.

    Returns:
        A `keras.Model` mapping (B, S, S, 3) pixels to (B, h, w, C) features.
    """
    BACKBONE.check(dict(name=name, weights=weights, feature_layer=feature_layer,
                        tiny_width=tiny_width))
    if weights not in (None, "imagenet") and not os.path.isfile(str(weights)):
        raise ValueError(
            f"Backbone weights file not found: {weights!r} (expected null, 'imagenet' "
            f"or the path of a {name} weights file)."
        )
    return BACKBONES.resolve(name)(
        input_size, weights=weights, feature_layer=feature_layer, tiny_width=tiny_width,
        model_name=model_name,
    )


def _application(name, constructor, default_tap, mode, input_size, weights, feature_layer,
                 model_name):
    """A keras.applications CNN without its top, tapped at `feature_layer`."""
    application = getattr(keras.applications, constructor)
    shape = (input_size, input_size, 3)
    if weights == "imagenet":
        try:
            base = application(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as error:  # no network and no cached file
            raise ValueError(
                f"Could not load ImageNet weights for {constructor}: {error}. Without "
                "network access, put the `*_notop.h5` file in ~/.keras/models/ or set "
                "model.backbone.weights to its path."
            ) from error
    else:
        base = application(include_top=False, weights=None, input_shape=shape)
        if weights is not None:
            base.load_weights(weights)
    tap = feature_layer or default_tap
    try:
        features = base.get_layer(tap).output
    except ValueError:
        names = ", ".join(layer.name for layer in base.layers[-8:])
        raise ValueError(
            f"Backbone {name!r} has no layer {tap!r} to tap (last layers: {names})."
        ) from None
    inputs = keras.Input(shape)
    trunk = keras.Model(base.input, features, name=f"{name}_trunk")
    outputs = trunk(ImagePreprocessing(mode)(inputs))
    return keras.Model(inputs, outputs, name=model_name or name)


# The builders registered in sgma_keras.registry (`register_backbone` documents the
# arguments); each taps the last conv block before pooling by default.

def vgg19(input_size, *, weights, feature_layer, tiny_width, model_name):
    """VGG19, the paper's backbone: 512 channels at 1/16 of the input side."""
    return _application("vgg19", "VGG19", "block5_conv4", "caffe", input_size, weights,
                        feature_layer, model_name)


def resnet50(input_size, *, weights, feature_layer, tiny_width, model_name):
    """ResNet-50: 2048 channels at 1/32 of the input side."""
    return _application("resnet50", "ResNet50", "conv5_block3_out", "caffe", input_size,
                        weights, feature_layer, model_name)


def resnet101(input_size, *, weights, feature_layer, tiny_width, model_name):
    """ResNet-101: 2048 channels at 1/32 of the input side."""
    return _application("resnet101", "ResNet101", "conv5_block3_out", "caffe", input_size,
                        weights, feature_layer, model_name)


def tiny(input_size, *, weights, feature_layer, tiny_width, model_name):
    """A small scratch CNN (`_tiny_cnn`) for tests and demos; no layer to tap."""
    model = _tiny_cnn(input_size, tiny_width, model_name or "tiny_backbone")
    if weights is not None:
        model.load_weights(weights)
    return model


@keras.saving.register_keras_serializable(package="sgma_keras")
class GlobalBatchNormalization(keras.layers.BatchNormalization):
    """Batch norm over the global batch under data-parallel training.

    JAX shards one program, so its statistics are global already; TensorFlow
    needs `synchronized=True`, which other backends reject. The flag is chosen
    per backend and kept out of the config, so a model saved on one backend
    loads on the others.
    """

    def __init__(self, **kwargs):
        kwargs.pop("synchronized", None)
        super().__init__(synchronized=keras.backend.backend() == "tensorflow", **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("synchronized", None)
        return config


def _tiny_cnn(input_size, width, model_name):
    """Four conv blocks with batch norm; features at 1/8 of the input side.

    Batch norm trains this small scratch CNN much faster than group norm did; its
    moving averages use momentum 0.9 because short CPU runs (a few hundred steps)
    leave the default 0.99 far from the batch statistics, and inference then scores
    much worse than training.
    """
    inputs = keras.Input((input_size, input_size, 3))
    x = ImagePreprocessing("unit")(inputs)
    for filters, stride in ((width, 2), (2 * width, 2), (4 * width, 2), (4 * width, 1)):
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
        x = GlobalBatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
    return keras.Model(inputs, x, name=model_name)
