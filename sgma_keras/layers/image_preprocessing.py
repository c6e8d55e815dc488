"""Backbone-specific pixel normalisation, inside the model so exports take raw pixels."""

import keras
from keras import ops

# Caffe-style ImageNet means (BGR) used by keras.applications VGG and ResNet.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="sgma_keras")
class ImagePreprocessing(keras.layers.Layer):
    """Maps RGB pixels in [0, 255] to what a backbone expects.

    Modes: "caffe" (RGB->BGR, ImageNet mean subtracted: VGG19, ResNet) and
    "unit" ([-1, 1]: the tiny backbone).

    Example:

    >>> x = np.full((1, 4, 4, 3), 255.0, "float32")
    >>> float(ImagePreprocessing("unit")(x)[0, 0, 0, 0])
    1.0
    """

    def __init__(self, mode="caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "unit"):
            raise ValueError(f"ImagePreprocessing: mode must be 'caffe' or 'unit', got {mode!r}.")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "unit":
            return images / 127.5 - 1.0
        mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        return ops.flip(images, axis=-1) - mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config
