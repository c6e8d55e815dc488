"""Custom Keras layers of the SGMA model."""

from sgma_keras.layers.class_center import ClassCenterHead
from sgma_keras.layers.image_preprocessing import ImagePreprocessing
from sgma_keras.layers.multi_attention import MultiAttention
from sgma_keras.layers.part_cropper import PartCropper
from sgma_keras.layers.semantic_embedding import SemanticEmbedding

__all__ = [
    "ClassCenterHead",
    "ImagePreprocessing",
    "MultiAttention",
    "PartCropper",
    "SemanticEmbedding",
]
