"""sgma-keras: Semantic-Guided Multi-Attention Localization for Zero-Shot Learning in Keras 3."""

__version__ = "0.1.0"
