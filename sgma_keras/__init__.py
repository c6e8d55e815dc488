"""sgma-keras: Semantic-Guided Multi-Attention Localization for Zero-Shot Learning in Keras 3."""

__version__ = "0.1.0"

# Importing the package registers every saved class (model, layers, metrics), so that
# `keras.models.load_model("best.keras")` works after a plain `import sgma_keras`.
from sgma_keras import layers  # noqa: E402,F401
from sgma_keras import metrics  # noqa: E402,F401
from sgma_keras.model import SGMA  # noqa: E402,F401
