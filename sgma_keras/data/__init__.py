"""Zero-shot datasets and the tf.data input pipeline.

- `ZeroShotData` / `ImageSplit` / `DataError`: the dataset description (zsl_data.py).
- `load_dataset(cfg)`: the config's "data" section -> ZeroShotData (loader.py), from
  the built-in generated dataset, the proposed split of Xian et al., raw CUB / AwA2 /
  Flowers folders or TFDS.
- `make_dataset(split, ...)`: tf.data pipeline of (images, labels) batches (pipeline.py).
"""

from sgma_keras.data.builtin import load_builtin_dataset
from sgma_keras.data.builtin import make_builtin_dataset
from sgma_keras.data.loader import load_dataset
from sgma_keras.data.loader import resolve_data_config
from sgma_keras.data.pipeline import DEFAULT_AUGMENT
from sgma_keras.data.pipeline import make_dataset
from sgma_keras.data.pipeline import measure_pipeline
from sgma_keras.data.proposed_split import load_proposed_split
from sgma_keras.data.proposed_split import write_proposed_split
from sgma_keras.data.zsl_data import SPLIT_NAMES
from sgma_keras.data.zsl_data import DataError
from sgma_keras.data.zsl_data import ImageSplit
from sgma_keras.data.zsl_data import ZeroShotData
